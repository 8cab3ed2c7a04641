"""Sentence-pair tasks: three splits of (text_a, text_b, label) and how to binarise labels."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = ["PairSplit", "PairTask"]


@dataclasses.dataclass(frozen=True)
class PairSplit:
    """One split: ``texts_a[i]``, ``texts_b[i]`` with graded label ``labels[i]``."""

    texts_a: tuple[str, ...]
    texts_b: tuple[str, ...]
    labels: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "texts_a", tuple(self.texts_a))
        object.__setattr__(self, "texts_b", tuple(self.texts_b))
        labels = np.asarray(self.labels, np.float32)
        if labels.ndim != 1 or not (len(self.texts_a) == len(self.texts_b) == labels.shape[0]):
            raise ValueError(f"texts_a, texts_b and labels must have one common length, got "
                             f"{len(self.texts_a)}, {len(self.texts_b)} and {labels.shape}")
        if not np.all(np.isfinite(labels)):
            raise ValueError("labels must be finite")
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(self.texts_a)

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[str, str, float]]) -> PairSplit:
        """Builds a split from ``(text_a, text_b, label)`` rows."""
        return cls(tuple(r[0] for r in rows), tuple(r[1] for r in rows),
                   np.array([r[2] for r in rows], np.float32))


@dataclasses.dataclass(frozen=True)
class PairTask:
    """A task with train/valid/test splits.

    Attributes:
      name: a short name for tables.
      train, valid, test: the splits.
      positive_above: labels strictly above this are "similar" when a binary label is needed
        (Sentence-BERT's classifier, cross-entropy, accuracy); 0.5 for 0/1 labels, 2.5 for STS-B.
      max_label: the largest label, so cosine-MSE targets are ``label / max_label``.
      description: one line for reports.
    """

    name: str
    train: PairSplit
    valid: PairSplit
    test: PairSplit
    positive_above: float = 0.5
    max_label: float = 1.0
    description: str = ""

    @property
    def graded(self) -> bool:
        """True when the labels take more than two values (accuracy then uses binarised labels)."""
        return len(np.unique(self.train.labels)) > 2

    def binary_labels(self, split: PairSplit) -> np.ndarray:
        """``(N,)`` int32: 1 where ``label > positive_above``."""
        return (split.labels > self.positive_above).astype(np.int32)

    def texts(self) -> tuple[str, ...]:
        """Every training sentence (what a tokenizer is built from)."""
        return self.train.texts_a + self.train.texts_b
