r"""Straight (linear) conditional paths: conditional flow matching and rectified flow.

With :math:`T = 1` the single-point path is :math:`x_t = (1 - t)\,x_0 + t\,x_1`, so

.. math:: f_t(x_t\mid x_0) = \frac{x_t - x_0}{t} = x_1 - x_0,\qquad
          \nabla\cdot f_t = \frac dt,\qquad
          p_t(x_t\mid x_0) = p_1\Big(\frac{x_t - x_0}{t} + x_0\Big)\Big/t^d .

Conditional flow matching draws :math:`x_1\sim p_1` independently of :math:`x_0`; rectified
flow regresses :math:`x_1 - x_0` on any coupling :math:`(x_0, x_1)`, and one *reflow*
re-couples each noise :math:`x_1` with the sample the first model maps it to, which
straightens the trajectories.

The same regression runs along any differentiable interpolant :math:`x_t = \Psi_t(x_0, x_1)`
(:func:`path_rectified_loss`, :func:`path_cfm_loss`): its target is the path's velocity
:math:`\partial_t\Psi_t(x_0, x_1)`, by forward-mode differentiation in :math:`t`, and its
minimiser the marginal velocity :math:`\mathbb E[\partial_t\Psi_t\mid x_t]`. A
:class:`~diffusionlab.odes.LinearPath` :math:`\mu_t(x_0) + \sigma_t x_1` is one such path,
e.g. the trigonometric (VP-like) :func:`trigonometric_path`; the default straight
``LinearPath()`` reproduces :func:`rectified_loss` and :func:`cfm_loss`. :func:`straightness`
measures how far a learned ODE is from straight (Liu et al.'s :math:`S`) and from the chosen
path between its own endpoints.

Reference: 苏剑林, 《生成扩散模型漫谈（十五）：构建ODE的一般步骤（中）》,
https://kexue.fm/archives/9379 and 《生成扩散模型漫谈（十七）：构建ODE的一般步骤（下）》,
https://kexue.fm/archives/9497; Lipman et al. arXiv:2210.02747; Liu et al. arXiv:2209.03003.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from diffusionlab import _checks
from diffusionlab.odes._checks import (
    float_input,
    input_dtype,
    points,
    positive_time,
    saturating_cast,
    source_points,
    times,
)
from diffusionlab.odes.characteristics import LinearPath
from diffusionlab.odes.generate import as_partial, generate
from diffusionlab.odes.pointmass import weighted_sums


def _pair(x0, x1):
    dtype = input_dtype(x0, x1)
    x0 = _checks.float_array(x0, "x0", allow_empty=True)
    x1 = _checks.float_array(x1, "x1", allow_empty=True)
    if x0.ndim < 1:
        raise ValueError(f"x0 must have shape (B, ...); got {x0.shape}")
    _checks.same_shape(x0, x1, names=("x0", "x1"))
    work = jnp.result_type(x0.dtype, x1.dtype)
    return x0.astype(work), x1.astype(work), dtype


def _row_times(t, x0) -> jax.Array:
    """``t`` (a scalar or one per row of ``x0``, in [0, 1]) as one time per row."""
    t = times(t)
    if t.shape not in ((), x0.shape[:1]):
        raise ValueError(f"t must be a scalar or have shape {x0.shape[:1]}, one per row of x0 "
                         f"(which has {x0.shape[0]} rows); got shape {t.shape}")
    _checks.check_real(t, "t", low=0.0, high=1.0, scalar=False)
    return jnp.broadcast_to(t.astype(x0.dtype), x0.shape[:1])


def _interpolate(x0, x1, t):
    t = jnp.reshape(t, t.shape + (1,) * (x0.ndim - 1))
    return (1 - t) * x0 + t * x1


def interpolate(x0, x1, t) -> jax.Array:
    r""":math:`x_t = (1 - t)x_0 + t x_1` with ``t`` of shape ``(B,)`` broadcast over the rest.

    Args:
      x0, x1: ``(B, ...)`` of the same shape; t: ``(B,)`` or a scalar, in :math:`[0, 1]`.

    Returns:
      Shaped like ``x0``, in the inputs' dtype (computed in at least float32).

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    x0, x1, dtype = _pair(x0, x1)
    t = _row_times(t, x0)
    return saturating_cast(_interpolate(x0, x1, t), dtype)


def _model_output(velocity_model, x, t, name):
    out = jnp.asarray(velocity_model(x, t))
    if out.shape != x.shape:
        raise ValueError(f"{name}(x, t) must return an array shaped like x {x.shape}; got "
                         f"{out.shape}")
    return out.astype(x.dtype)


def rectified_loss(velocity_model: Callable, x0, x1, *, key, t_min: float = 0.0) -> jax.Array:
    r"""Per-example rectified-flow loss :math:`\|v_\theta(x_t, t) - (x_1 - x_0)\|^2`,
    :math:`t\sim U[t_\min, 1]`, for a given coupling ``(x0, x1)``.

    Args:
      velocity_model: ``v(x, t_B)``, returning an array shaped like ``x``.
      x0: data ``(B, ...)``; x1: its partner at :math:`t = 1` (same shape).
      key: PRNG key for :math:`t`.
      t_min: in :math:`[0, 1]`.

    Returns:
      ``(B,)``, in the inputs' dtype (computed in at least float32).

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    _checks.check_callable(velocity_model, "velocity_model")
    x0, x1, dtype = _pair(x0, x1)
    _checks.check_key(key)
    t_min = _checks.check_real(t_min, "t_min", low=0.0, high=1.0)
    t = jax.random.uniform(key, x0.shape[:1], x0.dtype, t_min, 1.0)
    residual = _model_output(velocity_model, _interpolate(x0, x1, t), t,
                             "velocity_model") - (x1 - x0)
    per_example = residual.reshape(x0.shape[0], math.prod(x0.shape[1:]))
    return saturating_cast(jnp.sum(per_example**2, axis=1), dtype)


def _independent_noise(velocity_model, x0, key):
    """Checks a flow-matching loss's arguments and draws x₁ ~ N(0, I) independent of x₀;
    returns ``(x0, x1, key_t, dtype)`` with ``key_t`` left for the times."""
    _checks.check_callable(velocity_model, "velocity_model")
    x0, dtype = _batch(x0, "x0")
    _checks.check_key(key)
    key_noise, key_t = jax.random.split(key)
    return x0, jax.random.normal(key_noise, x0.shape, x0.dtype), key_t, dtype


def cfm_loss(velocity_model: Callable, x0, *, key) -> jax.Array:
    r"""Per-example conditional flow matching loss with straight paths and
    :math:`x_1\sim\mathcal N(0, I)` independent of :math:`x_0`.

    Args, Returns, Raises: as :func:`rectified_loss` (``x0`` only).
    """
    x0, x1, key_t, dtype = _independent_noise(velocity_model, x0, key)
    return saturating_cast(rectified_loss(velocity_model, x0, x1, key=key_t), dtype)


def _batch(x, name):
    x, dtype = float_input(x, name)
    if x.ndim < 1:
        raise ValueError(f"{name} must have shape (B, ...); got {x.shape}")
    return x, dtype


def reflow_pairs(velocity_fn: Callable, noise, *, solver: str = "tsit5", steps=None,
                 rtol: float = 1e-4, atol: float = 1e-4) -> tuple[jax.Array, jax.Array]:
    r"""One reflow's coupling: :math:`(\hat x_0, x_1)` with :math:`\hat x_0` the ODE image of
    the noise :math:`x_1` under ``velocity_fn`` (integrated from 1 to 0).

    Args:
      velocity_fn: ``v(x, t)``; noise: ``(B, ...)`` draws at :math:`t = 1`; solver, steps,
        rtol, atol: as :func:`diffusionlab.odes.generate`.

    Raises:
      TypeError, ValueError: as :func:`diffusionlab.odes.generate` (``x_T`` is ``noise``).
    """
    noise, _ = float_input(noise, "noise")
    sample = generate(velocity_fn, noise, 1.0, t_end=0.0, solver=solver, steps=steps,
                      rtol=rtol, atol=atol).samples
    return sample, noise


def _log_prior_points(log_prior, z):
    # Evaluate on a (M, d) batch: fits both "(..., d) -> (...)" and "(B, d) -> (B,)" priors.
    flat = z.reshape(-1, z.shape[-1])
    out = jnp.asarray(log_prior(flat))
    if out.shape != flat.shape[:1]:
        raise ValueError(f"log_prior must map points (M, d) to log-densities (M,); got shape "
                         f"{out.shape} for input {flat.shape}")
    return out.astype(z.dtype).reshape(z.shape[:-1])


def conditional_log_density(x_t, t, x0, *, log_prior: Callable) -> jax.Array:
    r""":math:`\log p_t(x_t\mid x_0) = \log p_1((x_t - x_0)/t + x_0) - d\log t`.

    Args:
      x_t, x0: ``(..., d)`` of the same shape; t: > 0, a scalar or of shape
        ``x_t.shape[:-1]``; log_prior: log-density of :math:`p_1` over the last axis.

    Returns:
      Shape ``x_t.shape[:-1]``, in the inputs' dtype (computed in at least float32).

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    _checks.check_callable(log_prior, "log_prior")
    x_t, t, x0, dtype = source_points(x_t, t, x0, names=("x_t", "x0"))
    d = x_t.shape[-1]
    log_p = _log_prior_points(log_prior, (x_t - x0) / t[..., None] + x0) - d * jnp.log(t)
    return saturating_cast(log_p, dtype)


def _marginal_velocity(x, t, data, log_prior, log_weights):
    def log_weight(diff, dist_sq, y, t):
        # -d log t is the same for every atom: it cancels in the normalised weights.
        return _log_prior_points(log_prior, diff / t[:, None, None] + y[None, :, :])

    sums = weighted_sums(x, t, data, log_weight, log_prior=log_weights)
    reachable = jnp.isfinite(sums.log_scale)
    weight = jnp.where(reachable, sums.weight, 1.0)
    v = sums.displacement / (t * weight)[:, None]
    return jnp.where(reachable[:, None], v, 0.0)


def marginal_velocity(x, t, data, *, log_prior: Callable, weights=None) -> jax.Array:
    r"""The exact marginal velocity of straight paths for a weighted empirical :math:`p_0`:

    .. math:: f(x, t) = \frac{\sum_i w_i\,\frac{x - x_i}{t}\,p_1\big(\frac{x - x_i}{t} + x_i\big)}
                        {\sum_i w_i\,p_1\big(\frac{x - x_i}{t} + x_i\big)}

    in the log domain (so no :math:`10^{-8}` is needed in the denominator), blockwise from the
    direct differences :math:`x - x_i` (full precision as :math:`t\to 0`); where no atom
    is reachable (all terms zero) the velocity is 0.

    Args:
      x: ``(B, d)``; t: in :math:`(0, 1]`, scalar or ``(B,)``; data: ``(N, d)``;
      log_prior: log-density of :math:`p_1` over the last axis (``(M, d) -> (M,)``);
      weights: ``(N,)`` atom weights, ≥ 0 and not all 0 (default uniform).

    Returns:
      ``(B, d)``, in the inputs' dtype (computed in at least float32).

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    _checks.check_callable(log_prior, "log_prior")
    x, data, dtype = points(x, data)
    t = positive_time(t, x.shape[0], x.dtype, of="x")
    _checks.check_real(t, "t", low=0.0, high=1.0, low_open=True, scalar=False)  # x_t's range
    n = data.shape[0]
    if weights is None:
        log_weights = jnp.full((n,), -math.log(n), x.dtype)
    else:
        weights = _checks.float_array(weights, "weights", shape=(n,))
        _checks.check_real(weights, "weights", low=0.0, scalar=False)
        w = _checks.concrete(weights)
        if w is not None and not w.sum() > 0:
            raise ValueError("weights must have a positive sum; got all zeros")
        log_weights = jnp.log(weights.astype(x.dtype))
    return saturating_cast(_marginal_velocity(x, t, data, log_prior, log_weights), dtype)


def uniform_log_density(low: float, high: float) -> Callable:
    r"""Log-density of :math:`U[\text{low}, \text{high}]^d` (over the last axis).

    Raises:
      TypeError, ValueError: ``low`` or ``high`` not finite real numbers, or ``high ≤ low``.
    """
    low = _checks.check_real(low, "low")
    high = _checks.check_real(high, "high")
    if not high > low:
        raise ValueError(f"high must be > low; got [low, high] = [{low}, {high}]")
    log_volume = math.log(high - low)

    def log_prior(x):
        inside = jnp.all((x >= low) & (x <= high), axis=-1)
        return jnp.where(inside, -x.shape[-1] * log_volume, -jnp.inf)

    return log_prior


def standard_normal_log_density(x) -> jax.Array:
    r""":math:`\log\mathcal N(x; 0, I)` over all but the leading axis.

    Args:
      x: ``(B, ...)``.

    Returns:
      ``(B,)``, in ``x``'s dtype (computed in at least float32).
    """
    x, dtype = _batch(x, "x")
    flat = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    log_p = -0.5 * jnp.sum(flat * flat, axis=1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)
    return saturating_cast(log_p, dtype)


def atoms_velocity(atoms=None, *, low: float = 0.0, high: float = 2.0) -> Callable:
    r"""Su's 1-D demo: the exact straight-path velocity from :math:`U[\text{low},\text{high}]` at
    :math:`t = 1` onto weighted atoms (default ``diffusionlab.data.ATOMS1D``: 0.5 with double
    weight, 1.2 and 1.7). Returns ``v(x, t)`` for ``x`` of shape ``(B, 1)``.

    Args:
      atoms: ``(location, weight)`` pairs of real numbers (weights ≥ 0, not all 0).
      low, high: the prior's interval (``high > low``).

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    if atoms is None:
        from diffusionlab.data import ATOMS1D as atoms
    try:
        pairs = [(float(a), float(w)) for a, w in atoms]
    except (TypeError, ValueError) as error:
        raise TypeError(f"atoms must be a sequence of (location, weight) pairs of real numbers; "
                        f"got {atoms!r}"[:200]) from error
    if not pairs or not all(math.isfinite(a) and math.isfinite(w) and w >= 0 for a, w in pairs) \
            or not sum(w for _, w in pairs) > 0:
        raise ValueError(f"atoms must be a non-empty sequence of (location, weight) pairs, finite, "
                         f"with weights ≥ 0 and a positive sum; got {pairs}")
    locations = jnp.array([[a] for a, _ in pairs], jnp.float32)
    weights = jnp.array([w for _, w in pairs], jnp.float32)
    log_prior = uniform_log_density(low, high)

    def velocity(x, t):
        return marginal_velocity(x, t, locations, log_prior=log_prior, weights=weights)

    return velocity


# --------------------------------------------------------------- any interpolating path


def _trigonometric_mean(x0, t):
    return jnp.cos(0.5 * math.pi * t) * x0


def _trigonometric_sigma(t):
    return jnp.sin(0.5 * math.pi * t)


@functools.cache
def trigonometric_path() -> LinearPath:
    r"""The trigonometric (VP-like, variance-preserving) path
    :math:`x_t = \cos(\tfrac{\pi t}{2})\,x_0 + \sin(\tfrac{\pi t}{2})\,x_1`, whose conditional
    velocity :math:`\tfrac\pi2\big(\cos(\tfrac{\pi t}{2})x_1 - \sin(\tfrac{\pi t}{2})x_0\big)`
    turns along a quarter ellipse from :math:`x_0` to :math:`x_1`.

    Reference: Albergo & Vanden-Eijnden, arXiv:2209.15571 (the trigonometric interpolant);
    Lipman et al., arXiv:2210.02747, eq. 15 (linear paths); 苏剑林,
    https://kexue.fm/archives/9379.

    Returns:
      A :class:`~diffusionlab.odes.LinearPath` (the same object on every call).
    """
    return LinearPath(_trigonometric_mean, _trigonometric_sigma)


def _check_path(path):
    if isinstance(path, LinearPath):
        return path
    if not callable(path):
        raise TypeError(f"path must be a LinearPath or a callable path(x0, x1, t) -> x_t on one "
                        f"flattened example; got {type(path).__name__}")
    return path


def _point_path(path, x0, x1, t):
    # One flattened example (D,), scalar t: x_t and dx_t/dt by one forward-mode product.
    if isinstance(path, LinearPath):
        def position(s):
            return path.mean(x0, s) + path.sigma(s) * x1
    else:
        def position(s):
            return jnp.asarray(path(x0, x1, s))
    x_t, u_t = jax.jvp(position, (t,), (jnp.ones_like(t),))
    if x_t.shape != x0.shape:
        raise ValueError(f"path must map one flattened example ({x0.shape[0]},) and a scalar t to "
                         f"({x0.shape[0]},); got {x_t.shape}")
    return x_t.astype(x0.dtype), u_t.astype(x0.dtype)


def _path_points(path, x0, x1, t):
    # (B, ...) examples, (B,) times: (x_t, u_t) shaped like x0.
    flat = (x0.shape[0], math.prod(x0.shape[1:]))
    x_t, u_t = jax.vmap(functools.partial(_point_path, path))(x0.reshape(flat), x1.reshape(flat), t)
    return x_t.reshape(x0.shape), u_t.reshape(x0.shape)


def path_interpolate(x0, x1, t, *, path=None) -> tuple[jax.Array, jax.Array]:
    r"""A point of the path and its velocity: :math:`x_t = \Psi_t(x_0, x_1)` and
    :math:`u_t = \partial_t\Psi_t(x_0, x_1)` (forward-mode in :math:`t`); for a
    :class:`~diffusionlab.odes.LinearPath`, :math:`\Psi_t = \mu_t(x_0) + \sigma_t x_1` and
    :math:`u_t = \dot\mu_t(x_0) + \dot\sigma_t x_1`.

    Reference: Lipman et al., arXiv:2210.02747, eq. 15; 苏剑林, https://kexue.fm/archives/9379.

    Args:
      x0, x1: ``(B, ...)`` of the same shape: data (:math:`t = 0`) and noise (:math:`t = 1`).
      t: in :math:`[0, 1]`, a scalar or ``(B,)``.
      path: a :class:`~diffusionlab.odes.LinearPath` (default ``LinearPath()``, the straight
        line) or a differentiable pure function ``path(x0, x1, t)`` on one flattened example
        ``(D,)``, ``(D,)`` and a scalar ``t``, returning ``(D,)`` with
        :math:`\Psi_0 = x_0`, :math:`\Psi_1 = x_1` (not checked).

    Returns:
      ``(x_t, u_t)``, shaped like ``x0``, in the inputs' dtype (computed in at least float32).

    Raises:
      TypeError, ValueError: naming the bad argument (``path`` neither a ``LinearPath`` nor
        callable, or returning another shape).
    """
    path = LinearPath() if path is None else _check_path(path)
    x0, x1, dtype = _pair(x0, x1)
    t = _row_times(t, x0)
    x_t, u_t = _path_points(path, x0, x1, t)
    return saturating_cast(x_t, dtype), saturating_cast(u_t, dtype)


def _time_range(t_min, t_max):
    t_min = float(_checks.check_real(t_min, "t_min", low=0.0, high=1.0))
    t_max = float(_checks.check_real(t_max, "t_max", low=0.0, high=1.0))
    if not t_max > t_min:
        raise ValueError(f"t_max must be > t_min (t ~ U[t_min, t_max]); got t_min = {t_min}, "
                         f"t_max = {t_max}")
    return t_min, t_max


def path_rectified_loss(velocity_model: Callable, x0, x1, *, key, path=None,
                        t_min: float = 0.0, t_max: float = 1.0) -> jax.Array:
    r"""Per-example rectified-flow loss along any path,
    :math:`\|v_\theta(x_t, t) - \partial_t\Psi_t(x_0, x_1)\|^2` with
    :math:`x_t = \Psi_t(x_0, x_1)`, :math:`t\sim U[t_\min, t_\max]`, for a given coupling
    ``(x0, x1)``. Its minimiser over :math:`v` is the marginal velocity
    :math:`\mathbb E[\partial_t\Psi_t\mid x_t = x]`, whose ODE carries the law of :math:`x_1`
    at :math:`t = 1` to that of :math:`x_0` at :math:`t = 0`. With the straight
    ``LinearPath()`` (the default) and ``t_max = 1`` it is :func:`rectified_loss` at the same
    key (the same :math:`t` draw, equal values up to rounding).

    Reference: 苏剑林, https://kexue.fm/archives/9379 (general paths) and
    https://kexue.fm/archives/9497 (rectified flow); Liu et al., arXiv:2209.03003;
    Lipman et al., arXiv:2210.02747.

    Args:
      velocity_model: ``v(x, t_B)``, returning an array shaped like ``x``.
      x0: data ``(B, ...)``; x1: its partner at :math:`t = 1` (same shape).
      key: PRNG key for :math:`t`.
      path: as :func:`path_interpolate`.
      t_min, t_max: :math:`0\le t_\min < t_\max\le 1` (keep away from an end where the
        path's velocity is singular, e.g. :math:`\sigma_t = \sqrt t`).

    Returns:
      ``(B,)``, in the inputs' dtype (computed in at least float32).

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    _checks.check_callable(velocity_model, "velocity_model")
    path = LinearPath() if path is None else _check_path(path)
    x0, x1, dtype = _pair(x0, x1)
    _checks.check_key(key)
    t_min, t_max = _time_range(t_min, t_max)
    t = jax.random.uniform(key, x0.shape[:1], x0.dtype, t_min, t_max)
    x_t, u_t = _path_points(path, x0, x1, t)
    residual = _model_output(velocity_model, x_t, t, "velocity_model") - u_t
    per_example = residual.reshape(x0.shape[0], math.prod(x0.shape[1:]))
    return saturating_cast(jnp.sum(per_example**2, axis=1), dtype)


def path_cfm_loss(velocity_model: Callable, x0, *, key, path=None, t_min: float = 0.0,
                  t_max: float = 1.0) -> jax.Array:
    r"""Per-example flow matching loss along ``path`` with :math:`x_1\sim\mathcal N(0, I)`
    independent of :math:`x_0` (:func:`path_rectified_loss` on the independent coupling);
    the straight default is :func:`cfm_loss` at the same key.

    Args, Returns, Raises: as :func:`path_rectified_loss` (``x0`` only).
    """
    x0, x1, key_t, dtype = _independent_noise(velocity_model, x0, key)
    return saturating_cast(path_rectified_loss(velocity_model, x0, x1, key=key_t, path=path,
                                               t_min=t_min, t_max=t_max), dtype)


class Straightness(NamedTuple):
    r"""Result of :func:`straightness`, per example ``(B,)`` (and the samples).

    Attributes:
      straightness: Liu et al.'s :math:`S = \int_0^1\|(x_1 - \hat x_0) - v(x_t, t)\|^2\,dt`,
        0 exactly when the trajectory is a straight line run at constant speed.
      path_deviation: :math:`\int_0^1\|\partial_t\Psi_t(\hat x_0, x_1) - v(x_t, t)\|^2\,dt`,
        0 when the trajectory runs along ``path`` between its own endpoints (equal to
        ``straightness`` for the straight path).
      samples: :math:`\hat x_0`, the end of each trajectory ``(B, ...)``.
    """

    straightness: jax.Array
    path_deviation: jax.Array
    samples: jax.Array


@eqx.filter_jit
def _straightness(velocity_fn, noise, path, steps):
    h = 1.0 / steps
    grid = 1.0 - h * jnp.arange(steps, dtype=noise.dtype)  # left ends, t = 1 .. h

    def step(x, t):
        v = _model_output(velocity_fn, x, jnp.broadcast_to(t, x.shape[:1]), "velocity_fn")
        return x - h * v, v

    x_hat, vs = jax.lax.scan(step, noise, grid)  # vs: (steps, B, ...)
    axes = tuple(range(2, vs.ndim))
    chord = noise - x_hat  # = h Σ v_k, the Euler trajectory's own displacement
    s = jnp.mean(jnp.sum((chord[None] - vs) ** 2, axis=axes), axis=0)
    _, us = jax.vmap(lambda t: _path_points(path, x_hat, noise,
                                            jnp.broadcast_to(t, noise.shape[:1])))(grid)
    deviation = jnp.mean(jnp.sum((us - vs) ** 2, axis=axes), axis=0)
    return s, deviation, x_hat


def straightness(velocity_fn: Callable, noise, *, steps: int = 64, path=None) -> Straightness:
    r"""How straight the ODE :math:`\mathrm dx/\mathrm dt = v(x, t)` is from ``noise`` at
    :math:`t = 1` down to :math:`t = 0`: Liu et al.'s straightness
    :math:`S = \int_0^1\|(x_1 - \hat x_0) - v(x_t, t)\|^2\,\mathrm dt` and the deviation from
    ``path`` between the trajectory's own endpoints,
    :math:`\int_0^1\|\partial_t\Psi_t(\hat x_0, x_1) - v(x_t, t)\|^2\,\mathrm dt`.

    Computed on the Euler trajectory with ``steps`` equal steps (velocities at the left ends
    :math:`t_k = 1 - k/n`); :math:`x_1 - \hat x_0` is that trajectory's displacement
    :math:`h\sum_k v_k`, so the discrete :math:`S` is the variance over the steps of each
    trajectory's velocity: exactly 0 for a constant one. Memory: ``steps`` copies of
    ``noise``.

    Reference: Liu, Gong & Liu, *Flow Straight and Fast*, arXiv:2209.03003, Definition 3.6
    (straightness); 苏剑林, https://kexue.fm/archives/9497.

    Args:
      velocity_fn: ``v(x, t_B)``, returning an array shaped like ``x`` (a pytree such as
        ``LearnedModel.velocity()`` compiles once per function).
      noise: ``(B, ...)`` starting points at :math:`t = 1`.
      steps: Euler steps, ≥ 1.
      path: as :func:`path_interpolate` (default straight).

    Returns:
      A :class:`Straightness`; the values ``(B,)`` and samples in ``noise``'s dtype (computed
      in at least float32).

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    velocity_fn = as_partial(velocity_fn)
    noise, dtype = _batch(noise, "noise")
    steps = _checks.check_int(steps, "steps", low=1, high=1 << 16)
    path = LinearPath() if path is None else _check_path(path)
    s, deviation, x_hat = _straightness(velocity_fn, noise, path, steps)
    return Straightness(saturating_cast(s, dtype), saturating_cast(deviation, dtype),
                        saturating_cast(x_hat, dtype))
