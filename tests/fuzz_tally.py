"""Runs the whole bad-call table of ``tests/test_fuzz.py`` and counts the outcomes by kind.

    python tests/fuzz_tally.py [--long] [--only MODULE ...] [--details FILE]

Each call runs in a worker process under a per-call alarm; a worker that dies (abort,
segfault, out of memory) marks its call a crash, one that stops answering marks it a hang,
and a fresh worker resumes after it. ``--long`` adds hypothesis draws (random positions of
NaN, random out-of-range values, extra axes) to every case.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
MEMORY_LIMIT = 12 * 2**30  # per worker: an allocation beyond this fails instead of swapping


def _setup():
    sys.path[:0] = [str(HERE), str(ROOT)]
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    jax.config.update("jax_numpy_rank_promotion", "raise")


def _cases(only):
    import test_fuzz
    cases = []
    for name, entry in sorted(test_fuzz.entries().items()):
        if only and entry.module not in only:
            continue
        cases.append((name, "", "valid"))
        cases.append((name, "", "float16"))
        for arg, label, _ in entry.cases():
            cases.append((name, arg, label))
    return cases


def _worker(start: int, out_path: str, only, long: bool, examples: int) -> None:
    _setup()
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):
        pass
    import test_fuzz
    cases = _cases(only)
    with open(out_path, "a") as out:
        for i in range(start, len(cases)):
            name, arg, label = cases[i]
            entry = test_fuzz.entries()[name]
            out.write(json.dumps({"begin": i}) + "\n")
            out.flush()
            results = []
            try:
                if label in ("valid", "float16"):
                    failure = test_fuzz.check_valid(entry, half=None if label == "valid" else label)
                    results.append(("ok", "") if failure is None else ("fail", failure))
                else:
                    value = dict(entry.args[arg].bad(entry.valid()[arg]))[label]
                    results.append(test_fuzz.classify(entry, arg, label, value))
                    if long:
                        results += _drawn(test_fuzz, entry, arg, label, examples)
            except BaseException as error:  # noqa: BLE001 - a broken fixture is a finding too
                results.append(("other_error", f"fixture: {type(error).__name__}: {error}"))
            for category, detail in results:
                out.write(json.dumps({"i": i, "category": category, "detail": detail[:300]}) + "\n")
            out.flush()


def _drawn(test_fuzz, entry, arg, label, examples):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    found = []

    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        value = entry.args[arg].draw(data, label, entry.valid()[arg])
        found.append(test_fuzz.classify(entry, arg, label, value))

    run()
    return found


def _run_all(only, long: bool, examples: int, call_timeout: float):
    _setup()
    cases = _cases(only)
    results: dict[int, list] = collections.defaultdict(list)
    start = 0
    with tempfile.TemporaryDirectory() as tmp:
        while start < len(cases):
            out_path = os.path.join(tmp, f"from_{start}.jsonl")
            open(out_path, "w").close()
            cmd = [sys.executable, __file__, "--worker", str(start), "--out", out_path,
                   "--examples", str(examples)] + (["--long"] if long else [])
            for module in only or ():
                cmd += ["--only", module]
            env = dict(os.environ, DIFFUSIONLAB_FUZZ_TIMEOUT=str(call_timeout))
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            last_size, last_change = 0, time.monotonic()
            stall = call_timeout * (examples + 2 if long else 2) + 120
            hung = False
            while proc.poll() is None:
                time.sleep(0.5)
                size = os.path.getsize(out_path)
                if size != last_size:
                    last_size, last_change = size, time.monotonic()
                elif time.monotonic() - last_change > stall:
                    proc.kill()
                    hung = True
                    break
            proc.wait()
            stderr_tail = (proc.stderr.read() or "").strip().splitlines()[-1:] if proc.stderr else []
            begun = None
            with open(out_path) as f:
                for line in f:
                    record = json.loads(line)
                    if "begin" in record:
                        begun = record["begin"]
                        results.pop(begun, None)
                    else:
                        results[record["i"]].append((record["category"], record["detail"]))
            if begun is None:  # died before its first call: count it against that call
                begun = start
            elif begun in results:  # finished its last call
                if begun == len(cases) - 1:
                    break
                start = begun + 1
                continue
            detail = "timed out (stalled worker)" if hung else (
                f"process died with status {proc.returncode}: {' '.join(stderr_tail)[:200]}")
            results[begun] = [("hang" if hung else "crash", detail)]
            print(f"  {cases[begun]}: {detail}", file=sys.stderr)
            start = begun + 1
    return cases, results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="add hypothesis draws per case")
    parser.add_argument("--examples", type=int, default=10, help="draws per case with --long")
    parser.add_argument("--only", action="append", help="restrict to these modules")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per call")
    parser.add_argument("--details", help="write every outcome to this JSON file")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        _worker(args.worker, args.out, args.only, args.long, args.examples)
        return 0

    began = time.monotonic()
    cases, results = _run_all(args.only, args.long, args.examples, args.timeout)
    counts = collections.Counter()
    valid = collections.Counter()
    by_module = collections.defaultdict(collections.Counter)
    failures = []
    for i, (name, arg, label) in enumerate(cases):
        for category, detail in results.get(i, [("crash", "no result")]):
            if label in ("valid", "float16"):
                valid[(label, category)] += 1
                if category != "ok":
                    failures.append((name, label, label, category, detail))
                continue
            counts[category] += 1
            by_module[name.split(".")[0]][category] += 1
            if category != "named":
                failures.append((name, arg, label, category, detail))
    import test_fuzz
    functions = {name for name, _, _ in cases}
    bad_calls = sum(counts.values())
    print(f"bad calls: {bad_calls}   public functions: {len(functions)}   "
          f"({time.monotonic() - began:.0f} s)")
    for category in test_fuzz.CATEGORIES:
        share = 100 * counts[category] / max(bad_calls, 1)
        print(f"  {category:<12} {counts[category]:>6}  {share:5.1f}%")
    totals = {kind: sum(v for (k, _), v in valid.items() if k == kind)
              for kind in ("valid", "float16")}
    print(f"valid calls: {valid[('valid', 'ok')]}/{totals['valid']} ok; "
          f"float16: {valid[('float16', 'ok')]}/{totals['float16']} ok")
    print("by module (named / all):")
    for module, c in sorted(by_module.items()):
        rest = ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if k != "named")
        print(f"  {module:<14} {c['named']:>5}/{sum(c.values()):<5} {rest}")
    if args.details:
        with open(args.details, "w") as f:
            json.dump([dict(zip(("function", "arg", "label", "category", "detail"), row,
                                strict=True))
                       for row in failures], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
