r"""The generator :math:`\mathcal L\phi=f\cdot\nabla\phi+\tfrac12 g_t^2\Delta\phi` at one point.

This is the right-hand side of the weak form

.. math:: \frac{d}{dt}\mathbb E[\phi(x_t)]=\mathbb E\big[(\mathcal L_t\phi)(x_t)\big],

obtained by Taylor-expanding :math:`\phi(x_{t+\Delta t})` to second order under Euler–Maruyama
and averaging over the noise (the second-order term survives because
:math:`\sqrt{\Delta t}^2=\Delta t`).

Reference: 苏剑林, 《测试函数法推导连续性方程和Fokker-Planck方程》, https://kexue.fm/archives/9461
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from diffusionlab.weakform.diffusion import Diffusion, DiffusionMatrix
from diffusionlab.weakform.laplacian import quadratic_form


def generator(
    phi: Callable,
    drift: Callable,
    diffusion: Diffusion,
    x_D: jax.Array,
    t: jax.Array,
    *,
    key: jax.Array,
    hutchinson: bool,
    num_probes: int = 1,
) -> jax.Array:
    r"""Evaluates :math:`(\mathcal L_t\phi_k)(x)` for every test function ``k``.

    .. math:: \mathcal L_t\phi=f_t\cdot\nabla\phi+\tfrac12\operatorname{tr}\big(GG^\top\nabla^2\phi\big),
       \qquad G=g_tI\ \text{for scalar }g_t.

    Args:
      phi: ``phi(x_D) -> (K,)``.
      drift: ``drift(x_D, t) -> (d,)``.
      diffusion: ``None`` (ODE), a scalar ``g(t)``, or a :class:`DiffusionMatrix`.
      x_D: one point ``(d,)``.
      t: time (scalar).
      key: PRNG key for the Hutchinson probes (unused otherwise).
      hutchinson: estimate the trace with Rademacher probes instead of the full Hessian.
      num_probes: probes per point when ``hutchinson``.

    Returns:
      ``(K,)`` values of :math:`\mathcal L_t\phi_k(x)`.
    """
    f_D = drift(x_D, t)
    # f·∇φ is one directional derivative along f: forward mode, no K-row Jacobian needed.
    first_K = jax.jvp(phi, (x_D,), (f_D,))[1]
    if diffusion is None:
        return first_K
    dim = x_D.shape[0]
    if isinstance(diffusion, DiffusionMatrix):
        g_DxM = diffusion.matrix(x_D, t)
        noise_dim = g_DxM.shape[1]
    else:
        g_DxM = None
        g = diffusion(t)
        noise_dim = dim
    if hutchinson:
        z_PxM = jax.random.rademacher(key, (num_probes, noise_dim), dtype=x_D.dtype)
        directions_PxD = z_PxM if g_DxM is None else z_PxM @ g_DxM.T
    else:
        # Exact trace: probe along the columns of G (or the identity), tr(GGᵀH) = Σ_j g_jᵀ H g_j.
        directions_PxD = jnp.eye(dim, dtype=x_D.dtype) if g_DxM is None else g_DxM.T
    quad_PxK = jax.vmap(lambda v: quadratic_form(phi, x_D, v))(directions_PxD)
    second_K = jnp.mean(quad_PxK, axis=0) if hutchinson else jnp.sum(quad_PxK, axis=0)
    if g_DxM is None:
        second_K = g**2 * second_K
    return first_K + 0.5 * second_K
