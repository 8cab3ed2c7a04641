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

from diffusionlab import _checks
from diffusionlab.draws import multivariate_cauchy, uniform_on_sphere
from diffusionlab.odes._checks import (
    dimension,
    float_dtype,
    float_input,
    input_dtype,
    points,
    positive_time,
    sample_count,
    saturating_cast,
)
from diffusionlab.odes.pointmass import (
    field_from_sums,
    log_radius_sq,
    point_mass_sums,
    velocity_from_sums,
)

PRIOR_METHODS = ("beta", "direct", "ratio")


def log_sphere_area(n: int) -> float:
    r""":math:`\log S_n(1)`, the log-area of the unit sphere in :math:`\mathbb R^n`:
    :math:`S_n(1) = 2\pi^{n/2}/\Gamma(n/2)`.

    Raises:
      TypeError, ValueError: ``n`` is not an integer ≥ 1.
    """
    n = dimension(n, "n")
    return math.log(2.0) + 0.5 * n * math.log(math.pi) - math.lgamma(0.5 * n)


def log_normaliser(dim: int) -> float:
    r""":math:`\log c_d` with :math:`c_d = \Gamma(\tfrac{d+1}{2})/\pi^{(d+1)/2} = 2/S_{d+1}(1)`,
    the constant of :math:`p_t(x_t\mid x_0)` (and of the prior).

    Raises:
      TypeError, ValueError: ``dim`` is not an integer ≥ 1.
    """
    return math.log(2.0) - log_sphere_area(dimension(dim) + 1)


def _check_T(T):
    return _checks.check_real(T, "T", low=0.0, low_open=True)


@functools.partial(jax.jit, static_argnames="block")
def _gravity_sums(x, t, data, block):
    return point_mass_sums(x, t, data, exponent=data.shape[1] + 1, block=block)


def potential(x, t, data) -> jax.Array:
    r"""The potential whose gradient is :func:`field`.

    .. math:: \Phi(x, t) = \frac{1}{S_{d+1}(1)}\,\mathbb E_{x_0}\,\frac{R^{1-d}}{d-1},\qquad
              R = \sqrt{\|x - x_0\|^2 + t^2}

    (:math:`-\log R` in place of :math:`R^{1-d}/(d-1)` when :math:`d = 1`). It sums
    directly over the data (memory :math:`O(BNd)`), so it is meant for checks on small
    sets, not for sampling.

    Args:
      x: ``(B, d)``; t: ``(B,)`` or scalar, > 0; data: ``(N, d)``.

    Returns:
      ``(B,)``, in the inputs' dtype (computed in at least float32).

    Raises:
      TypeError, ValueError: as :func:`field`, or when the ``(B, N, d)`` differences cannot
        fit in memory.
    """
    x, data, dtype = points(x, data)
    d = data.shape[1]
    t = positive_time(t, x.shape[0], x.dtype, of="x")
    _checks.check_fits_memory("x", x.shape[0] * data.size * x.dtype.itemsize,
                              "the (B, N, d) differences to the data")
    diff = x[:, None, :] - data[None, :, :]
    log_r_sq = log_radius_sq(jnp.sum(diff * diff, axis=-1), t)
    kernel = -0.5 * log_r_sq if d == 1 else jnp.exp(0.5 * (1 - d) * log_r_sq) / (d - 1)
    return saturating_cast(jnp.mean(kernel, axis=1) * math.exp(-log_sphere_area(d + 1)), dtype)


def field(x, t, data, *, block: int = 512) -> tuple[jax.Array, jax.Array]:
    r"""The exact empirical gravity field :math:`(F_x, F_t)` of unit masses at ``data``.

    .. math:: (F_x, F_t) = -\frac{1}{S_{d+1}(1)\,N}\sum_{i=1}^N
              \frac{(x - x_i,\ t)}{(\|x - x_i\|^2 + t^2)^{(d+1)/2}}

    Computed blockwise from direct differences with log-domain weights (see
    :mod:`diffusionlab.odes.pointmass`): memory :math:`O(B\times\text{block}\times d)`, full
    relative precision for queries close to a mass, and no NaN at a data point as
    :math:`t\to 0`. The magnitude is exact where it is representable in the result's dtype
    (to the rounding of its logarithm, below :math:`10^{-5}` relative in float32) and
    saturates at its largest finite value where it is not (high :math:`d`, very near a
    mass): it never decreases as a query approaches a mass. The direction, and so
    :func:`velocity`, stays exact. Heights below the smallest normal float are rejected
    (XLA flushes them to zero).

    Args:
      x: query positions ``(B, d)`` (``B = 0`` gives empty results).
      t: query heights, scalar or ``(B,)``, > 0.
      data: the masses ``(N, d)``, ``N ≥ 1``.
      block: masses per block (≥ 1).

    Returns:
      ``(F_x, F_t)`` of shapes ``(B, d)`` and ``(B,)``, in the inputs' dtype (computed in at
      least float32).

    Raises:
      TypeError: a non-float array, None or a list, or a non-integer ``block``.
      ValueError: a shape or dimension mismatch, NaN/inf, ``t ≤ 0``, or ``block < 1``.
    """
    x, data, dtype = points(x, data)
    block = _checks.check_int(block, "block", low=1)
    t = positive_time(t, x.shape[0], x.dtype, of="x")
    sums = _gravity_sums(x, t, data, block)
    log_const = -log_sphere_area(data.shape[1] + 1) - math.log(data.shape[0])
    f_x, f_t = field_from_sums(x, t, sums, log_const=log_const, dtype=dtype)
    return saturating_cast(-f_x, dtype), saturating_cast(-f_t, dtype)


def velocity(x, t, data, *, block: int = 512) -> jax.Array:
    r"""The gravity ODE's right-hand side :math:`\mathrm dx/\mathrm dt = F_x/F_t`.

    .. math:: \frac{F_x}{F_t} = \frac{\sum_i w_i\,(x - x_i)}{t\sum_i w_i},\qquad
              w_i = (\|x - x_i\|^2 + t^2)^{-(d+1)/2}

    which is also :math:`\mathbb E[(x_t - x_0)/t \mid x_t = x]` under the posterior of
    :func:`conditional_log_density` (the unbiased target's regression function).

    Args, Raises: as :func:`field`.

    Returns:
      ``(B, d)``, in the inputs' dtype.
    """
    x, data, dtype = points(x, data)
    block = _checks.check_int(block, "block", low=1)
    t = positive_time(t, x.shape[0], x.dtype, of="x")
    return saturating_cast(velocity_from_sums(x, t, _gravity_sums(x, t, data, block)), dtype)


# ----------------------------------------------------------------------------- the prior


def prior_log_density(x, T) -> jax.Array:
    r"""Log-density of the prior on the plane :math:`t = T`:
    :math:`\log\big(c_d\,T\,(\|x\|^2 + T^2)^{-(d+1)/2}\big)`, i.e. :math:`p_T(x \mid 0)`.

    Args:
      x: ``(B, d)``; T: > 0.

    Returns:
      ``(B,)``, in ``x``'s dtype (computed in at least float32).

    Raises:
      TypeError, ValueError: a bad ``x`` (rank, dtype, NaN/inf) or ``T`` (not finite, ≤ 0).
    """
    x, dtype = float_input(x, "x", ndim=2)
    T = _check_T(T)
    d = x.shape[-1]
    if d < 1:
        raise ValueError(f"x must have shape (B, d) with d ≥ 1; got {x.shape}")
    T = jnp.asarray(T, x.dtype)
    log_p = (log_normaliser(d) + jnp.log(T)
             - 0.5 * (d + 1) * jnp.log(jnp.sum(x * x, axis=-1) + T * T))
    return saturating_cast(log_p, dtype)


def prior_radial_density(r, dim: int, T) -> jax.Array:
    r"""Density of :math:`r = \|x\|` under the prior:
    :math:`p(r) = \frac{2T}{B(d/2, 1/2)}\,\frac{r^{d-1}}{(r^2 + T^2)^{(d+1)/2}}`.

    Args:
      r: radii (any shape), ≥ 0; dim: :math:`d` ≥ 1; T: > 0.

    Returns:
      Densities shaped like ``r``, in its dtype (computed in at least float32).
    """
    dim = dimension(dim)
    T = _check_T(T)
    r, dtype = float_input(r, "r")
    _checks.check_real(r, "r", low=0.0, scalar=False)
    log_beta = math.lgamma(dim / 2) + math.lgamma(0.5) - math.lgamma((dim + 1) / 2)
    T = jnp.asarray(T, r.dtype)
    log_r = jnp.log(r) if dim > 1 else jnp.zeros_like(r)  # r^0 = 1, also at r = 0
    density = jnp.exp(math.log(2.0) + jnp.log(T) - log_beta + (dim - 1) * log_r
                      - 0.5 * (dim + 1) * jnp.log(r * r + T * T))
    return saturating_cast(density, dtype)


@functools.lru_cache(maxsize=64)
def _polar_angle_table(dim: int, size: int = 8193) -> tuple[np.ndarray, np.ndarray]:
    # θ = arctan(r/T) has density ∝ sin^{d-1}θ on [0, π/2]: the polar angle of a uniform
    # point on the hemisphere. Tabulate its CDF once (float64, trapezoid in the log domain).
    theta = np.linspace(0.0, 0.5 * np.pi, size)
    log_pdf = (dim - 1) * np.log(np.maximum(np.sin(theta), 1e-300))
    pdf = np.exp(log_pdf - log_pdf.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]))])
    return cdf / cdf[-1], theta


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

    The direction is uniform on :math:`S^{d-1}` in every case. The draws are made in at least
    float32 and cast to ``dtype`` at the end; a point beyond a half-precision range (the
    prior's tail is heavy) is scaled back onto it along its direction rather than becoming
    ``inf``.

    Args:
      num: number of points (≥ 1); dim: :math:`d` (≥ 1); T: the plane's height (> 0).
      key: PRNG key.
      method: one of ``PRIOR_METHODS``.
      dtype: float dtype of the result.

    Returns:
      ``(num, dim)``.

    Raises:
      TypeError: a non-integer ``num``/``dim``, a bad ``key``, or a non-float ``dtype``.
      ValueError: ``T ≤ 0`` or not finite, ``dim < 1``, ``num < 1``, ``num`` too large for
        memory, or an unknown ``method``.
    """
    dim = dimension(dim)
    T = _check_T(T)
    _checks.check_key(key)
    _checks.check_choice(method, "method", PRIOR_METHODS)
    dtype = float_dtype(dtype)
    num = sample_count(num, dim, dtype)
    work = jnp.result_type(dtype, jnp.float32)
    key_r, key_u = jax.random.split(key)
    if method == "ratio":
        # The Cauchy draw splits ``key`` itself, into the same two keys as the other methods.
        return saturating_cast(multivariate_cauchy(key, num, dim, scale=T, dtype=work), dtype,
                               axis=1)
    if method == "beta":
        # Draw 1 - B ~ Beta(1/2, d/2) rather than B ~ Beta(d/2, 1/2): near B = 1, where r is
        # large, 1 - B in floating point would round to 0 and give r = inf.
        one_minus_b = jax.random.beta(key_r, 0.5, dim / 2, (num,), work)
        r = T * jnp.sqrt((1 - one_minus_b) / one_minus_b)
    else:
        cdf, theta = _polar_angle_table(dim)
        u = jax.random.uniform(key_r, (num,), jnp.float32)
        angle = jnp.interp(u, jnp.asarray(cdf, jnp.float32), jnp.asarray(theta, jnp.float32))
        r = (T * jnp.tan(angle)).astype(work)
    return saturating_cast(r[:, None] * uniform_on_sphere(key_u, num, dim, dtype=work), dtype,
                           axis=1)


# -------------------------------------------------------- the exact conditional p_t(x_t|x_0)


def conditional_log_density(x_t, t, x0) -> jax.Array:
    r"""Log of the exact gravity conditional (the Green's function's first component):

    .. math:: p_t(x_t\mid x_0) = c_d\,\frac{t}{(t^2 + \|x_t - x_0\|^2)^{(d+1)/2}}

    Args:
      x_t, x0: ``(B, d)``; t: scalar or ``(B,)``, > 0.

    Returns:
      ``(B,)``, in the inputs' dtype (computed in at least float32).

    Raises:
      TypeError, ValueError: a bad array (dtype, rank, NaN/inf), different shapes, ``t ≤ 0``.
    """
    x_t, x0, dtype = _same_points(x_t, x0, names=("x_t", "x0"))
    t = positive_time(t, x_t.shape[0], x_t.dtype, of="x_t")
    d = x_t.shape[1]
    diff = x_t - x0
    log_r_sq = log_radius_sq(jnp.sum(diff * diff, axis=1)[:, None], t)[:, 0]
    return saturating_cast(log_normaliser(d) + jnp.log(t) - 0.5 * (d + 1) * log_r_sq, dtype)


def _same_points(a, b, *, names):
    dtype = input_dtype(a, b)
    a = _checks.float_array(a, names[0], ndim=2, allow_empty=True)
    b = _checks.float_array(b, names[1], ndim=2, allow_empty=True)
    _checks.same_shape(a, b, names=names)
    if a.shape[1] < 1:
        raise ValueError(f"{names[0]} must have shape (B, d) with d ≥ 1; got {a.shape}")
    work = jnp.result_type(a.dtype, b.dtype)
    return a.astype(work), b.astype(work), dtype


def _conditional_sample(x0, t, key) -> jax.Array:
    return x0 + t[:, None] * multivariate_cauchy(key, *x0.shape, dtype=x0.dtype)


def conditional_sample(x0, t, *, key) -> jax.Array:
    r"""Exact draws from :math:`p_t(x_t\mid x_0)`: :math:`x_t = x_0 + t\,z` with
    :math:`z = g/|s|` standard multivariate Cauchy (:math:`g\sim\mathcal N(0, I_d)`,
    :math:`s\sim\mathcal N(0, 1)`), since :math:`p(z)\propto(1+\|z\|^2)^{-(d+1)/2}`.

    Args:
      x0: ``(B, d)`` data points.
      t: scalar or ``(B,)``, > 0.
      key: PRNG key.

    Returns:
      ``(B, d)``, in ``x0``'s dtype (drawn in at least float32; a draw beyond a
      half-precision range is scaled back onto it along its direction).

    Raises:
      TypeError, ValueError: a bad ``x0`` (rank, dtype, NaN/inf), ``t ≤ 0``, a bad ``key``.
    """
    x0, dtype = float_input(x0, "x0", ndim=2)
    t = positive_time(t, x0.shape[0], x0.dtype, of="x0")
    _checks.check_key(key)
    return saturating_cast(_conditional_sample(x0, t, key), dtype, axis=1)


# ----------------------------------------------------------------------- training targets


def conditional_target(x0, t, *, key) -> tuple[jax.Array, jax.Array]:
    r"""The unbiased conditional target: a joint draw :math:`(x_t, z)` with
    :math:`x_t = x_0 + t z`, :math:`z` multivariate Cauchy, and regression target
    :math:`z = (x_t - x_0)/t`, whose conditional mean given :math:`x_t` is :math:`F_x/F_t`.

    Args, Raises: as :func:`conditional_sample`.

    Returns:
      ``(x_t, z)``, both ``(B, d)`` in ``x0``'s dtype.
    """
    x0, dtype = float_input(x0, "x0", ndim=2)
    t = positive_time(t, x0.shape[0], x0.dtype, of="x0")
    _checks.check_key(key)
    x_t = _conditional_sample(x0, t, key)
    z = (x_t - x0) / t[:, None]
    return saturating_cast(x_t, dtype, axis=1), saturating_cast(z, dtype, axis=1)


def conditional_loss(prediction, x_t, t, x0) -> jax.Array:
    r"""Per-example unbiased gravity loss :math:`\|v_\theta(x_t,t) - (x_t - x_0)/t\|^2`.

    Its minimiser is :math:`\mathbb E[(x_t-x_0)/t\mid x_t] = F_x/F_t`.

    Args:
      prediction, x_t, x0: ``(B, d)`` each; t: scalar or ``(B,)``, > 0.

    Returns:
      ``(B,)``, in the inputs' dtype (computed in at least float32).

    Raises:
      TypeError, ValueError: a bad array, different shapes, ``t ≤ 0``.
    """
    dtype = input_dtype(prediction, x_t, x0)
    prediction = _checks.float_array(prediction, "prediction", ndim=2, allow_empty=True)
    x_t, x0, _ = _same_points(x_t, x0, names=("x_t", "x0"))
    _checks.same_shape(prediction, x_t, names=("prediction", "x_t"))
    work = jnp.result_type(prediction.dtype, x_t.dtype)
    t = positive_time(t, x_t.shape[0], work, of="x_t")
    residual = prediction.astype(work) - (x_t - x0).astype(work) / t[:, None]
    return saturating_cast(jnp.sum(residual * residual, axis=1), dtype)


def pfgm_perturb(x0, *, key, sigma: float = 0.01, tau: float = 0.03,
                 max_exponent: float = 291.0) -> tuple[jax.Array, jax.Array]:
    r"""PFGM's training points: :math:`x = x_0 + \|\varepsilon_x\|(1+\tau)^m u`,
    :math:`t = |\varepsilon_t|(1+\tau)^m`, :math:`(\varepsilon_x,\varepsilon_t)\sim\mathcal N(0,
    \sigma^2 I_{d+1})`, :math:`m\sim U[0, M]`, :math:`u` uniform on :math:`S^{d-1}`.

    Marginally :math:`x - x_0 = t z` with :math:`z` multivariate Cauchy, as in
    :func:`conditional_sample`; conditionally on :math:`t` it is not (``t`` and ``z`` share
    :math:`|\varepsilon_t|`), which is harmless for :func:`pfgm_target`.

    Args:
      x0: ``(B, d)``; key: PRNG key; sigma: > 0; tau: > 0; max_exponent: :math:`M \ge 0`,
        with :math:`\sigma(1+\tau)^M` finite in float32.

    Returns:
      ``(x, t)`` of shapes ``(B, d)`` and ``(B,)``, in ``x0``'s dtype.

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    x0, dtype = float_input(x0, "x0", ndim=2)
    _checks.check_key(key)
    sigma = _checks.check_real(sigma, "sigma", low=0.0, low_open=True)
    tau = _checks.check_real(tau, "tau", low=0.0, low_open=True)
    max_exponent = _checks.check_real(max_exponent, "max_exponent", low=0.0)
    if all(_checks.concrete(v) is not None for v in (sigma, tau, max_exponent)):
        if math.log(sigma) + max_exponent * math.log1p(tau) > math.log(np.finfo(np.float32).max):
            raise ValueError(f"max_exponent must keep sigma·(1+tau)^max_exponent finite in "
                             f"float32; got sigma={sigma}, tau={tau}, max_exponent={max_exponent}")
    b, d = x0.shape
    k_e, k_m, k_u = jax.random.split(key, 3)
    eps = sigma * jax.random.normal(k_e, (b, d + 1), x0.dtype)
    scale = (1 + tau) ** jax.random.uniform(k_m, (b,), x0.dtype, 0.0, max_exponent)
    radius = jnp.linalg.norm(eps[:, :d], axis=1) * scale
    x = x0 + radius[:, None] * uniform_on_sphere(k_u, b, d, dtype=x0.dtype)
    return saturating_cast(x, dtype, axis=1), saturating_cast(jnp.abs(eps[:, d]) * scale, dtype)


def _pfgm_target(x, t, batch, gamma) -> jax.Array:
    sums = _gravity_sums(x, t, batch, 512)
    e_x = -sums.displacement / sums.weight[:, None]
    e = jnp.concatenate([e_x, -t[:, None]], axis=1)
    norm = jnp.linalg.norm(e, axis=1, keepdims=True)
    return math.sqrt(x.shape[1] + 1) * e / (norm + gamma)


def pfgm_target(x, t, batch, *, gamma: float = 1e-3) -> jax.Array:
    r"""PFGM's normalised batch-field target in :math:`\mathbb R^{d+1}`:

    .. math:: \sqrt{d+1}\,\frac{E}{\|E\| + \gamma},\qquad
              E = -\sum_i w_i\,(x - y_i,\ t),\quad w_i\propto R_i^{-(d+1)},\ \sum_i w_i = 1,

    with the :math:`y_i` the batch's data points. It points along the batch's exact field,
    with unit scale; the ratio of batch estimates makes it a biased estimate of the
    normalised population field, hence PFGM's large batches.

    Args:
      x: ``(B, d)``; t: ``(B,)`` or scalar, > 0; batch: ``(N, d)``.
      gamma: ≥ 0; keeps the normalisation finite where :math:`E \approx 0`.

    Returns:
      ``(B, d + 1)``, the ``t`` component last, in the inputs' dtype.

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    x, batch, dtype = points(x, batch, names=("x", "batch"))
    t = positive_time(t, x.shape[0], x.dtype, of="x")
    gamma = _checks.check_real(gamma, "gamma", low=0.0)
    return saturating_cast(_pfgm_target(x, t, batch, gamma), dtype)


def pfgm_loss(prediction, x, t, batch, *, gamma: float = 1e-3) -> jax.Array:
    r"""Per-example PFGM loss :math:`\|s_\theta(x, t) - \text{target}\|^2` (prediction
    ``(B, d+1)``); the learned velocity is :math:`s_x / s_t`.

    Returns:
      ``(B,)``, in the inputs' dtype.

    Raises:
      TypeError, ValueError: naming the bad argument (``prediction`` must be ``(B, d + 1)``).
    """
    dtype = input_dtype(prediction, x, batch)
    prediction = _checks.float_array(prediction, "prediction", ndim=2, allow_empty=True)
    x, batch, _ = points(x, batch, names=("x", "batch"))
    t = positive_time(t, x.shape[0], x.dtype, of="x")
    gamma = _checks.check_real(gamma, "gamma", low=0.0)
    target = _pfgm_target(x, t, batch, gamma)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction must have shape {target.shape} (B, d + 1); got "
                         f"{prediction.shape}")
    residual = prediction.astype(target.dtype) - target
    return saturating_cast(jnp.sum(residual * residual, axis=1), dtype)
