"""Argument checks shared by the processes: times, shapes, data, token ids and configurations.

Every error names the argument and its valid range. Values are checked only when they are
concrete (known at trace time); inside ``jit`` the types, dtypes and shapes are still
checked, because they are static. Float data in half precision is promoted to float32
(:func:`diffusionlab._checks.float_array`). Empty batches are valid: empty in, empty out.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import _checks as base
from diffusionlab._checks import concrete  # noqa: F401  (re-exported for the processes)


def _describe(value) -> str:
    return base._describe(value)


# --- configurations ---------------------------------------------------------------------------


def check_steps(T, name: str = "T") -> int:
    """``T`` (a number of steps) as a Python int ≥ 1; TypeError/ValueError naming ``name``."""
    return base.check_int(T, name, low=1)


def check_event_shape(value, name: str = "event_shape", *, optional: bool = False):
    """The shape of one example as a tuple of positive ints (``None`` too when ``optional``).

    Raises:
      TypeError: naming ``name`` unless a sequence of integers (or None when ``optional``).
      ValueError: naming ``name`` for a dimension < 1.
    """
    if value is None and optional:
        return None
    what = "a tuple of integers ≥ 1" + (" or None" if optional else "")
    if isinstance(value, (str, bytes, dict, set)) or not hasattr(value, "__len__"):
        raise TypeError(f"{name} must be {what}; got {_describe(value)}")
    if isinstance(value, (np.ndarray, jax.Array)) and value.ndim != 1:
        raise TypeError(f"{name} must be {what}; got {_describe(value)}")
    return tuple(base.check_int(d, f"{name}[{i}]", low=1) for i, d in enumerate(value))


def check_discrete_config(*, length, vocab, kernel, min_vocab: int, kernels: Sequence[str],
                          max_vocab: int = base.HUGE) -> None:
    """The configuration of a discrete (token) process: ``length ≥ 1``, ``vocab ≥ min_vocab``
    (both integers) and a known ``kernel``; raises TypeError/ValueError naming the bad one."""
    base.check_int(length, "length", low=1)
    base.check_int(vocab, "vocab", low=min_vocab, high=max_vocab)
    base.check_choice(kernel, "kernel", kernels)


def check_process(process, name: str = "process") -> None:
    """Raises TypeError naming ``name`` unless ``process`` is an instance of a UDM process class."""
    from diffusionlab.udm.base import Process  # the contract imports these checks

    if not isinstance(process, Process):
        raise TypeError(
            f"{name} must be a UDM process (an instance of a diffusionlab.udm.Process subclass: "
            f"HotDiffusion, ColdDiffusion, EditDiffusion, MaskDiffusion, EncoderDiffusion, "
            f"CustomDiffusion or your own); got {_describe(process)}")


# --- data -------------------------------------------------------------------------------------


def data(x, name: str) -> jax.Array:
    """Real float data (any shape, empty allowed): at least float32, finite when concrete.

    Raises:
      TypeError: naming ``name`` for non-arrays (None, lists) and bool, integer or complex dtypes.
      ValueError: naming ``name`` for NaN or ±inf entries.
    """
    return jnp.asarray(base.float_array(x, name, allow_empty=True))


def tokens(x, *, vocab: int, name: str, allow_mask: bool = False) -> jax.Array:
    """Integer token ids in ``[0, vocab)`` (``[0, vocab]`` with the mask id ``vocab``).

    Raises:
      TypeError: naming ``name`` for non-arrays and non-integer dtypes.
      ValueError: naming ``name`` for an id outside the vocabulary.
    """
    what = f"[0, {vocab - 1}] or the mask id {vocab}" if allow_mask else f"[0, {vocab - 1}]"
    x = base._array(x, name, f"integer token ids in {what}")
    if not jnp.issubdtype(x.dtype, jnp.integer):  # bool is not an integer dtype
        raise TypeError(f"{name} must hold integer token ids in {what}; got dtype {x.dtype}")
    high = vocab if allow_mask else vocab - 1
    v = concrete(x)
    if v is not None and v.size and (v.min() < 0 or v.max() > high):
        raise ValueError(
            f"{name} holds token ids outside the vocabulary {what}; got [{v.min()}, {v.max()}]"
        )
    return jnp.asarray(x)


def states(process, x, name: str, *, allow_mask: bool = False) -> jax.Array:
    """``x`` checked as the process's states (``process.check_states``): token ids for a
    discrete process, else real floats."""
    return process.check_states(x, name, allow_mask=allow_mask)


# --- times ------------------------------------------------------------------------------------


def times(t, *, low: int, high: int, name: str = "t") -> jax.Array:
    """Integer time(s) in ``[low, high]`` as an integer array (a scalar or an array).

    Raises:
      TypeError: naming ``name`` for None, strings, lists, floats, booleans or complex values.
      ValueError: naming ``name`` and the range for a concrete entry outside ``[low, high]``.
    """
    what = f"integer time(s) in [{low}, {high}]"
    if isinstance(t, numbers.Integral) and not isinstance(t, (bool, np.bool_)):
        if not low <= int(t) <= high:
            raise ValueError(f"{name} must lie in [{low}, {high}]; got {int(t)}")
        return jnp.asarray(int(t))
    if not isinstance(t, (jax.Array, np.ndarray, np.generic)) or isinstance(t, np.bool_):
        raise TypeError(f"{name} must be {what} (an integer or an integer array); got "
                        f"{_describe(t)}")
    dtype = t.dtype
    if not jnp.issubdtype(dtype, jnp.integer):  # bool is not an integer dtype
        raise TypeError(f"{name} must hold {what}; got dtype {dtype}")
    v = concrete(t)
    if v is not None and v.size and (v.min() < low or v.max() > high):
        raise ValueError(f"{name} must lie in [{low}, {high}]; got values in [{v.min()}, {v.max()}]")
    return jnp.asarray(t)


# --- shapes -----------------------------------------------------------------------------------


def batch_shape(x, event_shape: Sequence[int] | None, t=None, *, name: str) -> tuple[int, ...]:
    """The leading (batch) shape of ``x`` for a process whose examples have ``event_shape``.

    With ``event_shape=None`` (any event shape) the batch shape is ``t``'s shape. ``t`` must be a
    scalar or have exactly the batch shape.

    Raises:
      ValueError: naming ``name`` if the trailing axes of ``x`` do not equal ``event_shape``, or
        naming ``t`` (and ``name``) if its shape is neither ``()`` nor the batch shape.
    """
    shape = tuple(jnp.shape(x))
    t_shape = () if t is None else tuple(jnp.shape(t))
    if event_shape is None:
        if shape[: len(t_shape)] != t_shape:
            raise ValueError(f"t of shape {t_shape} does not match the leading axes of {name} {shape}")
        return t_shape
    event_shape = tuple(event_shape)
    k = len(event_shape)
    if len(shape) < k or shape[len(shape) - k :] != event_shape:
        raise ValueError(f"{name} must have shape (..., {', '.join(map(str, event_shape))}) "
                         f"(batch axes, then event_shape); got {shape}")
    batch = shape[: len(shape) - k]
    if t_shape not in ((), batch):
        raise ValueError(f"t must be a scalar or have the batch shape {batch} of {name}; "
                         f"got shape {t_shape}")
    return batch


#: ``check_same_shape(a, b, names=(...))``: ValueError naming both unless the shapes agree.
check_same_shape = base.same_shape


def expand_time(t, x) -> jax.Array:
    """``t`` (batch shape) reshaped with trailing unit axes so that it broadcasts against ``x``."""
    t = jnp.asarray(t)
    return t.reshape(t.shape + (1,) * (jnp.ndim(x) - t.ndim))


def check_step(t, s, *, T: int):
    """Checks a reverse step ``t -> s`` with ``1 <= t <= T`` and ``0 <= s < t``; returns ``(t, s)``."""
    t = times(t, low=1, high=T)
    if s is None:
        return t, t - 1
    s = times(s, low=0, high=T - 1, name="s")
    tv, sv = concrete(t), concrete(s)
    if tv is not None and sv is not None and tv.size and sv.size and np.any(sv >= tv):
        raise ValueError(f"s must be smaller than t (0 ≤ s < t ≤ {T}); got t={tv}, s={sv}")
    return t, s


_NO_KEY = object()


def forward_inputs(process, x0, t, key=_NO_KEY, *, t_low: int = 0):
    """Checks the arguments of a ``forward`` (``t_low = 1`` for a ``loss``); returns
    ``(x0, t, batch)`` with ``x0`` the process's states (float32 or wider, or token ids) and
    ``t`` an array.

    ``key`` is checked when given (a loss has none).
    """
    x0 = states(process, x0, "x0")
    t = times(t, low=t_low, high=process.T)
    batch = batch_shape(x0, process.event_shape, t, name="x0")
    if key is not _NO_KEY:
        base.check_key(key)
    return x0, t, batch


def reverse_inputs(process, x_t, x0_hat, t, s, *, key=None):
    """Validates the arguments of a ``reverse_step`` and broadcasts the times to the batch.

    Checks the states (``process.check_states``), ``x_t``'s event shape, that ``x0_hat``
    matches it, the step ``t -> s`` (``s`` defaults to ``t - 1``) and ``key``. Returns
    ``(x_t, x0_hat, t, s)`` as arrays, with ``t`` and ``s`` of the batch shape.
    """
    x_t = states(process, x_t, "x_t", allow_mask=True)
    x0_hat = states(process, x0_hat, "x0_hat")
    t, s = check_step(t, s, T=process.T)
    batch = batch_shape(x_t, process.event_shape, t, name="x_t")
    check_same_shape(x_t, x0_hat, names=("x_t", "x0_hat"))
    if jnp.shape(s) not in ((), batch):
        raise ValueError(f"s must be a scalar or have the batch shape {batch} of x_t; "
                         f"got shape {jnp.shape(s)}")
    base.check_key(key)
    return x_t, x0_hat, jnp.broadcast_to(t, batch), jnp.broadcast_to(s, batch)


def kernel_inputs(process, x_t, x0_hat, t, s, key):
    """Validates the arguments of a reverse kernel: ``t`` and ``s`` carry the batch shape.

    ``x0_hat`` has shape ``batch + event_shape``, ``x_t`` the shape of its states
    (``process.state_shape``); ``1 ≤ t ≤ T`` and ``0 ≤ s < t``.
    Returns ``(x_t, x0_hat, t, s)`` as arrays.
    """
    check_process(process)
    T = base.check_int(process.T, "process.T", low=1)
    if s is None:  # required here: no default step
        raise TypeError("s must be integer time(s) in [0, t) with the batch shape; got None")
    x0_hat = states(process, x0_hat, "x0_hat")
    x_t = states(process, x_t, "x_t", allow_mask=True)
    t, s = check_step(t, s, T=T)
    event_shape = process.event_shape
    if event_shape is None:
        batch = tuple(t.shape)
        if tuple(x0_hat.shape[: len(batch)]) != batch:
            raise ValueError(f"t of shape {batch} does not match the leading axes of x0_hat "
                             f"{x0_hat.shape}")
    else:
        batch = batch_shape(x0_hat, event_shape, name="x0_hat")
        if tuple(t.shape) != batch:
            raise ValueError(f"t must have the batch shape {batch} of x0_hat; got shape {t.shape}")
    if tuple(s.shape) != tuple(t.shape):
        raise ValueError(f"s must have the shape {t.shape} of t (the batch shape); got shape "
                         f"{s.shape}")
    expected = process.state_shape(tuple(x0_hat.shape))
    if tuple(expected) == tuple(x0_hat.shape):
        check_same_shape(x_t, x0_hat, names=("x_t", "x0_hat"))
    elif tuple(x_t.shape) != tuple(expected):
        raise ValueError(f"x_t must have the shape {tuple(expected)} of the states of x0_hat "
                         f"{tuple(x0_hat.shape)}; got {x_t.shape}")
    base.check_key(key)
    return x_t, x0_hat, t, s


def prior_tokens(process, x0, key) -> jax.Array:
    """Checks a discrete process's ``prior(x0, key=)`` arguments; returns ``x0`` as token ids."""
    x0 = tokens(x0, vocab=process.vocab, name="x0")
    batch_shape(x0, process.event_shape, name="x0")
    base.check_key(key)
    return x0
