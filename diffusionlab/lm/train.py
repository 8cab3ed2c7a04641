r"""Training the small LM on the synthetic QA corpus, and saving / loading it through orbax.

The loss of one sequence is the next-token cross-entropy averaged over its answer tokens,
plus a small weight times the average over all its real tokens (plain language modelling,
which helps the model learn the shape of the text early):

$$\mathcal L = \frac{\sum_t a_t\,\mathrm{CE}_t}{\sum_t a_t}
+ \lambda\,\frac{\sum_t r_t\,\mathrm{CE}_t}{\sum_t r_t}.$$
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax.numpy as jnp
import optax
from flax import nnx

from diffusionlab.lm.data import training_set
from diffusionlab.lm.model import LanguageModel, LMApply, LMConfig, pure
from diffusionlab.train import Checkpointer, TrainConfig, fit

__all__ = ["LMTrainConfig", "lm_loss", "load_lm", "save_lm", "train_lm"]


@dataclasses.dataclass(frozen=True)
class LMTrainConfig:
    """Model, data and optimisation of one LM training run.

    Attributes:
      model: the architecture (its ``max_length`` is the trained length ``L``).
      num_examples: training sequences generated once.
      lm_weight: $\\lambda$, weight of the all-token language-modelling term.
      train: the shared :class:`~diffusionlab.train.TrainConfig`.
      seed: parameter initialisation and data generation.
    """

    model: LMConfig = LMConfig()
    num_examples: int = 20_000
    lm_weight: float = 0.1
    train: TrainConfig = TrainConfig(steps=3000, batch_size=32, learning_rate=2e-3,
                                     warmup_steps=200, ema_decay=0.99, log_every=100)
    seed: int = 0

    @classmethod
    def quick(cls) -> LMTrainConfig:
        return cls(model=LMConfig(dim=32, depth=2, num_heads=2, mlp_dim=64),
                   num_examples=512,
                   train=TrainConfig(steps=40, batch_size=16, learning_rate=3e-3,
                                     ema_decay=0.9, log_every=20))


def lm_loss(apply: LMApply, *, lm_weight: float = 0.1):
    """Returns ``loss_fn(params, batch, key) -> (B,)`` for :func:`diffusionlab.train.fit`.

    ``batch`` holds ``tokens (B, L)`` and ``answer (B, L)`` weights, as made by
    :func:`diffusionlab.lm.data.training_set`.
    """

    def loss_fn(params, batch, key):
        del key
        tokens_BxL = batch["tokens"]
        logits_BxLxV, _ = apply(params, tokens_BxL[:, :-1], None)
        targets_BxL = tokens_BxL[:, 1:]
        ce_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, targets_BxL)
        real_BxL = (targets_BxL != apply.pad_id) & (tokens_BxL[:, :-1] != apply.pad_id)
        real_BxL = real_BxL.astype(jnp.float32)
        answer_BxL = batch["answer"][:, 1:]
        answer_loss_B = jnp.sum(ce_BxL * answer_BxL, 1) / jnp.maximum(jnp.sum(answer_BxL, 1), 1)
        lm_loss_B = jnp.sum(ce_BxL * real_BxL, 1) / jnp.maximum(jnp.sum(real_BxL, 1), 1)
        return answer_loss_B + lm_weight * lm_loss_B

    return loss_fn


def train_lm(config: LMTrainConfig = LMTrainConfig(), *, progress: bool = True):
    """Trains the LM on the training split of the synthetic QA corpus.

    Returns:
      ``(apply, params, history)``: the pure model, its EMA parameters, the loss history.
    """
    model = LanguageModel(config.model, rngs=nnx.Rngs(config.seed))
    apply, params = pure(model)
    data = training_set(config.num_examples, seed=config.seed,
                        max_length=config.model.max_length + 1)
    result = fit(lm_loss(apply, lm_weight=config.lm_weight), params, data,
                 config=config.train, progress=progress)
    return apply, result.ema_params, result.history


def save_lm(directory: str | pathlib.Path, config: LMConfig, params) -> None:
    """Writes ``params`` (orbax) and ``config`` (JSON) under ``directory``."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "lm_config.json").write_text(json.dumps(dataclasses.asdict(config)))
    checkpointer = Checkpointer(directory / "params", max_to_keep=1)
    checkpointer.save(0, params)
    checkpointer.close()


def load_lm(directory: str | pathlib.Path) -> tuple[LMApply, nnx.State]:
    """Restores ``(apply, params)`` written by :func:`save_lm`.

    Raises:
      FileNotFoundError: no checkpoint under ``directory``.
    """
    directory = pathlib.Path(directory)
    config_file = directory / "lm_config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"no LM checkpoint in {directory} (missing lm_config.json)")
    config = LMConfig(**json.loads(config_file.read_text()))
    apply, template = pure(LanguageModel(config, rngs=nnx.Rngs(0)))
    checkpointer = Checkpointer(directory / "params", max_to_keep=1)
    params = checkpointer.restore(template)
    checkpointer.close()
    return apply, params


