r"""The isotropic CDF family: Green's functions isotropic in :math:`x` only.

Choose :math:`\psi_t(r)`, increasing in :math:`r`, with :math:`\psi_t(0) = 0`,
:math:`\psi_t(\infty) = 1` and :math:`\psi_t(r)\to 1` as :math:`t\to 0^+` (a smoothed step).
Then :math:`G = (\phi_t(r),\ \varphi_t(r)(x_t - x_0))` with

.. math:: \phi_t = \frac{\partial_r\psi_t}{S_d(1)\,r^{d-1}},\qquad
          \varphi_t = -\frac{\partial_t\psi_t}{S_d(1)\,r^d}

is divergence-free in :math:`(t, x_t)`, :math:`\psi_t` is the CDF of the radius
:math:`\|x_t - x_0\|`, :math:`\phi_t = p_t(x_t\mid x_0)`, and the conditional velocity is
:math:`\varphi_t/\phi_t\,(x_t - x_0)`. Every member here has the scale form
:math:`\psi_t(r) = h(r/s_t)`, so its conditional velocity is
:math:`\dot s_t/s_t\,(x_t - x_0)`, which is :math:`(x_t - x_0)/t` for :math:`s_t = t` (tanh,
exp and the default Gaussian; a Gaussian may take any :math:`\sigma_t`): straight rays into
:math:`x_0`, as for gravity; the members differ in their marginal fields.

On an atom (:math:`x_t = x_0`, :math:`r = 0`) every function here returns the analytic limit
(finite for the Gaussian member and for every member at :math:`d = 1`; :math:`+\infty` for
the log-density of tanh and exp at :math:`d\ge 2`) with NaN-free gradients: the radius is a
safe norm (the square root of 1 where the distance is 0) and the limit is selected by
``jnp.where`` with both branches finite.

Reference: 苏剑林, 《生成扩散模型漫谈（十四）：构建ODE的一般步骤（上）》,
https://kexue.fm/archives/9370.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

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


def _safe_radius(dist_sq):
    r"""``(r, on_atom)``: :math:`r = \sqrt{\|x - x_0\|^2}` with the square root taken of 1
    where the distance is 0, so that neither the value nor any derivative is NaN there
    (the caller selects the analytic limit on ``on_atom`` with ``jnp.where``)."""
    on_atom = dist_sq <= 0
    return jnp.sqrt(jnp.where(on_atom, 1.0, dist_sq)), on_atom


def _scale_rate(t):
    # ṡ/s for the scale s_t = t.
    return 1 / t


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

    def log_radial_density_at_atom(self, t, dim):
        r"""The limit of :meth:`log_radial_density` as :math:`r\to 0^+`:
        :math:`\log\partial_r\psi_t(0) = -\log t` for :math:`d = 1`, :math:`+\infty` for
        :math:`d\ge 2` (:math:`\partial_r\psi_t(0) = 1/t > 0` over :math:`r^{d-1}\to 0`)."""
        return -jnp.log(t) if dim == 1 else jnp.full_like(t, jnp.inf)

    def sample_radius(self, key, shape, t, dim, dtype):
        u = jax.random.uniform(key, shape, dtype)
        return t * jnp.arctanh(u)

    def scale(self, t):
        return t

    def rate(self, t):
        r""":math:`\dot s_t/s_t = 1/t`, the conditional velocity's factor."""
        return _scale_rate(t)


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

    def log_radial_density_at_atom(self, t, dim):
        r"""The limit as :math:`r\to 0^+`: :math:`-\log t` for :math:`d = 1`, :math:`+\infty`
        for :math:`d\ge 2`."""
        return -jnp.log(t) if dim == 1 else jnp.full_like(t, jnp.inf)

    def sample_radius(self, key, shape, t, dim, dtype):
        return t * jax.random.exponential(key, shape, dtype)

    def scale(self, t):
        return t

    def rate(self, t):
        r""":math:`\dot s_t/s_t = 1/t`."""
        return _scale_rate(t)


@dataclasses.dataclass(frozen=True)
class GaussianCDF:
    r""":math:`\psi_t(r) = P(\tfrac d2, \tfrac{r^2}{2\sigma_t^2})` (regularised lower incomplete
    gamma): the radius of :math:`\mathcal N(x_0, \sigma_t^2 I)`; the marginal ODE is the
    variance-exploding probability flow :math:`f_t = -\dot\sigma_t\sigma_t\nabla\log p_t`,
    and the conditional velocity is :math:`\dot\sigma_t/\sigma_t\,(x_t - x_0)`.

    Attributes:
      name: ``"gaussian"``.
      sigma: the noise scale :math:`t\mapsto\sigma_t` (a hashable function of a float
        array, elementwise, differentiable, positive and increasing for :math:`t > 0` with
        :math:`\sigma_t\to 0` as :math:`t\to 0^+`); ``None`` (the default) is
        :math:`\sigma_t = t`. Its rate :math:`\dot\sigma_t` is taken by forward-mode
        automatic differentiation.

    Reference: 苏剑林, https://kexue.fm/archives/9370 (the Gaussian member of the CDF
    construction, heat equation with :math:`D_t = \dot\sigma_t\sigma_t`).
    """

    name: str = "gaussian"
    sigma: Callable | None = None

    def __post_init__(self):
        if self.sigma is not None and not callable(self.sigma):
            raise TypeError(f"sigma must be a callable t -> sigma_t or None; got "
                            f"{type(self.sigma).__name__}")

    def scale(self, t):
        r""":math:`\sigma_t`."""
        return t if self.sigma is None else jnp.asarray(self.sigma(t), jnp.result_type(t))

    def rate(self, t):
        r""":math:`\dot\sigma_t/\sigma_t`."""
        if self.sigma is None:
            return _scale_rate(t)
        t = jnp.asarray(t)
        s, ds = jax.jvp(self.scale, (t,), (jnp.ones_like(t),))
        return ds / s

    def psi(self, r, t, dim):
        s = self.scale(t)
        return jsp.gammainc(dim / 2, r * r / (2 * s * s))

    def log_dpsi_dr(self, r, t, dim):
        return _xlogy(dim - 1, r) + self.log_radial_density(r, t, dim)

    def log_radial_density(self, r, t, dim):
        r""":math:`\log(\partial_r\psi_t / r^{d-1})`: the Gaussian's, finite at ``r = 0``
        (no :math:`r^{d-1}/r^{d-1}` to cancel)."""
        s = self.scale(t)
        return (-r * r / (2 * s * s) - dim * jnp.log(s) - math.lgamma(dim / 2)
                - (dim / 2 - 1) * math.log(2.0))

    def log_radial_density_at_atom(self, t, dim):
        r"""The value at :math:`r = 0`: :math:`-d\log\sigma_t - \log\Gamma(\tfrac d2)
        - (\tfrac d2 - 1)\log 2`."""
        return (-dim * jnp.log(self.scale(t)) - math.lgamma(dim / 2)
                - (dim / 2 - 1) * math.log(2.0))

    def sample_radius(self, key, shape, t, dim, dtype):
        g = jax.random.normal(key, shape + (dim,), dtype)
        return self.scale(t) * jnp.linalg.norm(g, axis=-1)


CDF_FAMILY = (TanhCDF(), ExponentialCDF(), GaussianCDF())


def _check_path(path):
    if not isinstance(path, (TanhCDF, ExponentialCDF, GaussianCDF)):
        names = tuple(type(p).__name__ for p in CDF_FAMILY)
        raise TypeError(f"path must be a member of the CDF family {names}; got "
                        f"{type(path).__name__}")


def _dist_sq(x_t, x0):
    return jnp.sum((x_t - x0) ** 2, axis=-1)


def _log_radial_density(path, dist_sq, t, dim):
    # log(∂_rψ_t / r^{d-1}) with its analytic limit on the atom (r = 0): finite there for
    # the Gaussian member (every d) and for every member at d = 1, +inf for tanh/exp at
    # d ≥ 2. Both branches are finite-valued with finite derivatives, so jnp.where passes no
    # NaN into gradients; the gradient in x on the atom is that of the radially symmetric
    # limit, 0.
    r, on_atom = _safe_radius(dist_sq)
    t = jnp.broadcast_to(t, dist_sq.shape)
    return jnp.where(on_atom, path.log_radial_density_at_atom(t, dim),
                     path.log_radial_density(r, t, dim))


def _log_density(path, dist_sq, t, dim):
    return _log_radial_density(path, dist_sq, t, dim) - log_sphere_area(dim)


def conditional_log_density(path, x_t, t, x0) -> jax.Array:
    r""":math:`\log\phi_t(r) = \log\partial_r\psi_t(r) - \log S_d(1) - (d-1)\log r`,
    :math:`r = \|x_t - x_0\|`.

    On the atom (:math:`r = 0`) it is the analytic limit: finite for the Gaussian member
    (:math:`-\tfrac d2\log(2\pi\sigma_t^2)`) and for every member at :math:`d = 1`
    (:math:`-\log(2t)` for tanh and exp), :math:`+\infty` for tanh and exp at
    :math:`d\ge 2` (an integrable singularity). Gradients are finite there too: in
    ``x_t``, 0 (the symmetric value; exact for the smooth members, the mean of the one-sided
    slopes :math:`\mp 1/t` for exp at :math:`d = 1`); in ``t``, the limit's.

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
    return saturating_cast(_log_density(path, _dist_sq(x_t, x0), t, dim), dtype)


def _green_function(path, x_t, t, x0):
    dim = x_t.shape[-1]
    dist_sq = _dist_sq(x_t, x0)
    r, on_atom = _safe_radius(dist_sq)
    log_phi = _log_density(path, dist_sq, t, dim)
    # +inf on the atom for tanh/exp at d ≥ 2: selected as a constant, so that its derivative
    # is 0 rather than inf · 0.
    finite = jnp.isfinite(log_phi)
    phi = jnp.where(finite, jnp.exp(jnp.where(finite, log_phi, 0.0)), jnp.inf)
    dpsi_dt = jax.grad(path.psi, argnums=1)(r, t, dim)
    varphi = -dpsi_dt * jnp.exp(-log_sphere_area(dim) - dim * jnp.log(r))
    # On the atom the flux φ (x_t - x0) is given its symmetric value 0 (its limit for the
    # Gaussian member).
    flux = jnp.where(on_atom, 0.0, varphi) * (x_t - x0)
    return jnp.concatenate([phi[None], flux])


def green_function(path, x_t, t, x0) -> jax.Array:
    r"""The Green's function :math:`G = (\phi_t,\ \varphi_t\,(x_t - x_0))\in\mathbb R^{d+1}`,
    with :math:`\partial_t\psi_t` by automatic differentiation. Divergence-free for
    :math:`r > 0`; on the atom it is :math:`(\phi_t(0), 0)` (see
    :func:`conditional_log_density`).

    Args, Raises: as :func:`conditional_log_density`.

    Returns:
      ``(..., d + 1)``, in the inputs' dtype.
    """
    _check_path(path)
    x_t, t, x0, dtype = source_points(x_t, t, x0, names=("x_t", "x0"))
    g = jnp.vectorize(functools.partial(_green_function, path), signature="(d),(),(d)->(e)")
    return saturating_cast(g(x_t, t, x0), dtype)


def conditional_velocity(path, x_t, t, x0) -> jax.Array:
    r""":math:`\varphi_t/\phi_t\,(x_t - x_0) = \frac{\dot s_t}{s_t}(x_t - x_0)` for the scale
    family :math:`\psi_t(r) = h(r/s_t)`: :math:`(x_t - x_0)/t` for :math:`s_t = t` (tanh,
    exp, the default Gaussian), :math:`\dot\sigma_t/\sigma_t\,(x_t - x_0)` for a Gaussian
    with a general ``sigma``.

    Args, Raises: as :func:`conditional_log_density`.

    Returns:
      Shaped like ``x_t``, in the inputs' dtype.
    """
    _check_path(path)
    x_t, t, x0, dtype = source_points(x_t, t, x0, names=("x_t", "x0"))
    return saturating_cast(path.rate(t)[..., None] * (x_t - x0), dtype)


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


def _at_atom_log_weight(path, t, dim, dtype):
    # The limit weight of a source the query sits on: finite where the density is, else a
    # finite stand-in above every attainable log-weight, so that the source takes all the
    # weight (the limit) and the online log-sum-exp meets no inf - inf.
    big = jnp.asarray(jnp.finfo(dtype).max / 4, dtype)
    return jnp.minimum(path.log_radial_density_at_atom(t, dim), big)


@functools.partial(jax.jit, static_argnames="path")
def _marginal_velocity(path, x, t, data):
    dim = data.shape[1]

    def log_weight(diff, dist_sq, y, t):
        # Exact on a source (r = 0): the analytic limit of the weight, finite for the
        # Gaussian member and for d = 1, +inf (all the weight) for tanh/exp at d ≥ 2.
        r, on_atom = _safe_radius(dist_sq)
        t_BxN = jnp.broadcast_to(t[:, None], dist_sq.shape)
        return jnp.where(on_atom, _at_atom_log_weight(path, t_BxN, dim, dist_sq.dtype),
                         path.log_radial_density(r, t_BxN, dim))

    sums = weighted_sums(x, t, data, log_weight)
    if getattr(path, "sigma", None) is None:
        return velocity_from_sums(x, t, sums)
    return path.rate(t)[:, None] * sums.displacement / sums.weight[:, None]


def marginal_velocity(path, x, t, data) -> jax.Array:
    r"""The exact empirical marginal velocity of a CDF-family member:

    .. math:: f_t(x) = \frac{\dot s_t}{s_t}\,
              \frac{\sum_i \phi_t(\|x - x_i\|)\,(x - x_i)}{\sum_i\phi_t(\|x - x_i\|)}

    (posterior mean of the conditional velocity; :math:`\dot s_t/s_t = 1/t` except for a
    Gaussian with a general ``sigma``; weights in the log domain, blockwise from direct
    differences as in :mod:`diffusionlab.odes.pointmass`). A query exactly on a source gives
    that source its limit weight: finite for the Gaussian member and at :math:`d = 1`, and
    all the weight for tanh and exp at :math:`d\ge 2` (the velocity there is then exactly 0,
    its limit). Value and Jacobian are finite there.

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
