"""Each UDM process trains at quick size and beats its untrained network on held-out data; a
recipe trains the same model alone as in its full set."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusionlab import data, metrics, stats, train, udm
from diffusionlab.udm import evaluation
from diffusionlab.udm.networks import NetworkConfig
from diffusionlab.udm.training import expected_loss, fit_process, untrained_model

NETWORK = NetworkConfig(hidden=64, depth=2)
MARGIN = 0.8  # the trained loss must be below this fraction of the untrained baseline
EVAL_KEYS = 4  # independent Monte Carlo estimates of each held-out loss
CONFIG = train.TrainConfig(steps=200, batch_size=128, learning_rate=3e-3, ema_decay=0.0, log_every=200)


def _toy(num, seed):
    return np.asarray(data.toy2d("8gaussians", num, key=jax.random.key(seed)))


def _tokens(split):
    return data.digit_tokens(split, levels=4)[0]


CASES = {
    "hot": (udm.HotDiffusion.ddpm(T=20, event_shape=(2,)), lambda: _toy(4096, 0), lambda: _toy(1024, 1)),
    "cold": (
        udm.ColdDiffusion("blur", sigma=0.1, T=8),
        lambda: data.digits("train")[0],
        lambda: data.digits("test")[0],
    ),
    "encoder": (udm.EncoderDiffusion(T=20, event_shape=(2,)), lambda: _toy(4096, 0), lambda: _toy(1024, 1)),
    "edit": (udm.EditDiffusion(length=64, vocab=4), lambda: _tokens("train"), lambda: _tokens("test")),
    "mask": (udm.MaskDiffusion(length=64, vocab=4), lambda: _tokens("train"), lambda: _tokens("test")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_training_beats_the_untrained_network(name):
    process, train_data, test_data = CASES[name]
    x_train, x_test = train_data(), test_data()
    key = jax.random.key(0)
    trained = fit_process(process, x_train, config=CONFIG, network=NETWORK, key=key)
    untrained = untrained_model(process, x_train.shape[1:], NETWORK, key=key)
    # Several independent estimates of the held-out loss (fresh t and noise per key), so the
    # comparison is decided by a paired interval, not by one draw; a tie fails.
    k_evals = jax.random.split(jax.random.key(1), EVAL_KEYS)
    loss_trained = np.array([expected_loss(trained, x_test, key=k) for k in k_evals])
    assert np.all(np.isfinite(loss_trained))
    if name in ("edit", "mask"):
        # the untrained network's zero-initialised head predicts uniform logits: loss log K exactly
        verdict = stats.exceeds(loss_trained, MARGIN * float(np.log(process.vocab)), alternative="less")
    else:
        loss_untrained = np.array([expected_loss(untrained, x_test, key=k) for k in k_evals])
        verdict = stats.compare(loss_trained, MARGIN * loss_untrained, alternative="less", paired=True)
    assert verdict.verdict == "holds", str(verdict)
    if name == "hot":
        # and the samples are closer to the data than the untrained network's (paired over
        # sampling keys: same prior draw and projections for both models)
        ref = jnp.asarray(x_test)
        sw = np.array([
            [
                float(metrics.sliced_wasserstein(
                    udm.sample(m.process, m.predict_x0,
                               process.prior(ref, key=jax.random.fold_in(k, 2)), key=k),
                    ref, key=k))
                for m in (trained, untrained)
            ]
            for k in k_evals
        ])
        verdict = stats.compare(sw[:, 0], 0.5 * sw[:, 1], alternative="less", paired=True)
        assert verdict.verdict == "holds", (str(verdict), sw)


def test_a_subset_of_the_recipe_trains_the_same_models(monkeypatch):
    # Each model's key depends on its name, not on its position in ``names``: record the keys.
    monkeypatch.setattr(evaluation, "fit_process", lambda process, x, *, key, **_: key)
    recipe, key = evaluation.Recipe.quick(), jax.random.key(0)
    every = list(evaluation.model_processes(recipe, domain="toy"))
    full = recipe.models("toy", key=key, names=every)
    subset = recipe.models("toy", key=key, names=["cold_noisy", "hot"])
    for name in subset:
        np.testing.assert_array_equal(jax.random.key_data(subset[name]), jax.random.key_data(full[name]))
    assert len({tuple(np.ravel(jax.random.key_data(k))) for k in full.values()}) == len(every)
    with pytest.raises(ValueError, match="names must be models of"):
        recipe.models("toy", key=key, names=["hot", "warm"])


def test_trained_models_are_kept_on_disk_and_loaded(tmp_path, monkeypatch):
    # The first call trains and writes each model once; a second call (another experiment)
    # loads them instead of training: same parameters, same samples.
    recipe, key = evaluation.Recipe.quick(), jax.random.key(3)
    first = recipe.models("toy", key=key, names=["hot", "encoder"], directory=tmp_path)
    written = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert len(written) == 2 and all(name.startswith("udm_toy_") for name in written)

    def no_training(*args, **kwargs):
        raise AssertionError("a kept model was trained again")

    monkeypatch.setattr(evaluation, "fit_process", no_training)
    again = recipe.models("toy", key=key, names=["hot", "encoder"], directory=tmp_path)
    x_T = jax.random.normal(jax.random.key(4), (16, 2))
    for name in ("hot", "encoder"):
        assert again[name].history == first[name].history
        chex.assert_trees_all_close(again[name].params, first[name].params, rtol=0, atol=0)
        chex.assert_trees_all_close(again[name].process.trainable_params,
                                    first[name].process.trainable_params, rtol=0, atol=0)
        process = first[name].process
        x = x_T if name == "hot" else process.prior(x_T, key=jax.random.key(5))
        samples = [udm.sample(m.process, m.predict_x0, x, key=jax.random.key(6))
                   for m in (first[name], again[name])]
        np.testing.assert_allclose(samples[0], samples[1], rtol=1e-6, atol=1e-6)
    # another key is another model: trained, not loaded
    with pytest.raises(AssertionError, match="trained again"):
        recipe.models("toy", key=jax.random.key(4), names=["hot"], directory=tmp_path)


def test_expected_loss_of_the_untrained_network_matches_the_eager_loss():
    # Its parameters were once baked into the jitted estimate as constants, for which XLA's CPU
    # compiler returned garbage (1e30, NaN); they are traced now.
    process, x_test = udm.ColdDiffusion("blur", sigma=0.1, T=8), jnp.asarray(data.digits("test")[0])
    model = untrained_model(process, x_test.shape[1:], NETWORK, key=jax.random.key(0))
    key = jax.random.key(1)
    k_time, k_noise = jax.random.split(key)
    t = jax.random.randint(k_time, x_test.shape[:1], 1, process.T + 1)
    x_t = process.forward(x_test, t, key=k_noise)
    eager = float(jnp.mean(process.loss(x_test, model.predict_x0(x_t, t), t)))
    np.testing.assert_allclose(expected_loss(model, x_test, key=key), eager, rtol=1e-5)
