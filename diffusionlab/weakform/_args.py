"""Argument checks used only by the weak-form package (the shared ones are in ``_checks``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import _checks


def single_key(key, name: str = "key") -> jax.Array:
    """One JAX PRNG key (a typed scalar key or a raw ``uint32[2]``), not a batch of keys.

    Raises:
      TypeError: naming ``name`` unless ``key`` is a PRNG key.
      ValueError: naming ``name`` for a batch of keys.
    """
    key = _checks.check_key(key, name)
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if key.shape != (() if typed else (2,)):
        raise ValueError(f"{name} must be a single PRNG key (jax.random.key(seed)); got a batch "
                         f"of keys of shape {key.shape}")
    return key


def check_bool(value, name: str) -> bool:
    """Returns ``value`` as a bool; TypeError naming ``name`` unless it is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}"[:200])
    return bool(value)


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
