"""NBCE decoding speed: cached against uncached decoding, and the per-token time against n.

* ``cache_speedup_ratio``: tokens/s of KV-cached greedy decoding over decoding that
  recomputes the whole sequence every step (same model, prompts and length).
* ``per_token_seconds``: NBCE's time per generated token for n contexts (n+1 rows of length
  L), best of interleaved rounds (every n timed once per round); the goal is linear growth in
  n (``per_token_exponent`` ≈ 1 or below). ``per_token_flops``: XLA's count of one step, the
  machine-independent cost beside it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import best_time
from diffusionlab import lm
from diffusionlab.nbce.cost import decoding_program, interleaved_costs


def run(quick: bool = False) -> dict:
    # The architecture the NBCE experiments train (untrained here: speed only).
    config = (lm.LMConfig(dim=32, depth=1, num_heads=2, mlp_dim=64, shift=4) if quick
              else lm.LMTrainConfig().model)
    apply, params = lm.pure(lm.LanguageModel(config, rngs=nnx.Rngs(0)))
    batch, length, new = (2, 16, 8) if quick else (8, config.max_length - 32, 32)
    prompts = jnp.asarray(np.random.default_rng(0).integers(3, 259, (batch, length)), jnp.int32)

    cached = best_time(lambda: lm.generate(apply, params, prompts, max_new_tokens=new, eos_id=-1),
                       repeats=2 if quick else 5)
    uncached = best_time(lambda: lm.uncached_generate(apply, params, prompts, max_new_tokens=new),
                         repeats=2 if quick else 5)

    ns = (1, 4) if quick else (1, 2, 4, 8, 16, 32, 64)
    rows = {n: jnp.asarray(np.random.default_rng(n).integers(3, 259, (n + 1, config.max_length)),
                           jnp.int32) for n in ns}
    programs = {n: decoding_program(apply, params, rows[n], nbce=True, steps=4 if quick else 16)
                for n in ns}
    costs = interleaved_costs(programs, rounds=1 if quick else 5)
    per_token = [costs[n].seconds_per_token for n in ns]
    flops = [costs[n].token_flops for n in ns]
    exponent = float(np.polyfit(np.log(ns), np.log(per_token), 1)[0])
    return {
        "baseline": "uncached greedy decoding (full recompute every step)",
        "cache_speedup_ratio": uncached / cached,
        "cached_tokens_per_second": batch * new / cached,
        "uncached_tokens_per_second": batch * new / uncached,
        "nbce_n": list(ns),
        "nbce_per_token_seconds": per_token,
        "nbce_per_token_exponent": exponent,
        "nbce_per_token_flops": flops,
        "nbce_per_token_flops_exponent": float(np.polyfit(np.log(ns), np.log(flops), 1)[0]),
        "nbce_n_max_over_n1_ratio": per_token[-1] / per_token[0],
        "model": {"dim": config.dim, "depth": config.depth, "max_length": config.max_length,
                  "shift": config.shift},
        "devices": str(jax.devices()[0]),
    }
