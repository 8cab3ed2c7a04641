"""Sector probability: vectorised jitted evaluations per second against a Python loop over the
exact rational formula, and Monte Carlo points per second."""

from __future__ import annotations

import time
from fractions import Fraction

import jax
import numpy as np

from benchmarks import best_time
from diffusionlab.sector import FULL_TURN, probability, probability_exact, probability_mc


def run(quick: bool = False) -> dict:
    rng = np.random.default_rng(0)
    size = 20_000 if quick else 1_000_000
    n_max = 50 if quick else 1000
    n = rng.integers(1, n_max + 1, size)
    turns = rng.integers(1, 65, size)  # θ = 2π · t/64: exact baseline stays rational
    theta = turns / 64 * FULL_TURN
    probability(n, theta)  # compile
    solver_s = best_time(lambda: probability(n, theta), repeats=2 if quick else 3)

    # The baseline: the exact rational sum in a plain Python loop, over a subsample.
    loop_size = 200 if quick else 300
    start = time.perf_counter()
    for i in range(loop_size):
        probability_exact(int(n[i]), Fraction(int(turns[i]), 64))
    loop_s = time.perf_counter() - start

    samples = 20_000 if quick else 2_000_000
    key = jax.random.key(0)
    probability_mc(4, np.pi, key=key, num_samples=samples)  # compile
    mc_s = best_time(lambda: probability_mc(4, np.pi, key=key, num_samples=samples),
                     repeats=2 if quick else 3)
    solver_rate = size / solver_s
    loop_rate = loop_size / loop_s
    return {
        "baseline": "Python loop over probability_exact (exact rationals), same (n, θ) grid",
        "grid_points": size,
        "n_max": n_max,
        "solver_evaluations_per_s": solver_rate,
        "exact_loop_evaluations_per_s": loop_rate,
        "speedup_ratio": solver_rate / loop_rate,
        "mc_points_per_s": samples * 4 / mc_s,
        "mc_samples": samples,
        "mc_n": 4,
    }
