"""Reverse-sampling throughput of the ``lax.scan`` UDM sampler against a Python loop of jitted steps.

Both sides run the same computation: hot diffusion (DDPM preset) on 2-D points with a small
MLP ε-network (untrained; the cost does not depend on the weights), the same predict and
kernel code per step, the same number of steps. The baseline is how reference DDPM code
samples: a Python ``for t in reversed(range(T))`` loop calling a jitted single step, which
pays one dispatch (and a host round trip for the loop bookkeeping) per step. Two batch sizes:
a small one, where that per-step overhead dominates, and a large one, where compute does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks import best_time
from diffusionlab import nn, udm
from diffusionlab.udm.networks import predictor


def _measure(steps: int, batch: int, repeats: int) -> tuple[float, float]:
    """Best wall times (scan, loop) of one reverse pass of ``steps`` steps over ``batch`` points."""
    process = udm.HotDiffusion.ddpm(T=steps, event_shape=(2,))
    apply, params = nn.pure(nn.MLP(2, 2, hidden=64, depth=2, rngs=nnx.Rngs(0)))
    predict_x0 = predictor(process, apply, params)
    x_T = jax.random.normal(jax.random.key(0), (batch, 2))
    key = jax.random.key(1)

    def scanned():
        return udm.sample(process, predict_x0, x_T, key=key)

    @jax.jit
    def one_step(x, t, key):
        k_predict, k_kernel = jax.random.split(key)
        t_B = jnp.full(x.shape[:1], t)
        x0_hat = process.draw_x0(predict_x0(x, t_B), x, t_B, key=k_predict)
        return process.reverse_step(x, x0_hat, t_B, key=k_kernel)

    keys = jax.random.split(key, steps)

    def looped():
        x = x_T
        for i, t in enumerate(range(steps, 0, -1)):
            x = one_step(x, t, keys[i])
        return x

    return best_time(scanned, repeats=repeats), best_time(looped, repeats=repeats)


def run(quick: bool = False) -> dict:
    steps = 20 if quick else 200
    batches = (64,) if quick else (64, 1024)
    repeats = 3 if quick else 10
    result = {
        "baseline": "Python loop over a jitted single reverse step (same predictor, kernel and steps)",
        "steps": steps,
    }
    for batch in batches:
        scan_time, loop_time = _measure(steps, batch, repeats)
        result[f"batch{batch}_scan_seconds"] = scan_time
        result[f"batch{batch}_loop_seconds"] = loop_time
        result[f"batch{batch}_scan_samples_per_second"] = batch / scan_time
        result[f"batch{batch}_loop_samples_per_second"] = batch / loop_time
        result[f"batch{batch}_throughput_ratio"] = loop_time / scan_time
    return result
