"""Every registered experiment runs at quick size and writes its artefacts."""

import json

import pytest

import experiments
from experiments import report


@pytest.mark.parametrize("name", experiments.names())
def test_quick_run_writes_results(name, tmp_path):
    module = experiments.load(name)
    assert module.Config.quick() != module.Config(), "quick() must differ from the default"
    payload = experiments.run(name, quick=True, results=tmp_path)
    out = tmp_path / name
    assert (out / "metrics.json").exists()
    assert json.loads((out / "metrics.json").read_text())["name"] == name
    assert list(out.glob("*.png")), "an experiment draws at least one figure"
    assert list(out.glob("*.md")), "an experiment writes at least one Markdown table"
    assert payload["quick"] is True
    text = report.write(tmp_path).read_text()
    assert f"## {name}" in text


def test_unknown_experiment_exits_2(capsys):
    from experiments.__main__ import main

    assert main(["no_such_experiment"]) == 2
    assert "valid" in capsys.readouterr().err
