r"""Monte Carlo check of the weak form of the Fokker–Planck / continuity equation.

For :math:`dx=f_t(x)\,dt+g_t\,dw` and every smooth test function :math:`\phi`,

.. math:: \frac{d}{dt}\mathbb E[\phi(x_t)]=\mathbb E\Big[f_t(x_t)\cdot\nabla\phi(x_t)
   +\tfrac12g_t^2\,\Delta\phi(x_t)\Big],

which, integrated by parts, is :math:`\partial_tp_t=-\nabla\cdot(p_tf_t)+\tfrac12g_t^2\Delta p_t`
(the continuity equation when :math:`g=0`). The verifier estimates both sides for a family of
test functions at a grid of times, from samples of :math:`p_t` (a ``sampler``) or from an analytic
``log_density`` (by importance sampling), and turns the per-sample residuals into z-scores.

Reference: 苏剑林, 《测试函数法推导连续性方程和Fokker-Planck方程》, https://kexue.fm/archives/9461
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln
from scipy.stats import norm

from diffusionlab import _checks
from diffusionlab.weakform._args import output_shape, single_key
from diffusionlab.weakform.diffusion import Diffusion, as_diffusion
from diffusionlab.weakform.generator import generator
from diffusionlab.weakform.report import WeakFormReport
from diffusionlab.weakform.test_functions import TestFunctions, scaled_test_functions

# Above this dimension the full Hessian (d Hessian-vector products per point) costs more than
# one Rademacher probe whose extra variance is small next to the sampling noise of x_t.
_HUTCHINSON_ABOVE_DIM = 16
# Degrees of freedom of the Student-t importance proposal: heavier tails than any Gaussian
# path keep the weights p/q bounded, so the importance estimates have finite variance.
_PROPOSAL_DOF = 4


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["drift", "diffusion", "sampler", "log_density", "phi"],
                   meta_fields=["dim", "num_samples", "central", "dt", "hutchinson", "num_probes",
                                "proposal_scale", "chunk_size"])
@dataclasses.dataclass(frozen=True)
class _Spec:
    """One verification: the user's functions (pytrees: a ``jax.tree_util.Partial`` has its
    arrays traced, so new parameters do not recompile) and the static sizes and choices."""

    drift: Callable
    diffusion: Diffusion
    sampler: Callable | None
    log_density: Callable | None
    phi: Callable | None  # a user callable; None when the test functions are a pytree argument
    dim: int
    num_samples: int
    central: bool
    dt: float
    hutchinson: bool
    num_probes: int
    proposal_scale: float
    chunk_size: int


def verify_fokker_planck(
    drift: Callable,
    g,
    *,
    log_density: Callable | None = None,
    sampler: Callable | None = None,
    times,
    key: jax.Array,
    num_samples: int,
    test_functions: Callable | None = None,
    dim: int | None = None,
    time_derivative: str = "central",
    dt: float = 1e-3,
    laplacian: str = "auto",
    num_probes: int = 1,
    alpha: float = 1e-3,
    proposal_scale: float = 3.0,
    chunk_size: int = 8192,
) -> WeakFormReport:
    r"""Checks :math:`\frac{d}{dt}\mathbb E\phi(x_t)=\mathbb E[f\cdot\nabla\phi+\tfrac12g_t^2\Delta\phi]`.

    The density path :math:`p_t` is given in exactly one of two ways:

    * ``sampler(t, key) -> (num_samples, d)`` draws from :math:`p_t`. The LHS is a central
      difference :math:`[\phi(x_{t+h})-\phi(x_{t-h})]/2h` of samples drawn with the **same key**
      (common random numbers), or the pathwise derivative ``jax.jvp`` in ``t`` when
      ``time_derivative="autodiff"``. The variance is lowest when the sampler is smooth in
      ``t`` at a fixed key (reparameterised, e.g. :math:`x_t=a_tx_0+b_t\varepsilon`); the
      standard error is computed from per-sample residuals, so it is valid either way.
    * ``log_density(x_D, t) -> scalar``, **normalised**: expectations are importance-sampled
      from a Student-t proposal centred at 0 with scale ``proposal_scale``, and the LHS uses
      :math:`\frac{d}{dt}\mathbb E\phi=\mathbb E[\phi\,\partial_t\log p_t]` with
      :math:`\partial_t\log p_t` by autodiff (or central difference). Meant for low ``d``.

    With central differences the standard error also carries the difference's own numerical
    resolution (a Richardson estimate of the :math:`O(h^2)` truncation from a second step
    :math:`2h`, and float rounding :math:`\epsilon|\phi|/h`), added in quadrature.

    The RHS uses ``jax`` autodiff for :math:`\nabla\phi` and the exact Hessian trace, or
    Hutchinson's estimator (Rademacher probes) when ``d > 16`` or ``laplacian="hutchinson"``.

    Args:
      drift: ``drift(x_D, t) -> (d,)`` for one point (Itô drift).
      g: the diffusion: a number, a callable ``g(t) -> scalar``, ``0``/``None`` for an ODE, or
        a :class:`DiffusionMatrix` for state-dependent matrix noise (Itô).
      log_density: analytic normalised :math:`\log p_t(x)`; exclusive with ``sampler``.
      sampler: ``sampler(t, key) -> (num_samples, d)``; exclusive with ``log_density``.
      times: strictly increasing 1-D times. With central differences, ``t ± dt`` must lie in
        the domain of the path.
      key: PRNG key.
      num_samples: Monte Carlo samples per time (≥ 2).
      test_functions: ``phi(x_D) -> (K,)``; default: 5 Gaussian bumps and 5 random Fourier
        features scaled to a pilot sample at the middle time (:func:`default_test_functions`).
      dim: the dimension ``d``; required with ``log_density`` (inferred from ``sampler``).
      time_derivative: ``"central"`` or ``"autodiff"``.
      dt: half-width ``h`` of the central difference (> 0).
      laplacian: ``"auto"``, ``"exact"`` or ``"hutchinson"``.
      num_probes: Hutchinson probes per sample (≥ 1).
      alpha: family-wise false-rejection rate; the z threshold is Bonferroni-corrected over the
        ``K × T`` cells.
      proposal_scale: scale of the importance proposal in the ``log_density`` mode (> 0).
      chunk_size: samples per vectorised chunk of the generator (bounds memory).

    Returns:
      A :class:`WeakFormReport` (``passed``, ``max_abs_z``, and the per-cell table).

    Raises:
      ValueError: on neither or both of ``log_density``/``sampler``, a non-scalar ``g``,
        times that are not a non-empty, finite, strictly increasing 1-D array, shape
        mismatches, a number or hyperparameter out of its range (``num_samples`` ≥ 2,
        ``dt`` > 0, ``num_probes`` ≥ 1, ``alpha`` in (0, 1), ``proposal_scale`` > 0,
        ``chunk_size`` ≥ 1, ``dim`` ≥ 1), a sample too large for memory, a batch of keys,
        an unknown ``time_derivative``/``laplacian``, or non-finite moments.
      TypeError: on a ``g`` of unsupported type, a function argument that is not callable
        (or returns something other than one array), ``times`` that are not a real (float or
        integer) array, a non-integer count, a non-real hyperparameter, or a ``key`` that is not a
        PRNG key.
    """
    _checks.check_callable(drift, "drift")
    if (log_density is None) == (sampler is None):
        raise ValueError("give exactly one of log_density=... or sampler=... (the density path)")
    if sampler is not None:
        _checks.check_callable(sampler, "sampler")
    else:
        _checks.check_callable(log_density, "log_density")
    if test_functions is not None:
        _checks.check_callable(test_functions, "test_functions")
    times = _checks.float_array(times, "times", allow_empty=True, finite=False, allow_int=True)
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size == 0:
        raise ValueError(f"times must be a non-empty 1-D array, got shape {times.shape}")
    if not np.all(np.isfinite(times)):
        raise ValueError(f"times must be finite, got {times}")
    if np.any(np.diff(times) <= 0):
        raise ValueError(f"times must be strictly increasing, got {times}")
    key = single_key(key)
    num_samples = _checks.check_int(num_samples, "num_samples", low=2)
    if dim is not None:
        dim = _checks.check_int(dim, "dim", low=1)
    _checks.check_choice(time_derivative, "time_derivative", ("central", "autodiff"))
    _checks.check_real(dt, "dt", low=0, low_open=True)
    _checks.check_choice(laplacian, "laplacian", ("auto", "exact", "hutchinson"))
    num_probes = _checks.check_int(num_probes, "num_probes", low=1)
    _checks.check_real(alpha, "alpha", low=0, high=1, low_open=True, high_open=True)
    _checks.check_real(proposal_scale, "proposal_scale", low=0, low_open=True)
    chunk_size = _checks.check_int(chunk_size, "chunk_size", low=1)
    alpha = float(alpha)

    t_spec = jax.ShapeDtypeStruct((), jnp.float32)
    if sampler is not None:
        shape = output_shape(sampler, "sampler(t, key)", t_spec, key)
        if len(shape) != 2 or shape[0] != num_samples:
            raise ValueError(
                f"sampler(t, key) must return (num_samples, d) = ({num_samples}, d), got {shape}"
            )
        if dim is not None and dim != shape[1]:
            raise ValueError(f"dim={dim} does not match the sampler's dimension {shape[1]}")
        dim = shape[1]
        if dim < 1:
            raise ValueError(f"sampler(t, key) must return (num_samples, d) with d ≥ 1, got {shape}")
    else:
        if dim is None:
            raise ValueError(f"dim (≥ 1) is required with log_density, got {dim}")
    # Per time: the sample, and a few (N, K) tables of the LHS, the RHS and their residual.
    _checks.check_fits_memory("num_samples", 4.0 * num_samples * (4 * dim + 64),
                              f"{num_samples} samples in dimension {dim}")
    x_spec = jax.ShapeDtypeStruct((dim,), jnp.float32)
    if log_density is not None:
        shape = output_shape(log_density, "log_density(x, t)", x_spec, t_spec)
        if shape != ():
            raise ValueError(f"log_density(x, t) must return a scalar, got shape {shape}")
    drift_shape = output_shape(drift, "drift(x, t)", x_spec, t_spec)
    if drift_shape != (dim,):
        raise ValueError(f"drift(x, t) must return shape ({dim},) for x of shape ({dim},), "
                         f"got {drift_shape}")
    diffusion = as_diffusion(g, dim)

    key_pilot, key = jax.random.split(key)
    if test_functions is None:
        test_functions = _pilot_test_functions(
            sampler, log_density, jnp.asarray(times[len(times) // 2], jnp.float32), dim,
            int(num_samples), float(proposal_scale), key_pilot)
    phi_shape = output_shape(test_functions, "test_functions(x)", x_spec)
    if len(phi_shape) != 1 or phi_shape[0] < 1:
        raise ValueError(f"test_functions(x) must return a 1-D vector (K,), got {phi_shape}")
    names = getattr(test_functions, "names", None) or tuple(f"phi{k}" for k in range(phi_shape[0]))

    is_pytree = isinstance(test_functions, TestFunctions)
    spec = _Spec(
        drift=drift, diffusion=diffusion, sampler=sampler, log_density=log_density,
        phi=None if is_pytree else test_functions, dim=dim, num_samples=int(num_samples),
        central=time_derivative == "central", dt=float(dt),
        hutchinson=laplacian == "hutchinson" or (laplacian == "auto" and dim > _HUTCHINSON_ABOVE_DIM),
        num_probes=int(num_probes), proposal_scale=float(proposal_scale),
        chunk_size=int(min(chunk_size, num_samples)),
    )
    lhs, rhs, residual, se = jax.device_get(
        _weak_moments(spec, jnp.asarray(times, jnp.float32), key,
                      test_functions if is_pytree else None)
    )
    lhs, rhs, residual, se = (np.asarray(a, np.float64) for a in (lhs, rhs, residual, se))
    if not (np.all(np.isfinite(residual)) and np.all(np.isfinite(se))):
        bad = times[~np.all(np.isfinite(residual) & np.isfinite(se), axis=1)]
        raise ValueError(f"non-finite weak-form moments at times {bad}: check the drift, g and "
                         f"the density path there")
    threshold = float(norm.isf(alpha / (2 * residual.size)))
    z = residual / np.maximum(se, np.finfo(np.float64).tiny)
    max_abs_z = float(np.max(np.abs(z)))
    return WeakFormReport(
        passed=max_abs_z <= threshold, max_abs_z=max_abs_z, threshold=threshold, alpha=alpha,
        times=times, names=tuple(names), lhs=lhs, rhs=rhs, residual=residual,
        standard_error=se, num_samples=int(num_samples),
    )


def verify_continuity(velocity: Callable, **kwargs) -> WeakFormReport:
    r"""Checks the continuity equation :math:`\partial_tp_t=-\nabla\cdot(p_tf_t)` in weak form.

    The :math:`g=0` case of :func:`verify_fokker_planck`:
    :math:`\frac{d}{dt}\mathbb E\phi(x_t)=\mathbb E[f_t(x_t)\cdot\nabla\phi(x_t)]`, the identity
    that proves probability-flow and rectified-flow ODEs transport :math:`p_t`.

    Args:
      velocity: ``velocity(x_D, t) -> (d,)``.
      **kwargs: as for :func:`verify_fokker_planck` (``log_density`` or ``sampler``, ``times``,
        ``key``, ``num_samples``, ...).

    Returns:
      A :class:`WeakFormReport`.

    Raises:
      TypeError, ValueError: as for :func:`verify_fokker_planck` (``velocity`` is named where
        that function names ``drift``).
    """
    _checks.check_callable(velocity, "velocity")
    if "g" in kwargs:
        raise TypeError("verify_continuity takes no g (it is the g = 0 case); use "
                        "verify_fokker_planck for a diffusion")
    return verify_fokker_planck(velocity, None, **kwargs)


def _central_difference_error(d_h_NxK, d_2h_NxK, phi_NxK, h):
    """Resolution of a central difference: Richardson truncation estimate ⊕ rounding.

    With a coupled, smooth sampler the per-sample residual can be far below the difference's
    own numerical error (for an ODE it is zero up to that error), so the Monte Carlo standard
    error alone would turn O(h²) truncation and float rounding into huge z-scores.
    """
    truncation_K = jnp.abs(jnp.mean(d_2h_NxK - d_h_NxK, axis=0)) / 3.0
    rounding_K = jnp.finfo(phi_NxK.dtype).eps * jnp.mean(jnp.abs(phi_NxK), axis=0) / h
    return jnp.sqrt(truncation_K**2 + rounding_K**2)


@eqx.filter_jit
def _pilot_test_functions(sampler, log_density, t_mid, dim, num_samples, proposal_scale, key):
    """Default test functions scaled to (and bumps centred on) a pilot sample of p_t."""
    key_x, key_c, key_phi = jax.random.split(key, 3)
    if sampler is not None:
        x_NxD = sampler(t_mid, key_x)
        weights_N = jnp.full((num_samples,), 1.0 / num_samples)
    else:
        x_NxD, log_q_N = _proposal(key_x, num_samples, dim, proposal_scale)
        log_w_N = jax.vmap(log_density, in_axes=(0, None))(x_NxD, t_mid) - log_q_N
        weights_N = jax.nn.softmax(log_w_N)
    mean_D = weights_N @ x_NxD
    scale = jnp.sqrt(jnp.mean(weights_N @ (x_NxD - mean_D[None, :]) ** 2))
    centers = x_NxD[jax.random.choice(key_c, num_samples, (5,), p=weights_N)]
    return scaled_test_functions(dim, key=key_phi, num=10, scale=scale, centers=centers)


def _proposal(key, num, dim, scale):
    """Draws a multivariate Student-t sample and its log density."""
    key_z, key_chi = jax.random.split(key)
    nu = _PROPOSAL_DOF
    z_NxD = jax.random.normal(key_z, (num, dim))
    # χ²_ν as a sum of ν squared normals (ν is an integer): cheaper to compile than a gamma draw.
    chi2_N = jnp.sum(jax.random.normal(key_chi, (num, int(nu))) ** 2, axis=-1)
    x_NxD = scale * z_NxD / jnp.sqrt(chi2_N / nu)[:, None]
    log_q_N = (
        gammaln((nu + dim) / 2) - gammaln(nu / 2) - 0.5 * dim * math.log(nu * math.pi)
        - dim * math.log(scale)
        - 0.5 * (nu + dim) * jnp.log1p(jnp.sum(x_NxD**2, axis=-1) / (nu * scale**2))
    )
    return x_NxD, log_q_N


@eqx.filter_jit
def _weak_moments(spec: _Spec, times_T, key, test_functions):
    """Per-time means of the LHS, the RHS, the residual and its standard error: 4 × (T, K)."""
    phi = test_functions if spec.phi is None else spec.phi
    phi_N = jax.vmap(phi)

    def rhs_per_sample(x_NxD, t, key):
        keys = jax.random.split(key, x_NxD.shape[0])

        def one(args):
            x_D, k = args
            return generator(phi, spec.drift, spec.diffusion, x_D, t, key=k,
                             hutchinson=spec.hutchinson, num_probes=spec.num_probes)

        return jax.lax.map(one, (x_NxD, keys), batch_size=spec.chunk_size)

    def at_time(args):
        t, key = args
        key_x, key_probe = jax.random.split(key)
        if spec.sampler is not None:
            x_NxD = spec.sampler(t, key_x)
            numerical_K = jnp.zeros(())
            if spec.central:
                def central(h):
                    return (phi_N(spec.sampler(t + h, key_x))
                            - phi_N(spec.sampler(t - h, key_x))) / (2 * h)

                lhs_NxK = central(spec.dt)
                numerical_K = _central_difference_error(lhs_NxK, central(2 * spec.dt),
                                                        phi_N(x_NxD), spec.dt)
            else:
                _, lhs_NxK = jax.jvp(lambda s: phi_N(spec.sampler(s, key_x)), (t,),
                                     (jnp.ones_like(t),))
            rhs_NxK = rhs_per_sample(x_NxD, t, key_probe)
        else:
            x_NxD, log_q_N = _proposal(key_x, spec.num_samples, spec.dim, spec.proposal_scale)
            log_p = jax.vmap(spec.log_density, in_axes=(0, None))
            weight_N = jnp.exp(log_p(x_NxD, t) - log_q_N)
            numerical_K = jnp.zeros(())
            if spec.central:
                def central(h):
                    dlogp_N = (log_p(x_NxD, t + h) - log_p(x_NxD, t - h)) / (2 * h)
                    return (weight_N * dlogp_N)[:, None] * phi_N(x_NxD)

                lhs_NxK = central(spec.dt)
                numerical_K = _central_difference_error(
                    lhs_NxK, central(2 * spec.dt), weight_N[:, None] * phi_N(x_NxD), spec.dt)
            else:
                _, dlogp_N = jax.jvp(lambda s: log_p(x_NxD, s), (t,), (jnp.ones_like(t),))
                lhs_NxK = (weight_N * dlogp_N)[:, None] * phi_N(x_NxD)
            rhs_NxK = weight_N[:, None] * rhs_per_sample(x_NxD, t, key_probe)
        residual_NxK = lhs_NxK - rhs_NxK
        n = residual_NxK.shape[0]
        se_K = jnp.sqrt(jnp.var(residual_NxK, axis=0, ddof=1) / n + numerical_K**2)
        return (jnp.mean(lhs_NxK, axis=0), jnp.mean(rhs_NxK, axis=0),
                jnp.mean(residual_NxK, axis=0), se_K)

    keys = jax.random.split(key, times_T.shape[0])
    return jax.lax.map(at_time, (times_T, keys))
