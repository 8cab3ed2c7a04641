"""Data sets by name: the 8×8 digits or a 2-D toy, one accessor for the experiments' choice.

An experiment that compares methods "on 8gaussians, two_moons and digits" picks its training
and held-out examples here, and scores samples with :func:`diffusionlab.metrics.quality` in
the :func:`domain` of the name, so the choice of data and of metric is made in one place.
"""

from __future__ import annotations

import jax
import numpy as np

from diffusionlab import _checks
from diffusionlab.data.digits import digits
from diffusionlab.data.toy2d import TOY2D_NAMES, toy2d

DATASET_NAMES = ("digits", *TOY2D_NAMES)
_SPLITS = ("train", "test")


def domain(name: str) -> str:
    """The domain of data set ``name``: ``"digits"`` (8×8 images) or ``"toy"`` (2-D points).

    Raises:
      ValueError: for an unknown ``name`` (the message lists the valid ones); TypeError for a
        non-string.
    """
    _checks.check_choice(name, "name", DATASET_NAMES)
    return "digits" if name == "digits" else "toy"


def examples(name: str, split: str, *, num: int | None = None,
             key: jax.Array | None = None) -> jax.Array | np.ndarray:
    """Examples of data set ``name`` for ``split``.

    * ``"digits"``: the fixed split's images ``(N, 8, 8, 1)`` float32 in [-1, 1] (NumPy),
      the first ``num`` of them when ``num`` is given (all of them when ``num`` exceeds the
      split: 1437 train, 360 test images); ``key`` is unused.
    * a 2-D toy (``TOY2D_NAMES``): ``num`` fresh draws ``(num, 2)`` float32 at ``key``. A toy
      has no fixed split: training and held-out sets are draws at different keys, and
      ``split`` only names the role.

    Args:
      name: one of ``DATASET_NAMES``.
      split: ``"train"`` or ``"test"``.
      num: how many examples (≥ 1); required for a toy.
      key: a PRNG key; required for a toy.

    Raises:
      ValueError: an unknown ``name`` or ``split``, ``num < 1``, or a toy without ``num``.
      TypeError: a toy without a PRNG ``key``, or arguments of the wrong type.
    """
    _checks.check_choice(split, "split", _SPLITS)
    if domain(name) == "digits":
        images = digits(split)[0]
        return images if num is None else images[:_checks.check_int(num, "num", low=1)]
    if num is None:
        raise ValueError(f"num is required for the toy data set {name!r} (it draws fresh points)")
    return toy2d(name, num, key=key)
