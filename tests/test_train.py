"""Training: sharding equivalence, exact resume after SIGKILL, NaN abort, one compile, multi-host,
and the guards that keep a run from calling a bad state good."""

import dataclasses
import errno
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from asserts import assert_tree_allclose
from train_problem import CONFIG, SEED, nan_gradient_where, problem

from diffusionlab.train import (
    Checkpointer,
    CheckpointMismatchError,
    CheckpointWriteError,
    NonFiniteLossError,
    NonFiniteTrainingError,
    TrainConfig,
    all_finite,
    batch_indices,
    data_mesh,
    fit,
    init_state,
    make_optimizer,
    make_train_step,
    put_replicated,
)
from diffusionlab.train import loop as train_loop

HERE = os.path.dirname(__file__)
RUN_KEY = jax.random.key(SEED)


def test_batches_cover_each_epoch_exactly_once():
    key = jax.random.key(0)
    idx = np.concatenate([np.asarray(batch_indices(jnp.asarray(s), num_examples=50, batch_size=10, key=key))
                          for s in range(10)])
    assert sorted(idx[:50]) == list(range(50)) and sorted(idx[50:]) == list(range(50))
    assert not np.array_equal(idx[:50], idx[50:]), "each epoch has its own permutation"


def test_training_reduces_the_loss_to_the_noise_floor():
    loss_fn, params, data = problem()
    result = fit(loss_fn, params, data, config=dataclasses.replace(CONFIG, steps=300), key=RUN_KEY,
                 progress=False)
    # Residual noise 0.1 per output (2 outputs) plus input noise: expected loss ≈ 0.02.
    assert np.mean(result.history["loss"][-20:]) < 0.05 < result.history["loss"][0]
    assert result.history["step"] == list(range(300))


@pytest.mark.all_devices
def test_sharded_over_8_devices_matches_one_device():
    """The default (no ``devices``) shards over every device."""
    assert len(jax.devices()) == 8, "conftest provides 8 virtual CPU devices"
    assert train_loop._mesh_for(CONFIG.batch_size).devices.size == 8
    loss_fn, params, data = problem()
    many = fit(loss_fn, params, data, config=CONFIG, key=RUN_KEY, progress=False)
    one = fit(loss_fn, params, data, config=CONFIG, key=RUN_KEY, progress=False, devices=jax.devices()[:1])
    # Sharding changes the order of the batch reductions: float32 rounding (a few ulps).
    np.testing.assert_allclose(many.history["loss"], one.history["loss"], rtol=1e-6, atol=1e-6)
    assert_tree_allclose(many.params, one.params, rtol=1e-5, atol=1e-6)


def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
    loss_fn, params, data = problem()
    config = dataclasses.replace(CONFIG, checkpoint_every=10)
    reference = fit(loss_fn, params, data, config=config, workdir=tmp_path / "ref", key=RUN_KEY,
                    progress=False)

    workdir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "train_problem.py"), "slow", str(workdir)],
                            env={**os.environ, "XLA_FLAGS": ""})
    deadline = time.time() + 120
    while time.time() < deadline and not (workdir / "checkpoints" / "20").exists():
        assert proc.poll() is None, "the worker ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps and 20 <= steps[-1] < config.steps, f"killed mid-run, checkpoints {steps}"

    resumed = fit(loss_fn, params, data, config=config, workdir=workdir, key=RUN_KEY, progress=False)
    assert resumed.history["step"][0] == steps[-1], "resumes where the last checkpoint stopped"
    assert_tree_allclose(resumed.params, reference.params, rtol=0, atol=1e-6)
    assert_tree_allclose(resumed.ema_params, reference.ema_params, rtol=0, atol=1e-6)


def test_nan_loss_aborts_naming_the_step_and_keeps_last_good_checkpoint(tmp_path):
    _, params, (x, y) = problem()
    y = y.copy()
    # Poison one label with a finite value whose square overflows (NaN data is refused up
    # front): the first batch holding example 200 has an infinite loss.
    y[200] = np.finfo(np.float32).max
    config = dataclasses.replace(CONFIG, checkpoint_every=10, log_every=10, steps=200)
    data_key = jax.random.split(RUN_KEY)[0]
    first_bad = next(s for s in range(config.steps) if 200 in np.asarray(
        batch_indices(jnp.asarray(s), num_examples=256, batch_size=config.batch_size, key=data_key)))
    with pytest.raises(NonFiniteLossError, match=rf"non-finite loss at step {first_bad}\b"):
        fit(lambda p, b, k: jnp.sum((b[0] @ p["w"] - b[1]) ** 2, -1), params, (x, y),
            config=config, workdir=tmp_path, key=RUN_KEY, progress=False)
    kept = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert kept == [s for s in (10, 20, 30, 40, 50, 60, 70) if s <= first_bad][-3:], \
        "checkpoints up to the NaN are kept, none after it"


def test_train_step_compiles_once():
    traces = []
    loss_fn, params, data = problem()

    def counting(p, batch, key):
        traces.append(1)
        return loss_fn(p, batch, key)

    fit(counting, params, data, config=dataclasses.replace(CONFIG, steps=95, log_every=10), key=RUN_KEY,
        progress=False)
    # One trace of the scanned step for all 10 chunks (the last one partly masked).
    assert len(traces) == 1


def test_runs_that_differ_only_in_the_key_share_one_compiled_program():
    """The key is an argument of the compiled training chunk, not a constant in it: a second
    run with another key compiles nothing new (the suite's compilation cache answers), and
    still trains differently."""
    loss_fn, params, data = problem()
    config = dataclasses.replace(CONFIG, steps=8, log_every=8)
    first = fit(loss_fn, params, data, config=config, key=RUN_KEY, progress=False, devices=ONE)
    misses = []

    def listener(event, **kwargs):
        if event == "/jax/compilation_cache/cache_misses":
            misses.append(event)

    jax.monitoring.register_event_listener(listener)
    try:
        other = fit(loss_fn, params, data, config=config, key=jax.random.key(4), progress=False,
                    devices=ONE)
    finally:
        jax.monitoring.unregister_event_listener(listener)
    assert misses == []
    assert not np.allclose(first.history["loss"], other.history["loss"])


def test_the_key_decides_the_run_through_the_documented_steps():
    """``fit(key=k)`` is the scanned :func:`make_train_step` with ``k``: batches from
    ``split(k)[0]``, the loss's keys ``fold_in(split(k)[1], step)``. The same key gives the
    same run bit for bit, another key another run; a raw key equals its typed key."""
    loss_fn, params, data = problem()
    config = dataclasses.replace(CONFIG, steps=12, log_every=4)
    first = fit(loss_fn, params, data, config=config, key=RUN_KEY, progress=False, devices=ONE)
    again = fit(loss_fn, params, data, config=config, key=RUN_KEY, progress=False, devices=ONE)
    raw = fit(loss_fn, params, data, config=config, key=jax.random.key_data(RUN_KEY),
              progress=False, devices=ONE)
    other = fit(loss_fn, params, data, config=config, key=jax.random.key(4), progress=False,
                devices=ONE)
    for run in (again, raw):
        assert run.history == first.history
        assert_tree_allclose(run.params, first.params, rtol=0, atol=0)
        assert_tree_allclose(run.ema_params, first.ema_params, rtol=0, atol=0)
    assert not np.allclose(other.history["loss"], first.history["loss"])

    # The same steps by hand, one jitted step at a time (float32: a few ulps of fusion).
    optimizer = make_optimizer(config)
    step = jax.jit(make_train_step(loss_fn, optimizer, num_examples=256,
                                   batch_size=config.batch_size, ema_decay=config.ema_decay))
    state, losses = init_state(params, optimizer), []
    for _ in range(config.steps):
        state, loss = step(state, data, RUN_KEY)
        losses.append(float(loss))
    np.testing.assert_allclose(first.history["loss"], losses, rtol=1e-6, atol=0)
    assert_tree_allclose(first.params, state.params, rtol=1e-6, atol=1e-7)
    assert_tree_allclose(first.ema_params, state.ema_params, rtol=1e-6, atol=1e-7)

    # The loss's key at step n is fold_in(split(key)[1], n): a loss that returns its key's
    # first uniform draw per example makes the history spell out the keys.
    def key_loss(p, batch, key):
        return jnp.full(batch[0].shape[:1], jax.random.uniform(key)) + 0.0 * p["b"][0]

    drawn = fit(key_loss, params, data, config=config, key=RUN_KEY, progress=False, devices=ONE)
    noise_key = jax.random.split(RUN_KEY)[1]
    expected = [float(jax.random.uniform(jax.random.fold_in(noise_key, n)))
                for n in range(config.steps)]
    np.testing.assert_array_equal(np.float32(drawn.history["loss"]), np.float32(expected))


@pytest.mark.parametrize("steps, log_every, expected", [
    (60, 10, [0, 20, 40, 60]),
    (50, 15, [0, 20, 40, 50]),  # the last step always, and log steps that miss the snapshots
])
def test_snapshots_are_the_states_at_their_steps(steps, log_every, expected):
    loss_fn, params, data = problem()
    config = dataclasses.replace(CONFIG, steps=steps, log_every=log_every)
    result = fit(loss_fn, params, data, config=config, key=RUN_KEY, snapshot_every=20,
                 progress=False, devices=ONE)
    snapshots = result.snapshots
    assert snapshots.steps.tolist() == expected
    assert result.history["step"] == list(range(steps)), "snapshots change no step"
    for tree in (snapshots.params, snapshots.ema_params):
        assert jax.tree.map(np.shape, tree) == {"w": (len(expected), 4, 2), "b": (len(expected), 2)}
    # Copies, no arithmetic: the first snapshot is the initial parameters and the last the
    # returned ones, exactly.
    assert_tree_allclose(jax.tree.map(lambda s: s[0], snapshots.params), params, rtol=0, atol=0)
    assert_tree_allclose(jax.tree.map(lambda s: s[0], snapshots.ema_params), params, rtol=0, atol=0)
    assert_tree_allclose(jax.tree.map(lambda s: s[-1], snapshots.params), result.params,
                         rtol=0, atol=0)
    assert_tree_allclose(jax.tree.map(lambda s: s[-1], snapshots.ema_params), result.ema_params,
                         rtol=0, atol=0)
    # A snapshot at step n is the state of a run stopped at n (another compiled program:
    # float32 fusion may differ by a few ulps).
    for i, n in enumerate(expected[1:-1], start=1):
        shorter = fit(loss_fn, params, data, config=dataclasses.replace(config, steps=n),
                      key=RUN_KEY, progress=False, devices=ONE)
        assert_tree_allclose(jax.tree.map(lambda s, i=i: s[i], snapshots.params), shorter.params,
                             rtol=1e-6, atol=1e-7)
        assert_tree_allclose(jax.tree.map(lambda s, i=i: s[i], snapshots.ema_params),
                             shorter.ema_params, rtol=1e-6, atol=1e-7)
    no_snapshots = fit(loss_fn, params, data, config=config, key=RUN_KEY, progress=False,
                       devices=ONE)
    assert no_snapshots.snapshots is None
    assert_tree_allclose(no_snapshots.params, result.params, rtol=0, atol=0)


def test_bad_config_raises():
    loss_fn, params, data = problem()
    with pytest.raises(ValueError, match="batch_size"):
        fit(loss_fn, params, data, config=TrainConfig(batch_size=1000), key=RUN_KEY, progress=False)
    with pytest.raises(ValueError, match="steps"):
        fit(loss_fn, params, data, config=TrainConfig(steps=0, batch_size=8), key=RUN_KEY, progress=False)
    with pytest.raises(ValueError, match="workdir"):
        fit(loss_fn, params, data, config=TrainConfig(checkpoint_every=5, batch_size=8), key=RUN_KEY,
            progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    loss_fn, params, data = problem()
    single = fit(loss_fn, params, data, config=CONFIG, key=RUN_KEY, progress=False)
    port = _free_port()
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "train_problem.py"), "multihost",
                               str(port), str(i), str(tmp_path / f"p{i}.npz")], env=env)
             for i in range(2)]
    for proc in procs:
        assert proc.wait(timeout=240) == 0
    for i in range(2):
        out = np.load(tmp_path / f"p{i}.npz")
        assert int(out["devices"]) == 4 and int(out["local"]) == 2, "2 processes × 2 local devices"
        np.testing.assert_allclose(out["loss"], single.history["loss"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(out["w"], np.asarray(single.params["w"]), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------
# A run never calls a bad state good: non-finite updates, foreign or changed runs, damaged
# checkpoints, a full disk, bad arguments. Tiny runs on one device: 8 steps per epoch.

FAST = dataclasses.replace(CONFIG, steps=12, log_every=4, checkpoint_every=4)
ONE = jax.devices()[:1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workdir trained by ``FAST`` (checkpoints 4, 8, 12): each test works on a copy."""
    workdir = tmp_path_factory.mktemp("trained")
    loss_fn, params, data = problem()
    fit(loss_fn, params, data, config=FAST, workdir=workdir, key=RUN_KEY, progress=False, devices=ONE)
    return workdir


@pytest.fixture(scope="module")
def reference_16():
    """``FAST`` run uninterrupted for 16 steps, without a workdir."""
    loss_fn, params, data = problem()
    return fit(loss_fn, params, data, config=dataclasses.replace(FAST, steps=16, checkpoint_every=0),
               key=RUN_KEY, progress=False, devices=ONE)


def _copy(trained, tmp_path):
    return pathlib.Path(shutil.copytree(trained, tmp_path / "run"))


def _steps_on_disk(workdir):
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _restore(workdir, params, step, optimizer=None):
    template = init_state(params, optimizer or make_optimizer(FAST))
    checkpointer = Checkpointer(workdir / "checkpoints")
    try:
        return checkpointer.restore(template, step)
    finally:
        checkpointer.close()


def _first_seen_at(step, config=FAST):
    """An example whose first batch is ``step`` (each epoch is a permutation of 256 examples)."""
    data_key = jax.random.split(RUN_KEY)[0]
    return int(batch_indices(jnp.asarray(step), num_examples=256, batch_size=config.batch_size,
                             key=data_key)[0])


@pytest.mark.parametrize("kind", ["loss", "gradient", "parameters", "optimizer state"])
def test_first_non_finite_update_is_named_and_the_kept_checkpoint_is_finite(tmp_path, kind):
    _, params, (x, y) = problem()
    # Step 6 lies inside the jitted chunk [4, 8); the checkpoint of step 4 precedes it.
    flag = np.zeros(256, np.float32)
    flag[_first_seen_at(6)] = 1.0
    config, optimizer = FAST, None
    if kind == "optimizer state":
        config = dataclasses.replace(FAST, grad_clip=0.0)  # unclipped, g² overflows Adam's ν

    def loss_fn(p, batch, key):
        xb, yb, fb = batch
        residual = xb @ p["w"] + p["b"][None, :] - yb
        if kind == "gradient":  # a finite loss whose gradient is NaN
            residual = nan_gradient_where(fb, residual)
        losses = jnp.sum(residual**2, axis=-1)
        if kind == "loss":  # a NaN loss with a finite (zero) gradient
            losses = losses + jnp.where(fb > 0, jnp.nan, 0.0)
        if kind == "optimizer state":  # finite loss and gradient, but the gradient² is inf
            losses = losses + fb * 1e25 * p["b"][0]
        return losses

    if kind == "parameters":  # finite loss and gradient, an infinite update from step 6 on
        optimizer = optax.chain(optax.sgd(0.03),
                                optax.scale_by_schedule(lambda n: jnp.where(n >= 6, jnp.inf, 1.0)))
    with pytest.raises(NonFiniteLossError, match=rf"non-finite {kind} at step 6\b") as caught:
        fit(loss_fn, params, (x, y, flag), config=config, workdir=tmp_path, key=RUN_KEY, progress=False,
            optimizer=optimizer, devices=ONE)
    error = caught.value
    assert isinstance(error, NonFiniteTrainingError)
    assert (error.step, error.non_finite[0], error.last_good_step) == (6, kind, 4)
    assert f"last good checkpoint: step 4 in {tmp_path}" in str(error)
    assert _steps_on_disk(tmp_path) == [4], "nothing is saved from the bad step on"
    kept = _restore(tmp_path, params, 4, optimizer or make_optimizer(config))
    assert int(kept.step) == 4 and int(kept.bad_step) == -1
    assert bool(all_finite(kept)), "the last good checkpoint holds finite parameters and state"


@pytest.mark.parametrize("other", ["shapes", "structure"])
@pytest.mark.parametrize("with_record", [True, False])
def test_another_models_checkpoint_is_refused_naming_the_first_mismatch(
        trained, tmp_path, other, with_record):
    workdir = _copy(trained, tmp_path)
    loss_fn, params, data = problem()
    if not with_record:  # a workdir from before run records: the checkpoint itself is checked
        (workdir / "train_config.json").unlink()
    if other == "shapes":
        foreign, expected = {"w": jnp.zeros((4, 2)), "b": jnp.zeros((5,))}, "params.b has shape (2,)"
    else:
        foreign, expected = {"layer": {"kernel": jnp.zeros((4, 2))}}, "params.layer.kernel"
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointMismatchError) as caught:
            fit(loss_fn, foreign, data, config=dataclasses.replace(FAST, steps=16), workdir=workdir,
                key=RUN_KEY, progress=False, devices=ONE)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert str(workdir) in message and expected in message, message
    assert ("(5,)" if other == "shapes" else "params.b (2,)") in message, message
    assert len(message) < 600 and caught.value.__cause__ is None, "one clear line, no orbax trace"
    assert with_record or any("train_config.json" in str(w.message) for w in warned)


@pytest.mark.parametrize("change, listed", [
    (dict(learning_rate=1e-2), ["learning_rate: 0.03 in the workdir, 0.01 now"]),
    (dict(batch_size=16, ema_decay=0.5), ["batch_size: 32", "ema_decay: 0.9"]),
    (dict(steps=8), ["steps: 8 now, below step 12"]),
    (dict(grad_clip=0.0), ["grad_clip: 1.0 in the workdir, 0.0 now"]),
])
def test_changed_config_is_refused_listing_the_fields(trained, tmp_path, change, listed):
    workdir = _copy(trained, tmp_path)
    loss_fn, params, data = problem()
    with pytest.raises(CheckpointMismatchError, match=str(workdir)) as caught:
        fit(loss_fn, params, data, config=dataclasses.replace(FAST, **change), workdir=workdir,
            key=RUN_KEY, progress=False, devices=ONE)
    for text in listed:
        assert text in str(caught.value), str(caught.value)
    untouched = set(dataclasses.asdict(FAST)) - set(change)
    assert not any(f"{name}:" in str(caught.value) for name in untouched)


def test_other_data_is_refused_but_more_steps_resume_exactly(trained, reference_16, tmp_path):
    workdir = _copy(trained, tmp_path)
    loss_fn, params, (x, y) = problem()
    with pytest.raises(CheckpointMismatchError, match=r"data: data\[0\] \(256, 4\)"):
        fit(loss_fn, params, (x[:200], y[:200]), config=FAST, workdir=workdir, key=RUN_KEY, progress=False,
            devices=ONE)
    # More steps, logged and saved at another rhythm: the same run, continued.
    longer = dataclasses.replace(FAST, steps=16, log_every=2, checkpoint_every=8)
    resumed = fit(loss_fn, params, (x, y), config=longer, workdir=workdir, key=RUN_KEY, progress=False,
                  devices=ONE)
    assert resumed.history["step"] == list(range(12, 16))
    assert_tree_allclose(resumed.params, reference_16.params, rtol=0, atol=1e-6)


def test_a_resumed_run_snapshots_and_saves_on_exact_steps(trained, reference_16, tmp_path):
    """Resumed at step 12 with chunks of 8 steps: the first chunk stops at 16, so snapshots and
    checkpoints fall on multiples of 8, and the snapshot of step 16 is the uninterrupted run's."""
    workdir = _copy(trained, tmp_path)
    loss_fn, params, data = problem()
    longer = dataclasses.replace(FAST, steps=24, log_every=8, checkpoint_every=8)
    resumed = fit(loss_fn, params, data, config=longer, key=RUN_KEY, snapshot_every=8,
                  workdir=workdir, progress=False, devices=ONE)
    assert resumed.history["step"] == list(range(12, 24))
    assert resumed.snapshots.steps.tolist() == [16, 24]
    assert 16 in _steps_on_disk(workdir) and 24 in _steps_on_disk(workdir)
    assert_tree_allclose(jax.tree.map(lambda s: s[0], resumed.snapshots.params),
                         reference_16.params, rtol=0, atol=1e-6)
    assert_tree_allclose(jax.tree.map(lambda s: s[-1], resumed.snapshots.params), resumed.params,
                         rtol=0, atol=0)


def test_another_key_is_refused_on_resume(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    loss_fn, params, data = problem()
    with pytest.raises(CheckpointMismatchError) as caught:
        fit(loss_fn, params, data, config=dataclasses.replace(FAST, steps=16),
            key=jax.random.key(4), workdir=workdir, progress=False, devices=ONE)
    assert ("key: threefry2x32 key with data [0, 3] in the workdir, threefry2x32 key with data "
            "[0, 4] now") in str(caught.value)
    assert _steps_on_disk(workdir) == [4, 8, 12], "nothing trained or saved"


# orbax leaves tensorstore callbacks of the failed reads to a closed event loop.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_damaged_newest_checkpoints_fall_back_to_the_newest_intact_one(trained, reference_16,
                                                                      tmp_path):
    workdir = _copy(trained, tmp_path)
    loss_fn, params, data = problem()
    for path in (workdir / "checkpoints" / "12").rglob("*"):  # every file cut in half
        if path.is_file():
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for path in (workdir / "checkpoints" / "8").rglob("*"):  # the array data deleted
        if path.is_file() and path.parent.name == "d":
            path.unlink()
    with pytest.warns(UserWarning, match=r"step 12 .* damaged.*step 8 .* damaged.*"
                                         r"newest intact checkpoint, step 4"):
        resumed = fit(loss_fn, params, data, config=dataclasses.replace(FAST, steps=16),
                      workdir=workdir, key=RUN_KEY, progress=False, devices=ONE)
    assert resumed.history["step"] == list(range(4, 16)), "resumed from step 4"
    assert_tree_allclose(resumed.params, reference_16.params, rtol=0, atol=1e-6)
    assert _steps_on_disk(workdir) == [8, 12, 16]
    for step in (8, 12):
        assert int(_restore(workdir, params, step).step) == step, "damaged steps are rewritten"


def test_disk_full_raises_naming_the_workdir_and_older_checkpoints_restore(trained, tmp_path,
                                                                           monkeypatch):
    workdir = _copy(trained, tmp_path)
    loss_fn, params, data = problem()
    write = ocp.StandardCheckpointHandler.async_save

    async def full_disk_at_step_16(self, directory, *args, **kwargs):
        if pathlib.Path(directory).parent.name.startswith("16."):
            (pathlib.Path(directory) / "partial").write_bytes(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return await write(self, directory, *args, **kwargs)

    monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", full_disk_at_step_16)
    longer = dataclasses.replace(FAST, steps=16)
    with pytest.raises(CheckpointWriteError) as caught:
        fit(loss_fn, params, data, config=longer, workdir=workdir, key=RUN_KEY, progress=False, devices=ONE)
    error = caught.value
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC
    assert str(workdir) in str(error) and "step 16" in str(error) and "[4, 8, 12]" in str(error)
    assert _steps_on_disk(workdir) == [4, 8, 12]
    for step in (4, 8, 12):
        kept = _restore(workdir, params, step)
        assert int(kept.step) == step and bool(all_finite(kept))
    monkeypatch.undo()  # space freed: the same call resumes from step 12 and finishes
    resumed = fit(loss_fn, params, data, config=longer, workdir=workdir, key=RUN_KEY, progress=False,
                  devices=ONE)
    assert resumed.history["step"] == list(range(12, 16)) and _steps_on_disk(workdir) == [8, 12, 16]


def test_checkpointer_refuses_another_tree_and_bad_arguments(tmp_path):
    checkpointer = Checkpointer(tmp_path / "c")
    checkpointer.save(3, {"a": jnp.ones((2, 3))})
    with pytest.raises(CheckpointMismatchError, match=r"a has shape \(2, 3\) in the checkpoint but "
                                                      r"shape \(3, 2\) is expected"):
        checkpointer.restore({"a": jnp.ones((3, 2))})
    with pytest.raises(FileNotFoundError, match=r"no checkpoint of step 4 .* steps: \[3\]"):
        checkpointer.restore({"a": jnp.ones((2, 3))}, 4)
    with pytest.raises(ValueError, match="step must be a non-negative integer, got -1"):
        checkpointer.save(-1, {"a": jnp.ones(2)})
    with pytest.raises(TypeError, match="step must be a non-negative integer, got '3'"):
        checkpointer.restore({"a": jnp.ones((2, 3))}, "3")
    checkpointer.close()
    with pytest.raises(ValueError, match=r"max_to_keep must be an integer in \[1, \d+\]; got 0"):
        Checkpointer(tmp_path / "d", max_to_keep=0)
    with pytest.raises(TypeError, match="directory must be a str or a path"):
        Checkpointer(3)


def _bad_calls():
    """``{name: (call, error type, regex of the message)}`` for invalid arguments."""
    loss_fn, params, (x, y) = problem()
    ok = dict(config=dataclasses.replace(CONFIG, steps=2), key=RUN_KEY, progress=False)
    calls = [
        (lambda: TrainConfig(learning_rate=float("nan")), ValueError,
         r"TrainConfig\.learning_rate must be a finite real number > 0; got nan"),
        (lambda: TrainConfig(learning_rate="1e-3"), TypeError, r"TrainConfig\.learning_rate"),
        (lambda: TrainConfig(steps=10.0), TypeError, r"TrainConfig\.steps must be an integer in \[1, "),
        (lambda: TrainConfig(batch_size=True), TypeError, r"TrainConfig\.batch_size"),
        (lambda: TrainConfig(ema_decay=1.0), ValueError,
         r"TrainConfig\.ema_decay must be a finite real number in \[0, 1\)"),
        (lambda: TrainConfig(grad_clip=float("inf")), ValueError, r"TrainConfig\.grad_clip .*finite"),
        (lambda: TrainConfig(checkpoint_every=-1), ValueError, r"TrainConfig\.checkpoint_every must be"),
        (lambda: fit(loss_fn, params, (x[:0], y[:0]), **ok), ValueError, "data holds 0 examples"),
        (lambda: fit(loss_fn, params, (x, y[:100]), **ok), ValueError,
         r"leading \(example\) dimension, got data\[0\]: 256, data\[1\]: 100"),
        (lambda: fit(loss_fn, params, (x, 1.0), **ok), ValueError, r"data\[1\] is a scalar"),
        (lambda: fit(loss_fn, params, (), **ok), ValueError, "data must hold at least one array"),
        (lambda: fit(loss_fn, {**params, "b": jnp.full(2, jnp.nan)}, (x, y), **ok), ValueError,
         r"params\['b'\] holds NaN or infinite values"),
        (lambda: fit(loss_fn, {**params, "n": jnp.arange(2)}, (x, y), **ok), TypeError,
         r"params\['n'\] has dtype int32"),
        (lambda: fit(loss_fn, {}, (x, y), **ok), ValueError, "params must hold at least one array"),
        (lambda: fit("loss", params, (x, y), **ok), TypeError, "loss_fn must be callable"),
        (lambda: fit(loss_fn, params, (x, y), config={"steps": 2}, key=RUN_KEY), TypeError,
         "config must be a TrainConfig"),
        (lambda: fit(loss_fn, params, (x, y), config=CONFIG, key=RUN_KEY, workdir=3), TypeError,
         "workdir must be"),
        (lambda: fit(loss_fn, params, (x, y), config=CONFIG, key=RUN_KEY, devices=[]), ValueError,
         "devices must be None"),
        (lambda: fit(loss_fn, params, (x, y), config=CONFIG, key=RUN_KEY, progress="yes"),
         TypeError, "progress must be a bool"),
        # The run's randomness comes from a key, required and checked.
        (lambda: fit(loss_fn, params, (x, y), config=CONFIG), TypeError,
         "missing 1 required keyword-only argument: 'key'"),
        (lambda: fit(loss_fn, params, (x, y), config=CONFIG, key=3), TypeError,
         r"key must be a JAX PRNG key \(jax.random.key\(seed\)\); got 3"),
        (lambda: fit(loss_fn, params, (x, y), config=CONFIG, key=None), TypeError,
         "key must be a JAX PRNG key"),
        (lambda: fit(loss_fn, params, (x, y), config=CONFIG, key=jax.random.split(RUN_KEY)),
         ValueError, r"key must be a single PRNG key .* shape \(2,\)"),
        (lambda: fit(loss_fn, params, (x, y), config=CONFIG, key=RUN_KEY, snapshot_every=0),
         ValueError, r"snapshot_every must be an integer in \[1, "),
        (lambda: fit(loss_fn, params, (x, y), config=CONFIG, key=RUN_KEY, snapshot_every=2.0),
         TypeError, "snapshot_every must be an integer"),
        # Non-finite data is refused before the first step, naming the leaf.
        (lambda: fit(loss_fn, params, (x, jnp.asarray(y).at[3, 1].set(jnp.inf)), **ok), ValueError,
         r"data\[1\] holds NaN or infinite values"),
        (lambda: fit(loss_fn, params, (x > 0, y), **ok), TypeError,
         r"data\[0\] must be an array of real numbers .* got dtype bool"),
        (lambda: fit(loss_fn, params, (x.astype(jnp.complex64), y), **ok), TypeError,
         r"data\[0\] must be an array of real numbers"),
        (lambda: TrainConfig(steps=2**31), ValueError, r"TrainConfig\.steps must be an integer in"),
        (lambda: TrainConfig(grad_clip=-0.5), ValueError, r"TrainConfig\.grad_clip .* ≥ 0"),
        (lambda: make_optimizer(None), TypeError, "config must be a TrainConfig"),
        (lambda: init_state(params, None), TypeError, "optimizer must be an optax"),
        (lambda: make_train_step(loss_fn, 3, **STEP), TypeError, "optimizer must be an optax"),
        (lambda: make_train_step(None, OPTIMIZER, **STEP), TypeError, "loss_fn must be callable"),
        (lambda: make_train_step(loss_fn, OPTIMIZER, **{**STEP, "batch_size": 200}), ValueError,
         r"batch_size must be an integer in \[1, 100\]"),
        (lambda: make_train_step(loss_fn, OPTIMIZER, **{**STEP, "num_examples": 2.5}), TypeError,
         "num_examples must be an integer"),
        (lambda: make_train_step(loss_fn, OPTIMIZER, **{**STEP, "ema_decay": 1.0}), ValueError,
         r"ema_decay must be a finite real number in \[0, 1\)"),
        (lambda: batch_indices(1, num_examples=10**12, batch_size=4, key=KEY), ValueError,
         "num_examples must be an integer in"),
        (lambda: batch_indices(1, num_examples=10, batch_size=0, key=KEY), ValueError,
         r"batch_size must be an integer in \[1, 10\]"),
        (lambda: batch_indices(1, num_examples=10, batch_size=4, key=0), TypeError,
         "key must be a JAX PRNG key"),
        (lambda: batch_indices(-1, num_examples=10, batch_size=4, key=KEY), ValueError,
         "step must be an integer"),
        (lambda: data_mesh(3), TypeError, "devices must be None"),
        (lambda: put_replicated({"w": jnp.ones(2)}, 3), TypeError, "mesh must be a jax.sharding.Mesh"),
    ]
    # Test ids from the expected messages, e.g. "TrainConfig_learning_rate_must_be_a".
    return {re.sub(r"\W+", "_", message).strip("_")[:36] + f"-{i}": (call, error, message)
            for i, (call, error, message) in enumerate(calls)}


KEY = jax.random.key(0)
OPTIMIZER = optax.sgd(0.1)
STEP = dict(num_examples=100, batch_size=10, ema_decay=0.9)
BAD_CALLS = _bad_calls()


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_arguments_raise_naming_the_argument_and_its_range(name):
    call, error, message = BAD_CALLS[name]
    with pytest.raises(error, match=message):
        call()


def test_workdir_that_is_a_file_is_refused(tmp_path):
    loss_fn, params, data = problem()
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=rf"workdir {tmp_path / 'file'} exists and is not a folder"):
        fit(loss_fn, params, data, config=CONFIG, workdir=tmp_path / "file", key=RUN_KEY, progress=False)
