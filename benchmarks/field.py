"""Throughput of the exact gravity field against the matmuls it is made of.

``gravity.field`` on 2048 query points × the 1797 digits (d = 64) does two GEMMs,
|x|² + |y|² − 2 x·yᵀ and w·Y, i.e. 4·B·N·d flops, plus B·N logs and exps. The baseline is
``jnp.dot`` doing exactly those two products in the same run; the ratio of their times is
the fraction of matmul throughput the blockwise, log-domain kernel achieves (goal ≥ 0.5).
Peak memory is XLA's temporary-buffer size for the blockwise kernel against a naive
broadcast of the (B, N, d) differences.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import best_time
from diffusionlab import data
from diffusionlab.odes import gravity
from diffusionlab.odes.pointmass import field_from_sums, point_mass_sums


def _naive_field(x, t, points):
    diff = x[:, None, :] - points[None, :, :]
    r_sq = jnp.sum(diff * diff, axis=-1) + (t * t)[:, None]
    w = r_sq ** (-0.5 * (points.shape[1] + 1))
    return -jnp.einsum("bn,bnd->bd", w, diff), -t * jnp.sum(w, axis=1)


def _blockwise_field(x, t, points, block):
    sums = point_mass_sums(x, t, points, exponent=points.shape[1] + 1, block=block)
    return field_from_sums(x, t, sums, log_const=-jnp.log(points.shape[0]))


def _temp_bytes(fn, *args) -> int:
    analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
    return int(getattr(analysis, "temp_size_in_bytes", -1)) if analysis is not None else -1


def run(quick: bool = False) -> dict:
    images, _ = data.digits("train")
    full, _ = data.digits("test")
    points = jnp.asarray(np.concatenate([images, full]).reshape(-1, 64))  # all 1797 digits
    num_queries = 256 if quick else 2048
    key_x, key_t = jax.random.split(jax.random.key(0))
    x = points[jax.random.randint(key_x, (num_queries,), 0, points.shape[0])]
    x = x + 0.1 * jax.random.normal(key_x, x.shape)
    t = jax.random.uniform(key_t, (num_queries,), jnp.float32, 0.05, 2.0)
    b, n, d = num_queries, points.shape[0], points.shape[1]
    flops = 4.0 * b * n * d
    repeats = 3 if quick else 10

    block = 512
    kernel = jax.jit(functools.partial(gravity._gravity_sums, block=block))
    field_time = best_time(lambda: kernel(x, t, points), repeats=repeats)
    weights = jnp.ones((b, n), jnp.float32)

    @jax.jit
    def matmuls(x, points, weights):
        return x @ points.T, weights @ points

    dot_time = best_time(lambda: matmuls(x, points, weights), repeats=repeats)
    result = {
        "baseline": "jnp.dot: the same two GEMMs (B×d·d×N and B×N·N×d), same run",
        "queries": b, "masses": n, "dim": d, "block": block, "flops": flops,
        "field_seconds": field_time, "dot_seconds": dot_time,
        "field_gflops": flops / field_time / 1e9, "dot_gflops": flops / dot_time / 1e9,
        "throughput_ratio": dot_time / field_time,
        "device": jax.devices()[0].platform,
    }
    blockwise = _temp_bytes(functools.partial(_blockwise_field, block=block), x, t, points)
    naive = _temp_bytes(_naive_field, x, t, points)
    result.update({"blockwise_temp_bytes": blockwise, "naive_temp_bytes": naive})
    if blockwise > 0 and naive > 0:
        result["memory_ratio"] = naive / blockwise
    return result
