"""The default family of test functions: Gaussian bumps and random Fourier features.

The weak form holds for *every* smooth test function, so a verifier needs a family rich
enough that a wrong drift or diffusion moves at least one of its expectations. Bumps are
local (compactly supported in effect, so boundary terms vanish even for heavy tails) and
Fourier features are global and bounded; together they probe both position and shape.

Reference: 苏剑林, 《测试函数法推导连续性方程和Fokker-Planck方程》, https://kexue.fm/archives/9461
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from diffusionlab import _checks
from diffusionlab.weakform._args import single_key


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TestFunctions:
    r"""A vector of test functions :math:`\phi_k:\mathbb R^d\to\mathbb R`, evaluated at one point.

    .. math::
        \phi^{\rm bump}_k(x)=\exp\!\Big(-\frac{\|x-c_k\|^2}{2w_k^2}\Big),\qquad
        \phi^{\rm Fourier}_k(x)=\cos(\omega_k\cdot x+b_k).

    Attributes:
      centers: ``(B, d)`` bump centres :math:`c_k`.
      widths: ``(B,)`` bump widths :math:`w_k > 0`.
      frequencies: ``(F, d)`` Fourier frequencies :math:`\omega_k`.
      phases: ``(F,)`` Fourier phases :math:`b_k`.
    """

    __test__ = False  # not a pytest class, despite its name

    centers: jax.Array
    widths: jax.Array
    frequencies: jax.Array
    phases: jax.Array

    @property
    def names(self) -> tuple[str, ...]:
        """One readable name per test function, in output order."""
        return tuple(f"bump{k}" for k in range(self.centers.shape[0])) + tuple(
            f"fourier{k}" for k in range(self.frequencies.shape[0])
        )

    def __len__(self) -> int:
        return self.centers.shape[0] + self.frequencies.shape[0]

    def __call__(self, x_D: jax.Array) -> jax.Array:
        """All test functions at one point ``x_D``; returns ``(B + F,)``.

        Raises:
          TypeError: if ``x_D`` is not a real floating array (half precision is computed in
            float32).
          ValueError: if ``x_D`` is not one point ``(d,)`` of the functions' dimension, or
            holds NaN/inf.
        """
        dim = self.frequencies.shape[-1]
        x_D = _checks.float_array(x_D, "x_D", shape=(dim,))
        sq_B = jnp.sum((x_D[None, :] - self.centers) ** 2, axis=-1)
        bumps_B = jnp.exp(-0.5 * sq_B / self.widths**2)
        fourier_F = jnp.cos(self.frequencies @ x_D + self.phases)
        return jnp.concatenate([bumps_B, fourier_F])


def default_test_functions(
    dim: int,
    *,
    key: jax.Array,
    num: int = 10,
    scale: float | jax.Array = 1.0,
    centers: jax.Array | None = None,
) -> TestFunctions:
    r"""Half Gaussian bumps, half random Fourier features, scaled to the data.

    The length scale grows like :math:`(2d)^{1/4}` so that in high dimension
    :math:`\|x-c\|^2/(2w^2)` and :math:`\omega\cdot x` still vary by :math:`O(1)` across samples
    (instead of every bump underflowing to zero):

    .. math::
        w^2=s^2\sqrt{2d},\qquad \omega\sim\mathcal N\big(0,\,I/(s^2\sqrt{2d})\big),\qquad
        b\sim\mathcal U[0,2\pi).

    Args:
      dim: dimension ``d`` of the state.
      key: PRNG key.
      num: total number of test functions (``num // 2`` bumps, the rest Fourier).
      scale: per-coordinate spread ``s`` of the data.
      centers: ``(≥ num // 2, d)`` points to centre the bumps on (e.g. samples of
        :math:`p_t`); default :math:`\mathcal N(0, s^2 I)` draws.

    Returns:
      A :class:`TestFunctions`.

    Raises:
      TypeError: if ``dim`` or ``num`` is not an integer, ``key`` is not a PRNG key, ``scale``
        is not a real number or ``centers`` is not a real floating array.
      ValueError: if ``dim`` or ``num`` is < 1 (or too large for memory), ``scale`` is not a
        finite positive scalar, ``key`` is a batch of keys, or ``centers`` has the wrong shape
        or holds NaN/inf.
    """
    dim = _checks.check_int(dim, "dim", low=1)
    num = _checks.check_int(num, "num", low=1)
    key = single_key(key)
    _checks.check_real(scale, "scale", low=0, low_open=True)
    scale = jnp.asarray(scale, jnp.float32)
    _checks.check_fits_memory("dim" if dim >= num else "num", 4.0 * 4 * num * dim,
                              f"{num} test functions in dimension {dim}")
    num_bumps = num // 2
    if centers is not None:
        centers = jnp.asarray(_checks.float_array(centers, "centers", ndim=2, allow_empty=True),
                              jnp.float32)
        if centers.shape[1] != dim or centers.shape[0] < num_bumps:
            raise ValueError(
                f"centers must have shape (≥ {num_bumps}, {dim}), got {centers.shape}"
            )
    return scaled_test_functions(dim, key=key, num=num, scale=scale, centers=centers)


def scaled_test_functions(dim: int, *, key, num: int, scale, centers=None) -> TestFunctions:
    """:func:`default_test_functions` without validation, so that it can run under ``jit``."""
    num_bumps, num_fourier = num // 2, num - num // 2
    key_c, key_w, key_b = jax.random.split(key, 3)
    length2 = scale**2 * math.sqrt(2.0 * dim)
    if centers is None:
        centers = scale * jax.random.normal(key_c, (num_bumps, dim))
    centers = centers[:num_bumps]
    return TestFunctions(
        centers=centers,
        widths=jnp.full((num_bumps,), jnp.sqrt(length2)),
        frequencies=jax.random.normal(key_w, (num_fourier, dim)) / jnp.sqrt(length2),
        phases=jax.random.uniform(key_b, (num_fourier,), maxval=2 * jnp.pi),
    )
