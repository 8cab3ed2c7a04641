"""Sampling under ``jax.distributed``: two local CPU processes with 2 devices each share one
4-device mesh, each places only its own rows of the batch, and the samplers return the same
numbers as one process on one device, still split across the two processes.

Run as a script (``worker PORT PROCESS_ID OUT``) this file is one of the two processes; the
test starts both, as ``tests/test_train.py`` does for training, and compares what they save
with the single-device result computed here.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

PROCESSES = 2
LOCAL_DEVICES = 2
B = 8  # 2 rows per device
FLOAT_TOL = dict(rtol=1e-5, atol=1e-6)  # float32, the same arithmetic per row
SKIP_CODE = 77  # the worker's exit code when this platform cannot start a multi-process run


# --------------------------------------------------------------- the computations, shared


def _halve(x, t):
    return 0.5 * x


def _contract(x, t):
    return -x / (1.0 + t)


def _inputs():
    """Host inputs, identical in every process: the batch, the times, the gravity sources."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, 3)).astype(np.float32)
    t = np.linspace(0.1, 1.0, B, dtype=np.float32)
    data = rng.normal(size=(5, 3)).astype(np.float32)
    return x, t, data


def _compute(x, t, data):
    """The three results compared: ``udm.sample`` (hot, noisy steps), ``odes.generate``
    (adaptive Tsit5, whose step size is shared by the whole batch, so across processes) and
    the exact gravity field."""
    import jax

    from diffusionlab import odes, udm
    from diffusionlab.odes import gravity

    process = udm.HotDiffusion(T=6, event_shape=(3,))
    sample = udm.sample(process, _halve, x, key=jax.random.key(1))
    generated = odes.generate(_contract, x, 2.0, t_end=0.2, solver="tsit5")
    field = gravity.velocity(x, t, data)
    return {"sample": sample, "generate": generated.samples, "nfe": generated.nfe,
            "gravity": field}


def worker(port: int, process_id: int, out: str) -> None:
    """One process: joins the run, splits the batch over the global mesh, saves what it sees."""
    import jax
    from jax.experimental import multihost_utils
    from jax.sharding import NamedSharding, PartitionSpec

    from diffusionlab.train import initialize_distributed
    from diffusionlab.train.sharding import data_mesh, to_host

    try:
        initialize_distributed(f"127.0.0.1:{port}", num_processes=PROCESSES,
                               process_id=process_id)
        jax.devices()
    except Exception as error:  # the platform, not the samplers: the test skips
        with open(out + ".skip", "w") as f:
            f.write(f"{type(error).__name__}: {error}")
        raise SystemExit(SKIP_CODE) from error
    mesh = data_mesh()
    split = NamedSharding(mesh, PartitionSpec("data"))
    x, t, data = _inputs()

    def place(host):  # each process hands over only the rows its own devices hold
        return jax.make_array_from_callback(host.shape, split, lambda index: host[index])

    results = _compute(place(x), place(t), data)
    saved = {"devices": len(jax.devices()), "local": len(jax.local_devices()),
             "nfe": int(to_host(results.pop("nfe")))}  # one count, replicated
    for name, value in results.items():
        saved[name] = multihost_utils.process_allgather(value, tiled=True)
        saved[name + "_fully_addressable"] = value.is_fully_addressable
        saved[name + "_split"] = value.sharding.is_equivalent_to(split, value.ndim)
        # The rows this process holds, and what they contain.
        rows = sorted({s.index[0].indices(B)[:2] for s in value.addressable_shards})
        saved[name + "_rows"] = np.asarray(rows)
        saved[name + "_local"] = np.concatenate(
            [np.asarray(s.data) for s in sorted(value.addressable_shards,
                                                 key=lambda s: s.index[0].indices(B)[0])])
    np.savez(out, **saved)


# ------------------------------------------------------------------------------- the test


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_sample_like_one_device(tmp_path):
    import jax

    try:
        port = _free_port()
    except OSError as error:
        pytest.skip(f"no local TCP port for the coordinator: {error}")
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "",
                   os.environ.get("XLA_FLAGS", ""))
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={LOCAL_DEVICES}".strip()}
    outs = [str(tmp_path / f"p{i}.npz") for i in range(PROCESSES)]
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "worker", str(port),
                               str(i), outs[i]], env=env) for i in range(PROCESSES)]
    one = jax.devices()[0]
    x, t, data = _inputs()
    expected = _compute(jax.device_put(x, one), jax.device_put(t, one), data)
    codes = [proc.wait(timeout=240) for proc in procs]
    if SKIP_CODE in codes:
        reason = open(outs[codes.index(SKIP_CODE)] + ".skip").read()
        pytest.skip(f"this platform cannot run two CPU processes under jax.distributed: {reason}")
    assert codes == [0] * PROCESSES

    row_sets = []
    for out in outs:
        saved = np.load(out)
        assert int(saved["devices"]) == PROCESSES * LOCAL_DEVICES
        assert int(saved["local"]) == LOCAL_DEVICES
        assert int(saved["nfe"]) == int(expected["nfe"])
        for name in ("sample", "generate", "gravity"):
            reference = np.asarray(expected[name])
            np.testing.assert_allclose(saved[name], reference, **FLOAT_TOL, err_msg=name)
            # Still split: this process holds 2 shards of 2 rows each, half the batch.
            assert not bool(saved[name + "_fully_addressable"]), name
            assert bool(saved[name + "_split"]), name  # laid out as P("data") on the mesh
            rows = saved[name + "_rows"]
            assert rows.shape == (LOCAL_DEVICES, 2) and np.all(rows[:, 1] - rows[:, 0] == 2), rows
            local = np.concatenate([reference[a:b] for a, b in rows])
            np.testing.assert_allclose(saved[name + "_local"], local, **FLOAT_TOL, err_msg=name)
            row_sets.append((name, frozenset(map(tuple, rows))))
    assert np.std(np.asarray(expected["sample"])) > 0.1  # the sample is not trivial
    # The two processes hold disjoint halves that together cover the batch.
    for name in ("sample", "generate", "gravity"):
        first, second = [rows for n, rows in row_sets if n == name]
        assert not first & second
        assert sorted(a for a, _ in first | second) == list(range(0, B, 2))


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"]:
        raise SystemExit(f"usage: {sys.argv[0]} worker PORT PROCESS_ID OUT")
    worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
