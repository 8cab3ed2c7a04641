r"""The sector probability from an all-positive recursion: Cox–de Boor for the Irwin–Hall density.

With the uncovered fraction :math:`x=1-\theta/2\pi`, the probability that the n gaps all stay
below x (the arcs cover the circle) is a scaled Irwin–Hall density, i.e. a cardinal B-spline
:math:`M_n` of order n:

.. math:: 1-P_n(\theta)=\sum_{k\ge0}(-1)^k\binom nk(1-kx)_+^{\,n-1}=(n-1)!\,x^{n-1}M_n(1/x).

The alternating sum cancels; the B-spline recursion (Cox–de Boor, cardinal knots)

.. math:: M_m(s)=\frac{s\,M_{m-1}(s)+(m-s)\,M_{m-1}(s-1)}{m-1},\qquad M_1=\mathbf 1_{[0,1)},

does not: both weights are positive on the support. Scaled by :math:`(m-1)!\,x^{m-1}`, the
values :math:`g_m(j)=(m-1)!\,x^{m-1}M_m(1/x-j)` obey

.. math:: g_m(j)=(1-jx)\,g_{m-1}(j)+\big((m+j)x-1\big)\,g_{m-1}(j+1),\qquad
          1-P_n=g_n(0),

a sum of two non-negative terms, so every entry keeps its relative accuracy: after n steps
the relative error is at most about :math:`3n` ulps (measured: a few :math:`\sqrt n` ulps).
The weights :math:`1-ux` are formed from an exact product of the integer u with the split
double-double x, so they too are accurate to an ulp of themselves, also near a knot.

The entries span far more than float64's range at large n (the answer is of order 1, while
intermediate entries fall below :math:`2^{-5000}` at n = 10^5 and differ across the window by
more than :math:`2^{1022}`), so each entry carries its own exponent; terms that underflow
against their partner in a sum are flushed to zero, which costs nothing relative to the sum.
Rescaling the window by one common factor per step is not enough: it was measured to lose
the entries that make up the answer at n = 5000 when flushing below :math:`2^{-600}` of the
window's largest entry, and at n = 20000 even at float64's own underflow.

Cost is :math:`O(n\cdot\min(1/x,\ n-1/x))` per point: the window of :math:`g` holds
:math:`\lfloor1/x\rfloor+1` entries, or, through the symmetry :math:`M_n(s)=M_n(n-s)`,
:math:`\lfloor n-1/x\rfloor+1`. That is far more work than the inclusion–exclusion series at
large n (at most 160 terms), which is why :func:`~diffusionlab.sector.probability` uses the
series by default and this recursion is the independent cross-check (``method="bspline"``).

Reference: 苏剑林, 《圆内随机n点在同一个圆心角为θ的扇形的概率》, https://kexue.fm/archives/9324 ;
C. de Boor (1972), "On calculating with B-splines", J. Approx. Theory 6:50–62; J. O. Irwin
(1927) and P. Hall (1927), Biometrika 19.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab.sector import doubledouble as dd
from diffusionlab.sector import solver

MAX_N = 2**24
"""Largest n for the recursion: the integer multipliers u <= n + window stay below 2**26, so
``u * x`` splits into exact products (see :func:`one_minus_multiple`)."""

RENORMALIZE_EVERY = 8
"""Steps between renormalisations of the mantissas. In one step a mantissa grows at most by
the sum of its two weights (:math:`<n+1<2^{25}`) and shrinks at most by the larger weight, so
8 steps stay far inside the float64 range."""

CHUNK_ELEMENTS = 2**15
"""Window times rows per compiled chunk: a chunk's arrays stay in cache."""

_ZERO_EXPONENT = -(2**40)
"""The exponent carried by an entry that is exactly zero: below any real one (those stay
above :math:`-2^{32}` for n < 2^24), so a zero never sets the scale of a sum."""


def one_minus_multiple(u, x_split):
    r""":math:`1-u\,x` for integer-valued float ``u`` with :math:`|u|<2^{26}`, to an ulp of itself.

    ``x_split = (x1, x2, x_lo)`` with :math:`x_{hi}=x_1+x_2` split into halves of at most 26
    and 27 significant bits, so :math:`u x_1` and :math:`u x_2` are exact. When
    :math:`u x\approx1`, :math:`1-u x_1` is exact (Sterbenz), and the rest is small: the
    result carries one rounding relative to itself plus :math:`2^{-104}` absolute, however
    close :math:`1/x` lies to a knot. The products pass an optimization barrier so that the
    simplifier cannot merge them back into one rounded :math:`u\,x_{hi}`.
    """
    x1, x2, x_lo = x_split
    p1, p2 = jax.lax.optimization_barrier((u * x1, u * x2))
    return ((1.0 - p1) - p2) - u * x_lo


def _power_of_two(d):
    """:math:`2^d` for int64 ``d <= 0``, built from the bits (0 below :math:`2^{-1022}`)."""
    bits = (jnp.maximum(d, -1023) + 1023) << 52
    return jax.lax.bitcast_convert_type(bits, jnp.float64)


def _normalize(a, e):
    """``(mantissa in [1/2, 1), exponent)`` with ``a 2**e`` unchanged; zeros get the zero exponent."""
    bits = jax.lax.bitcast_convert_type(a, jnp.int64)
    mantissa = jax.lax.bitcast_convert_type((bits & ((1 << 52) - 1)) | (1022 << 52), jnp.float64)
    positive = a >= np.finfo(np.float64).tiny  # a subnormal (where not flushed) counts as 0
    return (jnp.where(positive, mantissa, 0.0),
            jnp.where(positive, e + (bits >> 52) - 1022, _ZERO_EXPONENT))


@functools.partial(jax.jit, static_argnames=("width",))
def cover_kernel(n, x_hi, x_lo, *, width):
    r"""Coverage probability :math:`1-P_n=g_n(0)` by the scaled Cox–de Boor recursion.

    Flat float64 arrays of one length R (the rows of a chunk); ``width`` W (static) must
    exceed :math:`\min(1/x,\ n-1/x)+2` for every row with :math:`nx>1` and :math:`x<1/2`.
    Rows with :math:`1/x>n/2` run on the reflected knot sequence :math:`s=n-1/x`, where

    .. math:: g_m(j)=\big((n-j)x-1\big)g_{m-1}(j)+\big(1-(n-m-j)x\big)g_{m-1}(j+1).

    **Scaling.** Every entry is a float64 mantissa with its own int64 exponent. One scale
    per row is not enough: across the window the entries span far more than float64's
    :math:`2^{\pm1022}` at large n (at n = 20000 a per-row rescaled window loses the entries
    that make up the answer and returns 0 for a coverage of 0.6), while each sum of two
    positive terms only needs their common exponent. Terms more than :math:`2^{1022}` below
    their partner flush to zero, which costs nothing relative to the sum.

    The window is stored W x R (the window index is the major axis), so the shift
    :math:`j\to j+1` moves contiguous rows. One ``fori_loop`` over blocks of
    :data:`RENORMALIZE_EVERY` steps m = 2..max(n); rows with a smaller n stop changing at
    their n. Returns the float64 coverage probability per row.
    """
    x1, x2 = dd.split(x_hi)
    x_split = (x1[None, :], x2[None, :], x_lo[None, :])
    n_1xR = n[None, :]
    j_Wx1 = jnp.arange(width, dtype=jnp.float64)[:, None]
    reflect_1xR = (1.0 / x_hi > 0.5 * n)[None, :]

    def weight_next(m, j):
        """Weight of g_{m-1}(j + 1): (m + j)x - 1, or 1 - (n - m - j)x when reflected."""
        c = one_minus_multiple(jnp.where(reflect_1xR, n_1xR - m - j, m + j), x_split)
        return jnp.maximum(jnp.where(reflect_1xR, c, -c), 0.0)

    # weight of g_{m-1}(j): 1 - jx, or (n - j)x - 1 when reflected; the same for every m
    c_here = one_minus_multiple(jnp.where(reflect_1xR, n_1xR - j_Wx1, j_Wx1), x_split)
    c_next = one_minus_multiple(jnp.where(reflect_1xR, n_1xR - j_Wx1 - 1.0, j_Wx1 + 1.0),
                                x_split)
    weight_own = jnp.maximum(jnp.where(reflect_1xR, -c_here, c_here), 0.0)
    # g_1(j) = M_1(s - j) = 1 on the knot interval [j, j + 1) that holds s
    first = jnp.where(reflect_1xR, (c_here <= 0.0) & (c_next > 0.0),
                      (c_here >= 0.0) & (c_next < 0.0))
    mantissa = first.astype(jnp.float64)
    exponent = jnp.where(first, 0, _ZERO_EXPONENT).astype(jnp.int64)
    last = float(width - 1)

    def up(a, fill):
        return jnp.concatenate([a[1:], jnp.full_like(a[:1], fill)], axis=0)

    def step(m, carry):
        mantissa, exponent, w_next = carry
        mf = jnp.asarray(m, jnp.float64)
        mantissa_up, exponent_up = up(mantissa, 0.0), up(exponent, _ZERO_EXPONENT)
        common = jnp.maximum(exponent, exponent_up)
        new = (weight_own * mantissa * _power_of_two(exponent - common)
               + w_next * mantissa_up * _power_of_two(exponent_up - common))
        active = mf <= n_1xR
        mantissa = jnp.where(active, new, mantissa)
        exponent = jnp.where(active, jnp.where(new > 0.0, common, _ZERO_EXPONENT), exponent)
        # (m + 1 + j) = m + (j + 1): the next weights are these moved up by one, plus one
        w_next = jnp.concatenate([w_next[1:], weight_next(mf + 1.0, last)], axis=0)
        return mantissa, exponent, w_next

    def block(b, carry):
        start = 2 + RENORMALIZE_EVERY * b
        mantissa, exponent, w_next = jax.lax.fori_loop(
            start, start + RENORMALIZE_EVERY, step, carry)
        return (*_normalize(mantissa, exponent), w_next)

    blocks = (jnp.max(n).astype(jnp.int32) + RENORMALIZE_EVERY - 2) // RENORMALIZE_EVERY
    mantissa, exponent, _ = jax.lax.fori_loop(
        0, blocks, block, (mantissa, exponent, weight_next(2.0, j_Wx1)))
    # the result is at most 1, so its exponent is at most 1 and fits ldexp's int32
    return jnp.ldexp(mantissa[0], jnp.maximum(exponent[0], -2000).astype(jnp.int32))


def _prelude(n, x: dd.DD):
    """Everything but the recursion: the certain and single-term points, and who needs more.

    Returns (P where known, needs_recursion, x_hi, x_lo, window needed).
    """
    x_split = (*dd.split(x.hi), x.lo)
    # the pigeonhole regime n x <= 1 (theta >= 2 pi (1 - 1/n)), exactly: 1 - n x >= 0
    pigeonhole = one_minus_multiple(n, x_split) >= 0.0
    corner = jnp.exp((n - 1.0) * solver.log1m(jnp.clip(x.hi, 0.0, 1.0)))
    log_cover_bound = n * solver.log1m(jnp.minimum(corner, 1.0))
    certain = (n == 1.0) | (x.hi <= 0.0) | pigeonhole | (log_cover_bound < solver.LOG_COVER_CUT)
    # theta <= pi (x >= 1/2): one positive term, P = n q^(n-1), q = 1 - x exact to an ulp
    q = (1.0 - x.hi) - x.lo
    half_turn = x.hi >= 0.5
    single = jnp.exp(jnp.log(n) + (n - 1.0) * jnp.log(jnp.where(half_turn, q, 1.0)))
    p = jnp.where(certain, 1.0, jnp.where(half_turn, single, jnp.nan))
    needs = ~certain & ~half_turn
    t = 1.0 / jnp.where(needs, x.hi, 1.0)
    window = jnp.where(needs, jnp.floor(jnp.minimum(t, n - t)) + 3.0, 0.0)
    return p, needs, x.hi, x.lo, window


@jax.jit
def prelude_kernel(n, theta):
    """:func:`_prelude` at the float angle ``theta`` (radians), on flat float64 arrays."""
    return _prelude(n, solver.gap(theta))


@jax.jit
def prelude_kernel_turns(n, q_hi, q_lo):
    """:func:`_prelude` at the double-double fraction of a turn ``q_hi + q_lo``."""
    return _prelude(n, dd.add_float(dd.two_sum(jnp.ones_like(q_hi), -q_hi), -q_lo))


def _bucket(size: int, smallest: int = 8) -> int:
    return max(smallest, 1 << (int(size) - 1).bit_length())


def evaluate(n: np.ndarray, theta: np.ndarray, theta_lo: np.ndarray | None = None) -> np.ndarray:
    """P for flat float64 arrays (x64 must be on); ``theta_lo`` given: turns, as in the series.

    The points that need the recursion are grouped by window (a power of two) and sorted by n
    inside each group, then run in chunks of :data:`CHUNK_ELEMENTS`: a chunk's loop runs to
    its largest n, so sorting keeps the idle rows few. One compilation per (rows, window)
    bucket; the Python loop runs over chunks, never over points or steps.
    """
    if n.size and n.max() > MAX_N:
        raise ValueError(f"n must be an integer in [1, {MAX_N}] for method='bspline' "
                         f"(2**24), got {n.max():.0f}")
    size = n.size
    pad = solver._bucket(size) - size
    n_padded = np.concatenate([n, np.ones(pad)])
    if theta_lo is None:
        out = prelude_kernel(jnp.asarray(n_padded),
                             jnp.asarray(np.concatenate([theta, np.full(pad, solver.FULL_TURN)])))
    else:
        out = prelude_kernel_turns(jnp.asarray(n_padded),
                                   jnp.asarray(np.concatenate([theta, np.ones(pad)])),
                                   jnp.asarray(np.concatenate([theta_lo, np.zeros(pad)])))
    p, needs, x_hi, x_lo, window = (np.asarray(v)[:size] for v in jax.device_get(out))
    p = np.array(p)
    index = np.flatnonzero(needs)
    widths = np.array([_bucket(w) for w in window[index]], dtype=np.int64)
    for width in np.unique(widths):
        group = index[widths == width]
        group = group[np.argsort(n[group], kind="stable")]
        rows_max = max(1, CHUNK_ELEMENTS // int(width))
        for start in range(0, group.size, rows_max):
            part = group[start:start + rows_max]
            rows = min(rows_max, _bucket(part.size, smallest=1))
            fill = rows - part.size  # n = 1 rows take no steps
            args = [np.concatenate([v[part], np.full(fill, value)])
                    for v, value in ((n, 1.0), (x_hi, 0.75), (x_lo, 0.0))]
            cover = np.asarray(cover_kernel(*map(jnp.asarray, args), width=int(width)))
            p[part] = 1.0 - cover[:part.size]
    return np.clip(p, 0.0, 1.0)
