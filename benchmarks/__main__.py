"""``python -m benchmarks [NAME…] [--quick]``: runs benchmarks and writes JSON results."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys

import jax

import benchmarks


def machine_info() -> dict:
    """What a figure depends on besides the code: cores, current load, platform, devices.

    Written into every result, so that numbers from different machines (or from one machine
    under different load) are not compared blindly. ``load_average`` is the 1/5/15-minute
    run-queue length when the benchmark starts; compare it with ``cpu_count``.
    """
    return {
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else None,
        "load_average": list(os.getloadavg()),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kinds": sorted({d.device_kind for d in jax.devices()}),
    }


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
    for name in chosen:
        before = machine_info()
        result = benchmarks.load(name).run(quick=args.quick)
        machine = {**before, "load_average_after": list(os.getloadavg())}
        result = {"name": name, "quick": args.quick, "machine": machine, **result}
        (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=float))
        print(f"[{name}] " + json.dumps({k: v for k, v in result.items() if k != "machine"},
                                        default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
