r"""Human-rated similarity data: the Lee documents, SimLex-999 and WordSim-353.

Three standard sets of pairs with a mean human similarity rating each, as shipped inside the
PyPI wheel ``gensim==4.4.0`` under ``gensim/test/test_data/`` (the files are read directly; gensim
itself is never imported):

* ``"lee2005"``: 50 short news documents (``lee.cor``, one per line, latin-1) and the mean
  ratings of all 1,225 document pairs (``similarities0-1.txt``). Students rated each pair on a
  5-point scale, 1 (highly unrelated) to 5 (highly related), about ten raters a pair; the file
  holds the mean rating divided by 5, so scores lie in $[0.2, 1]$. The matrix is stored upper
  triangular (unit diagonal, zeros below it); the pairs are its 1,225 strict upper-triangle
  entries. Lee, Pincombe & Welsh (2005), "An empirical evaluation of models of text document
  similarity", Proc. 27th Annual Conference of the Cognitive Science Society, 1254-1259.
* ``"simlex999"``: 999 word pairs rated for *similarity* (not relatedness), 0-10.
  Hill, Reichart & Korhonen (2015), "SimLex-999: Evaluating semantic models with (genuine)
  similarity estimation", Computational Linguistics 41(4), 665-695. One unordered pair occurs
  twice (``sly``/``strange`` in both orders); both rows are kept, as shipped.
* ``"wordsim353"``: 353 word pairs rated for *relatedness*, 0-10. Finkelstein, Gabrilovich,
  Matias, Rivlin, Solan, Wolfman & Ruppin (2002), "Placing search in context: the concept
  revisited", ACM Transactions on Information Systems 20(1), 116-131. As shipped it repeats
  ``money``/``cash``, holds ``bank``/``money`` in both orders and the self-pair
  ``tiger``/``tiger`` (10.0); all 353 rows are kept. Words keep their case (``Jerusalem``).

Splits are by item (document for Lee, word for the word sets), so that no text of the test
split is seen in training: the items, sorted, are permuted by
``np.random.default_rng(SPLIT_SEED).permutation`` with ``SPLIT_SEED = 0``; the first
``round(0.6 M)`` of the permutation are train items, the next ``round(0.2 M)`` valid, the rest
test. A pair belongs to a split when both its items do; pairs across splits are dropped from
train/valid/test (they remain in ``"all"``). Pairs kept (items in parentheses):

==============  =====================  ================  ================  ================
set             all                    train             valid             test
==============  =====================  ================  ================  ================
lee2005         1,225 (50 documents)   435 (30)          45 (10)           45 (10)
simlex999       999 (1,028 words)      375 (617)         41 (206)          28 (205)
wordsim353      353 (437 words)        112 (262)         16 (87)           18 (88)
==============  =====================  ================  ================  ================

Only 43% of the Lee pairs, 44% of the SimLex-999 pairs and 41% of the WordSim-353 pairs
survive the item split, and the word test splits are small (28 and 18 pairs): that is the
price of test texts never seen in training. The ``lee_background.cor`` corpus of the same
wheel, 300 further news documents without ratings, is not used here.

Reference for the use: 苏剑林, "CoSENT（一）：比Sentence-BERT更有效的句向量方案",
https://kexue.fm/archives/8847 (Spearman correlation against graded human similarity).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import pathlib

import numpy as np

from diffusionlab.cosent.tasks import PairSplit, PairTask

__all__ = ["HUMAN_RATED", "SPLITS", "SPLIT_SEED", "HumanRated", "human_rated",
           "human_rated_task"]

HUMAN_RATED = ("lee2005", "simlex999", "wordsim353")
SPLITS = ("all", "train", "valid", "test")
SPLIT_SEED = 0
_FRACTIONS = (0.6, 0.2)  # train, valid; test takes the rest
_INSTALL = "pip install gensim==4.4.0"

_SOURCES = {
    "lee2005": ("Lee, Pincombe & Welsh (2005), An empirical evaluation of models of text "
                "document similarity, Proc. CogSci 2005, 1254-1259"),
    "simlex999": ("Hill, Reichart & Korhonen (2015), SimLex-999: Evaluating semantic models "
                  "with (genuine) similarity estimation, Computational Linguistics 41(4), "
                  "665-695"),
    "wordsim353": ("Finkelstein et al. (2002), Placing search in context: the concept "
                   "revisited, ACM TOIS 20(1), 116-131 (WordSim-353)"),
}
# Native score ranges: Lee's mean 1-5 rating divided by 5; the word sets rate 0-10.
_RANGES = {"lee2005": (0.2, 1.0), "simlex999": (0.0, 10.0), "wordsim353": (0.0, 10.0)}


@dataclasses.dataclass(frozen=True)
class HumanRated:
    """One split of a human-rated set: pair ``i`` is ``(first[i], second[i])``, rated ``scores[i]``.

    Attributes:
      name: one of :data:`HUMAN_RATED`.
      split: one of ``"all"``, ``"train"``, ``"valid"``, ``"test"``.
      first, second: ``(N,)`` str, the two texts (documents or words) of each pair.
      scores: ``(N,)`` float64 mean human rating, in the set's native range ``score_range``.
      first_item, second_item: ``(N,)`` int64 item ids: the index of each text among the set's
        sorted distinct items (the Lee documents keep their file order, 0-49). Ids are the same
        in every split of a set, so splits can be compared by id.
      score_range: ``(lo, hi)``, the range the ratings can take.
      source: the citation of the data.

    The arrays are read-only.
    """

    name: str
    split: str
    first: np.ndarray
    second: np.ndarray
    scores: np.ndarray
    first_item: np.ndarray
    second_item: np.ndarray
    score_range: tuple[float, float]
    source: str

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def _data_dir() -> pathlib.Path:
    spec = importlib.util.find_spec("gensim")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the human-rated similarity data ship inside gensim, which is not installed: "
            f"`{_INSTALL}`")
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "test" / "test_data"


def _read(directory: pathlib.Path, filename: str, encoding: str) -> str:
    path = directory / filename
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the data ship in the gensim 4.4.0 wheel, "
                                f"`{_INSTALL}`")
    return path.read_text(encoding=encoding)


def _word_pairs(text: str):
    """``(first, second, scores)`` from tab-separated ``word word score`` rows (``#`` comments)."""
    rows = [line.split("\t") for line in text.splitlines()
            if line.strip() and not line.startswith("#")]
    for row in rows:
        if len(row) != 3:
            raise ValueError(f"malformed word-pair row {row!r}: expected word<TAB>word<TAB>score")
    return ([r[0].strip() for r in rows], [r[1].strip() for r in rows],
            np.array([float(r[2]) for r in rows], np.float64))


@functools.cache
def _load_all(name: str):
    """``(first, second, scores, first_item, second_item, num_items)`` of every pair of ``name``."""
    directory = _data_dir()
    if name == "lee2005":
        documents = _read(directory, "lee.cor", "latin-1").splitlines()
        documents = [d.strip() for d in documents if d.strip()]
        rows = _read(directory, "similarities0-1.txt", "ascii").splitlines()
        matrix = np.array([[float(x) for x in row.split()] for row in rows if row.strip()],
                          np.float64)
        if len(documents) != 50 or matrix.shape != (50, 50):
            raise ValueError(f"expected 50 Lee documents and a 50x50 rating matrix, got "
                             f"{len(documents)} and {matrix.shape}")
        i, j = np.triu_indices(50, k=1)
        first = [documents[k] for k in i]
        second = [documents[k] for k in j]
        return first, second, matrix[i, j], i.astype(np.int64), j.astype(np.int64), 50
    filename = {"simlex999": "simlex999.txt", "wordsim353": "wordsim353.tsv"}[name]
    first, second, scores = _word_pairs(_read(directory, filename, "utf-8"))
    items = sorted(set(first) | set(second))
    index = {w: k for k, w in enumerate(items)}
    return (first, second, scores, np.array([index[w] for w in first], np.int64),
            np.array([index[w] for w in second], np.int64), len(items))


def _item_split(num_items: int) -> np.ndarray:
    """``(M,)`` int: 0 (train), 1 (valid) or 2 (test) for each item id."""
    order = np.random.default_rng(SPLIT_SEED).permutation(num_items)
    num_train = round(_FRACTIONS[0] * num_items)
    num_valid = round(_FRACTIONS[1] * num_items)
    part = np.empty(num_items, np.int64)
    part[order[:num_train]] = 0
    part[order[num_train:num_train + num_valid]] = 1
    part[order[num_train + num_valid:]] = 2
    return part


def _frozen(array) -> np.ndarray:
    array = np.array(array)
    array.flags.writeable = False
    return array


def human_rated(name: str, *, split: str = "all") -> HumanRated:
    """The pairs and mean human ratings of a human-rated similarity set.

    Args:
      name: ``"lee2005"`` (document pairs, scores in $[0.2, 1]$), ``"simlex999"`` or
        ``"wordsim353"`` (word pairs, scores in $[0, 10]$).
      split: ``"all"`` (every pair, as shipped), or ``"train"``/``"valid"``/``"test"``: the
        pairs whose two items both fall in that part of the fixed item split (0.6/0.2/0.2 of
        the items; see the module docstring for the permutation and the pair counts).

    Returns:
      A :class:`HumanRated`; for ``split="all"`` it holds 1,225, 999 or 353 pairs.

    Raises:
      ValueError: an unknown ``name`` or ``split`` (the message lists the valid values).
      ModuleNotFoundError: gensim (which ships the files) is not installed.
      FileNotFoundError: gensim is installed without its test data.
    """
    if name not in HUMAN_RATED:
        raise ValueError(f"name must be one of {HUMAN_RATED}, got {name!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    first, second, scores, first_item, second_item, num_items = _load_all(name)
    if split == "all":
        keep = np.ones(len(scores), bool)
    else:
        part = _item_split(num_items)
        wanted = SPLITS.index(split) - 1
        keep = (part[first_item] == wanted) & (part[second_item] == wanted)
    return HumanRated(
        name=name, split=split,
        first=_frozen(np.array(first, dtype=str)[keep]),
        second=_frozen(np.array(second, dtype=str)[keep]),
        scores=_frozen(scores[keep]), first_item=_frozen(first_item[keep]),
        second_item=_frozen(second_item[keep]), score_range=_RANGES[name],
        source=_SOURCES[name])


def human_rated_task(name: str) -> PairTask:
    """A human-rated set as a :class:`PairTask` for the from-scratch pipeline.

    The splits are the item splits of :func:`human_rated` (no test text occurs in training, so
    a tokenizer built from the training text meets unseen test words as ``[UNK]``). Labels are
    the graded mean ratings (float32); ``positive_above`` is the midpoint of the score range
    (0.6 for Lee, i.e. a mean rating above 3 of 5; 5.0 for the word sets) and ``max_label``
    its top (1.0 or 10.0), so cosine-MSE targets are ``label / max_label``.

    Raises:
      ValueError, ModuleNotFoundError, FileNotFoundError: as :func:`human_rated`.
    """
    splits = {}
    for split in ("train", "valid", "test"):
        data = human_rated(name, split=split)
        splits[split] = PairSplit(tuple(data.first.tolist()), tuple(data.second.tolist()),
                                  data.scores.astype(np.float32))
    lo, hi = _RANGES[name]
    return PairTask(name=name, train=splits["train"], valid=splits["valid"],
                    test=splits["test"], positive_above=0.5 * (lo + hi), max_label=hi,
                    description=f"{name}: human-rated pairs split by item; {_SOURCES[name]}")
