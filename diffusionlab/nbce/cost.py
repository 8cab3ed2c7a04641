"""Time and memory of decoding: NBCE's ``n+1`` short rows against one long concatenated row.

NBCE runs every context as its own row of length ``<= L``, so one generated token costs a
batch of ``n+1`` short attention reads, and the KV cache holds ``(n+1)·L`` positions: both
linear in ``n``. Concatenation also caches ``≈ n·L`` positions, but its prefill attends over
the whole length, quadratic in ``n`` (Su, https://kexue.fm/archives/9617: "the cost is linear
in the number of contexts").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp

from diffusionlab.lm.decode import decode, prefill
from diffusionlab.nbce.generate import nbce_decode
from diffusionlab.operation_count import operation_count
from diffusionlab.timing import interleaved_times, wall_times

__all__ = ["DecodingCost", "DecodingProgram", "decoding_cost", "decoding_program",
           "interleaved_costs", "measure", "prefilled_program"]


class DecodingCost(NamedTuple):
    """Measured cost of one decoding run.

    Attributes:
      prefill_seconds: best wall time of the prompt pass.
      seconds_per_token: best wall time of the decoding loop divided by its steps.
      cache_bytes: bytes held by the KV cache (and its masks) while decoding.
      token_seconds: every repeat's (or round's) decoding time divided by its steps (the
        replicates behind ``seconds_per_token``, which is their minimum).
      token_flops: floating-point operations of one decoding step (model call and token
        choice), XLA's count of the traced loop
        (:func:`diffusionlab.operation_count.operation_count`); NaN where not counted.
    """

    prefill_seconds: float
    seconds_per_token: float
    cache_bytes: int
    token_seconds: tuple[float, ...] = ()
    token_flops: float = math.nan


class DecodingProgram(NamedTuple):
    """One way of decoding one prompt set, prefilled and ready to time.

    Attributes:
      prefill: the prompt pass, a call without arguments.
      decode: ``steps`` decoding steps from the prefilled state, a call without arguments.
      steps: the decoding steps ``decode`` runs (every one, EOS or not: both loops are scans).
      cache_bytes: bytes of the cache (and its masks) the decoding holds.
      token_flops: XLA's count of the floating-point operations of one decoding step.
    """

    prefill: Callable[[], object]
    decode: Callable[[], object]
    steps: int
    cache_bytes: int
    token_flops: float


def prefilled_program(params, run_prefill: Callable[[], tuple], decode_steps: Callable, *,
                      steps: int) -> DecodingProgram:
    """Prefills once and returns the :class:`DecodingProgram` of a decoder.

    Args:
      params: the model's parameters (an argument of the counted step, not a constant of it).
      run_prefill: ``() -> (logits, state)``, the prompt pass with room for ``steps`` tokens.
      decode_steps: ``(params, logits, state, max_new_tokens) -> tokens``, the decoding loop.
      steps: decoding steps timed (``>= 1``).

    Raises:
      ValueError: ``steps < 1``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
    logits, state = run_prefill()
    # The loop body (one step) counts once, whatever the number of steps; what runs outside
    # the loop (reading the prefilled logits) adds a little, the same for every step count.
    flops = operation_count(lambda p, lg, st: decode_steps(p, lg, st, steps), params, logits,
                            state)
    return DecodingProgram(
        prefill=run_prefill, decode=lambda: decode_steps(params, logits, state, steps),
        steps=steps, cache_bytes=int(sum(leaf.nbytes for leaf in jax.tree.leaves(state))),
        token_flops=flops)


def decoding_program(apply, params, prompts_RxP, *, nbce: bool, steps: int = 16) -> DecodingProgram:
    """NBCE's decoding of its ``n+1`` rows (``nbce=True``) or plain greedy decoding of one
    concatenated row (``nbce=False``), prefilled with room for ``steps`` tokens.

    Args:
      apply, params: the model.
      prompts_RxP: left-padded prompts: the ``n+1`` NBCE rows, or one concatenated row.
      nbce: decode with the NBCE merge (True) or plainly (False).
      steps: decoding steps timed, ``>= 1`` (both loops are scans: every step runs, EOS or
        not).

    Raises:
      ValueError: ``steps < 1``.
    """
    prompts_RxP = jnp.asarray(prompts_RxP, jnp.int32)
    # Any valid token id: after an EOS the scan still runs the model on every step, so the
    # timing does not depend on it. Greedy decoding in both loops: nothing is drawn, no key.
    eos_id = 2

    def run_prefill():
        return prefill(apply, params, prompts_RxP, max_new_tokens=steps)

    if nbce:
        def decode_steps(params, logits, cache, max_new_tokens):
            return nbce_decode(apply, params, logits, cache, max_new_tokens=max_new_tokens,
                               beta=0.25, eta=0.1, top_p=0.95, temperature=1.0, eos_id=eos_id,
                               greedy=True)
    else:
        def decode_steps(params, logits, cache, max_new_tokens):
            return decode(apply, params, logits, cache, None, jnp.float32(1.0),
                          max_new_tokens=max_new_tokens, eos_id=eos_id, greedy=True)
    return prefilled_program(params, run_prefill, decode_steps, steps=steps)


def measure(decoding: DecodingProgram, *, repeats: int = 3) -> DecodingCost:
    """Times a program's prefill and decoding ``repeats`` times each, back to back (after one
    untimed call each, which compiles and warms up). To compare programs, prefer
    :func:`interleaved_costs`."""
    prefill_seconds = min(wall_times(decoding.prefill, repeats=repeats))
    token_seconds = tuple(t / decoding.steps for t in wall_times(decoding.decode, repeats=repeats))
    return DecodingCost(prefill_seconds, min(token_seconds), decoding.cache_bytes, token_seconds,
                        decoding.token_flops)


def decoding_cost(apply, params, prompts_RxP, *, nbce: bool, steps: int = 16,
                  repeats: int = 3) -> DecodingCost:
    """Times the prefill and ``steps`` greedy decoding steps of ``prompts`` (see
    :func:`decoding_program`, whose arguments these are; ``repeats``: timing repeats, the
    best kept, every decoding repeat in ``token_seconds``)."""
    return measure(decoding_program(apply, params, prompts_RxP, nbce=nbce, steps=steps),
                   repeats=repeats)


def interleaved_costs(programs: Mapping[Hashable, DecodingProgram], *,
                      rounds: int) -> dict[Hashable, DecodingCost]:
    """Times every program's prefill and decoding once per round, interleaved
    (:func:`diffusionlab.timing.interleaved_times`), so that round ``r`` of every program is
    one replicate of the whole comparison: ``token_seconds[r]`` of each come from the same
    stretch of the machine's time.

    Args:
      programs: :class:`DecodingProgram` by key (e.g. ``(method, n)``).
      rounds: timed rounds (``>= 1``).

    Returns:
      ``{key: DecodingCost}``: best prefill and per-token time over the rounds, every round's
      per-token time in ``token_seconds`` (round order), and the program's counts.

    Raises:
      TypeError, ValueError: as :func:`~diffusionlab.timing.interleaved_times`.
    """
    if not isinstance(programs, Mapping) or not all(
            isinstance(p, DecodingProgram) for p in programs.values()):
        raise TypeError("programs must be a mapping of DecodingProgram")
    calls = {}
    for key, p in programs.items():
        calls[(key, "prefill")] = p.prefill
        calls[(key, "decode")] = p.decode
    seconds = interleaved_times(calls, rounds=rounds)
    costs = {}
    for key, p in programs.items():
        token_seconds = tuple(t / p.steps for t in seconds[(key, "decode")])
        costs[key] = DecodingCost(min(seconds[(key, "prefill")]), min(token_seconds),
                                  p.cache_bytes, token_seconds, p.token_flops)
    return costs
