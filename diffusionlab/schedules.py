r"""The variance-preserving (VP) noise schedule, continuous in :math:`t\in[0, 1]`.

:math:`x_t = \alpha_t x_0 + \sigma_t\varepsilon` with a linear rate
:math:`\beta(t) = \beta_\min + t(\beta_\max - \beta_\min)`,

.. math:: \log\alpha_t = -\tfrac12\int_0^t\beta
          = -\tfrac14 t^2(\beta_\max - \beta_\min) - \tfrac12 t\beta_\min,\qquad
          \sigma_t^2 = 1 - \alpha_t^2 .

DDPM's discrete "linear" schedule is this one sampled on a grid: with :math:`\tau = t/T`,
Su's :math:`\bar\alpha_t` (the square root of Ho's) is :math:`\alpha_\tau` for
:math:`(\beta_\min, \beta_\max) = (0.1, 20)`, exactly: :func:`diffusionlab.udm.schedule`
builds its ``"linear"`` table from :meth:`VPSchedule.log_alpha`. The float arithmetic of
``log_alpha`` is written so that this sampling reproduces Ho's
:math:`\log\bar\alpha^{\rm Ho}_\tau = -0.1\tau - 9.95\tau^2` to the bit in float64.

Reference: Song et al., *Score-Based Generative Modeling through SDEs*, arXiv:2011.13456;
苏剑林, 《生成扩散模型漫谈（十一）：统一扩散模型（应用篇）》, https://kexue.fm/archives/9271.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from diffusionlab import _checks

__all__ = ["VPSchedule", "vp_beta", "vp_log_alpha", "vp_sigma"]


def vp_beta(t, beta_min, beta_max):
    r"""The rate :math:`\beta(t) = \beta_\min + t(\beta_\max - \beta_\min)`."""
    return beta_min + t * (beta_max - beta_min)


def vp_log_alpha(t, beta_min, beta_max):
    r""":math:`\log\alpha_t = -\frac14 t^2(\beta_\max - \beta_\min) - \frac12 t\beta_\min`."""
    return -0.25 * t * t * (beta_max - beta_min) - 0.5 * t * beta_min


def vp_sigma(t, beta_min, beta_max):
    r""":math:`\sigma_t = \sqrt{1 - \alpha_t^2}`, through ``expm1`` (exact as :math:`t\to0`)."""
    return jnp.sqrt(-jnp.expm1(2 * vp_log_alpha(t, beta_min, beta_max)))


@dataclasses.dataclass(frozen=True)
class VPSchedule:
    """Linear :math:`\\beta(t)` schedule of the VP SDE (DDPM's continuous limit).

    Its methods are plain arithmetic on ``t`` (a scalar, a numpy or a JAX array), except
    :meth:`sigma`, which returns a JAX array. The formulas are the module's functions, which
    classes with their own validation (``weakform.reference.VPSDE``) share.

    Raises:
      TypeError, ValueError: ``beta_min`` not finite and ≥ 0, ``beta_max`` not finite and
        > 0, or ``beta_max < beta_min``.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def __post_init__(self):
        beta_min = _checks.check_real(self.beta_min, "beta_min", low=0.0)
        beta_max = _checks.check_real(self.beta_max, "beta_max", low=0.0, low_open=True)
        if _checks.concrete(beta_min) is not None and _checks.concrete(beta_max) is not None \
                and float(beta_max) < float(beta_min):
            raise ValueError(f"beta_max must be ≥ beta_min = {float(beta_min)}; got {float(beta_max)}")

    def beta(self, t):
        """:func:`vp_beta` of this schedule."""
        return vp_beta(t, self.beta_min, self.beta_max)

    def log_alpha(self, t):
        """:func:`vp_log_alpha` of this schedule."""
        return vp_log_alpha(t, self.beta_min, self.beta_max)

    def sigma(self, t):
        """:func:`vp_sigma` of this schedule."""
        return vp_sigma(t, self.beta_min, self.beta_max)
