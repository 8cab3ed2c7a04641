"""Each UDM process trains at quick size and beats its untrained network on held-out data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusionlab import data, metrics, train, udm
from diffusionlab.udm.networks import NetworkConfig
from diffusionlab.udm.training import expected_loss, fit_process, untrained_model

NETWORK = NetworkConfig(hidden=64, depth=2)
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
    k_eval = jax.random.key(1)
    loss_trained = expected_loss(trained, x_test, key=k_eval)
    if name in ("edit", "mask"):
        # the untrained network's zero-initialised head predicts uniform logits: loss log K exactly
        loss_untrained = float(np.log(process.vocab))
    else:
        loss_untrained = expected_loss(untrained, x_test, key=k_eval)
    assert np.isfinite(loss_trained)
    assert loss_trained < 0.8 * loss_untrained, (loss_trained, loss_untrained)
    if name == "hot":
        # and the samples are closer to the data than the untrained network's
        x_T = process.prior(jnp.asarray(x_test), key=jax.random.key(2))
        ref = jnp.asarray(x_test)
        sw = [
            float(
                metrics.sliced_wasserstein(
                    udm.sample(m.process, m.predict_x0, x_T, key=k_eval), ref, key=k_eval
                )
            )
            for m in (trained, untrained)
        ]
        assert sw[0] < 0.5 * sw[1], sw
