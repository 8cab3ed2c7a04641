r"""The verifier's catalogue: correct and deliberately wrong (drift, g, :math:`p_t`) triples.

Each :class:`Case` hands :func:`~diffusionlab.weakform.verify_fokker_planck` a drift, a
diffusion and a density path (exact samples or an analytic density). The correct cases cover
the closed-form processes of :mod:`diffusionlab.weakform.reference` (Ornstein–Uhlenbeck,
geometric Brownian motion, the VP and VE SDEs and their probability-flow ODEs on an
8-Gaussian ring) and the library's own generators: the gravity (Poisson) field and the
isotropic CDF family of :mod:`diffusionlab.odes`, and the cosine hot diffusion of
:mod:`diffusionlab.udm` read as a VP-type SDE. The wrong cases break one ingredient each (a
dropped ½, a wrong sign, an Itô/Stratonovich confusion, a drift or velocity off by 10%) and must
be rejected.

Because it checks other science modules, this catalogue imports them (scorematching, odes,
udm); it is therefore imported on its own, ``from diffusionlab.weakform import cases``, and
``import diffusionlab.weakform`` stays free of those dependencies. Nothing in the library
imports it.

Reference: 苏剑林, 《测试函数法推导连续性方程和Fokker-Planck方程》, https://kexue.fm/archives/9461
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from diffusionlab import odes, udm
from diffusionlab import scorematching as sm
from diffusionlab.weakform.reference import (
    VESDE,
    VPSDE,
    AffinePathSDE,
    GeometricBrownianMotion,
    OrnsteinUhlenbeck,
)
from diffusionlab.weakform.report import WeakFormReport
from diffusionlab.weakform.strong import strong_form_residuals
from diffusionlab.weakform.test_functions import TestFunctions
from diffusionlab.weakform.verifier import verify_fokker_planck

# The data of the VP/VE cases: eight Gaussians of std 0.3 on a circle of radius 2.
DATA = sm.GaussianMixture.ring(8, radius=2.0, std=0.3)
VP = VPSDE(beta_min=0.1, beta_max=20.0)  # linear schedule on t ∈ [0, 1]
VE = VESDE(sigma_min=0.05, sigma_max=5.0)  # geometric schedule on t ∈ [0, 1]
OU = OrnsteinUhlenbeck(theta=1.0, g=0.8, m0=1.5, s0=0.3)
GBM = GeometricBrownianMotion(mu=0.3, sigma=0.5)
# A small empirical data set for the point-mass fields (gravity, CDF family).
ATOMS = 0.6 * DATA.means


@dataclasses.dataclass(frozen=True)
class Case:
    r"""One verification: what is checked, against which path, and whether it should pass.

    Attributes:
      name: a short identifier (unique in :func:`cases`).
      description: one line for tables.
      correct: whether the triple is right (the verifier should pass it) or deliberately wrong.
      drift: ``drift(x_D, t) -> (d,)``, the Itô drift or the ODE's velocity.
      g: the diffusion, as :func:`~diffusionlab.weakform.verify_fokker_planck` takes it
        (``None`` for an ODE).
      path: ``"sampler"`` or ``"log_density"``: what ``make_path`` returns.
      make_path: ``make_path(num_samples)`` -> ``sampler(t, key) -> (num_samples, dim)``, or
        the normalised ``log_density(x_D, t)``.
      t_range: ``(t_first, t_last)``, the times at which the path is checked.
      dim: the dimension ``d``.
      log_density: the analytic :math:`\log p_t` for the strong-form residual, if known.
      test_functions: ``None`` for the verifier's default family.
    """

    name: str
    description: str
    correct: bool
    drift: Callable
    g: object
    path: str
    make_path: Callable
    t_range: tuple[float, float]
    dim: int = 2
    log_density: Callable | None = None
    test_functions: Callable | None = None

    def verify(self, num_samples: int, times, *, key: jax.Array) -> WeakFormReport:
        """The weak-form check of this case at ``times`` (1-D, strictly increasing, inside
        ``t_range``) with ``num_samples`` Monte Carlo samples per time.

        Raises:
          ValueError, TypeError: as :func:`~diffusionlab.weakform.verify_fokker_planck`.
        """
        path = self.make_path(num_samples)
        kwargs = ({"sampler": path, "time_derivative": "autodiff"} if self.path == "sampler"
                  else {"log_density": path, "dim": self.dim})
        return verify_fokker_planck(self.drift, self.g, times=times, key=key,
                                    num_samples=num_samples,
                                    test_functions=self.test_functions, **kwargs)

    def strong_residual(self, times, *, key: jax.Array, num_points: int = 64) -> float | None:
        r"""Largest :math:`|\partial_tp+\nabla\cdot(fp)-\tfrac12g^2\Delta p|/p` of the analytic
        density over ``num_points`` random points and ``times`` (``None`` without one).

        The points are :math:`2.5\,\mathcal N(0,I)` draws, or log-normal
        :math:`e^{\mathcal N(0,1/4)}` for the positive 1-D process.
        """
        if self.log_density is None:
            return None
        if self.dim == 1:
            points = jnp.exp(0.5 * jax.random.normal(key, (num_points, 1)))
        else:
            points = 2.5 * jax.random.normal(key, (num_points, self.dim))
        residual = strong_form_residuals(self.drift, self.g, self.log_density, points=points,
                                         times=jnp.asarray(times, jnp.float32))
        return float(jnp.max(jnp.abs(residual)))


# --- the 8-Gaussian ring under an affine path x_t = a_t x_0 + b_t ε ---------------------------

def _mixture_sampler(alpha_sigma: Callable, num: int) -> Callable:
    """x_t = α_t x_0 + σ_t ε with fixed (x_0, ε) per key: smooth in t, so autodiff in t works."""

    def sampler(t, key):
        k0, k1 = jax.random.split(key)
        a, s = alpha_sigma(t)
        return a * DATA.sample(num, key=k0) + s * jax.random.normal(k1, (num, 2))

    return sampler


def _mixture_log_density(alpha_sigma: Callable) -> Callable:
    def log_density(x, t):
        a, s = alpha_sigma(t)
        return DATA.perturb(alpha=a, sigma=s).log_prob(x)

    return log_density


def _mixture_score(alpha_sigma: Callable, x, t):
    a, s = alpha_sigma(t)
    return DATA.perturb(alpha=a, sigma=s).score(x)


def _path_maker(maker: Callable, alpha_sigma: Callable) -> Callable:
    def make(num):
        return maker(alpha_sigma, num)

    return make


def _vp_flow(x, t):
    """The VP probability-flow velocity f − ½β ∇log p_t with the exact mixture score."""
    return VP.drift(x, t) - 0.5 * VP.beta(t) * _mixture_score(VP.alpha_sigma, x, t)


def _vp_flow_wrong_sign(x, t):
    return VP.drift(x, t) + 0.5 * VP.beta(t) * _mixture_score(VP.alpha_sigma, x, t)


def _ve_flow(x, t):
    return -0.5 * VE.g(t) ** 2 * _mixture_score(VE.alpha_sigma, x, t)


# --- point-mass fields of the ODE generators ---------------------------------------------------

def _atoms_sampler(conditional_sample: Callable, num: int) -> Callable:
    """x_t ~ p_t(·|x_0) with x_0 uniform over the atoms; reparameterised, so smooth in t."""

    def sampler(t, key):
        k0, k1 = jax.random.split(key)
        x0 = ATOMS[jax.random.randint(k0, (num,), 0, ATOMS.shape[0])]
        return conditional_sample(x0, t, key=k1)

    return sampler


def _gravity_velocity(x, t):
    """The empirical gravity field dx/dt = F_x/F_t (posterior mean of (x_t − x_0)/t)."""
    return odes.gravity.velocity(x[None], t, ATOMS)[0]


def _gravity_wrong_velocity(x, t):
    return 0.9 * _gravity_velocity(x, t)


def _gravity_path(num):
    return _atoms_sampler(odes.gravity.conditional_sample, num)


# Gravity's conditional is multivariate Cauchy: only bounded test functions with bounded,
# decaying gradients keep the weak form's expectations finite, so Gaussian bumps only.
GRAVITY_TEST_FUNCTIONS = TestFunctions(
    centers=jnp.concatenate([ATOMS, jnp.zeros((1, 2)), 2.0 * ATOMS[::3]]),
    widths=jnp.full((ATOMS.shape[0] + 1 + 3,), 0.8),
    frequencies=jnp.zeros((0, 2)), phases=jnp.zeros((0,)))


def _cdf_velocity(path) -> Callable:
    def velocity(x, t):
        return odes.isotropic.marginal_velocity(path, x[None], t, ATOMS)[0]

    return velocity


def _cdf_sampler(path) -> Callable:
    def make(num):
        return _atoms_sampler(lambda x0, t, key: odes.isotropic.conditional_sample(
            path, x0, t, key=key), num)

    return make


# --- the unified diffusion model's hot diffusion, in continuous time ---------------------------

HOT = udm.HotDiffusion(T=100, schedule="cosine")
_HOT_TAU = jnp.arange(HOT.T + 1, dtype=jnp.float32) / HOT.T
_HOT_ALPHA = jnp.asarray(HOT.coefficients.alpha_bar, jnp.float32)
_HOT_BETA = jnp.asarray(HOT.coefficients.beta_bar, jnp.float32)


def _hot_alpha_sigma(tau):
    """UDM hot-diffusion ᾱ, β̄ at continuous τ = t/T (linear between the T + 1 steps)."""
    return jnp.interp(tau, _HOT_TAU, _HOT_ALPHA), jnp.interp(tau, _HOT_TAU, _HOT_BETA)


HOT_SDE = AffinePathSDE(_hot_alpha_sigma)


def _gbm_path(num, *, stratonovich):
    return GBM.sampler(num, stratonovich=stratonovich)


def cases() -> list[Case]:
    """Every case, the correct ones first; names are unique.

    Returns:
      A list of :class:`Case`: ``ou``, ``vp_sde``, ``vp_pf_ode``, ``ve_sde``, ``ve_pf_ode``,
      ``gbm_ito``, ``gravity``, one ``cdf_<Path>`` per member of ``odes.CDF_FAMILY`` and
      ``hot_diffusion`` (correct); then ``vp_sde_dropped_half``, ``vp_pf_ode_wrong_sign``,
      ``gbm_ito_stratonovich``, ``gravity_velocity_10pct`` and ``vp_sde_drift_10pct`` (wrong).
    """
    vp = _path_maker(_mixture_sampler, VP.alpha_sigma)
    ve = _path_maker(_mixture_sampler, VE.alpha_sigma)
    vp_logp, ve_logp = _mixture_log_density(VP.alpha_sigma), _mixture_log_density(VE.alpha_sigma)
    vp_t, ve_t = (0.05, 1.0), (0.05, 1.0)
    gbm_noise = GBM.noise
    return [
        Case("ou", "OU dx=-θx dt+g dw, analytic Gaussian p_t (importance-sampled)", True,
             OU.drift, OU.g, "log_density", lambda n: OU.log_density, (0.1, 2.0),
             log_density=OU.log_density),
        Case("vp_sde", "VP SDE, 8-Gaussian data, exact marginals", True, VP.drift, VP.g,
             "sampler", vp, vp_t, log_density=vp_logp),
        Case("vp_pf_ode", "VP probability-flow ODE (exact mixture score)", True, _vp_flow, None,
             "sampler", vp, vp_t, log_density=vp_logp),
        Case("ve_sde", "VE SDE, 8-Gaussian data, exact marginals", True, VE.drift, VE.g,
             "sampler", ve, ve_t, log_density=ve_logp),
        Case("ve_pf_ode", "VE probability-flow ODE (exact mixture score)", True, _ve_flow, None,
             "sampler", ve, ve_t, log_density=ve_logp),
        Case("gbm_ito", "geometric BM, state-dependent noise, Itô", True, GBM.drift, gbm_noise,
             "sampler", lambda n: _gbm_path(n, stratonovich=False), (0.1, 1.0), dim=1,
             log_density=GBM.log_density),
        Case("gravity", "gravity ODE (Poisson field) of 8 atoms, exact conditional paths",
             True, _gravity_velocity, None, "sampler", _gravity_path, (0.2, 1.5),
             test_functions=GRAVITY_TEST_FUNCTIONS),
        *[Case(f"cdf_{type(path).__name__}", f"isotropic CDF-family field, {type(path).__name__}",
               True, _cdf_velocity(path), None, "sampler", _cdf_sampler(path), (0.2, 1.5))
          for path in odes.CDF_FAMILY],
        Case("hot_diffusion", "UDM hot diffusion (cosine ᾱ, β̄ at τ = t/T) as a VP-type SDE",
             True, HOT_SDE.drift, HOT_SDE.g, "sampler",
             _path_maker(_mixture_sampler, _hot_alpha_sigma), (0.055, 0.895),
             log_density=_mixture_log_density(_hot_alpha_sigma)),
        Case("vp_sde_dropped_half", "VP SDE checked with g²Δφ (the ½ dropped)", False, VP.drift,
             lambda t: jnp.sqrt(2.0) * VP.g(t), "sampler", vp, vp_t, log_density=vp_logp),
        Case("vp_pf_ode_wrong_sign", "VP PF-ODE with +½g²∇log p (sign flipped)", False,
             _vp_flow_wrong_sign, None, "sampler", vp, vp_t, log_density=vp_logp),
        Case("gbm_ito_stratonovich", "Stratonovich GBM samples checked with the Itô drift μx",
             False, GBM.drift, gbm_noise, "sampler",
             lambda n: _gbm_path(n, stratonovich=True), (0.1, 1.0), dim=1),
        Case("gravity_velocity_10pct", "gravity ODE with its velocity 10% too small", False,
             _gravity_wrong_velocity, None, "sampler", _gravity_path, (0.2, 1.5),
             test_functions=GRAVITY_TEST_FUNCTIONS),
        Case("vp_sde_drift_10pct", "VP SDE checked with a drift 10% too large", False,
             lambda x, t: 1.1 * VP.drift(x, t), VP.g, "sampler", vp, vp_t, log_density=vp_logp),
    ]


def case(name: str) -> Case:
    """The case called ``name``.

    Raises:
      ValueError: if no case has that name (the message lists the valid names).
    """
    found = {c.name: c for c in cases()}
    if name not in found:
        raise ValueError(f"unknown case {name!r}; valid: {', '.join(found)}")
    return found[name]
