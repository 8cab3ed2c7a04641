"""``python -m experiments --all --quick`` end to end, through the real entry point.

One run of the whole path, as one test so that it runs once: every experiment in its own
process, a deliberately failing and a deliberately crashing experiment beside them, the report
written regardless, and a second run that resumes (skips everything current, reruns what
failed).
"""

import ast
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest
from conftest import ONE_DEVICE_XLA_FLAGS

import experiments

REPO = pathlib.Path(__file__).resolve().parent.parent

_BROKEN = {
    "zz_raises": 'raise RuntimeError("deliberate failure for the runner test")',
    "zz_crashes": "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",
}


def _write_broken_experiments(folder: pathlib.Path) -> None:
    folder.mkdir()
    for name, body in _BROKEN.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(f'''
            import dataclasses
            TITLE = "{name}"

            @dataclasses.dataclass(frozen=True)
            class Config:
                size: int = 2

                @classmethod
                def quick(cls):
                    return cls(size=1)

            def run(config, out):
                print("started", flush=True)
                {body}
            '''))


def _run_all(results: pathlib.Path, extra: pathlib.Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, DIFFUSIONLAB_EXPERIMENTS_PATH=str(extra),
               XLA_FLAGS=ONE_DEVICE_XLA_FLAGS)
    return subprocess.run(
        [sys.executable, "-m", "experiments", "--all", "--quick", "--jobs", "2",
         "--results", str(results)],
        cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=3600,
    )


def test_all_quick_end_to_end(tmp_path):
    """One test, so that the whole --all path runs once whatever the xdist scheduling."""
    extra = tmp_path / "extra"
    _write_broken_experiments(extra)
    results = tmp_path / "results"
    first = _run_all(results, extra)
    _check_every_experiment_ran_and_reported(results, first)
    _check_failures_are_reported(results)
    _check_second_run_resumes(results, extra)


def _check_every_experiment_ran_and_reported(results, first):
    from experiments import _runner

    assert first.returncode == 1, first.stdout + first.stderr  # two broken experiments
    groups = _runner.core_groups(2)
    for name in experiments.names():
        out = results / name
        record = json.loads((out / "run.json").read_text())
        assert record["status"] == "ok", f"{name}: {record.get('error')}"
        # every thread's CPU time over the run, and the machine it shared
        assert record["cpu_seconds"] > 0 and record["cores"] >= 1, (name, record)
        assert 0 < record["seconds"] <= record["finished"] - record["started"] + 1.0, record
        # Beside another run (--jobs 2), pinned to its half of the CPUs where they split.
        if groups is not None and not _runner.runs_alone(name):
            assert frozenset(record["cpus_allowed"]) in groups, (name, record)
        payload = json.loads((out / "metrics.json").read_text())
        assert payload["name"] == name and payload["quick"] is True
        assert list(out.glob("*.png")), f"{name} draws at least one figure"
        assert list(out.glob("*.md")), f"{name} writes at least one Markdown table"
        for claim in payload["claims"]:
            assert claim["verdict"] in ("holds", "fails", "undecided"), (name, claim)
            assert claim["rule"] and claim["reason"], (name, claim)
    text = (results / "REPORT.md").read_text()
    assert text.index("## Summary") < text.index(f"## {experiments.names()[0]}:")
    assert re.search(r"\*\*\d+ claims: \d+ hold, \d+ fail, \d+ undecided\.\*\*", text)
    for name in experiments.names():
        assert f"## {name}:" in text
    assert "## Wall time" in text
    assert "They overlapped (several ran at once, `--jobs`)" in text  # --jobs 2


def _check_failures_are_reported(results):
    text = (results / "REPORT.md").read_text()
    assert "failed: [zz_crashes](#zz_crashes), [zz_raises](#zz_raises)" in text
    raised = json.loads((results / "zz_raises" / "run.json").read_text())
    assert raised["status"] == "failed"
    assert raised["error"] == "RuntimeError: deliberate failure for the runner test"
    crashed = json.loads((results / "zz_crashes" / "run.json").read_text())
    assert crashed["status"] == "failed" and "SIGSEGV" in crashed["error"]
    assert "started" in (results / "zz_crashes" / "log.txt").read_text()
    assert "Log: [zz_raises/log.txt](zz_raises/log.txt)" in text


def _check_second_run_resumes(results, extra):
    second = _run_all(results, extra)
    assert second.returncode == 1
    for name in experiments.names():
        assert f"[{name}] results are current; skipped" in second.stdout
    for name in _BROKEN:
        assert f"[{name}] running" in second.stdout
    assert (results / "REPORT.md").exists()


def test_quick_differs_from_default():
    for name in experiments.names():
        module = experiments.load(name)
        assert module.Config.quick() != module.Config(), f"{name}: quick() must differ"


def test_unknown_experiment_exits_2(capsys):
    from experiments.__main__ import main

    assert main(["no_such_experiment"]) == 2
    assert "valid" in capsys.readouterr().err


def test_bad_jobs_exits_2(capsys):
    from experiments.__main__ import main

    assert main(["--all", "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err


def test_no_experiment_passes_a_literal_verdict():
    """Verdicts are decided from replicates: no literal True/False reaches ``out.claim``."""
    offenders = []
    for path in sorted((REPO / "experiments").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "claim"):
                continue
            for keyword in node.keywords:
                if keyword.arg in ("holds", "verdict") and isinstance(keyword.value, ast.Constant):
                    offenders.append(f"{path.name}:{node.lineno} {keyword.arg}={keyword.value.value!r}")
                if keyword.arg == "holds":
                    offenders.append(f"{path.name}:{node.lineno} uses the boolean holds=")
    assert not offenders, offenders


def test_fingerprint_marks_files_changed_during_a_run(tmp_path):
    """A file edited after the run started is never taken as the run's code."""
    import time

    from experiments import _runner

    name = "experiments/_runner.py"
    mtime = (REPO / name).stat().st_mtime
    before = _runner.fingerprint([name], quick=True, since=mtime - 1.0)
    after = _runner.fingerprint([name], quick=True, since=mtime + 1.0)
    assert before["files"][name] == _runner.MODIFIED
    assert after["files"][name] == _runner.fingerprint([name], quick=True)["files"][name]
    directory = tmp_path / "x"
    directory.mkdir()
    (directory / "metrics.json").write_text("{}")
    for stored, current in ((before, False), (after, True)):
        (directory / _runner.RUN_FILE).write_text(json.dumps(
            {"status": "ok", "fingerprint": stored, "finished": time.time()}))
        assert _runner.is_current(directory, quick=True) is current


def test_plan_runs_longest_first_and_timed_experiments_alone(tmp_path):
    """Order by the last run at this size, else the committed estimate; timing runs last."""
    from experiments import _runner

    names = ["sector_table", "nbce_cost", "udm_quality", "ode_1d_demo", "gravity_2d"]
    for name, seconds, quick in (("sector_table", 300.0, False), ("ode_1d_demo", 5.0, True),
                                 ("nbce_cost", 1.0, False)):
        (tmp_path / name).mkdir()
        (tmp_path / name / _runner.RUN_FILE).write_text(json.dumps(
            {"name": name, "status": "ok", "quick": quick, "seconds": seconds}))
    expected = _runner._expected_seconds(quick=False)
    together, alone = _runner.plan(names, results=tmp_path, quick=False)
    assert alone == ["nbce_cost"]
    # sector_table's own 300 s beats gravity_2d's estimate; ode_1d_demo's run was quick,
    # so its default estimate counts.
    lengths = {"sector_table": 300.0, **{n: expected[n] for n in
                                          ("udm_quality", "ode_1d_demo", "gravity_2d")}}
    assert together == sorted(lengths, key=lengths.get, reverse=True)
    assert together[0] == "udm_quality"
    assert set(expected) == set(experiments.names())
    assert set(_runner._expected_seconds(quick=True)) == set(experiments.names())


def test_runs_alone_reads_the_module_flag():
    from experiments import _runner

    assert _runner.runs_alone("nbce_cost") is True
    assert _runner.runs_alone("sector_table") is False
    with pytest.raises(ValueError, match="unknown experiment"):
        _runner.runs_alone("no_such_experiment")


def test_sharing_runs_do_not_preallocate_an_accelerator(tmp_path, monkeypatch):
    """Experiments that run at once share a GPU's memory instead of each taking 75 %."""
    from experiments import _runner

    seen = []

    def fake_run(command, *, env, **kwargs):
        seen.append(env.get("XLA_PYTHON_CLIENT_PREALLOCATE"))
        return subprocess.CompletedProcess(command, -9)

    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    monkeypatch.setattr(_runner.subprocess, "run", fake_run)
    shared = _runner.run_isolated("sector_table", quick=True, results=tmp_path, sharing=True)
    alone = _runner.run_isolated("sector_table", quick=True, results=tmp_path, sharing=False)
    assert seen == ["false", None]
    assert shared.status == alone.status == "failed" and "SIGKILL" in alone.error


@pytest.mark.parametrize(("cpus", "jobs", "sizes"), [
    (range(16), 3, [6, 5, 5]), (range(2), 2, [1, 1]), ((0, 2, 4, 6, 9), 2, [3, 2]),
    (range(4), 4, [1, 1, 1, 1])])
def test_core_groups_split_the_allowed_cpus_evenly(monkeypatch, cpus, jobs, sizes):
    """Disjoint runs of consecutive allowed CPUs that cover them, sizes within one."""
    from experiments import _runner

    monkeypatch.setattr(_runner.os, "sched_getaffinity", lambda pid: set(cpus), raising=False)
    monkeypatch.setattr(_runner.os, "sched_setaffinity", lambda pid, mask: None, raising=False)
    groups = _runner.core_groups(jobs)
    assert [len(g) for g in groups] == sizes
    assert [c for g in groups for c in sorted(g)] == sorted(cpus)


def test_core_groups_leave_runs_unpinned_where_they_cannot_be_split(monkeypatch):
    from experiments import _runner

    monkeypatch.setattr(_runner.os, "sched_getaffinity", lambda pid: {3, 5}, raising=False)
    monkeypatch.setattr(_runner.os, "sched_setaffinity", lambda pid, mask: None, raising=False)
    assert _runner.core_groups(1) is None  # one at a time: every CPU
    assert _runner.core_groups(3) is None  # more jobs than CPUs
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="jobs must be an integer >= 1"):
            _runner.core_groups(bad)
    monkeypatch.delattr(_runner.os, "sched_setaffinity")
    assert _runner.core_groups(2) is None  # no pinning on this platform (macOS)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="pinning is Linux-only")
def test_a_pinned_child_runs_on_its_cpus_and_the_runner_thread_is_restored(tmp_path):
    from experiments import _runner

    allowed = os.sched_getaffinity(0)
    one = frozenset({min(allowed)})
    outcome = _runner.run_isolated("sector_table", quick=True, results=tmp_path, cpus=one)
    assert outcome.status == "ok", outcome.error
    record = json.loads((tmp_path / "sector_table" / _runner.RUN_FILE).read_text())
    assert record["cpus_allowed"] == sorted(one)
    assert os.sched_getaffinity(0) == allowed


def test_the_runner_and_the_report_are_not_in_the_fingerprint():
    """Editing how results are run or reported reruns nothing; experiment code still counts."""
    from experiments import _runner, report  # noqa: F401 - loaded, as in every child

    loaded = _runner._repo_files_loaded()
    assert "experiments/_output.py" in loaded and "experiments/__init__.py" in loaded
    assert not set(loaded) & _runner.NOT_IN_FINGERPRINT
    assert {pathlib.Path(f).name for f in _runner.NOT_IN_FINGERPRINT} == {
        "__main__.py", "_runner.py", "report.py"}
    assert all((REPO / f).exists() for f in _runner.NOT_IN_FINGERPRINT)
