"""Human-rated similarity sets read from the gensim 4.4.0 wheel: counts, ranges, item splits."""

import importlib
import importlib.util

import numpy as np
import pytest

from diffusionlab.cosent import HUMAN_RATED, PairTask, human_rated, human_rated_task

# The package exports the function ``human_rated`` under the module's own name: reach the module.
human_rated_module = importlib.import_module("diffusionlab.cosent.human_rated")
pytestmark = pytest.mark.skipif(importlib.util.find_spec("gensim") is None,
                                reason="the data ship in gensim: pip install gensim==4.4.0")

COUNTS = {"lee2005": 1225, "simlex999": 999, "wordsim353": 353}
# Pairs per split of the fixed item split (SPLIT_SEED = 0), as the module docstring states.
SPLIT_COUNTS = {"lee2005": (435, 45, 45), "simlex999": (375, 41, 28),
                "wordsim353": (112, 16, 18)}


@pytest.mark.parametrize("name", HUMAN_RATED)
def test_counts_ranges_and_fields(name):
    data = human_rated(name)
    assert len(data) == COUNTS[name] and data.split == "all" and data.name == name
    for array in (data.first, data.second, data.scores, data.first_item, data.second_item):
        assert array.shape == (COUNTS[name],)
    assert data.scores.dtype == np.float64 and data.first.dtype.kind == "U"
    assert np.issubdtype(data.first_item.dtype, np.integer)
    lo, hi = data.score_range
    assert lo <= data.scores.min() and data.scores.max() <= hi
    # The ranges are wide: ratings spread over most of the scale, not a narrow band.
    assert data.scores.max() - data.scores.min() > 0.7 * (hi - lo)
    # The same item id always carries the same text.
    ids = np.concatenate([data.first_item, data.second_item])
    texts = np.concatenate([data.first, data.second])
    for item in np.unique(ids)[:50]:
        assert len(set(texts[ids == item])) == 1
    with pytest.raises(ValueError):
        data.scores[0] = 0.0  # read-only


def test_lee_matrix_as_stored_and_first_rows():
    data = human_rated("lee2005")
    assert data.score_range == (0.2, 1.0) and 0.0 <= data.scores.min() and data.scores.max() <= 1.0
    assert "Lee" in data.source and "2005" in data.source
    # The pairs are the strict upper triangle of 50 documents in row-major order.
    i, j = np.triu_indices(50, k=1)
    np.testing.assert_array_equal(data.first_item, i)
    np.testing.assert_array_equal(data.second_item, j)
    # The stored matrix is upper triangular with a unit diagonal (not symmetric as read).
    path = human_rated_module._data_dir() / "similarities0-1.txt"
    matrix = np.array([[float(x) for x in row.split()] for row in path.read_text().splitlines()])
    assert matrix.shape == (50, 50)
    np.testing.assert_array_equal(np.diag(matrix), 1.0)
    np.testing.assert_array_equal(matrix[np.tril_indices(50, k=-1)], 0.0)
    np.testing.assert_array_equal(data.scores, matrix[i, j])
    # The file's first row, read by eye: (0, 1) is rated 0.3 and (0, 13) is rated 1.
    assert data.scores[0] == 0.3 and data.scores[12] == 1.0
    # Every score is a mean of 1-5 ratings over 1-11 raters, divided by 5.
    scaled = 5.0 * data.scores[:, None] * np.arange(1, 12)[None, :]
    assert np.all(np.min(np.abs(scaled - np.round(scaled)), axis=1) < 1e-4)
    # latin-1 text decoded: the pound sign occurs, no replacement characters.
    joined = "".join(np.unique(data.first))
    assert "\u00a3" in joined and "\ufffd" not in joined
    assert len(np.unique(np.concatenate([data.first, data.second]))) == 50


def test_word_sets_rows_and_sources():
    simlex, wordsim = human_rated("simlex999"), human_rated("wordsim353")
    assert simlex.score_range == wordsim.score_range == (0.0, 10.0)
    assert (simlex.first[0], simlex.second[0], simlex.scores[0]) == ("old", "new", 1.58)
    assert (wordsim.first[0], wordsim.second[0], wordsim.scores[0]) == ("love", "sex", 6.77)
    assert not any(w.startswith("#") for w in wordsim.first)  # comment lines skipped
    assert "SimLex-999" in simlex.source and "Hill" in simlex.source
    assert "WordSim-353" in wordsim.source and "Finkelstein" in wordsim.source


@pytest.mark.parametrize("name", HUMAN_RATED)
def test_splits_are_disjoint_by_item_and_deterministic(name):
    everything = human_rated(name)
    all_pairs = set(zip(everything.first_item.tolist(), everything.second_item.tolist(),
                        everything.scores.tolist(), strict=True))
    splits = {s: human_rated(name, split=s) for s in ("train", "valid", "test")}
    assert tuple(len(splits[s]) for s in ("train", "valid", "test")) == SPLIT_COUNTS[name]
    items = {}
    for split, data in splits.items():
        assert data.split == split
        pairs = set(zip(data.first_item.tolist(), data.second_item.tolist(),
                        data.scores.tolist(), strict=True))
        assert pairs <= all_pairs  # each split's pairs are pairs of the whole set
        items[split] = set(data.first_item.tolist()) | set(data.second_item.tolist())
        texts = set(data.first.tolist()) | set(data.second.tolist())
        items[split + "_text"] = texts
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not items[a] & items[b]
        assert not items[a + "_text"] & items[b + "_text"]
    again = human_rated(name, split="test")
    np.testing.assert_array_equal(again.first_item, splits["test"].first_item)
    np.testing.assert_array_equal(again.scores, splits["test"].scores)


def test_item_split_fractions():
    part = human_rated_module._item_split(437)
    assert np.bincount(part).tolist() == [262, 87, 88]
    np.testing.assert_array_equal(part, human_rated_module._item_split(437))


def test_bad_name_and_split():
    with pytest.raises(ValueError, match="lee2005.*simlex999.*wordsim353"):
        human_rated("stsb")
    with pytest.raises(ValueError, match="all.*train.*valid.*test"):
        human_rated("lee2005", split="dev")
    with pytest.raises(ValueError, match="name must be one of"):
        human_rated_task("simlex")


def test_missing_package_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(human_rated_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gensim" else real(name, *a))
    human_rated_module._load_all.cache_clear()
    try:
        with pytest.raises(ModuleNotFoundError, match=r"pip install gensim==4\.4\.0"):
            human_rated("wordsim353")
    finally:
        monkeypatch.undo()
        human_rated_module._load_all.cache_clear()
    assert len(human_rated("wordsim353")) == 353


@pytest.mark.parametrize("name", HUMAN_RATED)
def test_pair_task(name):
    task = human_rated_task(name)
    assert isinstance(task, PairTask) and task.name == name and task.graded
    assert tuple(len(s) for s in (task.train, task.valid, task.test)) == SPLIT_COUNTS[name]
    lo, hi = human_rated(name).score_range
    assert task.positive_above == pytest.approx(0.5 * (lo + hi)) and task.max_label == hi
    test = human_rated(name, split="test")
    np.testing.assert_allclose(task.test.labels, test.scores, rtol=1e-6)
    assert task.test.texts_a == tuple(test.first.tolist())
    # No test text occurs in the text a tokenizer is built from.
    assert not set(task.texts()) & (set(task.test.texts_a) | set(task.test.texts_b))
    binary = task.binary_labels(task.train)
    assert 0 < binary.mean() < 1  # both classes present in training
