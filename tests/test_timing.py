"""The best-of-N timer: what it calls, what it measures, what it refuses."""

import time

import jax.numpy as jnp
import pytest

from diffusionlab.timing import best_time, wall_times


def test_wall_times_calls_warmup_then_repeats_and_times_only_the_repeats():
    calls = []

    def fn():
        calls.append(len(calls))
        # The warm-up calls are slow, the timed ones fast: a timed warm-up would show.
        time.sleep(0.2 if len(calls) <= 2 else 0.01)
        return jnp.ones(3)

    seconds = wall_times(fn, repeats=3, warmup=2)
    assert len(calls) == 5
    assert len(seconds) == 3
    assert all(0.01 <= s < 0.2 for s in seconds)


def test_best_time_is_the_minimum_and_at_least_the_sleep():
    delays = iter([0.0, 0.05, 0.02, 0.08])
    best = best_time(lambda: time.sleep(next(delays)), repeats=3, warmup=1)
    assert 0.02 <= best < 0.05


@pytest.mark.parametrize("repeats, warmup", [(0, 1), (1, -1)])
def test_bad_counts_raise(repeats, warmup):
    with pytest.raises(ValueError, match="repeats"):
        wall_times(lambda: None, repeats=repeats, warmup=warmup)
