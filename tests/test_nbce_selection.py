"""The selection gap at large n: confusable-distractor and "unknown" training data, and the
margin, entropy-gap and max-KL selection rules of NBCE (hand-made logits and identities)."""

import dataclasses
import itertools
import json
import re
import string

import jax
import numpy as np
import pytest
from flax import nnx

from diffusionlab import lm
from diffusionlab.lm.data import QACorpus, hamming, training_set
from diffusionlab.lm.train import LMTrainConfig, checkpoint_name
from diffusionlab.nbce import combine_generate, nbce_step
from diffusionlab.nbce.evaluate import NBCESettings, first_choice_rates
from diffusionlab.nbce.step import kl_from_empty, top2_margin

FACT = re.compile(r"([A-Z]+): (\d+)\.")


def _facts(example):
    return [FACT.findall(d) for d in example.documents]


def _asked(example):
    return example.question.split("Q: ")[1].split("?")[0]


# ---------------------------------------------------------------- data: near-miss distractors


@pytest.mark.parametrize("distance", [1, 2])
def test_near_miss_keys_are_exactly_the_split_keys_at_that_distance(distance):
    corpus = QACorpus("test", key_length=2)
    key = "QX"
    got = corpus.near_miss_keys(key, distance=distance)
    every = ["".join(p) for p in itertools.product(string.ascii_uppercase, repeat=2)]
    split = set(corpus._keys())
    expected = {k for k in every if hamming(k, key) == distance and k in split}
    assert set(got) == expected and len(got) == len(expected) > 0


def _near_miss_facts(corpus, seed, num_documents, **kwargs):
    """The example, and per document the facts the near-miss option added (the example
    without the option draws the same ordinary facts first from the same generator)."""
    misses = kwargs.get("near_misses", 1)
    plain = corpus._roomier(misses).single(num_documents, np.random.default_rng(seed),
                                           present=kwargs.get("present", True))
    ex = corpus.single(num_documents, np.random.default_rng(seed), **kwargs)
    added = []
    for before, after in zip(_facts(plain), _facts(ex), strict=True):
        assert set(before) <= set(after)
        added.append([f for f in after if f not in before])
    return ex, added


@pytest.mark.parametrize("present", [True, False])
@pytest.mark.parametrize("distance", [1, 2])
def test_distractors_are_near_misses_at_the_stated_distance(present, distance):
    corpus = QACorpus("train")
    for seed in range(15):
        ex, added = _near_miss_facts(corpus, seed, 3, present=present, near_misses=2,
                                     near_miss_distance=distance)
        asked = _asked(ex)
        keys = [k for doc in _facts(ex) for k, _ in doc]
        assert len(keys) == len(set(keys)), "keys repeat within an example"
        for d, (doc, extra) in enumerate(zip(_facts(ex), added, strict=True)):
            assert len(extra) == 2
            assert all(hamming(k, asked) == distance for k, _ in extra)
            assert all(v != ex.answer for _, v in extra)
            holds = [v for k, v in doc if k == asked]
            assert holds == ([ex.answer] if present and d == ex.relevant[0] else [])
        assert ex.relevant == (() if not present else ex.relevant)


def test_near_miss_values_never_equal_the_answer():
    """With one-digit values a freely drawn value would hit the answer about once in eight."""
    corpus = QACorpus("train", value_length=1)
    for seed in range(40):
        ex, added = _near_miss_facts(corpus, seed, 1, near_misses=4)
        assert len(added[0]) == 4 and all(v != ex.answer for _, v in added[0])


def test_zero_near_misses_draws_what_it_drew_before():
    a = QACorpus("train").single(4, np.random.default_rng(5))
    b = QACorpus("train").single(4, np.random.default_rng(5), near_misses=0)
    assert a == b


def test_absent_answer_replaces_only_an_absent_fact():
    corpus = QACorpus("test")
    ex = corpus.single(2, np.random.default_rng(1), present=False, absent_answer="unknown")
    assert ex.answer == "unknown" and ex.relevant == ()
    ex = corpus.single(2, np.random.default_rng(1), present=True, absent_answer="unknown")
    assert ex.answer.isdigit()


@pytest.mark.parametrize("kwargs, name", [
    ({"near_misses": -1}, "near_misses"), ({"near_misses": 9}, "near_misses"),
    ({"near_misses": 1, "near_miss_distance": 3}, "near_miss_distance"),
    ({"absent_answer": ""}, "absent_answer"),
])
def test_single_rejects_bad_options(kwargs, name):
    with pytest.raises(ValueError, match=name):
        QACorpus("train").single(1, np.random.default_rng(0), **kwargs)


def test_too_few_near_miss_keys_raise():
    with pytest.raises(ValueError, match="near_misses"):
        QACorpus("test").single(8, np.random.default_rng(0), near_misses=8)


def _decoded(data):
    tok = lm.ByteTokenizer()
    return [tok.decode(row[row != tok.pad_id]) for row in data["tokens"]]


def test_training_set_with_distractors_holds_near_misses_in_every_single_question():
    data = training_set(40, seed=0, max_length=129, mix=(1, 0, 0, 0), distractors=1.0,
                        extra_questions=0)
    for text in _decoded(data):
        asked = text.split("\nQ: ")[1].split("?")[0]
        keys = [k for k, _ in FACT.findall(text)]
        assert any(hamming(k, asked) == 1 for k in keys if k != asked), text


def test_training_set_unknown_answer_is_trained_on_absent_facts():
    data = training_set(30, seed=0, max_length=129, mix=(0, 1, 0, 0), unknown_answer="unknown")
    tok = lm.ByteTokenizer()
    for text, row, weights in zip(_decoded(data), data["tokens"], data["answer"], strict=True):
        assert text.endswith("A: " + text.split("\nQ: ")[1].split("?")[0] + ": unknown"), text
        # The answer weights mark exactly "unknown" and EOS.
        assert tok.decode(row[weights > 0]) == "unknown" and int(row[-1]) == tok.eos_id


@pytest.mark.parametrize("kwargs, name", [
    ({"distractors": 1.5}, "distractors"), ({"distractors": -0.1}, "distractors"),
    ({"near_misses": 0}, "near_misses"), ({"unknown_answer": ""}, "unknown_answer"),
])
def test_training_options_reject_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        training_set(2, seed=0, max_length=129, **kwargs)
    with pytest.raises(ValueError, match=name):
        LMTrainConfig(**kwargs)


def test_checkpoint_names_of_default_options_are_unchanged():
    """The options are left out of the name at their defaults: caches made before stay valid."""
    config = LMTrainConfig.quick()
    fields = dataclasses.asdict(config)
    for name in ("distractors", "near_misses", "unknown_answer"):
        del fields[name]
    import hashlib
    old = "nbce_lm_" + hashlib.sha1(json.dumps(fields, sort_keys=True, default=str)
                                    .encode()).hexdigest()[:10]
    assert checkpoint_name(config) == old
    names = {checkpoint_name(dataclasses.replace(config, **kw)) for kw in
             ({}, {"distractors": 0.5}, {"unknown_answer": "unknown"}, {"near_misses": 3})}
    assert len(names) == 4


# ---------------------------------------------------------------- selection rules


def _row(probs, vocab=6):
    p = np.full(vocab, 1e-9)
    p[:len(probs)] = probs
    return np.log(p / p.sum())


def test_margin_and_min_entropy_pick_different_rows():
    """Row 1: two tokens at 0.5 (entropy log 2, margin 0). Row 2: 0.6 on one token and the
    rest spread (more entropy, margin log 0.6/0.1)."""
    logits = np.stack([_row([0.2] * 5), _row([0.5, 0.5]), _row([0.6, 0.1, 0.1, 0.1, 0.1])])
    _, chosen_h, h = nbce_step(logits, top_p=1.0, pooling="min_entropy")
    merged, chosen_m, _ = nbce_step(logits, top_p=1.0, beta=0.0, pooling="margin")
    assert int(chosen_h) == 1 and int(chosen_m) == 2
    np.testing.assert_allclose(merged, logits[2], atol=1e-5)
    np.testing.assert_allclose(top2_margin(logits)[1:], [0.0, np.log(6.0)], atol=1e-5)


def test_margin_stickiness_keeps_the_previous_row_within_eta():
    logits = np.stack([_row([0.2] * 5), _row([0.6, 0.4]), _row([0.62, 0.38])])
    margins = np.asarray(top2_margin(logits))
    assert margins[2] > margins[1]
    assert int(nbce_step(logits, pooling="margin", eta=0.0, prev_choice=1)[1]) == 2
    gap = margins[2] - margins[1]
    assert int(nbce_step(logits, pooling="margin", eta=2 * gap, prev_choice=1)[1]) == 1
    assert int(nbce_step(logits, pooling="margin", eta=0.5 * gap, prev_choice=1)[1]) == 2


def test_entropy_gap_interpolates_between_min_entropy_and_average():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 7)) * np.array([[1.0], [3.0], [2.9], [0.5], [1.0]])
    _, _, h = nbce_step(logits, top_p=1.0, pooling="min_entropy")
    h = np.asarray(h)[1:]
    zero = nbce_step(logits, top_p=1.0, beta=0.0, pooling="entropy_gap", gap=0.0)[0]
    least = nbce_step(logits, top_p=1.0, beta=0.0, pooling="min_entropy")[0]
    np.testing.assert_allclose(zero, least, atol=1e-5)
    wide = nbce_step(logits, top_p=1.0, beta=0.0, pooling="entropy_gap", gap=1e3)[0]
    average = nbce_step(logits, top_p=1.0, beta=0.0, pooling="average")[0]
    np.testing.assert_allclose(wide, average, atol=1e-5)
    # In between: the mean of exactly the rows within the gap of the least entropy.
    gap = float(np.sort(h)[2] - h.min()) + 1e-3
    member = h <= h.min() + gap
    assert member.sum() == 3
    logprobs = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    mid = nbce_step(logits, top_p=1.0, beta=0.0, pooling="entropy_gap", gap=gap)[0]
    np.testing.assert_allclose(mid, logprobs[1:][member].mean(0), atol=1e-5)


def test_max_kl_escapes_a_confident_copy_of_the_empty_row():
    """The 'unknown' trap: rows 1-3 repeat the empty row's confident token (lowest entropy),
    row 4 is confident on another token. Min-entropy picks a copy; max KL picks row 4."""
    unknown = _row([0.97, 0.01, 0.01, 0.01])
    fact = _row([0.02, 0.95, 0.01, 0.02])
    logits = np.stack([unknown, unknown, unknown, unknown, fact])
    assert int(nbce_step(logits, pooling="min_entropy")[1]) == 1
    merged, chosen, _ = nbce_step(logits, pooling="max_kl", beta=0.0)
    assert int(chosen) == 4 and int(np.argmax(merged)) == 1
    p = np.exp(logits)
    expected = np.sum(p * (logits - logits[0]), axis=1)
    np.testing.assert_allclose(kl_from_empty(logits), expected, atol=1e-5)
    assert np.all(np.asarray(kl_from_empty(logits)) >= -1e-6)


@pytest.mark.parametrize("pooling", ["margin", "entropy_gap", "max_kl"])
def test_one_context_selection_is_that_row(pooling):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 9))
    a = nbce_step(logits, pooling=pooling, beta=0.3)
    b = nbce_step(logits, pooling="min_entropy", beta=0.3)
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    assert int(a[1]) == 1


@pytest.mark.parametrize("kwargs, name", [
    ({"pooling": "margins"}, "pooling"), ({"pooling": "entropy_gap", "gap": -0.1}, "gap"),
])
def test_selection_options_reject_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        nbce_step(np.zeros((3, 4)), **kwargs)
    with pytest.raises(ValueError, match=name):
        NBCESettings(**kwargs)


def test_margin_needs_two_tokens():
    with pytest.raises(ValueError, match="margin"):
        nbce_step(np.zeros((3, 1)), pooling="margin")


@pytest.fixture(scope="module")
def model():
    config = lm.LMConfig(dim=32, depth=1, num_heads=2, mlp_dim=64, max_length=24, shift=2)
    return lm.pure(lm.LanguageModel(config, rngs=nnx.Rngs(0)))


def test_selection_rules_with_one_context_are_greedy_decoding(model):
    apply, params = model
    rng = np.random.default_rng(4)
    context = [int(t) for t in rng.integers(3, 259, 9)]
    question = [int(t) for t in rng.integers(3, 259, 4)]
    greedy = np.asarray(lm.generate(apply, params, np.asarray([[1] + context + question]),
                                    max_new_tokens=4))[0]
    for pooling in ("margin", "entropy_gap", "max_kl"):
        out = combine_generate(apply, params, [context], question, rule="nbce", pooling=pooling,
                               beta=0.0, top_p=1.0, prefix=[1], max_new_tokens=4)
        np.testing.assert_array_equal(out, greedy)
    with pytest.raises(ValueError, match="gap"):
        combine_generate(apply, params, [context], question, rule="pcw", gap=0.5, prefix=[1],
                         max_new_tokens=2)


def test_first_choice_rates_reject_a_pooling_that_is_not_a_selection(model):
    apply, params = model
    with pytest.raises(ValueError, match="poolings"):
        first_choice_rates(apply, params, [], tokenizer=lm.ByteTokenizer(),
                           poolings=("average",))


def test_held_out_questions_are_the_same_for_the_same_seed_and_n():
    from diffusionlab.nbce.evaluate import held_out_questions

    corpus = lm.QACorpus("train")
    a = held_out_questions(corpus, 3, seeds=(0, 1), count=2)
    b = held_out_questions(corpus, 3, seeds=(1,), count=2)
    assert len(a) == 4 and all(len(e.documents) == 3 for e in a)
    assert a[2:] == b  # seed 1's questions do not depend on the other seeds asked
    assert a[:2] != a[2:]
    # drawn from the test split, as default_rng([seed, n]) draws them
    rng = np.random.default_rng([0, 3])
    test = lm.QACorpus("test")
    assert a[:2] == [test.single(3, rng) for _ in range(2)]
