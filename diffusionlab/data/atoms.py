"""The 1-D atom mixture of the ODE-generator essay's demo.

Su's 1-D demo (《生成扩散模型漫谈（十七）：构建ODE的一般步骤（下）》, https://kexue.fm/archives/9497)
puts the data on three atoms: 0.5 with double weight, 1.2 and 1.7.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffusionlab import _checks
from diffusionlab.data.toy2d import check_num

# (location, weight) of each atom.
ATOMS1D: tuple[tuple[float, float], ...] = ((0.5, 0.5), (1.2, 0.25), (1.7, 0.25))


def atoms1d(num: int, *, key: jax.Array) -> jax.Array:
    """Draws ``num`` points from the atom mixture ``ATOMS1D``; returns ``(num, 1)`` float32."""
    num = check_num(num, dim=1)
    _checks.check_key(key)
    locations = jnp.array([a for a, _ in ATOMS1D], jnp.float32)
    weights = jnp.array([w for _, w in ATOMS1D], jnp.float32)
    index = jax.random.choice(key, len(ATOMS1D), (int(num),), p=weights)
    return locations[index][:, None]
