"""Runs experiments one process each, so that nothing accumulates across them.

Why a process per experiment: XLA's CPU backend keeps every compiled program mapped for the
life of the process, each in several memory mappings. Twenty experiments in one process
accumulated enough of them to exhaust the kernel's per-process limit on mappings
(``vm.max_map_count``, 65,530 by default), after which LLVM could not allocate code pages
and the process died. A child process per experiment returns everything to the kernel when
it exits. Each child also records how many mappings it held at the end, so the margin stays
visible in ``run.json``.

The contract with the report: every experiment ends with ``results/<name>/run.json``,

* ``status``: ``"ok"`` or ``"failed"``;
* ``error``: one line (the exception, or how the process died), for a failed run;
* ``log``: the child's combined stdout and stderr, ``log.txt`` beside it;
* ``fingerprint``: SHA-256 of every repository file the run imported (except the runner
  and the report, :data:`NOT_IN_FINGERPRINT`), of the lock file, and of the size (default or
  quick). An interrupted ``make reproduce`` resumes by skipping the
  experiments whose ``run.json`` says ``ok`` under the same fingerprint;
* ``seconds`` and ``cpu_seconds``: the experiment's wall time and the CPU time of all its
  threads over the same span, with the machine's ``cores``, the CPUs the run was pinned to
  (``cpus_allowed``) and the 1-minute load average when it started (``load_at_start``), so
  that a run on a busy or different machine is not compared blindly with another;
  ``started`` and ``finished`` (Unix times) place the run among the others, so that the
  report can tell runs that overlapped.

Several experiments can run at once (``--jobs``): at its default size one experiment keeps
about 1.5 of two cores busy, and two keep both busy. :func:`plan` orders them longest first (by
their last ``run.json``, else :data:`EXPECTED_SECONDS_FILE`) and holds back the experiments
whose claims rest on measured time (a module-level ``RUNS_ALONE = True``) to run by
themselves after the rest.

Experiments that run at once are each pinned to their own share of the CPUs
(:func:`core_groups`). XLA's CPU backend sizes its thread pool to the CPUs a process may use,
so two unpinned children on two cores run four busy threads on two cores, and a parallel
operation waits for a shard whose thread has been preempted. Six default-size experiments at
``--jobs 2`` on two cores took 348.4 s and 361.1 s unpinned, 309.6 s and 319.0 s pinned
(runs interleaved), with 11 % less CPU time.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import traceback

REPO = pathlib.Path(__file__).resolve().parent.parent
RUN_FILE = "run.json"
LOG_FILE = "log.txt"
MODIFIED = "modified during the run"
# Wall seconds of each experiment in a recent run on a two-core machine, default and quick:
# the order of a first run, before any run.json exists. A hint for scheduling only.
EXPECTED_SECONDS_FILE = pathlib.Path(__file__).with_name("expected_seconds.json")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one experiment ended: ``status`` is ``ok``, ``failed`` or ``skipped`` (resumed)."""

    name: str
    status: str
    seconds: float
    error: str = ""


def _sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Loaded by every child but shaping no result: the command line, this runner (its run.json
# fields are read leniently) and the report, which is written again at the end of every run.
# Editing them must not make a multi-hour `make reproduce` start over.
NOT_IN_FINGERPRINT = frozenset({"experiments/__main__.py", "experiments/_runner.py",
                                "experiments/report.py"})


def _repo_files_loaded() -> list[str]:
    """Repository source files imported by this process, relative to the repository root,
    less :data:`NOT_IN_FINGERPRINT`."""
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path:
            continue
        path = pathlib.Path(path).resolve()
        if path.suffix == ".py" and REPO in path.parents and ".venv" not in path.parts:
            files.add(str(path.relative_to(REPO)))
    return sorted(files - NOT_IN_FINGERPRINT)


def fingerprint(files: list[str], *, quick: bool, since: float | None = None) -> dict:
    """What a run depends on: its imported files' hashes, the lock file, and its size.

    The hashes are taken when the run ends, the only time the set of imported files is
    known. With ``since`` (the run's start, ``time.time()``), a file changed after it is
    recorded as ``"modified during the run"`` instead of its hash: the run executed the older
    text, so it must never count as a run of the newer one.
    """
    lock = REPO / "requirements.lock"
    hashes = {}
    for name in files:
        path = REPO / name
        if not path.exists():
            hashes[name] = "missing"
        elif since is not None and path.stat().st_mtime > since:
            hashes[name] = MODIFIED
        else:
            hashes[name] = _sha256(path)
    return {
        "quick": bool(quick),
        "lock": _sha256(lock) if lock.exists() else "missing",
        "files": hashes,
    }


def _mapping_count() -> int | None:
    try:
        with open("/proc/self/maps") as maps:
            return sum(1 for _ in maps)
    except OSError:
        return None


def _peak_rss_mb() -> float | None:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux
    except (ImportError, OSError):
        return None


def _cpus_allowed() -> list[int] | None:
    """The CPUs this process may run on (its pinning, :func:`core_groups`), where known."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def _load_average() -> float | None:
    """The machine's 1-minute load average (None where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _fd_digits_checksum() -> str | None:
    """The FD-digits feature checksum, when this run used the FD-digits network.

    FD-digits values are comparable across machines only when their feature networks agree,
    so every run that computed one records which network it used.
    """
    module = sys.modules.get("diffusionlab.fd_digits")
    if module is None or module._load_or_train.cache_info().currsize == 0:
        return None
    try:
        return module.feature_checksum()
    except Exception:  # noqa: BLE001 - a diagnostic must not fail the run
        return None


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return " ".join(text.split())[:300]


def run_here(name: str, *, quick: bool, results: pathlib.Path) -> int:
    """Runs ``name`` in this process and writes its ``run.json``; returns 0 or 1.

    This is the child's side. ``metrics.json`` is written only by a run that finished, so a
    directory whose ``run.json`` says ``ok`` always holds complete results.
    """
    import matplotlib

    import experiments
    from diffusionlab.cache import enable_compilation_cache

    # Figures only go to files here: a file backend, whatever display the machine has. The
    # entry point chooses it, so no library module changes matplotlib's global state.
    matplotlib.use("Agg")

    # Each experiment is its own process: without a shared cache each would compile the same
    # kernels again, and a resumed run would compile everything again.
    enable_compilation_cache()
    directory = results / name
    start, started, cpu_start = time.perf_counter(), time.time(), time.process_time()
    record: dict = {"name": name, "quick": quick, "cores": os.cpu_count(),
                    "cpus_allowed": _cpus_allowed(), "load_at_start": _load_average()}
    try:
        experiments.run(name, quick=quick, results=results)
        record["status"] = "ok"
        code = 0
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the report
        traceback.print_exc()
        record.update(status="failed", error=_one_line(exc))
        code = 1
    record.update(
        seconds=round(time.perf_counter() - start, 3),
        cpu_seconds=round(time.process_time() - cpu_start, 3),
        started=round(started, 3),  # Unix times: overlapping runs (--jobs) show as such
        finished=round(time.time(), 3),
        fingerprint=fingerprint(_repo_files_loaded(), quick=quick, since=started),
        memory_mappings=_mapping_count(),
        peak_rss_mb=_peak_rss_mb(),
        fd_digits_checksum=_fd_digits_checksum(),
        log=LOG_FILE,
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / RUN_FILE).write_text(json.dumps(record, indent=2))
    return code


def read_record(directory: pathlib.Path) -> dict | None:
    """The ``run.json`` of one experiment's results directory, or None."""
    path = directory / RUN_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_current(directory: pathlib.Path, *, quick: bool) -> bool:
    """Whether ``directory`` holds a complete run of the current code at this size."""
    record = read_record(directory)
    if not record or record.get("status") != "ok" or not (directory / "metrics.json").exists():
        return False
    stored = record.get("fingerprint") or {}
    if MODIFIED in stored.get("files", {}).values():
        return False
    return stored == fingerprint(list(stored.get("files", {})), quick=quick)


def _death(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"process killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"process killed by signal {-returncode}"
    return f"process exited with status {returncode}"


def _last_error_line(log: pathlib.Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    return lines[-1][:300] if lines else ""


def runs_alone(name: str) -> bool:
    """Whether the module of experiment ``name`` sets ``RUNS_ALONE = True`` at its top level.

    Read from the source, so that planning imports no experiment (and no JAX).
    """
    spec = importlib.util.find_spec(f"experiments.{name}")
    if spec is None or spec.origin is None:
        raise ValueError(f"unknown experiment {name!r}")
    tree = ast.parse(pathlib.Path(spec.origin).read_text())
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and any(isinstance(t, ast.Name) and t.id == "RUNS_ALONE" for t in node.targets)):
            return node.value.value is True
    return False


def _expected_seconds(quick: bool) -> dict[str, float]:
    try:
        table = json.loads(EXPECTED_SECONDS_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in table.get("quick" if quick else "default", {}).items()}


def plan(names: list[str], *, results: pathlib.Path, quick: bool
         ) -> tuple[list[str], list[str]]:
    """``(together, alone)``: the experiments that may share the machine, longest first, and
    those that run by themselves afterwards (:func:`runs_alone`), longest first too.

    Longest first keeps the longest experiment from starting last when several run at once.
    An experiment's length is its last ``run.json`` at this size, else the committed
    estimate, else unknown (then it goes first: an unknown may be long).
    """
    expected = _expected_seconds(quick)

    def length(name: str) -> float:
        record = read_record(results / name)
        if record and record.get("quick") == quick and record.get("status") == "ok":
            return float(record.get("seconds", 0.0))
        return expected.get(name, float("inf"))

    ordered = sorted(names, key=length, reverse=True)  # stable: ties keep the given order
    alone = [n for n in ordered if runs_alone(n)]
    return [n for n in ordered if n not in alone], alone


def core_groups(jobs: int) -> list[frozenset[int]] | None:
    """The CPUs this process may use, split into ``jobs`` disjoint groups of consecutive
    CPUs whose sizes differ by at most one: one group per experiment running at once.

    None (run unpinned) where ``jobs`` is 1, where there are fewer CPUs than jobs, or where
    the platform cannot pin a process (no ``os.sched_setaffinity``, as on macOS).

    Raises:
      ValueError: ``jobs`` is not an integer >= 1.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    if jobs == 1 or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < jobs:
        return None
    size, extra = divmod(len(cpus), jobs)
    bounds = [i * size + min(i, extra) for i in range(jobs + 1)]
    return [frozenset(cpus[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]


@contextlib.contextmanager
def _pinned(cpus: frozenset[int] | None):
    """Pins the calling thread to ``cpus`` for the block (None: leaves it as it is).

    On Linux ``sched_setaffinity(0, ...)`` sets the calling thread's mask and a process it
    starts inherits that mask (sched_setaffinity(2), fork(2)), so a child started inside the
    block is pinned from its first instruction: its BLAS and XLA thread pools are sized to
    ``cpus``. The runner's other threads keep theirs.
    """
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def run_isolated(name: str, *, quick: bool, results: pathlib.Path,
                 sharing: bool = False, cpus: frozenset[int] | None = None) -> Outcome:
    """Runs ``name`` in a child process; the outcome is read back from its ``run.json``.

    The child's output goes to ``results/<name>/log.txt``. A child that dies without writing
    ``run.json`` (a segmentation fault, the out-of-memory killer) is recorded as failed with
    the signal and the log's last line. ``sharing`` says other experiments run beside it:
    then a GPU is not preallocated (``XLA_PYTHON_CLIENT_PREALLOCATE=false`` unless set), so
    that the processes share its memory. ``cpus`` (one of :func:`core_groups`) pins the
    child to those CPUs; None leaves it free.
    """
    directory = results / name
    if directory.exists():
        # A rerun replaces the old results, so that a failure never leaves stale figures.
        for path in directory.iterdir():
            if path.is_file():
                path.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / LOG_FILE
    command = [sys.executable, "-m", "experiments", "--child", name, "--results", str(results)]
    if quick:
        command.append("--quick")
    start = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if sharing:
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    with open(log, "w") as stream, _pinned(cpus):
        process = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, cwd=REPO,
                                 env=env, check=False)
    seconds = time.perf_counter() - start
    record = read_record(directory)
    if record is None:
        error = _death(process.returncode)
        last = _last_error_line(log)
        record = {"name": name, "quick": quick, "status": "failed", "seconds": round(seconds, 3),
                  "error": f"{error}; last output: {last}" if last else error, "log": LOG_FILE}
        (directory / RUN_FILE).write_text(json.dumps(record, indent=2))
    return Outcome(name, record["status"], seconds, record.get("error", ""))
