"""The shared transformer blocks: RoPE identities, masks, cache equals recompute, causality."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffusionlab.nn.transformer import (
    KVCache,
    Transformer,
    TransformerBlock,
    causal_mask,
    padding_mask,
    rotary_embedding,
)
from tests.asserts import assert_tree_allclose


def test_rotary_inner_product_depends_on_offset_only():
    q = jax.random.normal(jax.random.key(0), (1, 1, 1, 8))
    k = jax.random.normal(jax.random.key(1), (1, 1, 1, 8))

    def score(m, n):
        qm = rotary_embedding(q, jnp.array([[m]]))
        kn = rotary_embedding(k, jnp.array([[n]]))
        return float(jnp.sum(qm * kn))

    assert score(3, 1) == pytest.approx(score(10, 8), rel=1e-5, abs=1e-5)
    assert score(0, 0) == pytest.approx(float(jnp.sum(q * k)), rel=1e-6)
    # A rotation preserves the norm.
    rotated = rotary_embedding(q, jnp.array([[17]]))
    assert float(jnp.linalg.norm(rotated)) == pytest.approx(float(jnp.linalg.norm(q)), rel=1e-5)


def test_rotary_rejects_odd_head_dim():
    with pytest.raises(ValueError, match="even"):
        rotary_embedding(jnp.zeros((1, 1, 1, 3)), jnp.zeros((1, 1), jnp.int32))


def test_masks():
    m = causal_mask(3)
    np.testing.assert_array_equal(m[0, 0], np.tril(np.ones((3, 3), bool)))
    assert padding_mask(jnp.array([[0, 1]])).shape == (1, 1, 1, 2)


def _trunk():
    return Transformer(vocab_size=11, dim=16, depth=2, num_heads=2, mlp_dim=32,
                       rngs=nnx.Rngs(0))


@nnx.jit
def _run(trunk, tokens, mask, positions, caches):
    # Compiled: eager NNX calls dispatch op by op, which dominates these tiny tests.
    return trunk(tokens, mask=mask, positions=positions, caches=caches)


def test_cached_decoding_equals_full_recompute():
    trunk = _trunk()
    tokens = jax.random.randint(jax.random.key(2), (2, 7), 0, 11)
    positions = jnp.broadcast_to(jnp.arange(7), (2, 7))
    full, _ = _run(trunk, tokens, causal_mask(7), positions, None)
    caches = trunk.init_caches(2, 10)
    prefix, caches = _run(trunk, tokens[:, :4], None, positions[:, :4], caches)
    steps = [prefix]
    for t in range(4, 7):
        h, caches = _run(trunk, tokens[:, t:t + 1], None, positions[:, t:t + 1], caches)
        steps.append(h)
    assert int(caches[0].length) == 7
    assert_tree_allclose(jnp.concatenate(steps, axis=1), full, rtol=1e-5, atol=1e-5)


def test_causality_by_gradient():
    block = TransformerBlock(16, 2, 32, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(3), (1, 6, 16))
    positions = jnp.arange(6)[None]

    graphdef, state = nnx.split(block)

    def outputs(x):
        y, _ = nnx.merge(graphdef, state)(x, mask=causal_mask(6), positions=positions)
        return jnp.sum(y[0], axis=-1)  # (6,): one scalar per output position

    jacobian = jax.jit(jax.jacrev(outputs))(x)  # (6 outputs, 1, 6 inputs, 16)
    dependence = np.asarray(jnp.abs(jacobian[:, 0]).sum(-1))  # (outputs, inputs)
    for i in range(6):
        assert np.all(dependence[i, i + 1:] == 0), f"output {i} sees the future"
        assert np.all(dependence[i, : i + 1] > 0), f"output {i} ignores its past"


def test_left_padding_is_invisible_with_rope():
    trunk = _trunk()
    tokens = jnp.array([[3, 4, 5, 6]])
    padded = jnp.array([[0, 0, 3, 4, 5, 6]])
    valid = padded != 0
    h, _ = _run(trunk, tokens, causal_mask(4), jnp.arange(4)[None], None)
    mask = causal_mask(6) & padding_mask(valid)
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
    h_padded, _ = _run(trunk, padded, mask, positions, None)
    assert_tree_allclose(h_padded[:, 2:], h, rtol=1e-5, atol=1e-5)


def test_block_without_cache_returns_none_and_kvcache_is_pytree():
    block = TransformerBlock(8, 2, 16, rngs=nnx.Rngs(0))
    y, cache = block(jnp.ones((1, 3, 8)))
    assert y.shape == (1, 3, 8) and cache is None
    cache = KVCache.init(1, 5, 2, 4)
    assert len(jax.tree.leaves(cache)) == 3
