"""The on-disk cache: trained helper models and XLA's compiled programs.

Everything here is a cache: deleting ``$DIFFUSIONLAB_CACHE`` (default
``~/.cache/diffusionlab``) costs time, never results. Helper models that are trained on first
use (the FD-digits classifier, the small LM, the UDM models of the experiments) are trained
deterministically and written once (:func:`build_once`), and compiled
programs are keyed by JAX on the program text, the compiler options, the JAX version and the
backend, so a cache hit returns exactly what a fresh compilation would.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import shutil
from collections.abc import Callable
from typing import Any

import jax


def cache_dir() -> pathlib.Path:
    """The cache root: ``$DIFFUSIONLAB_CACHE``, or ``~/.cache/diffusionlab`` when unset."""
    root = os.environ.get("DIFFUSIONLAB_CACHE") or pathlib.Path.home() / ".cache" / "diffusionlab"
    return pathlib.Path(root)


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> pathlib.Path | None:
    """Keeps XLA's compiled programs on disk, so that other processes and later runs reuse them.

    On a CPU most of a short run is compilation, and separate processes (one per experiment in
    ``make reproduce``, the workers of the test suite) compile the same programs again: the
    random-number kernels alone take seconds in each. With this cache each program is compiled
    once per machine. Every program is cached, however fast its compilation. The folder is not
    bounded in size (JAX's eviction needs the ``filelock`` package, which is not a dependency):
    a full ``make reproduce`` leaves a few hundred MB; delete it at will.

    Args:
      directory: where to keep the programs; default ``cache_dir() / "xla"``, or the folder
        already configured through ``JAX_COMPILATION_CACHE_DIR``. Setting
        ``DIFFUSIONLAB_COMPILATION_CACHE=0`` turns the cache off.

    Returns:
      The folder in use, or ``None`` when turned off.

    Raises:
      TypeError: if ``directory`` is not a path.
    """
    if os.environ.get("DIFFUSIONLAB_COMPILATION_CACHE", "1") == "0":
        return None
    if directory is not None and not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a path; got {type(directory).__name__}")
    if directory is None:
        directory = jax.config.jax_compilation_cache_dir or cache_dir() / "xla"
    folder = pathlib.Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def build_once(folder: str | os.PathLike, build: Callable[[pathlib.Path], Any]) -> Any:
    """Makes ``folder`` with ``build(staging)`` unless it exists: the one caching idiom.

    Processes that need the same trained model at once (experiments run in parallel) take an
    exclusive lock beside ``folder``: the first builds, the others wait, then find the folder.
    ``build`` writes into a staging folder that is renamed into place when it returns, so a
    folder under the final name is always complete (an interrupted build leaves only staging,
    which the next build replaces).

    Args:
      folder: the folder to make (its parent is created).
      build: ``build(staging)`` writes everything into the folder ``staging`` (created for it).

    Returns:
      What ``build`` returned, or ``None`` when ``folder`` already existed.

    Raises:
      TypeError: if ``folder`` is not a path or ``build`` not callable.
    """
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path; got {type(folder).__name__}")
    if not callable(build):
        raise TypeError(f"build must be callable; got {type(build).__name__}")
    folder = pathlib.Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if folder.exists():
            return None
        staging = folder.with_name(f"{folder.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        result = build(staging)
        os.replace(staging, folder)
        return result


def checkpoints_beside(experiment_directory: str | os.PathLike) -> pathlib.Path:
    """Where experiments keep the models they share: ``checkpoints/`` beside their result
    folders (``results/<name>/`` gives ``results/checkpoints/``), so every experiment with the
    same recipe loads one training run."""
    if not isinstance(experiment_directory, (str, os.PathLike)):
        raise TypeError(f"experiment_directory must be a path; got "
                        f"{type(experiment_directory).__name__}")
    return pathlib.Path(experiment_directory).parent / "checkpoints"
