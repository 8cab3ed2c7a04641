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

from diffusionlab import _checks
from diffusionlab.divergence import exact_trace, hutchinson_trace
from diffusionlab.weakform._args import check_bool, single_key
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

    Raises:
      TypeError: if ``phi`` or ``drift`` is not callable, ``diffusion`` is not None, a
        callable or a :class:`DiffusionMatrix`, ``x_D`` is not a real floating array, ``t``
        not a real number, ``key`` not a PRNG key, ``hutchinson`` not a bool or
        ``num_probes`` not an integer.
      ValueError: if ``x_D`` is not one non-empty point ``(d,)``, ``x_D`` or ``t`` is NaN/inf,
        ``t`` is not a scalar, ``num_probes`` < 1, ``key`` is a batch of keys, or ``drift``
        (``diffusion.matrix``) returns the wrong shape.
    """
    _checks.check_callable(phi, "phi")
    _checks.check_callable(drift, "drift")
    if diffusion is not None and not callable(diffusion) \
            and not isinstance(diffusion, DiffusionMatrix):
        raise TypeError(f"diffusion must be None, a callable g(t) or a DiffusionMatrix; got "
                        f"{type(diffusion).__name__}")
    x_D = _checks.float_array(x_D, "x_D", ndim=1, layout="(d,)")
    _checks.check_real(t, "t")
    if jnp.issubdtype(jnp.result_type(t), jnp.floating) and jnp.finfo(jnp.result_type(t)).bits < 32:
        t = jnp.asarray(t, jnp.float32)  # half precision: compute in float32
    key = single_key(key)
    hutchinson = check_bool(hutchinson, "hutchinson")
    num_probes = _checks.check_int(num_probes, "num_probes", low=1)
    f_D = drift(x_D, t)
    if jnp.shape(f_D) != x_D.shape:
        raise ValueError(f"drift(x_D, t) must return shape {x_D.shape} for x_D of that shape; "
                         f"got {jnp.shape(f_D)}")
    # f·∇φ is one directional derivative along f: forward mode, no K-row Jacobian needed.
    first_K = jax.jvp(phi, (x_D,), (f_D,))[1]
    if diffusion is None:
        return first_K
    dim = x_D.shape[0]
    if isinstance(diffusion, DiffusionMatrix):
        g_DxM = diffusion.matrix(x_D, t)
        if jnp.ndim(g_DxM) != 2 or jnp.shape(g_DxM)[0] != dim:
            raise ValueError(f"diffusion.matrix(x_D, t) must return a ({dim}, m) matrix; got "
                             f"shape {jnp.shape(g_DxM)}")
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
    trace = hutchinson_trace if hutchinson else exact_trace
    second_K = trace(lambda v: quadratic_form(phi, x_D, v), directions_PxD)
    if g_DxM is None:
        second_K = g**2 * second_K
    return first_K + 0.5 * second_K
