r"""Blockwise weighted sums over point masses: the one kernel behind every exact empirical field.

For query points :math:`(x_b, t_b)` in the augmented space :math:`\mathbb R^{d+1}` and
sources :math:`(y_i, 0)` on the plane :math:`t = 0`, every exact field of this package has
the form

.. math:: \sum_i w_{bi}\,(x_b - y_i,\ t_b), \qquad
          w_{bi} = R_{bi}^{-k},\quad R_{bi}^2 = \|x_b - y_i\|^2 + t_b^2

(gravity and the power laws), or the same sum with another positive weight (the isotropic
CDF family, straight paths). It is fixed by two sums, :math:`W_b = \sum_i w_{bi}` and the
displacement :math:`D_b = \sum_i w_{bi}(x_b - y_i)`: the field is :math:`(D_b, t_b W_b)` and
the velocity :math:`F_x/F_t = D_b/(t_b W_b)`.

Precision. Both sums are built from the direct differences :math:`x_b - y_i`, never from
:math:`\|x\|^2 + \|y\|^2 - 2x\cdot y` and :math:`x W - \sum_i w_i y_i`: in float32 those
cancel catastrophically when a query is close to a source, which is exactly where the field
matters as :math:`t\to 0` (two sources :math:`10^{-4}` apart merged into one, and a query on
one of them moved at the speed :math:`50` instead of :math:`10^{-4}` at :math:`t = 10^{-6}`).
A difference of two nearby floats is exact (Sterbenz), so :math:`D_b/W_b` keeps full
relative precision however small :math:`t` is. The price is memory
:math:`O(B\times\text{block}\times d)` and elementwise work instead of two GEMMs (on a CPU,
2 to 4 times the time of the Gram-matrix form), so the block is shrunk to keep that product
bounded. One limit remains: a squared distance below the smallest normal float
(:math:`\|x - y\| \lesssim 10^{-19}` in float32) underflows to 0; data on such scales must be
rescaled.

Range. The sources are visited in blocks by ``lax.scan`` with an online log-sum-exp (the
weights are kept relative to a running maximum :math:`m_b` of :math:`\log w`), so no weight
over- or underflows, however large :math:`k` is or however close a query comes to a source;
:math:`\log R^2` is formed in the log domain where :math:`t^2` would underflow.

Reference: 苏剑林, 《生成扩散模型漫谈（十三）：从万有引力到扩散模型》,
https://kexue.fm/archives/9305 (the field of point masses).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


def block_elements() -> int:
    """Elements of the ``(B, block, d)`` difference tensor held at once: cache-sized on CPU,
    where the kernel is memory-bound (several times faster than with 16 MiB blocks), larger
    on accelerators, where each block is a kernel launch."""
    return 1 << 20 if jax.default_backend() == "cpu" else 1 << 24


class PointMassSums(NamedTuple):
    r"""Sums over the sources, each scaled by :math:`e^{-m_b}`.

    Attributes:
      log_scale: :math:`m_b`, the largest :math:`\log w_{bi}` (shape ``(B,)``; ``-inf`` when
        every weight is zero).
      weight: :math:`e^{-m_b} \sum_i w_{bi}` (shape ``(B,)``; at least 1 unless every weight
        is zero).
      displacement: :math:`e^{-m_b} \sum_i w_{bi}(x_b - y_i)` (shape ``(B, d)``).
    """

    log_scale: jax.Array
    weight: jax.Array
    displacement: jax.Array


def log_radius_sq(dist_sq, t):
    r""":math:`\log(\|x - y\|^2 + t^2)` for distances ``(B, n)`` and heights ``(B,)``.

    Where :math:`t^2` underflows (:math:`t \lesssim 10^{-16}` in float32) the sum is taken in
    the log domain, so the weights stay exact down to the smallest normal ``t``; that branch
    costs two more logarithms and an exponential per pair, so it runs only when some query
    needs it. The result is bounded below, so a query exactly on a source at ``t = 0`` still
    gets a finite weight.
    """
    dtype = dist_sq.dtype
    tiny = jnp.finfo(dtype).tiny
    floor = 2.0 * jnp.log(jnp.asarray(tiny, dtype)) - 30.0
    small_B = t * t < tiny * 2.0**24

    def plain(dist_sq, t):
        return jnp.maximum(jnp.log(dist_sq + (t * t)[:, None]), floor)

    def mixed(dist_sq, t):
        small = small_B[:, None]
        direct = jnp.log(jnp.where(small, 1.0, dist_sq + (t * t)[:, None]))
        t_safe = jnp.where(small, t[:, None], 1.0)
        robust = jnp.logaddexp(jnp.log(jnp.where(small, dist_sq, 1.0)), 2.0 * jnp.log(t_safe))
        return jnp.maximum(jnp.where(small, robust, direct), floor)

    return jax.lax.cond(jnp.any(small_B), mixed, plain, dist_sq, t)


def weighted_sums(x, t, data, log_weight: Callable, *, block: int = 512,
                  log_prior=None) -> PointMassSums:
    r"""Computes :math:`W_b` and :math:`D_b` blockwise for any log-weight.

    Args:
      x: query positions, ``(B, d)``.
      t: query heights, ``(B,)``.
      data: source positions :math:`y_i`, ``(N, d)``.
      log_weight: ``(diff, dist_sq, y, t) -> log w`` with ``diff = x_b - y_i`` ``(B, n, d)``,
        its squared norm ``(B, n)``, the block's sources ``(n, d)`` and ``t`` ``(B,)``;
        returns ``(B, n)``.
      block: sources per block (reduced so that ``B × block × d`` stays bounded).
      log_prior: optional ``(N,)`` log-weights of the sources, added to ``log_weight``.

    Returns:
      A :class:`PointMassSums`, scaled by :math:`e^{-m_b}`.
    """
    dtype = x.dtype
    n, d = data.shape
    batch = x.shape[0]
    block = max(1, min(int(block), n, block_elements() // max(1, batch * d)))
    num_blocks = -(-n // block)
    pad = num_blocks * block - n
    valid = (jnp.arange(num_blocks * block) < n).reshape(num_blocks, block)
    data_blocks = jnp.pad(data, ((0, pad), (0, 0))).reshape(num_blocks, block, d)
    prior = jnp.zeros((n,), dtype) if log_prior is None else jnp.asarray(log_prior, dtype)
    prior_blocks = jnp.pad(prior, (0, pad)).reshape(num_blocks, block)

    def step(carry, blk):
        log_scale, weight, displacement = carry
        y_NxD, prior_N, ok_N = blk
        diff_BxNxD = x[:, None, :] - y_NxD[None, :, :]
        dist_sq_BxN = jnp.sum(diff_BxNxD * diff_BxNxD, axis=-1)
        log_w = log_weight(diff_BxNxD, dist_sq_BxN, y_NxD, t) + prior_N[None, :]
        log_w = jnp.where(ok_N[None, :], log_w, -jnp.inf)
        new_scale = jnp.maximum(log_scale, jnp.max(log_w, axis=1))
        # Until a query meets a source of positive weight its scale is -inf; shift by 0 then.
        shift = jnp.where(jnp.isfinite(new_scale), new_scale, 0.0)
        w_BxN = jnp.exp(log_w - shift[:, None])
        rescale = jnp.exp(log_scale - shift)
        weight = weight * rescale + jnp.sum(w_BxN, axis=1)
        displacement = (displacement * rescale[:, None]
                        + jnp.einsum("bn,bnd->bd", w_BxN, diff_BxNxD,
                                     precision=jax.lax.Precision.HIGHEST))
        return (new_scale, weight, displacement), None

    init = (jnp.full((batch,), -jnp.inf, dtype), jnp.zeros((batch,), dtype),
            jnp.zeros((batch, d), dtype))
    (log_scale, weight, displacement), _ = jax.lax.scan(
        step, init, (data_blocks, prior_blocks, valid))
    return PointMassSums(log_scale, weight, displacement)


def point_mass_sums(x, t, data, *, exponent, block: int = 512) -> PointMassSums:
    r"""The sums for the power-law weights :math:`w_{bi} = R_{bi}^{-k}`.

    Args:
      x: query positions, ``(B, d)``.
      t: query heights, ``(B,)`` (> 0; 0 is tolerated away from the sources).
      data: source positions :math:`y_i`, ``(N, d)``.
      exponent: :math:`k` (a Python or traced scalar).
      block: sources per block; memory is :math:`O(B \times \text{block} \times d)`.

    Returns:
      A :class:`PointMassSums`, scaled by :math:`e^{-m_b}` (see its fields).
    """
    half_k = jnp.asarray(exponent, x.dtype) / 2

    def log_weight(diff, dist_sq, y, t):
        return -half_k * log_radius_sq(dist_sq, t)

    return weighted_sums(x, t, data, log_weight, block=block)


def _log_norm(v_BxK):
    # log ‖v‖ without overflow or underflow of the squares.
    peak = jnp.max(jnp.abs(v_BxK), axis=1)
    safe = jnp.where(peak > 0, peak, 1.0)
    unit = v_BxK / safe[:, None]
    return jnp.log(peak) + 0.5 * jnp.log(jnp.sum(unit * unit, axis=1)), unit


def field_from_sums(x, t, sums: PointMassSums, *, log_const,
                    dtype=None) -> tuple[jax.Array, jax.Array]:
    r"""Assembles :math:`e^{c}\sum_i w_i (x - y_i, t)` from the scaled sums.

    The magnitude is computed in the log domain,
    :math:`\log\|F\| = c + m_b + \log\|(D_b, t_b W_b)\|`, and is exact wherever it is
    representable in ``dtype`` (up to the rounding of that logarithm: a relative error of
    about :math:`\epsilon\,|\log\|F\||`, below :math:`10^{-5}` in float32); beyond that it
    saturates at ``dtype``'s largest finite value, so it grows monotonically as a query
    approaches a source and never shrinks. The direction is always exact.

    Args:
      x: query positions ``(B, d)`` (unused: the sums hold the displacement).
      t: heights ``(B,)``.
      sums: from :func:`weighted_sums` or :func:`point_mass_sums`.
      log_const: :math:`c`, the log of the constant in front of the sum.
      dtype: the dtype whose range bounds the magnitude (default: ``t``'s).

    Returns:
      ``(F_x, F_t)``, shapes ``(B, d)`` and ``(B,)``.
    """
    del x
    dtype = t.dtype if dtype is None else jnp.dtype(dtype)
    direction = jnp.concatenate([sums.displacement, (t * sums.weight)[:, None]], axis=1)
    log_norm, unit = _log_norm(direction)
    unit = unit / jnp.sqrt(jnp.maximum(jnp.sum(unit * unit, axis=1, keepdims=True),
                                       jnp.finfo(t.dtype).tiny))
    log_magnitude = log_const + sums.log_scale + log_norm
    big = jnp.asarray(jnp.finfo(dtype).max, t.dtype)
    # exp may round up past the largest float near the limit: clip after as well.
    magnitude = jnp.minimum(jnp.exp(jnp.minimum(log_magnitude, jnp.log(big))), big)
    f = unit * magnitude[:, None]
    return f[:, :-1], f[:, -1]


def velocity_from_sums(x, t, sums: PointMassSums) -> jax.Array:
    r""":math:`F_x / F_t = D / (t W)`: the ratio, free of the field's overall scale."""
    del x
    return sums.displacement / (t * sums.weight)[:, None]
