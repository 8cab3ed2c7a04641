"""Argument checks used only by the weak-form package (the shared ones are in ``_checks``;
``single_key`` and ``check_bool`` are re-exported from there)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffusionlab._checks import check_bool, single_key

__all__ = ["check_bool", "output_shape", "single_key"]


def output_shape(fn, name: str, *specs) -> tuple[int, ...]:
    """The shape of ``fn(*specs)`` by abstract evaluation (nothing is computed).

    Raises:
      TypeError: naming ``name`` if the output is not a single real array.
    """
    out = jax.eval_shape(fn, *specs)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(f"{name} must return one array; got {type(out).__name__}")
    if not (jnp.issubdtype(out.dtype, jnp.floating) or jnp.issubdtype(out.dtype, jnp.integer)):
        raise TypeError(f"{name} must return real numbers; got dtype {out.dtype}")
    return tuple(out.shape)
