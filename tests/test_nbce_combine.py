"""The rival context-combination rules: identities with ordinary decoding, PCW, full attention,
and the two means (of probabilities, of log-probabilities), and their input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffusionlab import lm
from diffusionlab.nbce import combine_generate, ensemble_step, merge_attention, nbce_step
from diffusionlab.nbce.combine import RULES
from diffusionlab.nbce.parallel import (
    attention_parts,
    pad_contexts,
    parallel_prefill,
    rule_options,
)

PREFIX = [1]


def _model(depth):
    config = lm.LMConfig(dim=32, depth=depth, num_heads=2, mlp_dim=64, max_length=24, shift=2)
    return lm.pure(lm.LanguageModel(config, rngs=nnx.Rngs(0)))


@pytest.fixture(scope="module")
def model():
    return _model(2)


def _tokens(seed, size):
    return [int(t) for t in np.random.default_rng(seed).integers(3, 259, size)]


def _prefill(apply, params, contexts, question, rule, prefix=PREFIX, **ape):
    # max_new_tokens as in the decoding calls below: one compiled prefill serves both.
    options = rule_options(rule, len(contexts), **ape)
    logits, _ = parallel_prefill(apply, params, jnp.asarray(prefix, jnp.int32),
                                 jnp.asarray(pad_contexts(contexts, pad_id=apply.pad_id)),
                                 jnp.asarray(question, jnp.int32), options, max_new_tokens=6)
    return np.asarray(logits)


# ---------------------------------------------------------------- identities on the small LM

def test_one_context_every_rule_is_greedy_decoding(model):
    apply, params = model
    context, question = _tokens(0, 9), _tokens(1, 4)
    greedy = np.asarray(lm.generate(apply, params, np.asarray([PREFIX + context + question]),
                                    max_new_tokens=6))[0]
    options = {"nbce": {"beta": 0.0, "top_p": 1.0},
               "ape": {"attention_temperature": 1.0, "attention_scale": 1.0}}
    for rule in RULES:
        out = combine_generate(apply, params, [context], question, rule=rule, max_new_tokens=6,
                               prefix=PREFIX, **options.get(rule, {}))
        np.testing.assert_array_equal(out, greedy, err_msg=rule)
    # The first-step logits too, not only their argmax.
    plain, _ = apply(params, jnp.asarray([PREFIX + context + question]))
    for rule in ("pcw", "ape", "exact"):
        np.testing.assert_allclose(_prefill(apply, params, [context], question, rule),
                                   np.asarray(plain[0, -1]), atol=1e-5, err_msg=rule)


def test_ape_at_unit_temperature_and_scale_without_prefix_is_pcw(model):
    apply, params = model
    contexts, question = [_tokens(s, 4 + 2 * s) for s in range(3)], _tokens(7, 3)
    pcw = _prefill(apply, params, contexts, question, "pcw", prefix=[])
    ape = _prefill(apply, params, contexts, question, "ape", prefix=[], temperature=1.0,
                   scale=1.0)
    np.testing.assert_allclose(ape, pcw, atol=1e-5)
    np.testing.assert_array_equal(
        combine_generate(apply, params, contexts, question, rule="ape", max_new_tokens=6,
                         prefix=[], attention_temperature=1.0, attention_scale=1.0),
        combine_generate(apply, params, contexts, question, rule="pcw", max_new_tokens=6,
                         prefix=[]))
    # APE's own T = S = 0.9, and PCW with a shared prefix counted n times, do differ.
    tempered = _prefill(apply, params, contexts, question, "ape", prefix=[], temperature=0.9,
                        scale=0.9)
    assert np.max(np.abs(tempered - pcw)) > 1e-3
    assert np.max(np.abs(_prefill(apply, params, contexts, question, "pcw")
                         - _prefill(apply, params, contexts, question, "ape", temperature=1.0,
                                    scale=1.0))) > 1e-3


def test_pcw_ignores_the_order_of_the_windows(model):
    apply, params = model
    contexts, question = [_tokens(s, 4 + 2 * s) for s in range(3)], _tokens(7, 3)
    np.testing.assert_allclose(_prefill(apply, params, contexts[::-1], question, "pcw"),
                               _prefill(apply, params, contexts, question, "pcw"), atol=1e-5)


def test_exact_merge_of_blocks_is_full_attention_in_float64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        q = jnp.asarray(rng.normal(size=(1, 3, 2, 4)))
        k, v = jnp.asarray(rng.normal(size=(2, 1, 11, 2, 4)))
        full, full_lse = attention_parts(q, k, v, jnp.ones((1, 3, 11), bool))
        cuts = [0, 4, 4, 9, 11]  # uneven blocks, one of them empty
        parts = [attention_parts(q, k[:, a:b], v[:, a:b], jnp.ones((1, 3, b - a), bool))
                 for a, b in zip(cuts, cuts[1:], strict=False)]
        merged, lse = merge_attention(jnp.stack([o for o, _ in parts]),
                                      jnp.stack([m for _, m in parts]))
        assert merged.dtype == jnp.float64
        np.testing.assert_allclose(merged, full, atol=1e-12)
        np.testing.assert_allclose(lse, full_lse, atol=1e-12)
        # Against softmax written out over the concatenated keys.
        logits = np.einsum("blhk,bshk->blhs", q, k) / 2.0
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        np.testing.assert_allclose(full, np.einsum("blhs,bshk->blhk", weights, v), atol=1e-12)


def test_exact_rule_equals_full_attention_over_the_concatenation():
    """With one block, the blocks' keys and values depend on their own tokens only (and on
    the positions and token shift of the concatenation, which the rule reproduces), so the
    block-wise prefill plus the exact merge is full attention over the concatenation."""
    apply, params = _model(1)
    contexts, question = [_tokens(s, 3 + 2 * s) for s in range(3)], _tokens(8, 4)
    concatenation = PREFIX + sum(contexts, []) + question
    plain, _ = apply(params, jnp.asarray([concatenation]))
    np.testing.assert_allclose(_prefill(apply, params, contexts, question, "exact"),
                               np.asarray(plain[0, -1]), atol=1e-5)
    greedy = lm.generate(apply, params, np.asarray([concatenation]), max_new_tokens=6)[0]
    np.testing.assert_array_equal(
        combine_generate(apply, params, contexts, question, rule="exact", max_new_tokens=6,
                         prefix=PREFIX), greedy)
    # PCW's reused positions are not the concatenation.
    assert np.max(np.abs(_prefill(apply, params, contexts, question, "pcw")
                         - np.asarray(plain[0, -1]))) > 1e-3


# ---------------------------------------------------------------- the two means, hand-made

def test_ensemble_is_a_mean_of_probabilities_and_average_nbce_of_log_probabilities():
    p = np.array([[0.9, 0.099, 0.001],
                  [0.01, 0.49, 0.5]])
    logits = jnp.asarray(np.log(p) + np.array([[3.0], [-1.0]]), jnp.float32)  # unnormalised
    w = np.array([0.5, 0.5])
    ensemble = np.asarray(ensemble_step(logits, jnp.asarray(w)))
    np.testing.assert_allclose(ensemble, np.log(w @ p), rtol=1e-6)
    skewed = np.array([0.2, 0.8])
    np.testing.assert_allclose(ensemble_step(logits, jnp.asarray(skewed)), np.log(skewed @ p),
                               rtol=1e-6)
    # Average-pooled NBCE at beta = 0 (row 0 is the empty context, unused at beta = 0).
    rows = jnp.concatenate([jnp.zeros((1, 3)), logits])
    average, _, _ = nbce_step(rows, beta=0.0, top_p=1.0, eta=0.0, pooling="average")
    np.testing.assert_allclose(average, np.log(p).mean(0), rtol=1e-6)
    # The mean of probabilities follows the confident row; the product of experts vetoes the
    # token the other row finds unlikely.
    assert int(np.argmax(ensemble)) == 0 and int(np.argmax(average)) == 1


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, match", [
    ({"rule": "stacking"}, "rule"),
    ({"rule": "ape", "attention_temperature": 0.0}, "attention_temperature"),
    ({"rule": "ape", "attention_scale": -1.0}, "attention_scale"),
    ({"rule": "ensemble", "weights": [0.6, 0.6]}, "weights"),
    ({"rule": "ensemble", "weights": [1.5, -0.5]}, "weights"),
    ({"rule": "ensemble", "weights": [1.0]}, "weights"),
    ({"rule": "pcw", "weights": [0.5, 0.5]}, "weights"),
    ({"rule": "ensemble", "beta": 1.0}, "beta"),
    ({"rule": "pcw", "contexts": []}, "contexts"),
    ({"rule": "pcw", "contexts": [list(range(3, 40))]}, "split_into_chunks"),
    ({"rule": "ape", "max_new_tokens": 0}, "max_new_tokens"),
])
def test_combine_rejects_bad_input(model, kwargs, match):
    apply, params = model
    args = {"contexts": [[5, 6], [7, 8]], "question": [9], "max_new_tokens": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        combine_generate(apply, params, args.pop("contexts"), args.pop("question"), **args)


def test_batched_ape_at_any_temperature_and_scale_matches_combine_generate():
    # combine_answers (the experiments' batched path, T and S traced) against the reference
    # combine_generate with the same BOS prefix, away from the default T = S = 0.9.
    from diffusionlab.nbce.combine_evaluate import combine_answers

    class TokenIds(lm.ByteTokenizer):  # answers as their token ids: exact, even for
        def decode(self, tokens):        # the untrained model's non-ASCII bytes
            return " ".join(str(int(t)) for t in np.asarray(tokens))

    apply, params = _model(1)
    tokenizer = TokenIds()
    examples = [lm.QAExample(documents=("ab: 1.", "cd: 22."), question="\nQ: ab?\nA: ",
                             answer="1", relevant=(0,)),
                lm.QAExample(documents=("xy: 7.", "ab: 3."), question="\nQ: xy?\nA: ",
                             answer="7", relevant=(0,))]
    answers = {}
    for t, s in ((0.05, 4.0), (1.0, 1.0)):
        got = combine_answers(apply, params, examples, ["ape"], tokenizer=tokenizer,
                              max_new_tokens=3, ape_temperature=t, ape_scale=s)["ape"]
        want = [tokenizer.decode(np.asarray(combine_generate(
            apply, params, list(e.documents), e.question, rule="ape", max_new_tokens=3,
            tokenizer=tokenizer, prefix=[tokenizer.bos_id], attention_temperature=t,
            attention_scale=s))) for e in examples]
        assert got == want, (t, s)
        answers[(t, s)] = got
    assert answers[(0.05, 4.0)] != answers[(1.0, 1.0)]  # T and S do reach the batched path
    with pytest.raises(ValueError, match="ape_temperature"):
        combine_answers(apply, params, examples, ["ape"], tokenizer=tokenizer,
                        max_new_tokens=3, ape_temperature=0.0)
    with pytest.raises(ValueError, match="ape_scale"):
        combine_answers(apply, params, examples, ["ape"], tokenizer=tokenizer,
                        max_new_tokens=3, ape_scale=-1.0)


def test_parallel_answers_share_one_encoding_and_equal_each_rule_alone():
    # One call for PCW, two APE cells and the exact merge (two block encodings: parallel and
    # sequential) equals combine_generate rule by rule, and compiles one program per encoding.
    from diffusionlab.nbce import combine_evaluate

    class TokenIds(lm.ByteTokenizer):
        def decode(self, tokens):
            return " ".join(str(int(t)) for t in np.asarray(tokens))

    apply, params = _model(1)
    tokenizer = TokenIds()
    examples = [lm.QAExample(documents=("ab: 1.", "cd: 22.", "ef: 5."), question="\nQ: ab?\nA: ",
                             answer="1", relevant=(0,)),
                lm.QAExample(documents=("xy: 7.", "ab: 3.", "gh: 9."), question="\nQ: xy?\nA: ",
                             answer="7", relevant=(0,))]
    settings = [("pcw", {}), ("ape", {"temperature": 0.05, "scale": 4.0}), ("exact", {}),
                ("ape", {"temperature": 1.0, "scale": 1.0})]
    options = [rule_options(rule, 3, **ts) for rule, ts in settings]
    before = combine_evaluate._parallel_batch._cache_size()
    got = combine_evaluate.parallel_answers(apply, params, examples, options,
                                            tokenizer=tokenizer, max_new_tokens=3)
    assert combine_evaluate._parallel_batch._cache_size() - before == 2
    for (rule, ts), answers in zip(settings, got, strict=True):
        ape = {"attention_temperature": ts["temperature"], "attention_scale": ts["scale"]} \
            if rule == "ape" else {}
        want = [tokenizer.decode(np.asarray(combine_generate(
            apply, params, list(e.documents), e.question, rule=rule, max_new_tokens=3,
            tokenizer=tokenizer, prefix=[tokenizer.bos_id], **ape))) for e in examples]
        assert answers == want, (rule, ts)
    assert got[1] != got[3]  # the APE cells differ: T and S reach the shared path
    with pytest.raises(ValueError, match="options"):
        combine_evaluate.parallel_answers(apply, params, examples, [], tokenizer=tokenizer,
                                          max_new_tokens=3)
    with pytest.raises(TypeError, match="ParallelOptions"):
        combine_evaluate.parallel_answers(apply, params, examples, [(1.0, 1.0)],
                                          tokenizer=tokenizer, max_new_tokens=3)


def test_row_answers_equal_nbce_first_choice_and_ensemble_one_by_one():
    # One prefill serves NBCE, the first choices and the parallel ensemble: each equals its own
    # entry point (which prefill separately), on an untrained model whose rows disagree.
    from diffusionlab.nbce.combine_evaluate import combine_answers
    from diffusionlab.nbce.evaluate import (
        NBCESettings,
        _batch_size,
        first_choice_rates,
        nbce_answers,
        row_answers,
    )

    class TokenIds(lm.ByteTokenizer):
        def decode(self, tokens):
            return " ".join(str(int(t)) for t in np.asarray(tokens))

    apply, params = _model(2)
    tokenizer = TokenIds()
    examples = [lm.QAExample(documents=(f"k{i}: {i}.", f"m{i}: {2 * i + 1}.", f"z{i}: 9{i}."),
                             question=f"\nQ: k{i}?\nA: ", answer=str(i), relevant=(i % 3,))
                for i in range(5)]
    settings = [NBCESettings(pooling="min_entropy"), NBCESettings(pooling="average"),
                NBCESettings(pooling="min_entropy", beta=0.5)]
    choices = ["min_entropy", "margin"]
    got = row_answers(apply, params, examples, settings, tokenizer=tokenizer, max_new_tokens=4,
                      first_choice=choices, ensemble=True, rows_per_batch=24)
    # 24 rows // (4 rows x (2 settings + ensemble)): batches of two, the third padded by one.
    assert _batch_size(len(examples), 24 // (4 * 3)) == 2
    # Not vacuous: answers and first choices differ between questions.
    assert len(set(got.ensemble)) > 1 and 0 < got.first_choice["min_entropy"].sum() < 5
    assert got.nbce == nbce_answers(apply, params, examples, settings, tokenizer=tokenizer,
                                    max_new_tokens=4)
    want = first_choice_rates(apply, params, examples, tokenizer=tokenizer, poolings=choices)
    for pooling in choices:
        np.testing.assert_array_equal(got.first_choice[pooling], want[pooling])
    assert got.ensemble == combine_answers(apply, params, examples, ["ensemble"],
                                           tokenizer=tokenizer, max_new_tokens=4)["ensemble"]
    assert row_answers(apply, params, examples, settings[:1], tokenizer=tokenizer,
                       max_new_tokens=4).ensemble is None
    with pytest.raises(ValueError, match="first_choice"):
        row_answers(apply, params, examples, settings, tokenizer=tokenizer, max_new_tokens=4,
                    first_choice=["average"])
    with pytest.raises(ValueError, match="settings"):
        row_answers(apply, params, examples, [], tokenizer=tokenizer, max_new_tokens=4)
