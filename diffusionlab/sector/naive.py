r"""The textbook alternating sum in plain float32 or float64: the baseline that cancels.

Kept to show *why* :func:`diffusionlab.sector.probability` is built the way it is.

Reference: 苏剑林, 《圆内随机n点在同一个圆心角为θ的扇形的概率》, https://kexue.fm/archives/9324
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab.sector.checks import check_n, check_turns


@functools.partial(jax.jit, static_argnames=("max_terms",))
def _plain_sum(n, x, *, max_terms):
    k = jnp.arange(1, max_terms + 1, dtype=x.dtype)[None, :]
    n_, x_ = n[:, None], x[:, None]
    base = 1 - k * x_
    valid = (base > 0) & (k <= n_)
    # log C(n, k) as a running sum of log((n - j + 1) / j): a few ulps, unlike log-gamma
    # differences, so that only the alternating sum itself is on trial
    log_binom = jnp.cumsum(jnp.log(jnp.maximum(n_ - k + 1, 1) / k), axis=1)
    log_terms = log_binom + (n_ - 1) * jnp.log(jnp.where(valid, base, 1))
    terms = jnp.where(valid, jnp.exp(log_terms), 0)
    sign = 1 - 2 * (k % 2 == 0)
    total = jnp.sum(sign * terms, axis=1)
    largest = jnp.max(jnp.where(valid, log_terms, -jnp.inf), axis=1)
    return total, largest / jnp.log(jnp.asarray(10, x.dtype))


def probability_plain(n, q, *, dtype=np.float64):
    r"""Plain inclusion–exclusion :math:`\sum_k(-1)^{k-1}\binom nk(1-kx)_+^{n-1}` in ``dtype``.

    Each term is formed as well as the dtype allows (:math:`\exp` of a sum of logs), so
    all the error comes from the alternating sum itself: about :math:`\log_{10}\max_kT_k`
    digits are lost.

    Args:
      n: number of points (integer ≥ 1).
      q: :math:`\theta/2\pi` in (0, 1], scalar or 1-D array (floats or Fractions).
      dtype: ``np.float32`` or ``np.float64``.

    Returns:
      ``(P, log10_largest_term)`` as NumPy arrays; P is *not* clipped, so the failure shows.
    """
    n = check_n(n)
    turns = [check_turns(v) for v in np.atleast_1d(np.asarray(q, dtype=object))]
    x = np.array([float(1 - t) for t in turns])
    needed = int(min(n, np.max(np.ceil(1 / np.maximum(x, 1e-300))))) if n > 1 else 1
    max_terms = 1 << max(needed - 1, 0).bit_length()  # power-of-two buckets: few compiles
    with jax.enable_x64(dtype == np.float64):
        total, digits = _plain_sum(jnp.full(x.shape, n, dtype), jnp.asarray(x, dtype),
                                   max_terms=max_terms)
        return np.asarray(total, np.float64), np.asarray(digits, np.float64)
