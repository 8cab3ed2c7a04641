"""solve_ode(batch_mode="per_sample"): one adaptive controller per sample, against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from asserts import assert_compiles_once

from diffusionlab.solve import BATCH_MODES, solve_ode

A = jnp.array([[-0.5, 1.0], [-1.0, -0.5]])
X0 = jnp.array([[1.0, 0.0], [0.0, 2.0], [0.3, -0.7], [-1.5, 0.4]])
RATES = jnp.array([0.5, 2.0, 8.0, 32.0])


def _linear(t, x):
    return x @ A.T


def _decay(t, x):
    """dy/dt = -k y with k carried in column 1 (constant): y(t) = y(0) e^{-k t}, a stiffness
    that varies from sample to sample."""
    return jnp.stack([-x[:, 1] * x[:, 0], jnp.zeros_like(x[:, 1])], axis=1)


def _minus(t, x):
    return jax.tree.map(lambda v: -v, x)


def test_modes_agree_with_the_closed_form_on_a_linear_ode():
    exact = X0 @ jax.scipy.linalg.expm(2.0 * A).T
    shared = solve_ode(_linear, X0, 0.0, 2.0, rtol=1e-6, atol=1e-6)
    per = solve_ode(_linear, X0, 0.0, 2.0, rtol=1e-6, atol=1e-6, batch_mode="per_sample")
    np.testing.assert_allclose(per.x, exact, atol=2e-5)
    np.testing.assert_allclose(per.x, shared.x, atol=2e-5)
    assert shared.nfe_per_sample is None and int(shared.nfe_max) == int(shared.nfe)
    counts = np.asarray(per.nfe_per_sample)
    assert counts.shape == (4,) and counts.dtype == np.int32
    # Tsit5: 6 evaluations per step plus 1 at the start; the batched count is the slowest.
    assert np.all(counts % 6 == 1) and int(per.nfe) == counts.max() == int(per.nfe_max)
    np.testing.assert_allclose(float(per.nfe_mean), counts.mean(), rtol=1e-6)


def test_nfe_follows_each_samples_stiffness_and_each_error_is_controlled():
    x0 = jnp.stack([jnp.ones(4), RATES], axis=1)
    per = solve_ode(_decay, x0, 0.0, 1.0, rtol=1e-6, atol=1e-6, batch_mode="per_sample")
    counts = np.asarray(per.nfe_per_sample)
    assert np.all(np.diff(counts) > 0), counts  # stiffer samples take more steps
    np.testing.assert_allclose(per.x[:, 0], jnp.exp(-RATES), atol=1e-5)
    np.testing.assert_allclose(per.x[:, 1], RATES, rtol=1e-6)
    # Shared mode spends the stiffest sample's steps on every sample.
    shared = solve_ode(_decay, x0, 0.0, 1.0, rtol=1e-6, atol=1e-6)
    assert float(per.nfe_mean) < int(shared.nfe)


def test_pytree_state_and_trajectory():
    state = {"a": X0, "b": X0[:, :1]}
    per = solve_ode(lambda t, s: {"a": s["a"] @ A.T, "b": -s["b"]}, state, 1.0, 0.0,
                    rtol=1e-6, atol=1e-6, batch_mode="per_sample", save_trajectory=4)
    np.testing.assert_allclose(per.x["a"], X0 @ jax.scipy.linalg.expm(-A).T, atol=2e-5)
    np.testing.assert_allclose(per.x["b"], X0[:, :1] * np.e, rtol=2e-5)
    np.testing.assert_allclose(per.ts, np.linspace(1.0, 0.0, 5), atol=1e-7)
    assert per.xs["a"].shape == (5, 4, 2) and per.xs["b"].shape == (5, 4, 1)
    np.testing.assert_allclose(per.xs["b"][2], X0[:, :1] * np.exp(0.5), rtol=2e-5)
    np.testing.assert_allclose(per.xs["a"][-1], per.x["a"], atol=1e-7)


def test_empty_batch_has_zero_nfe_per_sample():
    sol = solve_ode(_linear, jnp.zeros((0, 2)), 0.0, 1.0, batch_mode="per_sample")
    assert sol.x.shape == (0, 2) and sol.nfe_per_sample.shape == (0,) and int(sol.nfe) == 0


def test_compiles_once_across_calls():
    f = jax.jit(lambda x: solve_ode(_decay, x, 0.0, 1.0, batch_mode="per_sample").x)
    calls = [(jnp.stack([jnp.full(4, s), RATES * s], axis=1),) for s in (1.0, 0.5, 2.0)]
    assert_compiles_once(f, calls)


@pytest.mark.parametrize("kwargs,x,error,match", [
    (dict(batch_mode="vmap"), X0, ValueError, "batch_mode must be one of"),
    (dict(batch_mode=None), X0, TypeError, "batch_mode must be one of"),
    (dict(batch_mode="per_sample"), {"a": X0, "b": X0[:2]}, ValueError, "same leading axis"),
    (dict(batch_mode="per_sample"), jnp.asarray(1.0), ValueError, "batch axis"),
], ids=["unknown", "none", "ragged", "scalar"])
def test_bad_input_names_the_argument(kwargs, x, error, match):
    with pytest.raises(error, match=match):
        solve_ode(_minus, x, 0.0, 1.0, **kwargs)
    assert "per_sample" in BATCH_MODES
