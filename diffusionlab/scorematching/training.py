r"""The conditional (denoising) score-matching objective, as a loss for :func:`diffusionlab.train.fit`.

Each example :math:`x_0` of a batch is perturbed afresh at every step,
:math:`x_t=\alpha x_0+\sigma\varepsilon` with :math:`\varepsilon\sim\mathcal N(0,I)` drawn
from the step's key, and scored with the conditional loss
:math:`\|s_\theta(x_t)+(x_t-\alpha x_0)/\sigma^2\|^2`, which differs from the (unknowable)
explicit loss by a constant independent of :math:`\theta`.

Reference: 苏剑林, 《生成扩散模型漫谈（十八）：得分匹配 = 条件得分匹配》, https://kexue.fm/archives/9509
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from diffusionlab import _checks
from diffusionlab.scorematching.gaussian import _check_alpha_sigma
from diffusionlab.scorematching.losses import conditional_score_matching_loss


def conditional_score_matching_objective(
    apply: Callable[[Any, jax.Array], jax.Array], *, alpha, sigma
) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
    r"""``loss_fn(params, x0_BxD, key) -> (B,)``: CSM at freshly perturbed copies of ``x0``.

    .. math:: \ell_\theta(x_0;\varepsilon)=\Big\|s_\theta(\alpha x_0+\sigma\varepsilon)
       +\frac{\varepsilon}{\sigma}\Big\|^2,\qquad \varepsilon\sim\mathcal N(0,I_d).

    Args:
      apply: ``apply(params, x_t) -> (B, d)`` model scores at ``x_t`` ``(B, d)``.
      alpha: the perturbation's scale (a finite real ≥ 0).
      sigma: its noise level (a finite real > 0).

    Returns:
      ``loss_fn(params, x0_BxD, key)``, the per-example losses ``(B,)`` of a batch of clean
      points ``(B, d)``, with :math:`\varepsilon` drawn from ``key`` (the shape
      :func:`diffusionlab.train.fit` expects).

    Raises:
      TypeError: ``apply`` is not callable, or ``alpha``/``sigma`` are not real numbers.
      ValueError: ``alpha < 0`` or ``sigma ≤ 0`` (or not finite); later, when called, a batch
        that is not ``(B, d)`` finite floats.
    """
    _checks.check_callable(apply, "apply")
    _check_alpha_sigma(alpha, sigma)

    def loss_fn(params: Any, x0_BxD: jax.Array, key: jax.Array) -> jax.Array:
        x_t_BxD = alpha * x0_BxD + sigma * jax.random.normal(key, x0_BxD.shape)
        return conditional_score_matching_loss(apply(params, x_t_BxD), x_t_BxD, x0_BxD,
                                               alpha=alpha, sigma=sigma)

    return loss_fn
