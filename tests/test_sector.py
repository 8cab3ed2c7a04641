"""Sector probability: closed forms, exact rationals, stability at large n, Monte Carlo, CLI."""

import math
from decimal import Decimal, localcontext
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from asserts import assert_compiles_once, assert_z

from diffusionlab.sector import (
    FULL_TURN,
    bspline,
    parse_angle,
    probability,
    probability_exact,
    probability_mc,
    probability_turns,
    sample_disk,
    smallest_sector_angle,
    solver,
)
from diffusionlab.sector import doubledouble as dd
from diffusionlab.sector.__main__ import main
from diffusionlab.sector.montecarlo import count_hits


def gap_of(theta: float) -> Fraction:
    """The exact uncovered fraction 1 - theta / FULL_TURN of a float angle."""
    return 1 - Fraction(float(theta)) / Fraction(FULL_TURN)


def reference(n: int, x: Fraction, digits: int = 80) -> float:
    """P_n at the exact gap x, in 80-digit decimal arithmetic.

    The k-th term is at most lam^k / k! (lam = n (1 - x)^(n-1)), so stopping after 400 terms
    leaves less than 1e-40 once lam <= 60; beyond that 1 - P <= e^-lam < 1e-26.
    """
    if n == 1 or n * x <= 1:
        return 1.0
    with localcontext() as ctx:
        ctx.prec = digits
        xd = Decimal(x.numerator) / Decimal(x.denominator)
        if n * (1 - xd) ** (n - 1) > 60:
            return 1.0
        total, binomial = Decimal(0), Decimal(1)
        for k in range(1, min(n, 400) + 1):
            binomial = binomial * (n - k + 1) / k
            base = 1 - k * xd
            if base <= 0:
                break
            total += (-1) ** (k - 1) * binomial * (base.ln() * (n - 1)).exp()
        return float(total)


MC_SAMPLES = 40_000


# ------------------------------------------------------------------------- compile counts

def test_kernels_compile_once_per_shape():
    # first in the file: it clears the caches, later tests then reuse what it compiled
    with jax.enable_x64(True):
        calls = [(jnp.asarray([3.0, 40.0, 500.0, 10.0**5] * 2), jnp.asarray(t))
                 for t in (np.linspace(1, 6, 8), np.linspace(2, 6.2, 8))]
        assert_compiles_once(solver.kernel, calls)
        chunk = solver.CHUNK
        dd_calls = [(np.full(chunk, n), np.full(chunk, x), np.zeros(chunk))
                    for n, x in ((100.0, 0.03), (1000.0, 0.005))]
        assert_compiles_once(solver.double_double_kernel, dd_calls)
    # the same static configuration as the Monte Carlo tests below, which then reuse it
    assert_compiles_once(
        lambda key: probability_mc(4, np.array([1.0, 3.0]), key=key, num_samples=MC_SAMPLES),
        [(jax.random.key(seed),) for seed in range(3)])


# ---------------------------------------------------------------- closed forms and exact values

def test_worked_values():
    assert probability_exact(4, Fraction(1, 2)) == Fraction(1, 2)
    assert probability_exact(5, Fraction(2, 3)) == Fraction(70, 81)
    assert probability_exact(5, "2/3") == Fraction(70, 81)
    p = probability([4, 5], [np.pi, 4 * np.pi / 3])
    assert p[0] == 0.5
    assert abs(p[1] - 70 / 81) <= 2e-16


def test_one_point_and_full_turn_give_one():
    theta = np.linspace(1e-3, FULL_TURN, 257)
    assert np.all(probability(1, theta) == 1.0)
    n = np.array([1, 2, 3, 7, 50, 1000, 10**5, 10**9])
    assert np.all(probability(n, FULL_TURN) == 1.0)
    assert probability_exact(7, 1) == 1


def test_pigeonhole_regime_gives_one():
    n = np.arange(1, 61)[:, None]
    u = np.linspace(0.0, 1.0, 33)[None, :]
    theta = FULL_TURN * (1 - 1 / n) + u * (FULL_TURN / n)
    theta = np.minimum(np.nextafter(theta, np.inf), FULL_TURN)  # safely inside the regime
    assert np.all(probability(n, theta) == 1.0)
    assert all(probability_exact(k, Fraction(k - 1, k)) == 1 for k in range(2, 30))


@pytest.mark.parametrize("n", [2, 3, 4, 10, 57, 1000, 10**5])
def test_at_most_half_turn_single_term(n):
    theta = np.linspace(0.01, np.pi, 101)
    p = probability(n, theta)
    with localcontext() as ctx:
        ctx.prec = 50
        for t, value in zip(theta, p, strict=True):
            q = 1 - gap_of(t)
            expected = n * (Decimal(q.numerator) / Decimal(q.denominator)) ** (n - 1)
            if expected < Decimal("1e-300"):
                assert value < 1e-290
                continue
            # relative accuracy, a few ulps per unit of |log P| (the exponential's conditioning)
            bound = 8 * 2.0**-52 * (1 + abs(float(expected.ln())))
            assert abs(Decimal(value) - expected) <= Decimal(bound) * expected, (n, t)
    # theta = pi: Wendel's d = 2 hemisphere probability n / 2^(n-1)
    assert probability_exact(n, Fraction(1, 2)) == Fraction(n, 2 ** (n - 1))


def test_exact_agrees_with_plain_inclusion_exclusion():
    # probability_exact takes the shorter of the direct and the reflected sums; both must agree
    # with the textbook sum over the positive parts.
    for n in range(1, 13):
        for q in (Fraction(i, 29) for i in range(1, 30)):
            x = 1 - q
            direct = sum((-1) ** (k - 1) * math.comb(n, k) * max(1 - k * x, 0) ** (n - 1)
                         for k in range(1, n + 1)) if n > 1 else 1
            assert probability_exact(n, q) == direct, (n, q)


def test_polynomial_identity_and_association_bound():
    for n in range(2, 10):
        for x in (Fraction(-3, 7), Fraction(1, 11), Fraction(2, 5), Fraction(13, 9)):
            # with all n terms (no positive part) the sum is identically 1
            total = sum((-1) ** (k - 1) * math.comb(n, k) * (1 - k * x) ** (n - 1)
                        for k in range(1, n + 1))
            assert total == 1
        for x in (Fraction(i, 37) for i in range(1, 37)):
            one_minus_p = 1 - probability_exact(n, 1 - x)
            assert 0 <= one_minus_p <= (1 - (1 - x) ** (n - 1)) ** n


def test_against_exact_on_rational_grid():
    n = np.arange(2, 16)[:, None]
    q = [Fraction(i, 48) for i in range(1, 49)]
    theta = np.array([float(v) for v in q])[None, :] * FULL_TURN
    p = probability(n, theta)
    for i, nv in enumerate(range(2, 16)):
        for j, x in enumerate(gap_of(t) for t in theta[0]):
            assert abs(p[i, j] - float(probability_exact(nv, 1 - x))) <= 1e-15, (nv, q[j])


# ------------------------------------------------------------------ stability at large n

def transition_angles(n, scales):
    """Angles with x = s / n: lam = n e^{-s} spans the cancellation band."""
    return np.array([FULL_TURN * (1 - s / n) for s in scales])


@pytest.mark.parametrize("n", [30, 100, 1000])
def test_stable_against_exact_rationals(n):
    # Exact at the float angle itself, so only the evaluation error is measured.
    theta = transition_angles(n, [1.5, 2.5, 4.0, 6.0, 9.0])
    p = probability(n, theta)
    for t, value in zip(theta, p, strict=True):
        exact = probability_exact(n, 1 - gap_of(t))
        assert abs(value - float(exact)) <= 1e-15, (n, t)


def test_turns_match_exact_rationals_to_the_last_ulp():
    # With the angle given exactly there is no input rounding: the kernel alone is on trial.
    cases = [(n, 1 - Fraction(round(64 * math.log(n / lam)), 64 * n))
             for n in (50, 300, 3000) for lam in (0.7, 4.0, 15.0, 30.0)]
    p = probability_turns([n for n, _ in cases], [q for _, q in cases])
    for (n, q), value in zip(cases, p, strict=True):
        assert abs(value - float(probability_exact(n, q))) <= 2.3e-16, (n, q)
    with pytest.raises(ValueError, match=r"q \(theta / 2pi\)"):
        probability_turns(3, Fraction(3, 2))


@pytest.mark.parametrize("n", [10**4, 10**5])
def test_stable_at_largest_n(n):
    scales = [np.log(n) - np.log(lam) for lam in (0.5, 3.0, 10.0, 25.0, 36.0)]
    theta = transition_angles(n, scales)
    p = probability(n, theta)
    ref = np.array([reference(n, gap_of(t)) for t in theta])
    np.testing.assert_allclose(p, ref, rtol=0, atol=1e-14)
    # and the plain float64 sum is hopeless there: it is the reason for the double-double
    x = 1 - theta / FULL_TURN
    k = np.arange(1, 200)[:, None]
    log_terms = (math.lgamma(n + 1) - np.vectorize(math.lgamma)(k + 1)
                 - np.vectorize(math.lgamma)(n - k + 1)
                 + (n - 1) * np.log(np.maximum(1 - k * x, 1e-300)))
    naive = np.sum((-1.0) ** (k - 1) * np.exp(log_terms) * (1 - k * x > 0), axis=0)
    assert np.max(np.abs(naive - ref)) > 1e-6


# ------------------------------------------------ the all-positive B-spline recursion

def test_bspline_against_exact_rationals_at_small_n():
    # exact angles (no input rounding) on the series' rational grid, plus angles on a knot
    # (1/x an integer) and next to one, where the weights 1 - u x must come out exact
    cases = [(k, Fraction(i, 48)) for k in range(2, 16) for i in range(1, 49)]
    cases += [(7, Fraction(2, 3)), (9, Fraction(3, 4)), (12, Fraction(4, 5)),
              (12, Fraction(4, 5) + Fraction(1, 10**12))]
    p = probability_turns([k for k, _ in cases], np.array([q for _, q in cases], dtype=object),
                          method="bspline")
    exact = np.array([float(probability_exact(k, q)) for k, q in cases])
    np.testing.assert_allclose(p, exact, rtol=0, atol=1e-15)


def bspline_cover_kernel(n, theta, width):
    """P by the recursion at one fixed window (one compilation), beside the series' P."""
    with jax.enable_x64(True):
        n, theta = (jnp.asarray(np.asarray(v, np.float64).ravel()) for v in (n, theta))
        p, needs, x_hi, x_lo, window = jax.device_get(bspline.prelude_kernel(n, theta))
        assert np.all(window[needs] <= width)
        cover = np.asarray(bspline.cover_kernel(n, x_hi, x_lo, width=width))
    return np.where(needs, 1.0 - cover, p), needs


def test_bspline_and_series_agree_on_a_grid():
    # The two paths share nothing but the cut-off and the single term at theta <= pi: one
    # alternating sum (float64 / double-double), one positive recursion.
    # 300 points: the series reuses the 512-point program of the tests above
    n, theta = np.meshgrid([3, 7, 20, 60, 120], np.linspace(np.pi, FULL_TURN, 60))
    recursion, needs = bspline_cover_kernel(n, theta, width=64)
    assert needs.sum() > 150  # most of the grid goes through the recursion
    series = probability(n.ravel(), theta.ravel())
    np.testing.assert_allclose(recursion, series, rtol=0, atol=1e-12)
    assert np.max(np.abs(recursion - series)) <= 1e-14  # in fact a few ulps
    # Across the transition of a larger n. Here the window spans more than float64's range:
    # one scale per row was measured 4e-10 off at this point (and 0.6 off at n = 20000);
    # each entry carries its own exponent instead.
    k = 10**4
    angle = transition_angles(k, [np.log(k) - np.log(4.0)])
    recursion, needs = bspline_cover_kernel([k], angle, width=2048)
    assert needs[0] and 0.01 < recursion[0] < 0.99
    np.testing.assert_allclose(recursion, probability(k, angle), rtol=0, atol=1e-12)


def test_bspline_input_checks_and_compiles_once():
    with pytest.raises(ValueError, match="method must be one of"):
        probability(4, np.pi, method="recursion")
    with pytest.raises(TypeError, match="method"):
        probability_turns(4, 0.5, method=None)
    with pytest.raises(ValueError, match=r"n must be an integer in \[1, 16777216\]"):
        probability(2**25, FULL_TURN * 0.999, method="bspline")
    with jax.enable_x64(True):
        calls = [(jnp.asarray([30.0, 50.0]), jnp.asarray([1 / 7.5, 1 / 11.2]),
                  jnp.zeros(2)), (jnp.asarray([40.0, 9.0]), jnp.asarray([0.09, 0.3]),
                                  jnp.zeros(2))]
        assert_compiles_once(lambda *a: bspline.cover_kernel(*a, width=16), calls)


def test_range_and_monotone_on_fine_grids():
    theta = np.linspace(1e-4, FULL_TURN, 4001)
    n = np.array([2, 3, 5, 10, 30, 100, 1000, 10**5])[:, None]
    p = probability(n, theta[None, :])
    assert np.all((p >= 0) & (p <= 1))
    # Monotone up to rounding: on the plateau at 1 neighbouring values may differ by an ulp
    # or two (how many depends on how XLA compiled the sums).
    ulps = 4 * np.finfo(np.float64).eps
    assert np.all(np.diff(p, axis=1) >= -ulps)
    # and finely across the transition of a large n, where the double-double path works
    for n in (5000, 10**5):  # lam from 0.03 (or 0.5) to 60: the whole band, ~1e-7 rad apart
        lo, hi = min(12, np.log(n) + 0.7), np.log(n) - np.log(60)
        fine = np.linspace(FULL_TURN * (1 - lo / n), FULL_TURN * (1 - hi / n), 2001)
        q = probability(n, fine)
        assert np.all(np.diff(q) >= -ulps) and q[0] < 0.5 and abs(q[-1] - 1.0) <= ulps


def test_broadcasting_shapes():
    assert probability(4, np.pi).shape == ()
    assert probability([2, 3], np.pi).shape == (2,)
    assert probability(np.arange(1, 4)[:, None], np.ones((1, 5))).shape == (3, 5)
    assert isinstance(probability(3, 1.0), np.ndarray)
    assert probability(3, 1.0).dtype == np.float64


# ------------------------------------------------------------------ double-double arithmetic

def test_double_double_kernels_accuracy():
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        y = np.concatenate([10 ** rng.uniform(-12, -0.1, 64), rng.uniform(0.3, 0.99, 64)])
        a = rng.uniform(-600, 40, 128)
        log = jax.jit(lambda v: dd.log1m(dd.from_float(v)))(jnp.asarray(y))
        exp = jax.jit(lambda v: dd.exp(dd.from_float(v)))(jnp.asarray(a))
        p = jax.jit(dd.two_prod)(jnp.asarray(y), jnp.asarray(a))
    with localcontext() as ctx:
        ctx.prec = 50
        for v, hi, lo in zip(y, np.asarray(log.hi), np.asarray(log.lo), strict=True):
            ref = (1 - Decimal(v)).ln()
            assert abs((Decimal(hi) + Decimal(lo) - ref) / ref) < Decimal(1e-30)
        for v, hi, lo in zip(a, np.asarray(exp.hi), np.asarray(exp.lo), strict=True):
            ref = Decimal(v).exp()
            assert abs((Decimal(hi) + Decimal(lo) - ref) / ref) < Decimal(1e-29)
        for u, v, hi, lo in zip(y, a, np.asarray(p.hi), np.asarray(p.lo), strict=True):
            ref = Decimal(u) * Decimal(v)
            assert abs((Decimal(hi) + Decimal(lo) - ref) / ref) < Decimal(1e-30)


def test_float64_log1m_is_accurate():
    y = np.concatenate([10 ** np.linspace(-17, -0.05, 200), [0.0]])
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(solver.log1m)(jnp.asarray(y)))
    np.testing.assert_allclose(got, np.log1p(-y), rtol=1e-15, atol=0)


# ------------------------------------------------------------------------------ Monte Carlo

def test_monte_carlo_matches_exact():
    key = jax.random.key(20221025)
    cases = {4: [Fraction(1, 4), Fraction(1, 2), Fraction(2, 3)],
             5: [Fraction(1, 2), Fraction(2, 3), Fraction(5, 6)]}
    for i, (n, qs) in enumerate(cases.items()):
        theta = np.array([float(q) for q in qs]) * FULL_TURN
        estimate, se = probability_mc(n, theta, key=jax.random.fold_in(key, i),
                                      num_samples=MC_SAMPLES)
        assert_z(estimate, se, [float(probability_exact(n, q)) for q in qs], z=4.0)


def test_monte_carlo_estimators_agree_and_points_fill_the_disk():
    key = jax.random.key(7)
    theta = np.array([2.0, 3.5, 5.0])
    a, _ = probability_mc(5, theta, key=key, num_samples=MC_SAMPLES, method="sector")
    b, _ = probability_mc(5, theta, key=key, num_samples=MC_SAMPLES, method="gap")
    assert np.max(np.abs(a - b)) <= 2 / MC_SAMPLES
    points = sample_disk(jax.random.key(1), (20_000,))
    r2 = np.asarray(jnp.sum(points**2, axis=-1))
    assert r2.max() <= 1.0
    assert_z(r2.mean(), r2.std() / np.sqrt(r2.size), 0.5)  # uniform in the disk: E r^2 = 1/2
    best = smallest_sector_angle(jnp.array([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.01]]]))
    assert abs(float(best[0]) - (np.pi - 0.01)) < 1e-5


def test_monte_carlo_chunks_cover_exactly_num_samples():
    # 5 samples in chunks of 2: the padded sixth row must not be counted
    counts = count_hits(jax.random.key(0), jnp.array([FULL_TURN, 0.5]), 3, n_max=4,
                        num_samples=5, method="gap", chunk=2)
    assert int(counts[0]) == 5
    # n = 1 through the padding: every row fits any angle
    counts = count_hits(jax.random.key(0), jnp.array([1e-3]), 1, n_max=4, num_samples=7,
                        method="sector", chunk=4)
    assert int(counts[0]) == 7


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("n, theta, word", [
    (0, np.pi, "n"), (2.5, np.pi, "n"), (-3, np.pi, "n"), ("four", np.pi, "n"),
    (True, np.pi, "n"), ([3, 0], np.pi, "n"),
    (3, 0.0, "theta"), (3, -1.0, "theta"), (3, 7.0, "theta"), (3, np.nan, "theta"),
    (3, [1.0, np.inf], "theta"), (3, "pi", "theta"),
])
def test_bad_input_raises_naming_argument(n, theta, word):
    with pytest.raises(ValueError, match=rf"^{word} must .*(\[1, 2\*\*53\]|\(0, 2pi\])"):
        probability(n, theta)


def test_bad_input_exact_and_monte_carlo():
    for q in (0, 2, Fraction(-1, 3), "x", float("nan")):
        with pytest.raises(ValueError, match=r"q \(theta / 2pi\) .*\(0, 1\]"):
            probability_exact(3, q)
    with pytest.raises(ValueError, match=r"n must"):
        probability_exact(0, Fraction(1, 2))
    with pytest.raises(ValueError, match=r"num_samples must .*\[1, 2\*\*31 - 1\]"):
        probability_mc(3, 1.0, key=jax.random.key(0), num_samples=0)
    with pytest.raises(ValueError, match=r"method must"):
        probability_mc(3, 1.0, key=jax.random.key(0), num_samples=10, method="best")
    with pytest.raises(ValueError, match=r"theta must"):
        probability_mc(3, 9.0, key=jax.random.key(0), num_samples=10)


def test_parse_angle():
    assert parse_angle("pi") == (np.pi, Fraction(1, 2))
    assert parse_angle("3pi/2") == (1.5 * np.pi, Fraction(3, 4))
    assert parse_angle("2*pi/3")[1] == Fraction(1, 3)
    assert parse_angle("240deg")[1] == Fraction(2, 3)
    assert parse_angle(" 1.25 ") == (1.25, None)
    assert parse_angle("2pi") == (FULL_TURN, Fraction(1))
    for bad in ("", "pie", "3pi/0", "-pi", "7pi/2", "0deg", "400deg", "nan", "1e9"):
        with pytest.raises(ValueError, match=r"THETA must be an angle in \(0, 2pi\]"):
            parse_angle(bad)


def test_command_line(capsys):
    assert main(["5", "240deg"]) == 0
    out = capsys.readouterr().out
    assert "P exact = 70/81" in out and "0.86419753086419" in out
    assert main(["4", "pi", "--mc", "--samples", "20000"]) == 0
    assert "z =" in capsys.readouterr().out
    for argv in (["0", "pi"], ["4", "7pi"], ["4", "banana"], ["x", "pi"], ["4"]):
        if len(argv) == 1:  # argparse's own error, also one line and status 2
            with pytest.raises(SystemExit) as exit_info:
                main(argv)
            assert exit_info.value.code == 2
        else:
            assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
