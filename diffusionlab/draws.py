r"""Draws from the laws that several modules share: uniform on a sphere, multivariate Cauchy.

Both are ratios of standard normals, so they are exact and cheap to compile:

* a Gaussian vector is isotropic, so :math:`g/\|g\|` is uniform on :math:`S^{d-1}`;
* :math:`g/|s|` with :math:`s\sim\mathcal N(0, 1)` independent has density
  :math:`\propto(1 + \|z\|^2)^{-(d+1)/2}`, the standard multivariate Cauchy (a Student-t
  with one degree of freedom: :math:`|s| = \sqrt{\chi^2_1}`).

The arguments are assumed valid here (shapes are Python ints); the public functions that
call these validate their own inputs and name them in their errors.

Reference: 苏剑林, 《生成扩散模型漫谈（十三）：从万有引力到扩散模型》,
https://kexue.fm/archives/9305 (the prior and the conditional of the gravity ODE).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["multivariate_cauchy", "uniform_on_sphere"]


def _check_shape(num: int, dim: int) -> None:
    if num < 0 or dim < 1:
        raise ValueError(f"need num >= 0 and dim >= 1; got num={num}, dim={dim}")


def uniform_on_sphere(key, num: int, dim: int, *, radius=1.0, dtype=float) -> jax.Array:
    r"""``num`` points uniform on the sphere of ``radius`` in :math:`\mathbb R^d`:
    :math:`x = r\,g/\|g\|`, :math:`g\sim\mathcal N(0, I_d)`.

    Args:
      key: PRNG key (one ``jax.random.normal`` draw of shape ``(num, dim)``).
      num: number of points (≥ 0); dim: :math:`d` (≥ 1).
      radius: a scalar, or an array broadcasting against ``(num, 1)`` (one radius per
        point, e.g. ``r[:, None]``). It multiplies :math:`g` before the division.
      dtype: float dtype of the draw (``float``: JAX's default float).

    Returns:
      ``(num, dim)``; each row has norm ``radius`` up to rounding.

    Raises:
      ValueError: ``num < 0`` or ``dim < 1``.
    """
    _check_shape(num, dim)
    g = jax.random.normal(key, (num, dim), dtype)
    return radius * g / jnp.linalg.norm(g, axis=1, keepdims=True)


def multivariate_cauchy(key, num: int, dim: int, *, scale=1.0, dtype=float) -> jax.Array:
    r"""``num`` draws of :math:`\sigma z`, :math:`z` standard multivariate Cauchy in
    :math:`\mathbb R^d`: :math:`z = g/|s|`, density
    :math:`\frac{\Gamma(\frac{d+1}2)}{\pi^{(d+1)/2}}(1 + \|z\|^2)^{-(d+1)/2}`.

    The radius :math:`\|z\|` has the heavy tail :math:`\propto r^{-2}`: no mean, no variance.

    Args:
      key: PRNG key; split once into the key of :math:`g` ``(num, dim)`` and of :math:`s`
        ``(num, 1)``, in that order.
      num: number of draws (≥ 0); dim: :math:`d` (≥ 1).
      scale: :math:`\sigma`, a scalar or an array broadcasting against ``(num, 1)``. It
        multiplies :math:`g` before the division.
      dtype: float dtype of the draw (``float``: JAX's default float).

    Returns:
      ``(num, dim)``. The tail is heavy: in a narrow dtype a draw can overflow, and it is
      infinite where :math:`s` is exactly 0. Callers that need finite values saturate.

    Raises:
      ValueError: ``num < 0`` or ``dim < 1``.
    """
    _check_shape(num, dim)
    key_g, key_s = jax.random.split(key)
    g = jax.random.normal(key_g, (num, dim), dtype)
    s = jax.random.normal(key_s, (num, 1), dtype)
    return scale * g / jnp.abs(s)
