r"""Where exact-field samples land: hits on training points and their uniformity.

With the empirical data distribution the exact marginal field reproduces that distribution,
so each sample lands on a training point, each point with probability :math:`1/N`. The hit
counts are then multinomial, and Pearson's statistic
:math:`\chi^2 = \sum_i (c_i - M/N)^2/(M/N)` is :math:`\chi^2_{N-1}` under uniformity.

Reference: 苏剑林, 《生成扩散模型漫谈（十三）：从万有引力到扩散模型》,
https://kexue.fm/archives/9305; the brief's memorisation caveat.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from diffusionlab import _checks, metrics
from diffusionlab.odes._checks import points
from diffusionlab.odes.pointmass import block_elements


class MemorisationFloor(NamedTuple):
    """Scores of a perfect memoriser: ``num`` training points drawn with replacement."""

    mean: float
    std: float
    scores: np.ndarray


class HitReport(NamedTuple):
    """Nearest training point of each sample, whether it is a hit, and the uniformity test."""

    nearest: np.ndarray
    distance: np.ndarray
    hit_fraction: float
    counts: np.ndarray
    chi_square: float
    dof: int
    p_value: float


@jax.jit
def _nearest(samples, data):
    # Direct differences, blockwise: |x|² + |y|² - 2 x·y in float32 cannot tell apart points
    # closer than ~3e-4 (at unit scale), which is where memorisation is decided.
    m, d = samples.shape
    n = data.shape[0]
    block = max(1, min(n, block_elements() // max(1, m * d)))
    num_blocks = -(-n // block)
    pad = num_blocks * block - n
    blocks = jnp.pad(data, ((0, pad), (0, 0))).reshape(num_blocks, block, d)
    ids = jnp.arange(num_blocks * block).reshape(num_blocks, block)

    def step(carry, blk):
        best, index = carry
        y_NxD, id_N = blk
        diff = samples[:, None, :] - y_NxD[None, :, :]
        dist_sq = jnp.where((id_N < n)[None, :], jnp.sum(diff * diff, axis=-1), jnp.inf)
        j = jnp.argmin(dist_sq, axis=1)
        candidate = jnp.take_along_axis(dist_sq, j[:, None], axis=1)[:, 0]
        better = candidate < best
        return (jnp.where(better, candidate, best), jnp.where(better, id_N[j], index)), None

    init = (jnp.full((m,), jnp.inf, samples.dtype), jnp.zeros((m,), jnp.int32))
    (_, index), _ = jax.lax.scan(step, init, (blocks, ids))
    return index, jnp.linalg.norm(samples - data[index], axis=1)


def hit_report(samples, data, *, tolerance: float) -> HitReport:
    """Assigns samples ``(M, d)`` to their nearest point of ``data`` ``(N, d)``; a hit is a
    distance below ``tolerance``. The χ² test uses the counts of hits only.

    Distances are computed from direct differences (exact for near coincidences) in at
    least float32. No samples (``M = 0``) give empty arrays, a hit fraction of 0 and a NaN
    test.

    Raises:
      TypeError, ValueError: naming the bad argument (shapes, dtypes, NaN/inf, no data,
        ``tolerance`` not finite and > 0).
    """
    samples, data, _ = points(samples, data, names=("samples", "data"))
    tolerance = _checks.check_real(tolerance, "tolerance", low=0.0, low_open=True)
    index, dist = map(np.asarray, _nearest(samples, data))
    hit = dist < tolerance
    counts = np.bincount(index[hit], minlength=data.shape[0])
    total = counts.sum()
    if total == 0:
        return HitReport(index, dist, 0.0, counts, float("nan"), data.shape[0] - 1, float("nan"))
    expected = total / data.shape[0]
    chi2 = float(np.sum((counts - expected) ** 2) / expected)
    dof = data.shape[0] - 1
    return HitReport(index, dist, float(hit.mean()), counts, chi2, dof,
                     float(scipy.stats.chi2.sf(chi2, dof)))


def memorisation_floor(data, reference, num: int, *, domain: str, key, metric_key=None,
                       resamples: int = 20) -> MemorisationFloor:
    """The quality score of a sampler that reproduces the empirical distribution of ``data``
    exactly: ``num`` points drawn uniformly with replacement from ``data``, scored against
    ``reference`` by :func:`diffusionlab.metrics.quality`, over ``resamples`` independent
    draws.

    An exact-field sampler memorises (each sample lands on a training point, each with
    probability 1/N), so its score from one prior draw is one such draw up to the solver's
    error: compare it with ``mean`` in units of ``std``, not with the score of a fixed
    subset of the training set. Every resample is scored at ``metric_key`` (the toy metric's
    projections), so pass the key the compared samples were scored at.

    Args:
      data: ``(N, ...)`` the training set, N ≥ 1, in the layout ``quality`` takes.
      reference: ``(M, ...)`` held-out examples, M ≥ 2.
      num: samples per draw (≥ 2), e.g. the sampler's sample count.
      domain: ``"digits"`` or ``"toy"``.
      key: the PRNG key of the draws.
      metric_key: the key passed to ``quality``; ``None``: a split of ``key``.
      resamples: the number of draws (≥ 2).

    Returns:
      :class:`MemorisationFloor` with the mean and (population) std of the scores and the
      ``(resamples,)`` scores.

    Raises:
      ValueError, TypeError: naming the bad argument (``num`` or ``resamples`` < 2, empty
        ``data``, or inputs ``quality`` rejects).
    """
    num = _checks.check_int(num, "num", low=2)
    resamples = _checks.check_int(resamples, "resamples", low=2)
    data = _checks.float_array(data, "data", allow_empty=True)
    if data.ndim < 2 or data.shape[0] < 1:
        raise ValueError(f"data must have shape (N, ...) with N ≥ 1 examples; got {data.shape}")
    reference = _checks.float_array(reference, "reference")
    if reference.ndim < 2:
        raise ValueError(f"reference must have shape (M, ...); got {reference.shape}")
    shape = reference.shape[1:]
    if data.shape[1:] != shape:
        raise ValueError(f"data's examples must have the reference's shape {shape}; got "
                         f"{data.shape[1:]}")
    k_draw, k_metric = jax.random.split(key)
    k_metric = k_metric if metric_key is None else metric_key
    index = np.asarray(jax.random.randint(k_draw, (resamples, num), 0, data.shape[0]))
    scores = np.array([metrics.quality(data[i], reference, domain=domain, key=k_metric)
                       for i in index])  # one metric call per replicate draw
    return MemorisationFloor(float(scores.mean()), float(scores.std()), scores)
