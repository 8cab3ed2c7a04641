"""P_n(θ) for n = 2…10 over θ ∈ (0, 2π], with Monte Carlo in the disk on top.

Essay: 苏剑林, 《圆内随机n点在同一个圆心角为θ的扇形的概率》, https://kexue.fm/archives/9324
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import jax
import numpy as np
from scipy.stats import norm

from diffusionlab import stats
from diffusionlab.sector import FULL_TURN, probability, probability_exact, probability_mc
from diffusionlab.sector.plots import plot_curves

TITLE = "Sector probability: exact curves for n = 2…10 against Monte Carlo in the disk"
SOURCE = "圆内随机n点在同一个圆心角为θ的扇形的概率, https://kexue.fm/archives/9324"
# The solver's stated accuracy (absolute), for identities checked in float64.
SOLVER_TOLERANCE = 1e-12
# Family-wise false-alarm rate of the Monte Carlo check (Bonferroni over every (n, θ) point).
FAMILY_LEVEL = 0.01


def bonferroni_z(count: int, level: float = FAMILY_LEVEL) -> float:
    """|z| bound that ``count`` standard normals all stay under with probability ≥ 1 − level."""
    return float(norm.ppf(1 - level / (2 * count)))


def wendel(n: int) -> Fraction:
    """Wendel's probability that n symmetric points on the circle share a half-plane:
    2^{-n+1} Σ_{k<2} C(n−1, k) = n / 2^{n−1}."""
    return Fraction(sum(math.comb(n - 1, k) for k in range(2)), 2 ** (n - 1))


@dataclasses.dataclass(frozen=True)
class Config:
    n_values: tuple[int, ...] = tuple(range(2, 11))
    num_theta: int = 600
    num_mc_theta: int = 16
    num_samples: int = 200_000
    seed: int = 0

    @classmethod
    def quick(cls) -> Config:
        return cls(n_values=(2, 4, 10), num_theta=200, num_mc_theta=6, num_samples=4000)


def run(config: Config, out) -> None:
    theta = np.linspace(FULL_TURN / config.num_theta, FULL_TURN, config.num_theta)
    mc_theta = np.linspace(0.5, 6.2, config.num_mc_theta)
    with out.phase("evaluation"):
        curves = {n: probability(n, theta) for n in config.n_values}
    key = jax.random.key(config.seed)
    mc, rows, z_all = {}, [], []
    for n in config.n_values:
        with out.phase("sampling"):
            est, se = probability_mc(n, mc_theta, key=jax.random.fold_in(key, n),
                                     num_samples=config.num_samples)
        with out.phase("evaluation"):
            exact = probability(n, mc_theta)
            z = np.where(se > 0, (est - exact) / np.where(se > 0, se, 1), 0.0)
            mc[n] = (est, se)
            z_all.append(z)
            rows.append({"n": n, "max |MC - P|": float(np.max(np.abs(est - exact))),
                         "max |z|": float(np.max(np.abs(z))), "P(pi)": float(probability(n, np.pi)),
                         "P(pi) = n/2^(n-1)": n / 2 ** (n - 1),
                         "P = 1 from theta/pi": 2 * (1 - 1 / n)})
    marks = sorted({np.pi} | {FULL_TURN * (1 - 1 / k) for k in range(3, max(config.n_values) + 1)})
    out.figure(plot_curves(theta, curves, mc_theta=mc_theta, mc=mc, regime_marks=marks),
               "curves", caption="P_n(θ) for each n (lines), Monte Carlo with points drawn "
               f"uniformly in the disk ({config.num_samples} sets per point, ±2 SE), and the "
               "angles where the inclusion–exclusion sum gains a term (dotted).")
    out.table(rows, stem="monte_carlo", caption="Monte Carlo against the solver per n.")
    z_all = np.concatenate(z_all)
    worst_z = float(np.max(np.abs(z_all)))
    count = z_all.size
    z_bound = bonferroni_z(count)
    out.metric(max_abs_z=worst_z, num_mc_points=count, z_bound=z_bound)
    out.claim(f"Monte Carlo in the disk agrees with the formula: every |z| ≤ {z_bound:.2f}, the "
              f"Bonferroni bound at family-wise level {FAMILY_LEVEL:g} over the {count} (n, θ) "
              "points", source=SOURCE, expected="within sampling error",
              verdict=stats.within(z_all, 0.0, tolerance=z_bound),
              measured=f"max |z| = {worst_z:.2f} over {count} (n, θ) points",
              previous=worst_z < 4.5)

    pigeonhole = np.concatenate([p[theta >= FULL_TURN * (1 - 1 / n)] for n, p in curves.items()])
    out.claim("Pigeonhole: P = 1 for θ ≥ 2π(1 − 1/n) (every grid angle there, every n)",
              source=SOURCE, expected="exactly 1",
              verdict=stats.within(pigeonhole, 1.0, tolerance=0.0),
              measured=f"{pigeonhole.size} grid points; smallest value {pigeonhole.min():.17g}",
              previous=bool(np.all(pigeonhole == 1.0)))

    # θ ≤ π: only the k = 1 term survives. The float64 solver against the closed form on the
    # grid, and the exact rational sum at θ = π against Wendel's independent formula.
    half = theta <= np.pi
    closed_form = np.concatenate([
        np.abs(p[half] - n * (theta[half] / FULL_TURN) ** (n - 1)) for n, p in curves.items()])
    wendel_gap = np.array([float(probability_exact(n, Fraction(1, 2)) - wendel(n))
                           for n in config.n_values])
    out.claim("θ ≤ π: P = n(θ/2π)^(n−1); at θ = π Wendel's n/2^(n−1)", source=SOURCE,
              expected="n/2^(n-1)",
              verdict=stats.all_of(
                  stats.within(closed_form, 0.0, tolerance=SOLVER_TOLERANCE),
                  stats.within(wendel_gap, 0.0, tolerance=0.0),
                  names=[f"float64 solver within {SOLVER_TOLERANCE:g} of n(θ/2π)^(n−1) on "
                         f"{closed_form.size} grid points",
                         "exact rational P(π) equals Wendel's 2^(1−n)(C(n−1,0) + C(n−1,1))"],
                  claim=f"|solver − n(θ/2π)^(n−1)| ≤ {SOLVER_TOLERANCE:g} at every grid θ ≤ π, "
                        "and exact P(π) − Wendel = 0 for every n"),
              measured=f"max |solver − closed form| = {closed_form.max():.3g}; exact P(π) − "
                       f"Wendel: {np.abs(wendel_gap).max():.3g}",
              # The earlier "rule" was the constant True, not a rule on these numbers.
              previous=None)

    # Non-decreasing to the last bit (the solver clips and returns exact 1s): every decrease
    # between neighbouring grid angles must be exactly 0.
    decreases = np.concatenate([np.maximum(-np.diff(p), 0.0) for p in curves.values()])
    out.claim("P is non-decreasing in θ (to the last bit, on the grid)", source="geometry",
              expected="monotone", verdict=stats.within(decreases, 0.0, tolerance=0.0),
              measured=f"largest decrease between neighbouring grid angles {decreases.max():.3g}",
              previous=bool(np.all(decreases == 0)))
