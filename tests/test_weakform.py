"""Weak-form verifier: accepts correct (drift, g, p_t) triples, rejects wrong ones, at fixed keys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from asserts import assert_tree_allclose, assert_z

from diffusionlab import weakform as wf
from diffusionlab.weakform import verifier as verifier_module

THETA, G, M0, S0 = 1.0, 0.8, 1.5, 0.3
TIMES = np.array([0.2, 0.7, 1.5])
N = 8_000


def ou_moments(t):
    """x_t of dx = -θx dt + g dw from N(m0, s0²): mean m0 e^{-θt}, variance below."""
    decay = jnp.exp(-THETA * t)
    return M0 * decay, S0**2 * decay**2 + G**2 * (1 - decay**2) / (2 * THETA)


def ou_sampler(t, key):
    mean, var = ou_moments(t)
    return mean + jnp.sqrt(var) * jax.random.normal(key, (N, 2))


def ou_log_density(x, t):
    mean, var = ou_moments(t)
    return -0.5 * jnp.sum((x - mean) ** 2) / var - jnp.log(2 * jnp.pi * var)


def ou_drift(x, t):
    return -THETA * x


def flipped_drift(x, t):
    return THETA * x


def drift_off_by_ten_percent(x, t):
    return -1.1 * THETA * x


def verify(drift, g, **kwargs):
    kwargs.setdefault("sampler", ou_sampler)
    return wf.verify_fokker_planck(drift, g, times=TIMES, key=jax.random.key(0), num_samples=N,
                                   **kwargs)


def test_correct_ou_passes_and_table_is_consistent():
    report = verify(ou_drift, G)
    assert report.passed, str(report)
    table = report.table()
    assert len(table) == len(report.names) * len(TIMES) == 30
    # d/dt E[φ] and E[Lφ] are each nonzero; only their difference vanishes.
    assert np.max(np.abs(report.lhs)) > 10 * np.max(report.standard_error)
    assert_tree_allclose(report.residual, report.lhs - report.rhs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "drift, g",
    [(flipped_drift, G), (ou_drift, G * np.sqrt(2.0)), (drift_off_by_ten_percent, G)],
    ids=["wrong-sign", "dropped-half", "drift-10pct"],
)
def test_wrong_ou_is_rejected(drift, g):
    report = verify(drift, g)
    print(report)
    assert not report.passed
    assert report.max_abs_z > 2 * report.threshold


def test_autodiff_time_derivative_matches_central_difference():
    central = verify(ou_drift, G)
    pathwise = verify(ou_drift, G, time_derivative="autodiff")
    assert pathwise.passed
    assert_tree_allclose(pathwise.lhs, central.lhs, rtol=2e-2, atol=2e-3)


def test_log_density_mode_passes_and_rejects():
    good = verify(ou_drift, G, sampler=None, log_density=ou_log_density, dim=2)
    bad = verify(flipped_drift, G, sampler=None, log_density=ou_log_density, dim=2)
    assert good.passed, str(good)
    assert not bad.passed


def test_probability_flow_ode_of_gaussian_data_passes_continuity():
    """VP path x_t = a_t x0 + b_t ε, x0 ~ N(0, s²I); the PF-ODE transports p_t."""
    s2 = 4.0

    def ab(t):
        a = jnp.exp(-0.5 * t)
        return a, jnp.sqrt(1 - a**2)

    def sampler(t, key):
        a, b = ab(t)
        k0, k1 = jax.random.split(key)
        return a * 2.0 * jax.random.normal(k0, (N, 2)) + b * jax.random.normal(k1, (N, 2))

    def velocity(x, t):  # f - g²/2 ∇log p_t with f = -x/2, g² = 1
        a, b = ab(t)
        return -0.5 * x + 0.5 * x / (a**2 * s2 + b**2)

    def wrong_velocity(x, t):  # the SDE drift alone: not a transport of p_t
        return -0.5 * x

    assert wf.verify_continuity(velocity, sampler=sampler, times=TIMES, key=jax.random.key(1),
                                num_samples=N).passed
    assert not wf.verify_continuity(wrong_velocity, sampler=sampler, times=TIMES,
                                    key=jax.random.key(1), num_samples=N).passed


MU, SIGMA = 0.3, 0.5


def gbm_sampler(t, key, *, stratonovich):
    """Exact solution from x0 = 1 of dx = μx dt + σx dW (Itô) or dx = μx dt + σx∘dW."""
    w = jnp.sqrt(t) * jax.random.normal(key, (N, 1))
    shift = 0.0 if stratonovich else -0.5 * SIGMA**2
    return jnp.exp((MU + shift) * t + SIGMA * w)


GBM_NOISE = wf.DiffusionMatrix(lambda x, t: SIGMA * x[:, None])


def gbm_ito_drift(x, t):
    return MU * x


def gbm_converted_drift(x, t):
    return (MU + 0.5 * SIGMA**2) * x


@pytest.mark.parametrize(
    "stratonovich, drift, passes",
    [(False, gbm_ito_drift, True), (True, gbm_ito_drift, False)],
    ids=["ito", "ito-stratonovich-confusion"],
)
def test_state_dependent_noise_ito_form(stratonovich, drift, passes):
    def sampler(t, key):
        return gbm_sampler(t, key, stratonovich=stratonovich)

    report = wf.verify_fokker_planck(drift, GBM_NOISE, sampler=sampler, times=TIMES,
                                     key=jax.random.key(2), num_samples=N,
                                     time_derivative="autodiff")
    assert report.passed == passes, str(report)


def test_hutchinson_laplacian_is_unbiased():
    phi = wf.default_test_functions(3, key=jax.random.key(3), num=4)
    x = jnp.array([0.3, -0.2, 0.5])
    exact = jax.jit(lambda p, y: wf.exact_laplacian(p, y))(phi, x)
    keys = jax.random.split(jax.random.key(4), 4000)
    draws = jax.jit(jax.vmap(lambda k: wf.hutchinson_laplacian(phi, x, key=k)))(keys)
    assert_z(draws.mean(0), draws.std(0, ddof=1) / np.sqrt(len(keys)), exact)
    assert float(jnp.max(draws.std(0))) > 0  # a single probe is not exact


def test_hutchinson_generator_is_unbiased_for_matrix_noise():
    phi = wf.default_test_functions(2, key=jax.random.key(5), num=4)
    noise = wf.DiffusionMatrix(lambda x, t: jnp.array([[1.0, 0.5, 0.0], [0.2, x[0], 1.0]]))
    x, t = jnp.array([0.4, -0.3]), jnp.asarray(0.5)
    exact = jax.jit(lambda: wf.generator(phi, ou_drift, noise, x, t, key=jax.random.key(0),
                                         hutchinson=False))()
    keys = jax.random.split(jax.random.key(6), 4000)
    draws = jax.jit(jax.vmap(lambda k: wf.generator(phi, ou_drift, noise, x, t, key=k,
                                                    hutchinson=True)))(keys)
    assert_z(draws.mean(0), draws.std(0, ddof=1) / np.sqrt(len(keys)), exact)


def test_bump_laplacian_closed_form():
    """Δ exp(-|x-c|²/2w²) = φ (|x-c|²/w⁴ - d/w²)."""
    phi = wf.default_test_functions(3, key=jax.random.key(7), num=2)
    x = jnp.array([0.1, 0.4, -0.7])
    c, w = phi.centers[0], phi.widths[0]
    r2 = jnp.sum((x - c) ** 2)
    expected = jnp.exp(-0.5 * r2 / w**2) * (r2 / w**4 - 3 / w**2)
    assert_tree_allclose(jax.jit(lambda p, y: wf.exact_laplacian(p, y))(phi, x)[0], expected,
                         rtol=1e-5)
    assert phi.names == ("bump0", "fourier0")


def test_strong_form_residual_vanishes_for_exact_paths():
    points = jax.random.normal(jax.random.key(8), (16, 2))
    times = jnp.array([0.3, 1.0])
    good = wf.strong_form_residuals(ou_drift, G, ou_log_density, points=points, times=times)
    bad = wf.strong_form_residuals(ou_drift, G * 1.2, ou_log_density, points=points, times=times)
    assert float(jnp.max(jnp.abs(good))) < 1e-4
    assert float(jnp.max(jnp.abs(bad))) > 0.1


def test_strong_form_straight_conditional_path_and_lognormal():
    """N((1-t)x0, t²I) under f = (x - x0)/t; geometric Brownian motion with matrix noise."""
    x0 = jnp.array([1.0, -2.0])

    def log_p(x, t):
        return -0.5 * jnp.sum((x - (1 - t) * x0) ** 2) / t**2 - 2 * jnp.log(t)

    r = wf.continuity_residual(lambda x, t: (x - x0) / t, log_p, jnp.array([0.3, 0.1]), 0.6,
                               relative=True)
    assert abs(float(r)) < 1e-5

    def log_lognormal(x, t):
        m, v = (MU - 0.5 * SIGMA**2) * t, SIGMA**2 * t
        return -0.5 * (jnp.log(x[0]) - m) ** 2 / v - 0.5 * jnp.log(2 * jnp.pi * v) - jnp.log(x[0])

    pts, ts = jnp.array([[0.7], [1.1], [1.6]]), jnp.array([0.5, 1.0])
    good = wf.strong_form_residuals(gbm_ito_drift, GBM_NOISE, log_lognormal, points=pts, times=ts)
    bad = wf.strong_form_residuals(gbm_converted_drift, GBM_NOISE, log_lognormal, points=pts,
                                   times=ts)
    assert float(jnp.max(jnp.abs(good))) < 1e-4
    assert float(jnp.max(jnp.abs(bad))) > 0.05


def test_verification_compiles_once_across_keys():
    jitted = verifier_module._weak_moments
    jitted.clear_cache()
    for seed in range(2):
        wf.verify_fokker_planck(ou_drift, G, sampler=ou_sampler, times=TIMES,
                                key=jax.random.key(seed), num_samples=N)
    assert jitted._cache_size() == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sampler": None}, "exactly one"),
        ({"log_density": ou_log_density, "dim": 2}, "exactly one"),
        ({"times": np.array([0.5, 0.2])}, "strictly increasing"),
        ({"times": np.array([[0.5]])}, "1-D"),
        ({"num_samples": N + 1}, "num_samples"),
        ({"g": lambda t: jnp.ones(2)}, "scalar"),
        ({"g": np.ones(2)}, "scalar"),
        ({"drift": lambda x, t: x[:1]}, "drift"),
        ({"sampler": None, "log_density": ou_log_density}, "dim"),
        ({"test_functions": lambda x: x.sum()}, "1-D"),
        ({"time_derivative": "forward"}, "time_derivative"),
        ({"alpha": 1.5}, "alpha"),
    ],
)
def test_bad_input_raises(kwargs, message):
    args = {"drift": ou_drift, "g": G, "sampler": ou_sampler, "times": TIMES,
            "key": jax.random.key(0), "num_samples": N, **kwargs}
    drift, g = args.pop("drift"), args.pop("g")
    with pytest.raises(ValueError, match=message):
        wf.verify_fokker_planck(drift, g, **args)
