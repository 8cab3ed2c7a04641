r"""Reference SDEs whose marginals :math:`p_t` are known in closed form.

Each process supplies what :func:`~diffusionlab.weakform.verify_fokker_planck` takes: an Itô
``drift(x_D, t) -> (d,)``, a diffusion ``g`` (a number, ``g(t)``, or a
:class:`~diffusionlab.weakform.DiffusionMatrix`), and the path either as a reparameterised
``sampler(t, key) -> (num, d)`` (smooth in ``t`` at a fixed key, so the time derivative may be
taken by autodiff) or as a normalised ``log_density(x_D, t) -> scalar``. A correct triple
satisfies :math:`\partial_tp_t=-\nabla\cdot(p_tf_t)+\tfrac12\nabla\nabla:(GG^\top p_t)`; the
tests and the ``weakform_verifier`` experiment break one ingredient at a time and check that
the verifier notices.

Reference: 苏剑林, 《测试函数法推导连续性方程和Fokker-Planck方程》, https://kexue.fm/archives/9461
(the equation); Song et al., *Score-Based Generative Modeling through SDEs*, arXiv:2011.13456
(the VP and VE SDEs); Kingma et al., *Variational Diffusion Models*, arXiv:2107.00630,
appendix A (the SDE of an affine Gaussian path).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from diffusionlab import _checks
from diffusionlab.schedules import vp_beta, vp_log_alpha
from diffusionlab.weakform.diffusion import DiffusionMatrix


@dataclasses.dataclass(frozen=True)
class OrnsteinUhlenbeck:
    r"""The Ornstein–Uhlenbeck process :math:`dx=-\theta x\,dt+g\,dw` from
    :math:`x_0\sim\mathcal N(m_0\mathbf 1,s_0^2I_d)`.

    It stays Gaussian: :math:`x_t\sim\mathcal N(m_t\mathbf 1,v_tI_d)` with

    .. math:: m_t=m_0e^{-\theta t},\qquad
              v_t=s_0^2e^{-2\theta t}+\frac{g^2}{2\theta}\big(1-e^{-2\theta t}\big),

    and it is stationary when :math:`m_0=0` and :math:`s_0^2=g^2/2\theta`
    (:attr:`stationary_variance`).

    Attributes:
      theta: mean-reversion rate :math:`\theta>0` (per unit time).
      g: noise scale :math:`g\ge0`.
      m0: initial mean (every coordinate).
      s0: initial standard deviation :math:`s_0\ge0`.

    Raises:
      TypeError, ValueError: a parameter that is not a finite real in its range.
    """

    theta: float = 1.0
    g: float = 0.8
    m0: float = 1.5
    s0: float = 0.3

    def __post_init__(self):
        _checks.check_real(self.theta, "theta", low=0.0, low_open=True)
        _checks.check_real(self.g, "g", low=0.0)
        _checks.check_real(self.m0, "m0")
        _checks.check_real(self.s0, "s0", low=0.0)

    @property
    def stationary_variance(self) -> float:
        r""":math:`g^2/2\theta`, the variance of the stationary law :math:`\mathcal N(0,\cdot\,I)`."""
        return self.g**2 / (2 * self.theta)

    def drift(self, x, t):
        r""":math:`f(x,t)=-\theta x`, for one point ``x (d,)`` (any shape: elementwise)."""
        return -self.theta * x

    def moments(self, t):
        r"""``(m_t, v_t)``: the mean of each coordinate and the variance, at times ``t`` ≥ 0."""
        decay = jnp.exp(-self.theta * t)
        return self.m0 * decay, self.s0**2 * decay**2 + self.g**2 * (1 - decay**2) / (2 * self.theta)

    def log_density(self, x, t):
        r"""Normalised :math:`\log p_t(x)` at one point ``x (d,)`` and scalar ``t`` (needs
        :math:`v_t>0`: ``t > 0`` or ``s0 > 0``)."""
        mean, var = self.moments(t)
        return -0.5 * jnp.sum((x - mean) ** 2) / var - 0.5 * x.shape[-1] * jnp.log(2 * jnp.pi * var)

    def sampler(self, num: int, *, dim: int = 2) -> Callable:
        r"""``sampler(t, key) -> (num, dim)``: :math:`x_t=m_t+\sqrt{v_t}\,\varepsilon`, with the
        same :math:`\varepsilon` for every ``t`` at one key (smooth in ``t``)."""

        def sample(t, key):
            mean, var = self.moments(t)
            return mean + jnp.sqrt(var) * jax.random.normal(key, (num, dim))

        return sample


@dataclasses.dataclass(frozen=True)
class GeometricBrownianMotion:
    r"""Geometric Brownian motion :math:`dx=\mu x\,dt+\sigma x\,dW` in 1-D, from :math:`x_0=1`.

    Read in the Itô sense its solution is
    :math:`x_t=\exp\big((\mu-\tfrac12\sigma^2)t+\sigma W_t\big)`, a log-normal law; read as
    Stratonovich (:math:`\sigma x\circ dW`) it is :math:`\exp(\mu t+\sigma W_t)`, whose Itô drift
    is :math:`(\mu+\tfrac12\sigma^2)x`. Checking Stratonovich samples against the Itô drift
    :math:`\mu x` is the Itô/Stratonovich confusion the verifier must reject. The noise is
    state-dependent, so it is handed over as a :class:`DiffusionMatrix` (:attr:`noise`).

    Attributes:
      mu: drift rate :math:`\mu` (per unit time).
      sigma: volatility :math:`\sigma>0`.

    Raises:
      TypeError, ValueError: a parameter that is not a finite real in its range.
    """

    mu: float = 0.3
    sigma: float = 0.5

    def __post_init__(self):
        _checks.check_real(self.mu, "mu")
        _checks.check_real(self.sigma, "sigma", low=0.0, low_open=True)

    def drift(self, x, t):
        r"""The Itô drift :math:`\mu x`, for one point ``x (1,)``."""
        return self.mu * x

    def diffusion_matrix(self, x, t):
        r""":math:`G(x,t)=\sigma x`, as a ``(1, 1)`` matrix for one point ``x (1,)``."""
        return self.sigma * x[:, None]

    @property
    def noise(self) -> DiffusionMatrix:
        """:meth:`diffusion_matrix` wrapped for the verifier (equal for equal processes, so
        repeated verifications share one compilation)."""
        return DiffusionMatrix(self.diffusion_matrix)

    def sampler(self, num: int, *, stratonovich: bool = False) -> Callable:
        r"""``sampler(t, key) -> (num, 1)``: the exact solution at ``t ≥ 0``, read as Itô
        (default) or as Stratonovich, with the same Brownian draw for every ``t`` at one key."""
        shift = 0.0 if stratonovich else -0.5 * self.sigma**2

        def sample(t, key):
            return jnp.exp((self.mu + shift) * t + self.sigma * jnp.sqrt(t)
                           * jax.random.normal(key, (num, 1)))

        return sample

    def log_density(self, x, t):
        r"""Normalised log-normal :math:`\log p_t(x)` of the Itô solution, for one point
        ``x (1,)`` with ``x > 0`` and scalar ``t > 0``."""
        mean, var = (self.mu - 0.5 * self.sigma**2) * t, self.sigma**2 * t
        return (-0.5 * (jnp.log(x[0]) - mean) ** 2 / var - 0.5 * jnp.log(2 * jnp.pi * var)
                - jnp.log(x[0]))


@dataclasses.dataclass(frozen=True)
class VPSDE:
    r"""The variance-preserving SDE :math:`dx=-\tfrac12\beta(t)x\,dt+\sqrt{\beta(t)}\,dw`.

    With the linear schedule :math:`\beta(t)=\beta_\min+t(\beta_\max-\beta_\min)` on
    :math:`t\in[0,1]`, the path is :math:`x_t=\alpha_tx_0+\sigma_t\varepsilon` with
    :math:`\log\alpha_t=-\tfrac14t^2(\beta_\max-\beta_\min)-\tfrac12t\beta_\min` and
    :math:`\sigma_t^2=1-\alpha_t^2` (Song et al., arXiv:2011.13456, eq. 11 and appendix B): the
    formulas of :mod:`diffusionlab.schedules`, with this class's own validation.

    Attributes:
      beta_min, beta_max: the schedule's ends, :math:`0\le\beta_\min\le\beta_\max`.

    Raises:
      TypeError, ValueError: a bound that is not a finite real, or ``beta_max < beta_min``.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def __post_init__(self):
        _checks.check_real(self.beta_min, "beta_min", low=0.0)
        _checks.check_real(self.beta_max, "beta_max", low=self.beta_min)

    def alpha_sigma(self, t):
        r"""``(α_t, σ_t)`` at times ``t``; :math:`\sigma_t` through ``expm1`` so that it stays
        accurate (and nonzero) near ``t = 0``."""
        log_alpha = vp_log_alpha(t, self.beta_min, self.beta_max)
        return jnp.exp(log_alpha), jnp.sqrt(-jnp.expm1(2 * log_alpha))

    def beta(self, t):
        r""":math:`\beta(t)` (per unit time)."""
        return vp_beta(t, self.beta_min, self.beta_max)

    def drift(self, x, t):
        r""":math:`f(x,t)=-\tfrac12\beta(t)x`."""
        return -0.5 * self.beta(t) * x

    def g(self, t):
        r""":math:`g(t)=\sqrt{\beta(t)}`."""
        return jnp.sqrt(self.beta(t))


@dataclasses.dataclass(frozen=True)
class VESDE:
    r"""The variance-exploding SDE :math:`dx=\sqrt{d\sigma^2/dt}\,dw` with a geometric schedule.

    :math:`\sigma(t)=\sigma_\min(\sigma_\max/\sigma_\min)^t` on :math:`t\in[0,1]`, so
    :math:`x_t=x_0+\sigma(t)\varepsilon` (taking :math:`x_0` as the data; the
    :math:`\sigma_\min` offset at ``t = 0`` is part of the path) and
    :math:`g(t)=\sigma(t)\sqrt{2\log(\sigma_\max/\sigma_\min)}` (Song et al.,
    arXiv:2011.13456, eq. 9 and appendix C).

    Attributes:
      sigma_min, sigma_max: the schedule's ends, :math:`0<\sigma_\min<\sigma_\max`.

    Raises:
      TypeError, ValueError: a bound that is not a finite real in its range.
    """

    sigma_min: float = 0.05
    sigma_max: float = 5.0

    def __post_init__(self):
        _checks.check_real(self.sigma_min, "sigma_min", low=0.0, low_open=True)
        _checks.check_real(self.sigma_max, "sigma_max", low=self.sigma_min, low_open=True)

    def sigma(self, t):
        r""":math:`\sigma(t)`."""
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def alpha_sigma(self, t):
        r"""``(1, σ(t))``: the path's scale and noise level at times ``t``."""
        return jnp.ones_like(t), self.sigma(t)

    def drift(self, x, t):
        """Zero: the VE SDE has no drift."""
        return jnp.zeros_like(x)

    def g(self, t):
        r""":math:`g(t)=\sqrt{d\sigma^2/dt}=\sigma(t)\sqrt{2\log(\sigma_\max/\sigma_\min)}`."""
        return self.sigma(t) * jnp.sqrt(2 * jnp.log(self.sigma_max / self.sigma_min))


@dataclasses.dataclass(frozen=True)
class AffinePathSDE:
    r"""The SDE :math:`dx=f(t)x\,dt+g(t)\,dw` whose marginals are :math:`x_t=a_tx_0+b_t\varepsilon`.

    Matching the conditional mean :math:`a_tx_0` and variance :math:`b_t^2` of the linear SDE
    (:math:`\dot m=fm`, :math:`\dot v=2fv+g^2`) gives

    .. math:: f(t)=\frac{d\log a_t}{dt},\qquad g(t)^2=\frac{d b_t^2}{dt}-2f(t)\,b_t^2

    (Kingma et al., arXiv:2107.00630, appendix A). Any schedule given as
    ``alpha_sigma(t) -> (a_t, b_t)`` that is differentiable in ``t``, with :math:`a_t>0` and
    :math:`g^2\ge0` (the noise-to-signal ratio :math:`b_t^2/a_t^2` non-decreasing), becomes an
    SDE the verifier can check; derivatives are taken by ``jax.grad``, so ``t`` is a scalar.

    Attributes:
      alpha_sigma: ``alpha_sigma(t) -> (a_t, b_t)`` at a scalar time.

    Raises:
      TypeError: if ``alpha_sigma`` is not callable.
    """

    alpha_sigma: Callable

    def __post_init__(self):
        _checks.check_callable(self.alpha_sigma, "alpha_sigma")

    def _rate(self, t):
        return jax.grad(lambda s: jnp.log(self.alpha_sigma(s)[0]))(t)

    def drift(self, x, t):
        r""":math:`f(t)x` with :math:`f=d\log a_t/dt`."""
        return self._rate(t) * x

    def g(self, t):
        r""":math:`g(t)=\sqrt{d b_t^2/dt-2f(t)b_t^2}` (NaN where the bracket is negative)."""
        b2 = lambda s: self.alpha_sigma(s)[1] ** 2  # noqa: E731
        return jnp.sqrt(jax.grad(b2)(t) - 2 * self._rate(t) * b2(t))
