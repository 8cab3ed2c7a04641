"""Time and memory of decoding: NBCE's ``n+1`` short rows against one long concatenated row.

NBCE runs every context as its own row of length ``<= L``, so one generated token costs a
batch of ``n+1`` short attention reads, and the KV cache holds ``(n+1)·L`` positions: both
linear in ``n``. Concatenation also caches ``≈ n·L`` positions, but its prefill attends over
the whole length, quadratic in ``n`` (Su, https://kexue.fm/archives/9617: "the cost is linear
in the number of contexts").
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from diffusionlab.lm.decode import decode, prefill
from diffusionlab.nbce.generate import nbce_decode
from diffusionlab.timing import best_time, wall_times

__all__ = ["DecodingCost", "decoding_cost"]


class DecodingCost(NamedTuple):
    """Measured cost of one decoding run.

    Attributes:
      prefill_seconds: best wall time of the prompt pass.
      seconds_per_token: best wall time of the decoding loop divided by its steps.
      cache_bytes: bytes held by the KV cache (and its masks) while decoding.
      token_seconds: every repeat's decoding time divided by its steps (the replicates
        behind ``seconds_per_token``, which is their minimum).
    """

    prefill_seconds: float
    seconds_per_token: float
    cache_bytes: int
    token_seconds: tuple[float, ...] = ()


def decoding_cost(apply, params, prompts_RxP, *, nbce: bool, steps: int = 16,
                  repeats: int = 3) -> DecodingCost:
    """Times the prefill and ``steps`` greedy decoding steps of ``prompts``.

    Args:
      apply, params: the model.
      prompts_RxP: left-padded prompts: the ``n+1`` NBCE rows, or one concatenated row.
      nbce: decode with the NBCE merge (True) or plainly (False).
      steps: decoding steps timed (both loops are scans: every step runs, EOS or not).
      repeats: timing repeats (the best is kept; every decoding repeat is in ``token_seconds``).
    """
    prompts_RxP = jnp.asarray(prompts_RxP, jnp.int32)
    # Any valid token id: after an EOS the scan still runs the model on every step, so the
    # timing does not depend on it.
    eos_id = 2
    logits, cache = prefill(apply, params, prompts_RxP, max_new_tokens=steps)
    # Greedy decoding in both loops: nothing is drawn, so no key.
    if nbce:
        def run():
            return nbce_decode(apply, params, logits, cache, max_new_tokens=steps, beta=0.25,
                               eta=0.1, top_p=0.95, temperature=1.0, eos_id=eos_id,
                               greedy=True)
    else:
        def run():
            return decode(apply, params, logits, cache, None, jnp.float32(1.0),
                          max_new_tokens=steps, eos_id=eos_id, greedy=True)
    # One untimed call first compiles and warms up each program.
    prefill_seconds = best_time(
        lambda: prefill(apply, params, prompts_RxP, max_new_tokens=steps), repeats=repeats)
    token_seconds = tuple(t / steps for t in wall_times(run, repeats=repeats))
    cache_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(cache))
    return DecodingCost(prefill_seconds, min(token_seconds), int(cache_bytes), token_seconds)
