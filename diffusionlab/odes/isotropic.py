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

from diffusionlab import _checks
from diffusionlab.draws import uniform_on_sphere
from diffusionlab.odes._checks import (
    dimension,
    float_input,
    points,
    positive_time,
    sample_count,
    saturating_cast,
    source_points,
)
from diffusionlab.odes.gravity import log_sphere_area
from diffusionlab.odes.pointmass import velocity_from_sums, weighted_sums


def _xlogy(a, r):
    # a log r with 0 log 0 = 0 (d = 1: no r^{d-1} factor, also at r = 0).
    return a * jnp.log(r) if a else jnp.zeros_like(r)


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

    def log_radial_density(self, r, t, dim):
        r""":math:`\log(\partial_r\psi_t / r^{d-1})`; singular (integrably) at ``r = 0``."""
        return self.log_dpsi_dr(r, t, dim) - _xlogy(dim - 1, r)

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

    def log_radial_density(self, r, t, dim):
        r""":math:`\log(\partial_r\psi_t / r^{d-1})`; singular (integrably) at ``r = 0``."""
        return self.log_dpsi_dr(r, t, dim) - _xlogy(dim - 1, r)

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
        return _xlogy(dim - 1, r) + self.log_radial_density(r, t, dim)

    def log_radial_density(self, r, t, dim):
        r""":math:`\log(\partial_r\psi_t / r^{d-1})`: the Gaussian's, finite at ``r = 0``
        (no :math:`r^{d-1}/r^{d-1}` to cancel)."""
        return (-r * r / (2 * t * t) - dim * jnp.log(t) - math.lgamma(dim / 2)
                - (dim / 2 - 1) * math.log(2.0))

    def sample_radius(self, key, shape, t, dim, dtype):
        g = jax.random.normal(key, shape + (dim,), dtype)
        return t * jnp.linalg.norm(g, axis=-1)


CDF_FAMILY = (TanhCDF(), ExponentialCDF(), GaussianCDF())


def _check_path(path):
    if not isinstance(path, (TanhCDF, ExponentialCDF, GaussianCDF)):
        names = tuple(type(p).__name__ for p in CDF_FAMILY)
        raise TypeError(f"path must be a member of the CDF family {names}; got "
                        f"{type(path).__name__}")


def _radius(x_t, x0):
    return jnp.sqrt(jnp.sum((x_t - x0) ** 2, axis=-1))


def _log_density(path, r, t, dim):
    return path.log_radial_density(r, t, dim) - log_sphere_area(dim)


def conditional_log_density(path, x_t, t, x0) -> jax.Array:
    r""":math:`\log\phi_t(r) = \log\partial_r\psi_t(r) - \log S_d(1) - (d-1)\log r`,
    :math:`r = \|x_t - x_0\|`.

    Args:
      path: a member of ``CDF_FAMILY``.
      x_t, x0: ``(d,)`` or batches ``(..., d)`` of the same shape.
      t: > 0, a scalar or of shape ``x_t.shape[:-1]``.

    Returns:
      Shape ``x_t.shape[:-1]``, in the inputs' dtype (computed in at least float32).

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    _check_path(path)
    x_t, t, x0, dtype = source_points(x_t, t, x0, names=("x_t", "x0"))
    dim = x_t.shape[-1]
    return saturating_cast(_log_density(path, _radius(x_t, x0), t, dim), dtype)


def _green_function(path, x_t, t, x0):
    dim = x_t.shape[-1]
    r = _radius(x_t, x0)
    phi = jnp.exp(_log_density(path, r, t, dim))
    dpsi_dt = jax.grad(path.psi, argnums=1)(r, t, dim)
    varphi = -dpsi_dt * jnp.exp(-log_sphere_area(dim) - dim * jnp.log(r))
    return jnp.concatenate([phi[None], varphi * (x_t - x0)])


def green_function(path, x_t, t, x0) -> jax.Array:
    r"""The Green's function :math:`G = (\phi_t,\ \varphi_t\,(x_t - x_0))\in\mathbb R^{d+1}`,
    with :math:`\partial_t\psi_t` by automatic differentiation. Divergence-free for
    :math:`r > 0`.

    Args, Raises: as :func:`conditional_log_density`.

    Returns:
      ``(..., d + 1)``, in the inputs' dtype.
    """
    _check_path(path)
    x_t, t, x0, dtype = source_points(x_t, t, x0, names=("x_t", "x0"))
    g = jnp.vectorize(functools.partial(_green_function, path), signature="(d),(),(d)->(e)")
    return saturating_cast(g(x_t, t, x0), dtype)


def conditional_velocity(path, x_t, t, x0) -> jax.Array:
    r""":math:`\varphi_t/\phi_t\,(x_t - x_0) = (x_t - x_0)/t` for the scale family.

    Args, Raises: as :func:`conditional_log_density`.

    Returns:
      Shaped like ``x_t``, in the inputs' dtype.
    """
    _check_path(path)
    x_t, t, x0, dtype = source_points(x_t, t, x0, names=("x_t", "x0"))
    return saturating_cast((x_t - x0) / t[..., None], dtype)


def conditional_sample(path, x0, t, *, key) -> jax.Array:
    r"""Exact draws from :math:`\phi_t`: :math:`x_t = x_0 + \psi_t^{-1}(U)\,u` with
    :math:`u` uniform on :math:`S^{d-1}` (:math:`\psi_t` is the radius's CDF).

    Args:
      path: a member of the family; x0: ``(B, d)``; t: scalar or ``(B,)``, > 0; key: PRNG key.

    Returns:
      ``(B, d)``, in ``x0``'s dtype (drawn in at least float32).

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    _check_path(path)
    x0, dtype = float_input(x0, "x0", ndim=2)
    b, d = x0.shape
    t = positive_time(t, b, x0.dtype, of="x0")
    _checks.check_key(key)
    key_r, key_u = jax.random.split(key)
    r = path.sample_radius(key_r, (b,), t, d, x0.dtype)
    return saturating_cast(x0 + uniform_on_sphere(key_u, b, d, radius=r[:, None], dtype=x0.dtype),
                           dtype, axis=1)


@functools.partial(jax.jit, static_argnames="path")
def _marginal_velocity(path, x, t, data):
    dim = data.shape[1]
    tiny = jnp.finfo(x.dtype).tiny

    def log_weight(diff, dist_sq, y, t):
        # The density ∝ r^{1-d} is singular (integrably) at a data point: evaluate it just
        # off the point, so that a coincident point dominates with a finite weight.
        r = jnp.sqrt(jnp.maximum(dist_sq, tiny))
        return path.log_radial_density(r, t[:, None], dim)

    return velocity_from_sums(x, t, weighted_sums(x, t, data, log_weight))


def marginal_velocity(path, x, t, data) -> jax.Array:
    r"""The exact empirical marginal velocity of a CDF-family member:

    .. math:: f_t(x) = \frac{\sum_i \phi_t(\|x - x_i\|)\,(x - x_i)/t}{\sum_i\phi_t(\|x - x_i\|)}

    (posterior mean of the conditional velocity; weights in the log domain, blockwise from
    direct differences as in :mod:`diffusionlab.odes.pointmass`).

    Args:
      path: a member of ``CDF_FAMILY``; x: ``(B, d)``; t: scalar or ``(B,)``, > 0;
      data: ``(N, d)``.

    Returns:
      ``(B, d)``, in the inputs' dtype (computed in at least float32).

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    _check_path(path)
    x, data, dtype = points(x, data)
    t = positive_time(t, x.shape[0], x.dtype, of="x")
    return saturating_cast(_marginal_velocity(path, x, t, data), dtype)


def sample_prior(path, num: int, dim: int, T, *, key, centre=None) -> jax.Array:
    r"""Approximate prior :math:`p_T(\cdot\mid\bar x)`: the conditional at :math:`t = T` around
    ``centre`` (default 0), which forgets the data when :math:`T` is large against their
    spread, as for gravity.

    Args:
      path: a member of ``CDF_FAMILY``; num: ≥ 1; dim: ≥ 1; T: > 0; key: PRNG key;
      centre: ``(dim,)``, ``(1, dim)`` or ``(num, dim)`` (default the origin).

    Returns:
      ``(num, dim)`` float32 (``centre``'s dtype when given; drawn in at least float32).

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    _check_path(path)
    dim = dimension(dim)
    T = _checks.check_real(T, "T", low=0.0, low_open=True)
    _checks.check_key(key)
    if centre is None:
        centre, dtype = jnp.zeros((dim,), jnp.float32), jnp.dtype(jnp.float32)
    else:
        centre, dtype = float_input(centre, "centre")
    num = sample_count(num, dim, dtype)
    if centre.shape not in ((dim,), (1, dim), (num, dim)):
        raise ValueError(f"centre must have shape ({dim},), (1, {dim}) or ({num}, {dim}); got "
                         f"{centre.shape}")
    base = jnp.broadcast_to(centre.astype(jnp.result_type(centre.dtype, jnp.float32)), (num, dim))
    return saturating_cast(conditional_sample(path, base, T, key=key), dtype, axis=1)
