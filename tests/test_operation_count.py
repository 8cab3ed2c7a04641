"""XLA's operation count: exact for a matrix product, one body per loop, linear in the batch."""

import functools
import math

import jax
import jax.numpy as jnp
import pytest

from diffusionlab.operation_count import operation_count


def test_matrix_product_counts_two_m_k_n():
    a, b = jnp.ones((8, 16)), jnp.ones((16, 4))
    assert operation_count(lambda a, b: a @ b, a, b) == pytest.approx(2 * 8 * 16 * 4, rel=1e-9)
    # Shape-dtype structs count the same: nothing is computed.
    spec = jax.ShapeDtypeStruct((8, 16), jnp.float32), jax.ShapeDtypeStruct((16, 4), jnp.float32)
    assert operation_count(lambda a, b: a @ b, *spec) == pytest.approx(2 * 8 * 16 * 4, rel=1e-9)


def test_a_scanned_loop_counts_one_step_whatever_its_length():
    # Each step multiplies a (4, 32) state by a (32, 32) matrix: 2·4·32·32 flops, and sums
    # the state (4·32 - 1 additions, give or take how XLA counts a reduction).
    def loop(x, w, steps):
        def body(x, _):
            return x @ w, x.sum()
        return jax.lax.scan(body, x, length=steps)[1]

    x, w = jnp.ones((4, 32)), jnp.ones((32, 32))
    counts = [operation_count(functools.partial(loop, steps=k), x, w) for k in (1, 2, 7)]
    assert counts[0] == counts[1] == counts[2]
    assert 2 * 4 * 32 * 32 <= counts[0] <= 2 * 4 * 32 * 32 + 2 * 4 * 32


def test_count_grows_linearly_with_the_batch():
    w = jnp.ones((32, 32))
    counts = [operation_count(lambda x, w: jnp.tanh(x @ w) @ w, jnp.ones((m, 32)), w)
              for m in (4, 8, 16)]
    assert all(math.isfinite(c) for c in counts)
    assert counts[1] == pytest.approx(2 * counts[0], rel=1e-9)
    assert counts[2] == pytest.approx(4 * counts[0], rel=1e-9)


def test_not_callable_raises():
    with pytest.raises(TypeError, match="fn must be callable"):
        operation_count(3, jnp.ones(2))
