r"""Blockwise sums over point masses: the one kernel behind every exact empirical field.

For query points :math:`(x_b, t_b)` in the augmented space :math:`\mathbb R^{d+1}` and
sources :math:`(y_i, 0)` on the plane :math:`t = 0`, every exact field of this module has
the form

.. math:: \sum_i w_{bi}\,(x_b - y_i,\ t_b), \qquad
          w_{bi} = R_{bi}^{-k},\quad R_{bi}^2 = \|x_b - y_i\|^2 + t_b^2 ,

so it is fixed by two sums, :math:`W_b = \sum_i w_{bi}` and :math:`M_b = \sum_i w_{bi} y_i`:
:math:`\sum_i w_{bi}(x_b - y_i) = x_b W_b - M_b` and :math:`\sum_i w_{bi} t_b = t_b W_b`.

Both sums are matrix products. :math:`\|x - y\|^2 = \|x\|^2 + \|y\|^2 - 2\,x\cdot y` is one
matmul, :math:`M = w\,Y` another, so the cost is :math:`4BNd` flops in two GEMMs plus
:math:`BN` logs and exps. The sources are visited in blocks by ``lax.scan`` with an online
log-sum-exp (the weights are kept relative to a running maximum of :math:`\log w`), so the
memory is :math:`O(B \times \text{block})` and no weight over- or underflows, however large
:math:`k` is or however close a query comes to a source.

Reference: 苏剑林, 《生成扩散模型漫谈（十三）：从万有引力到扩散模型》,
https://kexue.fm/archives/9305 (the field of point masses).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class PointMassSums(NamedTuple):
    r"""Sums over the sources, each scaled by :math:`e^{-m_b}`.

    Attributes:
      log_scale: :math:`m_b`, the largest :math:`\log w_{bi}` (shape ``(B,)``).
      weight: :math:`e^{-m_b} \sum_i w_{bi}` (shape ``(B,)``; at least 1 by construction).
      moment: :math:`e^{-m_b} \sum_i w_{bi} y_i` (shape ``(B, d)``).
      centre: the translation applied to queries and sources before summing (shape ``(d,)``);
        ``moment`` is relative to it.
    """

    log_scale: jax.Array
    weight: jax.Array
    moment: jax.Array
    centre: jax.Array


def check_points(x: jax.Array, data: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Validates a query batch ``x`` (B, d) against sources ``data`` (N, d)."""
    x, data = jnp.asarray(x), jnp.asarray(data)
    if data.ndim != 2 or data.shape[0] < 1:
        raise ValueError(f"data must have shape (N, d) with N ≥ 1, got {data.shape}")
    if x.ndim != 2:
        raise ValueError(f"x must have shape (B, d), got {x.shape}")
    if x.shape[1] != data.shape[1]:
        raise ValueError(
            f"dimension mismatch: x has d = {x.shape[1]} but data has d = {data.shape[1]}")
    dtype = jnp.result_type(x.dtype, data.dtype, jnp.float32)
    return x.astype(dtype), data.astype(dtype)


def check_positive_time(t, batch: int, dtype, name: str = "t") -> jax.Array:
    """Broadcasts ``t`` to ``(batch,)``; ValueError when a concrete value is ≤ 0."""
    t = jnp.asarray(t, dtype)
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] not in (1, batch)):
        raise ValueError(f"{name} must be a scalar or have shape ({batch},), got {t.shape}")
    if not isinstance(t, jax.core.Tracer) and bool(jnp.any(~(t > 0))):
        raise ValueError(f"{name} must be > 0 (the data sit on the plane t = 0), got "
                         f"min {float(jnp.min(t))}")
    return jnp.broadcast_to(t.reshape(-1), (batch,))


def point_mass_sums(x, t, data, *, exponent, block: int = 512) -> PointMassSums:
    r"""Computes :math:`W_b` and :math:`M_b` for :math:`w_{bi} = R_{bi}^{-k}` blockwise.

    Args:
      x: query positions, ``(B, d)``.
      t: query heights, ``(B,)`` (may be 0 away from the sources).
      data: source positions :math:`y_i`, ``(N, d)``.
      exponent: :math:`k` (a Python or traced scalar).
      block: sources per block; memory is :math:`O(B \times \text{block})`.

    Returns:
      A :class:`PointMassSums`, scaled by :math:`e^{-m_b}` (see its fields).
    """
    dtype = x.dtype
    n, d = data.shape
    block = int(min(block, n))
    # Translation invariance: centring keeps |x|² and |y|² small, which limits the
    # cancellation error of |x|² + |y|² - 2 x·y.
    centre = jnp.mean(data, axis=0)
    x = x - centre[None, :]
    data = data - centre[None, :]
    num_blocks = -(-n // block)
    pad = num_blocks * block - n
    valid = jnp.arange(num_blocks * block) < n
    data_blocks = jnp.pad(data, ((0, pad), (0, 0))).reshape(num_blocks, block, d)
    valid_blocks = valid.reshape(num_blocks, block)
    x_sq = jnp.sum(x * x, axis=1)
    t_sq = t * t
    half_k = jnp.asarray(exponent, dtype) / 2
    tiny = jnp.finfo(dtype).tiny

    def step(carry, blk):
        log_scale, weight, moment = carry
        y_NxD, ok_N = blk
        dist_sq = x_sq[:, None] + jnp.sum(y_NxD * y_NxD, axis=1)[None, :] - 2.0 * (x @ y_NxD.T)
        # Cancellation can make |x - y|² slightly negative; R² = 0 only at a source itself.
        r_sq = jnp.maximum(dist_sq, 0.0) + t_sq[:, None]
        log_w = jnp.where(ok_N[None, :], -half_k * jnp.log(jnp.maximum(r_sq, tiny)), -jnp.inf)
        new_scale = jnp.maximum(log_scale, jnp.max(log_w, axis=1))
        w = jnp.exp(log_w - new_scale[:, None])
        rescale = jnp.exp(log_scale - new_scale)
        weight = weight * rescale + jnp.sum(w, axis=1)
        moment = moment * rescale[:, None] + w @ y_NxD
        return (new_scale, weight, moment), None

    batch = x.shape[0]
    init = (jnp.full((batch,), -jnp.inf, dtype), jnp.zeros((batch,), dtype),
            jnp.zeros((batch, d), dtype))
    (log_scale, weight, moment), _ = jax.lax.scan(step, init, (data_blocks, valid_blocks))
    return PointMassSums(log_scale, weight, moment, centre)


def field_from_sums(x, t, sums: PointMassSums, *, log_const) -> tuple[jax.Array, jax.Array]:
    r"""Assembles :math:`e^{c}\sum_i w_i (x - y_i, t)` from the scaled sums.

    The magnitude :math:`e^{c + m_b}` is clipped to the dtype's largest finite value, so the
    field stays finite where the exact value would overflow; its direction is always exact.
    """
    x_rel = x - sums.centre[None, :]
    direction_x = x_rel * sums.weight[:, None] - sums.moment
    direction_t = t * sums.weight
    limit = jnp.log(jnp.finfo(x.dtype).max) - 2 * jnp.log1p(
        jnp.abs(direction_x).max(axis=1) + jnp.abs(direction_t)) - 1.0
    magnitude = jnp.exp(jnp.minimum(log_const + sums.log_scale, limit))
    return direction_x * magnitude[:, None], direction_t * magnitude


def velocity_from_sums(x, t, sums: PointMassSums) -> jax.Array:
    r""":math:`F_x / F_t = (x W - M) / (t W)`: the ratio, free of the field's overall scale."""
    return (x - sums.centre[None, :] - sums.moment / sums.weight[:, None]) / t[:, None]
