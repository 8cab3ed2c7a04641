"""The learned gravity model's prior is centred at the training data's mean (Su's far field:
from far away the data look like one mass at their centre of mass)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from asserts import assert_z

from diffusionlab import train
from diffusionlab.odes import gravity, learned

KEY = jax.random.key(0)
MEAN = np.array([3.0, -2.0])


def _data(n=64, spread=0.5):
    return MEAN + spread * np.random.default_rng(1).standard_normal((n, 2))


def _model(centre, T=40.0):
    budget = learned.Budget(hidden=8, depth=1, time_dim=4, gravity_T=T)
    apply, params = learned.init_network(2, budget, key=KEY)
    return learned.LearnedModel("gravity", apply, params, budget, 2, prior_centre=centre)


def test_fit_stores_the_data_mean_for_gravity_only():
    data = _data().astype(np.float32)
    config = train.TrainConfig(steps=1, batch_size=4, log_every=1)
    budget = learned.Budget(hidden=8, depth=1, time_dim=4)
    model = learned.fit("gravity", data, budget=budget, config=config, key=KEY)
    np.testing.assert_allclose(model.prior_centre, np.mean(data.astype(np.float64), 0),
                               rtol=1e-12)
    assert learned.gravity_prior_centre(
        data, learned.Budget(gravity_prior_centre="origin")) is None
    assert learned.gravity_prior_centre(data, budget) == model.prior_centre


@pytest.mark.parametrize("centre", [tuple(MEAN), None], ids=["mean", "origin"])
def test_prior_draws_are_centred(centre):
    # The prior is multivariate Cauchy (no mean): each coordinate is Cauchy(c, T), whose
    # sample median is asymptotically normal with standard error π T / (2 √n).
    T, n = 4.0, 20000
    x = np.asarray(_model(centre, T=T).sample_prior(n, key=KEY), np.float64)
    want = np.zeros(2) if centre is None else MEAN
    assert_z(np.median(x, axis=0), math.pi * T / (2 * math.sqrt(n)), want)
    # The same draws as the origin-centred prior, shifted.
    base = np.asarray(gravity.sample_prior(n, 2, T, key=KEY), np.float64)
    np.testing.assert_allclose(x, base + want, rtol=1e-6, atol=1e-5)


def test_log_prior_is_the_shifted_gravity_prior():
    with jax.enable_x64(True):
        y = jax.random.normal(jax.random.key(2), (5, 2), jnp.float64) * 30
        got = _model(tuple(MEAN)).log_prior()(y + MEAN[None, :])
        np.testing.assert_allclose(got, gravity.prior_log_density(y, 40.0), rtol=1e-12)
        # Hashable (a static argument of the jitted likelihood) and equal by value, so that
        # two models with one centre share the compiled likelihood.
        first, second = _model(tuple(MEAN)).log_prior(), _model(tuple(MEAN)).log_prior()
        assert first == second and hash(first) == hash(second)
        assert first != _model(None).log_prior()


def test_far_field_of_the_data_is_the_prior_at_their_mean():
    # The exact law at T, p_T = mean_i p_T(· | x_i), against the prior centred at the data's
    # mean: the dipole term cancels, and to second order in δ = x_i - mean,
    # |log p_T - log prior| ≤ [(d+1)/2 + (d+1)/4 + (d+1)²/8] E|δ|²/T² ≤ (d+1)² E|δ|²/T².
    # At the origin the dipole (d+1) y·mean/(T² + |y|²), up to (d+1)|mean|/(2T), remains.
    with jax.enable_x64(True):
        T, d = 40.0, 2
        data = jnp.asarray(_data())
        centre = learned.gravity_prior_centre(data, learned.Budget())
        x = jnp.asarray(np.asarray(_model(centre, T=T).sample_prior(400, key=KEY)), jnp.float64)
        log_cond = jax.vmap(lambda xi: gravity.conditional_log_density(
            x, T, jnp.broadcast_to(xi, x.shape)))(data)
        log_exact = jax.scipy.special.logsumexp(log_cond, axis=0) - math.log(data.shape[0])
        err_mean = np.max(np.abs(log_exact - _model(centre, T=T).log_prior()(x)))
        err_origin = np.max(np.abs(log_exact - _model(None, T=T).log_prior()(x)))
        spread_sq = float(np.mean(np.sum((np.asarray(data) - np.asarray(centre)) ** 2, 1)))
        assert err_mean <= (d + 1) ** 2 * spread_sq / T**2
        assert err_origin >= 10 * err_mean


def test_bad_centre_options_raise():
    with pytest.raises(ValueError, match="gravity_prior_centre"):
        learned.Budget(gravity_prior_centre="median")
    with pytest.raises(ValueError, match="prior_centre"):
        _model((1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="prior_centre"):
        _model((1.0, math.nan))
    budget = learned.Budget(hidden=8, depth=1, time_dim=4)
    apply, params = learned.init_network(2, budget, key=KEY)
    cfm = learned.LearnedModel("cfm", apply, params, budget, 2, prior_centre=(1.0, 2.0))
    with pytest.raises(ValueError, match="centre must be None"):
        cfm.sample_prior(3, key=KEY)
