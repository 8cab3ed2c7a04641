"""The compiled sampler is the documented step loop: same keys, same states, at a fixed key.

Two compiled forms are checked: the ``lax.scan`` over a static number of steps (trajectories)
and the ``lax.fori_loop`` with a traced step count (samples only, one program for every count).

The loop below is the reference reading of :func:`diffusionlab.udm.sample`: the key is split
into one key per step, each step's key into (predict, kernel) keys; step ``i`` goes from
``times[i]`` to ``times[i + 1]``. The scan may draw its keys ahead of the loop or restructure
its carry, but it must give these samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusionlab import udm
from diffusionlab.udm.networks import NetworkConfig, make_network, predictor
from diffusionlab.udm.sampler import reverse_times


def _step_loop(process, predict_x0, x_T, key, steps):
    times = reverse_times(process.T, steps)
    batch = x_T.shape[:1]
    x, x0_hat = x_T, None
    path = [x_T]
    for i, step_key in enumerate(jax.random.split(key, steps)):
        k_predict, k_kernel = jax.random.split(step_key)
        t_B, s_B = jnp.full(batch, times[i]), jnp.full(batch, times[i + 1])
        x0_hat = process.draw_x0(predict_x0(x, t_B), x, t_B, key=k_predict)
        x = process.reverse_step(x, x0_hat, t_B, key=k_kernel, s=s_B)
        path.append(x)
    return process.finish(x, x0_hat), jnp.stack(path)


@pytest.mark.parametrize("steps", [10, 4])
def test_scan_equals_step_loop_hot_network(steps):
    process = udm.HotDiffusion.ddpm(T=10, event_shape=(3,))
    apply, params = make_network(process, (3,), NetworkConfig(hidden=8, depth=1),
                                 key=jax.random.key(3))
    # a non-zero output layer, so the network's prediction enters every step
    params = jax.tree.map(lambda w: w + 0.1, params)
    predict_x0 = predictor(process, apply, params)
    x_T = jax.random.normal(jax.random.key(4), (5, 3))
    key = jax.random.key(5)
    sample, path = udm.sample(process, predict_x0, x_T, key=key, steps=steps, trajectory=True)
    expected, expected_path = _step_loop(process, predict_x0, x_T, key, steps)
    assert path.shape == (steps + 1, 5, 3)
    # the same operations compiled in two programs: equal up to float32 rounding, which the
    # division by alpha_bar_t (down to ~0.1 at T = 10) amplifies over the steps (seen: 2e-5)
    np.testing.assert_allclose(np.asarray(path), np.asarray(expected_path), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(sample), np.asarray(expected), rtol=1e-4, atol=1e-4)
    # and the noise is really drawn per step: a different key gives a different sample
    other = udm.sample(process, predict_x0, x_T, key=jax.random.key(6), steps=steps)
    assert np.abs(np.asarray(other) - np.asarray(sample)).max() > 1e-2


def test_scan_equals_step_loop_mask_sampled_x0():
    # the predict step draws x0_hat here (the predict key matters), by a gather, without BLAS:
    # the token ids agree exactly
    process = udm.MaskDiffusion(length=6, vocab=4)
    table = jax.random.normal(jax.random.key(7), (process.vocab + 1, process.vocab))

    def random_logits(x, t):
        del t
        return table[x]

    x_T = process.prior(jnp.zeros((4, 6), jnp.int32), key=jax.random.key(8))
    key = jax.random.key(9)
    sample, path = udm.sample(process, random_logits, x_T, key=key, trajectory=True)
    expected, expected_path = _step_loop(process, random_logits, x_T, key, process.T)
    np.testing.assert_array_equal(np.asarray(path), np.asarray(expected_path))
    np.testing.assert_array_equal(np.asarray(sample), np.asarray(expected))


def _hot_network(T=10, dim=3):
    process = udm.HotDiffusion.ddpm(T=T, event_shape=(dim,))
    apply, params = make_network(process, (dim,), NetworkConfig(hidden=8, depth=1),
                                 key=jax.random.key(3))
    return process, predictor(process, apply, jax.tree.map(lambda w: w + 0.1, params))


@pytest.mark.parametrize("steps", [10, 7, 3, 1])
def test_traced_step_count_equals_step_loop(steps):
    # Without a trajectory the number of steps is a traced loop bound (one program for every
    # step count); its samples are the step loop's, keys included (split(key, T)[i] is
    # split(key, steps)[i] for threefry keys).
    process, predict_x0 = _hot_network()
    x_T = jax.random.normal(jax.random.key(4), (5, 3))
    key = jax.random.key(5)
    sample = udm.sample(process, predict_x0, x_T, key=key, steps=steps)
    expected, _ = _step_loop(process, predict_x0, x_T, key, steps)
    np.testing.assert_allclose(np.asarray(sample), np.asarray(expected), rtol=1e-4, atol=1e-4)
    # the same program as the trajectory's per-step-count scan, up to float32 rounding
    scanned, _ = udm.sample(process, predict_x0, x_T, key=key, steps=steps, trajectory=True)
    np.testing.assert_allclose(np.asarray(sample), np.asarray(scanned), rtol=1e-5, atol=1e-5)


def test_step_counts_share_one_program():
    process = udm.HotDiffusion.ddpm(T=12, event_shape=(2,))
    traces = []

    def linear(params, x, t):
        traces.append(1)  # runs only while the sampler is traced (twice per tracing)
        return params * x

    predict_x0 = jax.tree_util.Partial(linear, jnp.float32(0.5))
    x_T = jax.random.normal(jax.random.key(1), (4, 2))
    outs = [udm.sample(process, predict_x0, x_T, key=jax.random.key(2), steps=s)
            for s in (6, 4, 3, 1)]
    assert len(traces) == 2
    # the step counts really differ: one step lands elsewhere than six
    assert np.abs(np.asarray(outs[0]) - np.asarray(outs[-1])).max() > 1e-3
    # the full chain (steps = T, the default) is its own program, compiled once
    for _ in range(2):
        udm.sample(process, predict_x0, x_T, key=jax.random.key(3))
    assert len(traces) == 4


def test_keys_without_prefix_stable_split_use_the_per_step_count_program():
    # Without jax_threefry_partitionable, threefry's split(key, n)[i] depends on n, so the
    # traced-steps loop would change the samples: such keys take the per-step-count scan, which
    # matches the step loop (split under the same setting).
    process, predict_x0 = _hot_network()
    x_T = jax.random.normal(jax.random.key(4), (5, 3))
    key = jax.random.key(5)
    with jax.threefry_partitionable(False):
        sample = udm.sample(process, predict_x0, x_T, key=key, steps=4)
        expected, _ = _step_loop(process, predict_x0, x_T, key, 4)
    np.testing.assert_allclose(np.asarray(sample), np.asarray(expected), rtol=1e-4, atol=1e-4)
    with jax.threefry_partitionable(True):
        default = udm.sample(process, predict_x0, x_T, key=key, steps=4)
    assert np.abs(np.asarray(default) - np.asarray(sample)).max() > 1e-3  # the keys do differ
