"""Argument checks shared by the processes: times, shapes and token ids.

Values are checked only when they are concrete (known at trace time); inside ``jit`` the
shapes are still checked, because they are static.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def concrete(value) -> np.ndarray | None:
    """``value`` as a numpy array when it is known at trace time, else ``None``."""
    if isinstance(value, jax.core.Tracer):
        return None
    return np.asarray(value)


def check_time(t, *, low: int, high: int, name: str = "t") -> None:
    """Raises ValueError if a concrete ``t`` has an entry outside the integers ``[low, high]``."""
    v = concrete(t)
    if v is None:
        return
    if v.size and (v.min() < low or v.max() > high):
        raise ValueError(f"{name} must lie in [{low}, {high}]; got values in [{v.min()}, {v.max()}]")
    if v.size and np.issubdtype(v.dtype, np.floating) and np.any(v != np.round(v)):
        raise ValueError(f"{name} must hold integer times in [{low}, {high}]; got {v}")


def check_tokens(x, *, vocab: int, name: str, allow_mask: bool = False) -> None:
    """Raises ValueError if ``x`` is not an integer array of ids in ``[0, vocab)`` (``vocab]`` with mask)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise ValueError(f"{name} must hold integer token ids; got dtype {x.dtype}")
    high = vocab if allow_mask else vocab - 1
    v = concrete(x)
    if v is not None and v.size and (v.min() < 0 or v.max() > high):
        what = f"[0, {vocab - 1}] or the mask id {vocab}" if allow_mask else f"[0, {vocab - 1}]"
        raise ValueError(
            f"{name} holds token ids outside the vocabulary {what}; got [{v.min()}, {v.max()}]"
        )


def batch_shape(x, event_shape: Sequence[int] | None, t=None, *, name: str) -> tuple[int, ...]:
    """The leading (batch) shape of ``x`` for a process whose examples have ``event_shape``.

    With ``event_shape=None`` (any event shape) the batch shape is ``t``'s shape. ``t`` must be a
    scalar or have exactly the batch shape.

    Raises:
      ValueError: naming ``name`` if the trailing axes of ``x`` do not equal ``event_shape``, or
        naming ``t`` if its shape is neither ``()`` nor the batch shape.
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
        raise ValueError(f"{name} must have shape (..., {', '.join(map(str, event_shape))}); got {shape}")
    batch = shape[: len(shape) - k]
    if t_shape not in ((), batch):
        raise ValueError(f"t must be a scalar or have the batch shape {batch}; got shape {t_shape}")
    return batch


def check_same_shape(a, b, *, names: tuple[str, str]) -> None:
    """Raises ValueError if ``a`` and ``b`` differ in shape."""
    if jnp.shape(a) != jnp.shape(b):
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape; got {jnp.shape(a)} and {jnp.shape(b)}"
        )


def expand_time(t, x) -> jax.Array:
    """``t`` (batch shape) reshaped with trailing unit axes so that it broadcasts against ``x``."""
    t = jnp.asarray(t)
    return t.reshape(t.shape + (1,) * (jnp.ndim(x) - t.ndim))


def check_step(t, s, *, T: int):
    """Checks a reverse step ``t -> s`` with ``1 <= t <= T`` and ``0 <= s < t``; returns ``(t, s)``."""
    check_time(t, low=1, high=T)
    t = jnp.asarray(t)
    if s is None:
        return t, t - 1
    check_time(s, low=0, high=T - 1, name="s")
    s = jnp.asarray(s)
    tv, sv = concrete(t), concrete(s)
    if tv is not None and sv is not None and np.any(sv >= tv):
        raise ValueError(f"s must be smaller than t; got t={tv}, s={sv}")
    return t, s


def reverse_inputs(x_t, x0_hat, t, s, *, event_shape: Sequence[int] | None, T: int):
    """Validates the arguments of a ``reverse_step`` and broadcasts the times to the batch.

    Checks ``x_t``'s event shape, that ``x0_hat`` matches it, and the step ``t -> s``
    (``s`` defaults to ``t - 1``). Returns ``(x_t, x0_hat, t, s)`` as arrays, with ``t`` and
    ``s`` of the batch shape.
    """
    x_t, x0_hat = jnp.asarray(x_t), jnp.asarray(x0_hat)
    batch = batch_shape(x_t, event_shape, t, name="x_t")
    check_same_shape(x_t, x0_hat, names=("x_t", "x0_hat"))
    t, s = check_step(t, s, T=T)
    return x_t, x0_hat, jnp.broadcast_to(t, batch), jnp.broadcast_to(s, batch)


def check_discrete_config(*, length, vocab, kernel, min_vocab: int, kernels: Sequence[str]) -> None:
    """The configuration of a discrete (token) process: ``length ≥ 1``, ``vocab ≥ min_vocab``
    (both integers) and a known ``kernel``; raises ValueError naming the bad one."""
    if int(length) != length or length < 1:
        raise ValueError(f"length must be an integer ≥ 1; got {length}")
    if int(vocab) != vocab or vocab < min_vocab:
        raise ValueError(f"vocab must be an integer ≥ {min_vocab}; got {vocab}")
    if kernel not in kernels:
        raise ValueError(f"kernel must be one of {tuple(kernels)}; got {kernel!r}")
