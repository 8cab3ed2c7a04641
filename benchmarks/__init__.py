"""Benchmarks: one module per measurement, each comparing against a named baseline in one run.

A benchmark is a module ``benchmarks/<name>.py`` with ``run(quick: bool = False) -> dict``.
The dict holds the measured ratio(s), the baseline's name and the raw timings;
``python -m benchmarks`` writes it to ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import importlib
import pathlib
import pkgutil
import time
from collections.abc import Callable

import jax


def names() -> list[str]:
    here = pathlib.Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def load(name: str):
    if name not in names():
        raise ValueError(f"unknown benchmark {name!r}; valid names: {', '.join(names())}")
    return importlib.import_module(f"benchmarks.{name}")


def best_time(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Best wall time in seconds of ``fn()`` over ``repeats`` runs (results blocked on)."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best
