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

from diffusionlab import _checks


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

    def checked(self, *, positive: bool = False) -> GaussianMixture:
        """This mixture with its arrays validated (float32 or wider, matching shapes, stds and
        weights positive, weights summing to one where concrete); raises naming the field.

        Checked by the methods rather than at construction, because JAX rebuilds the pytree
        with placeholders inside its transformations.
        """
        means = _checks.float_array(self.means, "means", ndim=2)
        stds = _checks.float_array(self.stds, "stds", shape=(means.shape[0],))
        weights = _checks.float_array(self.weights, "weights", shape=(means.shape[0],))
        _checks.check_real(stds, "stds", low=0, low_open=positive, scalar=False)
        _checks.check_real(weights, "weights", low=0, low_open=True, scalar=False)
        total = _checks.concrete(jnp.sum(weights))
        if total is not None and abs(float(total) - 1.0) > 1e-3:  # half-precision inputs round
            raise ValueError(f"weights must sum to one; got {float(total)}")
        return GaussianMixture(means, stds, weights)

    @classmethod
    def ring(cls, num_components: int = 8, *, radius: float = 2.0, std: float = 0.3):
        """Equal-weight components on a circle in 2-D (the "8 gaussians" toy).

        Raises:
          ValueError: if ``num_components`` < 1 or ``radius``/``std`` are not positive.
        """
        num_components = _checks.check_int(num_components, "num_components", low=1, high=2**24)
        _checks.check_real(radius, "radius", low=0, low_open=True)
        _checks.check_real(std, "std", low=0, low_open=True)
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
        _checks.check_real(alpha, "alpha", low=0)
        _checks.check_real(sigma, "sigma", low=0)
        self = self.checked()
        return GaussianMixture(alpha * self.means, jnp.sqrt(alpha**2 * self.stds**2 + sigma**2),
                               self.weights)

    def _component_log_probs(self, x_D):
        sq_M = jnp.sum((x_D[None, :] - self.means) ** 2, axis=-1)
        return (jnp.log(self.weights) - 0.5 * sq_M / self.stds**2
                - self.dim * jnp.log(self.stds) - 0.5 * self.dim * math.log(2 * math.pi))

    def log_prob(self, x: jax.Array) -> jax.Array:
        """Log density at ``x`` of shape ``(d,)`` or ``(B, d)``; returns ``()`` or ``(B,)``."""
        self = self.checked(positive=True)
        x = _checks.float_array(x, "x", ndim=(1, 2))
        _check_dim(x, self.dim)
        one = lambda x_D: jax.nn.logsumexp(self._component_log_probs(x_D))  # noqa: E731
        return one(x) if x.ndim == 1 else jax.vmap(one)(x)

    def score(self, x: jax.Array) -> jax.Array:
        r"""Exact score :math:`\nabla\log p(x)=\sum_mr_m(x)\,(\mu_m-x)/s_m^2` with responsibilities
        :math:`r_m`; ``x`` of shape ``(d,)`` or ``(B, d)``."""
        self = self.checked(positive=True)
        x = _checks.float_array(x, "x", ndim=(1, 2))
        _check_dim(x, self.dim)

        def one(x_D):
            r_M = jax.nn.softmax(self._component_log_probs(x_D))
            return (r_M / self.stds**2) @ self.means - jnp.sum(r_M / self.stds**2) * x_D

        return one(x) if x.ndim == 1 else jax.vmap(one)(x)

    def sample(self, num: int, *, key: jax.Array) -> jax.Array:
        """``(num, d)`` independent draws."""
        self = self.checked()
        num = _checks.check_int(num, "num", low=1)
        _checks.check_fits_memory("num", 4.0 * num * self.dim, f"{num} draws")
        _checks.check_key(key)
        key_m, key_z = jax.random.split(key)
        m_N = jax.random.choice(key_m, self.means.shape[0], (num,), p=self.weights)
        z_NxD = jax.random.normal(key_z, (num, self.dim))
        return self.means[m_N] + self.stds[m_N][:, None] * z_NxD


def _check_dim(x, dim: int) -> None:
    if x.shape[-1] != dim:
        raise ValueError(f"x must have {dim} features on its last axis; got shape {x.shape}")


def _check_alpha_sigma(alpha, sigma) -> None:
    """``alpha ≥ 0`` and ``sigma > 0``, finite scalars (``sigma = 0`` has no score)."""
    _checks.check_real(alpha, "alpha", low=0)
    _checks.check_real(sigma, "sigma", low=0, low_open=True)


def conditional_score(x_t: jax.Array, x_0: jax.Array, *, alpha, sigma) -> jax.Array:
    r"""Score of the perturbation kernel, :math:`\nabla\log p_t(x_t\mid x_0)=-(x_t-\alpha x_0)/\sigma^2`.

    Args:
      x_t, x_0: arrays of the same shape ``(..., d)``.
      alpha, sigma: scalars (or arrays broadcastable without rank promotion).

    Raises:
      TypeError: non-float arrays, or non-real ``alpha``/``sigma``.
      ValueError: a shape mismatch between ``x_t`` and ``x_0``, NaN/inf entries, ``alpha < 0``
        or ``sigma ≤ 0``.
    """
    x_t = _checks.float_array(x_t, "x_t", ndim=(1, 2))
    x_0 = _checks.float_array(x_0, "x_0", ndim=(1, 2))
    _checks.same_shape(x_t, x_0, names=("x_t", "x_0"))
    _check_alpha_sigma(alpha, sigma)
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
    dim = _checks.check_int(dim, "dim", low=1)
    _check_alpha_sigma(alpha, sigma)
    _checks.check_real(data_std, "data_std", low=0)
    return dim * (1.0 / sigma**2 - 1.0 / (alpha**2 * data_std**2 + sigma**2))
