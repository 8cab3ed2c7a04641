"""Our jitted diffrax sampler against scipy's ``solve_ivp(RK45)`` on the same vector field.

Reference PFGM / score_sde code samples by handing a flattened batch to
``scipy.integrate.solve_ivp(method="RK45")`` with a jitted vector field. We integrate the
same probability-flow ODE (a VE process over the 8-Gaussians mixture, whose score is
analytic) for the same 1024 2-D points with the same Dormand–Prince 5(4) pair and the same
tolerances, once through ``diffusionlab.solve`` (Dopri5, one compiled program) and once
through scipy. Reported: the wall-time ratio, the NFE of each, and the largest difference
between the endpoints.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

from benchmarks import best_time
from diffusionlab.solve import solve_ode

T, T_END, DATA_STD = 5.0, 0.01, 0.1
CENTERS = 1.4 * jnp.stack([jnp.cos(jnp.arange(8) * jnp.pi / 4), jnp.sin(jnp.arange(8) * jnp.pi / 4)], -1)


def velocity(t, x_Nx2):
    r"""VE probability flow :math:`\dot x = -t\,\nabla\log p_t(x)`, :math:`p_t = \frac18\sum_k
    \mathcal N(\mu_k, (s^2+t^2) I)` (σ(t) = t, so σσ' = t)."""
    var = DATA_STD**2 + t**2
    diff = CENTERS[None, :, :] - x_Nx2[:, None, :]
    weights = jax.nn.softmax(-jnp.sum(diff**2, -1) / (2 * var), axis=-1)
    score = jnp.sum(weights[:, :, None] * diff, axis=1) / var
    return -t * score


def run(quick: bool = False) -> dict:
    num, tol = (256, 1e-4) if quick else (1024, 1e-5)
    x_T = T * jax.random.normal(jax.random.key(0), (num, 2))

    ours = jax.jit(lambda x: solve_ode(velocity, x, T, T_END, solver="dopri5", rtol=tol, atol=tol))
    ours_time = best_time(lambda: ours(x_T).x, repeats=3 if quick else 5)
    sol = ours(x_T)

    field = jax.jit(velocity)

    def scipy_rhs(t, y):
        return np.asarray(field(jnp.float32(t), jnp.asarray(y, jnp.float32).reshape(num, 2)),
                          np.float64).reshape(-1)

    def scipy_solve():
        return solve_ivp(scipy_rhs, (T, T_END), np.asarray(x_T, np.float64).reshape(-1),
                         method="RK45", rtol=tol, atol=tol)

    ref = scipy_solve()  # also compiles the field once, so the timed runs need no warm-up
    scipy_time = best_time(scipy_solve, repeats=2 if quick else 3, warmup=0)
    diff = float(np.abs(np.asarray(sol.x).reshape(-1) - ref.y[:, -1]).max())
    return {
        "baseline": "scipy.integrate.solve_ivp(RK45) on the flattened batch, same jitted vector field",
        "batch": num, "rtol": tol, "atol": tol,
        "ours_seconds": ours_time, "scipy_seconds": scipy_time,
        "speedup_ratio": scipy_time / ours_time,
        "ours_nfe": int(sol.nfe), "scipy_nfe": int(ref.nfev),
        "max_endpoint_difference": diff,
    }
