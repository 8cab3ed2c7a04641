r"""Gaussian mixtures under Gaussian perturbation: exact marginal scores and the SM/CSM gap.

With :math:`x_0\sim\sum_m\pi_m\mathcal N(\mu_m,s_m^2I)` and :math:`x_t=\alpha x_0+\sigma\varepsilon`,
the marginal is again a mixture, :math:`\sum_m\pi_m\mathcal N(\alpha\mu_m,(\alpha^2s_m^2+\sigma^2)I)`,
so its score is exact: a softmax-weighted average of component scores. That makes score
matching (SM) computable without any estimator, to set against conditional score matching.

Reference: 苏剑林, 《生成扩散模型漫谈（十八）：得分匹配 = 条件得分匹配》, https://kexue.fm/archives/9509
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    r"""An isotropic Gaussian mixture :math:`\sum_m\pi_m\mathcal N(\mu_m,s_m^2I_d)`.

    Attributes:
      means: ``(M, d)`` component means :math:`\mu_m`.
      stds: ``(M,)`` component standard deviations :math:`s_m > 0`.
      weights: ``(M,)`` mixture weights :math:`\pi_m` (positive, summing to one).
    """

    means: jax.Array
    stds: jax.Array
    weights: jax.Array

    @classmethod
    def ring(cls, num_components: int = 8, *, radius: float = 2.0, std: float = 0.3):
        """Equal-weight components on a circle in 2-D (the "8 gaussians" toy).

        Raises:
          ValueError: if ``num_components`` < 1 or ``radius``/``std`` are not positive.
        """
        if num_components < 1:
            raise ValueError(f"num_components must be ≥ 1, got {num_components}")
        if not (radius > 0 and std > 0):
            raise ValueError(f"radius and std must be > 0, got {radius}, {std}")
        angle = 2 * jnp.pi * jnp.arange(num_components) / num_components
        means = radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
        return cls(means, jnp.full((num_components,), std),
                   jnp.full((num_components,), 1.0 / num_components))

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def perturb(self, *, alpha, sigma) -> GaussianMixture:
        r"""The law of :math:`\alpha x_0+\sigma\varepsilon`: means :math:`\alpha\mu_m`,
        stds :math:`\sqrt{\alpha^2s_m^2+\sigma^2}`."""
        return GaussianMixture(alpha * self.means, jnp.sqrt(alpha**2 * self.stds**2 + sigma**2),
                               self.weights)

    def _component_log_probs(self, x_D):
        sq_M = jnp.sum((x_D[None, :] - self.means) ** 2, axis=-1)
        return (jnp.log(self.weights) - 0.5 * sq_M / self.stds**2
                - self.dim * jnp.log(self.stds) - 0.5 * self.dim * math.log(2 * math.pi))

    def log_prob(self, x: jax.Array) -> jax.Array:
        """Log density at ``x`` of shape ``(d,)`` or ``(B, d)``; returns ``()`` or ``(B,)``."""
        one = lambda x_D: jax.nn.logsumexp(self._component_log_probs(x_D))  # noqa: E731
        return one(x) if x.ndim == 1 else jax.vmap(one)(x)

    def score(self, x: jax.Array) -> jax.Array:
        r"""Exact score :math:`\nabla\log p(x)=\sum_mr_m(x)\,(\mu_m-x)/s_m^2` with responsibilities
        :math:`r_m`; ``x`` of shape ``(d,)`` or ``(B, d)``."""

        def one(x_D):
            r_M = jax.nn.softmax(self._component_log_probs(x_D))
            return (r_M / self.stds**2) @ self.means - jnp.sum(r_M / self.stds**2) * x_D

        return one(x) if x.ndim == 1 else jax.vmap(one)(x)

    def sample(self, num: int, *, key: jax.Array) -> jax.Array:
        """``(num, d)`` independent draws."""
        key_m, key_z = jax.random.split(key)
        m_N = jax.random.choice(key_m, self.means.shape[0], (num,), p=self.weights)
        z_NxD = jax.random.normal(key_z, (num, self.dim))
        return self.means[m_N] + self.stds[m_N][:, None] * z_NxD


def conditional_score(x_t: jax.Array, x_0: jax.Array, *, alpha, sigma) -> jax.Array:
    r"""Score of the perturbation kernel, :math:`\nabla\log p_t(x_t\mid x_0)=-(x_t-\alpha x_0)/\sigma^2`.

    Args:
      x_t, x_0: arrays of the same shape ``(..., d)``.
      alpha, sigma: scalars (or arrays broadcastable without rank promotion).

    Raises:
      ValueError: on a shape mismatch between ``x_t`` and ``x_0``.
    """
    if x_t.shape != x_0.shape:
        raise ValueError(f"x_t and x_0 must have the same shape, got {x_t.shape} and {x_0.shape}")
    return -(x_t - alpha * x_0) / sigma**2


def gaussian_score_matching_gap(dim: int, *, alpha, sigma, data_std) -> jax.Array:
    r"""Closed-form :math:`C=\mathcal L_{CSM}-\mathcal L_{SM}` for :math:`x_0\sim\mathcal N(0,s^2I_d)`.

    .. math:: C=d\Big(\frac1{\sigma^2}-\frac1{\alpha^2s^2+\sigma^2}\Big).

    Args:
      dim: dimension ``d`` (≥ 1).
      alpha, sigma: the perturbation :math:`x_t=\alpha x_0+\sigma\varepsilon` (``sigma > 0``).
      data_std: :math:`s`.

    Raises:
      ValueError: if ``dim`` < 1 or ``sigma`` ≤ 0.
    """
    if dim < 1:
        raise ValueError(f"dim must be ≥ 1, got {dim}")
    if not float(sigma) > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    return dim * (1.0 / sigma**2 - 1.0 / (alpha**2 * data_std**2 + sigma**2))
