r"""The three reverse kernels :math:`p(x_{s}\mid x_t, x_0=\hat x_0)` of the UDM theory essay.

Each kernel is written once, for any process (:class:`diffusionlab.udm.Process`) through its
reparameterised forward map

* ``apply(x0, t, noise)``: :math:`\mathcal F_t(x_0,\varepsilon)`,
* ``draw_noise(x0, *, key)``: :math:`\varepsilon\sim q(\varepsilon)`,
* ``invert(x0, x_t, t, *, key)``: a draw of :math:`\varepsilon` given :math:`(x_0,x_t)`, i.e.
  :math:`\mathcal F_t^{-1}(x_0,x_t)` (random only where the map leaves a symmetry, such as the
  order of edited positions of a discrete process).

Times ``t`` and ``s < t`` carry the batch shape; ``s = t - 1`` is the essay's single step, larger
jumps serve samplers with fewer steps than ``T``. All three satisfy the consistency constraint
:math:`\int p(x_s\mid x_t,x_0)p(x_t\mid x_0)dx_t=p(x_s\mid x_0)`: if
:math:`x_t=\mathcal F_t(x_0,\varepsilon)` then :math:`\mathcal F_t^{-1}(x_0,x_t)=\varepsilon\sim q`.

Every kernel checks its arguments alike and names the argument in its error: a TypeError for
a ``process`` that is not a :class:`~diffusionlab.udm.Process`, states of the wrong kind
(non-arrays; bool, integer or complex states of a continuous process; non-integer token ids
of a discrete one), non-integer times or a bad ``key``; a ValueError for NaN/inf states or
token ids outside the vocabulary (when concrete), shapes that do not match (``x0_hat``:
``batch + event_shape``, ``x_t`` the same, ``t`` and ``s`` the batch shape), ``t`` outside
``[1, T]`` or ``s`` outside ``[0, t)``.
Float states in half precision are computed (and returned) in float32.

Reference: 苏剑林, 生成扩散模型漫谈（十）：统一扩散模型（理论篇）, https://kexue.fm/archives/9262
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffusionlab import _checks as base
from diffusionlab.udm._checks import expand_time, kernel_inputs

KERNELS = ("baseline", "deterministic", "gaussian_interpolation")


def baseline_kernel(process, x_t, x0_hat, t, s, *, key):
    r"""Fresh noise: :math:`x_s=\mathcal F_s(\hat x_0,\varepsilon')`, :math:`\varepsilon'\sim q`.

    Always valid; ignores ``x_t`` (so errors in :math:`\hat x_0` are not corrected by it).
    Float states in half precision are computed (and returned) in float32.

    Raises:
      TypeError, ValueError: as every kernel (see the module docstring).
    """
    x_t, x0_hat, t, s = kernel_inputs(process, x_t, x0_hat, t, s, key)
    del x_t, t
    return process.apply(x0_hat, s, process.draw_noise(x0_hat, key=key))


def deterministic_kernel(process, x_t, x0_hat, t, s, *, key):
    r"""Reuses the noise in :math:`x_t`: :math:`x_s=\mathcal F_s(\hat x_0,\mathcal F_t^{-1}(\hat x_0,x_t))`.

    Needs a forward map invertible in :math:`\varepsilon`. ``key`` only breaks the symmetries
    the inverse leaves (it is unused by the continuous processes, but checked all the same).

    Raises:
      TypeError, ValueError: as every kernel (see the module docstring).
    """
    x_t, x0_hat, t, s = kernel_inputs(process, x_t, x0_hat, t, s, key)
    return process.apply(x0_hat, s, process.invert(x0_hat, x_t, t, key=key))


def gaussian_interpolation_kernel(process, x_t, x0_hat, t, s, *, sigma_tilde, key):
    r"""Partial refresh of Gaussian noise:

    .. math:: x_s=\mathcal F_s\Big(\hat x_0,\ \sqrt{1-\tilde\sigma^2}\,\mathcal F_t^{-1}(\hat x_0,x_t)
              +\tilde\sigma\,\varepsilon'\Big),\qquad \tilde\sigma\in[0,1].

    Needs :math:`q=\mathcal N(0,s^2I)` (any scale ``s``, which the mixture preserves).
    :math:`\tilde\sigma=0` is the deterministic kernel, :math:`\tilde\sigma=1` the baseline.

    Args:
      sigma_tilde: :math:`\tilde\sigma\in[0,1]`, a scalar or an array with the batch shape.

    Raises:
      TypeError, ValueError: as every kernel (see the module docstring); ValueError also for
        ``sigma_tilde`` outside [0, 1] or of another shape than scalar or batch (TypeError if it
        is not a real number or array).
    """
    x_t, x0_hat, t, s = kernel_inputs(process, x_t, x0_hat, t, s, key)
    base.check_real(sigma_tilde, "sigma_tilde", low=0.0, high=1.0, scalar=False)
    if jnp.shape(sigma_tilde) not in ((), jnp.shape(s)):
        raise ValueError(f"sigma_tilde must be a scalar or have the batch shape {jnp.shape(s)}; "
                         f"got shape {jnp.shape(sigma_tilde)}")
    k_inverse, k_fresh = jax.random.split(key)
    recovered = process.invert(x0_hat, x_t, t, key=k_inverse)
    fresh = process.draw_noise(x0_hat, key=k_fresh)
    sigma_tilde = expand_time(jnp.broadcast_to(sigma_tilde, jnp.shape(s)), recovered)
    sigma_tilde = sigma_tilde.astype(recovered.dtype)
    mixed = jnp.sqrt(1.0 - sigma_tilde**2) * recovered + sigma_tilde * fresh
    return process.apply(x0_hat, s, mixed)


def kernel(name: str):
    """The kernel function called ``name`` (one of :data:`KERNELS`).

    Raises:
      TypeError: if ``name`` is not a string.
      ValueError: if ``name`` is not one of :data:`KERNELS`.
    """
    base.check_choice(name, "name", KERNELS)
    table = {
        "baseline": baseline_kernel,
        "deterministic": deterministic_kernel,
        "gaussian_interpolation": gaussian_interpolation_kernel,
    }
    return table[name]
