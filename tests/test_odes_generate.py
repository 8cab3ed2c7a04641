"""Generation, log-likelihood, straight paths and Su's 1-D demo."""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from asserts import assert_tree_allclose, assert_z

from diffusionlab.odes import flows, generate, gravity, log_likelihood

generate_module = importlib.import_module("diffusionlab.odes.generate")

KEY = jax.random.key(0)
SCALES = jnp.array([0.25, 4.0])  # the anisotropic Gaussian N(0, diag(SCALES))


def gaussian_velocity(x, t):
    # Straight paths from N(0, diag s) at t = 0 to N(0, I) at t = 1: Σ_t = (1-t)² s + t²,
    # f = ½ Σ̇_t Σ_t⁻¹ x.
    s = SCALES[None, :]
    return x * (t - (1 - t) * s) / ((1 - t) ** 2 * s + t * t)


def gaussian_log_density(x):
    return jnp.sum(-0.5 * x * x / SCALES[None, :] - 0.5 * jnp.log(2 * math.pi * SCALES[None, :]),
                   axis=1)


def test_generate_pushes_the_prior_onto_the_gaussian():
    x1 = jax.random.normal(KEY, (4000, 2))
    out = generate(gaussian_velocity, x1, 1.0, t_end=0.0, rtol=1e-6, atol=1e-6)
    var = np.asarray(out.samples).var(0)
    assert_z(var, np.asarray(SCALES) * math.sqrt(2 / 4000), np.asarray(SCALES))
    # Linear map: each sample is exactly sqrt(s) x1.
    assert_tree_allclose(out.samples, x1 * jnp.sqrt(SCALES)[None, :], rtol=1e-4, atol=1e-4)
    assert int(out.nfe) > 0
    euler = generate(gaussian_velocity, x1, 1.0, solver="euler", steps=7)
    assert int(euler.nfe) == 7


def test_generate_compiles_once():
    velocity = jax.tree_util.Partial(gaussian_velocity)
    generate_module._generate.clear_cache()
    for i in range(3):
        generate(velocity, jnp.full((8, 2), float(i)), 1.0, solver="euler", steps=4)
    assert generate_module._generate._cache_size() == 1


def test_log_likelihood_exact_matches_the_analytic_density():
    x = jax.random.normal(KEY, (16, 2)) * jnp.sqrt(SCALES)[None, :]
    out = log_likelihood(gaussian_velocity, x, 1.0, log_prior=flows.standard_normal_log_density,
                         rtol=1e-6, atol=1e-6)
    assert_tree_allclose(out.log_prob, gaussian_log_density(x), rtol=1e-4, atol=1e-4)


ROTATION = jnp.array([[math.cos(0.5), -math.sin(0.5)], [math.sin(0.5), math.cos(0.5)]])


def test_log_likelihood_hutchinson_is_unbiased():
    # Rotate the Gaussian so that the Jacobian is not diagonal (else every probe is exact).
    def velocity(x, t):
        return gaussian_velocity(x @ ROTATION, t) @ ROTATION.T

    x = jnp.array([[0.3, -1.5]])
    reps = 512
    expected = float(gaussian_log_density(x @ ROTATION)[0])
    exact = log_likelihood(velocity, x, 1.0, log_prior=flows.standard_normal_log_density)
    assert abs(float(exact.log_prob[0]) - expected) < 1e-4
    out = log_likelihood(velocity, jnp.broadcast_to(x, (reps, 2)), 1.0,
                         log_prior=flows.standard_normal_log_density, method="hutchinson",
                         key=KEY, rtol=1e-5, atol=1e-5)
    est = np.asarray(out.log_prob)
    assert est.std() > 1e-2  # the probes do vary
    assert_z(est.mean(), est.std() / math.sqrt(reps), expected)


def test_log_likelihood_in_log_time_agrees():
    # The gravity set-up: one mass at the origin, so the exact velocity is x/t and
    # p_t(x) is the prior at height t; the likelihood at t0 must be p_{t0}(x | 0).
    data = jnp.zeros((1, 2))
    x = jax.random.normal(KEY, (6, 2)) * 0.1

    def velocity(z, t):
        return gravity.velocity(z, t, data)

    t0, T = 0.05, 20.0
    out = log_likelihood(velocity, x, T, log_prior=lambda z: gravity.prior_log_density(z, T),
                         t_start=t0, time="log", rtol=1e-6, atol=1e-6)
    expected = gravity.conditional_log_density(x, t0, jnp.zeros_like(x))
    assert_tree_allclose(out.log_prob, expected, rtol=1e-4, atol=1e-4)


def test_straight_path_divergence_and_density():
    with jax.enable_x64(True):
        x0 = jnp.array([0.3, -0.2, 1.0])
        x_t = jnp.array([0.1, 0.5, -0.4])
        t = 0.35
        jac = jax.jacfwd(lambda z: (z - x0) / t)(x_t)
        assert abs(float(jnp.trace(jac)) - 3 / t) < 1e-12

        def normal(z):
            return -0.5 * jnp.sum(z * z, axis=-1) - 1.5 * math.log(2 * math.pi)

        got = flows.conditional_log_density(x_t, t, x0, log_prior=normal)
        mean, var = (1 - t) * x0, t * t
        want = jnp.sum(-0.5 * (x_t - mean) ** 2 / var - 0.5 * jnp.log(2 * math.pi * var))
        assert abs(float(got - want)) < 1e-10


def test_su_1d_demo_splits_the_prior_at_its_quantiles():
    starts = jnp.linspace(0.0, 2.0, 402)[1:-1, None]  # 400 interior start points
    out = generate(flows.atoms_velocity(), starts, 1.0, t_end=0.0, solver="euler", steps=1000)
    ends = np.asarray(out.samples)[:, 0]
    atoms = np.array([0.5, 1.2, 1.7])
    which = np.argmin(np.abs(ends[:, None] - atoms[None, :]), axis=1)
    assert np.max(np.abs(ends - atoms[which])) < 5e-3
    fractions = np.bincount(which, minlength=3) / len(which)
    assert np.allclose(fractions, [0.5, 0.25, 0.25], atol=1.5 / len(which))
    # Monotone flow: the split points are the prior quantiles 1.0 and 1.5.
    assert np.all(np.diff(which) >= 0)
    s = np.asarray(starts)[:, 0]
    assert abs(s[which == 0].max() - 1.0) < 0.01 and abs(s[which == 2].min() - 1.5) < 0.01


def test_generate_bad_inputs_raise():
    x = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="T must be > 0"):
        generate(gaussian_velocity, x, 0.0)
    with pytest.raises(ValueError, match="t_end"):
        generate(gaussian_velocity, x, 1.0, t_end=0.0, time="log")
    with pytest.raises(ValueError, match="steps"):
        generate(gaussian_velocity, x, 1.0, solver="euler")
    with pytest.raises(ValueError, match="method"):
        log_likelihood(gaussian_velocity, x, 1.0, log_prior=flows.standard_normal_log_density,
                       method="trace")
    with pytest.raises(ValueError, match="key"):
        log_likelihood(gaussian_velocity, x, 1.0, log_prior=flows.standard_normal_log_density,
                       method="hutchinson")
