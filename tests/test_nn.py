"""nn: shapes, the pure split/merge view, time conditioning, and sinusoidal embedding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffusionlab import nn


def test_embedding_values():
    e = nn.sinusoidal_embedding(jnp.array([0.0, 0.5]), 8)
    assert e.shape == (2, 8)
    np.testing.assert_allclose(e[0], [0, 0, 0, 0, 1, 1, 1, 1], atol=1e-7)
    np.testing.assert_allclose(jnp.sum(e[:, :4] ** 2 + e[:, 4:] ** 2, -1), [4, 4], rtol=1e-6)
    with pytest.raises(ValueError, match="even"):
        nn.sinusoidal_embedding(jnp.zeros(2), 7)


@pytest.mark.parametrize("make,x", [
    (lambda r: nn.MLP(3, 3, hidden=16, depth=2, rngs=r), jnp.ones((4, 3))),
    (lambda r: nn.UNet(1, base=8, rngs=r), jnp.ones((4, 8, 8, 1))),
])
def test_pure_apply_equals_module_and_is_time_conditioned(make, x):
    module = make(nnx.Rngs(0))
    apply, params = nn.pure(module)
    # Zero-initialised heads output 0; perturb them so time dependence is visible.
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(1), p.shape), params)
    nnx.update(module, params)
    t = jnp.full((4,), 0.3)
    jitted = jax.jit(apply)  # compiled once for both times (op-by-op a UNet takes minutes)
    out = jitted(params, x, t)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, nnx.jit(lambda m, x, t: m(x, t))(module, x, t), rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(out - jitted(params, x, t + 0.2)).max()) > 1e-4


def test_output_heads_start_at_zero():
    apply, params = nn.pure(nn.MLP(2, 2, rngs=nnx.Rngs(0)))
    assert float(jnp.abs(apply(params, jnp.ones((3, 2)), jnp.ones(3))).max()) == 0.0
