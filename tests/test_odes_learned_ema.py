"""The learned ODE models' EMA without its starting point (odes.learned.debiased_ema)."""

import jax
import numpy as np
import optax
import pytest

from diffusionlab.odes.learned import debiased_ema


def test_debiased_ema_is_the_weighted_mean_of_the_trained_iterates():
    rng = np.random.default_rng(0)
    decay, n = 0.9, 25
    theta0 = {"w": rng.normal(size=3)}
    iterates = [{"w": rng.normal(size=3)} for _ in range(n)]
    ema = theta0
    for theta in iterates:  # what train.fit's step does, one update per step
        ema = optax.incremental_update(theta, ema, 1.0 - decay)
    weights = (1 - decay) * decay ** np.arange(n - 1, -1, -1)  # iterate k has (1-d) d^(n-k)
    expected = sum(w * t["w"] for w, t in zip(weights, iterates, strict=True)) / weights.sum()
    got = debiased_ema(ema, theta0, decay=decay, steps=n)
    np.testing.assert_allclose(got["w"], expected, rtol=1e-10)
    # The raw EMA keeps d^n of the start: it differs by exactly that share.
    np.testing.assert_allclose(ema["w"], decay**n * theta0["w"] + (1 - decay**n) * expected,
                               rtol=1e-10)


def test_debiased_ema_edge_cases_and_bad_input():
    params = {"w": np.ones(2)}
    assert debiased_ema(params, {"w": np.zeros(2)}, decay=0.99, steps=0) is params
    constant = jax.tree.map(lambda x: 2.0 * x, params)  # every iterate equal: the EMA is it
    ema = jax.tree.map(lambda p, c: 0.5 * p + 0.5 * c, params, constant)  # d^n = 0.5
    np.testing.assert_allclose(debiased_ema(ema, params, decay=0.5, steps=1)["w"], [2.0, 2.0])
    with pytest.raises(ValueError, match="decay"):
        debiased_ema(params, params, decay=1.0, steps=3)
    with pytest.raises(ValueError, match="steps"):
        debiased_ema(params, params, decay=0.5, steps=-1)
