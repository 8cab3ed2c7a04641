r"""Second-order terms of the generator by autodiff: exact trace or Hutchinson's estimator.

For a vector of test functions :math:`\phi:\mathbb R^d\to\mathbb R^K` and a symmetric
diffusion matrix :math:`A=GG^\top` the generator needs :math:`\operatorname{tr}(A\nabla^2\phi_k)`
(:math:`A=I` gives the Laplacian :math:`\Delta\phi_k`). In low dimension the full Hessian is
cheap; in high dimension Hutchinson's identity

.. math:: \operatorname{tr}(GG^\top H)=\mathbb E_z\big[(Gz)^\top H\,(Gz)\big],\qquad
   \mathbb E[zz^\top]=I,

needs one second directional derivative per probe. Both are taken forward-over-forward
(:math:`v^\top\nabla^2\phi\,v=\partial_s^2\phi(x+sv)`), which costs a few evaluations of
:math:`\phi` whatever the number ``K`` of test functions, where a reverse-mode Jacobian would
cost ``K`` backward passes per point.

Reference: 苏剑林, 《测试函数法推导连续性方程和Fokker-Planck方程》, https://kexue.fm/archives/9461
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from diffusionlab import _checks
from diffusionlab.divergence import exact_trace, hutchinson_trace
from diffusionlab.weakform._args import single_key


def directional_derivatives(phi: Callable, x_D: jax.Array,
                            v_D: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""Returns :math:`(v\cdot\nabla\phi(x),\ v^\top\nabla^2\phi(x)\,v)`, both ``(K,)``."""

    def along(y_D):
        return jax.jvp(phi, (y_D,), (v_D,))[1]

    return jax.jvp(along, (x_D,), (v_D,))


def exact_laplacian(phi: Callable, x_D: jax.Array) -> jax.Array:
    r"""The Laplacian :math:`\Delta\phi_k(x)=\operatorname{tr}\nabla^2\phi_k(x)` of each output.

    Args:
      phi: ``phi(x_D) -> (K,)`` (or a scalar, giving a scalar result).
      x_D: one point, ``(d,)``.

    Returns:
      ``(K,)`` Laplacians.

    Raises:
      TypeError: if ``phi`` is not callable or ``x_D`` is not a real floating array.
      ValueError: if ``x_D`` is not one non-empty point ``(d,)`` or holds NaN/inf.
    """
    _checks.check_callable(phi, "phi")
    x_D = _checks.float_array(x_D, "x_D", ndim=1, layout="(d,)")
    basis_DxD = jnp.eye(x_D.shape[0], dtype=x_D.dtype)
    return exact_trace(lambda e: quadratic_form(phi, x_D, e), basis_DxD)


def hutchinson_laplacian(
    phi: Callable, x_D: jax.Array, *, key: jax.Array, num_probes: int = 1
) -> jax.Array:
    r"""Unbiased Hutchinson estimate of :math:`\Delta\phi_k(x)` with Rademacher probes.

    .. math:: \widehat{\Delta\phi}=\frac1P\sum_{p=1}^P v_p^\top\nabla^2\phi(x)\,v_p,\qquad
       v_p\in\{-1,1\}^d\ \text{uniform}.

    Args:
      phi: ``phi(x_D) -> (K,)``.
      x_D: one point, ``(d,)``.
      key: PRNG key for the probes.
      num_probes: number of probes ``P`` (≥ 1).

    Returns:
      ``(K,)`` estimates; their mean over keys is the exact Laplacian.

    Raises:
      TypeError: if ``phi`` is not callable, ``x_D`` is not a real floating array, ``key`` is
        not a PRNG key or ``num_probes`` is not an integer.
      ValueError: if ``x_D`` is not one non-empty point ``(d,)`` or holds NaN/inf,
        ``num_probes`` < 1 (or too large for memory), or ``key`` is a batch of keys.
    """
    _checks.check_callable(phi, "phi")
    x_D = _checks.float_array(x_D, "x_D", ndim=1, layout="(d,)")
    key = single_key(key)
    num_probes = _checks.check_int(num_probes, "num_probes", low=1)
    _checks.check_fits_memory("num_probes", 4.0 * 4 * num_probes * x_D.shape[0],
                              f"{num_probes} probes")
    probes_PxD = jax.random.rademacher(key, (num_probes, x_D.shape[0]), dtype=x_D.dtype)
    return hutchinson_trace(lambda v: quadratic_form(phi, x_D, v), probes_PxD)


def quadratic_form(phi: Callable, x_D: jax.Array, v_D: jax.Array) -> jax.Array:
    r""":math:`v^\top\nabla^2\phi_k(x)\,v` for each output ``k``; ``(K,)``."""
    return directional_derivatives(phi, x_D, v_D)[1]
