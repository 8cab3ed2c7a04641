"""A word-level tokenizer built from the training text.

Text is lower-cased and split into words, single CJK characters (Chinese has no spaces, and
character-level units are the usual choice for it) and single punctuation marks. The vocabulary
holds the most frequent units of the training text after four special tokens; anything else
maps to ``[UNK]``.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Iterable, Sequence

import numpy as np

from diffusionlab import _checks

__all__ = ["PAD", "CLS", "SEP", "UNK", "Tokenizer"]

PAD, CLS, SEP, UNK = 0, 1, 2, 3
_SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[UNK]")
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_UNIT = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")


def split_units(text: str) -> list[str]:
    """Lower-cases ``text`` and splits it into words, CJK characters and punctuation marks."""
    return _UNIT.findall(text.lower())


@dataclasses.dataclass(frozen=True)
class Tokenizer:
    """A fixed vocabulary: ``vocab[i]`` is the unit of id ``i``; ids 0-3 are special.

    Build one with :meth:`fit`. ``encode``/``decode`` round-trip every text made of in-vocabulary
    units up to normalisation: ``decode(encode(t)) == " ".join(split_units(t))``.
    """

    vocab: tuple[str, ...]

    def __post_init__(self):
        if tuple(self.vocab[: len(_SPECIALS)]) != _SPECIALS:
            raise ValueError(f"vocab must start with the special tokens {_SPECIALS}")
        if len(set(self.vocab)) != len(self.vocab):
            raise ValueError("vocab entries must be unique")
        object.__setattr__(self, "_ids", {u: i for i, u in enumerate(self.vocab)})

    @classmethod
    def fit(cls, texts: Iterable[str], *, max_vocab: int | None = None,
            min_count: int = 1) -> Tokenizer:
        """Builds the vocabulary from training texts, most frequent units first.

        Args:
          texts: the training sentences.
          max_vocab: total size including the 4 special tokens (None: no cap); >= 5.
          min_count: units seen fewer times are left to ``[UNK]``.

        Raises:
          ValueError: ``max_vocab < 5`` or ``min_count < 1``.
        """
        if isinstance(texts, (str, bytes)) or not hasattr(texts, "__iter__"):
            raise TypeError(f"texts must be an iterable of strings; got {type(texts).__name__}")
        if max_vocab is not None:
            max_vocab = _checks.check_int(max_vocab, "max_vocab", low=len(_SPECIALS) + 1,
                                          high=2**24)
        min_count = _checks.check_int(min_count, "min_count", low=1)
        counts = collections.Counter(u for t in texts for u in split_units(t))
        # Ties broken alphabetically, so the vocabulary does not depend on the text order.
        ranked = sorted((u for u, c in counts.items() if c >= min_count),
                        key=lambda u: (-counts[u], u))
        if max_vocab is not None:
            ranked = ranked[: max_vocab - len(_SPECIALS)]
        return cls(_SPECIALS + tuple(ranked))

    @property
    def size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        """Ids of the units of ``text`` (no special tokens added)."""
        return [self._ids.get(u, UNK) for u in split_units(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Joins the units of ``ids`` with spaces, dropping ``[PAD]``, ``[CLS]`` and ``[SEP]``."""
        return " ".join(self.vocab[i] for i in ids if i not in (PAD, CLS, SEP))

    def encode_batch(self, texts: Sequence[str], *, max_length: int) -> np.ndarray:
        """``(N, max_length)`` int32 ids ``[CLS] text``, truncated and right-padded with 0."""
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        out = np.zeros((len(texts), max_length), np.int32)
        for row, text in enumerate(texts):
            ids = [CLS] + self.encode(text)
            out[row, : min(len(ids), max_length)] = ids[:max_length]
        return out

    def encode_pairs(self, texts_a: Sequence[str], texts_b: Sequence[str], *,
                     max_length: int) -> np.ndarray:
        """``(N, max_length)`` ids ``[CLS] a [SEP] b [SEP]`` for a cross-encoder.

        Each side keeps at most half of the room, so a long first text cannot push the
        second one out.
        """
        if len(texts_a) != len(texts_b):
            raise ValueError(f"texts_a and texts_b must have the same length, got "
                             f"{len(texts_a)} and {len(texts_b)}")
        if max_length < 5:
            raise ValueError(f"max_length must be >= 5, got {max_length}")
        half = (max_length - 3) // 2
        out = np.zeros((len(texts_a), max_length), np.int32)
        for row, (a, b) in enumerate(zip(texts_a, texts_b, strict=True)):
            ids_a, ids_b = self.encode(a), self.encode(b)
            room_b = max_length - 3 - min(len(ids_a), half)
            ids = [CLS] + ids_a[: max_length - 3 - min(len(ids_b), room_b)]
            ids += [SEP] + ids_b[:room_b] + [SEP]
            out[row, : len(ids)] = ids
        return out
