"""Frozen dataclasses registered as pytrees, so that processes pass through ``jit``."""

from __future__ import annotations

import dataclasses

import jax


def process_dataclass(cls=None, *, data_fields: tuple[str, ...] = ()):
    """Makes ``cls`` a frozen dataclass and a pytree.

    Fields named in ``data_fields`` are leaves (traced under ``jit``: e.g. trainable encoder
    parameters); all others are static metadata, so they must be hashable and they may steer
    Python control flow (``T``, a schedule name, a degradation).
    """

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        meta = [n for n in names if n not in data_fields]
        return jax.tree_util.register_dataclass(cls, data_fields=list(data_fields), meta_fields=meta)

    return wrap if cls is None else wrap(cls)
