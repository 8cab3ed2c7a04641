"""PFGM's normalised batch target is biased, shrinking with the batch; the conditional target
is not (Monte Carlo at fixed keys, against z-bounds)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusionlab.odes import batch_target, gravity


def _setup():
    data = jax.random.normal(jax.random.key(0), (64, 2))
    x = data[:3] + jnp.array([[0.05, -0.02], [0.1, 0.1], [-0.08, 0.03]])
    return data, x, 0.1


def test_exact_reference_is_the_whole_data_target_and_field():
    data, x, t = _setup()
    r = batch_target.batch_target_bias(x, t, data, batch_size=8, num_batches=4,
                                       key=jax.random.key(1), gamma=0.0)
    # with gamma = 0 the target is sqrt(d+1) times the unit vector along -(v, 1)
    v = gravity.velocity(x, t, data)
    unit = -jnp.concatenate([v, jnp.ones((3, 1))], axis=1)
    unit = unit / jnp.linalg.norm(unit, axis=1, keepdims=True)
    np.testing.assert_allclose(r.exact, np.sqrt(3.0) * unit, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r.exact_velocity, v, rtol=1e-6)


def test_batch_target_bias_is_significant_and_shrinks_with_batch_size():
    data, x, t = _setup()
    small = batch_target.batch_target_bias(x, t, data, batch_size=4, num_batches=400,
                                           key=jax.random.key(2))
    large = batch_target.batch_target_bias(x, t, data, batch_size=256, num_batches=400,
                                           key=jax.random.key(3))
    # the B = 4 bias clears 5 standard errors, summed over the queries
    z_small = jnp.sum((small.mean - small.exact) ** 2) / jnp.sum(small.standard_error ** 2)
    assert float(z_small) > 25.0
    assert float(jnp.sum(large.squared_bias)) < 0.1 * float(jnp.sum(small.squared_bias))


def test_conditional_target_is_unbiased_within_z_bounds():
    data, x, t = _setup()
    c = batch_target.conditional_target_mean(x, t, data, num=2000, key=jax.random.key(4))
    z = np.asarray((c.mean - c.exact_velocity) / c.standard_error)
    assert np.all(np.abs(z) < 4.0), z  # 6 components: P(any |z| > 4) < 4e-4


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0, num_batches=4), "batch_size"),
    (dict(batch_size=4, num_batches=1), "num_batches"),
    (dict(batch_size=4, num_batches=4, gamma=-1.0), "gamma"),
])
def test_bad_arguments_raise(kwargs, match):
    data, x, t = _setup()
    with pytest.raises(ValueError, match=match):
        batch_target.batch_target_bias(x, t, data, key=jax.random.key(0), **kwargs)
    with pytest.raises(ValueError, match="num"):
        batch_target.conditional_target_mean(x, t, data, num=1, key=jax.random.key(0))
