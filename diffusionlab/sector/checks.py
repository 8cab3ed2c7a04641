"""Input checks shared by the sector solvers: each names the argument and its valid range."""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

import numpy as np

FULL_TURN = 2 * np.pi
"""The float64 full turn. θ is read in units of this constant, so θ = 2π is exactly the
whole circle and θ = π exactly half of it."""

MAX_N = 2**53  # n is carried as a float64 inside the kernels, exact up to here


def check_n(n: object) -> int:
    """Returns ``n`` as a Python int; ValueError unless it is an integer in [1, 2**53]."""
    if isinstance(n, bool) or not isinstance(n, numbers.Real):
        raise ValueError(f"n must be an integer in [1, 2**53], got {n!r}")
    if isinstance(n, numbers.Integral):
        value = int(n)
    else:
        if not math.isfinite(float(n)) or float(n) != math.floor(float(n)):
            raise ValueError(f"n must be an integer in [1, 2**53], got {n!r}")
        value = int(n)
    if not 1 <= value <= MAX_N:
        raise ValueError(f"n must be an integer in [1, 2**53], got {n!r}")
    return value


def check_turns(q: object) -> Fraction:
    """Returns ``q`` (the angle as a fraction of a full turn) as a Fraction in (0, 1]."""
    if isinstance(q, (complex, bool, np.complexfloating)) or q is None:
        raise ValueError(f"q (theta / 2pi) must be a rational number in (0, 1], got {q!r}")
    try:
        value = Fraction(q) if not isinstance(q, float) or math.isfinite(q) else None
    except (TypeError, ValueError, ZeroDivisionError):
        value = None
    if value is None or not 0 < value <= 1:
        raise ValueError(f"q (theta / 2pi) must be a rational number in (0, 1], got {q!r}")
    return value


def check_theta(theta) -> np.ndarray:
    """Returns ``theta`` as a float64 array; ValueError unless every entry is in (0, 2π]."""
    if isinstance(theta, (complex, np.complexfloating, str, bytes)) or theta is None or (
            hasattr(theta, "dtype") and np.dtype(theta.dtype).kind not in "iuf"):
        raise ValueError(f"theta must be a real angle in radians in (0, 2pi], got {theta!r}")
    try:
        values = np.asarray(theta)
        if values.dtype.kind not in "iuf":  # complex, bool, strings, objects
            raise TypeError
        values = values.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"theta must be a real angle in radians in (0, 2pi], got {theta!r}") from None
    bad = ~((values > 0) & (values <= FULL_TURN))  # NaN fails both comparisons
    if np.any(bad):
        first = values[bad].ravel()[0]
        raise ValueError(f"theta must be a real angle in radians in (0, 2pi], got {first!r}")
    return values


def check_n_array(n) -> np.ndarray:
    """Returns ``n`` as a float64 array; ValueError unless every entry is an integer >= 1."""
    try:
        values = np.asarray(n)
    except (TypeError, ValueError):
        raise ValueError(f"n must be an integer in [1, 2**53], got {n!r}") from None
    if values.dtype == object or values.dtype.kind not in "iuf":
        if values.dtype == object:
            return np.vectorize(check_n, otypes=[np.float64])(values)
        raise ValueError(f"n must be an integer in [1, 2**53], got {n!r}")
    if values.dtype.kind in "iu" and values.size and (values.max() > MAX_N or values.min() < 1):
        first = values[(values > MAX_N) | (values < 1)].ravel()[0]
        raise ValueError(f"n must be an integer in [1, 2**53], got {first!r}")
    as_float = values.astype(np.float64)
    ok = np.isfinite(as_float) & (as_float == np.floor(as_float))
    ok &= (as_float >= 1) & (as_float <= MAX_N)
    if not np.all(ok):
        first = values[~ok].ravel()[0]
        raise ValueError(f"n must be an integer in [1, 2**53], got {first!r}")
    return as_float


def check_num_samples(num_samples: object) -> int:
    """Returns ``num_samples`` as an int; ValueError unless it is an integer in [1, 2**31 - 1]."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral):
        raise ValueError(f"num_samples must be an integer in [1, 2**31 - 1], got {num_samples!r}")
    if not 1 <= int(num_samples) <= 2**31 - 1:
        raise ValueError(f"num_samples must be an integer in [1, 2**31 - 1], got {num_samples!r}")
    return int(num_samples)

