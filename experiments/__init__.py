"""Experiments: one module per figure or table of the essays.

An experiment is a module ``experiments/<name>.py`` with

* ``TITLE``: one line for the report;
* ``Config``: a frozen dataclass whose defaults are the full-size run, with a
  ``quick()`` classmethod returning the small variant the test suite runs;
* ``run(config, out)``: computes, then writes through ``out`` (an
  :class:`experiments._output.Output`) figures, tables, metrics and claims.

Modules are discovered by name, so adding a file is all it takes to register one. Experiments
kept outside the repository are found too: ``DIFFUSIONLAB_EXPERIMENTS_PATH`` lists extra
folders (separated by ``os.pathsep``) whose modules join the package.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import pkgutil
import types

from experiments._output import Output

__all__ = ["Output", "names", "load", "run"]

_NOT_EXPERIMENTS = {"report"}

for _extra in filter(None, os.environ.get("DIFFUSIONLAB_EXPERIMENTS_PATH", "").split(os.pathsep)):
    if _extra not in __path__:
        __path__.append(_extra)


def names() -> list[str]:
    """Sorted names of all experiments (module names in this package and its extra folders)."""
    return sorted(
        {m.name for m in pkgutil.iter_modules(__path__)
         if not m.name.startswith("_") and m.name not in _NOT_EXPERIMENTS}
    )


def load(name: str) -> types.ModuleType:
    """Imports the experiment module ``name``; ValueError lists the valid names."""
    valid = names()
    if name not in valid:
        raise ValueError(f"unknown experiment {name!r}; valid names: {', '.join(valid)}")
    return importlib.import_module(f"experiments.{name}")


def run(name: str, *, quick: bool = False, results: str | pathlib.Path = "results") -> dict:
    """Runs one experiment and writes ``results/<name>/``; returns its metrics payload."""
    module = load(name)
    config = module.Config.quick() if quick else module.Config()
    out = Output(name=name, directory=pathlib.Path(results) / name, quick=quick)
    module.run(config, out)
    return out.finish(config)
