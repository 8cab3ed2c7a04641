"""Weak-form verifier: accepts correct (drift, g, p_t) triples, rejects wrong ones, at fixed keys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from asserts import assert_compiles_once, assert_tree_allclose, assert_z

from diffusionlab import weakform as wf
from diffusionlab.weakform import cases as catalogue
from diffusionlab.weakform import reference

OU = reference.OrnsteinUhlenbeck()  # dx = -θx dt + g dw from N(m0, s0²I): θ, g, m0, s0 = 1, 0.8, 1.5, 0.3
THETA, G = OU.theta, OU.g
TIMES = np.array([0.2, 0.7, 1.5])
N = 8_000
ou_sampler, ou_log_density, ou_drift = OU.sampler(N), OU.log_density, OU.drift


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


GBM = reference.GeometricBrownianMotion()  # dx = μx dt + σx dW from x0 = 1: μ, σ = 0.3, 0.5
MU, SIGMA = GBM.mu, GBM.sigma
GBM_NOISE = GBM.noise
gbm_ito_drift = GBM.drift


def gbm_converted_drift(x, t):
    return (MU + 0.5 * SIGMA**2) * x


@pytest.mark.parametrize(
    "stratonovich, drift, passes",
    [(False, gbm_ito_drift, True), (True, gbm_ito_drift, False)],
    ids=["ito", "ito-stratonovich-confusion"],
)
def test_state_dependent_noise_ito_form(stratonovich, drift, passes):
    report = wf.verify_fokker_planck(drift, GBM_NOISE, sampler=GBM.sampler(N, stratonovich=stratonovich),
                                     times=TIMES, key=jax.random.key(2), num_samples=N,
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

    pts, ts = jnp.array([[0.7], [1.1], [1.6]]), jnp.array([0.5, 1.0])
    good = wf.strong_form_residuals(gbm_ito_drift, GBM_NOISE, GBM.log_density, points=pts, times=ts)
    bad = wf.strong_form_residuals(gbm_converted_drift, GBM_NOISE, GBM.log_density, points=pts,
                                   times=ts)
    assert float(jnp.max(jnp.abs(good))) < 1e-4
    assert float(jnp.max(jnp.abs(bad))) > 0.05


def test_verification_compiles_once_across_keys():
    assert_compiles_once(
        lambda key: wf.verify_fokker_planck(ou_drift, G, sampler=ou_sampler, times=TIMES,
                                            key=key, num_samples=N).lhs,
        [(jax.random.key(seed),) for seed in range(2)])


def _scaled_drift(scale, x, t):
    return -scale * THETA * x


def test_a_parameterised_drift_compiles_once_across_parameter_values():
    # A drift with parameters passes as a Partial: its arrays are traced, so checking a family
    # of drifts (here the true one and one 10% off) compiles once. Both verdicts stay right.
    reports = []

    def run(scale):
        report = wf.verify_fokker_planck(jax.tree_util.Partial(_scaled_drift, scale), G,
                                         sampler=ou_sampler, times=TIMES, key=jax.random.key(0),
                                         num_samples=N)
        reports.append(report)
        return report.lhs

    assert_compiles_once(run, [(jnp.float32(1.0),), (jnp.float32(1.1),)])
    assert reports[0].passed and not reports[1].passed


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


# --- the reference processes: their stated marginals solve Fokker–Planck, wrong ones do not ---

STRONG_TOL = 1e-3  # max |r/p| in float32 for a correct pair (β ≤ 20: round-off ~1e-5 to 1e-4)
WRONG_MIN = 0.05  # a wrong density's max |r/p| must exceed this
VP, VE = reference.VPSDE(), reference.VESDE()
S0_DATA = 0.7  # x0 ~ N(0, 0.7² I) for the affine paths, so every marginal is Gaussian


def gaussian_log_density(variance):
    """log N(x; 0, v(t) I) for a variance function ``v(t)``."""

    def log_p(x, t):
        var = variance(t)
        return -0.5 * jnp.sum(x**2) / var - 0.5 * x.shape[-1] * jnp.log(2 * jnp.pi * var)

    return log_p


def affine_marginal_variance(alpha_sigma, scale=1.0):
    """Variance of x_t = a_t x0 + b_t ε with x0 ~ N(0, S0_DATA² I), times ``scale``."""

    def variance(t):
        a, b = alpha_sigma(t)
        return scale * (a**2 * S0_DATA**2 + b**2)

    return variance


def straight_alpha_sigma(t):
    return 1.0 - t, t  # f = -1/(1-t), g² = 2t/(1-t)


STRAIGHT = reference.AffinePathSDE(straight_alpha_sigma)
STATIONARY_OU = reference.OrnsteinUhlenbeck(m0=0.0, s0=float(np.sqrt(OU.stationary_variance)))


def _ou_wrong_log_density(x, t):  # the right mean, 1.2 × the right variance
    mean, var = OU.moments(t)
    return -0.5 * jnp.sum((x - mean) ** 2) / (1.2 * var) - jnp.log(2 * jnp.pi * 1.2 * var)


REFERENCE_PATHS = {
    # name: (drift, g, correct log p_t, wrong log p_t, times)
    "ou": (OU.drift, OU.g, OU.log_density, _ou_wrong_log_density, [0.3, 1.0]),
    "ou_stationary": (STATIONARY_OU.drift, STATIONARY_OU.g,
                      gaussian_log_density(lambda t: OU.stationary_variance + 0 * t),
                      gaussian_log_density(lambda t: 1.2 * OU.stationary_variance + 0 * t),
                      [0.3, 1.0]),
    "vp": (VP.drift, VP.g, gaussian_log_density(affine_marginal_variance(VP.alpha_sigma)),
           gaussian_log_density(affine_marginal_variance(VP.alpha_sigma, 1.2)), [0.1, 0.4]),
    "ve": (VE.drift, VE.g, gaussian_log_density(affine_marginal_variance(VE.alpha_sigma)),
           gaussian_log_density(affine_marginal_variance(VE.alpha_sigma, 1.2)), [0.1, 0.6]),
    "affine_straight": (STRAIGHT.drift, STRAIGHT.g,
                        gaussian_log_density(affine_marginal_variance(straight_alpha_sigma)),
                        gaussian_log_density(affine_marginal_variance(straight_alpha_sigma, 1.2)),
                        [0.2, 0.6]),
    # the Stratonovich solution's law (Itô drift μ + σ²/2) is wrong for the Itô drift μx
    "gbm": (GBM.drift, GBM.noise, GBM.log_density,
            reference.GeometricBrownianMotion(mu=MU + 0.5 * SIGMA**2).log_density, [0.5, 1.0]),
}


@pytest.mark.parametrize("name", list(REFERENCE_PATHS))
def test_reference_marginals_solve_fokker_planck_and_wrong_ones_do_not(name):
    drift, g, log_p, wrong_log_p, times = REFERENCE_PATHS[name]
    points = (jnp.array([[0.7], [1.1], [1.6]]) if name == "gbm"
              else 1.5 * jax.random.normal(jax.random.key(9), (16, 2)))
    times = jnp.array(times)
    good = wf.strong_form_residuals(drift, g, log_p, points=points, times=times)
    bad = wf.strong_form_residuals(drift, g, wrong_log_p, points=points, times=times)
    assert float(jnp.max(jnp.abs(good))) < STRONG_TOL
    assert float(jnp.max(jnp.abs(bad))) > WRONG_MIN


def test_stationary_ou_passes_the_weak_form_and_a_wrong_variance_fails():
    """N(0, g²/2θ) is stationary: d/dt E[φ] = 0 = E[Lφ]; a 20% wider law is not."""
    stationary = gaussian_log_density(lambda t: OU.stationary_variance + 0 * t)
    wider = gaussian_log_density(lambda t: 1.2 * OU.stationary_variance + 0 * t)
    good = verify(ou_drift, G, sampler=None, log_density=stationary, dim=2)
    bad = verify(ou_drift, G, sampler=None, log_density=wider, dim=2)
    assert good.passed, str(good)
    assert not bad.passed, str(bad)


@pytest.mark.parametrize("sde", [VP, VE], ids=["vp", "ve"])
def test_affine_path_sde_recovers_the_vp_and_ve_sdes(sde):
    """f = d log a/dt and g² = d b²/dt − 2f b² give back −β/2 and √β (VP), 0 and √(dσ²/dt) (VE)."""
    affine = reference.AffinePathSDE(sde.alpha_sigma)
    x = jnp.array([0.3, -1.2])
    for t in (0.1, 0.5, 0.9):
        t = jnp.asarray(t)
        assert_tree_allclose(affine.drift(x, t), sde.drift(x, t), rtol=1e-5, atol=1e-6)
        assert_tree_allclose(affine.g(t), sde.g(t), rtol=1e-4)


def test_reference_parameters_are_checked():
    with pytest.raises(ValueError, match="theta"):
        reference.OrnsteinUhlenbeck(theta=0.0)
    with pytest.raises(ValueError, match="beta_max"):
        reference.VPSDE(beta_min=1.0, beta_max=0.5)
    with pytest.raises(ValueError, match="sigma_max"):
        reference.VESDE(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(TypeError, match="alpha_sigma"):
        reference.AffinePathSDE(1.0)


# --- the catalogue the weakform_verifier experiment runs ----------------------------------------

CATALOGUE = catalogue.cases()


def test_catalogue_names_are_unique_and_looked_up():
    names = [c.name for c in CATALOGUE]
    assert len(set(names)) == len(names)
    assert catalogue.case("vp_sde").correct and not catalogue.case("vp_sde_drift_10pct").correct
    with pytest.raises(ValueError, match="vp_sde"):
        catalogue.case("no_such_case")


@pytest.mark.parametrize("case", [c for c in CATALOGUE if c.log_density is not None],
                         ids=lambda c: c.name)
def test_catalogue_strong_residual_separates_correct_from_wrong(case):
    """Correct analytic densities solve Fokker–Planck to round-off; a wrong drift or g does not."""
    residual = case.strong_residual(case.t_range, key=jax.random.key(123), num_points=16)
    if case.correct:
        assert residual < STRONG_TOL
    else:
        assert residual > WRONG_MIN


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gravity", "gravity_velocity_10pct"])
def test_catalogue_gravity_field_weak_form(name):
    """The Poisson field of the ODE generators transports its exact conditional paths, and a
    velocity 10% too small does not. At 32 000 samples the wrong field's max |z| is about twice
    the threshold (at 8 000 it is not yet rejected); the right one's is below half of it."""
    case = catalogue.case(name)
    report = case.verify(32_000, np.linspace(*case.t_range, 3), key=jax.random.key(0))
    assert report.passed == case.correct, str(report)
