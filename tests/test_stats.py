"""stats: three-way verdicts; intervals equal scipy's, cover at their level, ties never hold."""

import json
import math

import numpy as np
import pytest
from asserts import assert_z
from scipy import stats as scipy_stats

from diffusionlab import stats

RTOL = 1e-10
A = np.array([1.0, 1.2, 1.1, 0.95, 1.3])
B = np.array([0.5, 0.55, 0.6, 0.4, 0.62])


def _close(x, y):
    return math.isclose(x, y, rel_tol=RTOL, abs_tol=RTOL)


# --- compare -----------------------------------------------------------------------------


@pytest.mark.parametrize("paired", [False, True])
def test_compare_interval_equals_scipy(paired):
    for level in (0.9, 0.95, 0.99):
        v = stats.compare(A, B, paired=paired, level=level)
        if paired:
            ci = scipy_stats.ttest_rel(A, B).confidence_interval(confidence_level=level)
        else:
            ci = scipy_stats.ttest_ind(A, B, equal_var=False).confidence_interval(confidence_level=level)
        assert _close(v.low, ci.low) and _close(v.high, ci.high), (v, ci)
        assert _close(v.estimate, float(np.mean(A - B))) and v.n == 5 and v.level == level


def test_compare_unpaired_unequal_lengths_equals_scipy():
    b = np.array([0.1, 0.9, 0.4])
    v = stats.compare(A, b)
    ci = scipy_stats.ttest_ind(A, b, equal_var=False).confidence_interval()
    assert _close(v.low, ci.low) and _close(v.high, ci.high)
    assert v.n == 3  # min(len(a), len(b))


@pytest.mark.parametrize("paired", [False, True])
def test_identical_samples_never_hold(paired):
    for x in (A, B, np.array([3.0, 3.0, 3.0]), np.array([0.0, 0.0])):
        for alternative in ("greater", "less"):
            v = stats.compare(x, x, paired=paired, alternative=alternative)
            assert v.verdict in ("undecided", "fails"), v


@pytest.mark.parametrize("paired", [False, True])
def test_zero_versus_zero_is_undecided(paired):
    v = stats.compare([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], paired=paired)
    assert v.verdict == "undecided" and "no variation" in v.reason
    assert math.isnan(v.low) and math.isnan(v.high)


@pytest.mark.parametrize("paired", [False, True])
def test_clear_difference_at_three_seeds_holds(paired):
    a, b = [2.0, 2.1, 1.95], [1.0, 1.05, 0.98]
    assert stats.compare(a, b, paired=paired).verdict == "holds"
    assert stats.compare(a, b, paired=paired, margin=0.5).verdict == "holds"
    assert stats.compare(a, b, paired=paired, margin=2.0).verdict == "fails"
    # The mirrored claim: b is smaller than a by more than the margin.
    assert stats.compare(b, a, paired=paired, alternative="less", margin=0.5).verdict == "holds"
    assert stats.compare(a, b, paired=paired, alternative="less").verdict == "fails"


@pytest.mark.parametrize("paired", [False, True])
def test_less_is_greater_with_the_samples_swapped(paired):
    rng = np.random.default_rng(4)
    for _ in range(50):
        a, b = rng.normal(0.0, 1.0, size=4), rng.normal(rng.normal(), 1.0, size=4)
        margin = float(rng.uniform(0.0, 1.0))
        less = stats.compare(a, b, margin=margin, alternative="less", paired=paired)
        greater = stats.compare(b, a, margin=margin, alternative="greater", paired=paired)
        assert less.verdict == greater.verdict
        assert _close(less.low, -greater.high) and _close(less.high, -greater.low)


def test_noisy_overlap_is_undecided():
    v = stats.compare([1.0, 2.0, 0.5], [0.9, 1.8, 0.6])
    assert v.verdict == "undecided" and "straddles" in v.reason


def test_constant_unequal_samples_are_a_deterministic_difference():
    v = stats.compare([1.0, 1.0, 1.0], [0.25, 0.25], margin=0.5)
    assert v.verdict == "holds" and v.low == v.high == v.estimate == 0.75
    assert "deterministic" in v.reason
    # A deterministic tie with the margin never holds.
    tie = stats.compare([1.0, 1.0], [0.5, 0.5], margin=0.5)
    assert tie.verdict == "fails"
    paired = stats.compare([1.0, 2.0, 3.0], [0.0, 1.0, 2.0], paired=True)
    assert paired.verdict == "holds" and paired.low == paired.high == 1.0


def test_fewer_than_two_replicates_is_undecided():
    for a, b in (([1.0], [0.0]), ([5.0], [0.0, 0.1]), ([5.0, 6.0], [0.0])):
        v = stats.compare(a, b)
        assert v.verdict == "undecided" and "fewer than 2" in v.reason and math.isnan(v.low)
    assert stats.compare([5.0], [0.0], paired=True).n == 1


def test_compare_rule_and_rendering():
    v = stats.compare(A, B, paired=True, margin=0.1)
    assert v.rule == "paired t 95% CI of a − b > 0.1"
    assert stats.compare(A, B, alternative="less").rule == "Welch t 95% CI of a − b < 0"
    assert v.interval_text() == f"{v.estimate:.3g} [{v.low:.3g}, {v.high:.3g}], n=5"
    assert str(v).startswith("holds: ")
    assert v.holds and not v.fails and not v.undecided
    assert stats.compare([1.0], [0.0]).interval_text() == "1, n=1"
    with pytest.raises(TypeError, match="three-way"):
        bool(v)


@pytest.mark.parametrize("paired", [False, True])
def test_interval_covers_the_true_difference_at_its_level(paired):
    draws, n, level = 4000, 5, 0.95
    rng = np.random.default_rng(0)
    a = rng.normal(1.0, 1.0, size=(draws, n))
    b = rng.normal(0.3, 2.0, size=(draws, n)) + (0.5 * a if paired else 0.0)
    true_difference = 1.0 - 0.3 - (0.5 if paired else 0.0)
    covered = np.empty(draws, bool)
    for i in range(draws):
        v = stats.compare(a[i], b[i], paired=paired, level=level)
        covered[i] = v.low <= true_difference <= v.high
    coverage = covered.mean()
    assert_z(coverage, math.sqrt(level * (1 - level) / draws), level)


# --- equivalent --------------------------------------------------------------------------


@pytest.mark.parametrize("paired", [False, True])
def test_equivalent_accepts_small_and_rejects_large_differences(paired):
    rng = np.random.default_rng(1)
    margin = 1.0
    base = rng.normal(5.0, 0.01, size=6)
    noise = rng.normal(0.0, 0.01, size=6)
    near = stats.equivalent(base + 0.1 * margin + noise, base, margin=margin, paired=paired)
    far = stats.equivalent(base + 2.0 * margin + noise, base, margin=margin, paired=paired)
    assert near.verdict == "holds" and far.verdict == "fails"
    edge = stats.equivalent(base + margin + noise, base, margin=margin, paired=paired)
    assert edge.verdict == "undecided"


def test_equivalent_uses_the_tost_interval():
    v = stats.equivalent(A, B, margin=1.0, level=0.95)
    ci = scipy_stats.ttest_ind(A, B, equal_var=False).confidence_interval(confidence_level=0.90)
    assert _close(v.low, ci.low) and _close(v.high, ci.high) and v.level == 0.95
    paired = stats.equivalent(A, B, margin=1.0, paired=True, level=0.99)
    ci = scipy_stats.ttest_rel(A, B).confidence_interval(confidence_level=0.98)
    assert _close(paired.low, ci.low) and _close(paired.high, ci.high)
    assert stats.equivalent([0.0, 0.0], [0.0, 0.0], margin=1.0).verdict == "undecided"


@pytest.mark.parametrize("margin", [0.0, -0.1, float("nan"), float("inf")])
def test_equivalent_needs_a_positive_margin(margin):
    with pytest.raises(ValueError, match="margin must be a finite number > 0"):
        stats.equivalent(A, B, margin=margin)


def test_equivalent_needs_level_above_one_half():
    with pytest.raises(ValueError, match=r"level must lie in \(0.5, 1\)"):
        stats.equivalent(A, B, margin=1.0, level=0.5)


# --- exceeds -----------------------------------------------------------------------------


def test_exceeds_interval_equals_scipy_and_decides():
    ci = scipy_stats.ttest_1samp(A, 0.0).confidence_interval()
    v = stats.exceeds(A, 0.9)
    assert _close(v.low, ci.low) and _close(v.high, ci.high) and _close(v.estimate, A.mean())
    assert v.verdict == "holds" and v.rule == "t 95% CI of mean > 0.9"
    assert stats.exceeds(A, 1.5).verdict == "fails"
    assert stats.exceeds(A, 1.1).verdict == "undecided"
    assert stats.exceeds(A, 1.5, alternative="less").verdict == "holds"
    assert stats.exceeds(A, 0.9, alternative="less").verdict == "fails"


def test_exceeds_degenerate_cases():
    assert stats.exceeds([2.0], 1.0).verdict == "undecided"
    tie = stats.exceeds([1.0, 1.0, 1.0], 1.0)
    assert tie.verdict == "undecided" and "no variation" in tie.reason
    constant = stats.exceeds([2.0, 2.0], 1.0)
    assert constant.verdict == "holds" and constant.low == constant.high == 2.0


# --- growth_exponent ---------------------------------------------------------------------

SIZES = np.array([16.0, 32.0, 64.0, 128.0, 256.0])


def test_constant_cost_fails_against_linear_growth():
    v = stats.growth_exponent(SIZES, np.full(5, 3.0), expected=1.0, tolerance=0.3)
    assert v.verdict == "fails" and abs(v.estimate) < 1e-12
    noisy = np.random.default_rng(2).lognormal(0.0, 0.05, size=(3, 5))
    assert stats.growth_exponent(SIZES, noisy, expected=1.0, tolerance=0.3).verdict == "fails"


def test_linear_cost_with_small_noise_holds_and_matches_linregress():
    rng = np.random.default_rng(3)
    cost = 0.2 * SIZES * rng.lognormal(0.0, 0.02, size=(4, 5))
    v = stats.growth_exponent(SIZES, cost, expected=1.0, tolerance=0.1)
    fit = scipy_stats.linregress(np.log(np.tile(SIZES, 4)), np.log(cost.reshape(-1)))
    half = scipy_stats.t.ppf(0.975, 20 - 2) * fit.stderr
    assert v.verdict == "holds" and v.n == 20
    assert _close(v.estimate, fit.slope)
    assert _close(v.low, fit.slope - half) and _close(v.high, fit.slope + half)
    # The same data against a quadratic claim fails; a wide band around 1.05 is undecided.
    assert stats.growth_exponent(SIZES, cost, expected=2.0, tolerance=0.3).verdict == "fails"
    loose = stats.growth_exponent(SIZES, cost[0] * np.array([1, 1.3, 0.8, 1.2, 0.9]),
                                  expected=1.0, tolerance=0.05)
    assert loose.verdict == "undecided"


def test_growth_exponent_one_dimensional_cost_and_few_sizes():
    exact = stats.growth_exponent(SIZES, SIZES**2, expected=2.0, tolerance=0.01)
    assert exact.verdict == "holds" and _close(exact.estimate, 2.0)
    two = stats.growth_exponent([8, 16, 8, 16], [1.0, 2.0, 1.1, 2.1], expected=1.0, tolerance=0.5)
    assert two.verdict == "undecided" and "fewer than 3 distinct" in two.reason


def test_per_replicate_slopes_match_separate_fits_and_see_drift_between_rounds():
    # Each round is linear with its own level; the levels drift across rounds and, within
    # each round, the largest size ran in a slow moment. Pooling the points as independent
    # would judge the residual scatter; per replicate the interval is over the round slopes.
    rng = np.random.default_rng(5)
    rounds = np.exp(rng.normal(0.0, 0.3, size=(6, 1))) * SIZES * rng.lognormal(0, 0.03, (6, 5))
    v = stats.growth_exponent(SIZES, rounds, expected=1.0, tolerance=0.1, per_replicate=True)
    slopes = [scipy_stats.linregress(np.log(SIZES), np.log(r)).slope for r in rounds]
    half = scipy_stats.t.ppf(0.975, 5) * np.std(slopes, ddof=1) / np.sqrt(6)
    assert v.n == 6 and _close(v.estimate, np.mean(slopes))
    assert _close(v.low, np.mean(slopes) - half) and _close(v.high, np.mean(slopes) + half)
    assert v.verdict == "holds" and "over 6 replicates" in v.reason
    # The level drift alone (a constant factor per round) leaves every slope exactly 1.
    level_only = np.exp(rng.normal(0.0, 0.5, size=(4, 1))) * SIZES
    exact = stats.growth_exponent(SIZES, level_only, expected=1.0, tolerance=0.01,
                                  per_replicate=True)
    assert exact.verdict == "holds" and exact.high - exact.low < 1e-9
    assert _close(exact.estimate, 1.0)
    # Rounds that disagree on the slope (0.8 against 1.4) leave a wide band undecided.
    split = np.stack([SIZES**0.8, SIZES**1.4, SIZES**0.8, SIZES**1.4])
    assert stats.growth_exponent(SIZES, split, expected=1.0, tolerance=0.3,
                                 per_replicate=True).verdict == "undecided"
    assert stats.growth_exponent(SIZES, SIZES[None] ** 2.0, expected=1.0, tolerance=0.3,
                                 per_replicate=True).verdict == "undecided"


def test_per_replicate_bad_inputs():
    with pytest.raises(ValueError, match="per_replicate needs cost of shape"):
        stats.growth_exponent(SIZES, SIZES, expected=1.0, tolerance=0.1, per_replicate=True)
    with pytest.raises(TypeError, match="per_replicate must be a bool"):
        stats.growth_exponent(SIZES, SIZES, expected=1.0, tolerance=0.1, per_replicate="yes")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"cost": [1.0, 0.0, 2.0, 3.0, 4.0]}, "cost must be > 0"),
    ({"cost": [1.0, np.nan, 2.0, 3.0, 4.0]}, "cost must be finite"),
    ({"cost": [1.0, 2.0]}, r"cost must have shape \(5,\)"),
    ({"n": [0, 1, 2, 3, 4]}, "n must be > 0"),
    ({"tolerance": -0.1}, "tolerance must be a finite number >= 0"),
])
def test_growth_exponent_bad_inputs(kwargs, match):
    arguments = {"n": SIZES, "cost": SIZES, "expected": 1.0, "tolerance": 0.1} | kwargs
    with pytest.raises(ValueError, match=match):
        stats.growth_exponent(arguments.pop("n"), arguments.pop("cost"), **arguments)


# --- within, all_of, undecided -----------------------------------------------------------


def test_within():
    v = stats.within(0.501, 0.5, tolerance=0.01)
    assert v.verdict == "holds" and v.n == 1 and v.rule == "|value − 0.5| ≤ 0.01"
    assert stats.within(0.6, 0.5, tolerance=0.01).verdict == "fails"
    assert stats.within(0.75, 0.5, tolerance=0.25).verdict == "holds"  # on the boundary: within
    many = stats.within([0.5, 0.505, 0.49], 0.5, tolerance=0.02)
    assert many.verdict == "holds" and many.n == 3 and (many.low, many.high) == (0.49, 0.505)
    worst = stats.within([0.5, 0.7, 0.45], 0.5, tolerance=0.02)
    assert worst.verdict == "fails" and worst.estimate == 0.7 and "2 of 3" in worst.reason
    nan = stats.within([0.5, np.nan], 0.5, tolerance=0.02)
    assert nan.verdict == "undecided" and "NaN" in nan.reason
    assert stats.within(np.nan, 0.5, tolerance=0.02).verdict == "undecided"
    # A value already outside decides the claim, NaNs elsewhere notwithstanding.
    assert stats.within([np.nan, 0.9], 0.5, tolerance=0.02).verdict == "fails"
    assert stats.within(np.inf, 0.5, tolerance=0.02).verdict == "fails"


def test_all_of():
    hold = stats.within(1.0, 1.0, tolerance=0.0)
    fail = stats.within(2.0, 1.0, tolerance=0.5)
    open_ = stats.undecided("not run at default size: CPU budget")
    assert stats.all_of(hold, hold).verdict == "holds"
    combined = stats.all_of(hold, open_, fail, claim="both")
    assert combined.verdict == "fails" and "condition 3 of 3" in combined.reason
    assert fail.reason in combined.reason and combined.rule == "both"
    pending = stats.all_of(hold, open_, names=["exact", "timed"])
    assert pending.verdict == "undecided" and pending.reason.startswith("timed is undecided")
    with pytest.raises(ValueError, match="at least one"):
        stats.all_of()
    with pytest.raises(TypeError, match="Verdict"):
        stats.all_of(hold, "holds")


def test_undecided_and_serialisation():
    v = stats.undecided("not run at default size: CPU budget", estimate=0.3, n=2)
    assert v.verdict == "undecided" and v.estimate == 0.3 and v.n == 2
    data = v.to_dict()
    assert data["low"] is None and data["level"] is None
    text = json.dumps(data, allow_nan=False)
    assert stats.Verdict.from_dict(json.loads(text)).to_dict() == data
    full = stats.compare(A, B)
    assert stats.Verdict.from_dict(json.loads(json.dumps(full.to_dict()))) == full
    with pytest.raises(ValueError, match="reason"):
        stats.undecided("  ")
    with pytest.raises(ValueError, match="verdict must be one of"):
        stats.Verdict("maybe", 0.0, 0.0, 0.0, 1, "", "", 0.95)


# --- bad inputs name the argument and its valid range ------------------------------------


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: stats.compare([], B), ValueError, "a must not be empty"),
    (lambda: stats.compare(A, [1.0, np.nan]), ValueError, "b must be finite"),
    (lambda: stats.compare(A, [1.0, np.inf]), ValueError, "b must be finite"),
    (lambda: stats.compare(A.reshape(5, 1), B), ValueError, "a must be 1-D"),
    (lambda: stats.compare(3.0, B), ValueError, "a must be 1-D"),
    (lambda: stats.compare("abc", B), TypeError, "a must be numeric"),
    (lambda: stats.compare(["x", "y"], B), TypeError, "a must be numeric"),
    (lambda: stats.compare(A, B, level=1.0), ValueError, r"level must lie in \(0, 1\)"),
    (lambda: stats.compare(A, B, level=0.0), ValueError, r"level must lie in \(0, 1\)"),
    (lambda: stats.compare(A, B, level="0.95"), TypeError, "level must be a real number"),
    (lambda: stats.compare(A, B, margin=-1.0), ValueError, "margin must be a finite number >= 0"),
    (lambda: stats.compare(A, B, alternative="two-sided"), ValueError, "alternative must be one of"),
    (lambda: stats.compare(A, B[:3], paired=True), ValueError, "same length"),
    (lambda: stats.compare(A, B, paired="yes"), TypeError, "paired must be True or False"),
    (lambda: stats.exceeds(A, np.nan), ValueError, "threshold must be a finite number"),
    (lambda: stats.within([[1.0]], 1.0, tolerance=0.1), ValueError, "value must be a scalar or 1-D"),
    (lambda: stats.within([], 1.0, tolerance=0.1), ValueError, "value must not be empty"),
    (lambda: stats.within(1.0, 1.0, tolerance=-1), ValueError, "tolerance must be a finite number >= 0"),
    (lambda: stats.within(1.0, np.inf, tolerance=0.1), ValueError, "target must be a finite number"),
    (lambda: stats.undecided("x", n=-1), ValueError, "n must be an integer >= 0"),
])
def test_bad_inputs_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_lists_and_integers_are_accepted():
    v = stats.compare([3, 4, 5], [0, 1, 1])
    assert v.verdict == "holds" and isinstance(v.estimate, float) and isinstance(v.n, int)
