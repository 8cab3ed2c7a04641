"""Every benchmark result records the machine it was measured on."""

import json
import os
import types

import jax

import benchmarks
from benchmarks.__main__ import main


def test_results_carry_cores_load_platform_and_devices(tmp_path, monkeypatch):
    fake = types.SimpleNamespace(run=lambda quick=False: {"baseline": "none", "x_ratio": 2.0})
    monkeypatch.setattr(benchmarks, "names", lambda: ["fake"])
    monkeypatch.setattr(benchmarks, "load", lambda name: fake)
    assert main(["fake", "--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "fake.json").read_text())
    assert result["x_ratio"] == 2.0 and result["quick"] is True
    machine = result["machine"]
    assert machine["cpu_count"] == os.cpu_count()
    for key in ("load_average", "load_average_after"):
        assert len(machine[key]) == 3 and all(v >= 0 for v in machine[key])
    assert machine["platform"] and machine["jax"] == jax.__version__
    assert machine["devices"] == [str(d) for d in jax.devices()]
    assert machine["backend"] == jax.default_backend()
