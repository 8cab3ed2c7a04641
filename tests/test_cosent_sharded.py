"""Global-batch CoSENT on 8 virtual CPU devices: the single-device loss and gradient of the
whole batch, with the scores split over the devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from diffusionlab.cosent import cosent_loss, cosent_loss_sharded
from diffusionlab.train.sharding import data_mesh

DEVICES = 8
pytestmark = pytest.mark.skipif(
    jax.device_count() < DEVICES,
    reason=f"needs {DEVICES} devices (tests/conftest.py sets "
           f"--xla_force_host_platform_device_count=8 before jax starts); "
           f"found {jax.device_count()}")


@pytest.fixture(scope="module")
def mesh():
    return data_mesh(jax.devices()[:DEVICES])


def sharded_value_and_grad(mesh, scale=20.0):
    return jax.jit(jax.value_and_grad(
        lambda s, y: cosent_loss_sharded(s, y, mesh=mesh, scale=scale)))


# The single-device reference, jitted (eager JAX compiles every primitive separately).
single_value_and_grad = jax.jit(jax.value_and_grad(cosent_loss), static_argnames=("scale", "method"))


def split(x, mesh):
    return jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))


def test_equals_single_device_loss_and_gradient_with_ties(mesh):
    rng = np.random.default_rng(0)
    size = 48  # 6 pairs per device
    with jax.enable_x64(True):
        scores = jnp.asarray(rng.uniform(-1, 1, size))
        labels = jnp.asarray(rng.integers(0, 4, size).astype(np.float64))  # many ties
        value, grad = sharded_value_and_grad(mesh, scale=5.0)(split(scores, mesh), labels)
        expected, expected_grad = single_value_and_grad(scores, labels, scale=5.0,
                                                        method="dense")
        assert value.dtype == jnp.float64
        np.testing.assert_allclose(float(value), float(expected), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(grad), np.asarray(expected_grad), rtol=1e-10,
                                   atol=1e-14)
        # Only score differences enter, so the gradient sums to zero.
        np.testing.assert_allclose(float(grad.sum()), 0.0, atol=1e-12)
    # float32, the training dtype, with integer labels.
    scores32 = jnp.asarray(rng.uniform(-1, 1, size), jnp.float32)
    labels32 = jnp.asarray(rng.integers(0, 3, size))
    value, grad = sharded_value_and_grad(mesh)(split(scores32, mesh), labels32)
    expected, expected_grad = single_value_and_grad(scores32, labels32)
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(expected_grad), rtol=1e-4, atol=1e-5)


def test_compares_pairs_across_devices(mesh):
    # Device d holds only label d: every per-device loss is 0, the global one is not.
    labels = jnp.repeat(jnp.arange(DEVICES), 2)
    scores = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, 2 * DEVICES), jnp.float32)
    per_device = jax.jit(jax.vmap(cosent_loss))(scores.reshape(DEVICES, 2),
                                                labels.reshape(DEVICES, 2))
    assert np.all(np.asarray(per_device) == 0.0)
    value, _ = sharded_value_and_grad(mesh, scale=1.0)(split(scores, mesh), labels)
    expected, _ = single_value_and_grad(scores, labels, scale=1.0)
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-6)
    assert float(value) > 1.0


def test_all_tied_is_exactly_zero_with_zero_gradient(mesh):
    scores = split(jnp.linspace(-1.0, 1.0, 16), mesh)
    value, grad = sharded_value_and_grad(mesh)(scores, jnp.full(16, 3))
    # Only the prepended 0 remains: log(e^0) = log 1 = 0, exactly.
    assert float(value) == 0.0
    assert np.all(np.asarray(grad) == 0.0)


def test_output_and_gradient_sharding(mesh):
    rng = np.random.default_rng(2)
    scores = split(jnp.asarray(rng.normal(size=16), jnp.float32), mesh)
    value, grad = sharded_value_and_grad(mesh)(scores, jnp.asarray(rng.integers(0, 3, 16)))
    assert value.shape == () and value.sharding.is_fully_replicated
    assert grad.shape == (16,)
    assert grad.sharding.is_equivalent_to(NamedSharding(mesh, PartitionSpec("data")), 1)
    assert [shard.data.shape for shard in grad.addressable_shards] == [(2,)] * DEVICES


def test_half_precision_and_a_second_mesh_axis():
    rng = np.random.default_rng(3)
    mesh = Mesh(np.asarray(jax.devices()[:DEVICES]).reshape(4, 2), ("data", "model"))
    scores = jnp.asarray(rng.uniform(-1, 1, 16), jnp.bfloat16)
    labels = jnp.asarray(rng.integers(0, 3, 16))
    value, grad = sharded_value_and_grad(mesh)(scores, labels)
    assert value.dtype == jnp.float32 and grad.dtype == jnp.bfloat16
    np.testing.assert_allclose(float(value), float(single_value_and_grad(scores, labels)[0]),
                               rtol=1e-5)


def test_bad_input_raises(mesh):
    scores, labels = jnp.zeros(16), jnp.arange(16)
    with pytest.raises(ValueError, match="axis_name"):
        cosent_loss_sharded(scores, labels, mesh=mesh, axis_name="model")
    with pytest.raises(ValueError, match="divisible"):
        cosent_loss_sharded(jnp.zeros(12), jnp.arange(12), mesh=mesh)
    with pytest.raises(TypeError, match="mesh"):
        cosent_loss_sharded(scores, labels, mesh=None)
    with pytest.raises(ValueError, match="same length"):
        cosent_loss_sharded(scores, jnp.arange(8), mesh=mesh)
    with pytest.raises(ValueError, match="scale"):
        cosent_loss_sharded(scores, labels, mesh=mesh, scale=0.0)
