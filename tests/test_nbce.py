"""NBCE: the reference step on hand-made logits, its invariants, and the decoding loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffusionlab import lm
from diffusionlab.nbce import (
    nbce_decode,
    nbce_generate,
    nbce_prefill,
    nbce_prompts,
    nbce_step,
    split_into_chunks,
    top_p_truncate,
    truncated_entropy,
)
from diffusionlab.nbce.cost import decoding_cost, decoding_program, interleaved_costs
from tests.asserts import assert_compiles_once

LOG = np.log


def _rows(*probs):
    return jnp.asarray(LOG(np.asarray(probs, np.float64)), jnp.float32)


# ---------------------------------------------------------------- the step on hand-made logits

def test_min_entropy_choice_and_merge():
    logits = _rows([0.25, 0.25, 0.25, 0.25],   # row 0: the empty context
                   [0.4, 0.3, 0.2, 0.1],
                   [0.97, 0.01, 0.01, 0.01],     # the sharpest context
                   [0.25, 0.25, 0.25, 0.25])
    merged, choice, entropies = nbce_step(logits, beta=0.5, eta=0.0, top_p=1.0)
    assert int(choice) == 2
    expected_h = -np.sum(np.array([0.97, 0.01, 0.01, 0.01]) * LOG([0.97, 0.01, 0.01, 0.01]))
    assert float(entropies[2]) == pytest.approx(expected_h, rel=1e-5)
    expected = 1.5 * LOG([0.97, 0.01, 0.01, 0.01]) - 0.5 * LOG([0.25] * 4)
    np.testing.assert_allclose(merged, expected, rtol=1e-5)


def test_row_zero_is_never_chosen():
    logits = _rows([0.999, 0.0005, 0.0005], [0.4, 0.3, 0.3], [0.5, 0.25, 0.25])
    _, choice, entropies = nbce_step(logits, top_p=1.0, eta=0.0)
    assert float(entropies[0]) < float(entropies[1]) and int(choice) == 2


def test_stickiness_changes_the_choice():
    # Row 2 is sharper than row 1, by less than eta = 0.1.
    logits = _rows([0.25] * 4, [0.7, 0.1, 0.1, 0.1], [0.72, 0.0933, 0.0933, 0.0934])
    _, _, h = nbce_step(logits, top_p=1.0)
    gap = float(h[1] - h[2])
    assert 0 < gap < 0.1
    assert int(nbce_step(logits, top_p=1.0, eta=0.1)[1]) == 2          # first step
    assert int(nbce_step(logits, top_p=1.0, eta=0.1, prev_choice=1)[1]) == 1   # sticks
    assert int(nbce_step(logits, top_p=1.0, eta=gap / 2, prev_choice=1)[1]) == 2  # switches


def test_top_p_keeps_original_logprobs_without_renormalising():
    row = _rows([0.5, 0.3, 0.15, 0.05])
    truncated = top_p_truncate(row, 0.75)[0]
    # Ascending cumulative mass: 0.05, 0.20, 0.50, 1.0; entries with mass <= 0.25 go.
    assert np.isneginf(truncated[2]) and np.isneginf(truncated[3])
    np.testing.assert_allclose(truncated[:2], row[0, :2], rtol=0, atol=0)
    assert float(jnp.exp(truncated).sum()) == pytest.approx(0.8, rel=1e-5)


def _reference_top_p(logprobs, top_p):
    """HF TopPLogitsWarper on one row: stable ascending sort, drop cumulative mass <= 1-p."""
    probs = np.exp(np.asarray(logprobs, np.float64))
    order = np.argsort(probs, kind="stable")
    remove_sorted = np.cumsum(probs[order]) <= 1 - top_p
    remove_sorted[-1] = False
    remove = np.empty_like(remove_sorted)
    remove[order] = remove_sorted
    return remove


@pytest.mark.parametrize("seed", range(3))
def test_top_p_matches_the_sorting_reference_ties_included(seed):
    key = jax.random.key(seed)
    logits = jnp.round(2.0 * jax.random.normal(key, (4, 30))) / 2.0  # many exact ties
    logp = jax.nn.log_softmax(logits)
    for top_p in (0.3, 0.8, 0.95):
        got = np.isneginf(np.asarray(top_p_truncate(logp, top_p)))
        for r in range(4):
            cumulative = np.cumsum(np.sort(np.exp(np.asarray(logp[r], np.float64))))
            if np.min(np.abs(cumulative - (1 - top_p))) < 1e-5:
                continue  # float32 rounding decides exact boundary cases either way
            np.testing.assert_array_equal(got[r], _reference_top_p(logp[r], top_p))


def test_top_p_always_keeps_the_top_token():
    row = _rows([0.9, 0.05, 0.05])
    kept = np.isfinite(np.asarray(top_p_truncate(row, 0.01)))
    np.testing.assert_array_equal(kept, [[True, False, False]])


def test_minus_infinity_rule():
    # Token 3 is in the chosen row's nucleus but truncated away in the empty-context row.
    logits = _rows([0.6, 0.38, 0.01, 0.01], [0.05, 0.05, 0.05, 0.85])
    merged, choice, _ = nbce_step(logits, beta=0.25, top_p=0.95)
    l1 = top_p_truncate(jax.nn.log_softmax(logits), 0.95)[1]
    l0 = top_p_truncate(jax.nn.log_softmax(logits), 0.95)[0]
    assert int(choice) == 1 and np.isneginf(l0[3])
    assert float(merged[3]) == pytest.approx(float(l1[3]), rel=1e-6)   # pooled term alone
    assert float(merged[0]) == pytest.approx(float(1.25 * l1[0] - 0.25 * l0[0]), rel=1e-5)
    assert int(jnp.argmax(merged)) == 3
    assert not np.any(np.isnan(merged)) and not np.any(np.isposinf(merged))


def test_beta_minus_one_is_nan_free():
    logits = _rows([0.6, 0.38, 0.01, 0.01], [0.05, 0.9, 0.03, 0.02])
    merged, _, _ = nbce_step(logits, beta=-1.0)
    assert not np.any(np.isnan(merged)) and np.any(np.isfinite(merged))


def test_average_pooling_without_truncation_is_naive_bayes():
    logits = jax.random.normal(jax.random.key(0), (5, 7))
    merged, _, _ = nbce_step(logits, beta=3.0, top_p=1.0, pooling="average")
    logp = jax.nn.log_softmax(logits)
    expected = jnp.sum(logp[1:], axis=0) - 3.0 * logp[0]
    np.testing.assert_allclose(merged, expected, rtol=1e-5, atol=1e-5)


def test_max_pooling_is_elementwise_max():
    logits = jax.random.normal(jax.random.key(1), (4, 6))
    merged, _, _ = nbce_step(logits, beta=0.0, top_p=1.0, pooling="max")
    np.testing.assert_allclose(merged, jnp.max(jax.nn.log_softmax(logits)[1:], axis=0),
                               rtol=1e-6)


def test_average_pooling_with_disjoint_nuclei_stays_decodable():
    logits = _rows([0.25] * 4, [0.97, 0.01, 0.01, 0.01], [0.01, 0.97, 0.01, 0.01])
    merged, _, _ = nbce_step(logits, pooling="average")
    assert np.any(np.isfinite(merged)) and not np.any(np.isnan(merged))


@pytest.mark.parametrize("seed", range(4))
def test_step_invariants_on_random_logits(seed):
    k1, k2 = jax.random.split(jax.random.key(seed))
    logits = 3.0 * jax.random.normal(k1, (6, 40))
    for pooling in ("min_entropy", "average", "max"):
        merged, choice, h = nbce_step(logits, pooling=pooling, prev_choice=3)
        assert 1 <= int(choice) <= 5
        assert np.all(np.isfinite(h)) and np.all(np.asarray(h) >= -1e-6)
        assert not np.any(np.isnan(merged)) and not np.any(np.isposinf(merged))
        assert np.any(np.isfinite(merged))
    # Entropy without truncation is the plain entropy.
    logp = jax.nn.log_softmax(logits)
    np.testing.assert_allclose(truncated_entropy(logp), -jnp.sum(jnp.exp(logp) * logp, -1),
                               rtol=1e-5)
    # Permuting the contexts permutes the choice with them (no ties at random logits).
    perm = np.asarray(jax.random.permutation(k2, 5)) + 1
    permuted = logits[np.concatenate([[0], perm])]
    _, choice, _ = nbce_step(logits)
    _, choice_p, _ = nbce_step(permuted)
    assert perm[int(choice_p) - 1] == int(choice)


@pytest.mark.parametrize("kwargs, match", [
    ({"beta": -1.5}, "beta"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"pooling": "median"}, "pooling"),
])
def test_step_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nbce_step(jnp.zeros((3, 4)), **kwargs)


@pytest.mark.parametrize("shape", [(1, 4), (4,), (2, 3, 4)])
def test_step_rejects_too_few_rows(shape):
    with pytest.raises(ValueError, match="rows"):
        nbce_step(jnp.zeros(shape))


# ---------------------------------------------------------------- decoding with a small LM

@pytest.fixture(scope="module")
def model():
    config = lm.LMConfig(dim=32, depth=2, num_heads=2, mlp_dim=64, max_length=24)
    return lm.pure(lm.LanguageModel(config, rngs=nnx.Rngs(0)))


def _tokens(seed, size):
    return list(np.random.default_rng(seed).integers(3, 259, size))


def test_decoding_cost_keeps_every_timing_repeat(model):
    """The repeats are the replicates of the cost experiment's growth fit; the best is their min."""
    apply, params = model
    rows = jnp.asarray(np.random.default_rng(0).integers(3, 259, (3, 16)), jnp.int32)
    cost = decoding_cost(apply, params, rows, nbce=True, steps=2, repeats=3)
    assert len(cost.token_seconds) == 3 and all(t > 0 for t in cost.token_seconds)
    assert cost.seconds_per_token == min(cost.token_seconds)


def test_counted_step_cost_is_affine_in_the_rows_and_rounds_are_kept(model):
    """One NBCE step is a batch of R rows and a merge over them: XLA's count of the compiled
    step, and the cache, grow by the same amount per added row (the essay's linear cost)."""
    apply, params = model
    rng = np.random.default_rng(0)
    programs = {r: decoding_program(apply, params,
                                    jnp.asarray(rng.integers(3, 259, (r, 16)), jnp.int32),
                                    nbce=True, steps=2) for r in (2, 3, 5, 9)}
    for field in ("token_flops", "cache_bytes"):
        count = {r: float(getattr(p, field)) for r, p in programs.items()}
        per_row = [(count[3] - count[2]) / 1, (count[5] - count[3]) / 2, (count[9] - count[5]) / 4]
        assert per_row[0] > 0, field
        np.testing.assert_allclose(per_row, per_row[0], rtol=1e-3, err_msg=field)
    # Plain decoding of one row: a step is at least the matrix products, 2 flops per weight
    # (blocks and the vocabulary head), plus attention over the cached positions.
    weights = sum(leaf.size for leaf in jax.tree.leaves(params) if leaf.ndim == 2)
    plain = [decoding_program(apply, params, jnp.asarray(rng.integers(3, 259, (r, 16)),
                                                         jnp.int32), nbce=False, steps=2)
             for r in (1, 2)]
    assert 2 * weights <= plain[0].token_flops <= 1.3 * 2 * weights
    assert plain[1].token_flops == pytest.approx(2 * plain[0].token_flops, rel=0.01)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        decoding_program(apply, params, jnp.ones((2, 16), jnp.int32), nbce=True, steps=0)
    costs = interleaved_costs(programs, rounds=3)
    assert list(costs) == [2, 3, 5, 9]
    for r, cost in costs.items():
        assert len(cost.token_seconds) == 3 and cost.seconds_per_token == min(cost.token_seconds)
        assert cost.token_flops == programs[r].token_flops
    with pytest.raises(TypeError, match="mapping of DecodingProgram"):
        interleaved_costs({1: "not a program"}, rounds=2)


def test_one_context_with_beta_zero_is_greedy_decoding(model):
    apply, params = model
    context, question = _tokens(0, 9), _tokens(1, 4)
    out = nbce_generate(apply, params, [context], question, max_new_tokens=6, beta=0.0,
                        top_p=1.0, prefix=[1])
    greedy = lm.generate(apply, params, np.asarray([[1] + context + question]),
                         max_new_tokens=6)
    np.testing.assert_array_equal(out.tokens, greedy[0])
    assert np.all(np.asarray(out.choices) == 1)


def test_permuting_contexts_leaves_the_answer_unchanged(model):
    apply, params = model
    contexts = [_tokens(s, 5 + s) for s in range(4)]
    question = _tokens(9, 3)
    a = nbce_generate(apply, params, contexts, question, max_new_tokens=5)
    b = nbce_generate(apply, params, contexts[::-1], question, max_new_tokens=5)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(5 - np.asarray(b.choices), a.choices)


def test_sampling_runs_and_depends_on_the_key(model):
    apply, params = model
    contexts, question = [_tokens(1, 6), _tokens(2, 6)], _tokens(3, 3)
    draws = {tuple(np.asarray(nbce_generate(apply, params, contexts, question, max_new_tokens=8,
                                            temperature=1.0, key=jax.random.key(s)).tokens))
             for s in range(4)}
    assert len(draws) > 1


def test_string_inputs_with_a_tokenizer(model):
    apply, params = model
    out = nbce_generate(apply, params, ["ab", "cd"], "?", max_new_tokens=3,
                        tokenizer=lm.ByteTokenizer())
    assert out.tokens.shape == (3,) and out.entropies.shape == (3, 3)


def test_greedy_nbce_decoding_needs_no_key_and_sampling_requires_one(model):
    apply, params = model
    prompts = jnp.asarray(nbce_prompts([_tokens(1, 5), _tokens(2, 7)], _tokens(3, 2)))
    logits, cache = nbce_prefill(apply, params, prompts, max_new_tokens=4)
    hyper = dict(max_new_tokens=4, beta=0.25, eta=0.1, top_p=0.95, temperature=1.0)
    keyless = nbce_decode(apply, params, logits, cache, **hyper)
    keyed = nbce_decode(apply, params, logits, cache, jax.random.key(5), **hyper)
    for a, b in zip(keyless, keyed, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="needs a key"):
        nbce_decode(apply, params, logits, cache, greedy=False, **hyper)
    with pytest.raises(ValueError, match="needs a key"):
        nbce_generate(apply, params, [[5, 6]], [7], max_new_tokens=2, temperature=1.0)


def test_decode_compiles_once_across_hyperparameters(model):
    apply, params = model
    prompts = jnp.asarray(nbce_prompts([_tokens(1, 5), _tokens(2, 7)], _tokens(3, 2)))
    logits, cache = nbce_prefill(apply, params, prompts, max_new_tokens=4)

    def run(beta, eta, top_p):
        return nbce_decode(apply, params, logits, cache, jax.random.key(0), max_new_tokens=4,
                           beta=beta, eta=eta, top_p=top_p, temperature=1.0)

    assert_compiles_once(run, [(0.25, 0.1, 0.95), (1.0, 0.0, 0.5), (3.0, 0.2, 1.0)])


@pytest.mark.parametrize("kwargs, match", [
    ({"contexts": []}, "contexts"),
    ({"contexts": [list(range(3, 40))]}, "split_into_chunks"),
    ({"beta": -2.0}, "beta"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.01}, "top_p"),
])
def test_generate_rejects_bad_input(model, kwargs, match):
    apply, params = model
    args = {"contexts": [[5, 6]], "question": [7], "max_new_tokens": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        nbce_generate(apply, params, args.pop("contexts"), args.pop("question"), **args)


def test_split_into_chunks_covers_with_overlap():
    text = list(range(23))
    chunks = split_into_chunks(text, chunk_length=8, overlap=3)
    assert all(len(c) == 8 for c in chunks)
    assert chunks[0][0] == 0 and chunks[-1][-1] == 22
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert len(set(a) & set(b)) >= 3
    assert split_into_chunks("abc", chunk_length=5) == ["abc"]
    with pytest.raises(ValueError, match="overlap"):
        split_into_chunks(text, chunk_length=4, overlap=4)


# ---------------------------------------------------------------- the first-choice diagnostic

class _MarkerModel:
    """A stand-in for the ``apply`` protocol: the next-token distribution is sharp (on token
    ``marker``) in rows that contain ``marker`` and spread over 10 tokens (or sharper still, on
    token 11, when ``confident_elsewhere``) in rows that do not."""

    max_length, pad_id = 16, 0

    def __init__(self, marker: int, confident_elsewhere: bool):
        self.marker, self.confident_elsewhere = marker, confident_elsewhere

    def __call__(self, params, tokens_BxL, cache=None):
        has_B = jnp.any(tokens_BxL == self.marker, axis=1)
        vocab = jnp.arange(259)
        sharp_V = jnp.where(vocab == self.marker, 10.0, 0.0)
        other_V = (jnp.where(vocab == 11, 30.0, 0.0) if self.confident_elsewhere
                   else jnp.where((vocab >= 48) & (vocab < 58), 5.0, 0.0))
        last_BxV = jnp.where(has_B[:, None], sharp_V, other_V)
        return jnp.broadcast_to(last_BxV[:, None], (*tokens_BxL.shape, 259)), None


@pytest.mark.parametrize("confident_elsewhere, expected", [(False, 1.0), (True, 0.0)])
def test_first_choice_hits_finds_the_document_with_the_sharpest_prediction(confident_elsewhere,
                                                                             expected):
    from diffusionlab.nbce.evaluate import first_choice_hits
    docs = ("aaa", "bbb", "c!c", "ddd")  # '!' (id 33 + offset) marks the relevant document
    tokenizer = lm.ByteTokenizer()
    marker = int(tokenizer.encode("!")[0])
    examples = [lm.QAExample(docs[k:] + docs[:k], "?", "x", ((2 - k) % 4,)) for k in range(4)]
    hits = first_choice_hits(_MarkerModel(marker, confident_elsewhere), None, examples,
                             tokenizer=tokenizer)
    np.testing.assert_array_equal(hits, np.full(4, expected))


def test_batches_hold_every_question_in_the_fewest_batches_with_little_padding():
    """Batches are padded to one size (one program): the fewest batches under the limit,
    filled evenly, so fewer than one padded question per batch and never more than asked."""
    from diffusionlab.nbce.evaluate import _batch_size

    for total in range(1, 80):
        for limit in range(0, 100):
            size = _batch_size(total, limit)
            cap = max(1, min(total, limit))
            batches = -(-total // size)
            assert 1 <= size <= cap, (total, limit, size)
            assert batches == -(-total // cap), (total, limit, size)  # the fewest
            assert batches * size - total < batches, (total, limit, size)
    assert _batch_size(24, 256) == 24 and _batch_size(24, 15) == 12 and _batch_size(24, 7) == 6
