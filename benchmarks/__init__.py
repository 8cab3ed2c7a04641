"""Benchmarks: one module per measurement, each comparing against a named baseline in one run.

A benchmark is a module ``benchmarks/<name>.py`` with ``run(quick: bool = False) -> dict``.
The dict holds the measured ratio(s), the baseline's name and the raw timings;
``python -m benchmarks`` writes it to ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import importlib
import pathlib
import pkgutil

from diffusionlab.timing import best_time

__all__ = ["best_time", "load", "names"]


def names() -> list[str]:
    here = pathlib.Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def load(name: str):
    if name not in names():
        raise ValueError(f"unknown benchmark {name!r}; valid names: {', '.join(names())}")
    return importlib.import_module(f"benchmarks.{name}")
