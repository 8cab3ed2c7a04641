"""One full weak-form verification: diffusionlab (jit, autodiff) against NumPy (finite differences).

Both sides run the same estimator on an Ornstein–Uhlenbeck process with exact Gaussian marginals:
LHS a central difference in t with common random numbers, RHS the sample mean of
f·∇φ + ½g²Δφ over 10 test functions (5 Gaussian bumps, 5 random Fourier features) at 20 times
with 10⁵ samples. diffusionlab takes ∇φ and Δφ by autodiff (exact Hessian trace for d = 2,
Hutchinson for d = 64); NumPy by central finite differences (2d + 1 evaluations of φ per point).
Accuracy is measured against the closed form of d/dt E[φ(x_t)] for Gaussian x_t.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import best_time
from diffusionlab import weakform as wf

THETA, G, M0, S0 = 1.0, 0.8, 0.5, 0.3
DT = 1e-3


def moments(t, xp=np):
    decay = xp.exp(-THETA * t)
    return M0 * decay, S0**2 * decay**2 + G**2 * (1 - decay**2) / (2 * THETA)


def exact_lhs(phi: wf.TestFunctions, times, dim):
    """d/dt E[φ(x_t)] from the closed-form Gaussian expectations (float64, h = 1e-5)."""
    centers, widths = np.asarray(phi.centers, np.float64), np.asarray(phi.widths, np.float64)
    freqs, phases = np.asarray(phi.frequencies, np.float64), np.asarray(phi.phases, np.float64)

    def expectations(t):
        m, v = moments(t)
        mean = np.full(dim, m)
        bumps = (widths**2 / (widths**2 + v)) ** (dim / 2) * np.exp(
            -np.sum((mean[None] - centers) ** 2, -1) / (2 * (widths**2 + v)))
        fourier = np.cos(freqs @ mean + phases) * np.exp(-0.5 * v * np.sum(freqs**2, -1))
        return np.concatenate([bumps, fourier])

    h = 1e-5
    return np.stack([(expectations(t + h) - expectations(t - h)) / (2 * h) for t in times])


def numpy_phi(x, centers, widths, freqs, phases):
    """(N, K) test-function values; the bump distance by the matmul expansion."""
    sq = (np.sum(x**2, -1)[:, None] - 2 * x @ centers.T + np.sum(centers**2, -1)[None])
    return np.concatenate([np.exp(-0.5 * sq / widths**2), np.cos(x @ freqs.T + phases)], -1)


def numpy_verify(phi: wf.TestFunctions, times, num, dim, seed, *, h_space=1e-2):
    """The same estimator in NumPy, with finite-difference ∇φ and Δφ; returns (lhs, rhs)."""
    params = [np.asarray(a, np.float32) for a in (phi.centers, phi.widths, phi.frequencies,
                                                  phi.phases)]
    rng = np.random.default_rng(seed)
    lhs, rhs = [], []
    for t in times:
        eps = rng.standard_normal((num, dim), dtype=np.float32)

        def sample(s, eps=eps):
            m, v = moments(s)
            return np.float32(m) + np.float32(np.sqrt(v)) * eps

        x = sample(t)
        lhs.append(((numpy_phi(sample(t + DT), *params) - numpy_phi(sample(t - DT), *params))
                    / (2 * DT)).mean(0))
        center = numpy_phi(x, *params)
        drift = -THETA * x
        generator = np.zeros_like(center)
        for i in range(dim):  # central differences along each coordinate
            x[:, i] += h_space
            plus = numpy_phi(x, *params)
            x[:, i] -= 2 * h_space
            minus = numpy_phi(x, *params)
            x[:, i] += h_space
            generator += drift[:, i:i + 1] * (plus - minus) / (2 * h_space)
            generator += 0.5 * G**2 * (plus - 2 * center + minus) / h_space**2
        rhs.append(generator.mean(0))
    return np.stack(lhs), np.stack(rhs)


def one_dimension(dim, num, num_times, repeats):
    times = np.linspace(0.1, 2.0, num_times)
    phi = wf.default_test_functions(dim, key=jax.random.key(dim), num=10,
                                    scale=float(np.sqrt(moments(1.0)[1])))

    def sampler(t, key):
        m, v = moments(t, jnp)
        return m + jnp.sqrt(v) * jax.random.normal(key, (num, dim))

    def drift(x, t):
        return -THETA * x

    def run_jax():
        return wf.verify_fokker_planck(drift, G, sampler=sampler, times=times, key=jax.random.key(0),
                                       num_samples=num, test_functions=phi)

    start = time.perf_counter()
    report = run_jax()
    first_call = time.perf_counter() - start
    jax_seconds = best_time(lambda: run_jax().lhs, repeats=repeats, warmup=0)
    numpy_seconds = best_time(lambda: numpy_verify(phi, times, num, dim, 0), repeats=1, warmup=0)
    np_lhs, np_rhs = numpy_verify(phi, times, num, dim, 0)
    exact = exact_lhs(phi, times, dim)

    def rms(a):
        return float(np.sqrt(np.mean((a - exact) ** 2)))

    return {
        f"d{dim}_jax_seconds": jax_seconds,
        f"d{dim}_jax_first_call_seconds": first_call,
        f"d{dim}_numpy_seconds": numpy_seconds,
        f"d{dim}_speedup_ratio": numpy_seconds / jax_seconds,
        f"d{dim}_jax_rhs_rms_error": rms(report.rhs),
        f"d{dim}_jax_lhs_rms_error": rms(report.lhs),
        f"d{dim}_numpy_rhs_rms_error": rms(np_rhs),
        f"d{dim}_numpy_lhs_rms_error": rms(np_lhs),
        f"d{dim}_jax_median_standard_error": float(np.median(report.standard_error)),
        f"d{dim}_jax_passed": bool(report.passed),
        f"d{dim}_laplacian": "exact Hessian trace" if dim <= 16 else "Hutchinson, 1 probe",
    }


def run(quick: bool = False) -> dict:
    sizes = ((2, 10_000, 5),) if quick else ((2, 100_000, 20), (64, 100_000, 20))
    result = {
        "baseline": "NumPy, same estimator with central finite differences for ∇φ, Δφ "
                    "(2d+1 evaluations of φ per point)",
        "test_functions": 10,
    }
    for dim, num, num_times in sizes:
        result.update(num_samples=num, num_times=num_times)
        result.update(one_dimension(dim, num, num_times, repeats=1 if quick else 3))
    result["speedup_ratio"] = result[f"d{sizes[0][0]}_speedup_ratio"]
    return result
