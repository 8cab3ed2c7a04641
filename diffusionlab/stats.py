r"""Three-way verdicts on the replicates (seeds) of an experiment: holds, fails or undecided.

``make reproduce`` puts each essay claim next to what we measure. A claim is never judged
on a bare mean or a bare bool: it is judged by a stated rule on the replicates, and the
answer is one of three words.

- ``"holds"``: the whole confidence interval lies on the claim's side of its bound.
- ``"fails"``: the whole interval lies on the other side (a tie counts against the claim).
- ``"undecided"``: the interval straddles the bound, or the data cannot decide (fewer than
  two replicates, no variation at all, a NaN measurement, an experiment not run).

Every function returns one frozen :class:`Verdict` that carries the point estimate, the
interval, the number of replicates, a one-sentence reason and the rule as a short phrase
for the report. Inputs are tiny, so everything is NumPy float64; quantiles come from
``scipy.stats`` and the intervals match ``scipy.stats.ttest_rel`` / ``ttest_ind`` /
``ttest_1samp`` / ``linregress`` (pinned by ``tests/test_stats.py``).

Intervals are two-sided Student-t intervals at ``level``; a one-sided claim decided by a
two-sided ``level`` interval has a one-sided error rate of at most $(1-\text{level})/2$.
No correction is made for multiple claims: each verdict stands at its own level.

Choosing a function:

- ``compare(a, b, margin=...)``: "method a beats method b (by more than a margin)".
- ``equivalent(a, b, margin=...)``: "a and b agree to within a margin" (TOST).
- ``exceeds(a, threshold)``: "the mean of a is above (below) a fixed number".
- ``growth_exponent(n, cost, expected=..., tolerance=...)``: "cost grows like $n^p$".
- ``within(value, target, tolerance=...)``: an exact or deterministic claim, no statistics.
- ``all_of(v1, v2, ...)``: a claim made of several conditions.
- ``undecided(reason)``: a claim that was not evaluated, with the reason.

References: B. L. Welch, "The generalization of 'Student's' problem when several different
population variances are involved", Biometrika 34 (1947); D. J. Schuirmann, "A comparison
of the two one-sided tests procedure and the power approach for assessing the equivalence of
average bioavailability", J. Pharmacokinet. Biopharm. 15 (1987).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from numbers import Real

import numpy as np
from scipy import stats as _scipy_stats

__all__ = [
    "VERDICTS",
    "Verdict",
    "all_of",
    "compare",
    "equivalent",
    "exceeds",
    "growth_exponent",
    "undecided",
    "within",
]

VERDICTS = ("holds", "fails", "undecided")
ALTERNATIVES = ("greater", "less")
NAN = float("nan")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The verdict on one claim, with the numbers and the rule that decided it.

    Attributes:
        verdict: ``"holds"``, ``"fails"`` or ``"undecided"``.
        estimate: the point estimate (mean difference a − b, mean, fitted exponent, value).
        low, high: the interval bounds; NaN where undefined (e.g. fewer than 2 replicates).
        n: the number of replicates behind the estimate (see each function for its count).
        reason: one short sentence saying why this verdict.
        rule: one short phrase stating the rule, for the report.
        level: the confidence level of the interval (NaN where no interval is used).
    """

    verdict: str
    estimate: float
    low: float
    high: float
    n: int
    reason: str
    rule: str
    level: float

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    @property
    def holds(self) -> bool:
        return self.verdict == "holds"

    @property
    def fails(self) -> bool:
        return self.verdict == "fails"

    @property
    def undecided(self) -> bool:
        return self.verdict == "undecided"

    def __bool__(self):
        # A three-way verdict must not be mistaken for a bool in `if verdict:`.
        raise TypeError("a Verdict is three-way: test v.verdict == 'holds' (or v.holds), not bool(v)")

    def interval_text(self) -> str:
        """Renders ``0.31 [0.21, 0.4], n=3`` (the interval is left out where undefined)."""
        text = _fmt(self.estimate)
        if not (math.isnan(self.low) and math.isnan(self.high)):
            text += f" [{_fmt(self.low)}, {_fmt(self.high)}]"
        return f"{text}, n={self.n}"

    def __str__(self) -> str:
        return f"{self.verdict}: {self.interval_text()} ({self.reason})"

    def to_dict(self) -> dict:
        """A JSON-ready dict: the fields, with NaN and ±inf written as ``None`` (strict JSON)."""
        out = dataclasses.asdict(self)
        for key in ("estimate", "low", "high", "level"):
            if not math.isfinite(out[key]):
                out[key] = None
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Verdict:
        """Inverse of :meth:`to_dict` (``None`` reads back as NaN)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: data[k] for k in fields}
        for key in ("estimate", "low", "high", "level"):
            values[key] = NAN if values[key] is None else float(values[key])
        return cls(**values)


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------


def compare(a, b, *, margin: float = 0.0, alternative: str = "greater", paired: bool = False,
            level: float = 0.95) -> Verdict:
    r"""Is a larger (or smaller) than b by more than ``margin``? Decided on the replicates.

    With $d = a - b$ and the two-sided ``level`` Student-t interval $[L, H]$ on the mean
    difference,

    - ``alternative="greater"`` claims $a - b > m$: holds if $L > m$, fails if $H \le m$;
    - ``alternative="less"`` claims $a - b < -m$ (a is *smaller* than b by more than $m$):
      holds if $H < -m$, fails if $L \ge -m$;
    - otherwise undecided. A tie never holds.

    Paired (``paired=True``, one pair per seed): the one-sample t interval on $a_i - b_i$,
    $\bar d \pm t_{n-1}\, s_d/\sqrt n$, as ``scipy.stats.ttest_rel``. Unpaired: Welch's
    interval $\bar a - \bar b \pm t_\nu \sqrt{s_a^2/n_a + s_b^2/n_b}$ with the
    Welch–Satterthwaite $\nu$, as ``scipy.stats.ttest_ind(equal_var=False)``.

    Degenerate inputs: fewer than 2 replicates in either sample is undecided; samples with
    no variation and no difference (both constant and equal, or paired differences all
    exactly 0) are undecided, since nothing was measured to decide by. Constant but unequal
    samples give a deterministic difference: the interval collapses to the point and the
    rule applies, and the reason says so.

    Args:
        a, b: 1-D replicates (lists are fine), finite.
        margin: the margin $m \ge 0$ the difference must clear.
        alternative: ``"greater"`` or ``"less"``, as above.
        paired: pair ``a[i]`` with ``b[i]`` (same seed); requires equal lengths.
        level: the two-sided confidence level, in (0, 1).

    Returns:
        A :class:`Verdict` with ``estimate`` the mean of a − b and ``n`` the number of pairs
        (paired) or ``min(len(a), len(b))`` (unpaired).

    Raises:
        TypeError: a non-numeric argument (e.g. a string).
        ValueError: empty, non-1-D or non-finite samples, ``margin < 0``, an unknown
            ``alternative``, ``level`` outside (0, 1), or unequal lengths when paired.
    """
    a, b = _replicates(a, "a"), _replicates(b, "b")
    margin = _nonnegative(margin, "margin")
    alternative = _alternative(alternative)
    level = _level(level)
    paired = _flag(paired, "paired")
    bound = margin if alternative == "greater" else -margin
    rule = (f"{'paired' if paired else 'Welch'} t {_pct(level)} CI of a − b "
            f"{'>' if alternative == 'greater' else '<'} {_fmt(bound)}")
    difference = _paired_difference(a, b) if paired else _welch_difference(a, b)
    return _decide_against_bound(difference, bound=bound, alternative=alternative, level=level,
                                 rule=rule, bound_name="the margin")


def equivalent(a, b, *, margin: float, paired: bool = False, level: float = 0.95) -> Verdict:
    r"""Do a and b agree to within ``margin``? Two one-sided tests (TOST) on the replicates.

    With $\alpha = 1 - \text{level}$, the two-sided $(1 - 2\alpha)$ Student-t interval
    $[L, H]$ on the mean difference $a - b$ (paired or Welch, as in :func:`compare`) decides:

    - holds if $-m < L$ and $H < m$ (both one-sided tests at level $\alpha$ reject);
    - fails if the interval lies entirely outside $[-m, m]$ ($H < -m$ or $L > m$);
    - otherwise undecided.

    Degenerate inputs are undecided as in :func:`compare` (use :func:`within` for an exact,
    deterministic agreement); a deterministic nonzero difference collapses the interval.

    Args:
        a, b: 1-D replicates, finite.
        margin: the equivalence margin $m > 0$.
        paired: pair ``a[i]`` with ``b[i]``; requires equal lengths.
        level: the TOST level $1 - \alpha$, in (0.5, 1).

    Returns:
        A :class:`Verdict`; ``low``/``high`` are the $(1 - 2\alpha)$ interval and ``level``
        is the TOST level.

    Raises:
        TypeError, ValueError: as :func:`compare`; also ``margin <= 0`` or ``level <= 0.5``.
    """
    a, b = _replicates(a, "a"), _replicates(b, "b")
    margin = _positive(margin, "margin")
    level = _level(level)
    if level <= 0.5:
        raise ValueError(f"level must lie in (0.5, 1) for equivalence (TOST uses a 2·level − 1 "
                         f"interval), got {level!r}")
    paired = _flag(paired, "paired")
    interval_level = 2.0 * level - 1.0
    rule = (f"{'paired' if paired else 'Welch'} TOST at {_pct(level)} "
            f"({_pct(interval_level)} CI of a − b inside ±{_fmt(margin)})")
    difference = _paired_difference(a, b) if paired else _welch_difference(a, b)
    if difference.undecided_reason is not None:
        return _undecided_difference(difference, rule=rule, level=level)
    low, high = difference.interval(interval_level)
    text = difference.describe(low, high, interval_level)
    if -margin < low and high < margin:
        verdict, reason = "holds", f"{text} lies inside ±{_fmt(margin)}"
    elif high < -margin or low > margin:
        verdict, reason = "fails", f"{text} lies outside ±{_fmt(margin)}"
    else:
        verdict, reason = "undecided", f"{text} overlaps an edge of ±{_fmt(margin)}"
    return Verdict(verdict, difference.estimate, low, high, difference.n, reason, rule, level)


def exceeds(a, threshold: float, *, alternative: str = "greater", level: float = 0.95) -> Verdict:
    r"""Is the mean of the replicates above (or below) a fixed ``threshold``?

    The two-sided ``level`` one-sample t interval $\bar a \pm t_{n-1} s/\sqrt n$ (as
    ``scipy.stats.ttest_1samp``) decides: ``"greater"`` holds if $L > \tau$, fails if
    $H \le \tau$; ``"less"`` holds if $H < \tau$, fails if $L \ge \tau$; else undecided.
    Fewer than 2 replicates, or every replicate exactly equal to the threshold, is
    undecided; a constant sample off the threshold is a deterministic value (the interval
    collapses to it).

    Args:
        a: 1-D replicates, finite.
        threshold: the fixed number $\tau$ (finite).
        alternative: ``"greater"`` or ``"less"``.
        level: the two-sided confidence level, in (0, 1).

    Returns:
        A :class:`Verdict` with ``estimate`` the mean of ``a`` and ``n = len(a)``.

    Raises:
        TypeError, ValueError: as :func:`compare`; also a non-finite ``threshold``.
    """
    a = _replicates(a, "a")
    threshold = _finite(threshold, "threshold")
    alternative = _alternative(alternative)
    level = _level(level)
    rule = f"t {_pct(level)} CI of mean {'>' if alternative == 'greater' else '<'} {_fmt(threshold)}"
    n = a.size
    if n < 2:
        difference = _Difference(float(a.mean()), 0.0, 0, n, "fewer than 2 replicates")
    elif np.ptp(a) == 0:
        reason = ("no variation: every replicate equals the threshold" if a[0] == threshold
                  else None)
        difference = _Difference(float(a[0]), 0.0, n - 1, n, reason)
    else:
        difference = _Difference(float(a.mean()), float(a.std(ddof=1) / math.sqrt(n)), n - 1, n, None)
    return _decide_against_bound(difference, bound=threshold, alternative=alternative,
                                 level=level, rule=rule, bound_name="the threshold",
                                 what="value")


def growth_exponent(n, cost, *, expected: float, tolerance: float, level: float = 0.95,
                    per_replicate: bool = False) -> Verdict:
    r"""Does cost grow like $n^p$ with $p$ within ``tolerance`` of ``expected``?

    Ordinary least squares of $\log \text{cost}$ on $\log n$ over all points,
    $\log c = \beta_0 + p \log n$, and the two-sided ``level`` t interval on the slope,
    $\hat p \pm t_{N-2}\, \mathrm{se}(\hat p)$ with $N$ the number of points (as
    ``scipy.stats.linregress``). With the band $[p^* - \delta, p^* + \delta]$:

    - holds if the interval lies inside the band;
    - fails if it is disjoint from the band;
    - otherwise undecided. Fewer than 3 distinct sizes $n$ is undecided.

    An exact power law (zero residual) collapses the interval to the fitted exponent, so a
    constant cost has exponent 0 and fails against an expected 1 (with tolerance < 1).

    With ``per_replicate=True`` (``cost`` 2-D), each replicate (row) gets its own OLS slope
    and the interval is the t interval of their mean, $\bar p \pm t_{R-1}\, s/\sqrt{R}$.
    Use it when a replicate is one pass over every size (interleaved timing rounds): drift
    between passes then widens the interval instead of biasing the slope, which pooling the
    points as independent would hide. Fewer than 2 replicates is undecided.

    Args:
        n: 1-D problem sizes, finite and > 0 (repeats allowed).
        cost: 1-D, aligned with ``n``, or 2-D ``(replicates, len(n))``, flattened with
            ``n`` repeated; finite and > 0.
        expected: the claimed exponent $p^*$ (finite).
        tolerance: the half-width $\delta \ge 0$ of the band around ``expected``.
        level: the two-sided confidence level, in (0, 1).
        per_replicate: fit each row of a 2-D ``cost`` on its own and decide on the mean of
            the row slopes (False: pool every point into one fit).

    Returns:
        A :class:`Verdict` with ``estimate`` the fitted exponent (the mean row slope with
        ``per_replicate``) and ``n`` the number of points fitted (of replicates with
        ``per_replicate``).

    Raises:
        TypeError, ValueError: non-numeric, non-finite or non-positive ``n``/``cost``, a
            ``cost`` shape that does not match ``n``, ``tolerance < 0``, a bad ``level``, a
            non-bool ``per_replicate``, or ``per_replicate`` with a 1-D ``cost``.
    """
    sizes = _replicates(n, "n")
    cost = _numeric_array(cost, "cost")
    expected = _finite(expected, "expected")
    tolerance = _nonnegative(tolerance, "tolerance")
    level = _level(level)
    if not isinstance(per_replicate, (bool, np.bool_)):
        raise TypeError(f"per_replicate must be a bool, got {type(per_replicate).__name__}")
    if np.any(sizes <= 0):
        raise ValueError("n must be > 0 (sizes are fitted on a log scale)")
    if per_replicate and cost.ndim != 2:
        raise ValueError(f"per_replicate needs cost of shape (replicates, {sizes.size}), one "
                         f"row per replicate; got shape {cost.shape}")
    if cost.ndim == 1 and cost.shape == sizes.shape:
        cost_flat, sizes_flat = cost, sizes
    elif cost.ndim == 2 and cost.shape[1] == sizes.size and cost.shape[0] >= 1:
        cost_flat, sizes_flat = cost.reshape(-1), np.tile(sizes, cost.shape[0])
    else:
        raise ValueError(f"cost must have shape ({sizes.size},) or (replicates, {sizes.size}) "
                         f"to match n, got {cost.shape}")
    if not np.all(np.isfinite(cost_flat)):
        raise ValueError("cost must be finite (no NaN or inf)")
    if np.any(cost_flat <= 0):
        raise ValueError("cost must be > 0 (it is fitted on a log scale)")
    band_low, band_high = expected - tolerance, expected + tolerance
    band = f"{_fmt(expected)} ± {_fmt(tolerance)}"
    rule = (f"mean over replicates of the OLS slope of log cost on log n, t {_pct(level)} "
            f"CI within {band}" if per_replicate
            else f"OLS slope of log cost on log n, t {_pct(level)} CI within {band}")
    points = cost.shape[0] if per_replicate else sizes_flat.size
    if np.unique(sizes).size < 3:
        return Verdict("undecided", NAN, NAN, NAN, points,
                       f"fewer than 3 distinct sizes n ({np.unique(sizes).size})", rule, level)
    if per_replicate:
        x = np.log(sizes) - np.log(sizes).mean()
        slopes = (np.log(cost) - np.log(cost).mean(axis=1, keepdims=True)) @ x / float(x @ x)
        slope = float(slopes.mean())
        if points < 2:
            return Verdict("undecided", slope, NAN, NAN, 1,
                           "one replicate: no spread between replicates to judge", rule, level)
        standard_error = float(slopes.std(ddof=1)) / math.sqrt(points)
        low, high = _t_interval(slope, standard_error, points - 1, level)
        text = (f"every replicate's slope is {_fmt(slope)}" if standard_error == 0
                else f"{_pct(level)} CI [{_fmt(low)}, {_fmt(high)}] over {points} replicates")
        return _decide_band(slope, low, high, band_low, band_high, text=text, band=band,
                            points=points, rule=rule, level=level)
    x, y = np.log(sizes_flat), np.log(cost_flat)
    x_centred = x - x.mean()
    sxx = float(x_centred @ x_centred)
    slope = float(x_centred @ (y - y.mean()) / sxx)
    residual = y - y.mean() - slope * x_centred
    df = points - 2
    standard_error = math.sqrt(float(residual @ residual) / df / sxx)
    low, high = _t_interval(slope, standard_error, df, level)
    text = (f"exact power law (zero residual): exponent {_fmt(slope)}" if standard_error == 0
            else f"{_pct(level)} CI [{_fmt(low)}, {_fmt(high)}]")
    return _decide_band(slope, low, high, band_low, band_high, text=text, band=band,
                        points=points, rule=rule, level=level)


def _decide_band(estimate: float, low: float, high: float, band_low: float, band_high: float, *,
                 text: str, band: str, points: int, rule: str, level: float) -> Verdict:
    """Holds if ``[low, high]`` lies inside the band, fails if disjoint, else undecided."""
    if band_low <= low and high <= band_high:
        verdict, reason = "holds", f"{text} lies inside {band}"
    elif high < band_low or low > band_high:
        verdict, reason = "fails", f"{text} lies outside {band}"
    else:
        verdict, reason = "undecided", f"{text} overlaps the edge of {band}"
    return Verdict(verdict, estimate, low, high, points, reason, rule, level)


def within(value, target: float, *, tolerance: float) -> Verdict:
    r"""An exact claim: $|v - \text{target}| \le \text{tolerance}$ for every value $v$.

    No statistics: for deterministic quantities (an identity checked to round-off, a count,
    a single measured value). ``value`` may be a scalar or 1-D replicates; the claim holds
    iff all lie within. Any value outside (an infinite one included) fails; otherwise a NaN
    value makes it undecided, with the reason.

    Args:
        value: a scalar or 1-D values (NaN allowed, see above).
        target: the claimed value (finite).
        tolerance: the allowed absolute deviation, $\ge 0$.

    Returns:
        A :class:`Verdict` with ``estimate`` the value farthest from ``target`` (NaN if
        all are NaN), ``low``/``high`` the smallest and largest value, ``n`` the number of
        values and ``level`` NaN.

    Raises:
        TypeError, ValueError: non-numeric or empty ``value``, a ``value`` of more than one
            dimension, a non-finite ``target``, or a negative/non-finite ``tolerance``.
    """
    values = _numeric_array(value, "value")
    if values.ndim > 1:
        raise ValueError(f"value must be a scalar or 1-D, got shape {values.shape}")
    values = values.reshape(-1)
    if values.size == 0:
        raise ValueError("value must not be empty (a scalar or at least one value)")
    target = _finite(target, "target")
    tolerance = _nonnegative(tolerance, "tolerance")
    rule = f"|value − {_fmt(target)}| ≤ {_fmt(tolerance)}"
    n = values.size
    is_nan = np.isnan(values)
    known = values[~is_nan]
    if known.size:
        deviation = np.abs(known - target)
        worst = int(np.argmax(deviation))
        estimate, low, high = float(known[worst]), float(known.min()), float(known.max())
        outside = int(np.sum(deviation > tolerance))
    else:
        estimate, low, high, outside = NAN, NAN, NAN, 0
    what = "value" if n == 1 else f"{n} values"
    if outside:
        reason = (f"value {_fmt(estimate)} is {_fmt(abs(estimate - target))} from {_fmt(target)}, "
                  f"beyond the tolerance {_fmt(tolerance)}")
        if n > 1:
            reason = f"{outside} of {n} values lie outside; worst " + reason
        verdict = "fails"
    elif is_nan.any():
        verdict = "undecided"
        reason = "the value is NaN" if n == 1 else f"{int(is_nan.sum())} of {n} values are NaN"
    else:
        verdict = "holds"
        reason = (f"{what} within {_fmt(tolerance)} of {_fmt(target)}"
                  f" (farthest {_fmt(estimate)})")
    return Verdict(verdict, estimate, low, high, n, reason, rule, NAN)


def all_of(*verdicts: Verdict, claim: str | None = None, names: Sequence[str] | None = None) -> Verdict:
    """A claim with several conditions: holds iff all hold, fails if any fails, else undecided.

    The reason names the condition that decided the verdict: the first that fails, else the
    first that is undecided. Each condition keeps its own level (no multiplicity
    correction).

    Args:
        *verdicts: the conditions, at least one :class:`Verdict`.
        claim: the rule phrase for the report; default the conditions' rules joined by "and".
        names: optional names for the conditions, used in the reason (default "condition i").

    Returns:
        A :class:`Verdict` with NaN estimate and interval, ``n`` the smallest ``n`` of the
        conditions, and ``level`` the common level (NaN if they differ).

    Raises:
        TypeError: a condition that is not a :class:`Verdict`, or a non-string ``claim``.
        ValueError: no conditions, or ``names`` of the wrong length.
    """
    if not verdicts:
        raise ValueError("all_of needs at least one verdict (got none)")
    for i, v in enumerate(verdicts):
        if not isinstance(v, Verdict):
            raise TypeError(f"verdicts must be Verdict objects; argument {i} is {type(v).__name__}")
    if claim is not None and not isinstance(claim, str):
        raise TypeError(f"claim must be a string, got {type(claim).__name__}")
    count = len(verdicts)
    if names is None:
        names = [f"condition {i + 1} of {count} ({v.rule})" for i, v in enumerate(verdicts)]
    else:
        names = list(names)
        if len(names) != count or not all(isinstance(s, str) for s in names):
            raise ValueError(f"names must be {count} strings, one per verdict, got {names!r}")
    rule = claim if claim is not None else " and ".join(f"({v.rule})" for v in verdicts)
    levels = {v.level for v in verdicts if not math.isnan(v.level)}
    level = levels.pop() if len(levels) == 1 else NAN
    n = min(v.n for v in verdicts)
    for word, verb in (("fails", "fails"), ("undecided", "is undecided")):
        for name, v in zip(names, verdicts, strict=True):
            if v.verdict == word:
                return Verdict(word, NAN, NAN, NAN, n, f"{name} {verb}: {v.reason}", rule, level)
    return Verdict("holds", NAN, NAN, NAN, n,
                   "the condition holds" if count == 1 else f"all {count} conditions hold", rule, level)


def undecided(reason: str, *, estimate: float = NAN, n: int = 0, rule: str = "not evaluated") -> Verdict:
    """An explicitly undecided verdict, e.g. ``undecided("not run at default size: CPU budget")``.

    Args:
        reason: why the claim was not decided (a non-empty string).
        estimate: a point estimate to report, if any.
        n: the number of replicates behind it.
        rule: the rule phrase for the report.

    Returns:
        An undecided :class:`Verdict` with NaN interval and level.

    Raises:
        TypeError: a non-string ``reason``/``rule``, non-numeric ``estimate`` or non-integer ``n``.
        ValueError: an empty ``reason`` or a negative ``n``.
    """
    if not isinstance(reason, str) or not isinstance(rule, str):
        raise TypeError(f"reason and rule must be strings, got {type(reason).__name__} and "
                        f"{type(rule).__name__}")
    if not reason.strip():
        raise ValueError("reason must be a non-empty sentence saying why the claim is undecided")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an integer >= 0, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n}")
    return Verdict("undecided", _real(estimate, "estimate"), NAN, NAN, int(n), reason, rule, NAN)


# ---------------------------------------------------------------------------------------
# The shared core: a mean difference with its standard error and degrees of freedom
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Difference:
    """A point estimate, its standard error and t degrees of freedom, or why there is none.

    ``standard_error == 0`` marks a deterministic quantity: the interval is the point.
    """

    estimate: float
    standard_error: float
    df: float
    n: int
    undecided_reason: str | None

    def interval(self, level: float) -> tuple[float, float]:
        return _t_interval(self.estimate, self.standard_error, self.df, level)

    def describe(self, low: float, high: float, level: float, what: str = "difference") -> str:
        if self.standard_error == 0:
            return f"the deterministic {what} {_fmt(self.estimate)} (zero variance)"
        return f"{_pct(level)} CI [{_fmt(low)}, {_fmt(high)}]"


def _paired_difference(a: np.ndarray, b: np.ndarray) -> _Difference:
    if a.size != b.size:
        raise ValueError(f"paired samples a and b must have the same length (one pair per seed), "
                         f"got {a.size} and {b.size}")
    d, n = a - b, a.size
    if n < 2:
        return _Difference(float(d.mean()), 0.0, 0, n, "fewer than 2 replicates")
    if np.ptp(d) == 0:
        # Compared exactly: round-off in a mean of identical values must not invent a difference.
        reason = "no variation: every paired difference is exactly zero" if d[0] == 0 else None
        return _Difference(float(d[0]), 0.0, n - 1, n, reason)
    return _Difference(float(d.mean()), float(d.std(ddof=1) / math.sqrt(n)), n - 1, n, None)


def _welch_difference(a: np.ndarray, b: np.ndarray) -> _Difference:
    n = min(a.size, b.size)
    if a.size < 2 or b.size < 2:
        return _Difference(float(a.mean() - b.mean()), 0.0, 0, n,
                           f"fewer than 2 replicates (a has {a.size}, b has {b.size})")
    a_constant, b_constant = np.ptp(a) == 0, np.ptp(b) == 0
    if a_constant and b_constant:
        reason = "no variation: both samples are identical constants" if a[0] == b[0] else None
        return _Difference(float(a[0] - b[0]), 0.0, n - 1, n, reason)
    # A constant sample contributes exactly zero variance, not a round-off residue.
    var_a = 0.0 if a_constant else float(a.var(ddof=1)) / a.size
    var_b = 0.0 if b_constant else float(b.var(ddof=1)) / b.size
    # Welch–Satterthwaite degrees of freedom.
    df = (var_a + var_b) ** 2 / (var_a**2 / (a.size - 1) + var_b**2 / (b.size - 1))
    return _Difference(float(a.mean() - b.mean()), math.sqrt(var_a + var_b), df, n, None)


def _t_interval(estimate: float, standard_error: float, df: float, level: float) -> tuple[float, float]:
    """The two-sided ``level`` Student-t interval; the point itself when the error is zero."""
    if standard_error == 0:
        return estimate, estimate
    half_width = float(_scipy_stats.t.ppf(0.5 + level / 2, df)) * standard_error
    return estimate - half_width, estimate + half_width


def _undecided_difference(difference: _Difference, *, rule: str, level: float) -> Verdict:
    return Verdict("undecided", difference.estimate, NAN, NAN, difference.n,
                   difference.undecided_reason, rule, level)


def _decide_against_bound(difference: _Difference, *, bound: float, alternative: str, level: float,
                          rule: str, bound_name: str, what: str = "difference") -> Verdict:
    """``"greater"``: holds if L > bound, fails if H <= bound; ``"less"`` mirrored. Ties fail."""
    if difference.undecided_reason is not None:
        return _undecided_difference(difference, rule=rule, level=level)
    low, high = difference.interval(level)
    text = difference.describe(low, high, level, what=what)
    side = "above" if alternative == "greater" else "below"
    if alternative == "greater":
        holds, fails = low > bound, high <= bound
    else:
        holds, fails = high < bound, low >= bound
    if holds:
        verdict, reason = "holds", f"{text} lies {side} {bound_name} {_fmt(bound)}"
    elif fails:
        verdict, reason = "fails", f"{text} is not {side} {bound_name} {_fmt(bound)}"
    else:
        verdict, reason = "undecided", f"{text} straddles {bound_name} {_fmt(bound)}"
    return Verdict(verdict, difference.estimate, low, high, difference.n, reason, rule, level)


# ---------------------------------------------------------------------------------------
# Validation: every message names the argument and its valid range
# ---------------------------------------------------------------------------------------


def _numeric_array(x, name: str) -> np.ndarray:
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be numeric (a number or an array of numbers), got a string")
    try:
        array = np.asarray(x)
    except Exception as error:  # ragged nested lists and the like
        raise TypeError(f"{name} must be numeric (a number or an array of numbers): {error}") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must be numeric (a number or an array of numbers), got dtype "
                        f"{array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got complex dtype {array.dtype}")
    return array.astype(np.float64)


def _replicates(x, name: str) -> np.ndarray:
    array = _numeric_array(x, name)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per replicate), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty (at least one replicate)")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return array


def _real(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (Real, np.number)) or isinstance(x, np.complexfloating):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    return float(x)


def _finite(x, name: str) -> float:
    value = _real(x, name)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


def _nonnegative(x, name: str) -> float:
    value = _real(x, name)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def _positive(x, name: str) -> float:
    value = _real(x, name)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def _level(x) -> float:
    value = _real(x, "level")
    if not 0 < value < 1:
        raise ValueError(f"level must lie in (0, 1), got {value}")
    return value


def _alternative(x) -> str:
    if x not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {x!r}")
    return x


def _flag(x, name: str) -> bool:
    if not isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(x).__name__}")
    return bool(x)


def _fmt(x: float) -> str:
    """Three significant digits, for reasons and rules."""
    return f"{x + 0.0:.3g}"  # + 0.0 writes a negated zero margin as "0", not "-0"


def _pct(level: float) -> str:
    return f"{100 * level:.4g}%"
