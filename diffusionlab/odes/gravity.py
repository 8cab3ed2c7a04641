r"""Gravity (the Poisson field) in the augmented space :math:`\mathbb R^{d+1}`.

The data sit on the plane :math:`t = 0`; each point is a unit mass. Their field

.. math:: F(x, t) = -\frac{1}{S_{d+1}(1)}\,\mathbb E_{x_0\sim\tilde p}
          \frac{(x - x_0,\ t)}{(\|x - x_0\|^2 + t^2)^{(d+1)/2}} \triangleq (F_x, F_t)

has field lines that start on a large hemisphere and end on the data; following them is
the ODE :math:`\mathrm dx/\mathrm dt = F_x/F_t` from :math:`t = T` down to 0.

Reference: 苏剑林, 《生成扩散模型漫谈（十三）：从万有引力到扩散模型》,
https://kexue.fm/archives/9305, and (the exact conditional, the unbiased target)
《生成扩散模型漫谈（十四）：构建ODE的一般步骤（上）》, https://kexue.fm/archives/9370;
PFGM: Xu et al., *Poisson Flow Generative Models*, NeurIPS 2022, arXiv:2209.11178.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab.odes.pointmass import (
    check_points,
    check_positive_time,
    field_from_sums,
    point_mass_sums,
    velocity_from_sums,
)

PRIOR_METHODS = ("beta", "direct", "ratio")


def log_sphere_area(n: int) -> float:
    r""":math:`\log S_n(1)`, the log-area of the unit sphere in :math:`\mathbb R^n`:
    :math:`S_n(1) = 2\pi^{n/2}/\Gamma(n/2)`."""
    return math.log(2.0) + 0.5 * n * math.log(math.pi) - math.lgamma(0.5 * n)


def log_normaliser(dim: int) -> float:
    r""":math:`\log c_d` with :math:`c_d = \Gamma(\tfrac{d+1}{2})/\pi^{(d+1)/2} = 2/S_{d+1}(1)`,
    the constant of :math:`p_t(x_t\mid x_0)` (and of the prior)."""
    return math.log(2.0) - log_sphere_area(dim + 1)


def _check_dim(dim) -> int:
    if int(dim) != dim or int(dim) < 1:
        raise ValueError(f"dim must be an integer ≥ 1, got {dim}")
    return int(dim)


def _check_T(T) -> None:
    if not isinstance(T, jax.core.Tracer) and not float(T) > 0:
        raise ValueError(f"T must be > 0 (the prior lives on the plane t = T), got {T}")


@functools.partial(jax.jit, static_argnames="block")
def _gravity_sums(x, t, data, block):
    return point_mass_sums(x, t, data, exponent=data.shape[1] + 1, block=block)


def potential(x, t, data) -> jax.Array:
    r"""The potential whose gradient is :func:`field`.

    .. math:: \Phi(x, t) = \frac{1}{S_{d+1}(1)}\,\mathbb E_{x_0}\,\frac{R^{1-d}}{d-1},\qquad
              R = \sqrt{\|x - x_0\|^2 + t^2}

    (:math:`-\log R` in place of :math:`R^{1-d}/(d-1)` when :math:`d = 1`). It sums
    directly over the data, so it is meant for checks on small sets, not for sampling.

    Args:
      x: ``(B, d)``; t: ``(B,)`` or scalar, > 0; data: ``(N, d)``.

    Returns:
      ``(B,)``.
    """
    x, data = check_points(x, data)
    d = data.shape[1]
    t = check_positive_time(t, x.shape[0], x.dtype)
    r_sq = jnp.sum((x[:, None, :] - data[None, :, :]) ** 2, axis=-1) + (t * t)[:, None]
    kernel = -0.5 * jnp.log(r_sq) if d == 1 else r_sq ** (0.5 * (1 - d)) / (d - 1)
    return jnp.mean(kernel, axis=1) * math.exp(-log_sphere_area(d + 1))


def field(x, t, data, *, block: int = 512) -> tuple[jax.Array, jax.Array]:
    r"""The exact empirical gravity field :math:`(F_x, F_t)` of unit masses at ``data``.

    .. math:: (F_x, F_t) = -\frac{1}{S_{d+1}(1)\,N}\sum_{i=1}^N
              \frac{(x - x_i,\ t)}{(\|x - x_i\|^2 + t^2)^{(d+1)/2}}

    Computed blockwise in matmul form with log-domain weights (see
    :mod:`diffusionlab.odes.pointmass`): memory :math:`O(B\times\text{block})`, and no NaN at
    a data point as :math:`t\to 0`. Where the true magnitude exceeds the dtype's range (high
    :math:`d`, very near a mass) it saturates at the largest finite value; the direction,
    and so :func:`velocity`, stays exact.

    Args:
      x: query positions ``(B, d)``.
      t: query heights, scalar or ``(B,)``, > 0.
      data: the masses ``(N, d)``.
      block: masses per block.

    Returns:
      ``(F_x, F_t)`` of shapes ``(B, d)`` and ``(B,)``.

    Raises:
      ValueError: a shape or dimension mismatch, or ``t ≤ 0``.
    """
    x, data = check_points(x, data)
    t = check_positive_time(t, x.shape[0], x.dtype)
    sums = _gravity_sums(x, t, data, int(block))
    log_const = -log_sphere_area(data.shape[1] + 1) - math.log(data.shape[0])
    f_x, f_t = field_from_sums(x, t, sums, log_const=log_const)
    return -f_x, -f_t


def velocity(x, t, data, *, block: int = 512) -> jax.Array:
    r"""The gravity ODE's right-hand side :math:`\mathrm dx/\mathrm dt = F_x/F_t`.

    .. math:: \frac{F_x}{F_t} = \frac{\sum_i w_i\,(x - x_i)}{t\sum_i w_i},\qquad
              w_i = (\|x - x_i\|^2 + t^2)^{-(d+1)/2}

    which is also :math:`\mathbb E[(x_t - x_0)/t \mid x_t = x]` under the posterior of
    :func:`conditional_log_density` (the unbiased target's regression function).

    Args, Raises: as :func:`field`.

    Returns:
      ``(B, d)``.
    """
    x, data = check_points(x, data)
    t = check_positive_time(t, x.shape[0], x.dtype)
    return velocity_from_sums(x, t, _gravity_sums(x, t, data, int(block)))


# ----------------------------------------------------------------------------- the prior


def prior_log_density(x, T) -> jax.Array:
    r"""Log-density of the prior on the plane :math:`t = T`:
    :math:`\log\big(c_d\,T\,(\|x\|^2 + T^2)^{-(d+1)/2}\big)`, i.e. :math:`p_T(x \mid 0)`.

    Args:
      x: ``(B, d)``; T: > 0.

    Returns:
      ``(B,)``.
    """
    _check_T(T)
    x = jnp.asarray(x)
    d = x.shape[-1]
    return (log_normaliser(d) + jnp.log(T)
            - 0.5 * (d + 1) * jnp.log(jnp.sum(x * x, axis=-1) + T * T))


def prior_radial_density(r, dim: int, T) -> jax.Array:
    r"""Density of :math:`r = \|x\|` under the prior:
    :math:`p(r) = \frac{2T}{B(d/2, 1/2)}\,\frac{r^{d-1}}{(r^2 + T^2)^{(d+1)/2}}`."""
    dim = _check_dim(dim)
    _check_T(T)
    log_beta = math.lgamma(dim / 2) + math.lgamma(0.5) - math.lgamma((dim + 1) / 2)
    r = jnp.asarray(r)
    return jnp.exp(math.log(2.0) + jnp.log(T) - log_beta + (dim - 1) * jnp.log(r)
                   - 0.5 * (dim + 1) * jnp.log(r * r + T * T))


@functools.lru_cache(maxsize=64)
def _polar_angle_table(dim: int, size: int = 8193) -> tuple[np.ndarray, np.ndarray]:
    # θ = arctan(r/T) has density ∝ sin^{d-1}θ on [0, π/2]: the polar angle of a uniform
    # point on the hemisphere. Tabulate its CDF once (float64, trapezoid in the log domain).
    theta = np.linspace(0.0, 0.5 * np.pi, size)
    log_pdf = (dim - 1) * np.log(np.maximum(np.sin(theta), 1e-300))
    pdf = np.exp(log_pdf - log_pdf.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]))])
    return cdf / cdf[-1], theta


def _uniform_directions(key, num: int, dim: int, dtype) -> jax.Array:
    g = jax.random.normal(key, (num, dim), dtype)
    return g / jnp.linalg.norm(g, axis=1, keepdims=True)


def sample_prior(num: int, dim: int, T, *, key, method: str = "beta",
                 dtype=jnp.float32) -> jax.Array:
    r"""Draws points on the plane :math:`t = T` with density :math:`\propto(\|x\|^2+T^2)^{-(d+1)/2}`.

    Three exact samplers of the same law (field lines crossing a large hemisphere
    uniformly, projected onto the plane):

    * ``"direct"``: the radius by inverse CDF. With :math:`r = T\tan\theta`, the polar angle
      has density :math:`\propto\sin^{d-1}\theta` on :math:`[0, \pi/2]`; its CDF is tabulated
      and inverted by interpolation.
    * ``"beta"``: :math:`r^2/T^2` is Beta-prime(:math:`d/2, 1/2`), so
      :math:`B\sim\mathrm{Beta}(d/2, 1/2)`, :math:`r = T\sqrt{B/(1-B)}` (PFGM's sampler, whose
      ``Beta(N/2 - 1/2, 1/2)`` has :math:`N = d + 1`).
    * ``"ratio"``: :math:`x = T g/|s|` with :math:`g\sim\mathcal N(0, I_d)`,
      :math:`s\sim\mathcal N(0,1)`: a uniform direction in the upper half-space, projected.

    The direction is uniform on :math:`S^{d-1}` in every case.

    Args:
      num: number of points; dim: :math:`d`; T: the plane's height (> 0).
      key: PRNG key.
      method: one of ``PRIOR_METHODS``.
      dtype: float dtype of the result.

    Returns:
      ``(num, dim)``.

    Raises:
      ValueError: ``T ≤ 0``, ``dim < 1``, ``num < 1`` or an unknown ``method``.
    """
    dim = _check_dim(dim)
    _check_T(T)
    if int(num) < 1:
        raise ValueError(f"num must be an integer ≥ 1, got {num}")
    if method not in PRIOR_METHODS:
        raise ValueError(f"method must be one of {PRIOR_METHODS}, got {method!r}")
    num = int(num)
    key_r, key_u = jax.random.split(key)
    if method == "ratio":
        g_key, s_key = key_r, key_u
        g = jax.random.normal(g_key, (num, dim), dtype)
        s = jax.random.normal(s_key, (num, 1), dtype)
        return T * g / jnp.abs(s)
    if method == "beta":
        # Draw 1 - B ~ Beta(1/2, d/2) rather than B ~ Beta(d/2, 1/2): near B = 1, where r is
        # large, 1 - B in floating point would round to 0 and give r = inf.
        one_minus_b = jax.random.beta(key_r, 0.5, dim / 2, (num,), dtype)
        r = T * jnp.sqrt((1 - one_minus_b) / one_minus_b)
    else:
        cdf, theta = _polar_angle_table(dim)
        u = jax.random.uniform(key_r, (num,), jnp.float32)
        angle = jnp.interp(u, jnp.asarray(cdf, jnp.float32), jnp.asarray(theta, jnp.float32))
        r = (T * jnp.tan(angle)).astype(dtype)
    return r[:, None] * _uniform_directions(key_u, num, dim, dtype)


# -------------------------------------------------------- the exact conditional p_t(x_t|x_0)


def conditional_log_density(x_t, t, x0) -> jax.Array:
    r"""Log of the exact gravity conditional (the Green's function's first component):

    .. math:: p_t(x_t\mid x_0) = c_d\,\frac{t}{(t^2 + \|x_t - x_0\|^2)^{(d+1)/2}}

    Args:
      x_t, x0: ``(B, d)``; t: scalar or ``(B,)``, > 0.

    Returns:
      ``(B,)``.
    """
    x_t, x0 = check_points(x_t, x0)
    if x0.shape != x_t.shape:
        raise ValueError(f"x_t and x0 must have the same shape, got {x_t.shape}, {x0.shape}")
    t = check_positive_time(t, x_t.shape[0], x_t.dtype)
    d = x_t.shape[1]
    dist_sq = jnp.sum((x_t - x0) ** 2, axis=1)
    return log_normaliser(d) + jnp.log(t) - 0.5 * (d + 1) * jnp.log(t * t + dist_sq)


def conditional_sample(x0, t, *, key) -> jax.Array:
    r"""Exact draws from :math:`p_t(x_t\mid x_0)`: :math:`x_t = x_0 + t\,z` with
    :math:`z = g/|s|` standard multivariate Cauchy (:math:`g\sim\mathcal N(0, I_d)`,
    :math:`s\sim\mathcal N(0, 1)`), since :math:`p(z)\propto(1+\|z\|^2)^{-(d+1)/2}`.

    Args:
      x0: ``(B, d)`` data points.
      t: scalar or ``(B,)``, > 0.
      key: PRNG key.

    Returns:
      ``(B, d)``.

    Raises:
      ValueError: ``t ≤ 0`` or a bad shape.
    """
    x0 = jnp.asarray(x0)
    if x0.ndim != 2:
        raise ValueError(f"x0 must have shape (B, d), got {x0.shape}")
    x0 = x0.astype(jnp.result_type(x0.dtype, jnp.float32))
    t = check_positive_time(t, x0.shape[0], x0.dtype)
    return x0 + t[:, None] * _cauchy(key, x0.shape, x0.dtype)


def _cauchy(key, shape, dtype) -> jax.Array:
    key_g, key_s = jax.random.split(key)
    g = jax.random.normal(key_g, shape, dtype)
    s = jax.random.normal(key_s, shape[:1] + (1,), dtype)
    return g / jnp.abs(s)


# ----------------------------------------------------------------------- training targets


def conditional_target(x0, t, *, key) -> tuple[jax.Array, jax.Array]:
    r"""The unbiased conditional target: a joint draw :math:`(x_t, z)` with
    :math:`x_t = x_0 + t z`, :math:`z` multivariate Cauchy, and regression target
    :math:`z = (x_t - x_0)/t`, whose conditional mean given :math:`x_t` is :math:`F_x/F_t`.

    Returns:
      ``(x_t, z)``, both ``(B, d)``.
    """
    x_t = conditional_sample(x0, t, key=key)
    t = check_positive_time(t, x_t.shape[0], x_t.dtype)
    return x_t, (x_t - x0) / t[:, None]


def conditional_loss(prediction, x_t, t, x0) -> jax.Array:
    r"""Per-example unbiased gravity loss :math:`\|v_\theta(x_t,t) - (x_t - x_0)/t\|^2`.

    Its minimiser is :math:`\mathbb E[(x_t-x_0)/t\mid x_t] = F_x/F_t`.

    Returns:
      ``(B,)``.
    """
    _check_same_shape(prediction=prediction, x_t=x_t, x0=x0)
    t = jnp.broadcast_to(jnp.asarray(t, x_t.dtype).reshape(-1), x_t.shape[:1])
    return jnp.sum((prediction - (x_t - x0) / t[:, None]) ** 2, axis=1)


def pfgm_perturb(x0, *, key, sigma: float = 0.01, tau: float = 0.03,
                 max_exponent: float = 291.0) -> tuple[jax.Array, jax.Array]:
    r"""PFGM's training points: :math:`x = x_0 + \|\varepsilon_x\|(1+\tau)^m u`,
    :math:`t = |\varepsilon_t|(1+\tau)^m`, :math:`(\varepsilon_x,\varepsilon_t)\sim\mathcal N(0,
    \sigma^2 I_{d+1})`, :math:`m\sim U[0, M]`, :math:`u` uniform on :math:`S^{d-1}`.

    Marginally :math:`x - x_0 = t z` with :math:`z` multivariate Cauchy, as in
    :func:`conditional_sample`; conditionally on :math:`t` it is not (``t`` and ``z`` share
    :math:`|\varepsilon_t|`), which is harmless for :func:`pfgm_target`.

    Returns:
      ``(x, t)`` of shapes ``(B, d)`` and ``(B,)``.
    """
    x0 = jnp.asarray(x0)
    b, d = x0.shape
    k_e, k_m, k_u = jax.random.split(key, 3)
    eps = sigma * jax.random.normal(k_e, (b, d + 1), x0.dtype)
    scale = (1 + tau) ** jax.random.uniform(k_m, (b,), x0.dtype, 0.0, max_exponent)
    radius = jnp.linalg.norm(eps[:, :d], axis=1) * scale
    x = x0 + radius[:, None] * _uniform_directions(k_u, b, d, x0.dtype)
    return x, jnp.abs(eps[:, d]) * scale


def pfgm_target(x, t, batch, *, gamma: float = 1e-3) -> jax.Array:
    r"""PFGM's normalised batch-field target in :math:`\mathbb R^{d+1}`:

    .. math:: \sqrt{d+1}\,\frac{E}{\|E\| + \gamma},\qquad
              E = -\sum_i w_i\,(x - y_i,\ t),\quad w_i\propto R_i^{-(d+1)},\ \sum_i w_i = 1,

    with the :math:`y_i` the batch's data points. It points along the batch's exact field,
    with unit scale; the ratio of batch estimates makes it a biased estimate of the
    normalised population field, hence PFGM's large batches.

    Args:
      x: ``(B, d)``; t: ``(B,)`` or scalar, > 0; batch: ``(N, d)``.
      gamma: keeps the normalisation finite where :math:`E \approx 0`.

    Returns:
      ``(B, d + 1)``, the ``t`` component last.
    """
    x, batch = check_points(x, batch)
    t = check_positive_time(t, x.shape[0], x.dtype)
    sums = _gravity_sums(x, t, batch, 512)
    e_x = -(x - sums.centre[None, :] - sums.moment / sums.weight[:, None])
    e = jnp.concatenate([e_x, -t[:, None]], axis=1)
    norm = jnp.linalg.norm(e, axis=1, keepdims=True)
    return math.sqrt(x.shape[1] + 1) * e / (norm + gamma)


def pfgm_loss(prediction, x, t, batch, *, gamma: float = 1e-3) -> jax.Array:
    r"""Per-example PFGM loss :math:`\|s_\theta(x, t) - \text{target}\|^2` (prediction
    ``(B, d+1)``); the learned velocity is :math:`s_x / s_t`."""
    target = pfgm_target(x, t, batch, gamma=gamma)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction must have shape {target.shape}, got {prediction.shape}")
    return jnp.sum((prediction - target) ** 2, axis=1)


def _check_same_shape(**arrays) -> None:
    shapes = {name: jnp.shape(a) for name, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"shapes must agree, got {shapes}")
