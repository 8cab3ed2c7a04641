"""Command line: ``python -m experiments`` lists, ``python -m experiments NAME… [--quick]`` runs."""

from __future__ import annotations

import argparse
import sys
import time

import experiments
from experiments import report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    parser.add_argument("names", nargs="*", help="experiments to run (none: list them)")
    parser.add_argument("--all", action="store_true", help="run every experiment")
    parser.add_argument("--quick", action="store_true", help="use each Config.quick()")
    parser.add_argument("--results", default="results", help="output folder (default: results)")
    args = parser.parse_args(argv)

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
    for name in chosen:
        start = time.perf_counter()
        print(f"[{name}] running{' (quick)' if args.quick else ''}…", flush=True)
        experiments.run(name, quick=args.quick, results=args.results)
        print(f"[{name}] done in {time.perf_counter() - start:.1f}s", flush=True)
    path = report.write(args.results)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
