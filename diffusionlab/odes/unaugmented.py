r"""Gravity without the extra dimension: field lines in :math:`\mathbb R^d` itself.

The field of unit masses at the data, :math:`F(x) = -\frac{1}{N}\sum_i (x - x_i)/\|x - x_i\|^d`,
is followed from a large sphere inwards. By the shell theorem, masses spread over a shell
give no field inside it, so inner data are screened by outer data and the samples collapse
onto the outskirts of the distribution: the failure that the augmentation to
:math:`\mathbb R^{d+1}` repairs.

Reference: 苏剑林, 《生成扩散模型漫谈（十三）：从万有引力到扩散模型》,
https://kexue.fm/archives/9305.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from diffusionlab import _checks
from diffusionlab.draws import uniform_on_sphere
from diffusionlab.odes._checks import dimension, points, sample_count, saturating_cast


def _direction(x, data, softening):
    # Unit vector along F(x): normalised weights in the log domain, as for the augmented field.
    d = data.shape[1]
    diff = x[:, None, :] - data[None, :, :]
    r_sq = jnp.sum(diff * diff, axis=-1) + softening * softening
    log_w = -0.5 * d * jnp.log(jnp.maximum(r_sq, 1e-30))
    w = jax.nn.softmax(log_w, axis=1)
    f = -jnp.einsum("bn,bnd->bd", w, diff)
    return f / jnp.maximum(jnp.linalg.norm(f, axis=1, keepdims=True), 1e-30)


@functools.partial(jax.jit, static_argnames="steps")
def _follow(x_start, data, length, softening, steps):
    h = length / steps

    def step(x, _):
        return x + h * _direction(x, data, softening), None

    x, _ = jax.lax.scan(step, x_start, None, length=steps)
    return x


def follow_field_lines(x_start, data, *, length, steps: int = 2000,
                       softening: float = 0.0) -> jax.Array:
    r"""Follows :math:`\mathrm dx/\mathrm ds = F/\|F\|` (unit speed) for arclength ``length``.

    A line that reaches a mass oscillates around it within one step, so the end point lies
    within ``length / steps`` of the source the line ended on.

    With point masses (``softening = 0``) every mass is a sink that absorbs an equal share
    of the flux from infinity (Gauss's law), so the empirical distribution is reproduced.
    A smooth density (``softening`` > 0 spreads each mass over a ball of that size,
    :math:`R^2 = \|x - y\|^2 + \epsilon^2`) absorbs flux everywhere, but an individual field
    line only stops at a zero of :math:`F`: the lines collapse onto the few critical points.

    Args:
      x_start: ``(B, d)`` starting points (e.g. uniform on a large sphere).
      data: ``(N, d)`` the masses.
      length: arclength to travel (> 0; at least the distance to the data).
      steps: Euler steps (≥ 1).
      softening: the smoothing length :math:`\epsilon` (≥ 0; 0: point masses).

    Returns:
      ``(B, d)`` end points, in the inputs' dtype (computed in at least float32).

    Raises:
      TypeError, ValueError: naming the bad argument, or when the ``(B, N, d)`` differences
        cannot fit in memory.
    """
    x_start, data, dtype = points(x_start, data, names=("x_start", "data"))
    length = _checks.check_real(length, "length", low=0.0, low_open=True)
    steps = _checks.check_int(steps, "steps", low=1)
    softening = _checks.check_real(softening, "softening", low=0.0)
    _checks.check_fits_memory("x_start", x_start.shape[0] * data.size * x_start.dtype.itemsize,
                              "the (B, N, d) differences to the data")
    end = _follow(x_start, data, jnp.asarray(length, x_start.dtype),
                  jnp.asarray(softening, x_start.dtype), steps)
    return saturating_cast(end, dtype)


def sample_sphere(num: int, dim: int, radius, *, key) -> jax.Array:
    """Uniform points on the sphere of ``radius`` in :math:`\\mathbb R^d`, ``(num, dim)``.

    Raises:
      TypeError, ValueError: naming the bad argument (``num ≥ 1`` and fitting in memory,
        ``dim ≥ 1``, ``radius`` finite and > 0, a PRNG ``key``).
    """
    dim = dimension(dim)
    radius = _checks.check_real(radius, "radius", low=0.0, low_open=True)
    _checks.check_key(key)
    num = sample_count(num, dim, jnp.float32)
    return uniform_on_sphere(key, num, dim, radius=radius)
