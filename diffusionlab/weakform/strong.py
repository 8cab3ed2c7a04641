r"""Pointwise (strong-form) Fokker–Planck residual for an analytic density path.

.. math:: r(x,t)=\partial_tp_t+\nabla\cdot(p_tf_t)-\tfrac12g_t^2\Delta p_t .

Dividing by :math:`p_t` gives the same condition in log space, which stays at round-off level
far in the tails where :math:`p_t` itself underflows:

.. math:: \frac{r}{p}=\partial_t\log p+\nabla\cdot f+f\cdot\nabla\log p
   -\tfrac12g_t^2\big(\Delta\log p+\|\nabla\log p\|^2\big).

For a :class:`DiffusionMatrix` the last term is
:math:`\tfrac1{2p}\sum_{ij}\partial_i\partial_j(A_{ij}p)` with :math:`A=GG^\top` (Itô).

Reference: 苏剑林, 《测试函数法推导连续性方程和Fokker-Planck方程》, https://kexue.fm/archives/9461
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from diffusionlab import _checks
from diffusionlab.weakform._args import check_bool
from diffusionlab.weakform.diffusion import DiffusionMatrix, as_diffusion


def fokker_planck_residual(
    drift: Callable,
    g,
    log_density: Callable,
    x_D: jax.Array,
    t: jax.Array,
    *,
    relative: bool = False,
) -> jax.Array:
    r"""The residual :math:`\partial_tp+\nabla\cdot(fp)-\tfrac12g_t^2\Delta p` at one point.

    Args:
      drift: ``drift(x_D, t) -> (d,)``.
      g: a number, ``g(t) -> scalar``, ``0``/``None`` (continuity equation) or a
        :class:`DiffusionMatrix`.
      log_density: ``log_density(x_D, t) -> scalar`` (normalised or not: the residual is
        linear in :math:`p`, but a time-dependent normaliser must be included).
      x_D: one point ``(d,)``.
      t: time (scalar).
      relative: return :math:`r/p` instead of :math:`r`.

    Returns:
      A scalar; zero when :math:`p_t` solves the equation.

    Raises:
      ValueError: if ``x_D`` is not one non-empty point ``(d,)``, ``x_D`` or ``t`` is NaN/inf,
        ``t`` is not a scalar, ``g`` is not a finite scalar (see :class:`DiffusionMatrix`), or
        ``drift`` / ``log_density`` return the wrong shape.
      TypeError: if ``drift`` or ``log_density`` is not callable, ``x_D`` is not a real
        floating array (half precision is computed in float32), ``t`` is not a real number,
        ``g`` has an unsupported type or ``relative`` is not a bool.
    """
    _checks.check_callable(drift, "drift")
    _checks.check_callable(log_density, "log_density")
    x_D = _checks.float_array(x_D, "x_D", ndim=1, layout="(d,)")
    _checks.check_real(t, "t")
    relative = check_bool(relative, "relative")
    diffusion = as_diffusion(g, x_D.shape[0])
    t = jnp.asarray(t, x_D.dtype)
    _check_outputs(drift, log_density, x_D, t)
    dlogp_dt = jax.grad(log_density, argnums=1)(x_D, t)
    score_D = jax.grad(log_density)(x_D, t)
    divergence = jnp.trace(jax.jacfwd(drift)(x_D, t))
    per_p = dlogp_dt + divergence + drift(x_D, t) @ score_D
    if diffusion is not None:
        hess_DxD = jax.hessian(log_density)(x_D, t)
        outer_DxD = hess_DxD + jnp.outer(score_D, score_D)  # (∂_ij p) / p
        if isinstance(diffusion, DiffusionMatrix):
            def a_matrix(y_D):
                g_DxM = diffusion.matrix(y_D, t)
                return g_DxM @ g_DxM.T

            a_DxD = a_matrix(x_D)
            da_DxDxD = jax.jacfwd(a_matrix)(x_D)               # [i, j, k] = ∂_k A_ij
            d2a = jax.jacfwd(jax.jacfwd(a_matrix))(x_D)         # [i, j, k, l] = ∂_l ∂_k A_ij
            second = (jnp.einsum("ijij->", d2a)
                      + 2.0 * jnp.einsum("ijj,i->", da_DxDxD, score_D)
                      + jnp.sum(a_DxD * outer_DxD))
        else:
            second = diffusion(t) ** 2 * jnp.trace(outer_DxD)
        per_p = per_p - 0.5 * second
    return per_p if relative else per_p * jnp.exp(log_density(x_D, t))


def _check_outputs(drift, log_density, x_D, t) -> None:
    """Raises ValueError naming ``drift`` / ``log_density`` if they return the wrong shape."""
    drift_shape = jax.eval_shape(drift, x_D, t)
    if getattr(drift_shape, "shape", None) != x_D.shape:
        raise ValueError(f"drift(x_D, t) must return shape {x_D.shape} for x_D of that shape; "
                         f"got {getattr(drift_shape, 'shape', type(drift_shape).__name__)}")
    log_p = jax.eval_shape(log_density, x_D, t)
    if getattr(log_p, "shape", None) != ():
        raise ValueError(f"log_density(x_D, t) must return a scalar; got "
                         f"{getattr(log_p, 'shape', type(log_p).__name__)}")


def continuity_residual(
    velocity: Callable, log_density: Callable, x_D: jax.Array, t: jax.Array, *,
    relative: bool = False,
) -> jax.Array:
    r"""The continuity residual :math:`\partial_tp+\nabla\cdot(pf)` at one point (``g = 0``).

    Args: as for :func:`fokker_planck_residual`, with ``velocity`` the drift.

    Raises:
      TypeError, ValueError: as for :func:`fokker_planck_residual` (``velocity`` is named
        where that function names ``drift``).
    """
    _checks.check_callable(velocity, "velocity")
    return fokker_planck_residual(velocity, None, log_density, x_D, t, relative=relative)


def strong_form_residuals(
    drift: Callable, g, log_density: Callable, *, points, times, relative: bool = True
) -> jax.Array:
    r"""The residual at every ``(time, point)`` pair, vectorised: ``(T, N)``.

    Args:
      drift, g, log_density: as for :func:`fokker_planck_residual`.
      points: ``(N, d)`` evaluation points.
      times: ``(T,)`` evaluation times.
      relative: divide by :math:`p_t(x)` (default, round-off level for a correct pair).

    Returns:
      ``(T, N)`` residuals (empty when ``points`` or ``times`` is).

    Raises:
      ValueError: if ``points`` is not ``(N, d)`` with ``d ≥ 1``, ``times`` not 1-D, either
        holds NaN/inf, the result would not fit in memory, or ``g`` is not a finite scalar.
      TypeError: if ``points`` is not a real floating array or ``times`` not a real array
        (half precision is computed in float32), a function is not callable, ``g`` has an
        unsupported type or ``relative`` is not a bool.
    """
    _checks.check_callable(drift, "drift")
    _checks.check_callable(log_density, "log_density")
    # Empty in, empty out: no points (N = 0) or no times (T = 0) give a (T, N) empty result.
    points = _checks.float_array(points, "points", ndim=2, layout="(N, d)", allow_empty=True)
    times = _checks.float_array(times, "times", ndim=1, layout="(T,)", allow_empty=True,
                                allow_int=True)
    if points.shape[1] < 1:
        raise ValueError(f"points must have shape (N, d) with d ≥ 1; got {points.shape}")
    relative = check_bool(relative, "relative")
    times = jnp.asarray(times, points.dtype)
    num_t, (num_x, dim) = times.shape[0], points.shape
    per_point = 8.0 * dim * dim + (dim**4 if isinstance(g, DiffusionMatrix) else 0)
    _checks.check_fits_memory("points" if num_x >= num_t else "times",
                              4.0 * num_t * num_x * per_point, "the per-point Hessians")
    as_diffusion(g, dim)  # validate before tracing

    def one(x_D, t):
        return fokker_planck_residual(drift, g, log_density, x_D, t, relative=relative)

    return jax.jit(jax.vmap(jax.vmap(one, in_axes=(0, None)), in_axes=(None, 0)))(points, times)
