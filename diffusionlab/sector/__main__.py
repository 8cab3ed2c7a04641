"""``python -m diffusionlab.sector N THETA [--mc]``: the probability that N random points in a
disk lie in one sector of angle THETA (``pi``, ``3pi/2``, ``240deg``, ``1.5``...).

Prints the exact fraction when THETA/2pi is rational, the float, and with ``--mc`` a Monte
Carlo check. Bad input exits with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import sys

import jax

from diffusionlab.sector.angle import parse_angle
from diffusionlab.sector.checks import check_n
from diffusionlab.sector.exact import probability_exact
from diffusionlab.sector.montecarlo import probability_mc
from diffusionlab.sector.solver import probability

_EXACT_COST_LIMIT = 2_000_000  # terms x bits of the exact sum above which it is skipped


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, no usage dump
        self.exit(2, f"error: {message}\n")


def _parse_int(text: str, name: str, valid: str = "[1, 2**53]") -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer in {valid}, got {text!r}") from None
    return value


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m diffusionlab.sector",
                     description=__doc__.split("\n\n")[0])
    parser.add_argument("n", metavar="N", help="number of points (integer >= 1)")
    parser.add_argument("theta", metavar="THETA", help="angle: pi, 3pi/2, 240deg, 1.5, ...")
    parser.add_argument("--mc", action="store_true", help="add a Monte Carlo check")
    parser.add_argument("--samples", default="1000000", help="Monte Carlo samples")
    parser.add_argument("--seed", default="0", help="Monte Carlo seed")
    args = parser.parse_args(argv)
    try:
        n = check_n(_parse_int(args.n, "N"))
        theta, turns = parse_angle(args.theta)
        # Every argument is checked before anything is computed or printed.
        samples = _parse_int(args.samples, "--samples", "[1, 2**31 - 1]")
        if not 1 <= samples <= 2**31 - 1:
            raise ValueError(f"--samples must be an integer in [1, 2**31 - 1], got {args.samples!r}")
        seed = _parse_int(args.seed, "--seed", "[0, 2**32 - 1]")
        if not 0 <= seed <= 2**32 - 1:
            raise ValueError(f"--seed must be an integer in [0, 2**32 - 1], got {args.seed!r}")
        p = float(probability(n, theta))
        print(f"n = {n}, theta = {theta!r} rad"
              + (f" = {turns} of a turn" if turns is not None else ""))
        if turns is not None:
            cost = min(n, turns.denominator) * n * turns.denominator.bit_length()
            if cost <= _EXACT_COST_LIMIT or n * (1 - turns) <= 1:
                exact = probability_exact(n, turns)
                print(f"P exact = {exact} = {float(exact)!r}")
            else:
                print("P exact = (skipped: too many big-integer terms for this n)")
        print(f"P       = {p!r}")
        if args.mc:
            estimate, se = probability_mc(n, theta, key=jax.random.key(seed), num_samples=samples)
            z = (float(estimate) - p) / float(se) if se > 0 else 0.0
            print(f"P MC    = {float(estimate):.6f} ± {float(se):.6f} "
                  f"(z = {z:+.2f}, {samples} samples)")
    except ValueError as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
