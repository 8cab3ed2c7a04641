"""Score matching = conditional score matching up to a θ-independent constant, and friends."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from asserts import assert_compiles_once, assert_tree_allclose, assert_z

from diffusionlab import scorematching as sm

ALPHA, SIGMA, DATA_STD, DIM = 0.8, 0.6, 1.5, 2
NUM = 100_000


def gaussian_pairs(key, num=NUM):
    """(x_0, x_t) with x_0 ~ N(0, s²I) and x_t = αx_0 + σε."""
    k0, k1 = jax.random.split(key)
    x0 = DATA_STD * jax.random.normal(k0, (num, DIM))
    return x0, ALPHA * x0 + SIGMA * jax.random.normal(k1, (num, DIM))


def linear_score(theta, x):
    return x @ theta["w"] + theta["b"][None, :]


def random_theta(key):
    kw, kb = jax.random.split(key)
    return {"w": jax.random.normal(kw, (DIM, DIM)), "b": jax.random.normal(kb, (DIM,))}


def marginal_score(x_t):
    return -x_t / (ALPHA**2 * DATA_STD**2 + SIGMA**2)


def per_example_gap(theta, x0, xt):
    s = linear_score(theta, xt)
    csm = sm.conditional_score_matching_loss(s, xt, x0, alpha=ALPHA, sigma=SIGMA)
    esm = sm.explicit_score_matching_loss(s, marginal_score(xt))
    return csm, esm


def test_gap_is_constant_across_theta_and_matches_closed_form():
    x0, xt = gaussian_pairs(jax.random.key(0))
    closed = float(sm.gaussian_score_matching_gap(DIM, alpha=ALPHA, sigma=SIGMA,
                                                  data_std=DATA_STD))
    gaps = []
    for seed in range(4):
        csm, esm = jax.jit(per_example_gap)(random_theta(jax.random.key(10 + seed)), x0, xt)
        diff = csm - esm
        assert float(csm.mean()) >= float(esm.mean())  # CSM is an upper bound on SM
        assert_z(diff.mean(), diff.std() / np.sqrt(NUM), closed)
        gaps.append(diff)
    # Paired differences between parameters: the θ-dependent part has mean zero.
    for other in gaps[1:]:
        d = other - gaps[0]
        assert_z(d.mean(), d.std() / np.sqrt(NUM), 0.0)


def test_at_the_true_score_sm_is_zero_and_csm_is_the_gap():
    x0, xt = gaussian_pairs(jax.random.key(1))
    s = marginal_score(xt)
    assert float(jnp.max(sm.explicit_score_matching_loss(s, marginal_score(xt)))) == 0.0
    csm = sm.conditional_score_matching_loss(s, xt, x0, alpha=ALPHA, sigma=SIGMA)
    closed = sm.gaussian_score_matching_gap(DIM, alpha=ALPHA, sigma=SIGMA, data_std=DATA_STD)
    assert_z(csm.mean(), csm.std() / np.sqrt(NUM), closed)


def test_gap_closed_form_limits():
    assert float(sm.gaussian_score_matching_gap(3, alpha=1.0, sigma=0.5, data_std=0.0)) == 0.0
    big = sm.gaussian_score_matching_gap(3, alpha=1.0, sigma=0.5, data_std=1e4)
    np.testing.assert_allclose(big, 3 / 0.25, rtol=1e-6)


def test_gradients_of_sm_and_csm_agree():
    x0, xt = gaussian_pairs(jax.random.key(2), 50_000)
    theta = random_theta(jax.random.key(3))

    def per_example_grad_difference(x0_1, xt_1):
        def diff(th):
            csm, esm = per_example_gap(th, x0_1[None], xt_1[None])
            return (csm - esm)[0]

        return jax.grad(diff)(theta)

    grads = jax.jit(jax.vmap(per_example_grad_difference))(x0, xt)
    mean = jax.tree.map(lambda g: g.mean(0), grads)
    se = jax.tree.map(lambda g: g.std(0) / np.sqrt(g.shape[0]), grads)
    jax.tree.map(lambda m, s: assert_z(m, s, jnp.zeros_like(m)), mean, se)
    # ... and the gradient itself is far from zero, so the agreement is not vacuous.
    full = jax.grad(lambda th: per_example_gap(th, x0, xt)[1].mean())(theta)
    assert float(jnp.max(jnp.abs(full["w"]))) > 100 * float(jnp.max(se["w"]))


def test_mixture_score_matches_autodiff_and_posterior_mean_identity():
    atoms = jnp.array([[0.0, 1.0], [2.0, -1.0], [-1.5, 0.5], [0.5, 0.5]])
    data = sm.GaussianMixture(atoms, jnp.zeros(4), jnp.full((4,), 0.25))
    perturbed = data.perturb(alpha=ALPHA, sigma=SIGMA)
    x = jax.random.normal(jax.random.key(4), (32, 2)) * 2
    autodiff = jax.vmap(jax.grad(perturbed.log_prob))(x)
    assert_tree_allclose(perturbed.score(x), autodiff, rtol=1e-4, atol=1e-5)
    # Posterior mean of conditional scores over equal-weight atoms = exact marginal score.
    ratio = sm.batch_ratio_score(x, atoms, alpha=ALPHA, sigma=SIGMA)
    assert_tree_allclose(ratio, perturbed.score(x), rtol=1e-4, atol=1e-5)


def test_mixture_sampling_moments():
    data = sm.GaussianMixture.ring(8, radius=2.0, std=0.3)
    x = data.sample(100_000, key=jax.random.key(5))
    r2 = jnp.sum(x**2, axis=-1)
    assert_z(r2.mean(), r2.std() / np.sqrt(x.shape[0]), 4.0 + 2 * 0.09)


def test_implicit_and_sliced_losses_equal_explicit_up_to_fisher_information():
    x0, xt = gaussian_pairs(jax.random.key(6), 100_000)
    theta = random_theta(jax.random.key(7))

    def score_fn(x_D):
        return linear_score(theta, x_D[None])[0]

    esm = sm.explicit_score_matching_loss(linear_score(theta, xt), marginal_score(xt))
    fisher = jnp.sum(marginal_score(xt) ** 2, axis=-1)
    ism = jax.jit(lambda x: sm.implicit_score_matching_loss(score_fn, x))(xt)
    hutch = jax.jit(lambda x: sm.implicit_score_matching_loss(
        score_fn, x, method="hutchinson", key=jax.random.key(8)))(xt)
    ssm = jax.jit(lambda x: sm.sliced_score_matching_loss(score_fn, x,
                                                          key=jax.random.key(9)))(xt)
    for estimate in (ism, hutch, ssm):
        d = esm - fisher - estimate
        assert_z(d.mean(), d.std() / np.sqrt(d.shape[0]), 0.0)
    # The exact trace of a linear score is the same for every x: 2 tr W.
    assert_tree_allclose(ism - jnp.sum(linear_score(theta, xt) ** 2, -1),
                         jnp.full(xt.shape[:1], 2 * jnp.trace(theta["w"])), rtol=1e-4, atol=1e-4)
    assert float(jnp.std(hutch - ism)) > 0  # Hutchinson is an estimator, not the exact trace


def test_batch_ratio_bias_shrinks_with_batch_size():
    data = sm.GaussianMixture.ring(8, radius=2.0, std=0.3)
    x = jnp.array([[2.5, 0.0], [1.0, 1.0], [0.0, -0.3]])
    sizes = (2, 8, 128)
    norms = []
    for b in sizes:
        bias, se = sm.batch_ratio_score_bias(data, x, alpha=ALPHA, sigma=0.3, batch_size=b,
                                             num_batches=1000, key=jax.random.key(b))
        norms.append((float(jnp.max(jnp.abs(bias))), float(jnp.max(se))))
    assert norms[0][0] > 10 * norms[0][1]  # clearly biased at a small batch
    assert norms[0][0] > norms[1][0] > norms[2][0]


def test_csm_loss_compiles_once():
    loss = jax.jit(lambda s, xt, x0: sm.conditional_score_matching_loss(s, xt, x0, alpha=ALPHA,
                                                                        sigma=SIGMA))
    calls = [tuple(jax.random.normal(jax.random.key(i), (3, 8, DIM))) for i in range(3)]
    assert_compiles_once(loss, calls)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: sm.explicit_score_matching_loss(jnp.ones((3, 2)), jnp.ones((3, 3))), "shape"),
        (lambda: sm.explicit_score_matching_loss(jnp.ones(3), jnp.ones(3)), r"\(B, d\)"),
        (lambda: sm.conditional_score_matching_loss(jnp.ones((3, 2)), jnp.ones((3, 2)),
                                                    jnp.ones((4, 2)), alpha=1.0, sigma=1.0),
         "x_0"),
        (lambda: sm.implicit_score_matching_loss(lambda x: x, jnp.ones((3, 2)),
                                                 method="hutchinson"), "key"),
        (lambda: sm.implicit_score_matching_loss(lambda x: x, jnp.ones((3, 2)), method="svd"),
         "method"),
        (lambda: sm.gaussian_score_matching_gap(2, alpha=1.0, sigma=0.0, data_std=1.0), "sigma"),
        (lambda: sm.batch_ratio_score(jnp.ones((3, 2)), jnp.ones((5, 3)), alpha=1.0, sigma=1.0),
         "share d"),
    ],
)
def test_bad_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_compare_losses_theta_free_constant_and_gradients():
    x0, xt = gaussian_pairs(jax.random.key(11), 50_000)
    theta = random_theta(jax.random.key(12))
    c = sm.compare_losses(linear_score(theta, xt), xt, x0, alpha=ALPHA, sigma=SIGMA,
                          true_score=marginal_score(xt))
    closed = sm.gaussian_score_matching_gap(DIM, alpha=ALPHA, sigma=SIGMA, data_std=DATA_STD)
    assert_z(c.constant, c.constant_se, closed)
    assert_z(c.gap, c.gap_se, closed)
    assert float(c.csm) > float(c.sm)
    g_sm, g_csm = sm.loss_gradients(linear_score, theta, xt, x0, alpha=ALPHA, sigma=SIGMA,
                                    true_score=marginal_score(xt))
    cosine = sum(jnp.vdot(g_sm[k], g_csm[k]) for k in theta) / jnp.sqrt(
        sum(jnp.vdot(g_sm[k], g_sm[k]) for k in theta)
        * sum(jnp.vdot(g_csm[k], g_csm[k]) for k in theta))
    assert float(cosine) > 0.99


def test_losses_match_their_per_example_formulas():
    """The losses now take their traces from ``diffusionlab.divergence`` over the batch; the
    per-example formulas they replaced agree to float32 rounding (sums in another order)."""
    w = jax.random.normal(jax.random.key(1), (3, 3))

    def score_fn(x_D):
        return -jnp.tanh(w @ x_D) @ w - x_D**3

    x = jax.random.normal(jax.random.key(2), (16, 3))
    key = jax.random.key(3)

    def implicit_old(x_D):
        s_D = score_fn(x_D)
        return s_D @ s_D + 2.0 * jnp.trace(jax.jacfwd(score_fn)(x_D))

    def sliced_old(x_D, v_PxD):
        s_D = score_fn(x_D)
        vjv_P = jax.vmap(lambda v_D: v_D @ jax.jvp(score_fn, (x_D,), (v_D,))[1])(v_PxD)
        return jnp.mean((v_PxD @ s_D) ** 2) + 2.0 * jnp.mean(vjv_P)

    v_BxPxD = jax.random.normal(key, (16, 4, 3))
    assert_tree_allclose(jax.jit(lambda y: sm.implicit_score_matching_loss(score_fn, y))(x),
                         jax.vmap(implicit_old)(x), rtol=1e-5, atol=1e-5)
    assert_tree_allclose(
        jax.jit(lambda y: sm.sliced_score_matching_loss(score_fn, y, key=key,
                                                        num_projections=4))(x),
        jax.vmap(sliced_old)(x, v_BxPxD), rtol=1e-5, atol=1e-5)


def test_objective_is_the_conditional_loss_at_fresh_perturbations():
    """``loss_fn(θ, x₀, key)`` perturbs with ε = normal(key) and returns ‖s_θ(x_t) + ε/σ‖²."""
    theta = random_theta(jax.random.key(1))
    x0 = DATA_STD * jax.random.normal(jax.random.key(2), (64, DIM))
    loss_fn = sm.conditional_score_matching_objective(linear_score, alpha=ALPHA, sigma=SIGMA)
    key = jax.random.key(3)
    eps = jax.random.normal(key, x0.shape)
    expected = jnp.sum((linear_score(theta, ALPHA * x0 + SIGMA * eps) + eps / SIGMA) ** 2, -1)
    assert_tree_allclose(loss_fn(theta, x0, key), expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(loss_fn(theta, x0, jax.random.key(4)), expected)
    with pytest.raises(ValueError, match="sigma"):
        sm.conditional_score_matching_objective(linear_score, alpha=ALPHA, sigma=0.0)


def test_gradient_agreement_is_the_cosine_and_the_relative_difference():
    g = {"w": jnp.array([[3.0, 0.0], [0.0, 0.0]]), "b": jnp.array([4.0, 0.0])}
    cosine, relative = sm.gradient_agreement(g, jax.tree.map(lambda a: 2 * a, g))
    assert (float(cosine), float(relative)) == pytest.approx((1.0, 1.0), abs=1e-6)
    orthogonal = {"w": jnp.zeros((2, 2)), "b": jnp.array([0.0, 5.0])}
    cosine, relative = sm.gradient_agreement(g, orthogonal)
    # |g| = 5 and |o| = 5, orthogonal: cos 0 and |o − g| / |g| = √50 / 5 = √2.
    assert (float(cosine), float(relative)) == pytest.approx((0.0, np.sqrt(2.0)), abs=1e-6)
    with pytest.raises(ValueError, match="same structure"):
        sm.gradient_agreement(g, {"w": g["w"]})
