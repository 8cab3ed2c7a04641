r"""Probability that n uniform points in a disk lie in one sector of central angle θ.

Reference: 苏剑林, 《圆内随机n点在同一个圆心角为θ的扇形的概率》, https://kexue.fm/archives/9324
"""

from __future__ import annotations

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import _checks
from diffusionlab.sector import doubledouble as dd
from diffusionlab.sector.checks import FULL_TURN, check_n_array, check_theta, check_turns

METHODS = ("series", "bspline")
"""Evaluation paths of :func:`probability`: the default inclusion–exclusion series with its
double-double stage, and the all-positive B-spline recursion
(:mod:`diffusionlab.sector.bspline`), kept as an independent cross-check."""

MAX_TERMS = 160
r"""Terms of the alternating sum that are evaluated. Outside the cut-off regime the k-th term
is at most :math:`\lambda^k/k!` with :math:`\lambda<34`, so the tail beyond 160 terms is
below :math:`10^{-40}`."""

LOG_COVER_CUT = math.log(2.0**-48)
r"""Where the bound :math:`1-P\le(1-(1-x)^{n-1})^n` drops below :math:`2^{-48}\approx3.6\cdot
10^{-15}` (about :math:`\lambda>33.3`), P is returned as exactly 1. The bound is nearly tight
(measured :math:`1-P\approx0.7e^{-\lambda}` at n = 10^5), so this costs at most 3.6e-15. A
smaller threshold would push the double-double stage to larger λ, where its own error
(:math:`\sim e^{\lambda}\cdot10^{-30}`) reaches an ulp and adjacent values on very fine θ grids
start to swap in the last bit."""

FAST_TOLERANCE = 2.0**-50
"""Absolute error (as estimated from the terms' log-magnitudes) up to which the float64
evaluation is accepted; points above it are evaluated in double-double."""


def gap(theta: jax.Array) -> dd.DD:
    r"""The uncovered fraction :math:`x=1-\theta/2\pi` to double-double accuracy.

    ``fl(1 - θ/2π)`` would carry an absolute error of ~1e-16, which the steep transition of
    :math:`P_n` at large n (slope up to :math:`n/e` in x) would amplify to ~4e-12 at n = 1e5.
    """
    c = jnp.full_like(theta, FULL_TURN)
    q_hi = theta / c
    p = dd.two_prod(q_hi, c)
    remainder = (theta - p.hi) - p.lo  # theta - p.hi is exact (Sterbenz)
    q_lo = remainder / c
    x = dd.two_sum(jnp.ones_like(theta), -q_hi)
    return dd.add_float(x, -q_lo)


def log1m(y: jax.Array) -> jax.Array:
    r"""float64 :math:`\log(1-y)` to a few ulps, by Goldberg's :math:`\log(u)\,y/(1-u)`, u = 1 - y.

    XLA's own ``log1p`` is off by up to ~100 ulps on CPU (measured 2.6e-14 relative), which
    the (n-1)-fold power would amplify; ``log`` itself is accurate. The rounded ``u`` is kept
    opaque so the simplifier cannot fold ``1 - (1 - y)`` back into ``y``.
    """
    u = jax.lax.optimization_barrier(1.0 - y)
    exact = u == 1.0
    return jnp.where(exact, -y, jnp.log(u) * (y / jnp.where(exact, 1.0, 1.0 - u)))


def _representation(n, x_hi):
    """True where the reflected sum (few terms when x is close to 1/n) is the shorter one."""
    return n * x_hi < 2.0


def _fast_path(n, x: dd.DD):
    """Float64 inclusion–exclusion with a running error estimate.

    Returns (P, err, certain, truncation_bound); ``certain`` marks P = 1 exactly.
    """
    use_b = _representation(n, x.hi)
    eps = jnp.finfo(jnp.float64).eps

    def body(k, carry):
        acc, err, log_binom = carry
        kf = jnp.asarray(k, jnp.float64)
        # y = 1 - base with base = 1 - kx (direct) or (n-k)x - 1 (reflected). Both are formed
        # from an error-free product, so that whichever of y and base is small keeps its
        # relative accuracy (the closed form n q^(n-1) at small theta needs base = q exactly).
        multiple = jnp.where(use_b, n - kf, kf)
        product = dd.add_float(dd.two_prod(multiple, x.hi), multiple * x.lo)
        base = jnp.where(use_b, (product.hi - 1.0) + product.lo, (1.0 - product.hi) - product.lo)
        y = jnp.where(use_b, (2.0 - product.hi) - product.lo, product.hi + product.lo)
        valid = (base > 0) & (kf <= n) & (use_b | (k >= 1))
        y_safe = jnp.where(valid, y, 0.0)
        log_base = jnp.where(y_safe < 0.5, log1m(y_safe), jnp.log(jnp.where(valid, base, 1.0)))
        log_power = (n - 1.0) * log_base
        term = jnp.where(valid, jnp.exp(log_binom + log_power), 0.0)
        sign = jnp.where(use_b, 1.0, -1.0) * (1.0 - 2.0 * (k % 2))
        acc = acc + sign * term
        # Relative error of the term: the exponent log C + E carries |log C| + |E| ulps (the
        # base and y are accurate to a few ulps each, which E's (n-1)-fold power turns into
        # another |E|), and the binomial recursion k more.
        weight = 4.0 + kf + jnp.abs(log_binom) + 2.0 * jnp.abs(log_power)
        err = err + jnp.where(valid, term * weight, 0.0)
        log_binom = log_binom + jnp.log(jnp.maximum(n - kf, 1.0) / (kf + 1.0))
        return acc, err, log_binom

    # log of (1 - (1-x)^(n-1))^n, the negative-association bound on 1 - P
    corner = jnp.exp((n - 1.0) * log1m(jnp.minimum(x.hi, 1.0)))
    log_cover_bound = n * log1m(jnp.minimum(corner, 1.0))
    certain = (n == 1.0) | (x.hi <= 0.0) | (log_cover_bound < LOG_COVER_CUT)
    # As many terms as the uncertain points of the batch can have, not always MAX_TERMS.
    num_terms = jnp.max(jnp.where(certain, 1.0, terms_needed(n, x.hi))).astype(jnp.int32)
    zeros = jnp.zeros_like(x.hi)
    acc, err, _ = jax.lax.fori_loop(0, num_terms, body, (zeros, zeros, zeros))
    p = jnp.where(use_b, 1.0 - acc, acc)
    lam = n * corner
    # Terms beyond MAX_TERMS are <= lam^k / k!; bound their sum by the first one times e^lam.
    log_tail = (MAX_TERMS * jnp.log(jnp.maximum(lam, 1e-300))
                - jax.scipy.special.gammaln(MAX_TERMS + 1.0) + lam)
    truncation = jnp.where(use_b, 0.0, jnp.exp(jnp.minimum(log_tail, 700.0)))
    return p, eps * err, certain, truncation


def terms_needed(n, x_hi):
    """An upper bound on the number of non-zero terms (k = 0, 1, ...), capped at MAX_TERMS."""
    inverse = 1.0 / jnp.maximum(x_hi, 1e-300)
    count = jnp.where(_representation(n, x_hi), n - inverse + 2.0, jnp.minimum(n, inverse) + 2.0)
    return jnp.clip(jnp.floor(count), 1.0, float(MAX_TERMS))


def _double_double_path(n, x_hi, x_lo):
    """The same alternating sum in double-double: about 31 significant digits per term."""
    x = dd.DD(x_hi, x_lo)
    use_b = _representation(n, x_hi)
    zeros = jnp.zeros_like(x_hi)
    ln2 = dd.const(dd.LN2, x_hi)

    def step(k, carry):
        acc, binom, binom_exp = carry
        kf = jnp.full_like(x_hi, jnp.asarray(k, jnp.float64))
        remaining = n - kf
        y_direct = dd.mul_float(x, kf)  # k x
        y_reflected = dd.add_float(dd.neg(dd.mul_float(x, remaining)), jnp.full_like(x_hi, 2.0))
        y = jax.tree.map(lambda r, d: jnp.where(use_b, r, d), y_reflected, y_direct)
        below_one = (y.hi < 1.0) | ((y.hi == 1.0) & (y.lo < 0.0))
        valid = below_one & (kf <= n) & (use_b | (k >= 1))
        y = jax.tree.map(lambda v: jnp.where(valid, v, 0.0), y)
        log_power = dd.mul_float(dd.log1m(y), n - 1.0)  # log (1 - y)^(n-1)
        log_term = dd.add(log_power, dd.mul_float(ln2, binom_exp))
        term = dd.mul(binom, dd.exp(log_term))
        sign = jnp.where(use_b, 1.0, -1.0) * (1.0 - 2.0 * (k % 2))
        term = jax.tree.map(lambda v: jnp.where(valid, sign * v, 0.0), term)
        acc = dd.add(acc, term)
        # C(n, k+1) = C(n, k) (n - k) / (k + 1), kept as mantissa * 2**binom_exp
        binom = dd.div(dd.mul_float(binom, jnp.maximum(remaining, 0.0)), dd.from_float(kf + 1.0))
        mant, e = jnp.frexp(binom.hi)
        binom = dd.ldexp(binom, -e)
        return acc, binom, binom_exp + e.astype(jnp.float64)

    init = (dd.from_float(zeros), dd.from_float(jnp.ones_like(x_hi)), zeros)
    # Only as many terms as the chunk's points have (the host sorts points by that count).
    num_terms = jnp.max(terms_needed(n, x_hi)).astype(jnp.int32)
    acc, _, _ = jax.lax.fori_loop(0, num_terms, step, init)
    one_minus = dd.add_float(dd.neg(acc), jnp.ones_like(x_hi))
    return jnp.where(use_b, dd.to_float(one_minus), dd.to_float(acc))


def _fast_kernel(n, theta):
    """Everything but the double-double stage, on flat float64 arrays.

    Returns (P, needs_double_double, x_hi, x_lo, error_estimate, truncation_bound).
    """
    return _fast_kernel_at_gap(n, gap(theta))


def _fast_kernel_turns(n, q_hi, q_lo):
    """As :func:`_fast_kernel`, for the angle given as a double-double fraction of a turn."""
    x = dd.add_float(dd.two_sum(jnp.ones_like(q_hi), -q_hi), -q_lo)
    return _fast_kernel_at_gap(n, x)


def _fast_kernel_at_gap(n, x: dd.DD):
    fast, err, certain, truncation = _fast_path(n, x)
    needs_dd = ~certain & (err > FAST_TOLERANCE)
    p = jnp.where(certain, 1.0, fast)
    return p, needs_dd, x.hi, x.lo, err, truncation


kernel = jax.jit(_fast_kernel)
"""The jitted float64 kernel on flat float64 arrays ``(n, theta)``; call it under
``jax.enable_x64``. One compilation per input length."""

kernel_turns = jax.jit(_fast_kernel_turns)
""":data:`kernel` for angles given as fractions of a turn ``(n, q_hi, q_lo)``."""

double_double_kernel = jax.jit(_double_double_path)
"""The jitted double-double kernel on flat ``(n, x_hi, x_lo)`` chunks of :data:`CHUNK`
points: one compilation in all."""

CHUNK = 256


def _bucket(size: int) -> int:
    """Padded length: the next power of two (at least 8), so kernels compile O(log N) times."""
    return max(8, 1 << (size - 1).bit_length())


def _evaluate(n: np.ndarray, theta: np.ndarray, theta_lo: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """P and the double-double mask for flat float64 arrays (x64 must be on).

    With ``theta_lo`` given, ``(theta, theta_lo)`` is the angle as a double-double fraction
    of a turn instead of radians.
    """
    size = n.size
    pad = _bucket(size) - size
    n_padded = np.concatenate([n, np.ones(pad)])  # n = 1, a full turn: P = 1, no work
    if theta_lo is None:
        theta_padded = np.concatenate([theta, np.full(pad, FULL_TURN)])
        outputs = kernel(jnp.asarray(n_padded), jnp.asarray(theta_padded))
    else:
        outputs = kernel_turns(jnp.asarray(n_padded), jnp.asarray(np.concatenate(
            [theta, np.ones(pad)])), jnp.asarray(np.concatenate([theta_lo, np.zeros(pad)])))
    outputs = jax.device_get(outputs)
    p, needs_dd, x_hi, x_lo = (v[:size] for v in outputs[:4])
    p = np.array(p)
    index = np.flatnonzero(needs_dd)
    # sorted by their number of terms, so that each chunk stops early and uniformly
    index = index[np.argsort(np.asarray(terms_needed(n[index], x_hi[index])), kind="stable")]
    # The points that need double-double are batched in fixed-size chunks (one compile);
    # their number is small, so this Python loop runs over chunks, never over samples.
    for start in range(0, index.size, CHUNK):
        part = index[start:start + CHUNK]
        pad = CHUNK - part.size
        args = [np.concatenate([v[part], np.full(pad, fill)])
                for v, fill in ((n, 1.0), (x_hi, 0.5), (x_lo, 0.0))]
        p[part] = np.asarray(double_double_kernel(*args))[:part.size]
    return np.clip(p, 0.0, 1.0), np.asarray(needs_dd)


def _run(method: str, n, theta, theta_lo=None) -> np.ndarray:
    """Dispatches flat float64 inputs to the chosen path (x64 on)."""
    if method == "bspline":
        from diffusionlab.sector import bspline  # it builds on this module's gap and log1m
        return bspline.evaluate(n, theta, theta_lo)
    return _evaluate(n, theta, theta_lo)[0]


def probability(n, theta, *, method: str = "series") -> np.ndarray:
    r"""Probability :math:`P_n(\theta)` that n uniform points in a disk fit in one sector.

    Only the angles matter, and the points fit in a sector of angle θ iff the largest of the
    n circular gaps is at least :math:`2\pi-\theta`. With :math:`x=1-\theta/2\pi`,

    .. math:: P_n(\theta)=\sum_{k\ge1}(-1)^{k-1}\binom nk(1-kx)_+^{\,n-1}
              =1-\sum_{k\ge0}(-1)^k\binom nk\big((n-k)x-1\big)_+^{\,n-1}.

    **Evaluation.** The plain alternating sum cancels catastrophically: for large n and θ
    above π its terms are like :math:`\lambda^k/k!` with :math:`\lambda=n(1-x)^{n-1}`, up to
    :math:`e^{\lambda}` times larger than the result, and float64 loses
    :math:`\log_{10}e^\lambda` digits (all of them by :math:`n\approx100`). The kernel
    therefore works by regime, all inside one jitted function:

    1. Pigeonhole and cut-off. Uniform spacings are negatively associated, so
       :math:`0\le1-P\le(1-(1-x)^{n-1})^n\le e^{-\lambda}`. Where this bound is below
       :data:`LOG_COVER_CUT` (:math:`2^{-48}`), exactly 1 is returned (as for n = 1, θ = 2π
       and :math:`\theta\ge2\pi(1-1/n)`). This covers exactly the worst cancellation.
    2. Float64. Each term is :math:`\exp(\log\binom nk+(n-1)\,\mathrm{log1p}(-kx))`, and
       its rounding error is estimated from the log-magnitudes (:math:`|\log T_k|` ulps).
       The shorter of the two sums is used (the reflected one near the pigeonhole
       boundary, where it needs a single term). If the estimated absolute error is at most
       :data:`FAST_TOLERANCE` (:math:`2^{-50}`), the result is kept.
    3. Double-double. The remaining points, where λ is moderate (at most about 33, so the
       terms are at most about :math:`e^{33}\approx2\cdot10^{14}`), are recomputed in
       double-double arithmetic (~31 digits, :mod:`diffusionlab.sector.doubledouble`) with
       :math:`\log(1-kx)` formed from kx itself, which leaves about 15 correct digits after
       the cancellation. They are gathered and batched in fixed-size chunks, so the cost
       scales with their number and the kernel compiles once.

    The result is clipped to [0, 1]. Measured against exact and 80-digit references, the
    absolute error stays below :math:`4\cdot10^{-15}` for all n ≤ 10^5 (see the tests and
    the ``sector_large_n`` experiment); it is a few ulps except next to the cut-off. The
    result is non-decreasing in θ on the tested grids (down to ~1e-7 rad spacing near
    the cut-off at n = 10^5, where double-double's last-ulp noise sets the limit).

    **Second path** (``method="bspline"``). The coverage sum is a scaled Irwin–Hall density,
    :math:`1-P_n=(n-1)!\,x^{n-1}M_n(1/x)` with :math:`M_n` the cardinal B-spline of order
    n, and de Boor's recursion evaluates it with positive terms only
    (:mod:`diffusionlab.sector.bspline`): no cancellation, so no double-double, but
    :math:`O(n\min(1/x,\,n-1/x))` work per point instead of at most 160 terms. Its error is
    absolute, a few :math:`\sqrt n` ulps (measured 8e-14 at n = 10^5; the series: 0 at the
    same points). ``benchmarks/sector.py`` measured it 3.3x slower on random n ≤ 1000
    (2.0e4 against 6.6e4 evaluations/s, 2 busy cores) and 27 s against 0.04 s per point at
    n = 10^5; it is faster only at small n (about 2x for n ≤ 50). So the series is the
    default, and the recursion checks it in the tests. Both share step 1 (the cut-off) and,
    for θ ≤ π, the single term.

    **Input rounding.** θ is read in units of the float64 full turn :data:`FULL_TURN`
    (``2 * np.pi``), so ``np.pi`` means exactly half a turn. A float θ cannot represent an
    angle such as :math:`2\pi\cdot0.9999` exactly. Near the steep transition at large n,
    where :math:`|dP/dx|` reaches about :math:`n/e`, half an ulp of θ then moves P by up to
    about :math:`n\cdot10^{-17}\cdot0.4` (about :math:`2.6\cdot10^{-12}` at n = 10^5). That is
    the conditioning of the question asked, not an error of the evaluation; use
    :func:`probability_exact` for exact rational angles.

    Args:
      n: number of points, array-like of integers :math:`\ge1` (broadcast against theta).
      theta: central angle in radians, array-like with :math:`0<\theta\le2\pi`.
      method: ``"series"`` (default) or ``"bspline"`` (see *Second path*).

    Returns:
      A float64 NumPy array of the broadcast shape, in [0, 1].

    Raises:
      ValueError: n not an integer in [1, 2**53] (in [1, 2**24] for ``"bspline"``), theta
        outside (0, 2π] or NaN, or method not one of :data:`METHODS`.
      TypeError: method not a string.

    Reference: 苏剑林, 《圆内随机n点在同一个圆心角为θ的扇形的概率》,
    https://kexue.fm/archives/9324 ; W. L. Stevens (1939), Annals of Eugenics 9:315–320.
    """
    _checks.check_choice(method, "method", METHODS)
    n_values = check_n_array(n)
    theta_values = check_theta(theta)
    try:
        n_b, theta_b = np.broadcast_arrays(n_values, theta_values)
    except ValueError:
        raise ValueError(
            f"n and theta must broadcast, got shapes {np.shape(n_values)} and "
            f"{np.shape(theta_values)}") from None
    shape = n_b.shape
    if n_b.size == 0:
        return np.zeros(shape, np.float64)
    with jax.enable_x64(True):
        p = _run(method, n_b.ravel().astype(np.float64), theta_b.ravel().astype(np.float64))
    return p.reshape(shape)


def probability_turns(n, q, *, method: str = "series") -> np.ndarray:
    r""":func:`probability` at :math:`\theta=2\pi q`, with the fraction of a turn given exactly.

    A float θ rounds an angle such as :math:`2\pi\cdot\tfrac{9999}{10000}`; near the steep
    transition at large n that alone moves P by up to ~1e-12 (see :func:`probability`). Here
    q may be a :class:`fractions.Fraction` (or an array of them), carried into the kernel as a
    double-double pair, so the result matches :func:`probability_exact` to the kernel's own
    accuracy. Floats are taken at their exact value.

    Args:
      n: number of points, array-like of integers :math:`\ge1`.
      q: :math:`\theta/2\pi`, array-like of Fractions, ints or floats in (0, 1].
      method: ``"series"`` (default) or ``"bspline"``, as in :func:`probability`.

    Returns:
      A float64 NumPy array of the broadcast shape.

    Raises:
      ValueError: n not an integer in [1, 2**53] (in [1, 2**24] for ``"bspline"``), q not in
        (0, 1], or method not one of :data:`METHODS`.
      TypeError: method not a string.
    """
    _checks.check_choice(method, "method", METHODS)
    n_values = check_n_array(n)
    q_values = np.asarray(q, dtype=object)
    turns = np.vectorize(check_turns, otypes=[object])(q_values) if q_values.size else q_values
    q_hi = np.vectorize(float, otypes=[np.float64])(turns) if turns.size else np.zeros(0)
    q_lo = (np.vectorize(lambda t, h: float(t - Fraction(h)), otypes=[np.float64])(turns, q_hi)
            if turns.size else np.zeros(0))
    try:
        n_b, q_hi, q_lo = np.broadcast_arrays(n_values, np.reshape(q_hi, turns.shape),
                                              np.reshape(q_lo, turns.shape))
    except ValueError:
        raise ValueError(f"n and q must broadcast, got shapes {np.shape(n_values)} and "
                         f"{turns.shape}") from None
    if n_b.size == 0:
        return np.zeros(n_b.shape, np.float64)
    with jax.enable_x64(True):
        p = _run(method, n_b.ravel().astype(np.float64), q_hi.ravel().astype(np.float64),
                 q_lo.ravel().astype(np.float64))
    return p.reshape(n_b.shape)
