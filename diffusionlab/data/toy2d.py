"""Two-dimensional toy distributions, as pure functions of a key.

Each sampler returns ``(num, 2)`` float32 points scaled to roughly unit standard deviation,
so that one set of hyperparameters (noise schedules, learning rates) serves them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from diffusionlab import _checks


def eight_gaussians(num: int, *, key: jax.Array) -> jax.Array:
    """Eight isotropic Gaussians (std 0.1) centred on a circle of radius 1.4."""
    k_center, k_noise = jax.random.split(key)
    angles = 2 * math.pi * jax.random.randint(k_center, (num,), 0, 8) / 8
    centers = 1.4 * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)
    return centers + 0.1 * jax.random.normal(k_noise, (num, 2))


def two_moons(num: int, *, key: jax.Array) -> jax.Array:
    """Two interleaved half circles with Gaussian jitter (std 0.05), centred and scaled."""
    k_side, k_angle, k_noise = jax.random.split(key, 3)
    side = jax.random.bernoulli(k_side, 0.5, (num,))
    angle = math.pi * jax.random.uniform(k_angle, (num,))
    upper = jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
    lower = jnp.stack([1 - jnp.cos(angle), 0.5 - jnp.sin(angle)], axis=-1)
    x = jnp.where(side[:, None], upper, lower) + 0.05 * jax.random.normal(k_noise, (num, 2))
    return (x - jnp.array([[0.5, 0.25]])) / jnp.array([[0.87, 0.5]])


def swiss_roll(num: int, *, key: jax.Array) -> jax.Array:
    """The 2-D Swiss roll: r = s, angle = s, s ~ U[1.5π, 4.5π], jitter std 0.25 (pre-scale)."""
    k_s, k_noise = jax.random.split(key)
    s = 1.5 * math.pi * (1 + 2 * jax.random.uniform(k_s, (num,)))
    x = jnp.stack([s * jnp.cos(s), s * jnp.sin(s)], axis=-1)
    return (x + 0.25 * jax.random.normal(k_noise, (num, 2))) / 7.0


def checkerboard(num: int, *, key: jax.Array) -> jax.Array:
    """Uniform on the 8 dark squares of a 4×4 checkerboard on [-2, 2]², scaled by 1/1.15."""
    k_x, k_y, k_col = jax.random.split(key, 3)
    x = 4 * jax.random.uniform(k_x, (num,)) - 2
    column = jax.random.randint(k_col, (num,), 0, 2)
    # Square row parity must differ from the column parity of x for a "dark" square.
    y = jax.random.uniform(k_y, (num,)) + 2 * column.astype(jnp.float32) - 2
    y = y + (jnp.floor(x) % 2)
    return jnp.stack([x, y], axis=-1) / 1.15


def rings(num: int, *, key: jax.Array) -> jax.Array:
    """Three concentric rings of radii 0.5, 1.0, 1.5 (points ∝ radius), jitter std 0.04."""
    k_ring, k_angle, k_noise = jax.random.split(key, 3)
    radii = jnp.array([0.5, 1.0, 1.5])
    ring = jax.random.choice(k_ring, 3, (num,), p=radii / radii.sum())
    angle = 2 * math.pi * jax.random.uniform(k_angle, (num,))
    x = radii[ring][:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
    return x + 0.04 * jax.random.normal(k_noise, (num, 2))


_SAMPLERS: dict[str, Callable[..., jax.Array]] = {
    "8gaussians": eight_gaussians,
    "two_moons": two_moons,
    "swiss_roll": swiss_roll,
    "checkerboard": checkerboard,
    "rings": rings,
}
TOY2D_NAMES: tuple[str, ...] = tuple(_SAMPLERS)


def toy2d(name: str, num: int, *, key: jax.Array) -> jax.Array:
    """Draws ``num`` points from the 2-D toy distribution ``name``.

    Args:
      name: one of ``TOY2D_NAMES``.
      num: number of points, ≥ 1.
      key: a PRNG key.

    Returns:
      A ``(num, 2)`` float32 array.

    Raises:
      ValueError: for an unknown ``name`` (the message lists the valid ones) or ``num < 1``.
    """
    if not isinstance(name, str) or name not in _SAMPLERS:
        raise (ValueError if isinstance(name, str) else TypeError)(
            f"unknown toy dataset name={name!r}; valid names: {', '.join(TOY2D_NAMES)}")
    num = check_num(num)
    _checks.check_key(key)
    return _SAMPLERS[name](num, key=key).astype(jnp.float32)


def check_num(num, *, dim: int = 2) -> int:
    """``num`` as an int ≥ 1 whose ``(num, dim)`` float32 draws (and temporaries) fit in memory."""
    num = _checks.check_int(num, "num", low=1)
    _checks.check_fits_memory("num", 16.0 * num * dim, f"{num} points")
    return num
