"""Our jitted diffrax sampler against the reference codes' sampler: scipy ``solve_ivp(RK45)``.

The baseline is the pattern that PFGM and score_sde sample with: the batch is flattened into
one long vector and handed to ``scipy.integrate.solve_ivp(method="RK45")``, whose right-hand
side calls the jitted device function once per evaluation (a host round trip each time:
float64 vector -> float32 device array -> float64 vector). Ours is ``diffusionlab.solve``
(Dopri5, the same Dormand–Prince 5(4) pair, one compiled program with the whole loop on the
device), at the same rtol/atol.

The ODE is the VE probability flow :math:`\\dot x=-t\\,\\nabla\\log p_t(x)` of a Gaussian-smoothed
set of points, whose score is analytic: the 8-Gaussians toy in 2-D at 256/1024/4096 samples,
and 8×8 digits (d = 64, 512 training images as the centres) at 256 samples.

Reported per case: the run time of each (best of repeats, compilation excluded), the
compilation time apart (our whole solve; the baseline's vector field), the NFE of each, and
the largest endpoint error of each against a tight reference (scipy DOP853 at rtol = atol =
1e-10 on the float64 field).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

from benchmarks import best_time
from diffusionlab.data import digits
from diffusionlab.solve import solve_ode

T_END, DATA_STD = 0.01, 0.1
REFERENCE_TOL = 1e-10


def eight_gaussians() -> np.ndarray:
    angles = np.arange(8) * np.pi / 4
    return 1.4 * np.stack([np.cos(angles), np.sin(angles)], -1)


def velocity(t, x_NxD, centers_KxD):
    r"""VE probability flow :math:`\dot x = -t\,\nabla\log p_t(x)`, :math:`p_t = \frac1K\sum_k
    \mathcal N(\mu_k, (s^2+t^2) I)` (σ(t) = t, so σσ' = t)."""
    var = DATA_STD**2 + t**2
    diff = centers_KxD[None, :, :] - x_NxD[:, None, :]
    weights = jax.nn.softmax(-jnp.sum(diff**2, -1) / (2 * var), axis=-1)
    score = jnp.einsum("nk,nkd->nd", weights, diff) / var
    return -t * score


def _case(name: str, centers: np.ndarray, num: int, T: float, tol: float,
          repeats: int) -> dict:
    dim = centers.shape[1]
    x_T = np.asarray(T * jax.random.normal(jax.random.key(0), (num, dim)), np.float32)
    centers32 = jnp.asarray(centers, jnp.float32)

    def field(t, x):
        return velocity(t, x, centers32)

    # ours: one program for the whole solve; compile timed apart from running
    solve = jax.jit(lambda x: solve_ode(field, x, T, T_END, solver="dopri5", rtol=tol, atol=tol))
    start = time.perf_counter()
    compiled = solve.lower(x_T).compile()
    ours_compile = time.perf_counter() - start
    ours_time = best_time(lambda: compiled(x_T).x, repeats=repeats)
    sol = compiled(x_T)

    # the baseline: scipy's loop on the host, one device call per right-hand side
    device_field = jax.jit(field)
    start = time.perf_counter()
    device_field.lower(jnp.float32(T), jnp.asarray(x_T)).compile()
    scipy_compile = time.perf_counter() - start

    def scipy_rhs(t, y):
        x = jnp.asarray(y, jnp.float32).reshape(num, dim)
        return np.asarray(device_field(jnp.float32(t), x), np.float64).reshape(-1)

    def scipy_solve():
        return solve_ivp(scipy_rhs, (T, T_END), x_T.astype(np.float64).reshape(-1),
                         method="RK45", rtol=tol, atol=tol)

    baseline = scipy_solve()  # also traces the field's first call
    scipy_time = best_time(scipy_solve, repeats=max(1, repeats - 1), warmup=0)

    # tight reference: DOP853 on the float64 field
    with jax.enable_x64(True):
        centers64 = jnp.asarray(centers, jnp.float64)
        field64 = jax.jit(lambda t, x: velocity(t, x, centers64))

        def rhs64(t, y):
            return np.asarray(field64(jnp.float64(t), jnp.asarray(y).reshape(num, dim))
                              ).reshape(-1)

        start = time.perf_counter()
        ref = solve_ivp(rhs64, (T, T_END), x_T.astype(np.float64).reshape(-1),
                        method="DOP853", rtol=REFERENCE_TOL, atol=REFERENCE_TOL)
        reference_seconds = time.perf_counter() - start
    end = ref.y[:, -1]
    ours_error = float(np.abs(np.asarray(sol.x, np.float64).reshape(-1) - end).max())
    scipy_error = float(np.abs(baseline.y[:, -1] - end).max())
    return {
        "case": name, "dim": dim, "batch": num, "centers": int(centers.shape[0]), "T": T,
        "rtol": tol, "atol": tol,
        "ours_seconds": ours_time, "scipy_seconds": scipy_time,
        "speedup_ratio": scipy_time / ours_time,
        "ours_compile_seconds": ours_compile, "scipy_field_compile_seconds": scipy_compile,
        "speedup_with_compile_ratio": (scipy_time + scipy_compile) / (ours_time + ours_compile),
        "ours_nfe": int(sol.nfe), "scipy_nfe": int(baseline.nfev),
        "ours_max_abs_error": ours_error, "scipy_max_abs_error": scipy_error,
        "reference": f"scipy DOP853, rtol = atol = {REFERENCE_TOL:g}, float64 field",
        "reference_nfe": int(ref.nfev), "reference_seconds": reference_seconds,
        "scipy_success": bool(baseline.success), "reference_success": bool(ref.success),
    }


def run(quick: bool = False) -> dict:
    tol = 1e-4 if quick else 1e-5
    repeats = 2 if quick else 3
    images, _ = digits("train")
    digit_centers = images.reshape(len(images), -1)[:128 if quick else 512].astype(np.float64)
    toy = eight_gaussians()
    plan = ([("8gaussians", toy, 256, 5.0), ("digits", digit_centers, 32, 10.0)] if quick else
            [("8gaussians", toy, 256, 5.0), ("8gaussians", toy, 1024, 5.0),
             ("8gaussians", toy, 4096, 5.0), ("digits", digit_centers, 256, 10.0)])
    cases = [_case(name, centers, num, T, tol, repeats) for name, centers, num, T in plan]
    headline = next(c for c in cases if c["batch"] == (256 if quick else 1024))
    return {
        "baseline": ("scipy.integrate.solve_ivp(RK45) on the flattened batch, the jitted "
                     "vector field called once per right-hand side (host round trip), "
                     "as PFGM and score_sde sample; same rtol/atol"),
        "rtol": tol, "atol": tol,
        "speedup_ratio": headline["speedup_ratio"],
        "min_speedup_ratio": min(c["speedup_ratio"] for c in cases),
        "cases": cases,
    }
