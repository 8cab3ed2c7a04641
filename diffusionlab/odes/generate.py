r"""Generation: integrate a velocity field from the prior at :math:`t = T` down to the data.

.. math:: \frac{\mathrm dx}{\mathrm dt} = v(x, t),\qquad x(T) = x_T,\qquad t: T \to t_\text{end}

through :func:`diffusionlab.solve.solve_ode` (adaptive or fixed-step). With
``time="log"`` the ODE is integrated in :math:`s = \log t`,
:math:`\mathrm dx/\mathrm ds = t\,v(x, t)`, as PFGM does; equal steps in :math:`s` are a
geometric grid in :math:`t`, which suits fields that grow like :math:`1/t`.

Reference: 苏剑林, 《生成扩散模型漫谈（十三）：从万有引力到扩散模型》,
https://kexue.fm/archives/9305 (§ generation); PFGM, arXiv:2209.11178.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from diffusionlab import solve

TIMES = ("linear", "log")


class Generated(NamedTuple):
    """Result of :func:`generate`: samples at ``t_end``, the NFE, and optional snapshots
    (``ts`` in the original time :math:`t`, ``xs`` stacked on a leading axis)."""

    samples: jax.Array
    nfe: jax.Array
    ts: jax.Array | None
    xs: jax.Array | None


def as_partial(fn: Callable) -> jax.tree_util.Partial:
    """Wraps ``fn`` as a pytree so that jitted solvers take it as an argument: closures over
    arrays then compile once per function, not once per array value."""
    return fn if isinstance(fn, jax.tree_util.Partial) else jax.tree_util.Partial(fn)


def time_change(velocity_fn, time: str):
    """The vector field in the integration variable: ``(s, x) -> dx/ds``."""
    if time == "linear":
        return lambda s, x: velocity_fn(x, s)
    return lambda s, x: jax.tree.map(lambda v: jnp.exp(s) * v, velocity_fn(x, jnp.exp(s)))


def check_times(T, t_end, time: str) -> None:
    if time not in TIMES:
        raise ValueError(f"time must be one of {TIMES}, got {time!r}")
    if isinstance(T, jax.core.Tracer) or isinstance(t_end, jax.core.Tracer):
        return
    if not float(T) > 0:
        raise ValueError(f"T must be > 0, got {T}")
    if time == "log" and not float(t_end) > 0:
        raise ValueError(f"t_end must be > 0 when time='log', got {t_end}")
    if not 0 <= float(t_end) < float(T):
        raise ValueError(f"t_end must lie in [0, T) = [0, {float(T)}), got {t_end}")


@functools.partial(jax.jit, static_argnames=("solver", "steps", "rtol", "atol", "max_steps",
                                             "save_trajectory", "time"))
def _generate(velocity_fn, x_T, T, t_end, *, solver, steps, rtol, atol, max_steps,
              save_trajectory, time):
    start, end = (T, t_end) if time == "linear" else (jnp.log(T), jnp.log(t_end))
    sol = solve.solve_ode(time_change(velocity_fn, time), x_T, start, end, solver=solver,
                          steps=steps, rtol=rtol, atol=atol, max_steps=max_steps,
                          save_trajectory=save_trajectory)
    ts = None if sol.ts is None else (sol.ts if time == "linear" else jnp.exp(sol.ts))
    return Generated(sol.x, sol.nfe, ts, sol.xs)


def generate(velocity_fn: Callable[[jax.Array, Any], jax.Array], x_T, T, *,
             t_end: float = 0.0, solver: str = "tsit5", steps: int | None = None,
             rtol: float = 1e-5, atol: float = 1e-5, max_steps: int = 4096,
             time: str = "linear", save_trajectory: int = 0) -> Generated:
    r"""Integrates :math:`\mathrm dx/\mathrm dt = v(x, t)` from ``x_T`` at ``T`` to ``t_end``.

    Args:
      velocity_fn: ``v(x, t)`` for the whole batch ``x`` and a scalar ``t``. Passing a
        :class:`jax.tree_util.Partial` (see :func:`as_partial`) lets array arguments change
        between calls without recompiling.
      x_T: prior samples at ``T``.
      T: start time (> 0).
      t_end: end time, in ``[0, T)`` (> 0 for ``time="log"`` or for fields singular at 0).
      solver: ``"tsit5"``/``"dopri5"`` (adaptive) or ``"euler"``/``"heun"`` (fixed step).
      steps: number of steps (fixed-step solvers), in the integration variable.
      rtol, atol: adaptive tolerances.
      max_steps: adaptive step budget.
      time: ``"linear"`` (steps equal in :math:`t`) or ``"log"`` (equal in :math:`\log t`).
      save_trajectory: K > 0 also returns K + 1 snapshots.

    Returns:
      :class:`Generated` (samples, NFE, and the snapshots when asked).

    Raises:
      ValueError: ``T ≤ 0``, ``t_end`` outside ``[0, T)``, ``t_end ≤ 0`` with log time, or
        the solver options rejected by :func:`diffusionlab.solve.solve_ode`.
    """
    check_times(T, t_end, time)
    if solver not in solve.SOLVERS:
        raise ValueError(f"solver must be one of {solve.SOLVERS}, got {solver!r}")
    if solver in ("euler", "heun") and (steps is None or int(steps) < 1):
        raise ValueError(f"solver={solver!r} is fixed-step: steps must be an integer ≥ 1")
    return _generate(as_partial(velocity_fn), x_T, jnp.asarray(T, jnp.float32),
                     jnp.asarray(t_end, jnp.float32), solver=solver,
                     steps=None if steps is None else int(steps), rtol=float(rtol),
                     atol=float(atol), max_steps=int(max_steps),
                     save_trajectory=int(save_trajectory), time=time)
