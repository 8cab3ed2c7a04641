r"""Sample-based distances between distributions: sliced W2, MMD, energy distance, FD-digits.

All take two sample sets ``x (N, D)`` and ``y (M, D)``, are jit-compatible where they
are pure JAX (their bodies are jitted, so repeated calls at one shape compile once), and
are zero (sliced W2, MMD, energy distance) when the two sets are identical. Pairwise sums
are accumulated in row blocks so memory stays O(block · M). Inputs are checked (JAX or
NumPy arrays of floats or integers, shapes, at least 2 samples, finite values while not
traced; each error names the argument) and computed in at least float32.
``feature_checksum`` is re-exported from ``fd_digits``.

``quality(samples, reference, domain=...)`` is the one sample-quality entry point of the
experiments: FD-digits on the digits, sliced W2 on 2-D toys (``quality_metric`` names it).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import _checks
from diffusionlab.fd_digits import digit_features, feature_checksum

__all__ = ["QUALITY_METRICS", "energy_distance", "fd_digits", "feature_checksum",
           "frechet_distance", "mmd", "quality", "quality_metric", "sliced_wasserstein"]


def _check_samples(a, arg: str, columns: str = "D") -> jax.Array:
    """``a`` as a finite real ``(N, D)`` float array (integers converted), N ≥ 2, D ≥ 1."""
    a = _checks.float_array(a, arg, ndim=2, allow_empty=True, allow_int=True,
                            layout=f"(N, {columns})")
    if a.shape[0] < 2 or a.shape[1] < 1:
        raise ValueError(f"{arg} must have shape (N, {columns}) with N ≥ 2 samples and "
                         f"{columns} ≥ 1; got {a.shape}")
    return a


def _check_pair(x, y) -> tuple[jax.Array, jax.Array]:
    """Validates two sample sets and casts them to a common float dtype of at least float32.

    Half-precision (and integer) inputs are computed in float32: pairwise sums over
    thousands of terms lose all their digits in float16.
    """
    x, y = _check_samples(x, "x"), _check_samples(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have shapes (N, D) and (M, D) with the same D, "
                         f"got {x.shape} and {y.shape}")
    dtype = jnp.promote_types(jnp.result_type(x, y), jnp.float32)
    return x.astype(dtype), y.astype(dtype)


def _center_and_scale(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Moves the pooled mean to 0 and divides by the pooled RMS radius ``s`` (1 if it is 0).

    The pairwise distances below use ``|a|² + |b|² - 2a·b``, which cancels catastrophically
    when the data sit far from the origin; centring removes that, and the common scale
    makes fixed shifts such as energy distance's 1e-12 relative to the data.
    """
    pooled = jnp.concatenate([x, y])
    center = jnp.mean(pooled, axis=0, keepdims=True)
    radius = jnp.sqrt(jnp.mean(jnp.sum((pooled - center) ** 2, axis=1)))
    radius = jnp.where(radius > 0, radius, 1.0)  # every point equal: nothing to scale
    return (x - center) / radius, (y - center) / radius, radius


def _quantiles(v: jax.Array, n: int) -> jax.Array:
    """Empirical quantiles of ``v`` (sorted along axis 0) at the ``n`` mid-points (i+½)/n."""
    v = jnp.sort(v, axis=0)
    if v.shape[0] == n:
        return v
    grid = (jnp.arange(n) + 0.5) / n * v.shape[0] - 0.5
    return jax.vmap(lambda col: jnp.interp(grid, jnp.arange(v.shape[0]), col), 1, 1)(v)


def sliced_wasserstein(x, y, *, key: jax.Array, num_projections: int = 256) -> jax.Array:
    r"""Sliced 2-Wasserstein distance (not squared).

    .. math:: SW_2(x, y) = \Big(\mathbb{E}_{\theta\sim U(S^{D-1})}
              W_2^2(\theta^\top x, \theta^\top y)\Big)^{1/2}

    Each 1-D :math:`W_2` compares sorted projections (quantile functions; sets of
    different sizes are compared at common quantile levels). Ties and constant sets need
    no care: sorting handles them.

    Args:
      x, y: samples ``(N, D)`` and ``(M, D)``, N, M ≥ 2; computed in at least float32.
      key: the key of the random projection directions.
      num_projections: how many directions θ to average over (an int ≥ 1).

    Returns:
      A non-negative scalar, 0 when the two sets are equal.

    Raises:
      ValueError: on shapes other than ``(N, D)``, ``(M, D)`` with N, M ≥ 2 and D ≥ 1, on
        non-finite samples, on ``num_projections < 1``, or on a ``num_projections`` whose
        projections would not fit in memory.
      TypeError: on samples that are not real JAX or NumPy arrays (None, lists, bool or
        complex arrays; integer arrays are converted), a ``key`` that is not a PRNG key, or
        a non-integer ``num_projections``.
    """
    x, y = _check_pair(x, y)
    key = _checks.check_key(key)
    num_projections = _checks.check_int(num_projections, "num_projections", low=1)
    # The projections of both sets, sorted and interpolated to common quantile levels.
    rows = x.shape[1] + 2 * (x.shape[0] + y.shape[0]) + 2 * max(x.shape[0], y.shape[0])
    _checks.check_fits_memory("num_projections", float(rows) * num_projections * x.dtype.itemsize,
                              "the projected samples")
    return _sliced_wasserstein(x, y, key, num_projections)


@functools.partial(jax.jit, static_argnums=3)
def _sliced_wasserstein(x: jax.Array, y: jax.Array, key: jax.Array, num_projections: int) -> jax.Array:
    theta = jax.random.normal(key, (x.shape[1], num_projections), x.dtype)
    theta = theta / jnp.linalg.norm(theta, axis=0, keepdims=True)
    n = max(x.shape[0], y.shape[0])
    qx, qy = _quantiles(x @ theta, n), _quantiles(y @ theta, n)
    return jnp.sqrt(jnp.mean((qx - qy) ** 2))


def _pairwise_mean(fn, a: jax.Array, b: jax.Array, block: int = 1024) -> jax.Array:
    """Mean of ``fn(squared distance)`` over all pairs (a_i, b_j), computed in row blocks."""
    pad = (-a.shape[0]) % block if a.shape[0] > block else 0
    rows = a.shape[0] + pad
    size = min(block, rows)
    a_blocks = jnp.pad(a, ((0, pad), (0, 0))).reshape(rows // size, size, a.shape[1])
    valid = (jnp.arange(rows) < a.shape[0]).reshape(rows // size, size)
    b_sq = jnp.sum(b**2, axis=1)

    def block_sum(args):
        a_blk, mask = args
        d2 = jnp.sum(a_blk**2, 1)[:, None] + b_sq[None, :] - 2 * a_blk @ b.T
        return jnp.sum(jnp.where(mask[:, None], fn(jnp.maximum(d2, 0.0)), 0.0))

    return jnp.sum(jax.lax.map(block_sum, (a_blocks, valid))) / (a.shape[0] * b.shape[0])


def _median_positive_distance(points: jax.Array) -> jax.Array:
    """Median of the positive pairwise distances; 0 when every point is the same."""
    # Exact differences, not the |a|²+|b|²-2a·b expansion: ties must come out as exact zeros.
    d2 = jax.lax.map(lambda p: jnp.sum((points - p[None]) ** 2, axis=1), points, batch_size=64)
    upper = d2[jnp.triu_indices(points.shape[0], 1)]
    median = jnp.sqrt(jnp.nanmedian(jnp.where(upper > 0, upper, jnp.nan)))
    return jnp.where(jnp.isnan(median), 0.0, median)


def _check_bandwidths(bandwidths) -> jax.Array:
    try:
        h = jnp.asarray(bandwidths)
    except TypeError as error:
        raise TypeError(f"mmd: bandwidths must be positive reals, got {type(bandwidths).__name__}") from error
    if not (jnp.issubdtype(h.dtype, jnp.integer) or jnp.issubdtype(h.dtype, jnp.floating)):
        raise TypeError(f"mmd: bandwidths must be positive reals, got dtype {h.dtype}")
    if h.ndim > 1 or h.size == 0:
        raise ValueError(f"mmd: bandwidths must be a scalar or a non-empty 1-D array, got shape {h.shape}")
    h = jnp.atleast_1d(h).astype(jnp.promote_types(h.dtype, jnp.float32))
    try:
        valid = bool(jnp.all((h > 0) & jnp.isfinite(h)))
    except jax.errors.ConcretizationTypeError:
        valid = True  # traced under jit: the values are not known yet
    if not valid:
        raise ValueError(f"mmd: bandwidths must be positive and finite, got {bandwidths}")
    return h


def mmd(x, y, *, bandwidths=None) -> jax.Array:
    r"""Squared maximum mean discrepancy with a sum of RBF kernels (biased V-statistic).

    .. math:: \mathrm{MMD}^2 = \overline{k(x,x')} + \overline{k(y,y')} - 2\,\overline{k(x,y)},
              \quad k(a,b) = \sum_h e^{-\|a-b\|^2/(2h^2)}

    Args:
      x, y: samples ``(N, D)`` and ``(M, D)``, N, M ≥ 2; computed in at least float32.
      bandwidths: the kernel widths ``h`` (a positive scalar or 1-D array); default: the
        median of the *positive* pairwise distances of the pooled sample (at most 512 of
        each set) times (¼, ½, 1, 2, 4). Ties are left out of the median because tied
        data (equal sets, Bernoulli samples) would make it 0 and every kernel 0/0; it is
        floored at 1e-3 of the pooled RMS radius, so it stays positive even when all
        points coincide (where every width gives 0).

    Returns:
      A non-negative scalar, 0 when the two sets are equal.

    Raises:
      ValueError: on shapes other than ``(N, D)``, ``(M, D)`` with N, M ≥ 2 and D ≥ 1, on
        non-finite samples, or on bandwidths that are empty, not 0-D/1-D, or not positive
        and finite.
      TypeError: on samples that are not real JAX or NumPy arrays (None, lists, bool or
        complex arrays; integer arrays are converted), or on non-real bandwidths.
    """
    x, y = _check_pair(x, y)
    return _mmd(x, y, None if bandwidths is None else _check_bandwidths(bandwidths))


@jax.jit
def _mmd(x: jax.Array, y: jax.Array, bandwidths: jax.Array | None) -> jax.Array:
    # MMD with widths h on data x is MMD with widths h / s on the centred data x / s.
    x, y, radius = _center_and_scale(x, y)
    if bandwidths is None:
        h = _median_positive_distance(jnp.concatenate([x[:512], y[:512]]))
        h = jnp.maximum(h, 1e-3) * jnp.array([0.25, 0.5, 1.0, 2.0, 4.0], x.dtype)
    else:
        h = bandwidths.astype(x.dtype) / radius

    def kernel(d2):
        return jnp.sum(jnp.exp(-d2[..., None] / (2 * h**2)[None, None, :]), -1)

    value = _pairwise_mean(kernel, x, x) + _pairwise_mean(kernel, y, y) - 2 * _pairwise_mean(kernel, x, y)
    return jnp.maximum(value, 0.0)


def energy_distance(x, y) -> jax.Array:
    r"""Energy distance :math:`2\,\overline{\|x-y\|} - \overline{\|x-x'\|} - \overline{\|y-y'\|}`.

    A V-statistic: non-negative, 0 for identical sets, and a metric on distributions
    with finite first moment (Székely & Rizzo). It is computed on the centred data in units
    of their pooled RMS radius ``s`` and multiplied back by ``s`` (it is homogeneous of
    degree 1), so the constant set needs no special case and the result is scale-free.

    Args:
      x, y: samples ``(N, D)`` and ``(M, D)``, N, M ≥ 2; computed in at least float32.

    Returns:
      A non-negative scalar.

    Raises:
      ValueError: on shapes other than ``(N, D)``, ``(M, D)`` with N, M ≥ 2 and D ≥ 1, or
        on non-finite samples.
      TypeError: on samples that are not real JAX or NumPy arrays (None, lists, bool or
        complex arrays; integer arrays are converted).
    """
    x, y = _check_pair(x, y)
    return _energy_distance(x, y)


@jax.jit
def _energy_distance(x: jax.Array, y: jax.Array) -> jax.Array:
    x, y, radius = _center_and_scale(x, y)

    def norm(d2):
        # sqrt has an infinite derivative at 0; the tiny shift (relative to the unit radius)
        # keeps gradients finite.
        return jnp.sqrt(d2 + 1e-12) - 1e-6

    value = 2 * _pairwise_mean(norm, x, y) - _pairwise_mean(norm, x, x) - _pairwise_mean(norm, y, y)
    return radius * jnp.maximum(value, 0.0)


def _check_features(features, arg: str) -> np.ndarray:
    """Host-side features: an array or a (nested) list of reals, as float64 ``(N, F)``."""
    if isinstance(features, (list, tuple)):
        try:
            features = np.asarray(features)
        except ValueError:  # ragged rows
            raise TypeError(f"{arg} must be an (N, F) array of real numbers; got a ragged "
                            f"{type(features).__name__}") from None
    if isinstance(features, np.ndarray) and np.issubdtype(features.dtype, np.integer):
        features = features.astype(np.float64)  # exact, unlike float32
    return np.asarray(_check_samples(features, arg, "F"), np.float64)


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(cov_a)
    sqrt_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
    trace_sqrt = np.sum(np.sqrt(np.clip(middle, 0, None)))
    value = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt
    return float(max(value, 0.0))  # rounding can leave -1e-11 for identical sets


def frechet_distance(features_a, features_b) -> float:
    r"""Fréchet distance between Gaussians fitted to two feature sets (float64, NumPy).

    .. math:: \|\mu_a-\mu_b\|^2 + \operatorname{Tr}\big(\Sigma_a+\Sigma_b
              - 2(\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2})^{1/2}\big)

    The matrix square root is taken through symmetric eigendecompositions, which is exact
    for positive semi-definite covariances and avoids the complex parts ``sqrtm`` produces.
    The eigensolvers round: a set against itself gives about ``F · eps · Tr Σ``, not 0.

    Args:
      features_a, features_b: ``(N, F)`` and ``(M, F)`` real features, N, M ≥ 2, F ≥ 1:
        JAX or NumPy arrays of floats or integers, or nested lists of them (computed on the
        host in float64).

    Returns:
      A non-negative float.

    Raises:
      ValueError: on other shapes, different ``F``, or non-finite features.
      TypeError: on None, ragged lists, or bool, complex or non-numeric features.
    """
    a, b = _check_features(features_a, "features_a"), _check_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features_a and features_b must have the same F, "
                         f"got {a.shape} and {b.shape}")
    return _frechet(a, b)


def fd_digits(images_a, images_b) -> float:
    """FD-digits: the Fréchet distance in the feature space of a small digits classifier.

    Our stand-in for FID on 8×8 digits. The classifier (see ``diffusionlab.fd_digits``) is
    trained deterministically in float64 and cached on disk, so values are comparable
    across runs, experiments and machines; ``feature_checksum()`` names the network, for
    reports.

    Args:
      images_a, images_b: float images ``(N, 8, 8, 1)``, ``(N, 8, 8)`` or ``(N, 64)`` in
        [-1, 1], N ≥ 2 (JAX or NumPy arrays; the two sets may differ in size and layout).

    Returns:
      A non-negative float.

    Raises:
      ValueError: on other shapes, fewer than 2 images, or NaN/inf pixels (or pixels so
        large that the features overflow).
      TypeError: on None, lists, or integer, bool or complex images (integer pixel levels
        must first be mapped to [-1, 1]).
    """
    features = [_digit_features(images_a, "images_a"), _digit_features(images_b, "images_b")]
    return _frechet(*features)


_IMAGE_SHAPES = ((8, 8, 1), (8, 8), (64,))


def _digit_features(images, arg: str) -> np.ndarray:
    images = _checks.float_array(images, arg, allow_empty=True)
    if images.ndim < 2 or images.shape[1:] not in _IMAGE_SHAPES or images.shape[0] < 2:
        raise ValueError(f"{arg} must have shape (N, 8, 8, 1), (N, 8, 8) or (N, 64) with "
                         f"N ≥ 2; got {images.shape}")
    features = digit_features(images)
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{arg} gives non-finite classifier features: its pixels must lie "
                         "in [-1, 1]")
    return features


# The sample-quality metric of each data domain (see ``diffusionlab.data.domain``).
QUALITY_METRICS = {"digits": "FD-digits", "toy": "sliced W2"}


def quality_metric(domain: str) -> str:
    """The name of the sample-quality metric :func:`quality` uses for ``domain``.

    Raises:
      ValueError: ``domain`` not ``"digits"`` or ``"toy"`` (TypeError for a non-string).
    """
    return QUALITY_METRICS[_checks.check_choice(domain, "domain", tuple(QUALITY_METRICS))]


def quality(samples, reference, *, domain: str, key: jax.Array | None = None) -> float:
    """Sample quality against held-out ``reference`` examples, in the metric of ``domain``
    (lower is better).

    * ``"digits"``: :func:`fd_digits`, with ``samples`` clipped to [-1, 1] first (a model's
      pixels may overshoot the data range; the classifier features are only meaningful inside
      it) and both sets laid out as ``(N, 8, 8, 1)`` images; ``key`` is unused.
    * ``"toy"``: :func:`sliced_wasserstein` (not squared) with its default 256 projections,
      drawn at ``key``.

    Args:
      samples: ``(N, ...)`` generated examples: digits as float images ``(N, 8, 8, 1)``,
        ``(N, 8, 8)`` or ``(N, 64)`` (integer grey-level tokens must first be drawn as images,
        ``data.tokens_to_images``), or toy points ``(N, D)``; N ≥ 2.
      reference: ``(M, ...)`` held-out examples in the same layout, M ≥ 2 (not clipped).
      domain: ``"digits"`` or ``"toy"``, e.g. ``data.domain(name)``.
      key: a PRNG key; required for ``"toy"``.

    Returns:
      A non-negative float.

    Raises:
      ValueError: an unknown ``domain``, or samples the metric rejects (shapes, fewer than 2,
        NaN/inf).
      TypeError: a ``"toy"`` call without a PRNG key, or inputs the metric rejects (integer
        digit images, non-arrays).
    """
    if quality_metric(domain) == "FD-digits":
        return fd_digits(np.clip(np.asarray(samples), -1, 1).reshape(-1, 8, 8, 1),
                         np.asarray(reference).reshape(-1, 8, 8, 1))
    return float(sliced_wasserstein(samples, reference, key=key))
