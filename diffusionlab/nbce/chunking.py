"""Cutting a long text into overlapping windows, each short enough to be one NBCE context.

NBCE suits answers whose pieces each depend on one context, so one long document can be cut
into sliding windows; the overlap lets a window hold a fact that a cut would otherwise split
(Su, "Supplementary notes and analysis of NBCE", https://kexue.fm/archives/9632, §"scope").
"""

from __future__ import annotations

from collections.abc import Sequence

from diffusionlab import _checks

__all__ = ["split_into_chunks"]


def split_into_chunks(sequence: Sequence, *, chunk_length: int, overlap: int = 0) -> list:
    """Windows ``sequence[s : s + chunk_length]`` with stride ``chunk_length - overlap``.

    The windows cover the whole sequence; the last one is aligned with its end (so it may
    overlap its predecessor by more than ``overlap``). Works on token lists, arrays and strings.

    Args:
      sequence: tokens (or text).
      chunk_length: window length, >= 1.
      overlap: shared items between consecutive windows, in [0, chunk_length).

    Returns:
      A list of windows (one window if the sequence is short enough).

    Raises:
      ValueError: ``chunk_length < 1`` or ``overlap`` outside [0, chunk_length).
    """
    if not hasattr(sequence, "__len__") or not hasattr(sequence, "__getitem__"):
        raise TypeError(f"sequence must be a list, array or string; got {type(sequence).__name__}")
    chunk_length = _checks.check_int(chunk_length, "chunk_length", low=1)
    overlap = _checks.check_int(overlap, "overlap", low=0)
    if not 0 <= overlap < chunk_length:
        raise ValueError(f"overlap must lie in [0, chunk_length={chunk_length}), got {overlap}")
    total = len(sequence)
    if total <= chunk_length:
        return [sequence[:]]
    stride = chunk_length - overlap
    starts = list(range(0, total - chunk_length, stride)) + [total - chunk_length]
    return [sequence[s:s + chunk_length] for s in starts]
