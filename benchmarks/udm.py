"""Reverse-sampling throughput of the one-program UDM sampler against a Python loop of jitted steps.

The sampler (:func:`diffusionlab.udm.sample`) runs all its steps in one compiled loop (a
``lax.fori_loop`` with a traced step count; ``scan_*`` in the JSON names this side).

Both sides run the same computation: hot diffusion (DDPM preset) on 2-D points with a small
MLP ε-network (untrained; the cost does not depend on the weights), the same predict and
kernel code per step, the same number of steps, and the network's parameters passed in as
traced arguments on both sides (a new set of weights recompiles neither). The baseline is how
reference DDPM code samples: a Python ``for t in reversed(range(T))`` loop calling a jitted
single step ``step(params, x, t, key)``, which pays one dispatch per step. (A step that
closes over the weights bakes them in as compile-time constants: a different program, and a
recompilation for every new set of weights.) Three batch sizes: a small one, where that
per-step overhead dominates, and two large ones, where compute does.

Timings: every method is run once untimed first (its first-call time, compile included, is
reported apart as ``*_first_call_seconds``; ``*_compile_seconds`` is that minus the best run),
then the methods are interleaved round by round (alternating their order) and the best wall
time of the rounds is kept; on a shared machine the minimum is the least-disturbed run. The
per-step breakdown at each batch size:

* ``dispatch_seconds``: a jitted call with the same arguments that does almost nothing
  (``x + t``), blocked on: the fixed cost of one dispatch and result hand-back;
* ``single_step_seconds``: one call of the jitted step, blocked on: dispatch plus compute;
* ``loop_per_step_seconds`` / ``scan_per_step_seconds``: a full reverse pass over ``steps``
  (the loop does not block between steps, so its dispatch overlaps the previous step's
  compute);
* ``*_cpu_per_step_seconds``: process CPU time (all threads) per step of the best run, which
  waiting for a core under load does not inflate.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
from flax import nnx

from diffusionlab import nn, udm
from diffusionlab.udm.networks import predictor


def _timed(fn) -> tuple[float, float]:
    """(wall, process CPU) seconds of one call of ``fn``, its result blocked on."""
    wall, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    return time.perf_counter() - wall, time.process_time() - cpu


def _measure(steps: int, batch: int, rounds: int) -> dict:
    """Timings of one reverse pass of ``steps`` steps over ``batch`` points, scan and loop."""
    process = udm.HotDiffusion.ddpm(T=steps, event_shape=(2,))
    apply, params = nn.pure(nn.MLP(2, 2, hidden=64, depth=2, rngs=nnx.Rngs(0)))
    predict_x0 = predictor(process, apply, params)
    x_T = jax.random.normal(jax.random.key(0), (batch, 2))
    key = jax.random.key(1)

    def scanned():
        return udm.sample(process, predict_x0, x_T, key=key)

    @jax.jit
    def one_step(params, x, t, key):
        k_predict, k_kernel = jax.random.split(key)
        t_B = jnp.full(x.shape[:1], t)
        prediction = predictor(process, apply, params)(x, t_B)
        x0_hat = process.draw_x0(prediction, x, t_B, key=k_predict)
        return process.reverse_step(x, x0_hat, t_B, key=k_kernel)

    @jax.jit
    def trivial(params, x, t, key):
        del params, key
        return x + t

    keys = list(jax.random.split(key, steps))

    def looped():
        x = x_T
        for i, t in enumerate(range(steps, 0, -1)):
            x = one_step(params, x, t, keys[i])
        return x

    def single():
        return one_step(params, x_T, steps, keys[0])

    def dispatch():
        return trivial(params, x_T, steps, keys[0])

    methods = {"scan": scanned, "loop": looped, "single_step": single, "dispatch": dispatch}
    first = {name: _timed(fn)[0] for name, fn in methods.items()}
    wall = {name: [] for name in methods}
    cpu = {name: [] for name in methods}
    order = list(methods)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            # one full pass each for scan and loop; the short calls are repeated so that their
            # best-of is taken over as many samples as a pass has steps (capped)
            for _ in range(1 if name in ("scan", "loop") else min(steps, 50)):
                w, c = _timed(methods[name])
                wall[name].append(w)
                cpu[name].append(c)
    best = {name: min(times) for name, times in wall.items()}
    best_cpu = {name: cpu[name][wall[name].index(best[name])] for name in methods}
    out = {
        "load_average_1min": os.getloadavg()[0],
        "scan_seconds": best["scan"],
        "loop_seconds": best["loop"],
        "scan_first_call_seconds": first["scan"],
        "loop_first_call_seconds": first["loop"],
        "scan_compile_seconds": first["scan"] - best["scan"],
        # the loop's first pass compiles the step once, then runs it ``steps`` times
        "loop_compile_seconds": first["loop"] - best["loop"],
        "scan_samples_per_second": batch / best["scan"],
        "loop_samples_per_second": batch / best["loop"],
        "throughput_ratio": best["loop"] / best["scan"],
        "dispatch_seconds": best["dispatch"],
        "single_step_seconds": best["single_step"],
        "loop_per_step_seconds": best["loop"] / steps,
        "scan_per_step_seconds": best["scan"] / steps,
        "loop_cpu_per_step_seconds": best_cpu["loop"] / steps,
        "scan_cpu_per_step_seconds": best_cpu["scan"] / steps,
        "single_step_cpu_seconds": best_cpu["single_step"],
    }
    return out


def run(quick: bool = False) -> dict:
    steps = 20 if quick else 200
    batches = (64,) if quick else (64, 1024, 4096)
    rounds = 3 if quick else 9
    result = {
        "baseline": "Python loop over a jitted single reverse step (same predictor, kernel and "
                    "steps; parameters traced on both sides)",
        "steps": steps,
        "rounds": rounds,
        "timing": "best wall time over interleaved rounds; first call (compile) reported apart",
    }
    for batch in batches:
        for name, value in _measure(steps, batch, rounds).items():
            result[f"batch{batch}_{name}"] = value
    return result
