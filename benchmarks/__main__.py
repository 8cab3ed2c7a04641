"""``python -m benchmarks [NAME…] [--quick]``: runs benchmarks and writes JSON results."""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys

import jax

import benchmarks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("names", nargs="*")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    chosen = args.names or benchmarks.names()
    unknown = [n for n in chosen if n not in benchmarks.names()]
    if unknown:
        print(f"error: unknown benchmark(s) {', '.join(unknown)}; "
              f"valid: {', '.join(benchmarks.names())}", file=sys.stderr)
        return 2
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "devices": [str(d) for d in jax.devices()],
               "jax": jax.__version__}
    for name in chosen:
        result = benchmarks.load(name).run(quick=args.quick)
        result = {"name": name, "quick": args.quick, "machine": machine, **result}
        (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=float))
        print(f"[{name}] " + json.dumps({k: v for k, v in result.items() if k != "machine"},
                                        default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
