r"""The isotropic CDF family: Green's functions isotropic in :math:`x` only.

Choose :math:`\psi_t(r)`, increasing in :math:`r`, with :math:`\psi_t(0) = 0`,
:math:`\psi_t(\infty) = 1` and :math:`\psi_t(r)\to 1` as :math:`t\to 0^+` (a smoothed step).
Then :math:`G = (\phi_t(r),\ \varphi_t(r)(x_t - x_0))` with

.. math:: \phi_t = \frac{\partial_r\psi_t}{S_d(1)\,r^{d-1}},\qquad
          \varphi_t = -\frac{\partial_t\psi_t}{S_d(1)\,r^d}

is divergence-free in :math:`(t, x_t)`, :math:`\psi_t` is the CDF of the radius
:math:`\|x_t - x_0\|`, :math:`\phi_t = p_t(x_t\mid x_0)`, and the conditional velocity is
:math:`\varphi_t/\phi_t\,(x_t - x_0)`. Every member here has the scale form
:math:`\psi_t(r) = h(r/t)`, so its conditional velocity is :math:`(x_t - x_0)/t`: straight
rays into :math:`x_0`, as for gravity; the members differ in their marginal fields.

Reference: 苏剑林, 《生成扩散模型漫谈（十四）：构建ODE的一般步骤（上）》,
https://kexue.fm/archives/9370.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp

from diffusionlab.odes.gravity import log_sphere_area
from diffusionlab.odes.pointmass import check_points, check_positive_time


@dataclasses.dataclass(frozen=True)
class TanhCDF:
    r""":math:`\psi_t(r) = \tanh(r/t)`; radius quantile :math:`r = t\,\mathrm{artanh}\,U`."""

    name: str = "tanh"

    def psi(self, r, t, dim):
        return jnp.tanh(r / t)

    def log_dpsi_dr(self, r, t, dim):
        # log sech²(u) = log 4 - 2u - 2 softplus(-2u), stable for large u.
        u = r / t
        return math.log(4.0) - 2 * u - 2 * jax.nn.softplus(-2 * u) - jnp.log(t)

    def sample_radius(self, key, shape, t, dim, dtype):
        u = jax.random.uniform(key, shape, dtype)
        return t * jnp.arctanh(u)


@dataclasses.dataclass(frozen=True)
class ExponentialCDF:
    r""":math:`\psi_t(r) = 1 - e^{-r/t}`; radius quantile :math:`r = -t\log(1 - U)`."""

    name: str = "exp"

    def psi(self, r, t, dim):
        return -jnp.expm1(-r / t)

    def log_dpsi_dr(self, r, t, dim):
        return -r / t - jnp.log(t)

    def sample_radius(self, key, shape, t, dim, dtype):
        return t * jax.random.exponential(key, shape, dtype)


@dataclasses.dataclass(frozen=True)
class GaussianCDF:
    r""":math:`\psi_t(r) = P(\tfrac d2, \tfrac{r^2}{2t^2})` (regularised lower incomplete
    gamma): the radius of :math:`\mathcal N(x_0, t^2 I)`; the marginal ODE is the
    variance-exploding probability flow with :math:`\sigma_t = t`."""

    name: str = "gaussian"

    def psi(self, r, t, dim):
        return jsp.gammainc(dim / 2, r * r / (2 * t * t))

    def log_dpsi_dr(self, r, t, dim):
        return ((dim - 1) * jnp.log(r) - r * r / (2 * t * t) - dim * jnp.log(t)
                - math.lgamma(dim / 2) - (dim / 2 - 1) * math.log(2.0))

    def sample_radius(self, key, shape, t, dim, dtype):
        g = jax.random.normal(key, shape + (dim,), dtype)
        return t * jnp.linalg.norm(g, axis=-1)


CDF_FAMILY = (TanhCDF(), ExponentialCDF(), GaussianCDF())


def _radius(x_t, x0):
    return jnp.sqrt(jnp.sum((x_t - x0) ** 2, axis=-1))


def conditional_log_density(path, x_t, t, x0) -> jax.Array:
    r""":math:`\log\phi_t(r) = \log\partial_r\psi_t(r) - \log S_d(1) - (d-1)\log r`,
    :math:`r = \|x_t - x_0\|`, for one point or a batch (last axis is :math:`d`)."""
    dim = jnp.shape(x_t)[-1]
    r = _radius(x_t, x0)
    return path.log_dpsi_dr(r, t, dim) - log_sphere_area(dim) - (dim - 1) * jnp.log(r)


def green_function(path, x_t, t, x0) -> jax.Array:
    r"""The Green's function :math:`G = (\phi_t,\ \varphi_t\,(x_t - x_0))\in\mathbb R^{d+1}`
    at one point (``x_t``, ``x0`` of shape ``(d,)``, scalar ``t``), with :math:`\partial_t\psi_t`
    by automatic differentiation. Divergence-free for :math:`r > 0`."""
    dim = x_t.shape[-1]
    r = _radius(x_t, x0)
    phi = jnp.exp(conditional_log_density(path, x_t, t, x0))
    dpsi_dt = jax.grad(path.psi, argnums=1)(r, t, dim)
    varphi = -dpsi_dt * jnp.exp(-log_sphere_area(dim) - dim * jnp.log(r))
    return jnp.concatenate([phi[None], varphi * (x_t - x0)])


def conditional_velocity(path, x_t, t, x0) -> jax.Array:
    r""":math:`\varphi_t/\phi_t\,(x_t - x_0) = (x_t - x_0)/t` for the scale family."""
    del path
    return (x_t - x0) / jnp.reshape(t, jnp.shape(t) + (1,) * (jnp.ndim(x_t) - jnp.ndim(t)))


def conditional_sample(path, x0, t, *, key) -> jax.Array:
    r"""Exact draws from :math:`\phi_t`: :math:`x_t = x_0 + \psi_t^{-1}(U)\,u` with
    :math:`u` uniform on :math:`S^{d-1}` (:math:`\psi_t` is the radius's CDF).

    Args:
      path: a member of the family; x0: ``(B, d)``; t: scalar or ``(B,)``, > 0; key: PRNG key.

    Returns:
      ``(B, d)``.
    """
    x0 = jnp.asarray(x0, jnp.result_type(jnp.asarray(x0).dtype, jnp.float32))
    if x0.ndim != 2:
        raise ValueError(f"x0 must have shape (B, d), got {x0.shape}")
    b, d = x0.shape
    t = check_positive_time(t, b, x0.dtype)
    key_r, key_u = jax.random.split(key)
    r = path.sample_radius(key_r, (b,), t, d, x0.dtype)
    g = jax.random.normal(key_u, (b, d), x0.dtype)
    return x0 + r[:, None] * g / jnp.linalg.norm(g, axis=1, keepdims=True)


@functools.partial(jax.jit, static_argnames="path")
def _marginal_velocity(path, x, t, data):
    log_w = jax.vmap(lambda xb, tb: conditional_log_density(path, xb[None, :], tb, data))(x, t)
    # Guard the integrable singularity r^{1-d} at a data point: never evaluate exactly there.
    log_w = jnp.where(jnp.isfinite(log_w), log_w, jnp.where(log_w > 0, 1e30, -jnp.inf))
    w = jax.nn.softmax(log_w, axis=1)
    return (x - w @ data) / t[:, None]


def marginal_velocity(path, x, t, data) -> jax.Array:
    r"""The exact empirical marginal velocity of a CDF-family member:

    .. math:: f_t(x) = \frac{\sum_i \phi_t(\|x - x_i\|)\,(x - x_i)/t}{\sum_i\phi_t(\|x - x_i\|)}

    (posterior mean of the conditional velocity; weights in the log domain).

    Args:
      path: a member of ``CDF_FAMILY``; x: ``(B, d)``; t: scalar or ``(B,)``, > 0;
      data: ``(N, d)``.

    Returns:
      ``(B, d)``.
    """
    x, data = check_points(x, data)
    t = check_positive_time(t, x.shape[0], x.dtype)
    return _marginal_velocity(path, x, t, data)


def sample_prior(path, num: int, dim: int, T, *, key, centre=None) -> jax.Array:
    r"""Approximate prior :math:`p_T(\cdot\mid\bar x)`: the conditional at :math:`t = T` around
    ``centre`` (default 0), which forgets the data when :math:`T` is large against their
    spread, as for gravity."""
    if not float(T) > 0:
        raise ValueError(f"T must be > 0, got {T}")
    base = jnp.zeros((int(num), int(dim))) if centre is None else jnp.broadcast_to(
        jnp.asarray(centre, jnp.float32), (int(num), int(dim)))
    return conditional_sample(path, base, T, key=key)
