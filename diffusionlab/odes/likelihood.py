r"""Log-likelihood of a generative ODE by the instantaneous change of variables.

Along a trajectory of :math:`\mathrm dx/\mathrm dt = f_t(x)`,
:math:`\frac{\mathrm d}{\mathrm dt}\log p_t(x_t) = -\nabla\cdot f_t(x_t)`, so integrating
the augmented state :math:`(x_t, \Delta_t)` with :math:`\dot\Delta = \nabla\cdot f_t` from the
data up to :math:`T` gives

.. math:: \log p_{t_0}(x) = \log p_T(x_T) + \int_{t_0}^T \nabla\cdot f_t(x_t)\,\mathrm dt .

The divergence is an exact trace (:math:`d` Jacobian-vector products, for small :math:`d`)
or Hutchinson's estimate :math:`\varepsilon^\top J\varepsilon` with one Rademacher probe
per example, held fixed along the trajectory (unbiased; average independent runs to reduce
its variance).

Reference: the continuity equation, 苏剑林, 《生成扩散模型漫谈（十五）：构建ODE的一般步骤（中）》,
https://kexue.fm/archives/9379 (density along characteristics); FFJORD (Grathwohl et al.,
arXiv:1810.01367) for the Hutchinson trace.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from diffusionlab import _checks, solve
from diffusionlab.divergence import exact_divergence, hutchinson_divergence
from diffusionlab.odes._checks import float_input, saturating_cast
from diffusionlab.odes.generate import (
    as_partial,
    batch_sharding,
    check_numerics,
    check_times,
    check_velocity,
    keep_sharding,
    time_change,
)

METHODS = ("exact", "hutchinson")


class Likelihood(NamedTuple):
    """Result of :func:`log_likelihood`: ``log_prob`` ``(B,)`` (nats), the NFE, and the
    points ``x_T`` the data were carried to."""

    log_prob: jax.Array
    nfe: jax.Array
    x_T: jax.Array


@functools.partial(jax.jit, static_argnames=("log_prior", "method", "solver", "steps",
                                             "rtol", "atol", "time", "sharding"))
def _log_likelihood(velocity_fn, x, T, t_start, probe, *, log_prior, method, solver, steps,
                    rtol, atol, time, sharding):
    def augmented_velocity(state, t):
        # The velocity of (x_t, Δ_t) in the library's (state, t) order; Δ moves at ∇·v.
        z, _ = state
        if method == "exact":
            return exact_divergence(lambda y: velocity_fn(y, t), z)
        return hutchinson_divergence(lambda y: velocity_fn(y, t), z, probe)

    start, end = (t_start, T) if time == "linear" else (jnp.log(t_start), jnp.log(T))
    state = (x, jnp.zeros(x.shape[:1], x.dtype))
    sol = solve.solve_ode(time_change(augmented_velocity, time), state, start, end,
                          solver=solver, steps=steps, rtol=rtol, atol=atol)
    x_T, delta = sol.x
    log_p = jnp.asarray(log_prior(x_T))
    if log_p.shape != x.shape[:1]:
        raise ValueError(f"log_prior must map x_T {x_T.shape} to log-densities of shape "
                         f"{x.shape[:1]}; got {log_p.shape}")
    return Likelihood(keep_sharding(log_p.astype(x.dtype) + delta, sharding, axes=1), sol.nfe,
                      keep_sharding(x_T, sharding))


def log_likelihood(velocity_fn: Callable, x, T, *, log_prior: Callable, t_start: float = 0.0,
                   method: str = "exact", key=None, solver: str = "tsit5",
                   steps: int | None = None, rtol: float = 1e-5, atol: float = 1e-5,
                   time: str = "linear") -> Likelihood:
    r"""Log-density of ``x`` under the ODE model :math:`v(x, t)` with prior ``log_prior`` at ``T``.

    The trajectory, the time and the log-density are integrated in at least float32 (in
    bfloat16 a tolerance of :math:`10^{-5}` cannot be met and the log-density drifts);
    ``log_prob`` and ``x_T`` are returned in ``x``'s dtype. An empty batch ``(0, ...)``
    gives empty results with NFE 0.

    Args:
      velocity_fn: ``v(x, t)`` for the batch ``x`` (any shape with a leading batch axis) and
        a scalar ``t``; it must treat examples independently and return ``x``'s shape.
      x: ``(B, ...)`` data at ``t_start`` (finite floats). A batch placed on a mesh
        (``NamedSharding``) gives ``log_prob`` and ``x_T`` placed the same way.
      T: the prior's time (> 0).
      log_prior: ``x_T -> (B,)`` log-density of the prior; a hashable function (module level).
      t_start: the data's time, in ``[0, T)`` (> 0 for ``time="log"``).
      method: ``"exact"`` (trace by :math:`d` JVPs) or ``"hutchinson"`` (needs ``key``).
      key: PRNG key of the Rademacher probes.
      solver, steps, rtol, atol: as :func:`diffusionlab.solve.solve_ode`.
      time: ``"linear"`` or ``"log"`` (integrate in :math:`\log t`).

    Returns:
      :class:`Likelihood` with ``log_prob`` in nats.

    Raises:
      TypeError: a non-callable ``velocity_fn`` or ``log_prior``, a non-float ``x``, a bad
        ``key``, non-numeric options.
      ValueError: unknown ``method``, ``hutchinson`` without ``key``, bad times (naming
        ``T`` or ``t_start``), NaN/inf in ``x``, wrong output shapes of ``velocity_fn`` or
        ``log_prior``, or solver options rejected by :func:`diffusionlab.solve.solve_ode`.
    """
    _checks.check_callable(velocity_fn, "velocity_fn")
    _checks.check_callable(log_prior, "log_prior")
    _checks.check_choice(method, "method", METHODS)
    check_times(T, t_start, time, end_name="t_start")
    steps, rtol, atol, _ = check_numerics(solver, steps, rtol, atol, 4096)
    sharding = batch_sharding(x)
    x, dtype = float_input(x, "x")
    if x.ndim < 1:
        raise ValueError(f"x must have shape (B, ...); got {x.shape}")
    if method == "hutchinson":
        if key is None:
            raise ValueError("method='hutchinson' needs key (the probes' PRNG key)")
        _checks.check_key(key)
    if x.shape[0] == 0:
        return Likelihood(jnp.zeros((0,), dtype), jnp.zeros((), jnp.int32), x.astype(dtype))
    if x.size:
        check_velocity(velocity_fn, x, T)
    if method == "hutchinson":
        probe = jax.random.rademacher(key, x.shape, x.dtype)
    else:
        probe = jnp.zeros((), x.dtype)
    out = _log_likelihood(as_partial(velocity_fn), x, jnp.asarray(T, x.dtype),
                          jnp.asarray(t_start, x.dtype), probe, log_prior=log_prior,
                          method=method, solver=solver, steps=steps, rtol=rtol, atol=atol,
                          time=time, sharding=sharding)
    return Likelihood(saturating_cast(out.log_prob, dtype), out.nfe,
                      saturating_cast(out.x_T, dtype))


def bits_per_dim(log_prob, dim: int, *, bin_width: float) -> jax.Array:
    r"""Discrete bits per dimension of dequantised data:
    :math:`-(\log p(x) + d\log w)/(d\log 2)` with bin width :math:`w`.

    Args:
      log_prob: log-densities (any shape, finite); dim: :math:`d` ≥ 1; bin_width: > 0.

    Returns:
      Shaped like ``log_prob``, in its dtype (computed in at least float32).

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    log_prob, dtype = float_input(log_prob, "log_prob")
    dim = _checks.check_int(dim, "dim", low=1)
    bin_width = _checks.check_real(bin_width, "bin_width", low=0.0, low_open=True)
    bits = -(log_prob + dim * math.log(bin_width)) / (dim * math.log(2.0))
    return saturating_cast(bits, dtype)
