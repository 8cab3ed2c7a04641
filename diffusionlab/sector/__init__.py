r"""Probability that n uniform random points in a disk lie in one sector of central angle θ.

The "four ducks in a pond, all in one semicircle" question and its generalisation:

.. math:: P_n(\theta)=\sum_{k\ge1}(-1)^{k-1}\binom nk\Big(1-k\big(1-\tfrac{\theta}{2\pi}\big)\Big)_+^{\,n-1}.

* :func:`probability`: float64, broadcasting, jitted, stable where the sum cancels;
  ``method="bspline"`` evaluates it instead by de Boor's all-positive B-spline recursion
  (:mod:`diffusionlab.sector.bspline`), the slower independent cross-check.
* :func:`probability_turns`: the same at θ = 2π q for an exact (e.g. rational) q.
* :func:`probability_exact`: exact :class:`fractions.Fraction` at rational θ/2π.
* :func:`probability_mc`: Monte Carlo with points drawn in the disk and sectors tested directly.
* ``python -m diffusionlab.sector N THETA [--mc]``: the command line.

Reference: 苏剑林, 《圆内随机n点在同一个圆心角为θ的扇形的概率》, https://kexue.fm/archives/9324
"""

from diffusionlab.sector.angle import parse_angle
from diffusionlab.sector.checks import FULL_TURN
from diffusionlab.sector.exact import probability_exact
from diffusionlab.sector.montecarlo import probability_mc, sample_disk, smallest_sector_angle
from diffusionlab.sector.solver import probability, probability_turns

__all__ = [
    "FULL_TURN",
    "parse_angle",
    "probability",
    "probability_exact",
    "probability_mc",
    "probability_turns",
    "sample_disk",
    "smallest_sector_angle",
]
