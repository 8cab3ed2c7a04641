r"""PFGM's normalised batch target against the unbiased conditional target: their bias.

PFGM regresses its network onto the normalised field of one data batch
(:func:`diffusionlab.odes.gravity.pfgm_target`),

.. math:: \hat s_B(x, t) = \sqrt{d+1}\,\frac{E_B}{\|E_B\| + \gamma},\qquad
          E_B = -\frac{\sum_{i\le B} w_i\,(x - y_i,\ t)}{\sum_{i\le B} w_i},\quad
          w_i = (\|x - y_i\|^2 + t^2)^{-(d+1)/2},

with :math:`y_1..y_B` drawn from the data. The regression's minimiser at :math:`(x, t)` is
:math:`\mathbb E_B[\hat s_B]`, a mean of normalised ratios of batch sums: it differs from
the normalised field of the whole data, :math:`\hat s_\infty`, at every finite :math:`B`
(Su's point in 《生成扩散模型漫谈（十三）》, https://kexue.fm/archives/9305: a biased estimate
that needs large batches; PFGM uses 4096). The unbiased conditional target
:math:`z = (x_t - x_0)/t` of :func:`diffusionlab.odes.gravity.conditional_target` has
regression function :math:`\mathbb E[z\mid x_t = x] = F_x/F_t` exactly
(https://kexue.fm/archives/9370).

:func:`batch_target_bias` measures the first by Monte Carlo over batches, with the
whole-data field as reference; :func:`conditional_target_mean` measures the second from
exact posterior draws :math:`x_0\sim p_t(x_0\mid x)` over the data.

References: 苏剑林, https://kexue.fm/archives/9305 and https://kexue.fm/archives/9370;
PFGM: Xu et al., NeurIPS 2022, arXiv:2209.11178 (their §3.3, the batch target).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from diffusionlab import _checks
from diffusionlab.odes import gravity
from diffusionlab.odes._checks import points, positive_time

__all__ = ["BatchTargetBias", "ConditionalTargetMean", "batch_target_bias",
           "conditional_target_mean"]


class BatchTargetBias(NamedTuple):
    r"""Monte Carlo bias of PFGM's normalised batch target at ``Q`` queries ``(x, t)``.

    Attributes:
      mean: ``(Q, d+1)`` the mean of :math:`\hat s_B` over the drawn batches, the estimate of
        the regression's minimiser :math:`\mathbb E_B[\hat s_B]` (``t`` component last).
      standard_error: ``(Q, d+1)`` its Monte Carlo standard error, per component.
      exact: ``(Q, d+1)`` the whole-data normalised field :math:`\hat s_\infty` (the
        reference, same ``gamma``).
      velocity: ``(Q, d)`` the velocity of the minimiser, ``mean_x / mean_t`` (what a
        network trained on this target integrates).
      exact_velocity: ``(Q, d)`` :func:`diffusionlab.odes.gravity.velocity` over the data.
      squared_bias: ``(Q,)`` :math:`\|\text{mean}-\text{exact}\|^2 - \sum\text{SE}^2`, an
        unbiased estimate of :math:`\|\mathbb E_B[\hat s_B] - \hat s_\infty\|^2` (may be
        negative where the bias is below the Monte Carlo noise).
    """

    mean: jax.Array
    standard_error: jax.Array
    exact: jax.Array
    velocity: jax.Array
    exact_velocity: jax.Array
    squared_bias: jax.Array


class ConditionalTargetMean(NamedTuple):
    r"""Monte Carlo mean of the unbiased conditional target :math:`z = (x - x_0)/t` over exact
    posterior draws :math:`x_0\sim p_t(x_0\mid x)`, at ``Q`` queries.

    Attributes:
      mean, standard_error: ``(Q, d)`` the mean of :math:`z` and its standard error.
      exact_velocity: ``(Q, d)`` :math:`F_x/F_t` over the data (its expectation).
    """

    mean: jax.Array
    standard_error: jax.Array
    exact_velocity: jax.Array


def _queries(x, t, data):
    x, data, _ = points(x, data)
    work = jnp.result_type(x.dtype, jnp.float32)
    x, data = x.astype(work), data.astype(work)
    t = positive_time(t, x.shape[0], work, of="x")
    return x, t, data


@functools.partial(jax.jit, static_argnames=("batch_size", "num_batches"))
def _batch_moments(x, t, data, key, gamma, *, batch_size, num_batches):
    def one(k):
        rows = jax.random.randint(k, (batch_size,), 0, data.shape[0])
        return gravity._pfgm_target(x, t, data[rows], gamma)

    targets = jax.lax.map(one, jax.random.split(key, num_batches))  # (K, Q, d+1)
    mean = jnp.mean(targets, axis=0)
    se = jnp.std(targets, axis=0, ddof=1) / math.sqrt(num_batches)
    return mean, se


def batch_target_bias(x, t, data, *, batch_size: int, num_batches: int, key,
                      gamma: float = 1e-3) -> BatchTargetBias:
    r"""The bias of PFGM's normalised batch target at queries ``(x, t)``, batches of
    ``batch_size`` points drawn uniformly with replacement from ``data`` (the population).

    Args:
      x: ``(Q, d)`` query positions; t: scalar or ``(Q,)`` heights, > 0.
      data: ``(N, d)`` the data, ``N ≥ 1``: the reference field is theirs.
      batch_size: points per batch, ``B ≥ 1``.
      num_batches: Monte Carlo batches, ``K ≥ 2``.
      key: PRNG key of the batches.
      gamma: PFGM's ``gamma ≥ 0`` in :math:`E/(\|E\|+\gamma)` (also in the reference).

    Returns:
      :class:`BatchTargetBias`, computed in at least float32. Cost
      :math:`O(KBQd)`; memory :math:`O(QBd + KQd)`.

    Raises:
      TypeError, ValueError: naming the bad argument (shapes, NaN/inf, ``t ≤ 0``,
        ``batch_size < 1``, ``num_batches < 2``, ``gamma < 0``, a bad key).
    """
    x, t, data = _queries(x, t, data)
    batch_size = _checks.check_int(batch_size, "batch_size", low=1)
    num_batches = _checks.check_int(num_batches, "num_batches", low=2)
    gamma = float(_checks.check_real(gamma, "gamma", low=0.0))
    _checks.check_key(key)
    mean, se = _batch_moments(x, t, data, key, jnp.asarray(gamma, x.dtype),
                              batch_size=batch_size, num_batches=num_batches)
    exact = gravity._pfgm_target(x, t, data, gamma)
    exact_velocity = gravity.velocity(x, t, data)
    squared_bias = jnp.sum((mean - exact) ** 2 - se ** 2, axis=1)
    return BatchTargetBias(mean, se, exact, mean[:, :-1] / mean[:, -1:], exact_velocity,
                           squared_bias)


@functools.partial(jax.jit, static_argnames=("num",))
def _posterior_moments(x, t, data, key, *, num):
    d = x.shape[1]
    diff = x[:, None, :] - data[None, :, :]  # (Q, N, d)
    logits = -0.5 * (d + 1) * jnp.log(jnp.sum(diff * diff, axis=-1) + (t * t)[:, None])
    rows = jax.random.categorical(key, logits, axis=-1, shape=(num, x.shape[0]))  # (M, Q)
    z = (x[None] - data[rows]) / t[None, :, None]  # (M, Q, d)
    return jnp.mean(z, axis=0), jnp.std(z, axis=0, ddof=1) / math.sqrt(num)


def conditional_target_mean(x, t, data, *, num: int, key) -> ConditionalTargetMean:
    r"""The mean of the unbiased target :math:`z = (x - x_0)/t` over ``num`` exact draws of
    the posterior :math:`p_t(x_0\mid x)\propto p_t(x\mid x_0)` over ``data`` (uniform prior
    on the points), at each query; its expectation is the exact velocity :math:`F_x/F_t`.

    Args:
      x: ``(Q, d)``; t: scalar or ``(Q,)``, > 0; data: ``(N, d)``, ``N ≥ 1``.
      num: posterior draws per query, ``M ≥ 2``.
      key: PRNG key.

    Returns:
      :class:`ConditionalTargetMean`, in at least float32. Memory :math:`O(QNd + MQd)`.

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    x, t, data = _queries(x, t, data)
    num = _checks.check_int(num, "num", low=2)
    _checks.check_key(key)
    _checks.check_fits_memory("x", 4.0 * x.shape[0] * data.size, "the (Q, N, d) differences")
    mean, se = _posterior_moments(x, t, data, key, num=num)
    return ConditionalTargetMean(mean, se, gravity.velocity(x, t, data))
