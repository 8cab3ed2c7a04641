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

from diffusionlab import _checks
from diffusionlab.odes._checks import points, positive_time, saturating_cast, source_points
from diffusionlab.odes.pointmass import (
    field_from_sums,
    point_mass_sums,
    velocity_from_sums,
)


def _check_k(k):
    return _checks.check_real(k, "k", low=0.0, low_open=True)


def _point_field(x, t, x0, k):
    diff = x - x0
    r_sq = t * t + jnp.sum(diff * diff)
    return jnp.concatenate([jnp.reshape(t, (1,)), diff]) * r_sq ** (-0.5 * k)


def point_field(x, t, x0, *, k) -> jax.Array:
    r"""One source's field :math:`(t,\ x - x_0)\,R^{-k}` (time component first).

    Args:
      x, x0: ``(d,)``, or batches ``(..., d)`` of the same shape.
      t: > 0, a scalar or of shape ``x.shape[:-1]``.
      k: the exponent (> 0).

    Returns:
      ``(..., d + 1)``, in the inputs' dtype (computed in at least float32).

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    x, t, x0, dtype = source_points(x, t, x0)
    k = _check_k(k)
    field = jnp.vectorize(functools.partial(_point_field, k=k), signature="(d),(),(d)->(e)")
    return saturating_cast(field(x, t, x0), dtype)


def divergence(x, t, x0, *, k) -> jax.Array:
    r""":math:`\nabla_{(t,x)}\cdot G_k` by forward-mode autodiff; equals
    :math:`(d+1-k)R^{-k}`.

    Args, Raises: as :func:`point_field`.

    Returns:
      Shape ``x.shape[:-1]``, in the inputs' dtype.
    """
    x, t, x0, dtype = source_points(x, t, x0)
    k = _check_k(k)

    def one(xb, tb, x0b):
        jac = jax.jacfwd(lambda z: _point_field(z[1:], z[0], x0b, k))(
            jnp.concatenate([jnp.reshape(tb, (1,)), xb]))
        return jnp.trace(jac)

    return saturating_cast(jnp.vectorize(one, signature="(d),(),(d)->()")(x, t, x0), dtype)


@functools.partial(jax.jit, static_argnames="block")
def _sums(x, t, data, k, block):
    return point_mass_sums(x, t, data, exponent=k, block=block)


def _checked(x, t, data, k, block):
    x, data, dtype = points(x, data)
    k = _check_k(k)
    block = _checks.check_int(block, "block", low=1)
    return x, positive_time(t, x.shape[0], x.dtype, of="x"), data, k, block, dtype


def field(x, t, data, *, k, block: int = 512) -> tuple[jax.Array, jax.Array]:
    r"""The empirical power-law field :math:`-\frac1N\sum_i (x - x_i,\ t)\,R_i^{-k}`.

    Args:
      x: ``(B, d)``; t: scalar or ``(B,)``, > 0; data: ``(N, d)``; k: the exponent (> 0);
      block: masses per block (≥ 1).

    Returns:
      ``(F_x, F_t)``, shapes ``(B, d)`` and ``(B,)``, in the inputs' dtype: the magnitude is
      exact where representable and saturates at the dtype's largest value where not.

    Raises:
      TypeError, ValueError: naming the bad argument.
    """
    x, t, data, k, block, dtype = _checked(x, t, data, k, block)
    sums = _sums(x, t, data, jnp.asarray(k, x.dtype), block)
    f_x, f_t = field_from_sums(x, t, sums, log_const=-jnp.log(data.shape[0]), dtype=dtype)
    return saturating_cast(-f_x, dtype), saturating_cast(-f_t, dtype)


def velocity(x, t, data, *, k, block: int = 512) -> jax.Array:
    r""":math:`F_x/F_t = \sum_i w_i(x - x_i)/(t\sum_i w_i)` with :math:`w_i = R_i^{-k}`.

    Args, Raises: as :func:`field`.

    Returns:
      ``(B, d)``, in the inputs' dtype.
    """
    x, t, data, k, block, dtype = _checked(x, t, data, k, block)
    sums = _sums(x, t, data, jnp.asarray(k, x.dtype), block)
    return saturating_cast(velocity_from_sums(x, t, sums), dtype)
