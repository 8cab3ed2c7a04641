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
      ValueError: if ``x_D`` is not 1-D or ``g`` is not a scalar (see :class:`DiffusionMatrix`).
    """
    x_D = jnp.asarray(x_D)
    if x_D.ndim != 1:
        raise ValueError(f"x_D must be one point of shape (d,), got {x_D.shape}")
    diffusion = as_diffusion(g, x_D.shape[0])
    t = jnp.asarray(t, x_D.dtype)
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


def continuity_residual(
    velocity: Callable, log_density: Callable, x_D: jax.Array, t: jax.Array, *,
    relative: bool = False,
) -> jax.Array:
    r"""The continuity residual :math:`\partial_tp+\nabla\cdot(pf)` at one point (``g = 0``)."""
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
      ``(T, N)`` residuals.

    Raises:
      ValueError: if ``points`` is not 2-D or ``times`` not 1-D.
    """
    points, times = jnp.asarray(points), jnp.asarray(times)
    if points.ndim != 2:
        raise ValueError(f"points must have shape (N, d), got {points.shape}")
    if times.ndim != 1:
        raise ValueError(f"times must be 1-D, got shape {times.shape}")
    as_diffusion(g, points.shape[1])  # validate before tracing

    def one(x_D, t):
        return fokker_planck_residual(drift, g, log_density, x_D, t, relative=relative)

    return jax.jit(jax.vmap(jax.vmap(one, in_axes=(0, None)), in_axes=(None, 0)))(points, times)
