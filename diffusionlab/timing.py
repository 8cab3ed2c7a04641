"""Wall-clock timing of a call, with its results blocked on: the one best-of-N timer.

JAX dispatches asynchronously, so a call returns before its arrays are computed; every timed
call here is followed by ``jax.block_until_ready`` on its result. The first ``warmup`` calls
compile and fill caches and are not timed. The minimum over repeats is the usual estimator
of the cost itself: the other runs only add noise from the machine (Python's ``timeit``
makes the same choice).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax

__all__ = ["best_time", "wall_times"]


def wall_times(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> list[float]:
    """Wall time in seconds of each of ``repeats`` calls ``fn()``, after ``warmup`` untimed ones.

    Args:
      fn: a call without arguments; its result (any pytree) is blocked on inside the timing.
      repeats: how many timed calls (``>= 1``).
      warmup: how many untimed calls first (``>= 0``).

    Returns:
      A list of ``repeats`` times in seconds, in the order they were measured.

    Raises:
      ValueError: if ``repeats < 1`` or ``warmup < 0``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, "
                         f"warmup={warmup}")
    for _ in range(warmup):
        jax.block_until_ready(fn())
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        seconds.append(time.perf_counter() - start)
    return seconds


def best_time(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Best wall time in seconds of ``fn()`` over ``repeats`` runs (results blocked on).

    The minimum of :func:`wall_times`; the arguments and errors are the same.
    """
    return min(wall_times(fn, repeats=repeats, warmup=warmup))
