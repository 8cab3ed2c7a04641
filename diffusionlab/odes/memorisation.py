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
    d2 = (jnp.sum(samples**2, 1)[:, None] + jnp.sum(data**2, 1)[None, :]
          - 2 * samples @ data.T)
    index = jnp.argmin(d2, axis=1)
    return index, jnp.linalg.norm(samples - data[index], axis=1)


def hit_report(samples, data, *, tolerance: float) -> HitReport:
    """Assigns samples ``(M, d)`` to their nearest point of ``data`` ``(N, d)``; a hit is a
    distance below ``tolerance``. The χ² test uses the counts of hits only."""
    index, dist = map(np.asarray, _nearest(jnp.asarray(samples), jnp.asarray(data)))
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
