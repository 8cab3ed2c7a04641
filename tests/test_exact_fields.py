"""Exact marginal fields of a training set: the VP mixture score against autodiff, the
probability-flow identity, and memorisation when sampled in place of a network."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusionlab.odes import VPSchedule, exact_fields, flows, gravity, learned, memorisation, vp

KEY = jax.random.key(0)
SCHEDULE = VPSchedule()


def _mixture_log_density(x_d, t, data):
    """log p_t(x) of the VP marginal of the empirical distribution, one point (d,)."""
    alpha = jnp.exp(SCHEDULE.log_alpha(t))
    sigma_sq = SCHEDULE.sigma(t) ** 2
    d = data.shape[1]
    log_k = -0.5 * jnp.sum((x_d[None, :] - alpha * data) ** 2, axis=1) / sigma_sq
    return (jax.scipy.special.logsumexp(log_k) - math.log(data.shape[0])
            - 0.5 * d * jnp.log(2 * jnp.pi * sigma_sq))


def _points(d, n=7, b=5, dtype=jnp.float64):
    k1, k2, k3 = jax.random.split(KEY, 3)
    data = jax.random.normal(k1, (n, d), dtype)
    x = jax.random.normal(k2, (b, d), dtype) * 1.3
    t = jax.random.uniform(k3, (b,), dtype, 0.02, 1.0)
    return x, t, data


@pytest.mark.parametrize("d", [1, 3])
def test_vp_score_is_the_gradient_of_the_mixture_log_density(d):
    with jax.enable_x64(True):
        x, t, data = _points(d)
        grad = jax.vmap(jax.grad(_mixture_log_density), in_axes=(0, 0, None))(x, t, data)
        score = exact_fields.vp_score(x, t, data, block=3)  # blocks: 3 + 3 + 1 padded
        np.testing.assert_allclose(np.asarray(score), np.asarray(grad), rtol=1e-9, atol=1e-9)
        # a scalar time at both ends of the interval: alpha_1 = 0.0066; at t = 1e-3,
        # sigma = 0.01, so the queries sit near training points
        near = data[: x.shape[0]] + 0.01 * x
        for s, y in ((1.0, x), (1e-3, near)):
            grad = jax.vmap(jax.grad(_mixture_log_density), in_axes=(0, 0, None))(
                y, jnp.full((y.shape[0],), s), data)
            score = exact_fields.vp_score(y, s, data)
            np.testing.assert_allclose(np.asarray(score), np.asarray(grad), rtol=1e-7,
                                       atol=1e-9 * float(jnp.max(jnp.abs(grad))))


def test_vp_noise_and_velocity_are_the_probability_flow_of_the_score():
    with jax.enable_x64(True):
        x, t, data = _points(2)
        score = exact_fields.vp_score(x, t, data)
        noise = exact_fields.vp_noise(x, t, data)
        np.testing.assert_allclose(np.asarray(noise),
                                   np.asarray(-SCHEDULE.sigma(t)[:, None] * score), rtol=1e-12)
        for s in (0.3, 0.9):
            flow = vp.probability_flow(lambda y, tb: exact_fields.vp_noise(y, tb, data))(x, s)
            np.testing.assert_allclose(np.asarray(exact_fields.vp_velocity(x, s, data)),
                                       np.asarray(flow), rtol=1e-12, atol=1e-12)


def test_vp_score_far_from_the_data_does_not_underflow():
    # Every Gaussian weight underflows (|x - alpha x_i|^2 / 2 sigma^2 ~ 5e5): the log-domain
    # sums still give the nearest point's score.
    data = jnp.array([[0.0, 0.0], [1.0, 0.0]], jnp.float32)
    x = jnp.array([[-100.0, 0.0]], jnp.float32)
    s = 1e-2
    alpha = float(jnp.exp(SCHEDULE.log_alpha(s)))
    sigma = float(SCHEDULE.sigma(s))
    score = np.asarray(exact_fields.vp_score(x, s, data))
    np.testing.assert_allclose(score, [[100.0 / sigma**2, 0.0]], rtol=1e-5)
    assert alpha < 1.0


def test_exact_velocity_dispatches_to_the_closed_forms():
    with jax.enable_x64(True):
        x, _, data = _points(2)
        np.testing.assert_allclose(exact_fields.exact_velocity("gravity", data)(x, 0.7),
                                   gravity.velocity(x, 0.7, data), rtol=1e-12)
        np.testing.assert_allclose(
            exact_fields.exact_velocity("cfm", data)(x, 0.7),
            flows.marginal_velocity(x, 0.7, data, log_prior=flows.standard_normal_log_density),
            rtol=1e-12)
        np.testing.assert_allclose(exact_fields.exact_velocity("vp", data)(x, 0.7),
                                   exact_fields.vp_velocity(x, 0.7, data), rtol=1e-12)


def test_bad_inputs_raise():
    x, t, data = _points(2, dtype=jnp.float32)
    with pytest.raises(ValueError, match="method"):
        exact_fields.exact_velocity("reflow", data)
    with pytest.raises(ValueError, match="t"):
        exact_fields.vp_score(x, 1.5, data)
    with pytest.raises(ValueError, match="t"):
        exact_fields.vp_score(x, 0.0, data)
    with pytest.raises(TypeError, match="schedule"):
        exact_fields.vp_score(x, 0.5, data, schedule="ddpm")
    with pytest.raises(ValueError, match="dimension"):
        exact_fields.vp_score(x[:, :1], 0.5, data)
    with pytest.raises(ValueError, match="block"):
        exact_fields.vp_velocity(x, 0.5, data, block=0)


@pytest.mark.parametrize("method", exact_fields.EXACT_METHODS)
def test_sample_exact_memorises_the_training_set(method):
    # Four well-separated training points: every exact-field sample ends within 0.1 of one
    # (VP and gravity stop at t = 1e-3, where the spread around a point is ~0.01), and each
    # point is hit about equally often (a chi-square test at 1e-3).
    data = jnp.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]], jnp.float32) - 1.0
    budget = learned.Budget(hidden=4, depth=1, time_dim=4, gravity_T=20.0)
    apply, params = learned.init_network(2, budget, key=KEY)
    centre = learned.gravity_prior_centre(data, budget) if method == "gravity" else None
    model = learned.LearnedModel(method, apply, params, budget, 2, prior_centre=centre)
    sol = exact_fields.sample_exact(model, data, 200, key=jax.random.key(3), solver="euler",
                                    steps=60)
    report = memorisation.hit_report(sol.samples, data, tolerance=0.1)
    assert report.hit_fraction > 0.97, report.hit_fraction
    assert report.p_value > 1e-3, report.counts
    with pytest.raises(ValueError, match="d = 2"):
        exact_fields.sample_exact(model, jnp.zeros((3, 3)), 5, key=KEY)


def test_memorisation_floor_is_the_binomial_law_of_a_two_point_resample():
    # Data {0, 1} in 1-D against a reference with half its mass at each: a draw of num = 8
    # points with k ones has W2 = sqrt(|k/8 - 1/2|) exactly (the quantile functions differ
    # on a band of that width by 1), and k ~ Binomial(8, 1/2).
    data = jnp.array([[0.0], [1.0]])
    reference = jnp.array([[0.0]] * 4 + [[1.0]] * 4)
    floor = memorisation.memorisation_floor(data, reference, 8, domain="toy", key=KEY,
                                            resamples=400)
    k = np.arange(9)
    values = np.sqrt(np.abs(k / 8 - 0.5))
    assert np.all(np.min(np.abs(floor.scores[:, None] - values[None]), axis=1) < 1e-5)
    weights = np.array([math.comb(8, j) for j in k]) / 256
    mean = float(weights @ values)
    sd = float(np.sqrt(weights @ values**2 - mean**2))
    assert abs(floor.mean - mean) < 4 * sd / math.sqrt(400), (floor.mean, mean)
    assert floor.std == pytest.approx(sd, rel=0.2)


def test_memorisation_floor_of_one_point_has_no_spread_and_rejects_bad_counts():
    reference = jax.random.normal(KEY, (50, 2))
    floor = memorisation.memorisation_floor(jnp.ones((3, 2)), reference, 10, domain="toy",
                                            key=KEY, resamples=3)
    assert floor.std == pytest.approx(0.0, abs=1e-7)
    assert floor.scores.shape == (3,)
    with pytest.raises(ValueError, match="num"):
        memorisation.memorisation_floor(reference, reference, 1, domain="toy", key=KEY)
    with pytest.raises(ValueError, match="resamples"):
        memorisation.memorisation_floor(reference, reference, 5, domain="toy", key=KEY,
                                        resamples=1)
    with pytest.raises(ValueError, match="data"):
        memorisation.memorisation_floor(jnp.zeros((0, 2)), reference, 5, domain="toy", key=KEY)
