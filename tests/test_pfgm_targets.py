"""The gravity model's two regression targets (odes.learned, ``Budget.gravity_target``): the
unbiased conditional target and PFGM's normalised batch target."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusionlab.odes import batch_target, gravity, learned

X0 = jnp.array([[1.0, -0.5], [0.2, 0.3], [-1.5, 2.0], [0.0, 0.0]], jnp.float32)
KEY = jax.random.key(7)


def _apply(params, x, t_feature):
    """A stand-in network: linear in its scaled input, with a time term."""
    return 0.5 * x + params[None, :] * t_feature[:, None]


def _constant(params, x, t_feature):
    """A stand-in network whose denoiser output is ``params``, ``(B, d)``."""
    return params


def _draws(budget, x0, key):
    """The heights and points of both losses, derived here from their definition."""
    key_t, key_x = jax.random.split(key)
    t = jnp.exp(jax.random.uniform(key_t, x0.shape[:1], x0.dtype, math.log(budget.gravity_t_min),
                                   math.log(budget.gravity_T)))
    return gravity.conditional_sample(x0, t, key=key_x), t


def test_the_conditional_target_is_unchanged():
    budget = learned.Budget()
    assert budget.gravity_target == "conditional"
    params = jnp.array([0.3, -0.7], jnp.float32)
    got = learned.ALGORITHMS["gravity"].loss(_apply, budget)(params, X0, KEY)
    # The values before the batch option existed, at this key.
    np.testing.assert_allclose(got, [1.6184044, 0.28686795, 2.8007257, 0.06207554], rtol=1e-5)
    # And their definition: |D(x_t, t) - x_0|^2 at the exact conditional draw.
    x_t, t = _draws(budget, X0, KEY)
    denoised = learned.gravity_denoiser(_apply, budget, params, x_t, t)
    np.testing.assert_allclose(got, np.sum((np.asarray(denoised) - np.asarray(X0)) ** 2, 1),
                               rtol=1e-5)


@pytest.mark.parametrize("gamma", [0.0, 1e-3])
def test_the_batch_target_is_the_normalised_field_of_the_batch(gamma):
    budget = learned.Budget(gravity_target="batch", gravity_gamma=gamma)
    loss = learned.ALGORITHMS["gravity"].loss(_constant, budget)
    x_t, t = _draws(budget, X0, KEY)
    d = X0.shape[1]
    # The target: the whole-"data" normalised field of batch_target, the data being the batch.
    target = np.asarray(batch_target.batch_target_bias(x_t, t, X0, batch_size=2, num_batches=2,
                                                       key=KEY, gamma=gamma).exact)
    np.testing.assert_allclose(target, gravity.pfgm_target(x_t, t, X0, gamma=gamma), rtol=1e-6)
    # Any denoiser: the loss is |s_theta - target|^2, s_theta = -sqrt(d+1) (x - D, t)/|.|.
    denoiser = jax.random.normal(jax.random.key(1), X0.shape)
    e = -np.concatenate([np.asarray(x_t - denoiser), np.asarray(t)[:, None]], axis=1)
    field = math.sqrt(d + 1) * e / np.linalg.norm(e, axis=1, keepdims=True)
    np.testing.assert_allclose(loss(denoiser, X0, KEY), np.sum((field - target) ** 2, 1),
                               rtol=1e-4, atol=1e-6)
    # The denoiser whose velocity (x - D)/t is the target's, target_x/target_t, has the target's
    # direction: zero loss without gamma, (gamma/(|E| + gamma))^2 (d+1) with it.
    aligned = x_t - t[:, None] * target[:, :-1] / target[:, -1:]
    got = np.asarray(loss(aligned, X0, KEY))
    expected = (d + 1) * (1 - np.linalg.norm(target, axis=1) / math.sqrt(d + 1)) ** 2
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert gamma > 0 or np.all(got < 1e-5)


def test_the_batch_target_differs_from_the_conditional_one_and_is_bounded():
    budget = learned.Budget(gravity_target="batch")
    params = jnp.array([0.3, -0.7], jnp.float32)
    got = np.asarray(learned.ALGORITHMS["gravity"].loss(_apply, budget)(params, X0, KEY))
    np.testing.assert_allclose(got, learned.gravity_batch_loss(_apply, budget, params, X0, KEY),
                               rtol=1e-6)
    d = X0.shape[1]
    assert np.all((got >= 0) & (got <= 4 * (d + 1)))
    conditional = learned.gravity_loss(_apply, budget, params, X0, KEY)
    assert not np.allclose(got, conditional, rtol=1e-2)


def test_the_network_field_has_norm_sqrt_d_plus_1_and_points_down():
    budget = learned.Budget()
    x = jax.random.normal(jax.random.key(2), (5, 3))
    t = jnp.linspace(0.01, 30.0, 5)
    field = np.asarray(learned.gravity_normalised_field(_constant, budget, jnp.zeros((5, 3)), x,
                                                        t))
    np.testing.assert_allclose(np.linalg.norm(field, axis=1), 2.0, rtol=1e-5)
    assert np.all(field[:, -1] < 0)  # the field pulls towards t = 0


def test_bad_target_options_raise():
    with pytest.raises(ValueError, match=r"gravity_target.*conditional.*batch"):
        learned.Budget(gravity_target="pfgm")
    with pytest.raises(TypeError, match="gravity_target"):
        learned.Budget(gravity_target=None)
    with pytest.raises(ValueError, match="gravity_gamma"):
        learned.Budget(gravity_gamma=-1e-3)
