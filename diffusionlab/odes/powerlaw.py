r"""Power-law fields :math:`(x - y, t)/R^k` in the augmented space, for any exponent :math:`k`.

For :math:`G_k = (t,\ x - x_0)\,R^{-k}` with :math:`R^2 = t^2 + \|x - x_0\|^2` in
:math:`\mathbb R^{d+1}`,

.. math:: \nabla_{(t,x)}\cdot G_k = (d + 1 - k)\,R^{-k},

so only :math:`k = d + 1` (gravity) is source-free off the data. For any other exponent the
pair :math:`(p_t, f_t p_t)` is not divergence-free and the ODE :math:`\mathrm dx/\mathrm dt
= F_x/F_t` does not carry the prior to the data distribution.

Reference: 苏剑林, 《生成扩散模型漫谈（十三）：从万有引力到扩散模型》,
https://kexue.fm/archives/9305 (why :math:`d+1`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from diffusionlab.odes.pointmass import (
    check_points,
    check_positive_time,
    field_from_sums,
    point_mass_sums,
    velocity_from_sums,
)


def point_field(x, t, x0, *, k) -> jax.Array:
    r"""One source's field :math:`(t,\ x - x_0)\,R^{-k}` (time component first), for
    ``x``, ``x0`` of shape ``(d,)`` and scalar ``t``."""
    diff = x - x0
    r_sq = t * t + jnp.sum(diff * diff)
    return jnp.concatenate([jnp.reshape(t, (1,)), diff]) * r_sq ** (-0.5 * k)


def divergence(x, t, x0, *, k) -> jax.Array:
    r""":math:`\nabla_{(t,x)}\cdot G_k` at one point, by forward-mode autodiff; equals
    :math:`(d+1-k)R^{-k}`."""
    jac = jax.jacfwd(lambda z: point_field(z[1:], z[0], x0, k=k))(
        jnp.concatenate([jnp.reshape(t, (1,)), x]))
    return jnp.trace(jac)


@functools.partial(jax.jit, static_argnames="block")
def _sums(x, t, data, k, block):
    return point_mass_sums(x, t, data, exponent=k, block=block)


def _checked(x, t, data, k):
    x, data = check_points(x, data)
    if not isinstance(k, jax.core.Tracer) and not float(k) > 0:
        raise ValueError(f"k must be > 0, got {k}")
    return x, check_positive_time(t, x.shape[0], x.dtype), data


def field(x, t, data, *, k, block: int = 512) -> tuple[jax.Array, jax.Array]:
    r"""The empirical power-law field :math:`-\frac1N\sum_i (x - x_i,\ t)\,R_i^{-k}`.

    Args:
      x: ``(B, d)``; t: scalar or ``(B,)``, > 0; data: ``(N, d)``; k: the exponent (> 0).

    Returns:
      ``(F_x, F_t)``, shapes ``(B, d)`` and ``(B,)`` (magnitude clipped to the dtype's range).
    """
    x, t, data = _checked(x, t, data, k)
    sums = _sums(x, t, data, jnp.asarray(k, x.dtype), int(block))
    f_x, f_t = field_from_sums(x, t, sums, log_const=-jnp.log(data.shape[0]))
    return -f_x, -f_t


def velocity(x, t, data, *, k, block: int = 512) -> jax.Array:
    r""":math:`F_x/F_t = \sum_i w_i(x - x_i)/(t\sum_i w_i)` with :math:`w_i = R_i^{-k}`.

    Returns:
      ``(B, d)``.
    """
    x, t, data = _checked(x, t, data, k)
    return velocity_from_sums(x, t, _sums(x, t, data, jnp.asarray(k, x.dtype), int(block)))
