"""Sinusoidal embedding of a scalar time, as in the Transformer / DDPM papers."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from diffusionlab import _checks


def sinusoidal_embedding(t_B: jax.Array, dim: int, *, max_period: float = 10_000.0) -> jax.Array:
    r"""Embeds times ``t`` (shape ``(B,)``) into ``(B, dim)`` features.

    .. math:: e(t)_{2i} = \sin(t\,\omega_i),\quad e(t)_{2i+1} = \cos(t\,\omega_i),\quad
              \omega_i = \text{max\_period}^{-i/(\text{dim}/2)}

    Times of order one (continuous ``t ∈ [0, 1]``) and of order 1000 (discrete steps) both
    spread over the frequencies, because the lowest frequency is ``1/max_period`` and the
    highest is 1; continuous times are scaled by 1000 first, as is usual.
    """
    dim = _checks.check_int(dim, "dim", low=2)
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    _checks.check_real(max_period, "max_period", low=1, low_open=True)
    t_B = _checks.float_array(t_B, "t_B", ndim=(0, 1), allow_int=True)
    _checks.check_fits_memory("dim", 4.0 * dim * max(t_B.size, 1), "the embedding")
    t_B = jnp.asarray(t_B, jnp.float32).reshape(-1)
    half = dim // 2
    omega = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    angles = 1000.0 * t_B[:, None] * omega[None, :]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
