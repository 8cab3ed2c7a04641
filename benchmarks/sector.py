"""Sector probability: both evaluation paths against a Python loop over the exact rational
formula (throughput), and against exact references up to n = 10^5 (accuracy).

* ``series`` (the default of :func:`diffusionlab.sector.probability`): inclusion–exclusion
  in float64 with a double-double stage where it cancels.
* ``bspline``: de Boor's all-positive recursion for the Irwin–Hall density.

The throughput grid is random (n, θ = 2π t/64); the baseline evaluates the same points with
:func:`probability_exact` in a plain Python loop. The accuracy table takes exact angles
θ = 2π q (rational q, through :func:`probability_turns`) at θ < π and across the transition
λ = n (1 - x)^(n-1) ∈ {0.5, 3, 10, 25}. The reference there is the exact Fraction where it is
affordable; in the transition at n >= 10^4 it needs 10^3-10^4 big-integer terms of 10^5-10^6
bits (already 50 s per point at n = 5000), so the same sum is evaluated in 60-digit decimal
arithmetic instead, stopped where the terms (at most λ^k/k!) fall below 1e-45.
"""

from __future__ import annotations

import math
import time
from decimal import Decimal, localcontext
from fractions import Fraction

import jax
import numpy as np

from benchmarks import best_time
from diffusionlab.sector import (
    FULL_TURN,
    probability,
    probability_exact,
    probability_mc,
    probability_turns,
)

EXACT_TERM_LIMIT = 400
"""Exact Fractions are used when the shorter exact sum has at most this many terms at n <= 10^4,
or at most 40 at larger n (each term there is a power of ~4 million bits)."""


def _exact_terms(n: int, q: Fraction) -> int:
    x = 1 - q
    if n == 1 or n * x <= 1:
        return 0
    return min(min(n, math.ceil(1 / x) - 1), math.ceil(n - 1 / x))


def _decimal_reference(n: int, q: Fraction, digits: int = 60) -> float:
    """P_n at θ = 2π q by the direct sum in ``digits``-digit decimal arithmetic."""
    x = 1 - q
    if n == 1 or n * x <= 1:
        return 1.0
    with localcontext() as ctx:
        ctx.prec = digits
        xd = Decimal(x.numerator) / Decimal(x.denominator)
        lam = float(n * (1 - xd) ** (n - 1))
        total, binomial = Decimal(0), Decimal(1)
        for k in range(1, n + 1):
            binomial = binomial * (n - k + 1) / k
            base = 1 - k * xd
            if base <= 0:
                break
            term = binomial * (base.ln() * (n - 1)).exp()
            total += (-1) ** (k - 1) * term
            if k > lam and term < Decimal("1e-45"):
                break
        return float(total)


def _reference(n: int, q: Fraction) -> tuple[float, str]:
    limit = EXACT_TERM_LIMIT if n <= 10**4 else 40
    if _exact_terms(n, q) <= limit:
        return float(probability_exact(n, q)), "exact Fraction"
    return _decimal_reference(n, q), "60-digit decimal"


def _accuracy_table(sizes: list[int]) -> list[dict]:
    rows = []
    for n in sizes:
        cases = [Fraction(1, 3)]  # theta < pi: one term
        for lam in (0.5, 3.0, 10.0, 25.0):
            s = math.log(n / lam)
            if s > 1.0:  # else the pigeonhole regime (P = 1 exactly) already
                cases.append(1 - Fraction(round(64 * s), 64 * n))
        refs = [_reference(n, q) for q in cases]
        ref = np.array([r for r, _ in refs])
        n_arr = np.full(len(cases), n)
        q_arr = np.array(cases, dtype=object)
        row = {"n": n, "points": len(cases), "q": [str(q) for q in cases],
               "reference": sorted({kind for _, kind in refs})}
        for method in ("series", "bspline"):
            probability_turns(n_arr, q_arr, method=method)  # compile (and the first run)
            start = time.perf_counter()
            p = probability_turns(n_arr, q_arr, method=method)
            seconds = time.perf_counter() - start
            row[f"{method}_max_abs_error"] = float(np.max(np.abs(p - ref)))
            row[f"{method}_seconds_per_point"] = seconds / len(cases)
        rows.append(row)
    return rows


def run(quick: bool = False) -> dict:
    rng = np.random.default_rng(0)
    size = 20_000 if quick else 200_000
    n_max = 50 if quick else 1000
    n = rng.integers(1, n_max + 1, size)
    turns = rng.integers(1, 65, size)  # θ = 2π · t/64: exact baseline stays rational
    theta = turns / 64 * FULL_TURN
    repeats = 2 if quick else 3
    series_s = best_time(lambda: probability(n, theta), repeats=repeats)
    bspline_s = best_time(lambda: probability(n, theta, method="bspline"), repeats=repeats)
    grid_difference = float(np.max(np.abs(probability(n, theta, method="bspline")
                                          - probability(n, theta))))

    # The baseline: the exact rational sum in a plain Python loop, over a subsample.
    loop_size = 200 if quick else 300
    start = time.perf_counter()
    for i in range(loop_size):
        probability_exact(int(n[i]), Fraction(int(turns[i]), 64))
    loop_s = time.perf_counter() - start

    samples = 20_000 if quick else 2_000_000
    key = jax.random.key(0)
    mc_s = best_time(lambda: probability_mc(4, np.pi, key=key, num_samples=samples),
                     repeats=repeats)
    accuracy = _accuracy_table([10, 100] if quick else [10, 100, 1000, 10**4, 10**5])
    series_rate, bspline_rate, loop_rate = size / series_s, size / bspline_s, loop_size / loop_s
    worst = {m: max(r[f"{m}_max_abs_error"] for r in accuracy) for m in ("series", "bspline")}
    faster = "series" if series_rate >= bspline_rate else "bspline"
    return {
        "baseline": "Python loop over probability_exact (exact rationals), same (n, θ) grid",
        "grid_points": size,
        "n_max": n_max,
        "default_method": "series",
        "solver_evaluations_per_s": series_rate,
        "bspline_evaluations_per_s": bspline_rate,
        "exact_loop_evaluations_per_s": loop_rate,
        "speedup_ratio": series_rate / loop_rate,
        "bspline_speedup_ratio": bspline_rate / loop_rate,
        "series_over_bspline_ratio": series_rate / bspline_rate,
        "faster_on_grid": faster,
        "grid_max_abs_difference": grid_difference,
        "accuracy": accuracy,
        "worst_max_abs_error": worst,
        "mc_points_per_s": samples * 4 / mc_s,
        "mc_samples": samples,
        "mc_n": 4,
    }
