"""The best-of-N timer: what it calls, what it measures, what it refuses."""

import time

import jax.numpy as jnp
import pytest

from diffusionlab.timing import best_time, interleaved_times, wall_times


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


def test_interleaved_times_rotate_the_order_and_time_each_call_once_per_round():
    order = []

    def make(key, delay):
        def fn():
            order.append(key)
            time.sleep(delay)
            return jnp.zeros(())
        return fn

    seconds = interleaved_times({"a": make("a", 0.0), "b": make("b", 0.03), "c": make("c", 0.0)},
                                rounds=4, warmup=1)
    assert order[:3] == ["a", "b", "c"]  # warm-up, then the rounds rotate by one each
    assert order[3:] == list("abc" + "bca" + "cab" + "abc")
    assert list(seconds) == ["a", "b", "c"] and all(len(s) == 4 for s in seconds.values())
    assert all(0.03 <= s < 0.5 for s in seconds["b"])
    assert all(s < 0.03 for s in seconds["a"] + seconds["c"])


@pytest.mark.parametrize(("fns", "kwargs", "error", "match"), [
    ({}, {"rounds": 2}, ValueError, "at least one call"),
    ({"a": 3}, {"rounds": 2}, TypeError, "mapping from keys to calls"),
    ({"a": lambda: None}, {"rounds": 0}, ValueError, "rounds must be an integer >= 1"),
    ({"a": lambda: None}, {"rounds": 2, "warmup": -1}, ValueError, "warmup must be"),
])
def test_interleaved_times_bad_arguments(fns, kwargs, error, match):
    with pytest.raises(error, match=match):
        interleaved_times(fns, **kwargs)
