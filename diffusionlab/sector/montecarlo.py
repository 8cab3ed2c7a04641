r"""Monte Carlo check of the sector probability: sample points in the disk, test sectors.

Reference: 苏剑林, 《圆内随机n点在同一个圆心角为θ的扇形的概率》, https://kexue.fm/archives/9324
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import _checks
from diffusionlab.sector.checks import check_n, check_num_samples, check_theta

METHODS = ("sector", "gap")
MAX_MC_N = 2**14  # a chunk row of the "sector" test holds n^2 pair angles
_CHUNK_ELEMENTS = 2**21  # per-chunk work array (points, or point pairs for "sector")


def sample_disk(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    r"""Points uniform in the unit disk, ``shape + (2,)``: radius :math:`\sqrt U`, angle :math:`2\pi V`."""
    _checks.check_key(key)
    if not isinstance(shape, tuple) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise TypeError(f"shape must be a tuple of non-negative ints; got {shape!r}")
    _checks.check_fits_memory("shape", 8.0 * math.prod(shape), "the points")
    radius_key, angle_key = jax.random.split(key)
    radius = jnp.sqrt(jax.random.uniform(radius_key, shape))
    angle = 2 * jnp.pi * jax.random.uniform(angle_key, shape)
    return jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)], axis=-1)


def smallest_sector_angle(points_BxNx2: jax.Array, *, method: str = "sector") -> jax.Array:
    r"""Smallest central angle of a sector (apex at the centre) holding all N points, per row.

    ``"sector"`` tests the candidate sectors directly: the best sector can be turned until
    its clockwise edge passes through a point :math:`p_i`; it then needs the angle
    :math:`\max_j\alpha_{ij}`, where :math:`\alpha_{ij}=(\varphi_j-\varphi_i)\bmod2\pi` is the
    counter-clockwise angle from :math:`p_i` to :math:`p_j`, so

    .. math:: \Theta^*=\min_i\max_j\alpha_{ij}.

    ``"gap"`` sorts the polar angles instead: :math:`\Theta^*=2\pi-\text{largest circular gap}`.
    The first costs :math:`O(N^2)` per row, the second :math:`O(N\log N)`; they agree to
    rounding, which the tests check.

    Args:
      points_BxNx2: B rows of N points in the plane (not at the origin).
      method: ``"sector"`` or ``"gap"``.

    Returns:
      ``(B,)`` angles in :math:`[0,2\pi)`; row b fits a sector of angle θ iff the value is
      :math:`\le\theta`.
    """
    points_BxNx2 = _checks.float_array(points_BxNx2, "points_BxNx2", shape=(None, None, 2),
                                       layout="(B, N, 2)")
    _checks.check_choice(method, "method", METHODS)
    phi_BxN = jnp.arctan2(points_BxNx2[..., 1], points_BxNx2[..., 0])
    if method == "sector":
        # From the polar angles rather than cross products: XLA contracts x_i y_j - y_i x_j
        # into a fused multiply-add, which leaves alpha_ii = -tiny, i.e. a full turn.
        alpha_BxNxN = phi_BxN[:, None, :] - phi_BxN[:, :, None]
        alpha_BxNxN = jnp.where(alpha_BxNxN < 0, alpha_BxNxN + 2 * jnp.pi, alpha_BxNxN)
        return jnp.min(jnp.max(alpha_BxNxN, axis=2), axis=1)
    if method == "gap":
        phi = jnp.sort(phi_BxN, axis=1)
        gaps = jnp.diff(phi, axis=1, append=phi[:, :1] + 2 * jnp.pi)
        return 2 * jnp.pi - jnp.max(gaps, axis=1)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


@functools.partial(jax.jit, static_argnames=("n_max", "num_samples", "method", "chunk"))
def count_hits(key, theta_M, n, *, n_max, num_samples, method, chunk):
    """Number of samples (of ``num_samples`` rows of n disk points) that fit each angle.

    Rows are drawn ``chunk`` at a time inside a ``fori_loop`` (keys folded in by chunk
    index), so memory stays at one chunk whatever ``num_samples`` is. All angles are tested
    on the same rows. ``n`` is traced: each row draws ``n_max`` points and the ones past n
    are replaced by copies of the first point, which changes no gap and no sector, so one
    compilation serves every n up to ``n_max``.
    """
    num_chunks = -(-num_samples // chunk)
    theta_M = theta_M.astype(jnp.float32)

    def body(i, counts_M):
        points = sample_disk(jax.random.fold_in(key, i), (chunk, n_max))
        real_N = jnp.arange(n_max) < n
        points = jnp.where(real_N[None, :, None], points, points[:, :1, :])
        best_B = smallest_sector_angle(points, method=method)
        real_B = i * chunk + jnp.arange(chunk) < num_samples
        fits_BxM = (best_B[:, None] <= theta_M[None, :]) & real_B[:, None]
        return counts_M + jnp.sum(fits_BxM, axis=0, dtype=jnp.int32)

    return jax.lax.fori_loop(0, num_chunks, body, jnp.zeros(theta_M.shape, jnp.int32))


def default_chunk(n: int, num_samples: int) -> int:
    """Rows per chunk so that the "sector" test's n x n array has about 2**21 elements.

    The same for both methods, so that they see the same random rows.
    """
    return int(max(1, min(num_samples, _CHUNK_ELEMENTS // (n * n), 2**16)))


def probability_mc(n, theta, *, key, num_samples, method: str = "sector"):
    r"""Monte Carlo estimate of :math:`P_n(\theta)`, without using the formula.

    Draws ``num_samples`` sets of n points uniformly in the unit disk and counts the sets
    that some sector of central angle θ contains, testing every candidate sector directly
    (see :func:`smallest_sector_angle`). The estimator is a binomial proportion:

    .. math:: \hat P=\frac1S\sum_{s=1}^S\mathbf 1[\Theta^*_s\le\theta],\qquad
              \mathrm{SE}=\sqrt{\hat P(1-\hat P)/S}.

    Every θ of an array is tested on the same samples (common random numbers), so the
    estimated curve is itself monotone in θ. The work runs jitted in chunks, so
    :math:`10^8` points fit in memory.

    Args:
      n: number of points (an integer ≥ 1).
      theta: angle(s) in radians, :math:`0<\theta\le2\pi`, scalar or array.
      key: a JAX PRNG key.
      num_samples: number of point sets S, an integer in [1, 2**31 - 1].
      method: ``"sector"`` (direct test, :math:`O(n^2)`) or ``"gap"`` (largest gap).

    Returns:
      ``(estimate, standard_error)``, float64 NumPy arrays of theta's shape.

    Raises:
      ValueError: n, theta, num_samples or method out of range.

    Reference: 苏剑林, 《圆内随机n点在同一个圆心角为θ的扇形的概率》, https://kexue.fm/archives/9324
    """
    n = check_n(n)
    if n > MAX_MC_N:
        raise ValueError(f"n must be at most {MAX_MC_N} for Monte Carlo (each sample holds n "
                         f"points, the sector test n^2 pairs); got {n}")
    theta = check_theta(theta)
    num_samples = check_num_samples(num_samples)
    _checks.check_key(key)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    n_max = max(4, 1 << (n - 1).bit_length())  # power-of-two buckets: few compilations
    chunk = default_chunk(n_max, num_samples)
    counts = count_hits(key, jnp.asarray(theta.ravel(), jnp.float32), n, n_max=n_max,
                        num_samples=num_samples, method=method, chunk=chunk)
    estimate = np.asarray(counts, np.float64).reshape(theta.shape) / num_samples
    standard_error = np.sqrt(estimate * (1 - estimate) / num_samples)
    return estimate, standard_error
