"""Argument checks shared by the whole package: each error names the argument and its valid range.

Values are checked only when they are concrete (known at trace time); inside ``jit`` only
the static parts (type, dtype, shape) are checked. Half-precision floats are promoted to
float32 so that the arithmetic never runs in fewer than 24 mantissa bits.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

HUGE = 2**31 - 1
"""Default upper bound of a size argument: XLA indexes arrays with int32."""


def concrete(value) -> np.ndarray | None:
    """``value`` as a numpy array when it is known at trace time, else ``None``.

    An array spread over several processes (``jax.distributed``) is not known whole to any
    one of them: ``None`` (see :func:`local_values`).
    """
    if isinstance(value, jax.core.Tracer):
        return None
    try:
        return np.asarray(value)
    except Exception:  # e.g. a typed PRNG key, or an array not fully addressable here
        return None


def local_values(value) -> np.ndarray | None:
    """The entries of ``value`` this process can read, as a numpy array, for value checks.

    All of them (shaped as ``value``) for a concrete array on this process; for a global array
    spread over several processes, the entries of this process's shards, flattened, so that
    every process checks its own rows; ``None`` for a traced value.
    """
    if isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer) \
            and not value.is_fully_addressable:
        shards = [np.asarray(shard.data).ravel() for shard in value.addressable_shards]
        return np.concatenate(shards) if shards else np.zeros((0,), value.dtype)
    return concrete(value)


def memory_bytes() -> int:
    """Physical memory of this machine in bytes (a generous 2**40 where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**40


def check_fits_memory(name: str, num_bytes: float, what: str = "") -> None:
    """Raises ValueError naming ``name`` if ``num_bytes`` exceed this machine's memory."""
    limit = memory_bytes()
    if num_bytes > limit:
        raise ValueError(
            f"{name} is too large: {what or 'the result'} would need {num_bytes / 2**30:.3g} GiB, "
            f"more than this machine's {limit / 2**30:.3g} GiB of memory")


def _describe(value) -> str:
    if isinstance(value, (np.ndarray, jax.Array)):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_int(value, name: str, *, low: int | None = None, high: int | None = HUGE) -> int:
    """Returns ``value`` as a Python int; TypeError unless an integer, ValueError outside ``[low, high]``.

    A traced integer scalar (inside ``jit``) is returned unchanged, unchecked.
    """
    if isinstance(value, jax.core.Tracer):  # traced (e.g. a cache offset): dtype only
        if not jnp.issubdtype(value.dtype, jnp.integer) or value.ndim:
            raise TypeError(f"{name} must be an integer scalar; got {value.dtype}{value.shape}")
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        arr = concrete(value) if isinstance(value, (np.ndarray, jax.Array)) else None
        if arr is None or arr.ndim or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name} must be an integer{_range(low, high)}; got {_describe(value)}")
        value = arr.item()
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer{_range(low, high)}; got {value}")
    return value


def _range(low, high, *, low_open=False, high_open=False) -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f" {'>' if low_open else '≥'} {low}"
    if low is None:
        return f" {'<' if high_open else '≤'} {high}"
    return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def check_real(value, name: str, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False, scalar: bool = True):
    """Checks a real (finite) scalar hyperparameter; returns it unchanged.

    A traced value passes the type check only; a concrete one must be finite and in the
    range (``low_open``/``high_open`` exclude the end points). With ``scalar=False`` an array
    is allowed and every entry is checked.

    Raises:
      TypeError: naming ``name`` for None, strings, complex or boolean values.
      ValueError: naming ``name`` and the range for NaN, ±inf or an out-of-range value.
    """
    if value is None or isinstance(value, (str, bytes, bool, np.bool_, complex, list, tuple, dict)):
        bounds = _range(low, high, low_open=low_open, high_open=high_open)
        raise TypeError(f"{name} must be a real number{bounds}; got {_describe(value)}")
    if isinstance(value, jax.core.Tracer):
        dtype = value.dtype
        v = None
    else:
        v = local_values(value)
        if v is None:
            raise TypeError(f"{name} must be a real number; got {_describe(value)}")
        dtype = v.dtype
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        bounds = _range(low, high, low_open=low_open, high_open=high_open)
        raise TypeError(f"{name} must be a real number{bounds}; got {_describe(value)}")
    if scalar and jnp.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar; got shape {jnp.shape(value)}")
    if v is None or v.size == 0:
        return value
    v = v.astype(np.float64)
    bad = ~np.isfinite(v)
    if low is not None:
        bad |= (v <= low) if low_open else (v < low)
    if high is not None:
        bad |= (v >= high) if high_open else (v > high)
    if np.any(bad):
        first = v[bad].ravel()[0]
        raise ValueError(f"{name} must be a finite real number"
                         f"{_range(low, high, low_open=low_open, high_open=high_open)}; got {first}")
    return value


def check_choice(value, name: str, choices: Sequence[str]) -> str:
    """Raises ValueError (TypeError for a non-string) naming ``name`` unless ``value`` is in ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {tuple(choices)}; got {_describe(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}")
    return value


def check_callable(value, name: str) -> None:
    """Raises TypeError naming ``name`` unless ``value`` is callable."""
    if not callable(value):
        raise TypeError(f"{name} must be callable; got {_describe(value)}")


def check_path(value, name: str):
    """Raises TypeError naming ``name`` unless ``value`` is a string or a path."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or pathlib.Path); got {_describe(value)}")
    return value


def check_sequences(value, name: str, *, low: int = 0, high: int | None = None,
                    nested: bool = True):
    """Token id sequences (``nested``) or one sequence: integers in ``[low, high]``.

    Returns them as a list (of lists) of Python ints; TypeError for non-sequences or
    non-integers, ValueError for an id out of range, naming ``name``.
    """
    def one(seq, label):
        if isinstance(seq, (str, bytes)) or not hasattr(seq, "__len__"):
            raise TypeError(f"{label} must be a sequence of integer token ids; got "
                            f"{_describe(seq)}")
        arr = np.asarray(seq)
        if arr.size == 0:
            return []
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{label} must be a flat sequence of integer token ids; got "
                            f"{_describe(seq)}")
        if arr.min() < low or (high is not None and arr.max() > high):
            raise ValueError(f"{label} holds token ids outside{_range(low, high)}; got "
                             f"[{arr.min()}, {arr.max()}]")
        return arr.tolist()

    if not nested:
        return one(value, name)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"{name} must be a sequence of token id sequences; got "
                        f"{_describe(value)}")
    return [one(seq, name) for seq in value]


def check_key(key, name: str = "key") -> jax.Array:
    """A JAX PRNG key: a typed key (``jax.random.key``) or a raw ``uint32[2]`` one."""
    if isinstance(key, (jax.Array, np.ndarray)):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            return key
        if key.dtype == np.uint32 and key.shape[-1:] == (2,):
            return key
    raise TypeError(f"{name} must be a JAX PRNG key (jax.random.key(seed)); got {_describe(key)}")


def single_key(key, name: str = "key") -> jax.Array:
    """One JAX PRNG key (a typed scalar key or a raw ``uint32[2]``), not a batch of keys.

    Raises:
      TypeError: naming ``name`` unless ``key`` is a PRNG key.
      ValueError: naming ``name`` for a batch of keys.
    """
    key = check_key(key, name)
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if key.shape != (() if typed else (2,)):
        raise ValueError(f"{name} must be a single PRNG key (jax.random.key(seed)); got a batch "
                         f"of keys of shape {key.shape}")
    return key


def check_mesh_axis(mesh, axis_name, *, mesh_name: str = "mesh") -> int:
    """The number of devices along ``axis_name`` of the ``jax.sharding.Mesh`` ``mesh``.

    Raises:
      TypeError: ``mesh`` not a Mesh, ``axis_name`` not a string.
      ValueError: ``axis_name`` not one of the mesh's axes.
    """
    from jax.sharding import Mesh

    if not isinstance(mesh, Mesh):
        raise TypeError(f"{mesh_name} must be a jax.sharding.Mesh (e.g. "
                        f"diffusionlab.train.data_mesh()); got {type(mesh).__name__}")
    if not isinstance(axis_name, str):
        raise TypeError(f"axis_name must be a string naming an axis of {mesh_name}; got "
                        f"{type(axis_name).__name__}")
    if axis_name not in mesh.axis_names:
        raise ValueError(f"axis_name must be one of {mesh_name}'s axes "
                         f"{tuple(mesh.axis_names)}; got {axis_name!r}")
    return int(mesh.shape[axis_name])


def check_bool(value, name: str) -> bool:
    """Returns ``value`` as a bool; TypeError naming ``name`` unless it is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}"[:200])
    return bool(value)


def _array(x, name: str, kind: str):
    if x is None or isinstance(x, (list, tuple, str, bytes, dict, set)):
        raise TypeError(f"{name} must be a JAX or NumPy array of {kind}; got {type(x).__name__}")
    if isinstance(x, (numbers.Number, np.generic)):
        return jnp.asarray(x)
    if not isinstance(x, (jax.Array, np.ndarray)):
        raise TypeError(f"{name} must be a JAX or NumPy array of {kind}; got {type(x).__name__}")
    return x


def _shape_checks(x, name: str, ndim, shape, allow_empty: bool, layout: str | None = None) -> None:
    if ndim is not None:
        ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in ndims:
            want = layout or (" or ".join(map(str, ndims)) + " axes")
            raise ValueError(f"{name} must have shape {want}; got shape {x.shape}" if layout
                             else f"{name} must have {want}; got shape {x.shape}")
    if shape is not None:
        shape = tuple(shape)
        if len(shape) != x.ndim or any(s is not None and s != d for s, d in zip(shape, x.shape, strict=True)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}; got {x.shape}")
    if not allow_empty and x.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {x.shape}")


def float_array(x, name: str, *, ndim=None, shape=None, allow_empty: bool = False,
                finite: bool = True, allow_int: bool = False, layout: str | None = None
                ) -> jax.Array:
    """``x`` as a real floating JAX array of at least float32 precision, checked.

    Args:
      x: a JAX or NumPy array (a Python or NumPy scalar is allowed when ``ndim`` permits 0).
      name: the argument's name, for the messages.
      ndim: allowed number(s) of axes.
      shape: the exact shape, ``None`` entries free.
      allow_empty: whether a size-0 array is allowed.
      finite: whether a concrete NaN or ±inf raises.
      allow_int: whether integer arrays are accepted (converted to float32).
      layout: the expected shape in words for the message, e.g. ``"(B, d)"``.

    Raises:
      TypeError: naming ``name`` for non-arrays (None, lists) and non-real dtypes (bool,
        complex, and integers unless ``allow_int``).
      ValueError: naming ``name`` for a wrong rank or shape, an empty array, or NaN/inf.
    """
    x = _array(x, name, "real floats")
    dtype = x.dtype
    if jnp.issubdtype(dtype, jnp.integer) and allow_int:
        x = jnp.asarray(x, jnp.float32)
    elif not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name} must hold real floats; got dtype {dtype}")
    elif jnp.finfo(dtype).bits < 32:
        x = jnp.asarray(x, jnp.float32)  # half precision: compute in float32
    _shape_checks(x, name, ndim, shape, allow_empty, layout)
    if finite:
        v = local_values(x)
        if v is not None and v.size and not np.all(np.isfinite(v)):
            raise ValueError(f"{name} must be finite; got {np.sum(~np.isfinite(v))} NaN/inf entries")
    return x


def int_array(x, name: str, *, low: int | None = None, high: int | None = None, ndim=None,
              shape=None, allow_empty: bool = False, layout: str | None = None) -> jax.Array:
    """``x`` as an integer JAX array with concrete entries in ``[low, high]`` (e.g. token ids).

    Raises:
      TypeError: naming ``name`` for non-arrays and non-integer dtypes.
      ValueError: naming ``name`` for a wrong rank or shape, an empty array, or an entry out
        of range.
    """
    x = _array(x, name, "integers")
    if not jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == bool:
        raise TypeError(f"{name} must hold integers; got dtype {x.dtype}")
    _shape_checks(x, name, ndim, shape, allow_empty, layout)
    v = local_values(x)
    if v is not None and v.size and ((low is not None and v.min() < low)
                                     or (high is not None and v.max() > high)):
        raise ValueError(f"{name} must hold integers{_range(low, high)}; got values in "
                         f"[{v.min()}, {v.max()}]")
    return jnp.asarray(x)


def bool_array(x, name: str, *, ndim=None, shape=None, allow_empty: bool = False,
               layout: str | None = None) -> jax.Array:
    """``x`` as a boolean JAX array, checked like :func:`float_array`."""
    x = _array(x, name, "booleans")
    if x.dtype != bool:
        raise TypeError(f"{name} must hold booleans; got dtype {x.dtype}")
    _shape_checks(x, name, ndim, shape, allow_empty, layout)
    return jnp.asarray(x)


def same_shape(a, b, *, names: tuple[str, str]) -> None:
    """Raises ValueError naming both arguments if their shapes differ."""
    if jnp.shape(a) != jnp.shape(b):
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape; "
                         f"got {jnp.shape(a)} and {jnp.shape(b)}")
