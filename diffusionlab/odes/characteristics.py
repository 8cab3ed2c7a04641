r"""The general construction by the method of characteristics: velocity and density of any
single-point path, and the general linear (Gaussian-type) paths.

Choose the single-point trajectories first and label each by its point at the prior time
:math:`T`: :math:`\Phi_t(x_t\mid x_0) = x_T`, constant along the trajectory (so
:math:`\Phi_T` is the identity). Differentiating :math:`\Phi_t(x_t\mid x_0) = x_T` in
:math:`t` gives the conditional velocity

.. math:: f_t(x_t\mid x_0) = -\Big(\frac{\partial\Phi_t}{\partial x_t}\Big)^{-1}
          \frac{\partial\Phi_t}{\partial t},

and along a trajectory :math:`\frac{\mathrm d}{\mathrm dt}\log p_t = -\nabla\cdot f_t`, so

.. math:: \log p_t(x_t\mid x_0) = \log p_T(\Phi_t(x_t\mid x_0))
          + \int_t^T \nabla_{x_s}\cdot f_s(x_s\mid x_0)\,\mathrm ds .

Time runs from :math:`T` (prior) down to :math:`t = 0` (data); a forward path
:math:`x_t = \Psi_t(x_0, x_T)` has :math:`\Phi_t` as its inverse in :math:`x_T`. Examples:
straight lines (:math:`T = 1`) :math:`\Phi_t = (x_t - x_0)/t + x_0`, velocity
:math:`(x_t - x_0)/t`; rays into :math:`x_0` (gravity and the isotropic CDF family with
scale :math:`s_t`) :math:`\Phi_t = x_0 + \frac{s_T}{s_t}(x_t - x_0)`, velocity
:math:`\frac{\dot s_t}{s_t}(x_t - x_0)`; the linear paths of :class:`LinearPath`.

Reference: 苏剑林, 《生成扩散模型漫谈（十五）：构建ODE的一般步骤（中）》,
https://kexue.fm/archives/9379 (the method of characteristics, credited there to the
commenter @gaohuazuo; the linear paths follow Lipman et al., *Flow Matching*,
arXiv:2210.02747, eq. 15).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import _checks
from diffusionlab.divergence import exact_divergence
from diffusionlab.odes._checks import input_dtype, saturating_cast, times
from diffusionlab.odes.likelihood import Likelihood, log_likelihood

__all__ = [
    "LinearPath",
    "characteristics_divergence",
    "characteristics_log_density",
    "characteristics_velocity",
]


# ---------------------------------------------------------------------------- arguments


def _points_times(phi, x, t, x0, *, positive=True):
    """Checks ``phi``, ``x`` ``(..., d)``, ``t`` (scalar or ``x.shape[:-1]``) and ``x0``
    (``None`` or ``x``'s shape); returns them flattened to ``(B, d)``, ``(B,)``, ``(B, d)``
    or ``None``, in the working dtype, with the leading shape and the caller's dtype."""
    _checks.check_callable(phi, "phi")
    dtype = input_dtype(x) if x0 is None else input_dtype(x, x0)
    x = _checks.float_array(x, "x", allow_empty=True)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"x must have shape (..., d) with d ≥ 1; got {x.shape}")
    work = x.dtype
    if x0 is not None:
        x0 = _checks.float_array(x0, "x0", allow_empty=True)
        _checks.same_shape(x, x0, names=("x", "x0"))
        work = jnp.result_type(work, x0.dtype)
    t = times(t)
    if t.shape not in ((), x.shape[:-1]):
        raise ValueError(f"t must be a scalar or have shape {x.shape[:-1]} (the leading axes of "
                         f"x); got shape {t.shape}")
    _checks.check_real(t, "t", low=0.0, low_open=positive, scalar=False)
    work = jnp.result_type(work, t.dtype)
    lead, d = x.shape[:-1], x.shape[-1]
    x_B = x.astype(work).reshape(-1, d)
    t_B = jnp.broadcast_to(t.astype(work), lead).reshape(-1)
    x0_B = None if x0 is None else x0.astype(work).reshape(-1, d)
    _check_phi_output(phi, x_B, t_B, x0_B)
    return x_B, t_B, x0_B, lead, dtype


def _check_phi_output(phi, x_B, t_B, x0_B):
    d = x_B.shape[1]
    args = (jax.ShapeDtypeStruct((d,), x_B.dtype), jax.ShapeDtypeStruct((), t_B.dtype))
    if x0_B is not None:
        args += (jax.ShapeDtypeStruct((d,), x0_B.dtype),)
    try:
        out = jax.eval_shape(phi, *args)
    except TypeError as error:
        call = "phi(x, t, x0)" if x0_B is not None else "phi(x, t)"
        raise TypeError(f"phi must be callable as {call} on one point x of shape ({d},) and a "
                        f"scalar t: {error}") from error
    shape = getattr(out, "shape", None)
    if shape != (d,):
        raise ValueError(f"phi(x, t{', x0' if x0_B is not None else ''}) must return the label "
                         f"x_T of shape ({d},) for one point x of shape ({d},); got "
                         f"{shape if shape is not None else type(out).__name__}")


def _call(phi, x, t, x0):
    return phi(x, t) if x0 is None else phi(x, t, x0)


# ---------------------------------------------------------------------- the velocity


def _point_velocity(phi, x, t, x0):
    # -J^{-1} ∂_tΦ for one point: J by forward mode (d JVPs), ∂_tΦ by one JVP in t.
    def label(z, s):
        return jnp.asarray(_call(phi, z, s, x0), x.dtype)

    jacobian = jax.jacfwd(label, argnums=0)(x, t)
    _, dphi_dt = jax.jvp(lambda s: label(x, s), (t,), (jnp.ones_like(t),))
    return -jnp.linalg.solve(jacobian, dphi_dt)


def _batch_velocity(phi, x_B, t_B, x0_B):
    if x0_B is None:
        return jax.vmap(lambda x, t: _point_velocity(phi, x, t, None))(x_B, t_B)
    return jax.vmap(lambda x, t, c: _point_velocity(phi, x, t, c))(x_B, t_B, x0_B)


@eqx.filter_jit
def _velocity(phi, x_B, t_B, x0_B):
    return _batch_velocity(phi, x_B, t_B, x0_B)


def _finite_or_raise(value, what):
    v = _checks.concrete(value)
    if v is not None and v.size and not np.all(np.isfinite(v)):
        raise ValueError(f"phi's Jacobian ∂Φ/∂x must be invertible with a finite ∂Φ/∂t at every "
                         f"point; the {what} is not finite at {int(np.sum(~np.isfinite(v)))} "
                         f"entries (a singular Jacobian, or t outside phi's domain)")


def characteristics_velocity(phi: Callable, x, t, *, x0=None) -> jax.Array:
    r"""The velocity of the trajectories labelled by ``phi``, by automatic differentiation:

    .. math:: f_t(x) = -\Big(\frac{\partial\Phi_t}{\partial x}\Big)^{-1}
              \frac{\partial\Phi_t}{\partial t}(x)

    (the Jacobian by :math:`d` forward-mode products, then one linear solve per point).

    Reference: 苏剑林, 《生成扩散模型漫谈（十五）：构建ODE的一般步骤（中）》,
    https://kexue.fm/archives/9379 (the method of characteristics).

    Args:
      phi: the label map :math:`\Phi_t(x\mid x_0) = x_T`, the point at the prior time
        :math:`T` of the trajectory through ``x`` at time ``t`` (so ``phi(x, T) = x``):
        ``phi(x, t)``, or ``phi(x, t, x0)`` when ``x0`` is given, on one point ``x`` ``(d,)``
        and a scalar ``t``, returning ``(d,)``; differentiable in ``x`` and ``t``, with an
        invertible Jacobian in ``x``; a pure JAX function (it is traced once per dtype and
        shape).
      x: points ``(..., d)``, ``d ≥ 1`` (finite floats).
      t: times, > 0 (finite), a scalar or of shape ``x.shape[:-1]``.
      x0: the trajectories' data points (the condition), ``x``'s shape, or ``None`` when
        ``phi`` takes none.

    Returns:
      ``(..., d)`` velocities :math:`\mathrm dx/\mathrm dt`, in the inputs' dtype (computed
      in at least float32).

    Raises:
      TypeError: ``phi`` not callable (or not callable with these arguments), a non-float
        ``x``/``x0``/``t``.
      ValueError: a bad shape (``x`` without a last axis, ``x0`` not ``x``'s shape, ``t``
        not broadcastable), NaN/inf inputs, ``t ≤ 0``, ``phi`` returning another shape
        than ``(d,)``, or (for concrete inputs) a singular Jacobian or a non-finite
        velocity.
    """
    x_B, t_B, x0_B, lead, dtype = _points_times(phi, x, t, x0)
    if x_B.shape[0] == 0:
        return jnp.zeros(lead + x_B.shape[1:], dtype)
    v = _velocity(phi, x_B, t_B, x0_B)
    _finite_or_raise(v, "velocity")
    return saturating_cast(v.reshape(lead + x_B.shape[1:]), dtype)


@eqx.filter_jit
def _divergence(phi, x_B, t_B, x0_B):
    return exact_divergence(lambda z: _batch_velocity(phi, z, t_B, x0_B), x_B)


def characteristics_divergence(phi: Callable, x, t, *, x0=None) -> tuple[jax.Array, jax.Array]:
    r"""The velocity of :func:`characteristics_velocity` and its divergence
    :math:`\nabla_x\cdot f_t(x)`, the exact trace by :math:`d` forward-mode products
    (:func:`diffusionlab.divergence.exact_divergence`).

    Args, Raises: as :func:`characteristics_velocity`.

    Returns:
      ``(f, div)``: shapes ``(..., d)`` and ``x.shape[:-1]``, in the inputs' dtype.
    """
    x_B, t_B, x0_B, lead, dtype = _points_times(phi, x, t, x0)
    if x_B.shape[0] == 0:
        return jnp.zeros(lead + x_B.shape[1:], dtype), jnp.zeros(lead, dtype)
    v, div = _divergence(phi, x_B, t_B, x0_B)
    _finite_or_raise(v, "velocity")
    return (saturating_cast(v.reshape(lead + x_B.shape[1:]), dtype),
            saturating_cast(div.reshape(lead), dtype))


# ------------------------------------------------------------------ the density


def _zero_log_prior(x_T):
    return jnp.zeros(x_T.shape[:1], x_T.dtype)


def _velocity_field(phi, x, s):
    # The likelihood's v(x, s): a batch (B, d) at one time s.
    s_B = jnp.broadcast_to(jnp.asarray(s, x.dtype), x.shape[:1])
    return _batch_velocity(phi, x, s_B, None)


def _conditional_velocity_field(phi, x0, x, s):
    # The same with the data points x0 (B, d), a leaf of the Partial (its arguments come first).
    s_B = jnp.broadcast_to(jnp.asarray(s, x.dtype), x.shape[:1])
    return _batch_velocity(phi, x, s_B, x0)


def characteristics_log_density(phi: Callable, x, t, T, *, log_prior: Callable, x0=None,
                                solver: str = "tsit5", steps: int | None = None,
                                rtol: float = 1e-6, atol: float = 1e-6,
                                time: str = "linear") -> Likelihood:
    r"""The density carried along the characteristics:

    .. math:: \log p_t(x\mid x_0) = \log p_T(\Phi_t(x\mid x_0))
              + \int_t^T \nabla\cdot f_s(x_s\mid x_0)\,\mathrm ds,

    the integral by the instantaneous change of variables of
    :func:`diffusionlab.odes.log_likelihood` (the ODE of :func:`characteristics_velocity`
    from ``t`` up to ``T`` with the exact divergence), the prior at the exact label
    :math:`x_T = \Phi_t(x\mid x_0)`.

    Reference: 苏剑林, https://kexue.fm/archives/9379 (density by characteristics).

    Args:
      phi, x0: as :func:`characteristics_velocity`.
      x: points ``(B, d)``.
      t: their common time, a scalar in ``(0, T)``.
      T: the prior time (> ``t``; ``phi(x, T) = x``).
      log_prior: ``x_T (B, d) -> (B,)``, the log-density :math:`\log p_T` at the labels
        (it may close over ``x0``: a conditional prior :math:`p_T(\cdot\mid x_0)`).
      solver, steps, rtol, atol, time: as :func:`diffusionlab.odes.log_likelihood`
        (``time="log"`` integrates in :math:`\log s`, for long ranges such as gravity's).

    Returns:
      A :class:`diffusionlab.odes.Likelihood`: ``log_prob`` ``(B,)`` in nats, the NFE of
      the solve, and ``x_T`` the exact labels ``(B, d)``; in the inputs' dtype.

    Raises:
      TypeError, ValueError: as :func:`characteristics_velocity` (``x`` must be ``(B, d)``
        and ``t`` a scalar), ``log_prior`` not callable or not returning ``(B,)``,
        ``t ≥ T``, or solver options rejected by :func:`diffusionlab.odes.log_likelihood`.
    """
    _checks.check_callable(log_prior, "log_prior")
    t_arr = times(t)
    t_value = _checks.concrete(t_arr)
    if t_arr.shape != () or t_value is None:
        raise ValueError(f"t must be a concrete scalar (the points' common time); got shape "
                         f"{t_arr.shape}")
    T = float(_checks.check_real(T, "T", low=0.0, low_open=True))
    if float(t_value) >= T:
        raise ValueError(f"t must be smaller than T = {T} (the density is carried from t up to "
                         f"T); got t = {float(t_value)}")
    x_B, t_B, x0_B, lead, dtype = _points_times(phi, x, t_arr, x0)
    if len(lead) != 1:
        raise ValueError(f"x must have shape (B, d); got {lead + x_B.shape[1:]}")
    if x_B.shape[0] == 0:
        return Likelihood(jnp.zeros((0,), dtype), jnp.zeros((), jnp.int32), x_B.astype(dtype))
    if x0_B is None:
        field = jax.tree_util.Partial(functools.partial(_velocity_field, phi))
    else:
        field = jax.tree_util.Partial(functools.partial(_conditional_velocity_field, phi), x0_B)
    carried = log_likelihood(field, x_B, T, log_prior=_zero_log_prior, t_start=float(t_value),
                             solver=solver, steps=steps, rtol=rtol, atol=atol, time=time)
    x_T = _velocity_labels(phi, x_B, t_B, x0_B)
    log_p = jnp.asarray(log_prior(x_T))
    if log_p.shape != (x_B.shape[0],):
        raise ValueError(f"log_prior must map x_T {x_T.shape} to log-densities of shape "
                         f"({x_B.shape[0]},); got {log_p.shape}")
    log_prob = log_p.astype(x_B.dtype) + carried.log_prob.astype(x_B.dtype)
    return Likelihood(saturating_cast(log_prob, dtype), carried.nfe,
                      saturating_cast(x_T, dtype))


@eqx.filter_jit
def _velocity_labels(phi, x_B, t_B, x0_B):
    if x0_B is None:
        return jax.vmap(lambda x, t: jnp.asarray(phi(x, t), x.dtype))(x_B, t_B)
    return jax.vmap(lambda x, t, c: jnp.asarray(phi(x, t, c), x.dtype))(x_B, t_B, x0_B)


# --------------------------------------------------------------- general linear paths


def _straight_mean(x0, t):
    return (1 - t) * x0


def _identity_scale(t):
    return t


@dataclasses.dataclass(frozen=True)
class LinearPath:
    r"""A general linear path :math:`x_t = \mu_t(x_0) + \sigma_t x_1` on :math:`t\in[0, 1]`,
    :math:`x_1\sim p_1`, with :math:`\mu_0 = x_0`, :math:`\mu_1 = 0`, :math:`\sigma_0 = 0`,
    :math:`\sigma_1 = 1` and :math:`\sigma` increasing. Its label map (:math:`T = 1`), velocity,
    divergence and density:

    .. math:: \Phi_t(x\mid x_0) = \frac{x - \mu_t}{\sigma_t},\qquad
              f_t = \dot\mu_t + \frac{\dot\sigma_t}{\sigma_t}(x - \mu_t),\qquad
              \nabla\cdot f_t = d\,\frac{\dot\sigma_t}{\sigma_t},\qquad
              p_t(x\mid x_0) = p_1\Big(\frac{x - \mu_t}{\sigma_t}\Big)\Big/\sigma_t^d,

    the time derivatives by forward-mode automatic differentiation. The default is the
    straight line :math:`\mu_t = (1 - t)x_0`, :math:`\sigma_t = t` (conditional flow
    matching, rectified flow).

    Reference: 苏剑林, https://kexue.fm/archives/9379 (general linear paths); Lipman et al.,
    *Flow Matching*, arXiv:2210.02747, eq. 15.

    Attributes:
      mean: :math:`\mu_t(x_0)`, ``mean(x0, t)`` on one point ``(d,)`` and a scalar ``t``,
        returning ``(d,)`` (a hashable, differentiable JAX function).
      sigma: :math:`\sigma_t`, ``sigma(t)`` on a scalar (hashable, differentiable).

    Raises:
      TypeError: ``mean`` or ``sigma`` not callable.
      ValueError: :math:`\sigma_0\ne 0`, :math:`\sigma_1\ne 1`, or
        :math:`\mu_0(x_0)\ne x_0`, :math:`\mu_1(x_0)\ne 0` (checked at a test point to
        :math:`10^{-6}`).
    """

    mean: Callable = _straight_mean
    sigma: Callable = _identity_scale

    def __post_init__(self):
        _checks.check_callable(self.mean, "mean")
        _checks.check_callable(self.sigma, "sigma")
        s0, s1 = (float(self.sigma(jnp.asarray(v, jnp.float32))) for v in (0.0, 1.0))
        if abs(s0) > 1e-6 or abs(s1 - 1) > 1e-6:
            raise ValueError(f"sigma must have sigma(0) = 0 and sigma(1) = 1; got sigma(0) = {s0}"
                             f", sigma(1) = {s1}")
        probe = jnp.asarray([0.5, -1.5, 2.0], jnp.float32)
        m0 = np.asarray(self.mean(probe, jnp.asarray(0.0, jnp.float32)))
        m1 = np.asarray(self.mean(probe, jnp.asarray(1.0, jnp.float32)))
        if (m0.shape != probe.shape or np.max(np.abs(m0 - np.asarray(probe))) > 1e-6
                or np.max(np.abs(m1)) > 1e-6):
            raise ValueError("mean must map (x0 (d,), t) to (d,) with mean(x0, 0) = x0 and "
                             "mean(x0, 1) = 0 (checked at x0 = [0.5, -1.5, 2])")

    # One point (d,), scalar t: the formulas.

    def _rates(self, x0, t):
        mu, dmu = jax.jvp(lambda s: self.mean(x0, s), (t,), (jnp.ones_like(t),))
        sigma, dsigma = jax.jvp(self.sigma, (t,), (jnp.ones_like(t),))
        return mu, dmu, sigma, dsigma

    def label(self, x, t, x0):
        r""":math:`\Phi_t(x\mid x_0) = (x - \mu_t(x_0))/\sigma_t`, the :math:`x_1` of the path
        through ``x`` at ``t``; one point ``(d,)``, scalar ``t`` (a ``phi`` for
        :func:`characteristics_velocity`)."""
        return (x - self.mean(x0, t)) / self.sigma(t)

    def _point_velocity(self, x, t, x0):
        mu, dmu, sigma, dsigma = self._rates(x0, t)
        return dmu + dsigma / sigma * (x - mu)

    def _checked(self, x, t, x0):
        x_B, t_B, x0_B, lead, dtype = _points_times(self.label, x, t, x0)
        return x_B, t_B, x0_B, lead, dtype

    def velocity(self, x, t, x0) -> jax.Array:
        r""":math:`f_t(x\mid x_0) = \dot\mu_t + \frac{\dot\sigma_t}{\sigma_t}(x - \mu_t)`.

        Args:
          x, x0: ``(..., d)`` of the same shape; t: in :math:`(0, 1]`, a scalar or
            ``x.shape[:-1]``.

        Returns:
          ``(..., d)``, in the inputs' dtype.

        Raises:
          TypeError, ValueError: naming the bad argument.
        """
        x_B, t_B, x0_B, lead, dtype = self._checked(x, t, x0)
        _checks.check_real(t_B, "t", low=0.0, high=1.0, low_open=True, scalar=False)
        v = jax.vmap(self._point_velocity)(x_B, t_B, x0_B)
        return saturating_cast(v.reshape(lead + x_B.shape[1:]), dtype)

    def divergence(self, t, dim: int) -> jax.Array:
        r""":math:`\nabla\cdot f_t = d\,\dot\sigma_t/\sigma_t` (independent of :math:`x`).

        Args:
          t: in :math:`(0, 1]`, any shape; dim: :math:`d\ge 1`.

        Returns:
          Shaped like ``t`` (at least float32).

        Raises:
          TypeError, ValueError: naming the bad argument.
        """
        dim = _checks.check_int(dim, "dim", low=1)
        t = times(t)
        _checks.check_real(t, "t", low=0.0, high=1.0, low_open=True, scalar=False)
        t = t.astype(jnp.result_type(t.dtype, jnp.float32))
        flat = t.reshape(-1)
        rate = jax.vmap(lambda s: jax.jvp(self.sigma, (s,), (jnp.ones_like(s),))[1]
                        / self.sigma(s))(flat)
        return (dim * rate).reshape(t.shape)

    def log_density(self, x, t, x0, *, log_prior: Callable) -> jax.Array:
        r""":math:`\log p_t(x\mid x_0) = \log p_1\big((x - \mu_t)/\sigma_t\big) - d\log\sigma_t`.

        Args:
          x, x0, t: as :meth:`velocity`; log_prior: ``(B, d) -> (B,)``, :math:`\log p_1`.

        Returns:
          ``x.shape[:-1]``, in the inputs' dtype.

        Raises:
          TypeError, ValueError: naming the bad argument.
        """
        _checks.check_callable(log_prior, "log_prior")
        x_B, t_B, x0_B, lead, dtype = self._checked(x, t, x0)
        _checks.check_real(t_B, "t", low=0.0, high=1.0, low_open=True, scalar=False)
        z = jax.vmap(self.label)(x_B, t_B, x0_B)
        log_p = jnp.asarray(log_prior(z))
        if log_p.shape != (x_B.shape[0],):
            raise ValueError(f"log_prior must map (B, d) to (B,); got {log_p.shape}")
        sigma = jax.vmap(self.sigma)(t_B)
        d = x_B.shape[1]
        return saturating_cast((log_p - d * jnp.log(sigma)).reshape(lead), dtype)

    def sample(self, x0, t, *, key) -> tuple[jax.Array, jax.Array]:
        r"""A joint draw :math:`x_1\sim\mathcal N(0, I)`, :math:`x_t = \mu_t(x_0) + \sigma_t x_1`.

        Args:
          x0: ``(B, d)``; t: in :math:`[0, 1]`, scalar or ``(B,)``; key: PRNG key.

        Returns:
          ``(x_t, x_1)``, both ``(B, d)`` in ``x0``'s dtype.

        Raises:
          TypeError, ValueError: naming the bad argument.
        """
        dtype = input_dtype(x0)
        x0 = _checks.float_array(x0, "x0", ndim=2, allow_empty=True)
        _checks.check_key(key)
        t = times(t)
        if t.shape not in ((), x0.shape[:1]):
            raise ValueError(f"t must be a scalar or have shape {x0.shape[:1]}; got {t.shape}")
        _checks.check_real(t, "t", low=0.0, high=1.0, scalar=False)
        t_B = jnp.broadcast_to(t.astype(x0.dtype), x0.shape[:1])
        x1 = jax.random.normal(key, x0.shape, x0.dtype)
        mu = jax.vmap(self.mean)(x0, t_B)
        x_t = mu + jax.vmap(self.sigma)(t_B)[:, None] * x1
        return saturating_cast(x_t, dtype), saturating_cast(x1, dtype)


def rays(scale: Callable, T: float) -> Callable:
    r"""The label map of straight rays into :math:`x_0` with scale :math:`s_t`:
    :math:`\Phi_t(x\mid x_0) = x_0 + \frac{s_T}{s_t}(x - x_0)`, whose velocity is
    :math:`\frac{\dot s_t}{s_t}(x - x_0)`: gravity and the isotropic CDF family
    (:math:`s_t = t`), a Gaussian with noise scale :math:`\sigma_t` (:math:`s = \sigma`).

    Args:
      scale: :math:`s_t`, a differentiable function of a scalar, positive for :math:`t > 0`.
      T: the prior time (> 0).

    Returns:
      ``phi(x, t, x0)`` for :func:`characteristics_velocity` (pass ``x0=``).

    Raises:
      TypeError, ValueError: ``scale`` not callable, ``T`` not finite or ≤ 0.
    """
    _checks.check_callable(scale, "scale")
    T = float(_checks.check_real(T, "T", low=0.0, low_open=True))
    return functools.partial(_ray_label, scale, T)


def _ray_label(scale, T, x, t, x0):
    return x0 + scale(jnp.asarray(T, x.dtype)) / scale(t) * (x - x0)

