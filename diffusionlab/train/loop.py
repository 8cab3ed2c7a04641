"""``fit``: the training loop shared by every model in diffusionlab.

Data parallel over every device (``jax.sharding``), checkpointed with orbax, resumable
exactly (data order and keys are functions of the run's key and the step), with a tqdm
progress bar and metrics written as JSONL. Parameter snapshots along the run can be kept
(``snapshot_every``), for experiments that study how a quantity evolves during training.
Steps run in jitted ``lax.scan`` chunks of ``log_every`` steps (shorter where checkpoints or
snapshots fall between), so Python is visited once per chunk, not once per step.

A run never calls a bad state good:

* every update is checked for NaNs and infinities (loss, gradient, parameters, optimizer
  state, see :mod:`diffusionlab.train.step`); the first bad one stops the run with a
  :class:`NonFiniteTrainingError` naming its exact step, even inside a scanned chunk, and
  no checkpoint is written after it;
* a workdir keeps a record of its run (``train_config.json``: the config, the key, the
  data's shapes and the state's structure), and resuming with another model, another
  config or another key is refused with a :class:`~diffusionlab.train.checkpoint.CheckpointMismatchError`;
* a damaged newest checkpoint is passed over for the newest intact one, with a warning.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from diffusionlab import _checks
from diffusionlab.train import sharding
from diffusionlab.train.checkpoint import (
    Checkpointer,
    CheckpointMismatchError,
    CheckpointWriteError,
    first_mismatch,
    leaf_shapes,
)
from diffusionlab.train.step import (
    TrainState,
    check_optimizer,
    init_state,
    make_train_step,
    non_finite_parts,
)

# The record of a workdir's run, beside its ``checkpoints`` folder.
RUN_RECORD = "train_config.json"
# Config fields a resumed run may change: they decide how long to train and how often to
# log or save, never what a step computes.
RESUMABLE_FIELDS = ("steps", "log_every", "checkpoint_every")

# Counts of steps and examples: the step counter and the batch indices are int32.
_INTEGER_FIELDS = {"steps": 1, "batch_size": 1, "log_every": 1, "checkpoint_every": 0,
                   "warmup_steps": 0}
_REAL_FIELDS = {"learning_rate": dict(low=0, low_open=True),
                "ema_decay": dict(low=0, high=1, high_open=True),
                "grad_clip": dict(low=0), "weight_decay": dict(low=0)}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (frozen data, checked when built).

    Attributes:
      steps: total optimizer steps (≥ 1).
      batch_size: global batch size (≥ 1, split across devices).
      learning_rate: peak AdamW learning rate (finite, > 0).
      ema_decay: decay d of the parameter EMA, in [0, 1). The EMA starts at the initial
        parameters and is not bias-corrected: after n steps they keep the weight d**n
        (0.999**2000 = 0.135, 0.995**1500 = 5.5e-4). Where that is not negligible, use
        :func:`diffusionlab.odes.learned.debiased_ema` on the result.
      grad_clip: global-norm clipping threshold (finite, ≥ 0; 0 disables clipping).
      warmup_steps: linear learning-rate warm-up (≥ 0).
      weight_decay: AdamW weight decay (finite, ≥ 0).
      log_every: steps per jitted chunk, progress update and JSONL record (≥ 1).
      checkpoint_every: steps between checkpoints (≥ 0; 0: never; > 0 needs ``workdir``).

    The randomness of a run (its data order and the loss's keys) is not configuration: it
    comes from the ``key`` given to :func:`fit`.

    The counts (``steps``, ``batch_size``, ``log_every``, ``checkpoint_every``,
    ``warmup_steps``) are at most ``2**31 - 1``: the step counter is int32.

    Raises:
      TypeError: a field has the wrong type (a float step count, a string rate).
      ValueError: a field lies outside its range (each message names the field and range).
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

    def __post_init__(self):
        checked = {name: _checks.check_int(getattr(self, name), f"TrainConfig.{name}", low=low)
                   for name, low in _INTEGER_FIELDS.items()}
        for name, bounds in _REAL_FIELDS.items():
            checked[name] = float(_checks.check_real(getattr(self, name), f"TrainConfig.{name}",
                                                     **bounds))
        # Plain Python numbers: the config is written to JSON and compared on resume.
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def validate(self, num_examples: int) -> None:
        """Checks the config against a data set of ``num_examples`` examples.

        Raises:
          TypeError: ``num_examples`` is not an integer.
          ValueError: ``num_examples < 1``, or ``batch_size`` exceeds ``num_examples``.
        """
        num_examples = _checks.check_int(num_examples, "num_examples", low=1)
        if self.batch_size > num_examples:
            raise ValueError(f"TrainConfig.batch_size={self.batch_size} exceeds the number of "
                             f"examples {num_examples}")


class Snapshots(NamedTuple):
    """Parameters along a training run, stacked on a leading snapshot axis of length S.

    Attributes:
      steps: ``(S,)`` int, increasing: snapshot ``i`` holds the state after ``steps[i]``
        completed steps (0: the initial parameters).
      params: the parameters' pytree, each leaf of shape ``(S, *leaf.shape)`` (NumPy).
      ema_params: their EMA at the same steps, stacked the same way.
    """

    steps: np.ndarray
    params: Any
    ema_params: Any


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
      params: the final parameters.
      ema_params: their exponential moving average.
      history: ``{"step": [...], "loss": [...]}``, one entry per step this call ran.
      snapshots: :class:`Snapshots` when ``fit`` was asked for them, else None.
    """

    params: Any
    ema_params: Any
    history: dict[str, list]
    snapshots: Snapshots | None = None


class NonFiniteTrainingError(FloatingPointError):
    """A training update held a NaN or an infinity; the run stopped before applying it.

    Attributes:
      step: the first bad step (the index of the update that was not applied).
      non_finite: what was non-finite, from ``("loss", "gradient", "parameters",
        "optimizer state")``, the likely cause first.
      last_good_step: the newest checkpoint this run saved or resumed from (it holds
        finite values and precedes ``step``), or None.
      directory: the checkpoint folder, or None.
    """

    def __init__(self, step: int, non_finite: tuple[str, ...], last_good_step: int | None = None,
                 directory: str | None = None):
        FloatingPointError.__init__(self, step, tuple(non_finite), last_good_step, directory)
        self.step, self.non_finite = step, tuple(non_finite)
        self.last_good_step, self.directory = last_good_step, directory

    def __str__(self) -> str:
        parts = self.non_finite or ("update",)
        also = f" (non-finite: {', '.join(parts)})" if len(parts) > 1 else ""
        kept = (f"; last good checkpoint: step {self.last_good_step} in {self.directory}"
                if self.last_good_step is not None else "; no checkpoint was written before it")
        return f"non-finite {parts[0]} at step {self.step}{also}{kept}"


# The historical name: it is raised for every non-finite update, not only a loss.
NonFiniteLossError = NonFiniteTrainingError


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """AdamW with linear warm-up, after global-norm clipping (when ``grad_clip > 0``).

    Raises:
      TypeError: ``config`` is not a :class:`TrainConfig`.
    """
    _check_config(config)
    schedule = optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps) \
        if config.warmup_steps else config.learning_rate
    adam = optax.adamw(schedule, weight_decay=config.weight_decay)
    return optax.chain(optax.clip_by_global_norm(config.grad_clip), adam) if config.grad_clip else adam


def _dtype(leaf: Any) -> np.dtype:
    return leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype


def _non_finite(named_leaves: list[tuple[str, Any]]) -> str | None:
    """The name of the first floating leaf holding a NaN or an infinity, or None."""
    inexact = [(name, leaf) for name, leaf in named_leaves
               if jnp.issubdtype(_dtype(leaf), jnp.inexact)]
    finite = sharding.to_host([jnp.all(jnp.isfinite(leaf)) for _, leaf in inexact])
    return next((name for (name, _), ok in zip(inexact, finite, strict=True) if not ok), None)


def _num_examples(data: Any) -> int:
    """N, the leading dimension shared by every (finite, real) array of ``data``."""
    leaves = jax.tree.leaves_with_path(data)
    if not leaves:
        raise ValueError("data must hold at least one array, got an empty pytree")
    sizes = {}
    for path, leaf in leaves:
        name = "data" + jax.tree_util.keystr(path)
        dtype = _dtype(leaf)
        if not (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
            raise TypeError(f"{name} must be an array of real numbers (integers or floats; "
                            f"booleans as 0/1 integers), got dtype {dtype}")
        shape = np.shape(leaf)
        if not shape:
            raise ValueError(f"{name} is a scalar; every array in data needs a leading "
                             "example axis")
        sizes[name] = shape[0]
    if len(set(sizes.values())) != 1:
        listed = ", ".join(f"{name}: {size}" for name, size in sizes.items())
        raise ValueError(f"every array in data must share its leading (example) dimension, "
                         f"got {listed}")
    num_examples = next(iter(sizes.values()))
    if num_examples == 0:
        raise ValueError("data holds 0 examples; fit needs at least batch_size examples")
    bad = _non_finite([("data" + jax.tree_util.keystr(path), leaf) for path, leaf in leaves])
    if bad is not None:
        raise ValueError(f"{bad} holds NaN or infinite values; data must be finite")
    return num_examples


def _check_params(params: Any) -> None:
    leaves = jax.tree.leaves_with_path(params)
    if not leaves:
        raise ValueError("params must hold at least one array to train, got an empty pytree")
    names = ["params" + jax.tree_util.keystr(path) for path, _ in leaves]
    for name, (_, leaf) in zip(names, leaves, strict=True):
        if not jnp.issubdtype(_dtype(leaf), jnp.inexact):
            raise TypeError(f"{name} has dtype {_dtype(leaf)}; fit trains floating-point arrays only")
    bad = _non_finite([(name, leaf) for name, (_, leaf) in zip(names, leaves, strict=True)])
    if bad is not None:
        raise ValueError(f"{bad} holds NaN or infinite values; params must be finite")


def _check_config(config: Any) -> None:
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")


def _check_key(key: Any) -> jax.Array:
    """The run's key as a typed scalar key (a raw ``uint32[2]`` key is wrapped)."""
    key = _checks.check_key(key, "key")
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != (2,):
            raise ValueError(f"key must be a single PRNG key; got a raw key array of shape "
                             f"{key.shape}")
        key = jax.random.wrap_key_data(key)
    if key.shape != ():
        raise ValueError(f"key must be a single PRNG key (jax.random.key(seed)); got a "
                         f"batch of keys of shape {key.shape}")
    return key


def _check_arguments(loss_fn, config, workdir, progress, optimizer, devices) -> None:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(params, batch, key) -> (B,), "
                        f"got {type(loss_fn).__name__}")
    _check_config(config)
    if workdir is not None:
        if not isinstance(workdir, (str, os.PathLike)):
            raise TypeError(f"workdir must be None, a str or a path, got {type(workdir).__name__}")
        if pathlib.Path(workdir).exists() and not pathlib.Path(workdir).is_dir():
            raise ValueError(f"workdir {workdir} exists and is not a folder")
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be a bool, got {progress!r}")
    if optimizer is not None:
        check_optimizer(optimizer)
    sharding.check_devices(devices)
    if config.checkpoint_every and workdir is None:
        raise ValueError("TrainConfig.checkpoint_every > 0 needs a workdir")


def _default_devices() -> list:
    """Where :func:`fit` shards when ``devices`` is not given: every device, on every host."""
    return jax.devices()


def _mesh_for(batch_size: int, devices=None):
    devices = _default_devices() if devices is None else list(devices)
    if jax.process_count() > 1:
        if batch_size % len(devices):
            raise ValueError(f"batch_size={batch_size} must be divisible by the global device "
                             f"count {len(devices)} in a multi-process run")
        return sharding.data_mesh(devices)
    # On one host, use as many devices as divide the batch evenly.
    return sharding.data_mesh(devices[: math.gcd(batch_size, len(devices))])


def _run_record(config: TrainConfig, key: jax.Array, data: Any, state: TrainState) -> dict:
    """What identifies a run: its config, its key, the data's shapes and dtypes, the state's
    shapes."""
    return {
        "config": dataclasses.asdict(config),
        "key": {"impl": str(jax.random.key_impl(key)),
                "data": sharding.to_host(jax.random.key_data(key)).tolist()},
        "data": {"data" + jax.tree_util.keystr(path): [list(np.shape(leaf)), str(_dtype(leaf))]
                 for path, leaf in jax.tree.leaves_with_path(data)},
        "state": {name: list(shape) for name, shape in leaf_shapes(state).items()},
    }


def _record_differences(stored: dict, current: dict, *, newest_step: int) -> list[str]:
    """Human-readable differences between a workdir's run record and this run's."""
    differences = []
    stored_config, config = stored.get("config", {}), current["config"]
    for name, value in config.items():
        if name not in RESUMABLE_FIELDS and name in stored_config and stored_config[name] != value:
            differences.append(f"{name}: {stored_config[name]!r} in the workdir, {value!r} now")
    if "key" in stored and stored["key"] != current["key"]:
        differences.append(f"key: {_describe_key(stored['key'])} in the workdir, "
                           f"{_describe_key(current['key'])} now")
    if config["steps"] < newest_step:
        differences.append(f"steps: {config['steps']} now, below step {newest_step} already "
                           "trained in the workdir (raise steps to train further)")
    if "data" in stored and stored["data"] != current["data"]:
        differences.append(f"data: {_describe(stored['data'])} in the workdir, "
                           f"{_describe(current['data'])} now")
    if "state" in stored:
        mismatch = first_mismatch(stored["state"], current["state"])
        if mismatch is not None:
            differences.append(f"model: {mismatch} (another model's checkpoints?)")
    return differences


def _describe_key(key_record: Any) -> str:
    if isinstance(key_record, dict):
        return f"{key_record.get('impl')} key with data {key_record.get('data')}"
    return repr(key_record)


def _describe(data_specs: dict) -> str:
    return ", ".join(f"{name} {tuple(shape)} {dtype}" for name, (shape, dtype) in
                     data_specs.items())


def _read_record(path: pathlib.Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        warnings.warn(f"could not read the run record {path} ({err}); resuming without "
                      "checking the config", stacklevel=3)
        return None


def _write_record(path: pathlib.Path, record: dict) -> None:
    # Written to a temporary file and renamed, so a reader never sees half a record.
    temporary = path.with_name(path.name + ".tmp")
    try:
        # One line per section: readable, and short even for a large model.
        temporary.write_text("{\n" + ",\n".join(f"{json.dumps(key)}: {json.dumps(value)}"
                                                   for key, value in record.items()) + "\n}\n")
        os.replace(temporary, path)
    except OSError as err:
        raise CheckpointWriteError(err.errno, f"could not write the run record {path} "
                                   f"({err.strerror or err})") from err


def _append_metrics(path: pathlib.Path, record: dict) -> None:
    try:
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as err:
        raise CheckpointWriteError(err.errno, f"could not append to the metrics file {path} "
                                   f"({err.strerror or err})") from err


def fit(
    loss_fn: Callable[[Any, Any, jax.Array], jax.Array],
    params: Any,
    data: Any,
    *,
    config: TrainConfig,
    key: jax.Array,
    snapshot_every: int | None = None,
    workdir: str | pathlib.Path | None = None,
    progress: bool = True,
    optimizer: optax.GradientTransformation | None = None,
    devices=None,
) -> FitResult:
    r"""Trains ``params`` to minimise the mean of ``loss_fn`` over batches of ``data``.

    The run's randomness comes from ``key`` alone: it splits into a data key and a noise key;
    the batch of step :math:`n` is a slice of one permutation of the data per epoch, drawn
    from :math:`\mathrm{fold\_in}(k_\text{data}, \text{epoch})`, and ``loss_fn`` gets
    :math:`\mathrm{fold\_in}(k_\text{noise}, n)` (see :func:`~diffusionlab.train.make_train_step`).
    Each step is thus a function of ``(key, n)``: a run resumed from a checkpoint equals an
    uninterrupted one, and the same key gives the same run. The key is an argument of the
    compiled program, not a constant in it, so runs that differ only in their key
    (replicates) share one compilation.

    Args:
      loss_fn: ``loss_fn(params, batch, key) -> (B,)`` per-example losses.
      params: the initial parameters (any pytree of finite floating-point arrays, e.g.
        from ``nn.pure``).
      data: a pytree of real arrays (integers, e.g. token ids, or finite floats) sharing
        the leading dimension N ≥ 1 (kept on every device).
      config: a :class:`TrainConfig`.
      key: the run's PRNG key, a single typed key from ``jax.random.key`` (a raw
        ``uint32[2]`` key is accepted and wrapped).
      snapshot_every: if given (an integer ≥ 1), ``FitResult.snapshots`` holds the
        parameters and their EMA after every step count this call reaches that is a
        multiple of ``snapshot_every`` (0, the initial parameters, included), and after the
        last step, so the last snapshot is the returned parameters. A resumed run snapshots
        from the step it resumes at. The snapshots are copied to host memory as they are
        taken. None (the default) keeps none.
      workdir: if given, checkpoints go to ``workdir/checkpoints``, metrics to
        ``workdir/metrics.jsonl`` and the run's record to ``workdir/train_config.json``.
        An existing checkpoint is resumed from: the newest intact one (a damaged newer
        one is passed over with a warning, and rewritten when training reaches it).
      progress: show a tqdm progress bar (process 0 only).
      optimizer: overrides :func:`make_optimizer` (its state must fit the same checkpoints).
      devices: the devices to shard over (default: all of them, on every host).

    Returns:
      A :class:`FitResult`.

    Raises:
      NonFiniteTrainingError: (also named ``NonFiniteLossError``) on the first update with
        a NaN or an infinity in its loss, gradient, new parameters or new optimizer state;
        it names the exact step and what was non-finite. Nothing from that step on is
        applied or saved, and the last good checkpoint (named too) holds finite values.
      CheckpointMismatchError: (a ValueError) ``workdir`` holds checkpoints of another
        model (the first leaf that differs is named, with both shapes) or of a run with
        another config or key (every difference is listed; ``steps`` may grow, not shrink).
      CheckpointDamagedError: every checkpoint in ``workdir`` is damaged.
      CheckpointWriteError: (an OSError) a checkpoint or record could not be written, e.g.
        a full disk; the checkpoints written before are intact.
      TypeError: ``key`` is missing or not a PRNG key (the message names ``key``).
      TypeError, ValueError: invalid arguments (each message names the argument and its
        valid range: a batch of keys, ``snapshot_every < 1``), an invalid config, or
        inconsistent data: ``data`` leaves that are boolean, complex or non-numeric
        (TypeError), or hold NaN or ±inf (ValueError, before any step runs).
    """
    _check_arguments(loss_fn, config, workdir, progress, optimizer, devices)
    key = _check_key(key)
    if snapshot_every is not None:
        snapshot_every = _checks.check_int(snapshot_every, "snapshot_every", low=1,
                                           high=2**31 - 1)
    num_examples = _num_examples(data)
    config.validate(num_examples)
    _check_params(params)
    optimizer = optimizer or make_optimizer(config)
    mesh = _mesh_for(config.batch_size, devices)
    step_fn = make_train_step(
        loss_fn, optimizer, num_examples=num_examples, batch_size=config.batch_size,
        ema_decay=config.ema_decay, batch_sharding=sharding.batch_sharded(mesh),
    )
    # Steps run in scanned chunks; a chunk stops early (its remaining steps masked) at the
    # next log, checkpoint or snapshot step, so those land on exact steps even when a
    # resumed run starts between them.
    periods = [config.log_every, config.checkpoint_every, snapshot_every or 0]
    chunk = min(math.gcd(*periods), config.steps)
    stop = config.steps
    impl = jax.random.key_impl(key)

    def next_boundary(step: int) -> int:
        return min([stop] + [(step // period + 1) * period for period in periods if period])

    def run_chunk(state: TrainState, data: Any, key_data: jax.Array, until: jax.Array):
        key = jax.random.wrap_key_data(key_data, impl=impl)

        def body(state, _):
            active = (state.step < until) & (state.bad_step < 0)
            new_state, loss = step_fn(state, data, key)
            new_state = jax.tree.map(lambda a, b: jnp.where(active, a, b), new_state, state)
            return new_state, (state.step, loss, active)

        return jax.lax.scan(body, state, length=chunk)

    run_chunk = jax.jit(run_chunk, donate_argnums=0)
    # The key is an argument, not a constant of the program: runs that differ only in their
    # key (replicates) share one compiled program through the compilation cache.
    key_data = sharding.put_replicated(jax.random.key_data(key), mesh)
    state = sharding.put_replicated(init_state(params, optimizer), mesh)
    data = sharding.put_replicated(data, mesh)

    is_main = jax.process_index() == 0
    workdir = pathlib.Path(workdir) if workdir is not None else None
    checkpointer = Checkpointer(workdir / "checkpoints") if workdir is not None else None
    try:
        # The newest checkpoint this run saved or resumed from: finite, and a valid restart.
        last_good = None
        if checkpointer is not None:
            record = _run_record(config, key, data, state)
            record_path = workdir / RUN_RECORD
            if checkpointer.steps():
                state = _resume(checkpointer, state, record, record_path)
                last_good = int(sharding.to_host(state.step))
            if is_main and (config.checkpoint_every or last_good is not None):
                _write_record(record_path, record)
        log_file = workdir / "metrics.jsonl" if (workdir is not None and is_main) else None

        history: dict[str, list] = {"step": [], "loss": []}
        start_step = int(sharding.to_host(state.step))
        snapshots: list[tuple[int, Any, Any]] = []

        def snapshot(done: int) -> None:
            # Host copies: the next chunk donates (overwrites) the state's device buffers.
            if snapshot_every is not None and (done % snapshot_every == 0 or done == stop):
                snapshots.append((done, *sharding.to_host((state.params, state.ema_params))))

        snapshot(start_step)
        bar = tqdm(total=stop, initial=start_step, disable=not (progress and is_main),
                   desc="train", dynamic_ncols=True, leave=False)
        started = time.perf_counter()
        try:
            while (step := int(sharding.to_host(state.step))) < stop:
                state, (steps, losses, active) = run_chunk(state, data, key_data,
                                                           np.int32(next_boundary(step)))
                steps, losses, active, bad, mask = sharding.to_host(
                    (steps, losses, active, state.bad_step, state.non_finite))
                if bad >= 0:
                    raise NonFiniteTrainingError(
                        int(bad), non_finite_parts(mask), last_good,
                        str(checkpointer.directory) if last_good is not None else None)
                history["step"] += steps[active].tolist()
                history["loss"] += losses[active].tolist()
                done = int(steps[active][-1]) + 1
                snapshot(done)
                bar.update(int(active.sum()))
                bar.set_postfix(loss=f"{float(losses[active].mean()):.4g}")
                if log_file is not None:
                    _append_metrics(log_file, {"step": done, "loss": float(losses[active].mean()),
                                               "seconds": round(time.perf_counter() - started, 3)})
                if checkpointer is not None and config.checkpoint_every and (
                    done % config.checkpoint_every == 0 or done == stop
                ):
                    if done in checkpointer.steps():
                        # A damaged checkpoint passed over on resume: replaced by this one.
                        checkpointer.delete(done)
                    checkpointer.save(done, state)
                    last_good = done
        finally:
            bar.close()
    finally:
        if checkpointer is not None:
            checkpointer.close()
    return FitResult(state.params, state.ema_params, history, _stack(snapshots)
                     if snapshot_every is not None else None)


def _stack(snapshots: list[tuple[int, Any, Any]]) -> Snapshots:
    steps, params, ema_params = zip(*snapshots, strict=True)
    return Snapshots(np.asarray(steps), jax.tree.map(lambda *leaves: np.stack(leaves), *params),
                     jax.tree.map(lambda *leaves: np.stack(leaves), *ema_params))


def _resume(checkpointer: Checkpointer, state: TrainState, record: dict,
            record_path: pathlib.Path) -> TrainState:
    """Checks a workdir's run against this one, then restores its newest intact checkpoint."""
    workdir = record_path.parent
    stored = _read_record(record_path)
    if stored is None:
        warnings.warn(f"workdir {workdir} has checkpoints but no {RUN_RECORD}: the config of "
                      "its run is unknown and is not checked", stacklevel=3)
    else:
        differences = _record_differences(stored, record, newest_step=checkpointer.latest_step())
        if differences:
            raise CheckpointMismatchError(
                f"cannot resume from workdir {workdir}: its run differs from this one in "
                + "; ".join(differences)
                + ". Use a new workdir, or the workdir's settings.")
    try:
        return checkpointer.restore(state, require_finite=True)
    except CheckpointMismatchError as err:
        raise CheckpointMismatchError(f"cannot resume from workdir {workdir}: {err}") from None
