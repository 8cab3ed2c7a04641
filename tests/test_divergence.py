"""Exact and Hutchinson traces: closed forms, the autodiff Jacobian's trace, unbiasedness."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from asserts import assert_tree_allclose, assert_z

from diffusionlab.divergence import (
    exact_divergence,
    exact_trace,
    hutchinson_divergence,
    hutchinson_trace,
)

A = jax.random.normal(jax.random.key(1), (4, 4))  # not symmetric, not diagonal


def cubic(x):
    # f(x) = x‖x‖² row by row: ∂_i f_i = ‖x‖² + 2x_i², so ∇·f = (d + 2)‖x‖².
    return x * jnp.sum(x * x, axis=-1, keepdims=True)


def test_exact_divergence_of_a_linear_field_is_the_trace():
    x = jax.random.normal(jax.random.key(2), (5, 4))
    value, div = exact_divergence(lambda y: y @ A.T, x)
    assert_tree_allclose(value, x @ A.T)
    assert_tree_allclose(div, jnp.full(5, jnp.trace(A)), rtol=1e-6, atol=1e-6)


def test_exact_divergence_of_a_nonlinear_field_and_of_examples_with_several_axes():
    x = jax.random.normal(jax.random.key(3), (6, 2, 3))
    value, div = exact_divergence(lambda y: cubic(y.reshape(6, 6)).reshape(y.shape), x)
    assert value.shape == x.shape
    assert_tree_allclose(div, 8.0 * jnp.sum(x.reshape(6, 6) ** 2, axis=1), rtol=1e-5)


def test_exact_divergence_matches_the_trace_of_the_autodiff_jacobian():
    # The formula it replaced in the implicit score-matching loss: tr jacfwd, per example.
    def score(x_D):
        return -jnp.tanh(A @ x_D) @ A - x_D**3

    x = jax.random.normal(jax.random.key(4), (8, 4))
    _, div = jax.jit(lambda y: exact_divergence(jax.vmap(score), y))(x)
    old = jax.vmap(lambda x_D: jnp.trace(jax.jacfwd(score)(x_D)))(x)
    assert_tree_allclose(div, old, rtol=1e-5, atol=1e-5)


def test_hutchinson_divergence_is_unbiased_within_a_z_bound():
    x = jax.random.normal(jax.random.key(5), (3, 4))
    probes = jax.random.rademacher(jax.random.key(6), (4000, 3, 4), jnp.float32)
    values, draws = jax.vmap(lambda v: hutchinson_divergence(cubic, x, v))(probes)
    assert_tree_allclose(values[0], cubic(x))
    exact = exact_divergence(cubic, x)[1]
    draws = np.asarray(draws)
    assert_z(draws.mean(0), draws.std(0, ddof=1) / np.sqrt(len(draws)), exact)
    assert draws.std(0).min() > 0  # off-diagonal terms: one probe is not exact


def test_hutchinson_divergence_is_exact_for_a_diagonal_jacobian():
    # Rademacher probes have v_i² = 1: a diagonal Jacobian gives the trace with every probe.
    x = jax.random.normal(jax.random.key(7), (5, 3))
    probe = jax.random.rademacher(jax.random.key(8), x.shape, jnp.float32)
    _, estimate = hutchinson_divergence(jnp.sin, x, probe)
    assert_tree_allclose(estimate, jnp.sum(jnp.cos(x), axis=1))


def test_traces_of_a_quadratic_form():
    M = A @ A.T + jnp.diag(jnp.arange(4.0))

    def quadratic_form(v):
        return jnp.stack([v @ M @ v, 2.0 * v @ v])  # two outputs: tr M and 2d

    expected = jnp.array([jnp.trace(M), 8.0])
    assert_tree_allclose(exact_trace(quadratic_form, jnp.eye(4)), expected, rtol=1e-5)
    g = jax.random.normal(jax.random.key(9), (4, 2))
    assert_tree_allclose(exact_trace(lambda v: v @ M @ v, g.T), jnp.trace(g.T @ M @ g),
                         rtol=1e-5)
    probes = jax.random.rademacher(jax.random.key(10), (20_000, 4), jnp.float32)
    draws = jax.vmap(quadratic_form)(probes)
    assert_z(hutchinson_trace(quadratic_form, probes),
             np.asarray(draws).std(0, ddof=1) / np.sqrt(len(probes)) + 1e-6, expected)


@pytest.mark.parametrize("x, probe", [(jnp.float32(1.0), jnp.float32(1.0)),
                                      (jnp.ones((2, 3)), jnp.ones((2, 2)))])
def test_bad_shapes_raise(x, probe):
    with pytest.raises(ValueError, match="shape"):
        hutchinson_divergence(jnp.sin, x, probe)
    if jnp.ndim(x) == 0:
        with pytest.raises(ValueError, match="shape"):
            exact_divergence(jnp.sin, x)
