"""Command line: ``python -m experiments`` lists, ``python -m experiments NAME… [--quick]`` runs.

Each experiment runs in its own process (see ``experiments._runner``). A failing experiment
does not stop the others, and ``results/REPORT.md`` is written at the end whatever happened,
with a failed experiment shown as failed. ``--all`` resumes: an experiment whose results are
complete and whose code, lock file and size are unchanged is skipped (``--force`` reruns it).
The exit status is 0 when every experiment ran, 1 when one failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import pathlib
import queue
import sys

import experiments
from experiments import _runner, report


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and status 2, as every command-line tool here
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m experiments", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="experiments to run (none: list them)")
    parser.add_argument("--all", action="store_true", help="run every experiment")
    parser.add_argument("--quick", action="store_true", help="use each Config.quick()")
    parser.add_argument("--results", default="results", help="output folder (default: results)")
    parser.add_argument("--force", action="store_true",
                        help="rerun experiments whose results are current (default: skip them)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="experiments run at once, each in its own process, longest "
                             "first; those that time themselves run alone (default: 1)")
    parser.add_argument("--child", metavar="NAME", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    results = pathlib.Path(args.results).resolve()
    if args.child:
        return _runner.run_here(args.child, quick=args.quick, results=results)
    if args.jobs < 1:
        print(f"error: --jobs must be ≥ 1, got {args.jobs}", file=sys.stderr)
        return 2

    valid = experiments.names()
    chosen = valid if args.all else args.names
    if not chosen:
        for name in valid:
            print(f"{name:24s} {experiments.load(name).TITLE}")
        return 0
    unknown = [n for n in chosen if n not in valid]
    if unknown:
        print(f"error: unknown experiment(s) {', '.join(unknown)}; valid: {', '.join(valid)}",
              file=sys.stderr)
        return 2

    size = " (quick)" if args.quick else ""
    todo = []
    for name in chosen:
        if args.all and not args.force and _runner.is_current(results / name, quick=args.quick):
            print(f"[{name}] results are current; skipped (--force reruns)", flush=True)
        else:
            todo.append(name)

    together, alone = _runner.plan(todo, results=results, quick=args.quick)
    sharing = args.jobs > 1 and len(together) > 1
    # Experiments that run at once each get their own CPUs (see experiments._runner).
    running = min(args.jobs, len(together))
    free_cpus: queue.SimpleQueue = queue.SimpleQueue()
    for group in (_runner.core_groups(running) if sharing else None) or [None] * running:
        free_cpus.put(group)

    def one(name: str, sharing: bool = sharing) -> _runner.Outcome:
        print(f"[{name}] running{size}… (log: {results / name / _runner.LOG_FILE})", flush=True)
        cpus = free_cpus.get() if sharing else None
        try:
            outcome = _runner.run_isolated(name, quick=args.quick, results=results,
                                           sharing=sharing, cpus=cpus)
        finally:
            if sharing:
                free_cpus.put(cpus)
        detail = f": {outcome.error}" if outcome.error else ""
        print(f"[{name}] {outcome.status} in {outcome.seconds:.1f}s{detail}", flush=True)
        return outcome

    outcomes: list[_runner.Outcome] = []
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            outcomes = list(pool.map(one, together))
        outcomes += [one(name, sharing=False) for name in alone]
    except KeyboardInterrupt:
        # The report still covers what finished; the next --all resumes from there.
        path = report.write(results, expected=chosen if args.all else None)
        print(f"interrupted; report of what finished: {path}", file=sys.stderr)
        return 130
    path = report.write(results, expected=chosen if args.all else None)
    failed = [o.name for o in outcomes if o.status != "ok"]
    print(f"report: {path}")
    if failed:
        print(f"{len(failed)} experiment(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
