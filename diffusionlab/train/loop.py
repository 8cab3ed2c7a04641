"""``fit``: the training loop shared by every model in diffusionlab.

Data parallel over every device (``jax.sharding``), checkpointed with orbax, resumable
exactly (data order and keys are functions of the step), with a tqdm progress bar and
metrics written as JSONL. Steps run in jitted ``lax.scan`` chunks of ``log_every`` steps,
so Python is visited once per chunk, not once per step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from diffusionlab.train import sharding
from diffusionlab.train.checkpoint import Checkpointer
from diffusionlab.train.step import TrainState, init_state, make_train_step


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (frozen data).

    Attributes:
      steps: total optimizer steps.
      batch_size: global batch size (split across devices).
      learning_rate: peak AdamW learning rate.
      ema_decay: decay of the parameter EMA.
      grad_clip: global-norm clipping threshold (0 disables clipping).
      warmup_steps: linear learning-rate warm-up.
      weight_decay: AdamW weight decay.
      log_every: steps per jitted chunk, progress update and JSONL record.
      checkpoint_every: steps between checkpoints (0: never; needs ``workdir``).
      seed: seeds the data order and the per-step keys.
    """

    steps: int = 1000
    batch_size: int = 128
    learning_rate: float = 1e-3
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    warmup_steps: int = 0
    weight_decay: float = 0.0
    log_every: int = 50
    checkpoint_every: int = 0
    seed: int = 0

    def validate(self, num_examples: int) -> None:
        for name in ("steps", "batch_size", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.batch_size > num_examples:
            raise ValueError(f"TrainConfig.batch_size={self.batch_size} exceeds the number of "
                             f"examples {num_examples}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must lie in [0, 1), got {self.ema_decay}")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainConfig.learning_rate must be > 0, got {self.learning_rate}")
        if self.grad_clip < 0 or self.warmup_steps < 0 or self.checkpoint_every < 0:
            raise ValueError("TrainConfig.grad_clip, warmup_steps and checkpoint_every must be ≥ 0")


class FitResult(NamedTuple):
    """What :func:`fit` returns: final and EMA parameters, and the per-step loss history."""

    params: Any
    ema_params: Any
    history: dict[str, list]


class NonFiniteLossError(FloatingPointError):
    """Raised when a training loss is NaN or infinite; the last good checkpoint is kept."""


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """AdamW with linear warm-up, after global-norm clipping (when ``grad_clip > 0``)."""
    schedule = optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps) \
        if config.warmup_steps else config.learning_rate
    adam = optax.adamw(schedule, weight_decay=config.weight_decay)
    return optax.chain(optax.clip_by_global_norm(config.grad_clip), adam) if config.grad_clip else adam


def _num_examples(data: Any) -> int:
    sizes = {np.shape(leaf)[0] for leaf in jax.tree.leaves(data)}
    if len(sizes) != 1:
        raise ValueError(f"every array in data must share its leading dimension, got sizes {sizes}")
    return sizes.pop()


def _mesh_for(batch_size: int, devices=None):
    devices = jax.devices() if devices is None else list(devices)
    if jax.process_count() > 1:
        if batch_size % len(devices):
            raise ValueError(f"batch_size={batch_size} must be divisible by the global device "
                             f"count {len(devices)} in a multi-process run")
        return sharding.data_mesh(devices)
    # On one host, use as many devices as divide the batch evenly.
    return sharding.data_mesh(devices[: math.gcd(batch_size, len(devices))])


def fit(
    loss_fn: Callable[[Any, Any, jax.Array], jax.Array],
    params: Any,
    data: Any,
    *,
    config: TrainConfig,
    workdir: str | pathlib.Path | None = None,
    progress: bool = True,
    optimizer: optax.GradientTransformation | None = None,
    devices=None,
) -> FitResult:
    """Trains ``params`` to minimise the mean of ``loss_fn`` over batches of ``data``.

    Args:
      loss_fn: ``loss_fn(params, batch, key) -> (B,)`` per-example losses.
      params: the initial parameters (any pytree, e.g. from ``nn.pure``).
      data: a pytree of arrays sharing the leading dimension N (kept on every device).
      config: a :class:`TrainConfig`.
      workdir: if given, checkpoints go to ``workdir/checkpoints`` and metrics to
        ``workdir/metrics.jsonl``; an existing checkpoint is resumed from.
      progress: show a tqdm progress bar (process 0 only).
      optimizer: overrides :func:`make_optimizer` (its state must fit the same checkpoints).
      devices: the devices to shard over (default: all of them, on every host).

    Returns:
      A :class:`FitResult`.

    Raises:
      NonFiniteLossError: on the first NaN/inf loss, naming the step; the last good
        checkpoint is kept, and nothing after it is written.
      ValueError: for an invalid config or inconsistent data.
    """
    num_examples = _num_examples(data)
    config.validate(num_examples)
    if config.checkpoint_every and workdir is None:
        raise ValueError("TrainConfig.checkpoint_every > 0 needs a workdir")
    optimizer = optimizer or make_optimizer(config)
    mesh = _mesh_for(config.batch_size, devices)
    step_fn = make_train_step(
        loss_fn, optimizer, num_examples=num_examples, batch_size=config.batch_size,
        ema_decay=config.ema_decay, seed=config.seed,
        batch_sharding=sharding.batch_sharded(mesh),
    )
    chunk = math.gcd(config.log_every, config.checkpoint_every) if config.checkpoint_every \
        else config.log_every
    chunk = min(chunk, config.steps)
    stop = config.steps

    def run_chunk(state: TrainState, data: Any):
        def body(state, _):
            active = state.step < stop
            new_state, loss = step_fn(state, data)
            new_state = jax.tree.map(lambda a, b: jnp.where(active, a, b), new_state, state)
            return new_state, (state.step, loss, active)

        return jax.lax.scan(body, state, length=chunk)

    run_chunk = jax.jit(run_chunk, donate_argnums=0)
    state = sharding.put_replicated(init_state(params, optimizer), mesh)
    data = sharding.put_replicated(data, mesh)

    checkpointer = Checkpointer(pathlib.Path(workdir) / "checkpoints") if workdir else None
    if checkpointer is not None and checkpointer.latest_step() is not None:
        state = checkpointer.restore(state)
    is_main = jax.process_index() == 0
    log_file = pathlib.Path(workdir) / "metrics.jsonl" if (workdir and is_main) else None

    history: dict[str, list] = {"step": [], "loss": []}
    start_step = int(sharding.to_host(state.step))
    bar = tqdm(total=stop, initial=start_step, disable=not (progress and is_main),
               desc="train", dynamic_ncols=True, leave=False)
    started = time.perf_counter()
    try:
        while int(sharding.to_host(state.step)) < stop:
            state, (steps, losses, active) = run_chunk(state, data)
            steps, losses, active, bad = sharding.to_host((steps, losses, active, state.bad_step))
            if bad >= 0:
                kept = checkpointer.latest_step() if checkpointer else None
                where = f"; last good checkpoint: step {kept} in {checkpointer.directory}" \
                    if kept is not None else "; no checkpoint was written"
                raise NonFiniteLossError(f"non-finite loss at step {int(bad)}{where}")
            history["step"] += steps[active].tolist()
            history["loss"] += losses[active].tolist()
            done = int(steps[active][-1]) + 1
            bar.update(int(active.sum()))
            bar.set_postfix(loss=f"{float(losses[active].mean()):.4g}")
            if log_file is not None:
                record = {"step": done, "loss": float(losses[active].mean()),
                          "seconds": round(time.perf_counter() - started, 3)}
                with log_file.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            if checkpointer is not None and config.checkpoint_every and (
                done % config.checkpoint_every == 0 or done == stop
            ):
                checkpointer.save(done, state)
    finally:
        bar.close()
        if checkpointer is not None:
            checkpointer.close()
    return FitResult(state.params, state.ema_params, history)
