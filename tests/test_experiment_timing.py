"""The wall time of an experiment split by phase: ``Output.phase`` on a fake clock, what
``finish`` writes to ``metrics.json``, and the table at the end of ``REPORT.md``."""

import json

import pytest

from experiments import _output, _runner, report
from experiments._output import Output


class Clock:
    """A clock that moves only when told: phase sums are then exact."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(_output, "_now", clock)
    return clock


def test_phases_add_up_and_the_rest_is_other(clock, tmp_path):
    out = Output(name="demo", directory=tmp_path / "demo")
    clock.advance(1.0)  # setup: other
    with out.phase("training"):
        clock.advance(5.0)
    with out.phase("sampling"):
        clock.advance(2.0)
    with out.phase("training"):  # a second block adds to the first
        clock.advance(3.0)
    clock.advance(0.5)  # figures: other
    with out.phase("evaluation"):
        clock.advance(4.0)
    assert out.timing() == {"training": 8.0, "sampling": 2.0, "evaluation": 4.0, "other": 1.5}
    payload = out.finish({"size": 1})
    assert payload["seconds"] == 15.5
    written = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert written["timing"] == {"training": 8.0, "sampling": 2.0, "evaluation": 4.0,
                                 "other": 1.5}
    assert sum(written["timing"].values()) == pytest.approx(written["seconds"], abs=1e-9)


def test_a_nested_phase_pauses_the_outer_one(clock, tmp_path):
    out = Output(name="demo", directory=tmp_path)
    with out.phase("evaluation"):
        clock.advance(1.0)
        with out.phase("sampling"):  # e.g. an evaluation that draws its own samples
            clock.advance(6.0)
        clock.advance(2.0)
    assert out.timing() == {"training": 0.0, "sampling": 6.0, "evaluation": 3.0, "other": 0.0}


def test_an_open_phase_counts_up_to_now_and_an_error_still_closes_it(clock, tmp_path):
    out = Output(name="demo", directory=tmp_path)
    with pytest.raises(RuntimeError), out.phase("training"):
        clock.advance(2.0)
        assert out.timing()["training"] == 2.0  # still open
        raise RuntimeError("diverged")
    clock.advance(1.0)
    assert out.timing() == {"training": 2.0, "sampling": 0.0, "evaluation": 0.0, "other": 1.0}


@pytest.mark.parametrize("name", ["other", "Training", "", None])
def test_an_unknown_phase_is_refused(tmp_path, name):
    out = Output(name="demo", directory=tmp_path)
    with pytest.raises(ValueError, match="phase name must be one of"), out.phase(name):
        pass


def _fake_run(results, name, *, status, seconds, inner=None, timing=None, cpu=None,
              started=None):
    """``seconds`` in ``run.json`` (the whole child), ``inner`` in ``metrics.json`` (the
    experiment's own code, from ``Output``'s creation); ``cpu``: ``(cpu_seconds, load)``;
    ``started``: the run's Unix start time (it then finishes ``seconds`` later)."""
    directory = results / name
    directory.mkdir(parents=True)
    extra = {} if cpu is None else {"cpu_seconds": cpu[0], "load_at_start": cpu[1], "cores": 2}
    if started is not None:
        extra.update(started=started, finished=started + seconds)
    (directory / _runner.RUN_FILE).write_text(
        json.dumps({"name": name, "status": status, "seconds": seconds, **extra}))
    if status == "ok":
        (directory / "metrics.json").write_text(json.dumps(
            {"name": name, "quick": True, "seconds": inner, "config": {}, "claims": [],
             "figures": [], "tables": [], **({"timing": timing} if timing else {})}))


def test_the_report_splits_the_wall_time_by_phase(tmp_path):
    _fake_run(tmp_path, "a_trained", status="ok", seconds=10.0, inner=9.5,
              timing={"training": 6.0, "sampling": 1.0, "evaluation": 2.0, "other": 0.5},
              cpu=(15.0, 0.5))
    _fake_run(tmp_path, "b_sampled", status="ok", seconds=10.0, inner=8.0,
              timing={"training": 0.0, "sampling": 3.0, "evaluation": 1.0, "other": 4.0},
              cpu=(9.0, 3.25))
    _fake_run(tmp_path, "c_failed", status="failed", seconds=7.0)
    _fake_run(tmp_path, "d_old", status="ok", seconds=3.0, inner=2.0)  # before phases were timed
    text = report.write(tmp_path).read_text()
    table = text[text.index("## Wall time"):].splitlines()
    assert table[2] == ("| experiment | status | seconds | training | sampling | evaluation | "
                        "other | start-up | CPU s | cores used | load at start | peak RSS (MB) | "
                        "memory mappings |")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table[4:] if line}
    # start-up: run.json's seconds less metrics.json's (the time before the experiment's code
    # ran); other: the rest of the run besides the phases.
    # cores used: CPU seconds over wall seconds; a run without a CPU time leaves them empty.
    assert rows["a_trained"] == ("| a_trained | ok | 10.0 | 6.0 | 1.0 | 2.0 | 0.5 | 0.5 | 15.0 | "
                                 "1.50 | 0.50 |  |  |")
    assert rows["b_sampled"] == ("| b_sampled | ok | 10.0 | 0.0 | 3.0 | 1.0 | 4.0 | 2.0 | 9.0 | "
                                 "0.90 | 3.25 |  |  |")
    assert rows["c_failed"] == "| c_failed | failed | 7.0 |  |  |  |  |  |  |  |  |  |  |"
    assert rows["d_old"] == "| d_old | ok | 3.0 |  |  |  |  |  |  |  |  |  |  |"
    # Totals over every run; the shares are of the 20 s whose split is known.
    assert rows["**total**"] == ("| **total** | | 30.0 | 6.0 (30 %) | 4.0 (20 %) | 3.0 (15 %) | "
                                 "4.5 (22 %) | 2.5 (12 %) | 24.0 | 1.20 | | | |")
    assert ("took 20.0 s of wall time and 24.0 s of CPU time on a machine of 2 core(s)"
            in text)


def test_the_report_gives_the_span_of_runs_that_overlapped(tmp_path):
    """Two at a time (``--jobs 2``): the summed wall time is not the time the run took."""
    one_at_a_time, together = tmp_path / "sequential", tmp_path / "together"
    for start, name in ((1000.0, "a"), (1010.0, "b"), (1015.0, "c")):
        _fake_run(one_at_a_time, name, status="ok", seconds=10.0 if name == "a" else 5.0,
                  inner=1.0, started=start)
    assert "overlapped" not in report.write(one_at_a_time).read_text()
    # a: 1000-1010, b: 1002-1014, c (failed): 1009-1016, d: no times (an older run)
    for start, name, status in ((1000.0, "a", "ok"), (1002.0, "b", "ok"),
                                (1009.0, "c", "failed")):
        _fake_run(together, name, status=status, seconds={"a": 10.0, "b": 12.0, "c": 7.0}[name],
                  inner=1.0, started=start)
    _fake_run(together, "d", status="ok", seconds=4.0, inner=1.0)
    text = report.write(together).read_text()
    assert ("They overlapped (several ran at once, `--jobs`): 16.0 s from the first start to "
            "the last finish, for 29.0 s of wall time summed." in text)
