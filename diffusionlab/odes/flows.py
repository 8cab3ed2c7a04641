r"""Straight (linear) conditional paths: conditional flow matching and rectified flow.

With :math:`T = 1` the single-point path is :math:`x_t = (1 - t)\,x_0 + t\,x_1`, so

.. math:: f_t(x_t\mid x_0) = \frac{x_t - x_0}{t} = x_1 - x_0,\qquad
          \nabla\cdot f_t = \frac dt,\qquad
          p_t(x_t\mid x_0) = p_1\Big(\frac{x_t - x_0}{t} + x_0\Big)\Big/t^d .

Conditional flow matching draws :math:`x_1\sim p_1` independently of :math:`x_0`; rectified
flow regresses :math:`x_1 - x_0` on any coupling :math:`(x_0, x_1)`, and one *reflow*
re-couples each noise :math:`x_1` with the sample the first model maps it to, which
straightens the trajectories.

Reference: 苏剑林, 《生成扩散模型漫谈（十五）：构建ODE的一般步骤（中）》,
https://kexue.fm/archives/9379 and 《生成扩散模型漫谈（十七）：构建ODE的一般步骤（下）》,
https://kexue.fm/archives/9497; Lipman et al. arXiv:2210.02747; Liu et al. arXiv:2209.03003.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from diffusionlab.odes.generate import generate


def interpolate(x0, x1, t) -> jax.Array:
    r""":math:`x_t = (1 - t)x_0 + t x_1` with ``t`` of shape ``(B,)`` broadcast over the rest."""
    t = jnp.reshape(t, t.shape + (1,) * (x0.ndim - 1))
    return (1 - t) * x0 + t * x1


def rectified_loss(velocity_model: Callable, x0, x1, *, key, t_min: float = 0.0) -> jax.Array:
    r"""Per-example rectified-flow loss :math:`\|v_\theta(x_t, t) - (x_1 - x_0)\|^2`,
    :math:`t\sim U[t_\min, 1]`, for a given coupling ``(x0, x1)``.

    Args:
      velocity_model: ``v(x, t_B)``.
      x0: data ``(B, ...)``; x1: its partner at :math:`t = 1` (same shape).
      key: PRNG key for :math:`t`.

    Returns:
      ``(B,)``.
    """
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {x0.shape}, {x1.shape}")
    t = jax.random.uniform(key, x0.shape[:1], x0.dtype, t_min, 1.0)
    residual = velocity_model(interpolate(x0, x1, t), t) - (x1 - x0)
    return jnp.sum(residual.reshape(x0.shape[0], -1) ** 2, axis=1)


def cfm_loss(velocity_model: Callable, x0, *, key) -> jax.Array:
    r"""Per-example conditional flow matching loss with straight paths and
    :math:`x_1\sim\mathcal N(0, I)` independent of :math:`x_0`."""
    key_noise, key_t = jax.random.split(key)
    x1 = jax.random.normal(key_noise, x0.shape, x0.dtype)
    return rectified_loss(velocity_model, x0, x1, key=key_t)


def reflow_pairs(velocity_fn: Callable, noise, *, solver: str = "tsit5", steps=None,
                 rtol: float = 1e-4, atol: float = 1e-4) -> tuple[jax.Array, jax.Array]:
    r"""One reflow's coupling: :math:`(\hat x_0, x_1)` with :math:`\hat x_0` the ODE image of
    the noise :math:`x_1` under ``velocity_fn`` (integrated from 1 to 0)."""
    sample = generate(velocity_fn, noise, 1.0, t_end=0.0, solver=solver, steps=steps,
                      rtol=rtol, atol=atol).samples
    return sample, noise


def conditional_log_density(x_t, t, x0, *, log_prior: Callable) -> jax.Array:
    r""":math:`\log p_t(x_t\mid x_0) = \log p_1((x_t - x_0)/t + x_0) - d\log t` (last axis
    is :math:`d`; ``log_prior`` maps points to log-densities over the last axis)."""
    d = jnp.shape(x_t)[-1]
    t = jnp.asarray(t)
    t_col = t[..., None] if t.ndim else t
    return log_prior((x_t - x0) / t_col + x0) - d * jnp.log(t)


def marginal_velocity(x, t, data, *, log_prior: Callable, weights=None) -> jax.Array:
    r"""The exact marginal velocity of straight paths for a weighted empirical :math:`p_0`:

    .. math:: f(x, t) = \frac{\sum_i w_i\,\frac{x - x_i}{t}\,p_1\big(\frac{x - x_i}{t} + x_i\big)}
                        {\sum_i w_i\,p_1\big(\frac{x - x_i}{t} + x_i\big)}

    in the log domain (so no :math:`10^{-8}` is needed in the denominator); where no atom
    is reachable (all terms zero) the velocity is 0.

    Args:
      x: ``(B, d)``; t: scalar in (0, 1]; data: ``(N, d)``;
      log_prior: ``(..., d) -> (...)`` log-density of :math:`p_1`;
      weights: ``(N,)`` atom weights (default uniform).

    Returns:
      ``(B, d)``.
    """
    n = data.shape[0]
    log_w = jnp.log(jnp.full((n,), 1.0 / n) if weights is None else jnp.asarray(weights))
    log_terms = conditional_log_density(x[:, None, :], t, data[None, :, :],
                                        log_prior=log_prior) + log_w[None, :]
    reachable = jnp.any(jnp.isfinite(log_terms), axis=1, keepdims=True)
    post = jax.nn.softmax(jnp.where(reachable, log_terms, 0.0), axis=1)
    v = (x - post @ data) / t
    return jnp.where(reachable, v, 0.0)


def uniform_log_density(low: float, high: float) -> Callable:
    r"""Log-density of :math:`U[\text{low}, \text{high}]^d` (over the last axis)."""
    if not high > low:
        raise ValueError(f"need high > low, got [{low}, {high}]")

    def log_prior(x):
        inside = jnp.all((x >= low) & (x <= high), axis=-1)
        return jnp.where(inside, -x.shape[-1] * math.log(high - low), -jnp.inf)

    return log_prior


def standard_normal_log_density(x) -> jax.Array:
    r""":math:`\log\mathcal N(x; 0, I)` over all but the leading axis."""
    flat = x.reshape(x.shape[0], -1)
    return -0.5 * jnp.sum(flat * flat, axis=1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)


def atoms_velocity(atoms=None, *, low: float = 0.0, high: float = 2.0) -> Callable:
    r"""Su's 1-D demo: the exact straight-path velocity from :math:`U[\text{low},\text{high}]` at
    :math:`t = 1` onto weighted atoms (default ``diffusionlab.data.ATOMS1D``: 0.5 with double
    weight, 1.2 and 1.7). Returns ``v(x, t)`` for ``x`` of shape ``(B, 1)``."""
    if atoms is None:
        from diffusionlab.data import ATOMS1D as atoms
    locations = jnp.array([[a] for a, _ in atoms], jnp.float32)
    weights = jnp.array([w for _, w in atoms], jnp.float32)
    log_prior = uniform_log_density(low, high)

    def velocity(x, t):
        return marginal_velocity(x, t, locations, log_prior=log_prior, weights=weights)

    return velocity
