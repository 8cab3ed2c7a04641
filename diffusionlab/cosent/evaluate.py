r"""The essays' evaluation: Spearman correlation, and accuracy at a validation-tuned threshold.

* Spearman's $\rho$ between the model score (a cosine or a cross-encoder output) and the gold
  label over a whole split. It depends on the order only, like CoSENT.
* Accuracy on binary labels: a threshold $\theta$ is searched on the validation split and
  reused unchanged on test, for every method. As in the essays the search is Powell's method
  on $-\mathrm{acc}(\theta)$, with $\theta$ parameterised through $\tanh$ so it stays inside the
  score range (for cosines, $(-1, 1)$). Accuracy is piecewise constant in $\theta$, so Powell
  starts from the best of a grid of score quantiles rather than from 0.

Reference: 苏剑林, "CoSENT（二）", https://kexue.fm/archives/8860
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
import scipy.stats

from diffusionlab import _checks

__all__ = ["accuracy", "search_threshold", "spearman"]


def _pair(scores, labels, name="scores"):
    # Host-side metrics: Python lists of numbers are fine here.
    scores = np.asarray(scores) if isinstance(scores, (list, tuple)) else scores
    labels = np.asarray(labels) if isinstance(labels, (list, tuple)) else labels
    scores = np.asarray(_checks.float_array(scores, name, ndim=1, layout="(N,)", finite=False,
                                            allow_int=True), np.float64)
    labels = np.asarray(_checks.float_array(labels, "labels", ndim=1, layout="(N,)",
                                            finite=False, allow_int=True), np.float64)
    if scores.shape != labels.shape:
        raise ValueError(f"{name} and labels must have the same length, got {scores.shape[0]} "
                         f"and {labels.shape[0]}")
    if scores.size < 2:
        raise ValueError(f"{name} needs at least 2 entries, got {scores.size}")
    for what, values in ((name, scores), ("labels", labels)):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{what} must be finite; got {np.sum(~np.isfinite(values))} NaN/inf")
    return scores, labels


def spearman(scores, labels) -> float:
    """Spearman's rank correlation of ``scores`` with ``labels`` (0 when either is constant)."""
    scores, labels = _pair(scores, labels)
    if np.ptp(scores) == 0 or np.ptp(labels) == 0:
        return 0.0
    return float(scipy.stats.spearmanr(scores, labels).statistic)


def accuracy(scores, labels, threshold: float) -> float:
    """Fraction of pairs with ``(score > threshold) == label`` for binary 0/1 ``labels``."""
    scores, labels = _pair(scores, labels)
    _checks.check_real(threshold, "threshold")
    return float(np.mean((scores > threshold) == (labels > 0.5)))


def search_threshold(scores, labels, *, bounds: tuple[float, float] | None = None,
                     grid: int = 64) -> float:
    r"""The threshold that maximises accuracy on (validation) ``scores``, searched by Powell.

    $\theta = c + r\tanh(t)$ with $(c - r, c + r)$ = ``bounds``; Powell minimises
    $-\mathrm{acc}(\theta(t))$ from the best of ``grid`` quantiles of the scores.

    Args:
      scores: ``(N,)`` model scores.
      labels: ``(N,)`` binary 0/1 labels.
      bounds: the open interval the threshold lies in; default: the score range, widened
        slightly. Use ``(-1, 1)`` for cosines, as in the essays.
      grid: number of quantiles tried as starting points (>= 1).

    Returns:
      The threshold (a float).

    Raises:
      ValueError: mismatched lengths, fewer than 2 entries, non-finite values, ``grid < 1``,
        or empty ``bounds``.
    """
    scores, labels = _pair(scores, labels)
    grid = _checks.check_int(grid, "grid", low=1, high=10**6)
    if bounds is None:
        spread = max(np.ptp(scores), 1e-6)
        bounds = (scores.min() - 1e-3 * spread, scores.max() + 1e-3 * spread)
    low, high = map(float, bounds)
    if not high > low:
        raise ValueError(f"bounds must satisfy low < high, got {bounds}")
    centre, radius = (low + high) / 2, (high - low) / 2

    def to_threshold(t):
        return centre + radius * np.tanh(t)

    def negative_accuracy(t):
        return -accuracy(scores, labels, to_threshold(float(np.ravel(t)[0])))

    candidates = np.quantile(scores, (np.arange(grid) + 0.5) / grid)
    candidates = np.clip((candidates - centre) / radius, -1 + 1e-9, 1 - 1e-9)
    starts = np.arctanh(candidates)
    start = starts[int(np.argmin([negative_accuracy(t) for t in starts]))]
    result = scipy.optimize.minimize(negative_accuracy, x0=np.array([start]), method="Powell")
    best = result.x if result.fun <= negative_accuracy(start) else np.array([start])
    return float(to_threshold(float(np.ravel(best)[0])))
