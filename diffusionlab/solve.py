r"""Thin diffrax wrappers: integrate an ODE or SDE from ``t = T`` to ``t = t_end``.

Every sampler in diffusionlab that follows a continuous-time path goes through here, so
the numerics (solver, step-size control, tolerances) are chosen in one place and every
solve reports its number of function evaluations (NFE), the currency in which
generative ODEs are compared.

The problem is positional (vector field, initial state, start and end time); the numerics
are keyword-only, with defaults that suit float32 sampling.

Velocity conventions: the science modules write a velocity state first, ``v(x, t)`` (the
essays' :math:`v_t(x)`; :func:`diffusionlab.odes.generate`, :func:`diffusionlab.odes.log_likelihood`).
The integrator here takes the vector field in the integration variable first, ``f(t, x)``:
diffrax's ``(t, y, args)`` without ``args``, which :func:`solve_ode` and :func:`solve_sde`
add in one place. :func:`diffusionlab.odes.generate.time_change` is the one adapter from
``v(x, t)`` to ``f(s, x)`` (with :math:`s = \log t` when integrating in log-time).

Precision: the state and the time are integrated in at least float32 (a half-precision
state is promoted on entry and the result cast back at the end), because a step size or a
tolerance of 1e-5 means nothing in bfloat16's 8 mantissa bits. Arguments are checked when
they are concrete (:mod:`diffusionlab._checks`); an empty state is returned unchanged with
NFE 0.

Batch modes: by default (``batch_mode="shared"``) the whole batch is one state, so an
adaptive controller takes one step size for all samples, chosen from the RMS error norm of
the whole batch. ``batch_mode="per_sample"`` gives each sample (a slice along the leading
axis of every leaf) its own controller, by ``jax.vmap`` of the solve over the batch: a stiff
sample takes small steps without forcing them on the others, and each sample's error is
controlled on its own rather than averaged with the batch. Under ``vmap`` the loop runs
until the slowest sample has finished (finished samples are carried along masked), so the
batched cost is the largest per-sample NFE; :attr:`ODESolution.nfe_per_sample` reports each
sample's own count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import lineax
import numpy as np

from diffusionlab import _checks

_ADAPTIVE = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5}
_FIXED = {"euler": diffrax.Euler, "heun": diffrax.Heun}
SOLVERS: tuple[str, ...] = tuple(_ADAPTIVE) + tuple(_FIXED)
BATCH_MODES: tuple[str, ...] = ("shared", "per_sample")

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
      nfe: number of (batched) vector-field evaluations (int32 scalar). With
        ``batch_mode="per_sample"`` it is the largest per-sample count: the vmapped loop
        evaluates the field on the whole batch until the slowest sample has finished.
      ts: the save times (``save_trajectory + 1`` of them), or None.
      xs: the states at ``ts`` stacked on a new leading axis, or None.
      nfe_per_sample: with ``batch_mode="per_sample"``, each sample's own NFE (int32, shape
        ``(B,)``); None in shared mode, where every sample takes the batch's steps.
    """

    x: Any
    nfe: jax.Array
    ts: jax.Array | None
    xs: Any | None
    nfe_per_sample: jax.Array | None = None

    @property
    def nfe_mean(self) -> jax.Array:
        """Mean NFE over the batch (float32 scalar; equals ``nfe`` in shared mode)."""
        counts = self.nfe if self.nfe_per_sample is None else self.nfe_per_sample
        if counts.size == 0:
            return jnp.zeros((), jnp.float32)
        return jnp.mean(counts.astype(jnp.float32))

    @property
    def nfe_max(self) -> jax.Array:
        """Largest NFE over the batch (int32 scalar; equals ``nfe`` in shared mode)."""
        if self.nfe_per_sample is None or self.nfe_per_sample.size == 0:
            return self.nfe
        return jnp.max(self.nfe_per_sample)


class SDESolution(NamedTuple):
    """Result of :func:`solve_sde`: the state at ``t_end`` and the NFE of the drift."""

    x: Any
    nfe: jax.Array


def _time(value, name: str):
    """A finite real time as an array of at least float32 (a bfloat16 time cannot even
    resolve a step of 1/256 near 1)."""
    value = _checks.check_real(value, name)
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.floating) or jnp.finfo(value.dtype).bits < 32:
        value = value.astype(jnp.float32)
    return value


def _check_times(T, t_end):
    T, t_end = _time(T, "T"), _time(t_end, "t_end")
    a, b = _checks.concrete(T), _checks.concrete(t_end)
    if a is not None and b is not None and float(a) == float(b):
        raise ValueError(f"t_end must differ from T; got T = t_end = {float(a)}")
    return T, t_end


def _state(x_T, name: str = "x_T"):
    """The initial state as a pytree of float arrays of at least float32, and the caller's
    leaf dtypes (to cast the result back)."""
    if x_T is None:
        raise TypeError(f"{name} must be an array or a pytree of arrays; got None")
    leaves, treedef = jax.tree.flatten(x_T)
    if not leaves:
        raise ValueError(f"{name} must hold at least one array; got {x_T!r}")
    if isinstance(x_T, (list, tuple)) and not all(
            isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves):
        raise TypeError(f"{name} must be an array or a pytree of arrays; got a "
                        f"{type(x_T).__name__} of numbers (convert it with jnp.asarray)")
    work = [_checks.float_array(leaf, name, allow_empty=True) for leaf in leaves]
    dtypes = [getattr(leaf, "dtype", w.dtype) for leaf, w in zip(leaves, work, strict=True)]
    return jax.tree.unflatten(treedef, work), dtypes


def _restore(tree, dtypes):
    leaves, treedef = jax.tree.flatten(tree)
    out = []
    for leaf, dtype in zip(leaves, dtypes, strict=True):
        if jnp.finfo(dtype).max < jnp.finfo(leaf.dtype).max:
            big = float(jnp.finfo(dtype).max)
            leaf = jnp.clip(leaf, -big, big)  # stay finite beyond float16's range
        out.append(leaf.astype(dtype))
    return jax.tree.unflatten(treedef, out)


def _check_velocity(velocity, T, state, name: str):
    """Raises ValueError naming ``name`` unless ``velocity(t, x)`` returns the state's shapes."""
    try:
        out = jax.eval_shape(velocity, jax.ShapeDtypeStruct(T.shape, T.dtype),
                             jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state))
    except TypeError as error:
        raise TypeError(f"{name} must be a function v(t, x) of the time and the state; calling it "
                        f"failed with: {error}") from error
    want = jax.tree.map(lambda leaf: leaf.shape, state)
    got = jax.tree.map(lambda leaf: getattr(leaf, "shape", None), out)
    if jax.tree.structure(got) != jax.tree.structure(want) or got != want:
        raise ValueError(f"{name}(t, x) must return a value shaped like the state {want}; "
                         f"got {got}")


def _saveat(T, t_end, save_trajectory: int) -> diffrax.SaveAt:
    if save_trajectory == 0:
        return diffrax.SaveAt(t1=True)
    return diffrax.SaveAt(ts=jnp.linspace(T, t_end, save_trajectory + 1))


def _batch_size(state, name: str = "x_T") -> int:
    """The common leading-axis length of every leaf (the batch size of ``per_sample`` mode)."""
    shapes = [leaf.shape for leaf in jax.tree.leaves(state)]
    if any(len(shape) == 0 for shape in shapes):
        raise ValueError(f"batch_mode='per_sample' needs a batch axis: every leaf of {name} "
                         f"must have ndim ≥ 1 (samples along axis 0); got shapes {shapes}")
    sizes = {shape[0] for shape in shapes}
    if len(sizes) != 1:
        raise ValueError(f"batch_mode='per_sample' needs one batch size: every leaf of {name} "
                         f"must have the same leading axis; got shapes {shapes}")
    return sizes.pop()


def _state_bytes(state) -> int:
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state))


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
    batch_mode: str = "shared",
) -> ODESolution:
    r"""Integrates :math:`\mathrm{d}x/\mathrm{d}t = v(t, x)` from :math:`x(T) = x_T` to ``t_end``.

    Adaptive mode (``solver="tsit5"`` or ``"dopri5"``) uses a PID step-size controller with
    ``rtol``/``atol``; ``steps``, if given, only sets the first step. Fixed-step mode
    (``"euler"`` or ``"heun"``) takes exactly ``steps`` equal steps. Integration may run
    backwards (``t_end < T``), as samplers do.

    ``batch_mode="shared"`` (default) integrates the batch as one state: one adaptive step
    size, set by the error norm of the whole batch. ``batch_mode="per_sample"`` vmaps the
    solve over the leading axis, so each sample has its own PID controller, step sizes and
    NFE (see the module docstring); ``velocity`` is then called on one sample at a time, as
    a batch of one (leaves shaped ``(1, ...)``) at that sample's own time, so it must treat
    the rows of its batch independently, as every sampler's field does. With a fixed-step
    solver both modes take the same steps.

    The state and the time are integrated in at least float32; the result has ``x_T``'s
    dtypes. An empty state (every leaf of size 0) is returned as it is, with NFE 0 and
    without calling ``velocity``.

    Args:
      velocity: ``v(t, x)``, with ``x`` the whole (batched) state, an array or pytree;
        it must return the state's structure and shapes.
      x_T: the initial state at time ``T``: a float array or a pytree of float arrays
        (finite).
      T: start time (finite).
      t_end: end time (finite, ≠ T).
      solver: one of ``SOLVERS``.
      steps: number of steps (≥ 1); required for fixed-step solvers.
      rtol, atol: tolerances of the adaptive controller (> 0).
      max_steps: adaptive step budget (≥ 1); exceeding it raises at run time.
      save_trajectory: if K > 0, also return K+1 equally spaced snapshots (``ts``, ``xs``).
      batch_mode: ``"shared"`` or ``"per_sample"`` (one of ``BATCH_MODES``). Per-sample
        mode needs every leaf of ``x_T`` to have the same leading (batch) axis.

    Returns:
      An :class:`ODESolution` with the final state and the NFE (and, in per-sample mode,
      ``nfe_per_sample`` of shape ``(B,)``; ``nfe_mean``/``nfe_max`` summarise it).

    Raises:
      TypeError: a non-callable ``velocity``; ``x_T`` None, a list of numbers, or with a
        non-float dtype; non-numeric times, tolerances or counts.
      ValueError: unknown ``solver`` or ``batch_mode``; missing or non-positive ``steps``
        for a fixed-step solver; non-positive tolerances; NaN/inf in ``T``, ``t_end`` or
        (when concrete) ``x_T``; ``T == t_end``; ``velocity`` returning the wrong shapes; a
        trajectory too large for memory; or, in per-sample mode, a leaf without a batch axis
        or leaves with different leading sizes.
    """
    _checks.check_callable(velocity, "velocity")
    _checks.check_choice(solver, "solver", SOLVERS)
    if steps is not None:
        steps = _checks.check_int(steps, "steps", low=1)
    rtol = _checks.check_real(rtol, "rtol", low=0.0, low_open=True)
    atol = _checks.check_real(atol, "atol", low=0.0, low_open=True)
    max_steps = _checks.check_int(max_steps, "max_steps", low=1)
    save_trajectory = _checks.check_int(save_trajectory, "save_trajectory", low=0)
    _checks.check_choice(batch_mode, "batch_mode", BATCH_MODES)
    if solver in _FIXED and steps is None:
        raise ValueError(f"solver={solver!r} is fixed-step: pass steps (an integer ≥ 1)")
    T, t_end = _check_times(T, t_end)
    state, dtypes = _state(x_T)
    if save_trajectory:
        _checks.check_fits_memory("save_trajectory", (save_trajectory + 1) * _state_bytes(state),
                                  f"{save_trajectory + 1} snapshots of the state")
    per_sample = batch_mode == "per_sample"
    batch = _batch_size(state) if per_sample else None
    if all(leaf.size == 0 for leaf in jax.tree.leaves(state)):
        return _empty_solution(state, dtypes, T, t_end, save_trajectory, batch)
    _check_velocity(velocity, T, state, "velocity")

    def vector_field(t, x, args):
        return jax.tree.map(lambda v, y: jnp.asarray(v).astype(y.dtype), velocity(t, x), x)

    term = diffrax.ODETerm(vector_field)
    if solver in _FIXED:
        controller = diffrax.ConstantStepSize()
        dt0 = (t_end - T) / steps
        step_budget = steps
        diffrax_solver = _FIXED[solver]()
    else:
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
        dt0 = None if steps is None else (t_end - T) / steps
        step_budget = max_steps
        diffrax_solver = _ADAPTIVE[solver]()
    saveat = _saveat(T, t_end, save_trajectory)
    evals_at_start = _EVALS_AT_START[solver] + (
        _EVALS_INITIAL_STEP if solver in _ADAPTIVE and dt0 is None else 0)
    if not per_sample:
        solution = diffrax.diffeqsolve(
            term, diffrax_solver, T, t_end, dt0, state,
            saveat=saveat, stepsize_controller=controller, max_steps=step_budget,
        )
        nfe = jnp.asarray(_EVALS_PER_STEP[solver] * solution.stats["num_steps"]
                          + evals_at_start, jnp.int32)
        final = _restore(jax.tree.map(lambda leaf: leaf[-1], solution.ys), dtypes)
        if save_trajectory:
            return ODESolution(final, nfe, solution.ts, _restore(solution.ys, dtypes))
        return ODESolution(final, nfe, None, None)

    def sample_field(t, y, args):
        # One sample, presented to the batched field as a batch of one.
        out = velocity(t, jax.tree.map(lambda leaf: leaf[None], y))
        return jax.tree.map(lambda v, leaf: jnp.asarray(v)[0].astype(leaf.dtype), out, y)

    def solve_one(y0):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(sample_field), diffrax_solver, T, t_end, dt0, y0,
            saveat=saveat, stepsize_controller=controller, max_steps=step_budget,
        )
        return sol.ys, sol.stats["num_steps"]

    ys, num_steps = jax.vmap(solve_one)(state)  # ys leaves: (B, snapshots, ...)
    counts = jnp.asarray(_EVALS_PER_STEP[solver] * num_steps + evals_at_start, jnp.int32)
    final = _restore(jax.tree.map(lambda leaf: leaf[:, -1], ys), dtypes)
    nfe = jnp.max(counts)
    if save_trajectory:
        xs = _restore(jax.tree.map(lambda leaf: jnp.moveaxis(leaf, 1, 0), ys), dtypes)
        return ODESolution(final, nfe, jnp.linspace(T, t_end, save_trajectory + 1), xs, counts)
    return ODESolution(final, nfe, None, None, counts)


def _empty_solution(state, dtypes, T, t_end, save_trajectory: int,
                    batch: int | None = None) -> ODESolution:
    final = _restore(state, dtypes)
    nfe = jnp.zeros((), jnp.int32)
    counts = None if batch is None else jnp.zeros((batch,), jnp.int32)
    if not save_trajectory:
        return ODESolution(final, nfe, None, None, counts)
    ts = jnp.linspace(T, t_end, save_trajectory + 1)
    xs = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf[None], (save_trajectory + 1,) + leaf.shape),
                      final)
    return ODESolution(final, nfe, ts, xs, counts)


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

    The state is simulated in at least float32 and returned in ``x_T``'s dtype. An empty
    ``x_T`` is returned as it is, with NFE 0.

    Args:
      drift: ``f(t, x)``, returning an array shaped like ``x``.
      diffusion: ``g(t)``, a scalar (isotropic, additive noise).
      x_T: initial state (a float array of any shape, finite; every element gets its own
        Brownian motion).
      T, t_end: start and end time (finite, ≠).
      key: PRNG key of the Brownian path.
      steps: number of equal steps (≥ 1).
      solver: ``"euler"`` (Euler–Maruyama) or ``"heun"``.

    Returns:
      An :class:`SDESolution` with the state at ``t_end`` and the NFE of the drift.

    Raises:
      TypeError, ValueError: naming the bad argument (as :func:`solve_ode`), or a
        ``diffusion`` that does not return a scalar.
    """
    _checks.check_callable(drift, "drift")
    _checks.check_callable(diffusion, "diffusion")
    _checks.check_choice(solver, "solver", tuple(_FIXED))
    steps = _checks.check_int(steps, "steps", low=1)
    _checks.check_key(key)
    T, t_end = _check_times(T, t_end)
    dtype = getattr(x_T, "dtype", None)
    x_T = _checks.float_array(x_T, "x_T", allow_empty=True)
    dtype = x_T.dtype if dtype is None else dtype
    if x_T.size == 0:
        return SDESolution(_restore(x_T, [dtype]), jnp.zeros((), jnp.int32))
    shape = x_T.shape
    flat = x_T.reshape(-1)
    brownian = diffrax.UnsafeBrownianPath(shape=jax.ShapeDtypeStruct(flat.shape, flat.dtype),
                                          key=key)

    def noise(t, y, args):
        g = jnp.asarray(diffusion(t), y.dtype)
        if g.shape != ():
            raise ValueError(f"diffusion(t) must return a scalar g(t), got shape {g.shape}")
        return lineax.DiagonalLinearOperator(jnp.full(y.shape, g))

    def drift_term(t, y, args):
        out = jnp.asarray(drift(t, y.reshape(shape)))
        if out.shape != shape:
            raise ValueError(f"drift(t, x) must return an array shaped like x_T {shape}; got "
                             f"{out.shape}")
        return out.astype(y.dtype).reshape(-1)

    terms = diffrax.MultiTerm(diffrax.ODETerm(drift_term), diffrax.ControlTerm(noise, brownian))
    solution = diffrax.diffeqsolve(
        terms, _FIXED[solver](), T, t_end, (t_end - T) / steps, flat,
        max_steps=steps,
        # The fast Brownian path cannot be checkpointed for reverse-mode autodiff; sampling
        # needs none, and forward mode still allows sensitivities.
        adjoint=diffrax.ForwardMode(),
    )
    nfe = _EVALS_PER_STEP[solver] * solution.stats["num_steps"]
    return SDESolution(_restore(solution.ys[-1].reshape(shape), [dtype]),
                       jnp.asarray(nfe, jnp.int32))
