"""Byte-level tokenizer: every UTF-8 byte is a token, plus padding, BOS and EOS.

Byte-level keeps the vocabulary fixed, so test-time text with unseen words, keys or values
still tokenises without an unknown token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

from diffusionlab import _checks

__all__ = ["ByteTokenizer"]


@dataclasses.dataclass(frozen=True)
class ByteTokenizer:
    """Maps text to ids ``byte + 3``; ids 0, 1, 2 are padding, BOS and EOS.

    Attributes:
      pad_id: left padding; the language model masks it out.
      bos_id: starts every prompt.
      eos_id: ends every answer.
    """

    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    offset: int = 3

    @property
    def vocab_size(self) -> int:
        return 256 + self.offset

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> np.ndarray:
        """Token ids (int32) of ``text``, optionally framed by BOS and EOS."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str; got {type(text).__name__}")
        ids = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32) + self.offset
        parts = ([np.array([self.bos_id], np.int32)] if bos else []) + [ids]
        parts += [np.array([self.eos_id], np.int32)] if eos else []
        return np.concatenate(parts)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text of ``ids`` up to the first EOS; padding and BOS are skipped."""
        if isinstance(ids, (np.ndarray, jax.Array)):
            ids = np.asarray(ids).reshape(-1)
        ids = _checks.check_sequences(ids, "ids", low=0, high=self.vocab_size - 1, nested=False)
        out = bytearray()
        for i in ids:
            if i == self.eos_id:
                break
            if i >= self.offset:
                out.append(i - self.offset)
        return out.decode("utf-8", errors="replace")
