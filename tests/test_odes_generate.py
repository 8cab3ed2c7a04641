"""Generation, log-likelihood, straight paths and Su's 1-D demo."""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from asserts import assert_compiles_once, assert_tree_allclose, assert_z

from diffusionlab.odes import bits_per_dim, flows, generate, gravity, log_likelihood

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
    assert_compiles_once(lambda x: generate(velocity, x, 1.0, solver="euler", steps=4).samples,
                         [(jnp.full((8, 2), float(i)),) for i in range(3)])


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
    with pytest.raises(ValueError, match="T must be a finite real number > 0"):
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


# ------------------------------------------------------ half precision, empty batches, errors

HALF = [jnp.float16, jnp.bfloat16]


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: jnp.dtype(d).name)
def test_log_likelihood_of_half_precision_data_is_integrated_in_float32(dtype):
    # bfloat16 data used to be integrated in bfloat16: max_steps at tol 1e-5, 0.15 nats off at
    # 1e-3. Now the result is the float32 one (same rounded data) rounded once.
    x = (jax.random.normal(KEY, (16, 2)) * jnp.sqrt(SCALES)[None, :]).astype(dtype)
    x32 = x.astype(jnp.float32)
    want = np.asarray(gaussian_log_density(x32))
    for tol in (1e-5, 1e-3):
        out = log_likelihood(gaussian_velocity, x, 1.0,
                             log_prior=flows.standard_normal_log_density, rtol=tol, atol=tol)
        ref = log_likelihood(gaussian_velocity, x32, 1.0,
                             log_prior=flows.standard_normal_log_density, rtol=tol, atol=tol)
        assert out.log_prob.dtype == jnp.dtype(dtype) and out.x_T.dtype == jnp.dtype(dtype)
        np.testing.assert_array_equal(np.asarray(out.log_prob, np.float32),
                                      np.asarray(ref.log_prob.astype(dtype), np.float32))
        assert int(out.nfe) == int(ref.nfe)
        got = np.asarray(out.log_prob, np.float64)
        eps = float(jnp.finfo(dtype).eps)  # one rounding to the output dtype, plus the solver
        assert np.all(np.abs(got - want) <= eps * np.abs(want) + 20 * tol), (got, want)


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: jnp.dtype(d).name)
def test_generate_half_precision_state_is_integrated_in_float32(dtype):
    x1 = jax.random.normal(KEY, (64, 2)).astype(dtype)
    out = generate(gaussian_velocity, x1, 1.0, rtol=1e-6, atol=1e-6, save_trajectory=2)
    ref = generate(gaussian_velocity, x1.astype(jnp.float32), 1.0, rtol=1e-6, atol=1e-6,
                   save_trajectory=2)
    assert out.samples.dtype == jnp.dtype(dtype) and out.xs.dtype == jnp.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(out.samples, np.float32),
                                  np.asarray(ref.samples.astype(dtype), np.float32))
    assert int(out.nfe) == int(ref.nfe)


def test_empty_batches_give_empty_results_without_evaluations():
    calls = []

    def velocity(x, t):
        calls.append(x.shape)
        return gaussian_velocity(x, t)

    empty = jnp.zeros((0, 2))
    gen = generate(velocity, empty, 1.0, save_trajectory=3)
    assert gen.samples.shape == (0, 2) and int(gen.nfe) == 0
    assert gen.ts.shape == (4,) and gen.xs.shape == (4, 0, 2)
    lik = log_likelihood(velocity, empty, 1.0, log_prior=flows.standard_normal_log_density)
    assert lik.log_prob.shape == (0,) and lik.x_T.shape == (0, 2) and int(lik.nfe) == 0
    hutch = log_likelihood(velocity, empty, 1.0, log_prior=flows.standard_normal_log_density,
                           method="hutchinson", key=KEY)
    assert hutch.log_prob.shape == (0,)
    pairs = flows.reflow_pairs(velocity, empty, solver="euler", steps=3)
    assert pairs[0].shape == (0, 2)
    assert calls == []


X = jnp.ones((3, 2))


def _prior(z):
    return flows.standard_normal_log_density(z)


BAD_CALLS = [
    # x_T with a NaN used to surface as "maximum number of solver steps"
    ("x_T nan", lambda: generate(gaussian_velocity, X.at[1, 0].set(jnp.nan), 1.0),
     ValueError, "x_T must be finite"),
    ("x_T list", lambda: generate(gaussian_velocity, [[1.0, 2.0]], 1.0), TypeError, "x_T must be"),
    ("x_T None", lambda: generate(gaussian_velocity, None, 1.0), TypeError, "x_T must be"),
    ("x_T int", lambda: generate(gaussian_velocity, np.ones((3, 2), np.int32), 1.0),
     TypeError, "x_T must hold real floats"),
    ("T nan", lambda: generate(gaussian_velocity, X, float("nan")), ValueError,
     "T must be a finite real number > 0"),
    ("t_end", lambda: generate(gaussian_velocity, X, 1.0, t_end=1.5), ValueError,
     r"t_end must lie in \[0, T\)"),
    ("velocity_fn", lambda: generate(None, X, 1.0), TypeError, "velocity_fn must be callable"),
    ("velocity_fn shape", lambda: generate(lambda x, t: x[:, :1], X, 1.0), ValueError,
     r"velocity_fn\(x, t\) must return an array shaped like x"),
    ("steps float", lambda: generate(gaussian_velocity, X, 1.0, solver="euler", steps=2.5),
     TypeError, "steps must be an integer"),
    ("steps huge", lambda: generate(gaussian_velocity, X, 1.0, solver="euler", steps=10**12),
     ValueError, "steps must be an integer in"),
    ("rtol", lambda: generate(gaussian_velocity, X, 1.0, rtol=-1.0), ValueError, "rtol must be"),
    ("solver", lambda: generate(gaussian_velocity, X, 1.0, solver=None), TypeError,
     "solver must be one of"),
    ("time", lambda: generate(gaussian_velocity, X, 1.0, time="exp"), ValueError,
     "time must be one of"),
    ("save_trajectory huge", lambda: generate(gaussian_velocity, jnp.ones((1000, 2)), 1.0,
                                              save_trajectory=2**31 - 2),
     ValueError, "save_trajectory is too large.*memory"),
    # t_start was reported as t_end
    ("t_start", lambda: log_likelihood(gaussian_velocity, X, 1.0, log_prior=_prior, t_start=2.0),
     ValueError, r"t_start must lie in \[0, T\)"),
    ("t_start log", lambda: log_likelihood(gaussian_velocity, X, 1.0, log_prior=_prior,
                                           time="log"), ValueError, "t_start must be"),
    ("x int", lambda: log_likelihood(gaussian_velocity, np.ones((3, 2), np.int32), 1.0,
                                     log_prior=_prior), TypeError, "x must hold real floats"),
    ("x scalar", lambda: log_likelihood(gaussian_velocity, jnp.float32(1.0), 1.0,
                                        log_prior=_prior), ValueError, "x must have shape"),
    ("log_prior", lambda: log_likelihood(gaussian_velocity, X, 1.0, log_prior=None),
     TypeError, "log_prior must be callable"),
    ("log_prior shape", lambda: log_likelihood(gaussian_velocity, X, 1.0,
                                               log_prior=gaussian_velocity_prior_shape),
     ValueError, "log_prior must map x_T"),
    ("key", lambda: log_likelihood(gaussian_velocity, X, 1.0, log_prior=_prior,
                                   method="hutchinson", key=3), TypeError, "key must be"),
    ("bin_width", lambda: bits_per_dim(jnp.zeros(2), 2, bin_width=0.0), ValueError,
     "bin_width must be"),
    ("dim", lambda: bits_per_dim(jnp.zeros(2), 0, bin_width=0.5), ValueError, "dim must be"),
    ("log_prob nan", lambda: bits_per_dim(jnp.array([jnp.nan]), 2, bin_width=0.5), ValueError,
     "log_prob must be finite"),
]


def gaussian_velocity_prior_shape(z):
    return jnp.zeros((z.shape[0], 1))


@pytest.mark.parametrize("case", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_names_the_argument(case):
    _, call, error, match = case
    with pytest.raises(error, match=match):
        call()
