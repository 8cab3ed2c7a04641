r"""Training a process's :math:`\hat x_0` model with the loss the essay derives for it.

.. math:: \mathcal L=\mathbb E\,[-\log q(x_0\mid\mathcal F_t(x_0,\varepsilon))],
          \qquad t\sim\mathcal U\{1,\dots,T\},

with the per-process form of :math:`-\log q` in each process's ``loss``. Parameters of the
process itself (``process.trainable_params``: the encoder model's :math:`\phi`) are trained
jointly with the network.

Reference: 苏剑林, 生成扩散模型漫谈（十）：统一扩散模型（理论篇）, https://kexue.fm/archives/9262
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from diffusionlab import _checks as base
from diffusionlab import train
from diffusionlab.udm import _checks
from diffusionlab.udm.networks import NetworkConfig, make_network, predict, predictor

DEFAULT_NETWORK = NetworkConfig()


class TrainedModel(NamedTuple):
    """A trained process and its network.

    Attributes:
      process: the process (for the encoder model: with the trained encoder).
      apply: the network's pure apply (:func:`~diffusionlab.udm.networks.make_network`).
      params: the network's (EMA) parameters.
      kind: the network kind (``"mlp"`` or ``"unet"``).
      history: the training loss history from :func:`diffusionlab.train.fit`.
    """

    process: Any
    apply: Any
    params: Any
    kind: str
    history: dict

    @property
    def predict_x0(self):
        """``predict_x0(x_t, t)`` for :func:`diffusionlab.udm.sample` (parameters traced)."""
        return predictor(self.process, self.apply, self.params, kind=self.kind)


def make_loss(process, apply, *, kind: str = "mlp"):
    """``loss_fn(params, x0_batch, key) -> (B,)`` for :func:`diffusionlab.train.fit`.

    ``params`` is ``{"net": ...}``, plus ``"process"`` (``process.trainable_params``, e.g. the
    encoder model's :math:`\\phi`) when the process has trainable parts.
    """

    def loss_fn(params, x0, key):
        k_time, k_noise = jax.random.split(key)
        t = jax.random.randint(k_time, x0.shape[:1], 1, process.T + 1)
        current = process.with_params(params["process"]) if "process" in params else process
        x_t = current.forward(x0, t, key=k_noise)
        return current.loss(x0, predict(current, apply, params["net"], x_t, t, kind=kind), t)

    return loss_fn


def _initial(process, data_shape, network: NetworkConfig, key):
    """The process ready for training, and its network ``(apply, params)``."""
    _checks.check_process(process)
    k_net, k_process = jax.random.split(key)
    process = process.initialised(tuple(data_shape), network, key=k_process)
    apply, params = make_network(process, data_shape, network, key=k_net)
    return process, apply, params


def untrained_model(process, data_shape, network: NetworkConfig = DEFAULT_NETWORK, *, key) -> TrainedModel:
    """The model at initialisation: the one :func:`fit_process` with the same ``key`` starts from,
    the fixed baseline a trained model must beat."""
    k_init, _ = jax.random.split(key)
    process, apply, params = _initial(process, data_shape, network, k_init)
    return TrainedModel(process, apply, params, network.kind, {})


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
      process: any UDM process (:class:`~diffusionlab.udm.Process`); its trainable parts (an
        :class:`~diffusionlab.udm.EncoderDiffusion` gets a fresh MLP encoder) train jointly.
      data: training examples (floats, or token ids for the discrete processes).
      config: the :class:`diffusionlab.train.TrainConfig`.
      network: the :class:`NetworkConfig`.
      key: PRNG key of the run: split once into the initialisation's key and the training
        run's (data order and the loss's times and noise).
      progress: show a progress bar.

    Returns:
      A :class:`TrainedModel` with EMA parameters.

    Raises:
      TypeError: if ``process`` is not a UDM process; as :func:`diffusionlab.train.fit`.
    """
    data = jnp.asarray(data)
    k_init, k_train = jax.random.split(key)
    process, apply, net_params = _initial(process, data.shape[1:], network, k_init)
    params = _stored(process, net_params)
    result = train.fit(
        make_loss(process, apply, kind=network.kind), params, data, config=config, key=k_train,
        progress=progress,
    )
    final = result.ema_params
    process = process.with_params(final.get("process"))
    return TrainedModel(process, apply, final["net"], network.kind, result.history)


@eqx.filter_jit
def _expected_loss(process, predict_x0, x0, key):
    k_time, k_noise = jax.random.split(key)
    t = jax.random.randint(k_time, x0.shape[:1], 1, process.T + 1)
    x_t = process.forward(x0, t, key=k_noise)
    return jnp.mean(process.loss(x0, predict_x0(x_t, t), t))


def expected_loss(model: TrainedModel, x0, *, key) -> float:
    """Monte Carlo estimate of the training objective on ``x0`` (e.g. held-out data), uniform ``t``.

    The parameters are traced, not baked into the program as constants: XLA's CPU compiler
    (jax 0.10.2) returned garbage for the untrained networks' zero head folded as a constant.
    """
    return float(_expected_loss(model.process, model.predict_x0, jnp.asarray(x0), key))


def save_model(directory: str | pathlib.Path, model: TrainedModel) -> None:
    """Writes ``model``'s parameters (orbax) and history (JSON) under ``directory``.

    The network's structure and the process are not written: :func:`load_model` rebuilds them
    from the process and the network configuration.

    Raises:
      TypeError: if ``directory`` is not a path or ``model`` not a :class:`TrainedModel`.
    """
    base.check_path(directory, "directory")
    if not isinstance(model, TrainedModel):
        raise TypeError(f"model must be a TrainedModel; got {type(model).__name__}")
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    checkpointer = train.Checkpointer(directory / "params", max_to_keep=1)
    checkpointer.save(0, _stored(model.process, model.params))
    checkpointer.close()
    (directory / "history.json").write_text(json.dumps(model.history))


def load_model(directory: str | pathlib.Path, process, data_shape, network: NetworkConfig = DEFAULT_NETWORK,
               *, key) -> TrainedModel:
    """Restores a model written by :func:`save_model` for ``process`` trained on examples of
    ``data_shape`` with ``network``.

    ``key`` initialises the template the parameters are restored into (any key: the restored
    values replace it; pass the training key to rebuild exactly what :func:`fit_process` built).

    Raises:
      FileNotFoundError: no saved model under ``directory``.
      diffusionlab.train.CheckpointMismatchError: the saved parameters do not fit ``process``
        and ``network``.
    """
    base.check_path(directory, "directory")
    directory = pathlib.Path(directory)
    if not (directory / "history.json").exists():
        raise FileNotFoundError(f"no saved UDM model in {directory} (missing history.json)")
    template = untrained_model(process, data_shape, network, key=key)
    checkpointer = train.Checkpointer(directory / "params", max_to_keep=1)
    stored = checkpointer.restore(_stored(template.process, template.params))
    checkpointer.close()
    process = template.process.with_params(stored.get("process"))
    history = json.loads((directory / "history.json").read_text())
    return TrainedModel(process, template.apply, stored["net"], network.kind, history)


def _stored(process, params) -> dict:
    if process.trainable_params is None:
        return {"net": params}
    return {"net": params, "process": process.trainable_params}
