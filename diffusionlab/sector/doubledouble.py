r"""Double-double arithmetic in JAX: about 106 significant bits from pairs of float64.

A double-double number is a pair ``(hi, lo)`` of float64 arrays with value ``hi + lo`` and
:math:`|lo|\le\tfrac12\mathrm{ulp}(hi)`. The unit roundoff is :math:`u\approx2^{-104}`.
The sector solver needs it where the inclusion–exclusion sum cancels: there its terms are up
to :math:`e^{37}` times larger than the result, so float64 (16 digits) cannot give 12 correct
digits, while double-double (31 digits) can.

Two choices keep the error-free transformations valid under any compiler:

* ``split`` truncates the significand with a bit mask instead of Dekker's
  ``(2**27 + 1) * a`` trick, and ``two_prod`` is assembled from the exact partial products
  only: XLA contracts ``x * y - z`` into a fused multiply-add (measured on CPU), which breaks
  the textbook formulas but cannot change a product that is already exact. The price is one
  partial product rounding at :math:`2^{-103}` relative, far below what the solver needs.
* The rounded sum or product at the heart of ``two_sum``/``two_prod`` passes through an
  optimization barrier: XLA's algebraic simplifier otherwise folds ``(c + b) - c`` to ``b``
  when ``c`` is a constant, silently dropping the captured rounding error.

All functions require float64 inputs, i.e. ``jax.enable_x64`` on. Coefficient tables are
computed exactly with :class:`fractions.Fraction` at import.

Reference: T. J. Dekker (1971), "A floating-point technique for extending the available
precision"; Y. Hida, X. S. Li, D. H. Bailey (2001), "Algorithms for quad-double precision
floating point arithmetic".
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class DD(NamedTuple):
    """A double-double number ``hi + lo`` (float64 arrays of one shape)."""

    hi: jax.Array
    lo: jax.Array


def _dd_constant(value: Fraction) -> tuple[float, float]:
    """Rounds an exact rational to a double-double pair (hi, lo)."""
    hi = float(value)
    lo = float(value - Fraction(hi))
    return hi, lo


def _ln2() -> Fraction:
    with localcontext() as ctx:
        ctx.prec = 60
        return Fraction(Decimal(2).ln())


LN2 = _dd_constant(_ln2())
# The third word of log 2, so that m * log 2 stays exact to ~2**-150 for |m| < 2**11.
_LN2_TAIL = float(_ln2() - Fraction(LN2[0]) - Fraction(LN2[1]))
# 1 / (2j + 1) for the atanh series of log, and 1 / j! for the Taylor series of expm1.


def _table(values: list[Fraction]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [_dd_constant(v) for v in values]
    return np.array([h for h, _ in pairs]), np.array([lo for _, lo in pairs])


_ATANH_COEFFS = _table([Fraction(1, 2 * j + 1) for j in range(22)])
_EXPM1_COEFFS = _table([Fraction(1, math.factorial(j)) for j in range(1, 13)])
_EXP_HALVINGS = 6  # exp(r) = (exp(r / 2**6))**(2**6), |r / 2**6| <= 0.0055


def const(value: float | tuple[float, float], like: jax.Array) -> DD:
    """A double-double constant broadcast to the shape of ``like``."""
    hi, lo = value if isinstance(value, tuple) else (value, 0.0)
    return DD(jnp.full_like(like, hi), jnp.full_like(like, lo))


def from_float(a: jax.Array) -> DD:
    return DD(a, jnp.zeros_like(a))


def to_float(a: DD) -> jax.Array:
    return a.hi + a.lo


def _opaque(s: jax.Array) -> jax.Array:
    """Hides a rounded result from XLA's algebraic simplifier.

    Without it XLA rewrites ``(c + b) - c`` into ``b`` when ``c`` is a constant, which is
    exact algebra but erases the rounding error that ``two_sum`` exists to capture.
    """
    return jax.lax.optimization_barrier(s)


def two_sum(a: jax.Array, b: jax.Array) -> DD:
    """Knuth's error-free sum: ``s + e == a + b`` exactly, ``s = fl(a + b)``."""
    s = _opaque(a + b)
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return DD(s, e)


def quick_two_sum(a: jax.Array, b: jax.Array) -> DD:
    """Error-free sum when ``|a| >= |b|`` (or ``a == 0``)."""
    s = _opaque(a + b)
    return DD(s, b - (s - a))


_HIGH_BITS = np.uint64(0xFFFF_FFFF_F800_0000)  # keep the leading 26 significant bits


def split(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``a = a_hi + a_lo`` exactly, with ``a_hi`` holding at most 26 significant bits."""
    bits = jax.lax.bitcast_convert_type(a, jnp.uint64)
    a_hi = jax.lax.bitcast_convert_type(bits & _HIGH_BITS, jnp.float64)
    return a_hi, a - a_hi


def two_prod(a: jax.Array, b: jax.Array) -> DD:
    """``p + e == a * b`` to within :math:`2^{-103}|ab|` (exact when ``a`` has <= 26 bits).

    Built only from the split halves, whose products are exact: XLA's CPU and GPU backends
    contract ``x * y - z`` into a fused multiply-add, which would change ``fl(a * b)`` in one
    place but not another; products that are already exact are immune to that.
    """
    a_hi, a_lo = split(a)
    b_hi, b_lo = split(b)
    s, e1 = two_sum(a_hi * b_hi, a_hi * b_lo)
    p, e2 = two_sum(s, a_lo * b_hi)
    return quick_two_sum(p, (e1 + e2) + a_lo * b_lo)


def neg(a: DD) -> DD:
    return DD(-a.hi, -a.lo)


def add(a: DD, b: DD) -> DD:
    """Double-double sum, the accurate (IEEE-style) variant."""
    s, e = two_sum(a.hi, b.hi)
    t, f = two_sum(a.lo, b.lo)
    s, e = quick_two_sum(s, e + t)
    return quick_two_sum(s, e + f)


def sub(a: DD, b: DD) -> DD:
    return add(a, neg(b))


def add_float(a: DD, b: jax.Array) -> DD:
    s, e = two_sum(a.hi, b)
    return quick_two_sum(s, e + a.lo)


def mul(a: DD, b: DD) -> DD:
    p, e = two_prod(a.hi, b.hi)
    return quick_two_sum(p, e + (a.hi * b.lo + a.lo * b.hi))


def mul_float(a: DD, b: jax.Array) -> DD:
    """``a * b`` for a float64 ``b``; exact in the leading product when ``b`` is a small integer."""
    p, e = two_prod(b, a.hi)
    return quick_two_sum(p, e + a.lo * b)


def div(a: DD, b: DD) -> DD:
    """Long division with three float64 quotient digits."""
    q1 = a.hi / b.hi
    r = sub(a, mul_float(b, q1))
    q2 = r.hi / b.hi
    r = sub(r, mul_float(b, q2))
    q3 = r.hi / b.hi
    return add_float(quick_two_sum(q1, q2), q3)


def ldexp(a: DD, e: jax.Array) -> DD:
    """``a * 2**e`` (exact unless it under- or overflows)."""
    return DD(jnp.ldexp(a.hi, e), jnp.ldexp(a.lo, e))


def _poly(coeffs: tuple[np.ndarray, np.ndarray], w: DD) -> DD:
    r"""Horner evaluation of :math:`\sum_j c_j w^j` with double-double coefficients.

    A ``fori_loop`` rather than an unrolled Python loop keeps the compiled graph small.
    """
    hi, lo = (jnp.asarray(c) for c in coeffs)
    last = hi.shape[0] - 1

    def body(i, acc):
        j = last - 1 - i
        return add(mul(acc, w), DD(jnp.full_like(w.hi, hi[j]), jnp.full_like(w.hi, lo[j])))

    start = DD(jnp.full_like(w.hi, hi[last]), jnp.full_like(w.hi, lo[last]))
    return jax.lax.fori_loop(0, last, body, start)


def log1m(y: DD) -> DD:
    r"""Natural log of :math:`1-y` for :math:`0\le y<1`, accurate relative to the result.

    .. math:: \log(1-y)=e\log2+2\,\mathrm{atanh}\,z,\qquad
              \mathrm{atanh}\,z=\sum_{j\ge0}\frac{z^{2j+1}}{2j+1},\quad |z|\le0.18.

    For :math:`y\le0.3`, :math:`z=-y/(2-y)` is formed from ``y`` itself, so a small ``y``
    keeps its relative accuracy (``1 - y`` would round it away). Otherwise :math:`1-y` is
    exact, scaled by :math:`2^{-e}` into :math:`[1/\sqrt2,\sqrt2)`, and :math:`z=(m-1)/(m+1)`.
    """
    small = y.hi <= 0.3
    one = const(1.0, y.hi)
    b = sub(one, y)
    mant, e = jnp.frexp(b.hi)
    e = jnp.where(mant < math.sqrt(0.5), e - 1, e)
    e = jnp.where(small, 0, e)
    m = ldexp(b, -e)
    num = jax.tree.map(lambda s, big: jnp.where(small, s, big), neg(y), sub(m, one))
    den = jax.tree.map(lambda s, big: jnp.where(small, s, big), sub(const(2.0, y.hi), y),
                       add(m, one))
    z = div(num, den)
    series = _poly(_ATANH_COEFFS, mul(z, z))
    atanh2 = mul_float(mul(z, series), jnp.full_like(y.hi, 2.0))
    return add(atanh2, mul_float(const(LN2, y.hi), e.astype(jnp.float64)))


def exp(a: DD) -> DD:
    r"""Exponential, relative error of a few :math:`u`; zero below :math:`e^{-745}`.

    .. math:: e^a=2^m\big(1+\mathrm{expm1}(r/2^s)\big)^{2^s},\qquad a=m\log2+r,\ |r|\le\tfrac12\log2,

    with the squarings done on :math:`\mathrm{expm1}` (:math:`t\mapsto t(2+t)`) so that no
    digits are lost to the leading 1.
    """
    underflow = a.hi < -745.0
    a = jax.tree.map(lambda v: jnp.where(underflow, 0.0, v), a)
    m = jnp.round(a.hi / LN2[0])
    # m is an integer of at most 11 bits, so both products are exact.
    m_ln2 = add(two_prod(m, jnp.full_like(m, LN2[0])), two_prod(m, jnp.full_like(m, LN2[1])))
    r = sub(add_float(a, -m * _LN2_TAIL), m_ln2)
    r = ldexp(r, jnp.full(m.shape, -_EXP_HALVINGS, jnp.int32))
    t = mul(r, _poly(_EXPM1_COEFFS, r))
    two = jnp.full_like(m, 2.0)
    t = jax.lax.fori_loop(0, _EXP_HALVINGS, lambda _, t: mul(t, add_float(t, two)), t)
    result = ldexp(add_float(t, jnp.ones_like(m)), m.astype(jnp.int32))
    return jax.tree.map(lambda v: jnp.where(underflow, 0.0, v), result)
