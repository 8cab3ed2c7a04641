"""Frozen dataclasses registered as pytrees, so that processes pass through ``jit``."""

from __future__ import annotations

import dataclasses

import jax


def process_dataclass(cls=None, *, data_fields: tuple[str, ...] = ()):
    """Makes ``cls`` a frozen dataclass and a pytree.

    Fields named in ``data_fields`` are leaves (traced under ``jit``: e.g. trainable encoder
    parameters); all others are static metadata, so they must be hashable and they may steer
    Python control flow (``T``, a schedule name, a degradation).

    The static part of the tree names the class: with ``jax.tree_util.register_dataclass``
    (jax 0.10) two processes of different classes with equal metadata have equal tree
    structures, so a ``jit`` cache keyed on the structure would run one's program for the
    other (edit and mask diffusion with the same length and vocabulary, say).
    """

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        data = [n for n in names if n in data_fields]
        meta = [n for n in names if n not in data_fields]

        def flatten_with_keys(process):
            children = [(jax.tree_util.GetAttrKey(n), getattr(process, n)) for n in data]
            return children, (cls, tuple(getattr(process, n) for n in meta))

        def unflatten(aux, children):
            _, values = aux
            process = object.__new__(cls)  # no __post_init__: unflattening may hold tracers
            for name, value in zip(meta, values, strict=True):
                object.__setattr__(process, name, value)
            for name, value in zip(data, children, strict=True):
                object.__setattr__(process, name, value)
            return process

        def flatten(process):
            return [getattr(process, n) for n in data], (cls, tuple(getattr(process, n) for n in meta))

        jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
        return cls

    return wrap if cls is None else wrap(cls)
