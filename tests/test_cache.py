"""The one caching idiom: build_once makes a folder once, atomically, one builder at a time."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from diffusionlab.cache import build_once, checkpoints_beside


def test_build_once_builds_then_finds_the_folder(tmp_path):
    folder = tmp_path / "models" / "m"
    calls = []

    def build(staging):
        calls.append(staging)
        (staging / "weights.txt").write_text("42")
        return "built"

    assert build_once(folder, build) == "built"
    assert build_once(folder, build) is None  # found: not built again
    assert len(calls) == 1 and calls[0].name == "m.partial"
    assert (folder / "weights.txt").read_text() == "42"
    assert not calls[0].exists()  # the staging folder was renamed into place


def test_an_interrupted_build_leaves_no_folder_and_the_next_one_rebuilds(tmp_path):
    folder = tmp_path / "m"

    def broken(staging):
        (staging / "half.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_once(folder, broken)
    assert not folder.exists()
    build_once(folder, lambda staging: (staging / "whole.txt").write_text("whole"))
    assert sorted(p.name for p in folder.iterdir()) == ["whole.txt"]


def test_concurrent_processes_build_once(tmp_path):
    # Two processes ask for the same folder at once: one builds (slowly), the other waits for
    # it and finds the folder; the build runs exactly once.
    script = textwrap.dedent(f"""
        import pathlib, time
        from diffusionlab.cache import build_once
        log = pathlib.Path({str(tmp_path / "log")!r})

        def build(staging):
            with open(log, "a") as f:
                f.write("built\\n")
            time.sleep(1.0)
            (staging / "done").write_text("1")

        build_once(pathlib.Path({str(tmp_path / "m")!r}), build)
        assert (pathlib.Path({str(tmp_path / "m")!r}) / "done").exists()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert (tmp_path / "log").read_text() == "built\n"


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(TypeError, match="folder must be a path"):
        build_once(3, lambda staging: None)
    with pytest.raises(TypeError, match="build must be callable"):
        build_once(tmp_path / "m", "not a function")
    with pytest.raises(TypeError, match="experiment_directory must be a path"):
        checkpoints_beside(None)
    assert checkpoints_beside(tmp_path / "results" / "udm_quality") == tmp_path / "results" / "checkpoints"
