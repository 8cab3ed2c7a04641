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
from jax.sharding import NamedSharding, PartitionSpec

from diffusionlab import _checks, solve
from diffusionlab.odes._checks import float_input, saturating_cast

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
    arrays then compile once per function, not once per array value.

    Raises:
      TypeError: ``fn`` is not callable.
    """
    _checks.check_callable(fn, "velocity_fn")
    return fn if isinstance(fn, jax.tree_util.Partial) else jax.tree_util.Partial(fn)


def time_change(velocity_fn, time: str):
    """The vector field in the integration variable: ``(s, x) -> dx/ds``.

    The one adapter from the package's ``v(x, t)`` to the order of
    :func:`diffusionlab.solve.solve_ode`, ``f(s, x)``: ``s = t`` for ``time="linear"``,
    ``s = log t`` (so ``dx/ds = t v(x, t)``) for ``time="log"``. ``v`` may return a pytree
    shaped like the state (the likelihood integrates ``(x, Δ)``).
    """
    _checks.check_choice(time, "time", TIMES)
    if time == "linear":
        return lambda s, x: velocity_fn(x, s)
    return lambda s, x: jax.tree.map(lambda v: jnp.exp(s) * v, velocity_fn(x, jnp.exp(s)))


def batch_sharding(x) -> NamedSharding | None:
    """``x``'s :class:`~jax.sharding.NamedSharding` when ``x`` is a concrete array placed on a
    mesh (e.g. its batch split with ``NamedSharding(mesh, P("data"))``), else None."""
    if not isinstance(x, jax.Array) or isinstance(x, jax.core.Tracer):
        return None
    sharding = getattr(x, "sharding", None)
    return sharding if isinstance(sharding, NamedSharding) else None


def keep_sharding(y, sharding: NamedSharding | None, *, lead: int = 0, axes: int | None = None):
    """``y`` constrained (inside ``jit``) to ``sharding``'s layout of the batch: ``lead`` new
    unsplit leading axes (snapshots), then the first ``axes`` entries of its partition spec
    (all by default). The ODE solvers' loop buffers start unplaced, so without it a
    batch-split input comes back replicated on every device."""
    if sharding is None:
        return y
    spec = tuple(sharding.spec)
    spec = spec if axes is None else spec[:axes]
    spec = ((None,) * lead + spec)[:y.ndim]
    return jax.lax.with_sharding_constraint(y, NamedSharding(sharding.mesh, PartitionSpec(*spec)))


def check_times(T, t_end, time: str, *, end_name: str = "t_end") -> None:
    """Checks a generation interval: ``T`` finite and > 0, ``t_end`` (called ``end_name`` in
    the messages) finite in ``[0, T)``, and > 0 with ``time="log"``.

    Raises:
      TypeError: a non-numeric time or ``time``.
      ValueError: naming the bad time and its range.
    """
    _checks.check_choice(time, "time", TIMES)
    T = _checks.check_real(T, "T", low=0.0, low_open=True)
    low_open = time == "log"
    t_end = _checks.check_real(t_end, end_name, low=0.0, low_open=low_open)
    if _checks.concrete(T) is None or _checks.concrete(t_end) is None:
        return  # traced (under jit): only the static checks above apply
    if not float(t_end) < float(T):
        raise ValueError(f"{end_name} must lie in {'(' if low_open else '['}0, T) = "
                         f"{'(' if low_open else '['}0, {float(T)}); got {float(t_end)}")


def check_velocity(velocity_fn, x, t, *, name: str = "velocity_fn") -> None:
    """Raises ValueError naming ``name`` unless ``velocity_fn(x, t)`` returns ``x``'s shape."""
    out = jax.eval_shape(velocity_fn, jax.ShapeDtypeStruct(x.shape, x.dtype),
                         jax.ShapeDtypeStruct((), jnp.float32))
    shape = getattr(out, "shape", None)
    if shape != x.shape:
        raise ValueError(f"{name}(x, t) must return an array shaped like x {x.shape}; got "
                         f"{shape if shape is not None else type(out).__name__}")


def check_numerics(solver, steps, rtol, atol, max_steps):
    """Checks the solver options of :func:`diffusionlab.solve.solve_ode`; returns them as
    Python numbers (``steps`` may be None for adaptive solvers)."""
    _checks.check_choice(solver, "solver", solve.SOLVERS)
    if steps is not None:
        steps = _checks.check_int(steps, "steps", low=1)
    elif solver in ("euler", "heun"):
        raise ValueError(f"solver={solver!r} is fixed-step: steps must be an integer ≥ 1")
    rtol = _checks.check_real(rtol, "rtol", low=0.0, low_open=True)
    atol = _checks.check_real(atol, "atol", low=0.0, low_open=True)
    max_steps = _checks.check_int(max_steps, "max_steps", low=1)
    return steps, float(rtol), float(atol), max_steps


@functools.partial(jax.jit, static_argnames=("solver", "steps", "rtol", "atol", "max_steps",
                                             "save_trajectory", "time", "sharding"))
def _generate(velocity_fn, x_T, T, t_end, *, solver, steps, rtol, atol, max_steps,
              save_trajectory, time, sharding):
    start, end = (T, t_end) if time == "linear" else (jnp.log(T), jnp.log(t_end))
    sol = solve.solve_ode(time_change(velocity_fn, time), x_T, start, end, solver=solver,
                          steps=steps, rtol=rtol, atol=atol, max_steps=max_steps,
                          save_trajectory=save_trajectory)
    ts = None if sol.ts is None else (sol.ts if time == "linear" else jnp.exp(sol.ts))
    xs = None if sol.xs is None else keep_sharding(sol.xs, sharding, lead=1)
    return Generated(keep_sharding(sol.x, sharding), sol.nfe, ts, xs)


def generate(velocity_fn: Callable[[jax.Array, Any], jax.Array], x_T, T, *,
             t_end: float = 0.0, solver: str = "tsit5", steps: int | None = None,
             rtol: float = 1e-5, atol: float = 1e-5, max_steps: int = 4096,
             time: str = "linear", save_trajectory: int = 0) -> Generated:
    r"""Integrates :math:`\mathrm dx/\mathrm dt = v(x, t)` from ``x_T`` at ``T`` to ``t_end``.

    The state and the time are integrated in at least float32; the samples (and snapshots)
    are returned in ``x_T``'s dtype. An empty batch gives empty samples with NFE 0.

    Args:
      velocity_fn: ``v(x, t)`` for the whole batch ``x`` and a scalar ``t``, returning an
        array shaped like ``x``. Passing a :class:`jax.tree_util.Partial` (see
        :func:`as_partial`) lets array arguments change between calls without recompiling.
      x_T: prior samples at ``T`` (a float array, finite). A batch placed on a mesh
        (``NamedSharding``) comes back placed the same way (snapshots: batch axis second).
      T: start time (finite, > 0).
      t_end: end time, in ``[0, T)`` (> 0 for ``time="log"`` or for fields singular at 0).
      solver: ``"tsit5"``/``"dopri5"`` (adaptive) or ``"euler"``/``"heun"`` (fixed step).
      steps: number of steps (fixed-step solvers), in the integration variable.
      rtol, atol: adaptive tolerances (> 0).
      max_steps: adaptive step budget (≥ 1).
      time: ``"linear"`` (steps equal in :math:`t`) or ``"log"`` (equal in :math:`\log t`).
      save_trajectory: K > 0 also returns K + 1 snapshots.

    Returns:
      :class:`Generated` (samples, NFE, and the snapshots when asked).

    Raises:
      TypeError: a non-callable ``velocity_fn``, a non-float ``x_T`` (None, a list, an
        integer, boolean or complex array), non-numeric options.
      ValueError: ``T ≤ 0``, ``t_end`` outside ``[0, T)``, ``t_end ≤ 0`` with log time, NaN
        or inf in the times or in ``x_T``, ``velocity_fn`` returning the wrong shape, or the
        solver options rejected by :func:`diffusionlab.solve.solve_ode`.
    """
    _checks.check_callable(velocity_fn, "velocity_fn")
    check_times(T, t_end, time)
    steps, rtol, atol, max_steps = check_numerics(solver, steps, rtol, atol, max_steps)
    save_trajectory = _checks.check_int(save_trajectory, "save_trajectory", low=0)
    sharding = batch_sharding(x_T)
    x_T, dtype = float_input(x_T, "x_T")
    if x_T.size:
        check_velocity(velocity_fn, x_T, T)
    out = _generate(as_partial(velocity_fn), x_T, jnp.asarray(T, jnp.float32),
                    jnp.asarray(t_end, jnp.float32), solver=solver, steps=steps, rtol=rtol,
                    atol=atol, max_steps=max_steps, save_trajectory=save_trajectory, time=time,
                    sharding=sharding)
    xs = None if out.xs is None else saturating_cast(out.xs, dtype)
    return Generated(saturating_cast(out.samples, dtype), out.nfe, out.ts, xs)
