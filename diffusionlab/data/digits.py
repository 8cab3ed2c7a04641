"""scikit-learn's 8×8 digits (shipped inside the package), scaled to [-1, 1].

1797 images of 8×8 pixels with grey levels 0…16. The split is fixed: a seeded
permutation puts 1437 images in ``train`` and 360 in ``test`` (80/20).
"""

from __future__ import annotations

import functools

import numpy as np

from diffusionlab import _checks

_SPLITS = ("train", "test")
_NUM_TEST = 360


@functools.cache
def _load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0 * 2.0 - 1.0
    labels = bunch.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(labels))
    return images[order][..., None], labels[order]


def _check_split(split: str) -> None:
    _checks.check_choice(split, "split", _SPLITS)


def digits(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The 8×8 digits of one split.

    Returns:
      ``(images, labels)``: images ``(N, 8, 8, 1)`` float32 in [-1, 1], labels ``(N,)`` int32.
    """
    _check_split(split)
    images, labels = _load()
    cut = len(labels) - _NUM_TEST
    sl = slice(0, cut) if split == "train" else slice(cut, None)
    return images[sl], labels[sl]
