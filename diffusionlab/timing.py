"""Wall-clock timing of a call, with its results blocked on: the one best-of-N timer.

JAX dispatches asynchronously, so a call returns before its arrays are computed; every timed
call here is followed by ``jax.block_until_ready`` on its result. The first ``warmup`` calls
compile and fill caches and are not timed. The minimum over repeats is the usual estimator
of the cost itself: the other runs only add noise from the machine (Python's ``timeit``
makes the same choice).

Repeats taken back to back are not independent: whatever the machine does for a few seconds
(another process, a frequency change) moves all of one call's repeats together. To compare
several calls (one per problem size), :func:`interleaved_times` times each once per round,
so every round is one replicate of the whole comparison.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping

import jax

__all__ = ["best_time", "interleaved_times", "wall_times"]


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


def interleaved_times(fns: Mapping[Hashable, Callable[[], object]], *, rounds: int,
                      warmup: int = 1) -> dict[Hashable, list[float]]:
    """Wall times of several calls in interleaved rounds: each round times every call once.

    Every call is first run ``warmup`` times untimed (compiling it). Then, round after round,
    each is timed once, the order rotating by one place per round so that no call always
    runs first (after the pause between rounds) or last. A slow stretch of the machine then
    lands on one round of every call rather than on all repeats of one call, and a fit per
    round (:func:`diffusionlab.stats.growth_exponent` with ``per_replicate=True``) sees it
    as spread between replicates.

    Args:
      fns: calls without arguments, by any hashable key; their results are blocked on.
      rounds: timed rounds (``>= 1``).
      warmup: untimed calls of each before the first round (``>= 0``).

    Returns:
      ``{key: [seconds of round 0, round 1, ...]}`` in the keys' order.

    Raises:
      TypeError: ``fns`` not a mapping of callables.
      ValueError: an empty ``fns``, ``rounds < 1`` or ``warmup < 0``.
    """
    if not isinstance(fns, Mapping) or not all(callable(f) for f in fns.values()):
        raise TypeError("fns must be a mapping from keys to calls without arguments")
    if not fns:
        raise ValueError("fns must hold at least one call")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    keys = list(fns)
    for key in keys:
        for _ in range(warmup):
            jax.block_until_ready(fns[key]())
    seconds = {key: [0.0] * rounds for key in keys}
    for r in range(rounds):
        shift = r % len(keys)
        for key in keys[shift:] + keys[:shift]:
            start = time.perf_counter()
            jax.block_until_ready(fns[key]())
            seconds[key][r] = time.perf_counter() - start
    return seconds
