"""Loads the essays' datasets (ATEC, BQ, LCQMC, PAWSX, STS-B) from their TSV files.

Two layouts are read:

* headerless ``sentence1<TAB>sentence2<TAB>label`` lines, as in the Chinese releases used by
  the essays (``ATEC.train.data``, ``LCQMC.valid.data``, ...);
* a header row naming the columns, as in GLUE's STS-B ``train.tsv``: the text columns are
  ``sentence1``/``sentence2`` (or ``text1``/``text2``, ``text_a``/``text_b``), the label column
  ``label`` (or ``score``, ``similarity``).

Reference: 苏剑林, "CoSENT（一）", https://kexue.fm/archives/8847
"""

from __future__ import annotations

import pathlib

from diffusionlab import _checks
from diffusionlab.cosent.tasks import PairSplit, PairTask

__all__ = ["load_pair_tsv", "load_pair_task"]

_TEXT_A = ("sentence1", "text1", "text_a", "sentence_a", "s1")
_TEXT_B = ("sentence2", "text2", "text_b", "sentence_b", "s2")
_LABEL = ("label", "score", "similarity", "gold_label")


def _column(header: list[str], names: tuple[str, ...], path, what: str) -> int:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    raise ValueError(f"{path}: the header has no {what} column (looked for {names})")


def load_pair_tsv(path: str | pathlib.Path) -> PairSplit:
    """Reads one split file into a :class:`PairSplit`.

    Args:
      path: a tab-separated file, headerless with three columns or with a header row.

    Returns:
      The split, labels as float32.

    Raises:
      FileNotFoundError: no such file.
      ValueError: an empty file, a row with too few columns, or a label that is not a finite
        number (the message names the line).
    """
    _checks.check_path(path, "path")
    path = pathlib.Path(path)
    lines = [ln.rstrip("\r\n") for ln in path.read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise ValueError(f"{path}: the file is empty")
    first = lines[0].split("\t")
    try:
        float(first[-1])
        columns, start = (0, 1, 2), 0
    except ValueError:
        columns = (_column(first, _TEXT_A, path, "first-text"),
                   _column(first, _TEXT_B, path, "second-text"),
                   _column(first, _LABEL, path, "label"))
        start = 1
    rows = []
    for number, line in enumerate(lines[start:], start=start + 1):
        fields = line.split("\t")
        if len(fields) <= max(columns):
            raise ValueError(f"{path}:{number}: expected at least {max(columns) + 1} "
                             f"tab-separated columns, got {len(fields)}")
        try:
            label = float(fields[columns[2]])
        except ValueError:
            raise ValueError(f"{path}:{number}: label {fields[columns[2]]!r} is not a "
                             f"number") from None
        if label != label or label in (float("inf"), float("-inf")):
            raise ValueError(f"{path}:{number}: label {label} is not finite")
        rows.append((fields[columns[0]], fields[columns[1]], label))
    if not rows:
        raise ValueError(f"{path}: no data rows after the header")
    return PairSplit.from_rows(rows)


_SPLIT_NAMES = {"train": ("train",), "valid": ("valid", "dev", "validation"), "test": ("test",)}


def load_pair_task(directory: str | pathlib.Path, name: str, *,
                   positive_above: float | None = None) -> PairTask:
    """Loads ``<name>.{train,valid,test}.data`` (or ``.tsv``; ``dev`` for ``valid``).

    Args:
      directory: where the three files are.
      name: the dataset's file prefix, e.g. ``"LCQMC"`` or ``"STS-B"``.
      positive_above: threshold for binary uses; default 2.5 for labels up to 5 (STS-B)
        and 0.5 otherwise.

    Returns:
      A :class:`PairTask` named ``name``.

    Raises:
      FileNotFoundError: a split file is missing (the message lists the names tried).
    """
    _checks.check_path(directory, "directory")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (the file prefix); got {name!r}")
    directory = pathlib.Path(directory)
    splits = {}
    for split, aliases in _SPLIT_NAMES.items():
        tried = [directory / f"{name}.{alias}.{ext}" for alias in aliases
                 for ext in ("data", "tsv")]
        found = next((p for p in tried if p.exists()), None)
        if found is None:
            raise FileNotFoundError(f"no {split} file for {name!r}; tried "
                                    f"{', '.join(p.name for p in tried)} in {directory}")
        splits[split] = load_pair_tsv(found)
    max_label = float(max(s.labels.max() for s in splits.values()))
    if positive_above is None:
        positive_above = max_label / 2 if max_label > 1 else 0.5
    return PairTask(name, splits["train"], splits["valid"], splits["test"],
                    positive_above=positive_above, max_label=max(max_label, 1.0),
                    description=f"loaded from {directory}")
