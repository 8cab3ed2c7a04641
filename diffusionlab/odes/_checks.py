"""Argument checks of the ODE generators, built on :mod:`diffusionlab._checks`.

Query points against sources, heights, sample sizes, and the precision rule of the package:
compute in at least float32 (half-precision inputs are promoted on entry by
:func:`diffusionlab._checks.float_array`) and return results in the caller's dtype, cast
with :func:`saturating_cast` so that a value beyond float16's range stays finite.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import _checks


def input_dtype(*values):
    """The common dtype of the caller's float arguments (float32 for Python numbers)."""
    dtypes = [v.dtype for v in values
              if hasattr(v, "dtype") and jnp.issubdtype(v.dtype, jnp.floating)]
    return jnp.result_type(*dtypes) if dtypes else jnp.dtype(jnp.float32)


def saturating_cast(x, dtype, *, axis: int | None = None) -> jax.Array:
    """``x`` cast to ``dtype``, keeping finite values finite where ``dtype``'s range is smaller.

    Elementwise (``axis=None``) each entry is clipped to ``±finfo(dtype).max``; along ``axis``
    each vector is scaled as a whole, which keeps its direction. NaN stays NaN.
    """
    x = jnp.asarray(x)
    dtype = jnp.dtype(dtype)
    if (not jnp.issubdtype(x.dtype, jnp.floating)
            or float(jnp.finfo(dtype).max) >= float(jnp.finfo(x.dtype).max)):
        return x.astype(dtype)
    big = float(jnp.finfo(dtype).max)
    if axis is not None:
        peak = jnp.max(jnp.abs(x), axis=axis, keepdims=True)
        x = x * jnp.where(peak > big, big / jnp.where(peak > big, peak, 1.0), 1.0)
    return jnp.clip(x, -big, big).astype(dtype)


def float_input(x, name: str, **kwargs) -> tuple[jax.Array, np.dtype]:
    """:func:`diffusionlab._checks.float_array` (empty allowed), with the caller's dtype."""
    dtype = input_dtype(x)
    kwargs.setdefault("allow_empty", True)
    return _checks.float_array(x, name, **kwargs), dtype


def points(x, data, *, names: tuple[str, str] = ("x", "data")):
    """Checks query points ``x`` ``(B, d)`` against sources ``data`` ``(N, d)``, ``N ≥ 1``.

    Returns:
      ``(x, data, dtype)``: both in the working dtype (at least float32), and the caller's
      dtype for the result. ``B = 0`` is allowed (the result is empty).

    Raises:
      TypeError, ValueError: naming the argument (rank, dtype, NaN/inf, no sources, or
        different dimensions).
    """
    dtype = input_dtype(x, data)
    x = _checks.float_array(x, names[0], ndim=2, allow_empty=True)
    data = _checks.float_array(data, names[1], ndim=2, allow_empty=True)
    if data.shape[0] < 1:
        raise ValueError(f"{names[1]} must have shape (N, d) with N ≥ 1 sources; got {data.shape}")
    if data.shape[1] < 1:
        raise ValueError(f"{names[1]} must have shape (N, d) with d ≥ 1; got {data.shape}")
    if x.shape[1] != data.shape[1]:
        raise ValueError(f"dimension mismatch: {names[0]} has d = {x.shape[1]} but {names[1]} "
                         f"has d = {data.shape[1]}")
    work = jnp.result_type(x.dtype, data.dtype)
    return x.astype(work), data.astype(work), dtype


def times(t, name: str = "t") -> jax.Array:
    """``t`` as a float array (a Python number is converted; integer, boolean or complex
    arrays are rejected)."""
    if isinstance(t, numbers.Real) and not isinstance(t, (bool, np.bool_)):
        t = jnp.asarray(float(t))  # the default float: float64 when x64 is enabled
    return _checks.float_array(t, name, allow_empty=True, finite=False)


def positive_time(t, batch: int, dtype, name: str = "t", *, of: str = "x") -> jax.Array:
    """Checks heights ``t`` (scalar, ``(1,)`` or ``(batch,)``, finite and > 0) and broadcasts
    them to ``(batch,)`` in ``dtype``; ``of`` names the argument whose rows ``t`` belongs to.

    A height below ``dtype``'s smallest normal number (1.2e-38 in float32) is rejected when
    concrete and raised to it under ``jit``: XLA flushes subnormal numbers to zero, and a
    height of zero on a source has no field direction.
    """
    t = times(t, name)
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] not in (1, batch)):
        raise ValueError(f"{name} must be a scalar or have shape ({batch},), one per row of {of} "
                         f"(which has {batch} rows); got shape {t.shape}")
    _checks.check_real(t, name, low=0.0, low_open=True, scalar=False)
    tiny = float(jnp.finfo(dtype).tiny)
    v = _checks.local_values(t)
    if v is not None and v.size and float(v.min()) < tiny:
        raise ValueError(f"{name} must be ≥ {tiny:.4g}, the smallest normal {jnp.dtype(dtype).name} "
                         f"(smaller numbers are flushed to zero); got {float(v.min()):.4g}")
    return jnp.maximum(jnp.broadcast_to(t.astype(dtype).reshape(-1), (batch,)), tiny)


def sample_count(num, dim: int, dtype, *, name: str = "num") -> int:
    """A number of samples ``num ≥ 1`` whose ``(num, dim)`` array fits in memory."""
    num = _checks.check_int(num, name, low=1, high=None)
    _checks.check_fits_memory(name, num * dim * jnp.dtype(dtype).itemsize,
                              f"{num} samples of dimension {dim}")
    if num > _checks.HUGE:
        raise ValueError(f"{name} must be an integer in [1, {_checks.HUGE}]; got {num}")
    return num


def dimension(dim, name: str = "dim") -> int:
    """A dimension ``≥ 1``."""
    return _checks.check_int(dim, name, low=1, high=1 << 20)


def float_dtype(dtype, name: str = "dtype"):
    """``dtype`` resolved; TypeError unless it is a real floating-point dtype."""
    if dtype is None:
        raise TypeError(f"{name} must be a float dtype (float16, bfloat16, float32 or float64); "
                        "got None")
    try:
        resolved = jnp.dtype(dtype)
    except TypeError as error:
        raise TypeError(f"{name} must be a float dtype (float16, bfloat16, float32 or float64); "
                        f"got {dtype!r}") from error
    if not jnp.issubdtype(resolved, jnp.floating):
        raise TypeError(f"{name} must be a float dtype (float16, bfloat16, float32 or float64); "
                        f"got {resolved}")
    return resolved


def source_points(x, t, x0, *, names: tuple[str, str] = ("x", "x0")):
    """Checks queries ``x`` against single sources ``x0`` of the same shape ``(..., d)`` at
    heights ``t`` (a scalar or of shape ``x.shape[:-1]``, > 0).

    Returns:
      ``(x, t, x0, dtype)``: in the working dtype, ``t`` broadcast to ``x.shape[:-1]``, and
      the caller's dtype for the result.
    """
    dtype = input_dtype(x, x0)
    x = _checks.float_array(x, names[0], allow_empty=True)
    x0 = _checks.float_array(x0, names[1], allow_empty=True)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"{names[0]} must have shape (..., d) with d ≥ 1; got {x.shape}")
    _checks.same_shape(x, x0, names=names)
    t = times(t)
    if t.shape not in ((), x.shape[:-1]):
        raise ValueError(f"t must be a scalar or have shape {x.shape[:-1]} (the leading axes of "
                         f"{names[0]}); got shape {t.shape}")
    _checks.check_real(t, "t", low=0.0, low_open=True, scalar=False)
    work = jnp.result_type(x.dtype, x0.dtype, t.dtype)
    return x.astype(work), jnp.broadcast_to(t.astype(work), x.shape[:-1]), x0.astype(work), dtype
