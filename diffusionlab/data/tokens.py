"""A quantised view of the digits as 64-token sequences, for discrete diffusion.

Each pixel's grey level in [-1, 1] is rounded to one of ``levels`` values, giving a token
in ``[0, levels)``; the image is read row by row into a sequence of 64 tokens.
"""

from __future__ import annotations

import numpy as np

from diffusionlab import _checks
from diffusionlab.data.digits import digits


def _check_levels(levels: int) -> int:
    return _checks.check_int(levels, "levels", low=2, high=17)


def digit_tokens(split: str = "train", *, levels: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Digits as token sequences: ``(tokens (N, 64) int32 in [0, levels), labels (N,))``."""
    levels = _check_levels(levels)
    images, labels = digits(split)
    unit = (images.reshape(len(images), 64) + 1.0) / 2.0
    tokens = np.clip(np.rint(unit * (levels - 1)), 0, levels - 1).astype(np.int32)
    return tokens, labels


def tokens_to_images(tokens, *, levels: int) -> np.ndarray:
    """Inverse view: ``(N, 64)`` tokens → ``(N, 8, 8, 1)`` float32 images in [-1, 1]."""
    levels = _check_levels(levels)
    tokens = np.asarray(_checks.int_array(tokens, "tokens", low=0, high=levels - 1,
                                          shape=(None, 64), layout="(N, 64)"))
    return (tokens.astype(np.float32) / (levels - 1) * 2.0 - 1.0).reshape(-1, 8, 8, 1)
