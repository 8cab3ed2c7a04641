r"""Training many pair models at once: every loss and every seed in one compiled program.

The models of one comparison (say CoSENT, Sentence-BERT and cosine-MSE, each over three
seeds) share their architecture and data, so they are trained together: their parameters are
stacked along a leading axis and one ``vmap``-ed, ``jit``-ted ``lax.scan`` trains them all. The
loss is chosen by a one-hot weight over the candidate losses (all computed from the same
forward pass), which keeps the compiled program the same for every loss, seed and task.

Every ``eval_every`` steps the program scores the whole validation and test splits, so the
caller can draw the convergence curve and keep the checkpoint with the best validation metric,
as the essays do, without storing parameters.

Reference: 苏剑林, "CoSENT（一）", https://kexue.fm/archives/8847 (protocol: best validation
checkpoint, then test).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diffusionlab import _checks
from diffusionlab.cosent.baselines import (
    binary_cross_entropy_loss,
    cosine_mse_loss,
    sbert_softmax_loss,
)
from diffusionlab.cosent.loss import cosent_loss
from diffusionlab.cosent.models import BiEncoder, CrossEncoder, EncoderConfig
from diffusionlab.cosent.tasks import PairSplit, PairTask
from diffusionlab.cosent.tokenizer import Tokenizer

__all__ = ["BI_ENCODER_LOSSES", "CROSS_ENCODER_LOSSES", "PairArrays", "TrainResult",
           "TrainSettings", "encode_task", "train_pair_models"]

BI_ENCODER_LOSSES = ("cosent", "sbert", "cosine_mse")
CROSS_ENCODER_LOSSES = ("cosent", "cross_entropy")
KINDS = {"bi": BI_ENCODER_LOSSES, "cross": CROSS_ENCODER_LOSSES}


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    r"""Optimisation settings shared by all models of one call (static: part of the program).

    Attributes:
      steps: optimiser steps; a multiple of ``eval_every``.
      batch_size: pairs per step (the reference uses 32 for bi-encoders, 64 for CoSENT on a
        cross-encoder; one value keeps the comparison paired).
      learning_rate: Adam's step size (with global-norm clipping at 1).
      eval_every: steps between scorings of the validation and test splits.
      scale: CoSENT's $\lambda$ on cosines (bi-encoder); the cross-encoder uses 1.
    """

    steps: int = 1000
    batch_size: int = 32
    learning_rate: float = 1e-3
    eval_every: int = 50
    scale: float = 20.0

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_every"):
            _checks.check_int(getattr(self, name), name, low=1, high=10**9)
        if self.steps % self.eval_every:
            raise ValueError(f"steps ({self.steps}) must be a multiple of eval_every "
                             f"({self.eval_every})")
        _checks.check_real(self.learning_rate, "learning_rate", low=0, low_open=True)
        _checks.check_real(self.scale, "scale", low=0, low_open=True)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PairArrays:
    """One split as arrays: ``inputs`` (a tuple of token arrays), graded/binary/target labels.

    ``inputs`` is ``(tokens_a, tokens_b)`` for a bi-encoder and ``(pair_tokens,)`` for a
    cross-encoder; ``targets`` are ``label / max_label`` (cosine-MSE).
    """

    inputs: tuple
    labels: jax.Array
    binary: jax.Array
    targets: jax.Array


def encode_task(task: PairTask, tokenizer: Tokenizer, *, kind: str,
                max_length: int) -> dict[str, PairArrays]:
    """Tokenizes the three splits of ``task`` for a ``"bi"`` or ``"cross"`` encoder.

    ``max_length`` is per sentence; a cross-encoder's pair input gets twice that.
    """
    _checks.check_choice(kind, "kind", tuple(KINDS))
    if not isinstance(task, PairTask):
        raise TypeError(f"task must be a PairTask; got {type(task).__name__}")
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError(f"tokenizer must be a Tokenizer; got {type(tokenizer).__name__}")
    max_length = _checks.check_int(max_length, "max_length", low=1, high=2**16)

    def arrays(split: PairSplit) -> PairArrays:
        if kind == "bi":
            inputs = (tokenizer.encode_batch(split.texts_a, max_length=max_length),
                      tokenizer.encode_batch(split.texts_b, max_length=max_length))
        else:
            inputs = (tokenizer.encode_pairs(split.texts_a, split.texts_b,
                                             max_length=2 * max_length),)
        return PairArrays(tuple(jnp.asarray(x) for x in inputs), jnp.asarray(split.labels),
                          jnp.asarray(task.binary_labels(split)),
                          jnp.asarray(split.labels / task.max_label, jnp.float32))

    return {"train": arrays(task.train), "valid": arrays(task.valid), "test": arrays(task.test)}


def _scores_and_losses(model, kind: str, inputs, labels, binary, targets, scale):
    """Pair scores and the vector of candidate losses, from one forward pass."""
    if kind == "bi":
        cos_B, u_BxD, v_BxD = model(*inputs)
        losses = jnp.stack([
            cosent_loss(cos_B, labels, scale=scale),
            jnp.mean(sbert_softmax_loss(model.sbert_logits(u_BxD, v_BxD), binary)),
            jnp.mean(cosine_mse_loss(cos_B, targets)),
        ])
        return cos_B, losses
    f_B = model(*inputs)
    losses = jnp.stack([cosent_loss(f_B, labels, scale=1.0),
                        jnp.mean(binary_cross_entropy_loss(f_B, binary))])
    return f_B, losses


def _score(model, kind, inputs):
    return model(*inputs)[0] if kind == "bi" else model(*inputs)


def _train_stack(graphdef, kind, settings, params_R, weights_RxK, keys_R, train, valid, test):
    """The compiled program: trains ``R`` models (leading axis) and scores them as they go."""
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(settings.learning_rate))
    num = train.labels.shape[0]
    batch = min(settings.batch_size, num)
    steps_per_epoch = num // batch
    num_evals = settings.steps // settings.eval_every

    def train_one(params, weights_K, key):
        def loss_fn(params, idx_B):
            take = lambda x: x[idx_B]  # noqa: E731
            model = nnx.merge(graphdef, params)
            _, losses_K = _scores_and_losses(
                model, kind, tuple(take(x) for x in train.inputs), take(train.labels),
                take(train.binary), take(train.targets), settings.scale)
            return jnp.dot(weights_K, losses_K)

        def step(carry, i):
            params, opt_state = carry
            # A fresh permutation per epoch: every pair is seen once per epoch.
            order = jax.random.permutation(jax.random.fold_in(key, i // steps_per_epoch), num)
            idx_B = jax.lax.dynamic_slice(order, ((i % steps_per_epoch) * batch,), (batch,))
            loss, grads = jax.value_and_grad(loss_fn)(params, idx_B)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        num_valid = valid.labels.shape[0]
        # Validation and test are scored in one pass (one copy of the forward in the program).
        eval_inputs = tuple(jnp.concatenate([v, w]) for v, w in zip(valid.inputs, test.inputs, strict=True))

        def evaluate(params):
            scores = _score(nnx.merge(graphdef, params), kind, eval_inputs)
            return scores[:num_valid], scores[num_valid:]

        def chunk(carry, e):
            # Score first, then train: chunk e reports the model after e * eval_every steps.
            scores = evaluate(carry[0])
            carry, losses = jax.lax.scan(
                step, carry, e * settings.eval_every + jnp.arange(settings.eval_every))
            return carry, (losses, *scores)

        (params, _), (losses, valid_scores, test_scores) = jax.lax.scan(
            chunk, (params, optimizer.init(params)), jnp.arange(num_evals))
        valid_last, test_last = evaluate(params)
        return (losses.reshape(-1), jnp.concatenate([valid_scores, valid_last[None]]),
                jnp.concatenate([test_scores, test_last[None]]))

    return jax.vmap(train_one)(params_R, weights_RxK, keys_R)


train_stack = jax.jit(_train_stack, static_argnums=(0, 1, 2))
"""The jitted program ``(graphdef, kind, settings, params_R, weights_RxK, keys_R, train, valid,
test) -> (losses_RxT, valid_scores_RxExNv, test_scores_RxExNt)``; compiled once per shape."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Scores of every (loss, seed) model at every evaluation.

    Attributes:
      losses: the names along axis 0.
      seeds: the seeds along axis 1.
      eval_steps: ``(E,)`` the optimiser step of each evaluation (0 = initialisation).
      train_loss: ``(M, S, steps)``.
      valid_scores: ``(M, S, E, N_valid)`` pair scores (cosines or head outputs).
      test_scores: ``(M, S, E, N_test)``.
    """

    losses: tuple[str, ...]
    seeds: tuple[int, ...]
    eval_steps: np.ndarray
    train_loss: np.ndarray
    valid_scores: np.ndarray
    test_scores: np.ndarray


def _model_class(kind: str):
    return BiEncoder if kind == "bi" else CrossEncoder


# Truncated at two standard deviations and rescaled to unit variance, as flax's lecun_normal.
_TRUNCATED_STD = 0.87962566103423978


def _draw(path, leaf, rng: np.random.Generator) -> np.ndarray:
    """One parameter drawn host-side from flax's default initialiser for its kind."""
    name = getattr(path[-1], "key", getattr(path[-1], "name", None))
    if name == "value":  # nnx.Variable leaves end in ".value"
        name = getattr(path[-2], "key", getattr(path[-2], "name", None))
    shape = leaf.shape
    if name == "kernel":  # lecun_normal: truncated normal, variance 1 / fan_in
        draw = rng.standard_normal(shape)
        while np.any(bad := np.abs(draw) > 2):
            draw[bad] = rng.standard_normal(int(bad.sum()))
        return draw / _TRUNCATED_STD / np.sqrt(shape[0])
    if name == "embedding":  # variance_scaling(1, fan_in, normal) over the features
        return rng.standard_normal(shape) / np.sqrt(shape[-1])
    if name == "bias":
        return np.zeros(shape)
    if name == "scale":
        return np.ones(shape)
    raise ValueError(f"no initialiser for parameter {jax.tree_util.keystr(path)}")


def init_stack(kind: str, config: EncoderConfig, seeds: Sequence[int]):
    """``(graphdef, params)`` with parameters stacked over ``seeds`` along axis 0.

    The distributions are flax's defaults, but drawn with NumPy: initialising with JAX would
    compile one program per parameter shape, which costs more than training the small models
    of the tests.
    """
    abstract = nnx.eval_shape(lambda: _model_class(kind)(config, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    per_seed = []
    for seed in seeds:
        rng = np.random.default_rng([int(seed), 0xC05E])
        per_seed.append(jax.tree_util.tree_map_with_path(
            lambda path, leaf, rng=rng: _draw(path, leaf, rng).astype(leaf.dtype), state))
    return graphdef, jax.tree.map(lambda *x: jnp.asarray(np.stack(x)), *per_seed)


def init_params(kind: str, config: EncoderConfig, seed: int):
    """``(graphdef, params)`` of a fresh bi- or cross-encoder initialised from ``seed``."""
    graphdef, params = init_stack(kind, config, (seed,))
    return graphdef, jax.tree.map(lambda x: x[0], params)


def train_pair_models(kind: str, losses: tuple[str, ...], config: EncoderConfig,
                      arrays: dict[str, PairArrays], *, seeds: tuple[int, ...],
                      settings: TrainSettings) -> TrainResult:
    """Trains one model per (loss, seed) on ``arrays["train"]``, scoring valid/test as it goes.

    Models of the same seed start from the same initialisation whatever their loss, so the
    comparison between losses is paired.

    Args:
      kind: ``"bi"`` or ``"cross"``.
      losses: names from :data:`BI_ENCODER_LOSSES` or :data:`CROSS_ENCODER_LOSSES`.
      config: the trunk size.
      arrays: from :func:`encode_task` with the same ``kind``.
      seeds: initialisation and batch-order seeds.
      settings: optimisation settings.

    Returns:
      A :class:`TrainResult`.

    Raises:
      ValueError: unknown kind or loss name, or no seeds.
    """
    _checks.check_choice(kind, "kind", tuple(KINDS))
    if isinstance(losses, str) or not isinstance(losses, (tuple, list)):
        raise TypeError(f"losses must be a tuple of loss names; got {losses!r}")
    if not isinstance(config, EncoderConfig):
        raise TypeError(f"config must be an EncoderConfig; got {type(config).__name__}")
    if not isinstance(settings, TrainSettings):
        raise TypeError(f"settings must be a TrainSettings; got {type(settings).__name__}")
    if not isinstance(arrays, dict) or not all(
            isinstance(arrays.get(s), PairArrays) for s in ("train", "valid", "test")):
        raise TypeError("arrays must be the dict of PairArrays made by encode_task")
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__len__"):
        raise TypeError(f"seeds must be a tuple of ints; got {seeds!r}")
    for seed in seeds:
        _checks.check_int(seed, "seeds", low=0, high=2**32 - 1)
    unknown = [name for name in losses if name not in KINDS[kind]]
    if unknown or not losses:
        raise ValueError(f"losses for a {kind}-encoder must be a non-empty subset of "
                         f"{KINDS[kind]}, got {losses}")
    if not seeds:
        raise ValueError("seeds must be non-empty")
    # Rows are (loss, seed) with the seed fastest; every loss starts from the same models.
    seeds_R = np.tile(np.asarray(seeds, np.uint32), len(losses))
    keys_R = jax.vmap(jax.random.key)(jnp.asarray(seeds_R))
    graphdef, params_R = init_stack(kind, config, seeds_R)
    eye = np.eye(len(KINDS[kind]), dtype=np.float32)
    weights_RxK = jnp.asarray(np.repeat(eye[[KINDS[kind].index(n) for n in losses]],
                                        len(seeds), axis=0))
    train_loss, valid, test = train_stack(graphdef, kind, settings, params_R, weights_RxK,
                                          keys_R, arrays["train"], arrays["valid"],
                                          arrays["test"])
    shape = (len(losses), len(seeds))
    num_evals = settings.steps // settings.eval_every
    return TrainResult(tuple(losses), tuple(seeds),
                       np.arange(num_evals + 1) * settings.eval_every,
                       np.asarray(train_loss).reshape(*shape, -1),
                       np.asarray(valid).reshape(*shape, *valid.shape[1:]),
                       np.asarray(test).reshape(*shape, *test.shape[1:]))
