r"""The diffusion coefficient: scalar :math:`g_t` (the essay's case) or a state-dependent matrix.

The essay derives Fokker–Planck for :math:`dx=f_t\,dt+g_t\,dw` with a **scalar**
:math:`g_t` that does not depend on :math:`x`. A state-dependent matrix
:math:`G(x,t)` is accepted only when wrapped in :class:`DiffusionMatrix`, and is always read
in the Itô sense, where the generator is
:math:`f\cdot\nabla\phi+\tfrac12\operatorname{tr}(GG^\top\nabla^2\phi)`.

Reference: 苏剑林, 《测试函数法推导连续性方程和Fokker-Planck方程》, https://kexue.fm/archives/9461
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import _checks
from diffusionlab.weakform._args import output_shape


@dataclasses.dataclass(frozen=True)
class DiffusionMatrix:
    r"""A state-dependent diffusion matrix :math:`G(x,t)\in\mathbb R^{d\times m}`, Itô form.

    .. math:: dx=f(x,t)\,dt+G(x,t)\,dw,\qquad
       \partial_tp=-\nabla\cdot(fp)+\tfrac12\sum_{ij}\partial_i\partial_j\big[(GG^\top)_{ij}p\big].

    A Stratonovich SDE :math:`dx=\tilde f\,dt+G\circ dw` must first be converted, with
    :math:`f_i=\tilde f_i+\tfrac12\sum_{jk}G_{jk}\partial_jG_{ik}`.

    Attributes:
      matrix: ``matrix(x_D, t) -> (d, m)``.

    Raises:
      TypeError: if ``matrix`` is not callable.
    """

    matrix: Callable[[jax.Array, jax.Array], jax.Array]

    def __post_init__(self):
        _checks.check_callable(self.matrix, "matrix")


Diffusion = Callable[[jax.Array], jax.Array] | DiffusionMatrix | None


def as_diffusion(g, dim: int) -> Diffusion:
    """Validates ``g`` and returns ``None`` (no noise), a scalar ``g(t)``, or a DiffusionMatrix.

    Raises:
      ValueError: if ``g`` (or ``g(t)``) is not a finite scalar, or a DiffusionMatrix returns a
        matrix whose first axis is not ``dim``.
      TypeError: if ``g`` is neither a real number, a callable nor a DiffusionMatrix, or
        ``g(t)`` (``g.matrix(x, t)``) does not return one real array.
    """
    if g is None:
        return None
    if isinstance(g, DiffusionMatrix):
        shape = output_shape(g.matrix, "g.matrix(x, t)", jax.ShapeDtypeStruct((dim,), jnp.float32),
                             jax.ShapeDtypeStruct((), jnp.float32))
        if len(shape) != 2 or shape[0] != dim:
            raise ValueError(f"g.matrix(x, t) must return a ({dim}, m) matrix, got shape {shape}")
        return g
    if callable(g):
        shape = output_shape(g, "g(t)", jax.ShapeDtypeStruct((), jnp.float32))
        if shape != ():
            raise ValueError(
                f"g(t) must return a scalar (only scalar g_t is supported; wrap a state-dependent "
                f"matrix in DiffusionMatrix), got shape {shape}"
            )
        return g
    if isinstance(g, (int, float, np.ndarray, jax.Array, np.generic)) and not isinstance(
            g, (bool, np.bool_)):
        value = _checks.concrete(g)
        if value is None:
            raise TypeError("g must be a concrete number (not traced) or a callable g(t); wrap "
                            "a traced g_t in a callable")
        if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
            raise TypeError(f"g must be a real number (or a callable t -> scalar, or a "
                            f"DiffusionMatrix), got dtype {value.dtype}")
        if value.shape != ():
            raise ValueError(
                f"g must be a scalar g_t (or a callable t -> scalar, or a DiffusionMatrix), "
                f"got an array of shape {value.shape}"
            )
        if not np.isfinite(value):
            raise ValueError(f"g must be finite, got {value}")
        constant = float(value)
        if constant == 0.0:
            return None
        return _Constant(constant)
    raise TypeError(f"g must be a real number, a callable g(t), None or a DiffusionMatrix, "
                    f"got {type(g).__name__}")


@dataclasses.dataclass(frozen=True)
class _Constant:
    """A constant scalar g, hashable so that verifications with equal g share one compile."""

    value: float

    def __call__(self, t):
        return jnp.asarray(self.value, jnp.asarray(t).dtype)
