r"""Training the small LM on the synthetic QA corpus, and saving / loading it through orbax.

The loss of one sequence is the next-token cross-entropy averaged over its answer tokens,
plus a small weight times the average over all its real tokens (plain language modelling,
which helps the model learn the shape of the text early):

$$\mathcal L = \frac{\sum_t a_t\,\mathrm{CE}_t}{\sum_t a_t}
+ \lambda\,\frac{\sum_t r_t\,\mathrm{CE}_t}{\sum_t r_t}.$$
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from diffusionlab import _checks
from diffusionlab.cache import build_once, checkpoints_beside
from diffusionlab.lm.data import QACorpus, check_mix, training_set
from diffusionlab.lm.model import LanguageModel, LMApply, LMConfig, pure
from diffusionlab.train import Checkpointer, TrainConfig, fit

__all__ = ["LMTrainConfig", "checkpoint_name", "lm_loss", "load_lm", "save_lm",
           "shared_checkpoints", "train_lm", "train_or_load"]


@dataclasses.dataclass(frozen=True)
class LMTrainConfig:
    """Model, data and optimisation of one LM training run.

    Attributes:
      model: the architecture (its ``max_length`` is the trained length ``L``).
      corpus: the training-split generator (document sizes, key and value lengths).
      mix: question kinds, see :func:`~diffusionlab.lm.data.training_set`.
      num_examples: training sequences generated once.
      lm_weight: $\\lambda$, weight of the all-token language-modelling term.
      train: the shared :class:`~diffusionlab.train.TrainConfig`; None skips training (the
        randomly initialised model, for smoke tests of the pipeline).
      distractors: probability that a one-key training question has confusable
        distractors (near-miss keys, other values); 0 (default) leaves the training set as it
        was. See :func:`~diffusionlab.lm.data.training_set`.
      near_misses: the most near-miss facts per such document.
      unknown_answer: when given (e.g. ``"unknown"``), questions whose fact is absent are
        trained to answer it; None (default) trains an unpredictable value there.
      seed: the run's seed, an integer in ``[0, 2**32)``: the training sequences are
        generated from it (NumPy), and ``jax.random.key(seed)`` initialises the parameters
        and orders the data (see :func:`train_lm`).
    """

    model: LMConfig = LMConfig(dim=128, depth=2, num_heads=4, mlp_dim=256, max_length=128,
                               shift=4)
    corpus: QACorpus = QACorpus("train")
    mix: tuple[float, float, float, float] = (0.6, 0.2, 0.1, 0.1)
    num_examples: int = 40_000
    lm_weight: float = 0.1
    train: TrainConfig | None = TrainConfig(steps=3000, batch_size=32, learning_rate=3e-3,
                                            warmup_steps=100, ema_decay=0.99, log_every=100)
    seed: int = 0
    distractors: float = 0.0
    near_misses: int = 2
    unknown_answer: str | None = None

    def __post_init__(self):
        if not isinstance(self.model, LMConfig):
            raise TypeError(f"model must be an LMConfig; got {type(self.model).__name__}")
        if not isinstance(self.corpus, QACorpus):
            raise TypeError(f"corpus must be a QACorpus; got {type(self.corpus).__name__}")
        if self.train is not None and not isinstance(self.train, TrainConfig):
            raise TypeError(f"train must be a TrainConfig or None; got {type(self.train).__name__}")
        check_mix(self.mix)
        _checks.check_int(self.num_examples, "num_examples", low=1)
        _checks.check_real(self.lm_weight, "lm_weight", low=0)
        _checks.check_int(self.seed, "seed", low=0, high=2**32 - 1)
        _checks.check_real(self.distractors, "distractors", low=0, high=1)
        _checks.check_int(self.near_misses, "near_misses", low=1, high=8)
        if self.unknown_answer is not None and (not isinstance(self.unknown_answer, str)
                                                or not self.unknown_answer):
            raise ValueError(f"unknown_answer must be a non-empty string or None; got "
                             f"{self.unknown_answer!r}")

    @classmethod
    def quick(cls) -> LMTrainConfig:
        """A tiny, untrained model: quick runs check the wiring, not the accuracy."""
        return cls(model=LMConfig(dim=32, depth=1, num_heads=2, mlp_dim=64, max_length=128,
                                  shift=4), num_examples=64,
                   train=None)


def _check_train_config(config) -> None:
    if not isinstance(config, LMTrainConfig):
        raise TypeError(f"config must be an LMTrainConfig; got {type(config).__name__}")


def lm_loss(apply: LMApply, *, lm_weight: float = 0.1):
    """Returns ``loss_fn(params, batch, key) -> (B,)`` for :func:`diffusionlab.train.fit`.

    ``batch`` holds ``tokens (B, L)`` and ``answer (B, L)`` weights, as made by
    :func:`diffusionlab.lm.data.training_set`.
    """
    if not isinstance(apply, LMApply):
        raise TypeError(f"apply must be an LMApply (lm.pure(model)[0]); got {type(apply).__name__}")
    _checks.check_real(lm_weight, "lm_weight", low=0)

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

    The config is the recipe, seed included: the LM is cached under
    :func:`checkpoint_name` and shared by every experiment that asks for it, so its key is
    ``jax.random.key(config.seed)``, not an argument. The parameters and the data order
    draw from it by different derivations: ``nnx.Rngs`` folds in a counter per parameter,
    :func:`~diffusionlab.train.fit` splits it (the loss itself draws no noise).

    Returns:
      ``(apply, params, history)``: the pure model, its EMA parameters, the loss history.
    """
    _check_train_config(config)
    key = jax.random.key(config.seed)
    model = LanguageModel(config.model, rngs=nnx.Rngs(key))
    apply, params = pure(model)
    if config.train is None:
        return apply, params, {"step": [], "loss": []}
    data = training_set(config.num_examples, seed=config.seed,
                        max_length=config.model.max_length + 1, corpus=config.corpus,
                        mix=config.mix, distractors=config.distractors,
                        near_misses=config.near_misses, unknown_answer=config.unknown_answer)
    result = fit(lm_loss(apply, lm_weight=config.lm_weight), params, data,
                 config=config.train, key=key, progress=progress)
    return apply, result.ema_params, result.history


def save_lm(directory: str | pathlib.Path, config: LMConfig, params) -> None:
    """Writes ``params`` (orbax) and ``config`` (JSON) under ``directory``."""
    _checks.check_path(directory, "directory")
    if not isinstance(config, LMConfig):
        raise TypeError(f"config must be an LMConfig; got {type(config).__name__}")
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
    _checks.check_path(directory, "directory")
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




_OPTION_DEFAULTS = {"distractors": 0.0, "near_misses": 2, "unknown_answer": None}


def checkpoint_name(config: LMTrainConfig) -> str:
    """A folder name that changes whenever anything in ``config`` changes."""
    _check_train_config(config)
    fields = dataclasses.asdict(config)
    # Options added later are left out at their defaults, so existing names stay valid.
    for name, default in _OPTION_DEFAULTS.items():
        if fields[name] == default:
            del fields[name]
    text = json.dumps(fields, sort_keys=True, default=str)
    return "nbce_lm_" + hashlib.sha1(text.encode()).hexdigest()[:10]


def shared_checkpoints(experiment_directory: str | pathlib.Path) -> pathlib.Path:
    """Where experiments cache their trained LM: ``checkpoints/`` beside their result folders.

    Every experiment that uses the same :class:`LMTrainConfig` then loads one training run
    (``results/<name>/`` gives ``results/checkpoints/``); see
    :func:`diffusionlab.cache.checkpoints_beside`.
    """
    return checkpoints_beside(experiment_directory)


def train_or_load(config: LMTrainConfig, directory: str | pathlib.Path, *,
                  progress: bool = True) -> tuple[LMApply, nnx.State]:
    """Loads the LM trained with ``config`` from ``directory/<checkpoint_name>``, or trains and
    saves it there first (so that the experiments and the notebook share one training run).

    Experiments run in parallel processes (``--jobs``): the first trains, the others wait for
    it and load (:func:`diffusionlab.cache.build_once`).
    """
    _check_train_config(config)
    _checks.check_path(directory, "directory")
    folder = pathlib.Path(directory) / checkpoint_name(config)

    def build(staging: pathlib.Path) -> None:
        _, params, history = train_lm(config, progress=progress)
        save_lm(staging, config.model, params)
        (staging / "history.json").write_text(json.dumps(history))

    build_once(folder, build)
    return load_lm(folder)
