"""Exact sector probabilities for n ≤ 8 at six angles, each with its Monte Carlo z-score.

Essay: 苏剑林, 《圆内随机n点在同一个圆心角为θ的扇形的概率》, https://kexue.fm/archives/9324
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import jax
import numpy as np
from scipy.stats import norm

from diffusionlab import stats
from diffusionlab.sector import FULL_TURN, probability_exact, probability_mc
from diffusionlab.sector.plots import plot_z_grid

TITLE = "Sector probability: exact fractions for n ≤ 8 with Monte Carlo z-scores"
SOURCE = "圆内随机n点在同一个圆心角为θ的扇形的概率, https://kexue.fm/archives/9324"
TURNS = (Fraction(1, 4), Fraction(1, 3), Fraction(1, 2), Fraction(2, 3), Fraction(3, 4),
         Fraction(5, 6))
LABELS = ("π/2", "2π/3", "π", "4π/3", "3π/2", "5π/3")
# Family-wise false-alarm rate of the Monte Carlo checks (Bonferroni over the cells checked).
FAMILY_LEVEL = 0.01


def bonferroni_z(count: int, level: float = FAMILY_LEVEL) -> float:
    """|z| bound that ``count`` standard normals all stay under with probability ≥ 1 − level."""
    return float(norm.ppf(1 - level / (2 * count)))


def exact_value(value: Fraction, target: Fraction, z: float, *, what: str) -> stats.Verdict:
    """The exact fraction equals ``target`` (no tolerance), and its Monte Carlo |z| is within
    the single-cell bound at ``FAMILY_LEVEL``."""
    bound = bonferroni_z(1)
    return stats.all_of(stats.within(float(value - target), 0.0, tolerance=0.0),
                        stats.within(z, 0.0, tolerance=bound),
                        names=[f"exact {what} equals {target}",
                               f"Monte Carlo |z| ≤ {bound:.2f} (level {FAMILY_LEVEL:g})"],
                        claim=f"exact {what} − {target} = 0, and Monte Carlo |z| ≤ {bound:.2f}")


@dataclasses.dataclass(frozen=True)
class Config:
    n_max: int = 8
    num_samples: int = 1_000_000
    seed: int = 1

    @classmethod
    def quick(cls) -> Config:
        return cls(n_max=4, num_samples=10_000)


def run(config: Config, out) -> None:
    key = jax.random.key(config.seed)
    theta = np.array([float(q) for q in TURNS]) * FULL_TURN
    n_values = list(range(2, config.n_max + 1))
    rows, z_grid, text = [], [], []
    for n in n_values:
        with out.phase("sampling"):
            est, se = probability_mc(n, theta, key=jax.random.fold_in(key, n),
                                     num_samples=config.num_samples)
        with out.phase("evaluation"):
            z_row, text_row = [], []
            for j, q in enumerate(TURNS):
                exact = probability_exact(n, q)
                z = (est[j] - float(exact)) / se[j] if se[j] > 0 else 0.0
                rows.append({"n": n, "theta": LABELS[j], "P exact": str(exact),
                             "P": float(exact), "MC": float(est[j]), "SE": float(se[j]),
                             "z": float(z)})
                z_row.append(z)
                text_row.append(str(exact) if len(str(exact)) <= 9 else f"{float(exact):.4f}")
        z_grid.append(z_row)
        text.append(text_row)
    z_grid = np.array(z_grid)
    out.table(rows, stem="table", caption="Exact P_n(θ) and Monte Carlo "
              f"({config.num_samples} sets of n points in the disk per n; common samples "
              "across θ).")
    out.figure(plot_z_grid(z_grid, n_values, LABELS, text), "z_scores",
               caption="Cell text: exact P (fraction, or decimal when long); colour: "
               "Monte Carlo z-score.")
    worst = float(np.max(np.abs(z_grid)))
    out.metric(max_abs_z=worst, mean_z=float(np.mean(z_grid)),
               rms_z=float(np.sqrt(np.mean(z_grid**2))))
    lookup = {(r["n"], r["theta"]): r for r in rows}
    ducks = lookup[(4, "π")]
    out.claim("Four ducks in a pond lie in one semicircle with probability 1/2", source=SOURCE,
              expected="1/2",
              verdict=exact_value(probability_exact(4, Fraction(1, 2)), Fraction(1, 2),
                                  ducks["z"], what="P_4(π)"),
              measured=f"exact {ducks['P exact']}, MC {ducks['MC']:.4f} ± {ducks['SE']:.4f}",
              previous=ducks["P exact"] == "1/2" and abs(ducks["z"]) < 4)
    if (5, "4π/3") in lookup:
        row = lookup[(5, "4π/3")]
        out.claim("n = 5, θ = 4π/3 gives 70/81", source=SOURCE + " (science brief §6)",
                  expected="70/81",
                  verdict=exact_value(probability_exact(5, Fraction(2, 3)), Fraction(70, 81),
                                      row["z"], what="P_5(4π/3)"),
                  measured=f"exact {row['P exact']}, MC {row['MC']:.4f}",
                  previous=row["P exact"] == "70/81" and abs(row["z"]) < 4)
    z_bound = bonferroni_z(z_grid.size)
    out.claim(f"Monte Carlo agrees with every exact entry: every |z| ≤ {z_bound:.2f}, the "
              f"Bonferroni bound at family-wise level {FAMILY_LEVEL:g} over the {z_grid.size} "
              "cells", source=SOURCE, expected="|z| ≲ 3.5",
              verdict=stats.within(z_grid.reshape(-1), 0.0, tolerance=z_bound),
              measured=f"max |z| = {worst:.2f} over {z_grid.size} cells",
              previous=worst < 4.0)
