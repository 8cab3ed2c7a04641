"""Mathematical properties of diffusionlab.udm: kernels, presets, oracles, invariants, input checks."""

from __future__ import annotations

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from asserts import assert_tree_allclose, assert_z
from scipy import stats as scipy_stats

from diffusionlab import udm
from diffusionlab.udm.consistency import (
    binomial_count_kernel,
    chi2_two_sample,
    hamming_consistency,
    inconsistent_kernel,
    marginal_consistency,
)
from diffusionlab.udm.networks import NetworkConfig, make_network, predictor

KEY = jax.random.key(0)
X0_VEC = jnp.array([0.5, -1.0, 2.0])
TOKENS = jnp.array([0, 1, 2, 0, 1, 2])

# --- marginal consistency of every kernel family ---------------------------------------------

CONTINUOUS = {
    "hot": (udm.HotDiffusion(T=10, event_shape=(3,)), X0_VEC, 6),
    "cold_blur_noisy": (
        udm.ColdDiffusion(sigma=0.3, T=10, event_shape=(4,)),
        jnp.array([1.0, -1.0, 0.5, 0.0]),
        6,
    ),
}
DISCRETE = {
    "edit": (udm.EditDiffusion(length=6, vocab=3), TOKENS, 4),
    "mask": (udm.MaskDiffusion(length=6, vocab=3), TOKENS, 4),
}


def _kernel_cases():
    for name, (process, x0, t) in CONTINUOUS.items():
        yield name, process, x0, t, "baseline", {}
        yield name, process, x0, t, "deterministic", {}
        yield name, process, x0, t, "gaussian_interpolation", {"sigma_tilde": 0.6}
    for name, (process, x0, t) in DISCRETE.items():
        yield name, process, x0, t, "baseline", {}
        yield name, process, x0, t, "deterministic", {}


@pytest.mark.parametrize(
    "name,process,x0,t,kernel,kwargs", list(_kernel_cases()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_kernel_preserves_marginals(name, process, x0, t, kernel, kwargs):
    # s = t - 1 and a two-step jump: both must land on p(x_s | x_0)
    for s in (t - 1, t - 3):
        result = marginal_consistency(process, udm.kernel(kernel), x0, t, s, key=KEY, num=4096, **kwargs)
        # max over <= 24 features of |z|: 4.5 is a Bonferroni-style bound at ~1e-4 per feature
        assert result.max_abs_z < 4.5, (name, kernel, s, result.z)
        if name in DISCRETE:
            # the joint law: d(x_s, x_0) = s exactly on both routes (same draws, same key)
            joint = hamming_consistency(process, udm.kernel(kernel), x0, t, s, key=KEY, num=4096, **kwargs)
            np.testing.assert_array_equal(joint.distances, [s])
            assert joint.chi2 == 0.0 and joint.p_value == 1.0, joint


def test_consistency_check_detects_a_broken_kernel():
    process, x0, t = CONTINUOUS["hot"]
    result = marginal_consistency(process, inconsistent_kernel, x0, t, key=KEY, num=4096, sigma_tilde=0.6)
    assert result.max_abs_z > 6.0


@pytest.mark.parametrize("name", list(DISCRETE))
def test_hamming_check_catches_a_kernel_with_right_marginals_and_a_binomial_count(name):
    # x_s = F_N(x0, eps') with N ~ Binomial(l, s/l): each position is acted on with probability
    # s/l, as under the forward law at s, but d(x_s, x0) = N instead of s.
    process, x0, t = DISCRETE[name]
    s = t - 1
    marginal = marginal_consistency(process, binomial_count_kernel, x0, t, s, key=KEY, num=4096)
    assert marginal.max_abs_z < 4.5, marginal  # the marginal check passes it (same bound as above)
    joint = hamming_consistency(process, binomial_count_kernel, x0, t, s, key=KEY, num=4096)
    # P(N = 3) = C(6, 3) / 2^6 = 0.3125, so ~2800 of the 4096 kernel draws lie off d = 3: the
    # chi-square statistic is in the thousands; p < 1e-12 is far below any level
    assert joint.p_value < 1e-12 and joint.chi2 > 1000, joint
    n = int(joint.kernel_counts[list(joint.distances).index(s)])
    assert_z(n, np.sqrt(4096 * 0.3125 * 0.6875), 4096 * 0.3125)
    assert int(joint.forward_counts.sum()) == int(joint.forward_counts[list(joint.distances).index(s)])


def test_chi2_two_sample_is_the_contingency_test_and_pools_rare_values():
    a = np.repeat([0, 1, 2, 3], [30, 50, 20, 2])
    b = np.repeat([0, 1, 2, 3], [40, 35, 25, 3])
    values, ca, cb, chi2, dof, p = chi2_two_sample(a, b)
    np.testing.assert_array_equal(values, [0, 1, 2, 3])
    np.testing.assert_array_equal(ca, [30, 50, 20, 2])
    # value 3 is seen 5 < 10 times: pooled, then merged into the smallest column (value 2)
    expected = scipy_stats.chi2_contingency(np.array([[30, 50, 22], [40, 35, 28]]), correction=False)
    assert dof == 2
    np.testing.assert_allclose([chi2, p], [expected.statistic, expected.pvalue], rtol=1e-10)
    assert chi2_two_sample(np.full(5, 3), np.full(7, 3))[3:] == (0.0, 0, 1.0)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        chi2_two_sample(np.zeros(0), a)


def test_hot_reverse_step_keeps_marginals_for_every_sigma():
    T = 10
    coefficients = udm.schedule(T)
    for fraction in (0.0, 0.3, 1.0):
        sigma = fraction * coefficients.beta_bar[:-1]
        process = udm.HotDiffusion(T=T, sigma=tuple(sigma), event_shape=(3,))
        t, num = 6, 4096
        k1, k2, k3 = jax.random.split(jax.random.fold_in(KEY, int(10 * fraction)), 3)
        x_t = process.forward(jnp.broadcast_to(X0_VEC, (num, 3)), t, key=k1)
        x_s = process.reverse_step(x_t, jnp.broadcast_to(X0_VEC, (num, 3)), t, key=k2)
        # p(x_{t-1} | x_0) = N(abar_{t-1} x_0, bbar_{t-1}^2)
        mean = coefficients.alpha_bar[t - 1] * np.asarray(X0_VEC)
        sd = coefficients.beta_bar[t - 1]
        from asserts import assert_z

        assert_z(np.mean(x_s, 0), sd / np.sqrt(num), mean)
        var = np.var(np.asarray(x_s, np.float64), 0, ddof=1)
        assert_z(var, sd**2 * np.sqrt(2.0 / (num - 1)), np.full(3, sd**2))
        del k3


# --- DDPM preset equals Ho et al.'s posterior ------------------------------------------------


def test_ddpm_preset_is_hos_posterior():
    T = 40
    with jax.enable_x64(True):
        process = udm.HotDiffusion.ddpm(T=T, event_shape=(1,))
        t = jnp.arange(1, T + 1)
        zeros, ones = jnp.zeros((T, 1)), jnp.ones((T, 1))
        key = jax.random.key(3)
        noise_only = process.reverse_step(zeros, zeros, t, key=key)
        coef_xt = process.reverse_step(ones, zeros, t, key=key) - noise_only
        coef_x0 = process.reverse_step(zeros, ones, t, key=key) - noise_only
        variance = process.reverse_sigma(t) ** 2
        assert noise_only.dtype == jnp.float64
    # Ho et al., computed independently from the continuous-time linear schedule
    tau = np.arange(T + 1) / T
    abar = np.exp(-0.1 * tau - 9.95 * tau**2)
    beta = 1.0 - abar[1:] / abar[:-1]
    alpha = 1.0 - beta
    ho_x0 = np.sqrt(abar[:-1]) * beta / (1.0 - abar[1:])
    ho_xt = np.sqrt(alpha) * (1.0 - abar[:-1]) / (1.0 - abar[1:])
    ho_var = beta * (1.0 - abar[:-1]) / (1.0 - abar[1:])
    assert_tree_allclose(np.asarray(coef_x0)[:, 0], ho_x0, rtol=1e-10, atol=1e-12)
    assert_tree_allclose(np.asarray(coef_xt)[:, 0], ho_xt, rtol=1e-10, atol=1e-12)
    assert_tree_allclose(np.asarray(variance), ho_var, rtol=1e-10, atol=1e-14)
    assert float(variance[0]) == 0.0  # sigma_1 = 0: the last step returns x0_hat


def test_hot_loss_identity():
    """||x0 - mu(x_t)||^2 (abar/bbar)^2 = ||eps - eps_theta||^2, the essay's loss identity."""
    process = udm.HotDiffusion(T=20, event_shape=(3,))
    k1, k2, k3 = jax.random.split(KEY, 3)
    x0 = jax.random.normal(k1, (5, 3))
    eps, eps_theta = jax.random.normal(k2, (5, 3)), jax.random.normal(k3, (5, 3))
    t = jnp.array([1, 5, 10, 15, 20])
    x_t = process.apply(x0, t, eps)
    loss = process.loss(x0, process.x0_from_eps(x_t, eps_theta, t), t)
    assert_tree_allclose(loss, jnp.mean((eps - eps_theta) ** 2, -1), rtol=2e-4)


# --- oracle predictors -----------------------------------------------------------------------


@pytest.mark.parametrize("steps", [None, 7])
def test_ddim_with_oracle_inverts_its_forward_pass(steps):
    T = 30
    process = udm.HotDiffusion.ddim(T=T, event_shape=(2,))
    x0 = jax.random.normal(KEY, (8, 2))
    eps = jax.random.normal(jax.random.key(1), (8, 2))
    x_T = process.apply(x0, jnp.full(8, T), eps)
    out, path = udm.sample(process, lambda x, t: x0, x_T, key=KEY, steps=steps, trajectory=True)
    times = udm.reverse_times(T, steps or T)
    expected = jax.vmap(lambda s: process.apply(x0, jnp.full(8, s), eps))(jnp.asarray(times))
    assert_tree_allclose(path, expected, rtol=1e-5, atol=2e-5)
    assert_tree_allclose(out, x0, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("degradation,sigma", [("blur", 0.0), ("blur", 0.2), ("mask", 0.2), ("pool", 0.2)])
def test_improved_cold_sampler_with_oracle_returns_x0(degradation, sigma):
    x0 = jax.random.uniform(KEY, (3, 4, 4, 1), minval=-1, maxval=1)
    process = udm.ColdDiffusion(degradation, sigma=sigma, kernel="deterministic", T=8,
                                event_shape=(4, 4, 1))
    x_T = process.prior(x0, key=jax.random.key(sigma > 0))
    out, path = udm.sample(process, lambda x, t: x0, x_T, key=KEY, trajectory=True)
    assert_tree_allclose(out, x0, atol=1e-5)
    # the iterates stay on the forward trajectory D_s(x0) + (the same) sigma eps
    residual = x_T - process.degrade(x0, jnp.full(3, 8))
    expected = jax.vmap(lambda s: process.degrade(x0, jnp.full(3, s)) + residual)(jnp.arange(8, -1, -1))
    assert_tree_allclose(path, expected, atol=1e-5)


def test_naive_cold_sampler_leaves_the_trajectory_only_with_noise():
    x0 = jax.random.uniform(KEY, (3, 4, 4, 1), minval=-1, maxval=1)
    for sigma, stays in ((0.0, True), (0.2, False)):
        process = udm.ColdDiffusion("blur", sigma=sigma, kernel="baseline", T=8, event_shape=(4, 4, 1))
        x_T = process.prior(x0, key=jax.random.key(1))
        _, path = udm.sample(process, lambda x, t: x0, x_T, key=KEY, trajectory=True)
        residual = x_T - process.degrade(x0, jnp.full(3, 8))
        expected = jax.vmap(lambda s, p=process, r=residual: p.degrade(x0, jnp.full(3, s)) + r)(
            jnp.arange(8, -1, -1)
        )
        assert bool(np.allclose(path, expected, atol=1e-5)) is stays


def test_degradations_are_identity_at_zero_and_means_at_T():
    x = jax.random.normal(KEY, (2, 8, 8, 1))
    mean = jnp.broadcast_to(x.mean((1, 2), keepdims=True), x.shape)
    for degradation, end in (("blur", mean), ("pool", mean), ("mask", jnp.zeros_like(x))):
        process = udm.ColdDiffusion(degradation, T=10)
        ends = jax.jit(
            lambda x, p=process: (p.degrade(x, jnp.zeros(2, jnp.int32)), p.degrade(x, jnp.full(2, 10)))
        )
        start, finish = ends(x)
        assert_tree_allclose(start, x, atol=1e-5)
        assert_tree_allclose(finish, end, atol=2e-3)


# --- discrete invariants ---------------------------------------------------------------------


def test_edit_forward_has_hamming_distance_exactly_t():
    process = udm.EditDiffusion(length=16, vocab=4)
    x0 = jax.random.randint(KEY, (17, 16), 0, 4)
    x_t = jax.jit(lambda x0, t, key: process.forward(x0, t, key=key))(x0, jnp.arange(17), jax.random.key(5))
    np.testing.assert_array_equal(np.sum(x_t != x0, -1), np.arange(17))


def test_mask_forward_has_exactly_t_masks_and_keeps_the_rest():
    process = udm.MaskDiffusion(length=16, vocab=4)
    x0 = jax.random.randint(KEY, (17, 16), 0, 4)
    x_t = jax.jit(lambda x0, t, key: process.forward(x0, t, key=key))(x0, jnp.arange(17), jax.random.key(5))
    masked = x_t == process.mask_id
    np.testing.assert_array_equal(np.sum(masked, -1), np.arange(17))
    np.testing.assert_array_equal(np.where(masked, x0, x_t), x0)


def test_random_replacement_kernel_has_the_one_step_law_of_sus_first_version():
    # s positions of x0_hat redrawn uniformly from K tokens: a redrawn token stays with
    # probability 1/K, so d(x_s, x0_hat) ~ Binomial(s, 1 - 1/K) and each position changes with
    # probability (s/l)(1 - 1/K).
    length, K, t, s, num = 8, 3, 6, 5, 20_000
    process = udm.EditDiffusion(length=length, vocab=K, kernel="random_replacement")
    x0_hat = jnp.broadcast_to(jnp.array([0, 1, 2, 0, 1, 2, 0, 1]), (num, length))
    x_t = process.forward(x0_hat, t, key=jax.random.key(1))
    x_s = process.reverse_step(x_t, x0_hat, jnp.full(num, t), key=jax.random.key(2), s=jnp.full(num, s))
    changed = np.asarray(x_s != x0_hat)
    distance = changed.sum(-1)
    # P(stay | replaced) = 1 - (changes / replaced positions), against 1/K
    replaced = num * s
    assert_z(1.0 - distance.sum() / replaced, np.sqrt((1 / K) * (1 - 1 / K) / replaced), 1.0 / K)
    # the whole law of d: chi-square against Binomial(s, 1 - 1/K) (s + 1 cells, all expected > 80)
    observed = np.bincount(distance, minlength=s + 1)
    expected = num * scipy_stats.binom.pmf(np.arange(s + 1), s, 1 - 1 / K)
    assert np.sum((observed - expected) ** 2 / expected) < scipy_stats.chi2.isf(1e-4, s)
    p_change = (s / length) * (1 - 1 / K)
    assert_z(changed.mean(0), np.sqrt(p_change * (1 - p_change) / num), np.full(length, p_change), z=4.5)
    # a changed token is uniform among the K - 1 others: (x_s - x0_hat) mod K is 1 or 2 equally
    offsets = np.asarray((x_s - x0_hat) % K)[changed]
    assert_z(np.mean(offsets == 1), np.sqrt(0.25 / offsets.size), 0.5)
    # the fresh-noise ("baseline") kernel of the improved forward map edits exactly s positions
    baseline = udm.EditDiffusion(length=length, vocab=K, kernel="baseline")
    x_b = baseline.reverse_step(x_t, x0_hat, jnp.full(num, t), key=jax.random.key(2), s=jnp.full(num, s))
    np.testing.assert_array_equal(np.sum(np.asarray(x_b != x0_hat), -1), np.full(num, s))


def _terminal_frequencies(data, vocab):
    """P(x_l^i = k) under the improved edit forward law, for x0 uniform over the rows of ``data``."""
    onehot = np.eye(vocab)[np.asarray(data)]  # (N, l, K)
    return (1.0 - onehot.mean(0)) / (vocab - 1)


def test_edit_forward_prior_is_the_terminal_law_and_the_uniform_prior_is_not():
    # K = 3, and position 0 is token 0 ("background") in every example: the forward law at t = l
    # can never put token 0 there, the uniform prior puts it there a third of the time.
    K, num = 3, 6000
    data = jnp.array([[0, 0, 1, 2], [0, 1, 1, 0], [0, 2, 0, 0], [0, 0, 2, 1]])
    x0 = jnp.tile(data, (num // 4, 1))  # the data law: each example equally often
    exact = _terminal_frequencies(data, K)  # (l, K)
    for law, should_match in (("forward", True), ("uniform", False)):
        process = udm.EditDiffusion(length=4, vocab=K, prior_law=law)
        x_l = np.asarray(process.prior(x0, key=jax.random.key(7)))
        assert x_l.dtype == np.int32 and x_l.shape == x0.shape
        freq = np.eye(K)[x_l].mean(0)
        possible = exact > 0
        z = (freq - exact)[possible] / np.sqrt(exact * (1 - exact) / num)[possible]
        impossible = int(np.sum(np.eye(K)[x_l][:, ~possible]))
        if should_match:
            # 11 informative features: |z| < 4.5 is a Bonferroni bound at ~7e-6 each
            assert np.max(np.abs(z)) < 4.5 and impossible == 0, (law, z, impossible)
            # and the forward prior never keeps x0's token (Hamming(x_l, x0) = l)
            np.testing.assert_array_equal(np.sum(x_l != np.asarray(x0), -1), np.full(num, 4))
        else:
            # ~2000 draws of the impossible token; position 0 token 1: 1/3 vs 1/2, about 26 s.e.
            assert impossible > 1500 and np.max(np.abs(z)) > 10, (law, z, impossible)


def _logit_table(params, x, t):
    """Logits ``oracle + noise * N(0, 1)``: an oracle (noise 0) or an untrained model (oracle 0)."""
    return params["oracle"] + params["noise"] * jax.random.normal(
        jax.random.fold_in(KEY, t[0]), params["oracle"].shape
    )


def _discrete_predictor(x0, vocab, *, oracle: bool):
    logits = 100.0 * jax.nn.one_hot(x0, vocab)
    params = {
        "oracle": logits if oracle else jnp.zeros_like(logits),
        "noise": jnp.float32(0.0 if oracle else 1.0),
    }
    return jax.tree_util.Partial(_logit_table, params)


@pytest.mark.parametrize(
    "process",
    [udm.EditDiffusion(length=12, vocab=5), udm.MaskDiffusion(length=12, vocab=5)],
    ids=["edit", "mask"],
)
def test_reverse_changes_exactly_one_token_per_step(process):
    # an untrained "model": random logits, so nothing about x0 constrains the predict step
    random_logits = _discrete_predictor(jnp.zeros((6, 12), jnp.int32), process.vocab, oracle=False)
    x_T = process.prior(jnp.zeros((6, 12), jnp.int32), key=jax.random.key(2))
    out, path = udm.sample(process, random_logits, x_T, key=KEY, trajectory=True)
    changes = np.sum(np.asarray(path[1:] != path[:-1]), -1)
    np.testing.assert_array_equal(changes, np.ones_like(changes))
    assert np.all((np.asarray(out) >= 0) & (np.asarray(out) < process.vocab))
    if isinstance(process, udm.MaskDiffusion):
        visible = np.asarray(path[:-1] != process.mask_id)
        np.testing.assert_array_equal(np.asarray(path[1:])[visible], np.asarray(path[:-1])[visible])
    else:
        x0_hat = process.draw_x0(random_logits(x_T, jnp.full(6, 12)), x_T, jnp.full(6, 7), key=KEY)
        np.testing.assert_array_equal(np.sum(x0_hat != x_T, -1), np.full(6, 7))


def test_edit_oracle_walks_back_along_hamming_distance_t():
    process = udm.EditDiffusion(length=12, vocab=5)  # as above, so the sampler is not recompiled
    x0 = jax.random.randint(KEY, (6, 12), 0, 5)
    x_T = process.forward(x0, 12, key=jax.random.key(9))
    oracle = _discrete_predictor(x0, process.vocab, oracle=True)
    out, path = udm.sample(process, oracle, x_T, key=KEY, trajectory=True)
    expected = np.broadcast_to(np.arange(12, -1, -1)[:, None], (13, 6))
    np.testing.assert_array_equal(np.sum(path != x0[None], -1), expected)
    np.testing.assert_array_equal(out, x0)


def test_encoder_process_is_hot_diffusion_of_the_normalised_encoding():
    process = udm.EncoderDiffusion(T=10, event_shape=(2, 2, 1))
    x0 = jax.random.normal(KEY, (3, 2, 2, 1))
    z = process.encoding(x0)
    assert_tree_allclose(jnp.mean(z**2, -1), jnp.ones(3), rtol=1e-5)
    eps = jax.random.normal(jax.random.key(1), z.shape)
    hot = udm.HotDiffusion(T=10)
    assert_tree_allclose(process.apply(x0, jnp.full(3, 4), eps), hot.apply(z, jnp.full(3, 4), eps))
    out = udm.sample(process, lambda x, t: x0, process.prior(x0, key=KEY), key=KEY)
    assert_tree_allclose(out, x0)


# --- the sampler compiles once ---------------------------------------------------------------


def test_sample_traces_once():
    # The predictor's function runs only while the sampler is traced, twice per tracing (once
    # for the shape of x0_hat, once in the scanned step): new parameters, a new starting batch
    # and a new key of the same shapes must not trace it again.
    process = udm.HotDiffusion.ddpm(T=8, event_shape=(2,))

    @chex.assert_max_traces(n=2)
    def linear(params, x, t):
        return params["w"] * x + params["b"]

    for i in range(3):
        predictor = jax.tree_util.Partial(linear, {"w": jnp.float32(0.5 + i), "b": jnp.zeros((1, 2))})
        x_T = jax.random.normal(jax.random.key(i), (4, 2))
        jax.block_until_ready(udm.sample(process, predictor, x_T, key=jax.random.key(10 + i)))


def test_networks_of_one_architecture_share_the_compiled_sampler():
    # The sampler's compiled programs are keyed on the static part of (process, predictor):
    # everything but its arrays. Two networks of one architecture (different weights) give
    # predictors with equal static parts, so one program serves both; another architecture
    # gets its own.
    process = udm.HotDiffusion.ddpm(T=4, event_shape=(2,))
    nets = [make_network(process, (2,), NetworkConfig(hidden=h, depth=1), key=jax.random.key(i))
            for i, h in enumerate((8, 8, 16))]
    # (shifted weights: a fresh MLP's zero-initialised head would make every network output 0)
    predictors = [predictor(process, apply, jax.tree.map(lambda w, i=i: w + 0.05 * i, params))
                  for i, (apply, params) in enumerate(nets)]

    def static_part(tree):
        leaves, treedef = jax.tree_util.tree_flatten(eqx.partition(tree, eqx.is_array)[1])
        return treedef, leaves

    assert nets[0][0] == nets[1][0] and hash(nets[0][0]) == hash(nets[1][0])
    assert static_part(predictors[0]) == static_part(predictors[1])
    assert static_part(predictors[0]) != static_part(predictors[2])
    x_T = jax.random.normal(KEY, (3, 2))
    outs = [udm.sample(process, p, x_T, key=KEY) for p in predictors[:2]]
    assert not np.allclose(outs[0], outs[1])  # the weights are traced, not baked in


# --- bad input -------------------------------------------------------------------------------


def test_bad_input_raises_value_error_naming_the_argument():
    hot = udm.HotDiffusion(T=10, event_shape=(2,))
    x = jnp.zeros((3, 2))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 10\]"):
        hot.forward(x, 11, key=KEY)
    with pytest.raises(ValueError, match=r"t must lie in \[1, 10\]"):
        hot.reverse_step(x, x, 0, key=KEY)
    with pytest.raises(ValueError, match="x0 must have shape"):
        hot.forward(jnp.zeros((3, 5)), 2, key=KEY)
    with pytest.raises(ValueError, match="x_t and x0_hat"):
        udm.HotDiffusion(T=10).reverse_step(x, jnp.zeros((3, 3)), 2, key=KEY)
    with pytest.raises(ValueError, match="t must be a scalar or have the batch shape"):
        hot.forward(x, jnp.array([1, 2]), key=KEY)
    beta_bar = udm.schedule(10).beta_bar
    too_big = np.array(beta_bar[:-1]) * 0.5
    too_big[4] = beta_bar[4] * 1.01
    with pytest.raises(ValueError, match=r"sigma_5 .* beta_bar_4"):
        udm.HotDiffusion(T=10, sigma=tuple(too_big))
    with pytest.raises(ValueError, match="eta"):
        udm.HotDiffusion(eta=1.5)
    edit = udm.EditDiffusion(length=4, vocab=3)
    with pytest.raises(ValueError, match=r"x0 holds token ids outside the vocabulary \[0, 2\]"):
        edit.forward(jnp.array([[0, 1, 3, 0]]), 1, key=KEY)
    with pytest.raises(ValueError, match="x0 must have shape"):
        edit.forward(jnp.zeros((1, 5), jnp.int32), 1, key=KEY)
    with pytest.raises(ValueError, match="t must lie"):
        udm.MaskDiffusion(length=4, vocab=3).forward(jnp.zeros((1, 4), jnp.int32), 5, key=KEY)
    with pytest.raises(ValueError, match="prior_law must be one of"):
        udm.EditDiffusion(prior_law="terminal")
    with pytest.raises(TypeError, match="prior_law must be one of"):
        udm.EditDiffusion(prior_law=None)
    with pytest.raises(ValueError, match="kernel must be one of"):
        udm.MaskDiffusion(kernel="random_replacement")  # Su's first version is an editing model
    with pytest.raises(ValueError, match="degradation"):
        udm.ColdDiffusion("smudge")
    with pytest.raises(ValueError, match="steps"):
        udm.sample(hot, lambda x, t: x, x, key=KEY, steps=0)
