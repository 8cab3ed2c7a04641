r"""Training a process's :math:`\hat x_0` model with the loss the essay derives for it.

.. math:: \mathcal L=\mathbb E\,[-\log q(x_0\mid\mathcal F_t(x_0,\varepsilon))],
          \qquad t\sim\mathcal U\{1,\dots,T\},

with the per-process form of :math:`-\log q` in each process's ``loss``. The encoder model
trains :math:`\phi` and the decoder jointly.

Reference: 苏剑林, 生成扩散模型漫谈（十）：统一扩散模型（理论篇）, https://kexue.fm/archives/9262
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from diffusionlab import train
from diffusionlab.udm.encoder import EncoderDiffusion
from diffusionlab.udm.networks import NetworkConfig, make_encoder, make_network, predict, predictor
from diffusionlab.udm.sampler import _combine, _partition

DEFAULT_NETWORK = NetworkConfig()


class TrainedModel(NamedTuple):
    """A trained process and its predictor.

    Attributes:
      process: the process (for the encoder model: with the trained encoder).
      predict_x0: ``predict_x0(x_t, t)`` for :func:`diffusionlab.udm.sample` (EMA parameters).
      history: the training loss history from :func:`diffusionlab.train.fit`.
    """

    process: Any
    predict_x0: Any
    history: dict


def make_loss(process, apply, *, kind: str = "mlp"):
    """``loss_fn(params, x0_batch, key) -> (B,)`` for :func:`diffusionlab.train.fit`.

    ``params`` is ``{"net": ...}``, plus ``"encoder"`` for :class:`EncoderDiffusion`.
    """

    def loss_fn(params, x0, key):
        k_time, k_noise = jax.random.split(key)
        t = jax.random.randint(k_time, x0.shape[:1], 1, process.T + 1)
        current = process.with_params(params["encoder"]) if "encoder" in params else process
        x_t = current.forward(x0, t, key=k_noise)
        return current.loss(x0, predict(current, apply, params["net"], x_t, t, kind=kind), t)

    return loss_fn


def untrained_model(process, data_shape, network: NetworkConfig = DEFAULT_NETWORK, *, key) -> TrainedModel:
    """The model at initialisation: the fixed baseline a trained model must beat."""
    k_net, k_enc = jax.random.split(key)
    apply, params = make_network(process, data_shape, network, key=k_net)
    if isinstance(process, EncoderDiffusion):
        encode, encoder_params = make_encoder(data_shape, network, key=k_enc)
        process = EncoderDiffusion(
            encode=encode,
            encoder_params=encoder_params,
            event_shape=data_shape,
            T=process.T,
            eta=process.eta,
            sigma=process.sigma,
            schedule=process.schedule,
        )
    return TrainedModel(process, predictor(process, apply, params, kind=network.kind), {})


def fit_process(
    process,
    data,
    *,
    config: train.TrainConfig,
    network: NetworkConfig = DEFAULT_NETWORK,
    key,
    progress: bool = False,
) -> TrainedModel:
    """Trains the :math:`\\hat x_0` model of ``process`` on ``data`` (``(N,) + event_shape``).

    Args:
      process: any UDM process; an :class:`EncoderDiffusion` gets a fresh MLP encoder.
      data: training examples (floats, or token ids for the discrete processes).
      config: the :class:`diffusionlab.train.TrainConfig`.
      network: the :class:`NetworkConfig`.
      key: PRNG key for the initialisation.
      progress: show a progress bar.

    Returns:
      A :class:`TrainedModel` with EMA parameters.
    """
    data = jnp.asarray(data)
    initial = untrained_model(process, data.shape[1:], network, key=key)
    apply, params = initial.predict_x0.args[1], initial.predict_x0.args[3]
    process = initial.process
    params = {"net": params}
    if isinstance(process, EncoderDiffusion):
        params["encoder"] = process.encoder_params
    result = train.fit(
        make_loss(process, apply, kind=network.kind), params, data, config=config, progress=progress
    )
    final = result.ema_params
    if isinstance(process, EncoderDiffusion):
        process = process.with_params(final["encoder"])
    return TrainedModel(process, predictor(process, apply, final["net"], kind=network.kind), result.history)


@functools.partial(jax.jit, static_argnames=("static",))
def _expected_loss(dynamic, x0, key, *, static):
    process, predict_x0 = _combine(dynamic, static)
    k_time, k_noise = jax.random.split(key)
    t = jax.random.randint(k_time, x0.shape[:1], 1, process.T + 1)
    x_t = process.forward(x0, t, key=k_noise)
    return jnp.mean(process.loss(x0, predict_x0(x_t, t), t))


def expected_loss(model: TrainedModel, x0, *, key) -> float:
    """Monte Carlo estimate of the training objective on ``x0`` (e.g. held-out data), uniform ``t``.

    The parameters are traced, not baked into the program as constants: XLA's CPU compiler
    (jax 0.10.2) returned garbage for the untrained networks' zero head folded as a constant.
    """
    dynamic, static = _partition((model.process, model.predict_x0))
    return float(_expected_loss(dynamic, jnp.asarray(x0), key, static=static))
