r"""Exact rational sector probability, and the input checks shared by the whole module.

Reference: 苏剑林, 《圆内随机n点在同一个圆心角为θ的扇形的概率》, https://kexue.fm/archives/9324
"""

from __future__ import annotations

from fractions import Fraction

from diffusionlab import _checks
from diffusionlab.sector.checks import check_n, check_turns

MAX_EXACT_WORK = 10**11
"""Terms times bits per term above which the exact sum is refused (about a minute of work)."""


def probability_exact(n: int, q: Fraction | int | str) -> Fraction:
    r"""Exact :math:`P_n(\theta)` for :math:`\theta=2\pi q` with rational :math:`q\in(0,1]`.

    With the uncovered fraction :math:`x=1-q`, inclusion–exclusion over the :math:`n` circular
    gaps of the points' angles gives

    .. math:: P_n=\sum_{k=1}^{n}(-1)^{k-1}\binom nk(1-kx)_+^{\,n-1}
              =1-\sum_{k=0}^{n}(-1)^k\binom nk\big((n-k)x-1\big)_+^{\,n-1}.

    The second form is the reflection :math:`f_n(t)=f_n(n-t)` of the Irwin–Hall density
    (:math:`1-P_n=(n-1)!\,x^{n-1}f_n(1/x)`); it has :math:`\lceil n-1/x\rceil` terms instead
    of :math:`\lceil 1/x\rceil-1`, and the shorter sum is used. Every term is an integer over
    the common denominator :math:`b^{n-1}` (:math:`x=a/b`), so the result is exact; the cost
    is one big-integer power per term, e.g. about 0.04 s per term at :math:`n=10^5`.

    Args:
      n: number of points, an integer :math:`\ge1`.
      q: :math:`\theta/2\pi` as a rational in :math:`(0,1]`: Fraction, int, or a string
        such as ``"3/4"`` (a float is taken at its exact binary value).

    Returns:
      The probability as a :class:`fractions.Fraction`.

    Raises:
      ValueError: ``n`` not an integer :math:`\ge1`, or ``q`` not a rational in (0, 1].

    Reference: 苏剑林, 《圆内随机n点在同一个圆心角为θ的扇形的概率》,
    https://kexue.fm/archives/9324 ; W. L. Stevens (1939), Annals of Eugenics 9:315–320.
    """
    n = check_n(n)
    q = check_turns(q)
    x = 1 - q
    if n == 1 or n * x <= 1:  # n = 1, a full turn, or the pigeonhole regime
        return Fraction(1)
    a, b = x.numerator, x.denominator
    terms_direct = min(n, -(-b // a) - 1)  # k >= 1 with b - k a > 0
    terms_reflected = -(-(n * a - b) // a)  # k >= 0 with (n - k) a - b > 0
    # Each term is an (n-1)-th power of an integer below n b: about n log2(n b) bits.
    bits = n * (n * b).bit_length()
    _checks.check_fits_memory("n", 4.0 * bits / 8, "the exact big-integer terms")
    if min(terms_direct, terms_reflected) * bits > MAX_EXACT_WORK:
        raise ValueError(
            f"n={n} at q={q} needs {min(terms_direct, terms_reflected)} big-integer terms of "
            f"{bits} bits, beyond the exact-arithmetic limit of {MAX_EXACT_WORK:.0e} bit "
            f"operations (hours of work); use probability() instead")
    total = 0
    binomial = 1
    if terms_direct <= terms_reflected:
        for k in range(1, terms_direct + 1):
            binomial = binomial * (n - k + 1) // k
            total += (-1) ** (k - 1) * binomial * (b - k * a) ** (n - 1)
        return Fraction(total, b ** (n - 1))
    for k in range(terms_reflected):
        total += (-1) ** k * binomial * ((n - k) * a - b) ** (n - 1)
        binomial = binomial * (n - k) // (k + 1)
    return 1 - Fraction(total, b ** (n - 1))
