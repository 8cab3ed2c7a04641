r"""The batch-ratio estimator of the marginal score, and its batch-size-dependent bias.

Plugging finite-batch means into the ratio form

.. math:: \widehat{\nabla\log p_t}(x_t)=\frac{\sum_{i=1}^B\nabla p_t(x_t\mid x_0^{(i)})}
   {\sum_{i=1}^B p_t(x_t\mid x_0^{(i)})}=\sum_iw_i\,\nabla\log p_t(x_t\mid x_0^{(i)}),\qquad
   w=\operatorname{softmax}_i\log p_t(x_t\mid x_0^{(i)}),

gives a ratio of means: consistent, but biased at every finite :math:`B`. Conditional score
matching avoids it by regressing on the per-pair target instead.

Reference: 苏剑林, 《生成扩散模型漫谈（十八）：得分匹配 = 条件得分匹配》, https://kexue.fm/archives/9509
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from diffusionlab import _checks
from diffusionlab.scorematching.gaussian import GaussianMixture, _check_alpha_sigma


def batch_ratio_score(x_t: jax.Array, x_0: jax.Array, *, alpha, sigma) -> jax.Array:
    r"""Batch-ratio estimate of :math:`\nabla\log p_t` at each ``x_t`` from one batch of ``x_0``.

    Computed in log space (a softmax over :math:`-\|x_t-\alpha x_0^{(i)}\|^2/2\sigma^2`), so that
    far-away points do not underflow to 0/0.

    Args:
      x_t: ``(N, d)`` points at which to estimate the score.
      x_0: ``(B, d)`` one batch of data samples.
      alpha, sigma: the Gaussian perturbation :math:`x_t=\alpha x_0+\sigma\varepsilon`.

    Returns:
      ``(N, d)`` estimates.

    Raises:
      ValueError: if the inputs are not 2-D with equal ``d``.
    """
    x_t = _checks.float_array(x_t, "x_t", ndim=2)
    x_0 = _checks.float_array(x_0, "x_0", ndim=2)
    _check_alpha_sigma(alpha, sigma)
    _checks.check_fits_memory("x_t", 4.0 * x_t.shape[0] * x_0.size, "the (N, B, d) differences")
    if x_t.shape[1] != x_0.shape[1]:
        raise ValueError(f"x_t (N, d) and x_0 (B, d) must share d, got {x_t.shape}, {x_0.shape}")
    diff_NxBxD = x_t[:, None, :] - alpha * x_0[None, :, :]
    w_NxB = jax.nn.softmax(-0.5 * jnp.sum(diff_NxBxD**2, axis=-1) / sigma**2, axis=-1)
    return -jnp.einsum("nb,nbd->nd", w_NxB, diff_NxBxD) / sigma**2


def batch_ratio_score_bias(
    data: GaussianMixture,
    x_t: jax.Array,
    *,
    alpha,
    sigma,
    batch_size: int,
    num_batches: int,
    key: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    r"""Bias :math:`\mathbb E_{\text{batch}}[\widehat{\nabla\log p_t}]-\nabla\log p_t` at fixed points.

    Draws ``num_batches`` independent batches of :math:`x_0` from ``data`` and compares the mean
    batch-ratio estimate with the exact mixture score.

    Args:
      data: the data law (a Gaussian mixture, so the exact score is known).
      x_t: ``(N, d)`` fixed evaluation points.
      alpha, sigma: the perturbation.
      batch_size: ``B`` (≥ 1).
      num_batches: independent batches (≥ 2).
      key: PRNG key.

    Returns:
      ``(bias, standard_error)``, both ``(N, d)``.

    Raises:
      ValueError: if ``batch_size`` < 1 or ``num_batches`` < 2.
    """
    if not isinstance(data, GaussianMixture):
        raise TypeError(f"data must be a GaussianMixture; got {type(data).__name__}")
    data = data.checked()
    x_t = _checks.float_array(x_t, "x_t", ndim=2)
    if x_t.shape[1] != data.dim:
        raise ValueError(f"x_t must have shape (N, {data.dim}); got {x_t.shape}")
    _check_alpha_sigma(alpha, sigma)
    batch_size = _checks.check_int(batch_size, "batch_size", low=1)
    num_batches = _checks.check_int(num_batches, "num_batches", low=2)
    _checks.check_fits_memory("batch_size", 4.0 * min(num_batches, 64) * x_t.size * batch_size,
                              "a chunk of batch-ratio estimates")
    _checks.check_key(key)
    return _bias(data, x_t, alpha, sigma, int(batch_size), int(num_batches), key)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _bias(data, x_t, alpha, sigma, batch_size, num_batches, key):
    exact_NxD = data.perturb(alpha=alpha, sigma=sigma).score(x_t)

    def one(k):
        return batch_ratio_score(x_t, data.sample(batch_size, key=k), alpha=alpha,
                                 sigma=sigma) - exact_NxD

    errors_KxNxD = jax.lax.map(one, jax.random.split(key, num_batches), batch_size=64)
    return (jnp.mean(errors_KxNxD, axis=0),
            jnp.std(errors_KxNxD, axis=0, ddof=1) / jnp.sqrt(num_batches))
