r"""Thin diffrax wrappers: integrate an ODE or SDE from ``t = T`` to ``t = t_end``.

Every sampler in diffusionlab that follows a continuous-time path goes through here, so
the numerics (solver, step-size control, tolerances) are chosen in one place and every
solve reports its number of function evaluations (NFE), the currency in which
generative ODEs are compared.

The problem is positional (vector field, initial state, start and end time); the numerics
are keyword-only, with defaults that suit float32 sampling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import lineax

_ADAPTIVE = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5}
_FIXED = {"euler": diffrax.Euler, "heun": diffrax.Heun}
SOLVERS: tuple[str, ...] = tuple(_ADAPTIVE) + tuple(_FIXED)

# Vector-field evaluations per attempted step, and once at the start. Tsit5 and Dopri5 are
# first-same-as-last (7 stages, 6 new per step) and their first stage is evaluated when the
# solver state is initialised; Euler and Heun evaluate 1 and 2 stages per step.
_EVALS_PER_STEP = {"tsit5": 6, "dopri5": 6, "euler": 1, "heun": 2}
_EVALS_AT_START = {"tsit5": 1, "dopri5": 1, "euler": 0, "heun": 0}
# Choosing the first step (dt0=None) adds no evaluation beyond these: its probe reuses the
# initial stage. tests/test_solve.py pins these counts against an instrumented vector field.
_EVALS_INITIAL_STEP = 0


class ODESolution(NamedTuple):
    """Result of :func:`solve_ode`.

    Attributes:
      x: the state at ``t_end``.
      nfe: number of vector-field evaluations (int32 scalar).
      ts: the save times (``save_trajectory + 1`` of them), or None.
      xs: the states at ``ts`` stacked on a new leading axis, or None.
    """

    x: Any
    nfe: jax.Array
    ts: jax.Array | None
    xs: Any | None


class SDESolution(NamedTuple):
    """Result of :func:`solve_sde`: the state at ``t_end`` and the NFE of the drift."""

    x: Any
    nfe: jax.Array


def _check_times(T, t_end) -> None:
    try:
        same = float(T) == float(t_end)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return  # traced times: checked by diffrax at run time
    if same:
        raise ValueError(f"T and t_end must differ, got T = t_end = {float(T)}")


def _saveat(T, t_end, save_trajectory: int) -> diffrax.SaveAt:
    if save_trajectory < 0:
        raise ValueError(f"save_trajectory must be ≥ 0, got {save_trajectory}")
    if save_trajectory == 0:
        return diffrax.SaveAt(t1=True)
    return diffrax.SaveAt(ts=jnp.linspace(T, t_end, save_trajectory + 1))


def solve_ode(
    velocity: Callable[[jax.Array, Any], Any],
    x_T: Any,
    T: float,
    t_end: float,
    *,
    solver: str = "tsit5",
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
    save_trajectory: int = 0,
) -> ODESolution:
    r"""Integrates :math:`\mathrm{d}x/\mathrm{d}t = v(t, x)` from :math:`x(T) = x_T` to ``t_end``.

    Adaptive mode (``solver="tsit5"`` or ``"dopri5"``) uses a PID step-size controller with
    ``rtol``/``atol``; ``steps``, if given, only sets the first step. Fixed-step mode
    (``"euler"`` or ``"heun"``) takes exactly ``steps`` equal steps. Integration may run
    backwards (``t_end < T``), as samplers do.

    Args:
      velocity: ``v(t, x)``, with ``x`` the whole (batched) state, an array or pytree.
      x_T: the initial state at time ``T``.
      T: start time.
      t_end: end time (≠ T).
      solver: one of ``SOLVERS``.
      steps: number of steps; required for fixed-step solvers.
      rtol, atol: tolerances of the adaptive controller.
      max_steps: adaptive step budget; exceeding it raises at run time.
      save_trajectory: if K > 0, also return K+1 equally spaced snapshots (``ts``, ``xs``).

    Returns:
      An :class:`ODESolution` with the final state and the NFE.

    Raises:
      ValueError: unknown ``solver``, missing or non-positive ``steps`` for a fixed-step
        solver, non-positive tolerances, ``T == t_end``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if steps is not None and int(steps) < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    _check_times(T, t_end)
    term = diffrax.ODETerm(lambda t, x, args: velocity(t, x))
    if solver in _FIXED:
        if steps is None:
            raise ValueError(f"solver={solver!r} is fixed-step: pass steps (a positive integer)")
        controller = diffrax.ConstantStepSize()
        dt0 = (t_end - T) / int(steps)
        step_budget = int(steps)
        diffrax_solver = _FIXED[solver]()
    else:
        if not (rtol > 0 and atol > 0):
            raise ValueError(f"rtol and atol must be > 0, got rtol={rtol}, atol={atol}")
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
        dt0 = None if steps is None else (t_end - T) / int(steps)
        step_budget = int(max_steps)
        diffrax_solver = _ADAPTIVE[solver]()
    solution = diffrax.diffeqsolve(
        term, diffrax_solver, T, t_end, dt0, x_T,
        saveat=_saveat(T, t_end, save_trajectory),
        stepsize_controller=controller, max_steps=step_budget,
    )
    nfe = _EVALS_PER_STEP[solver] * solution.stats["num_steps"] + _EVALS_AT_START[solver]
    if solver in _ADAPTIVE and dt0 is None:
        nfe = nfe + _EVALS_INITIAL_STEP
    final = jax.tree.map(lambda leaf: leaf[-1], solution.ys)
    if save_trajectory:
        return ODESolution(final, jnp.asarray(nfe, jnp.int32), solution.ts, solution.ys)
    return ODESolution(final, jnp.asarray(nfe, jnp.int32), None, None)


def solve_sde(
    drift: Callable[[jax.Array, jax.Array], jax.Array],
    diffusion: Callable[[jax.Array], jax.Array],
    x_T: jax.Array,
    T: float,
    t_end: float,
    *,
    key: jax.Array,
    steps: int,
    solver: str = "euler",
) -> SDESolution:
    r"""Simulates the Itô SDE :math:`\mathrm{d}x = f(t, x)\,\mathrm{d}t + g(t)\,\mathrm{d}w`.

    Fixed steps from ``T`` to ``t_end`` (forwards or backwards in time) with the
    Euler–Maruyama scheme (``solver="euler"``) or the stochastic Heun scheme
    (``"heun"``, which converges to the Stratonovich solution; it equals Itô here
    because the noise is additive, :math:`g` independent of :math:`x`).

    Args:
      drift: ``f(t, x)``, returning an array shaped like ``x``.
      diffusion: ``g(t)``, a scalar (isotropic, additive noise).
      x_T: initial state (any array shape; every element gets its own Brownian motion).
      T, t_end: start and end time (≠).
      key: PRNG key of the Brownian path.
      steps: number of equal steps (≥ 1).
      solver: ``"euler"`` (Euler–Maruyama) or ``"heun"``.

    Returns:
      An :class:`SDESolution` with the state at ``t_end`` and the NFE of the drift.
    """
    if solver not in _FIXED:
        raise ValueError(f"solver must be one of {tuple(_FIXED)} for SDEs, got {solver!r}")
    if int(steps) < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    _check_times(T, t_end)
    x_T = jnp.asarray(x_T)
    shape = x_T.shape
    flat = x_T.reshape(-1)
    brownian = diffrax.UnsafeBrownianPath(shape=flat.shape, key=key)

    def noise(t, y, args):
        g = jnp.asarray(diffusion(t), y.dtype)
        if g.shape != ():
            raise ValueError(f"diffusion(t) must return a scalar g(t), got shape {g.shape}")
        return lineax.DiagonalLinearOperator(jnp.full(y.shape, g))

    terms = diffrax.MultiTerm(
        diffrax.ODETerm(lambda t, y, args: drift(t, y.reshape(shape)).reshape(-1)),
        diffrax.ControlTerm(noise, brownian),
    )
    solution = diffrax.diffeqsolve(
        terms, _FIXED[solver](), T, t_end, (t_end - T) / int(steps), flat,
        max_steps=int(steps),
        # The fast Brownian path cannot be checkpointed for reverse-mode autodiff; sampling
        # needs none, and forward mode still allows sensitivities.
        adjoint=diffrax.ForwardMode(),
    )
    nfe = _EVALS_PER_STEP[solver] * solution.stats["num_steps"]
    return SDESolution(solution.ys[-1].reshape(shape), jnp.asarray(nfe, jnp.int32))
