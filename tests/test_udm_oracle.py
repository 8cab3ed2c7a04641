"""The exact empirical predictor of diffusionlab.udm: posterior weights, memorisation, blockwise sums."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusionlab import udm

KEY = jax.random.key(0)
# Five points in R^3, pairwise distances 1.4 to 3.6
POINTS = jnp.array([[1.0, 0.0, 0.5], [-1.0, 1.0, 0.0], [0.0, -1.5, -0.5], [1.5, 1.5, -1.0],
                    [-0.5, -0.5, 1.5]])
# Five sequences of 6 tokens in [0, 3), pairwise Hamming distance >= 3: one corrupted position
# (mask or edit, t = 1) leaves exactly one training point possible
TOKENS = jnp.array([[0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], [2, 2, 2, 2, 2, 2],
                    [1, 2, 0, 2, 1, 0]])
# chi-square with 5 - 1 = 4 degrees of freedom: the 0.999 quantile
CHI2_4_999 = 18.467


def _hot():
    return udm.HotDiffusion.ddpm(T=100, event_shape=(3,))


def _encoder():
    return udm.EncoderDiffusion(T=100, event_shape=(3,))  # the identity encoder, normalised


def _processes():
    return {
        "hot": (_hot(), POINTS),
        "encoder": (_encoder(), POINTS),
        "cold_noisy": (udm.ColdDiffusion("blur", sigma=0.05, T=10, event_shape=(3,)), POINTS),
        "mask": (udm.MaskDiffusion(length=6, vocab=3), TOKENS),
        "edit": (udm.EditDiffusion(length=6, vocab=3), TOKENS),
    }


def _nearest(samples, points):
    """Index of the nearest training point and the distance to it (Hamming for tokens)."""
    s, p = np.asarray(samples, np.float64), np.asarray(points, np.float64)
    d = np.sqrt(np.sum((s[:, None] - p[None]) ** 2, axis=-1))
    return d.argmin(1), d.min(1)


def _chi2_uniform(index, k):
    counts = np.bincount(index, minlength=k)
    expected = len(index) / k
    return float(np.sum((counts - expected) ** 2 / expected)), counts


# --- memorisation with full-length chains --------------------------------------------------


def test_hot_oracle_samples_are_training_points_hit_uniformly():
    process = _hot()
    x_T = process.prior(jnp.zeros((400, 3)), key=KEY)
    samples = udm.sample(process, udm.empirical_predictor(process, POINTS, block_size=2), x_T,
                         key=jax.random.key(1))
    index, dist = _nearest(samples, POINTS)
    # at t = 1 the posterior has width beta_bar_1 = 0.01 against gaps >= 1.4: x_0 = a point
    assert dist.max() < 1e-5
    chi2, counts = _chi2_uniform(index, len(POINTS))
    assert chi2 < CHI2_4_999, counts


def test_mask_oracle_samples_are_training_points_hit_uniformly():
    # the deterministic kernel unmasks one position per step, drawn from the exact posterior
    # marginal there: ancestral sampling of the uniform law on the training set
    process = udm.MaskDiffusion(length=6, vocab=3)
    x_T = process.prior(jnp.zeros((400, 6), jnp.int32), key=KEY)
    samples = udm.sample(process, udm.empirical_predictor(process, TOKENS, block_size=2), x_T,
                         key=jax.random.key(1))
    index, dist = _nearest(samples, TOKENS)
    assert dist.max() == 0
    chi2, counts = _chi2_uniform(index, len(TOKENS))
    assert chi2 < CHI2_4_999, counts


def test_edit_oracle_walks_from_the_forward_law_onto_training_points():
    # From x_T ~ p(x_T | x_0) some training point is at Hamming distance T; each step copies a
    # token of a point of positive weight, so one stays at distance t all the way down.
    process = udm.EditDiffusion(length=6, vocab=3)
    x0 = TOKENS[jax.random.randint(KEY, (200,), 0, len(TOKENS))]
    x_T = process.forward(x0, process.T, key=jax.random.key(2))
    samples = udm.sample(process, udm.empirical_predictor(process, TOKENS, block_size=2), x_T,
                         key=jax.random.key(1))
    _, dist = _nearest(samples, TOKENS)
    assert dist.max() == 0


def test_encoder_oracle_samples_are_training_points():
    process = _encoder()
    x_T = process.prior(jnp.zeros((200, 3)), key=KEY)
    samples = udm.sample(process, udm.empirical_predictor(process, POINTS), x_T, key=jax.random.key(1))
    index, dist = _nearest(samples, POINTS)
    assert dist.max() < 1e-5
    # the sample is the last posterior mean, at t = 1: every point is reachable
    assert len(np.unique(index)) == len(POINTS)


# --- the posterior itself ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["hot", "encoder", "cold_noisy", "mask", "edit"])
def test_small_t_predicts_the_true_point(name):
    process, data = _processes()[name]
    x_t = process.forward(data, 1, key=KEY)
    prediction = udm.empirical_predictor(process, data)(x_t, 1)
    if name in ("mask", "edit"):
        np.testing.assert_array_equal(np.argmax(prediction, -1), data)
    else:
        np.testing.assert_allclose(prediction, data, atol=1e-4)


def _expected_weights(name, process, data, x_t, t):
    """p(x_t | x_0 = x_i) normalised over i, written directly from each forward law (float64,
    over the flattened event)."""
    x, d = (np.asarray(a, np.float64).reshape(len(a), -1) for a in (x_t, data))
    if name in ("hot", "encoder"):
        if name == "encoder":
            d = d * np.sqrt(d.shape[-1] / np.sum(d**2, -1, keepdims=True))
        c = (process.latent if name == "encoder" else process).coefficients
        log_p = -np.sum((x[:, None] - c.alpha_bar[t] * d[None]) ** 2, -1) / (2 * c.beta_bar[t] ** 2)
    elif name == "cold_noisy":
        degraded = np.asarray(process.degrade(jnp.asarray(data), t), np.float64).reshape(len(d), -1)
        log_p = -np.sum((x[:, None] - degraded[None]) ** 2, -1) / (2 * process.sigma**2)
    elif name == "mask":
        visible = x[:, None] != process.mask_id
        agree = np.all(~visible | (x[:, None] == d[None]), -1)
        log_p = np.where(agree, 0.0, -np.inf)
    else:
        hamming = np.sum(x[:, None] != d[None], -1)
        log_p = np.where(hamming == t, 0.0, -np.inf)
    log_p = log_p - log_p.max(1, keepdims=True)
    return np.exp(log_p) / np.sum(np.exp(log_p), 1, keepdims=True)


@pytest.mark.parametrize("name", ["hot", "encoder", "cold_noisy", "mask", "edit"])
def test_weights_at_noisy_training_points_are_the_forward_law_posterior(name):
    process, data = _processes()[name]
    t = 2 if name in ("mask", "edit") else process.T // 2
    x_t = process.forward(jnp.concatenate([data, data]), t, key=KEY)
    weights = np.asarray(udm.empirical_predictor(process, data).weights(x_t, t), np.float64)
    assert weights.shape == (2 * len(data), len(data))
    assert weights.min() >= 0
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(weights, _expected_weights(name, process, data, x_t, t), atol=1e-5)
    # x_t came from its own point, which the forward law never rules out
    own = weights[np.arange(len(weights)), np.arange(len(weights)) % len(data)]
    assert own.min() > 0


@pytest.mark.parametrize("name", ["hot", "encoder", "cold_noisy", "mask", "edit"])
def test_blockwise_sum_equals_the_one_block_sum_and_the_weighted_mean(name):
    process, data = _processes()[name]
    t = jnp.array([1, 2, 3, 2, 1, 3])  # one time per example
    x_t = process.forward(jnp.concatenate([data, data[:1]]), t, key=KEY)
    blocked = udm.empirical_predictor(process, data, block_size=2)(x_t, t)  # 3 blocks, 1 padded
    whole = udm.empirical_predictor(process, data, block_size=len(data))(x_t, t)
    np.testing.assert_allclose(blocked, whole, atol=1e-5)
    weights = udm.empirical_predictor(process, data).weights(x_t, t)
    if name in ("mask", "edit"):
        marginals = jnp.einsum("bn,nlk->blk", weights, jax.nn.one_hot(data, process.vocab))
        np.testing.assert_allclose(jnp.exp(blocked), marginals, atol=1e-5)
    else:
        np.testing.assert_allclose(blocked, weights @ data, atol=1e-5)


@pytest.mark.parametrize("name", ["hot", "cold_noisy"])
def test_image_events_weigh_every_pixel(name):
    # (N, 4, 4, 1) images: the likelihood sums over every pixel (the predictor flattens the
    # event axes), against the forward law in float64 over the flattened pixels
    images = jax.random.uniform(jax.random.key(3), (5, 4, 4, 1), minval=-1.0, maxval=1.0)
    if name == "hot":
        process, t = udm.HotDiffusion.ddpm(T=100, event_shape=(4, 4, 1)), 30
    else:
        process, t = udm.ColdDiffusion("blur", sigma=0.2, T=4, event_shape=(4, 4, 1)), 2
    x_t = process.forward(images, t, key=KEY)
    oracle = udm.empirical_predictor(process, images, block_size=2)
    expected = _expected_weights(name, process, images, x_t, t)
    assert 0.01 < expected.max(1).min() < 0.999  # the weights are not all on one point
    np.testing.assert_allclose(oracle.weights(x_t, t), expected, atol=1e-5)
    mean = expected @ np.asarray(images, np.float64).reshape(5, -1)
    np.testing.assert_allclose(oracle(x_t, t), mean.reshape(images.shape), atol=1e-5)


def test_float64_when_enabled():
    with jax.enable_x64(True):
        data = jnp.asarray(np.asarray(POINTS), jnp.float64)
        process = _hot()
        x_t = process.forward(data, 60, key=KEY)
        prediction = udm.empirical_predictor(process, data, block_size=2)(x_t, 60)
        assert prediction.dtype == jnp.float64
        expected = _expected_weights("hot", process, data, x_t, 60) @ np.asarray(data, np.float64)
        np.testing.assert_allclose(prediction, expected, rtol=1e-10, atol=1e-12)


def test_half_precision_data_computes_in_float32():
    process = _hot()
    data = POINTS.astype(jnp.float16)
    x_t = process.forward(POINTS, 5, key=KEY).astype(jnp.float16)
    prediction = udm.empirical_predictor(process, data)(x_t, 5)
    assert prediction.dtype == jnp.float32
    assert np.all(np.isfinite(prediction))


def test_unreachable_mask_state_falls_back_to_the_nearest_points():
    # visible tokens [0, 0, 1, 1, 0, *] agree with no point; points 0 and 2 disagree least (at 2)
    process = udm.MaskDiffusion(length=6, vocab=3)
    x_t = jnp.array([[0, 0, 1, 1, 0, process.mask_id]])
    oracle = udm.empirical_predictor(process, TOKENS)
    weights = np.asarray(oracle.weights(x_t, 1))[0]
    np.testing.assert_allclose(weights, [0.5, 0.0, 0.5, 0.0, 0.0], atol=1e-7)
    logits = oracle(x_t, 1)
    assert np.all(np.isfinite(logits))
    np.testing.assert_allclose(jnp.exp(logits[0, 5]), [0.5, 0.5, 0.0], atol=1e-7)


def test_new_training_sets_of_one_shape_share_the_compiled_program():
    traces = []

    @eqx.filter_jit
    def predict(oracle, x_t):
        traces.append(1)
        return oracle(x_t, 3)

    process = _hot()
    x_t = process.forward(POINTS, 3, key=KEY)
    first = predict(udm.empirical_predictor(process, POINTS), x_t)
    second = predict(udm.empirical_predictor(process, -POINTS), x_t)
    assert len(traces) == 1
    assert not np.allclose(first, second)


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,error,words",
    [
        (lambda: udm.empirical_predictor(udm.ColdDiffusion(sigma=0.0, event_shape=(3,)), POINTS),
         ValueError, "sigma = 0"),
        (lambda: udm.empirical_predictor(udm.CustomDiffusion(F=lambda x, t, e: x + e, kernel="baseline"),
                                         POINTS), TypeError, "closed-form"),
        (lambda: udm.empirical_predictor("hot", POINTS), TypeError, "process"),
        (lambda: udm.empirical_predictor(_hot(), POINTS[:, :2]), ValueError, "data"),
        (lambda: udm.empirical_predictor(_hot(), POINTS[:0]), ValueError, "N ≥ 1"),
        (lambda: udm.empirical_predictor(_hot(), [[0.0, 1.0, 2.0]]), TypeError, "data"),
        (lambda: udm.empirical_predictor(_hot(), POINTS.at[0, 0].set(jnp.nan)), ValueError, "data"),
        (lambda: udm.empirical_predictor(_hot(), POINTS, block_size=0), ValueError, "block_size"),
        (lambda: udm.empirical_predictor(_hot(), POINTS, block_size=2.0), TypeError, "block_size"),
        (lambda: udm.empirical_predictor(udm.MaskDiffusion(length=6, vocab=3), TOKENS + 1),
         ValueError, "data"),
        (lambda: udm.empirical_predictor(udm.EditDiffusion(length=6, vocab=3), POINTS), TypeError, "data"),
        (lambda: udm.empirical_predictor(_hot(), POINTS)(POINTS, 0), ValueError, "t"),
        (lambda: udm.empirical_predictor(_hot(), POINTS)(POINTS, 101), ValueError, "t"),
        (lambda: udm.empirical_predictor(_hot(), POINTS)(POINTS, 1.5), TypeError, "t"),
        (lambda: udm.empirical_predictor(_hot(), POINTS)(POINTS[:, :2], 1), ValueError, "x_t"),
        (lambda: udm.empirical_predictor(_hot(), POINTS)(POINTS, jnp.ones(4, int)), ValueError, "t"),
        (lambda: udm.empirical_predictor(udm.MaskDiffusion(length=6, vocab=3), TOKENS)(TOKENS + 2, 1),
         ValueError, "x_t"),
    ],
)
def test_bad_input_raises_naming_the_argument(make, error, words):
    with pytest.raises(error, match=words):
        make()
