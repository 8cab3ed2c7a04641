"""Angles written as text: ``pi``, ``3pi/2``, ``2*pi/3``, ``0.5pi``, ``240deg``, ``1.5``."""

from __future__ import annotations

import re
from fractions import Fraction

from diffusionlab.sector.checks import FULL_TURN, check_theta

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PI_FORM = re.compile(rf"^(?P<coef>{_NUMBER})?\s*\*?\s*(?:pi|π)\s*(?:/\s*(?P<den>{_NUMBER}))?$")
_DEGREES = re.compile(rf"^(?P<deg>{_NUMBER})\s*(?:deg|°)$")
_RADIANS = re.compile(rf"^(?P<rad>{_NUMBER}(?:[eE][-+]?\d+)?)\s*(?:rad)?$")


def parse_angle(text: str) -> tuple[float, Fraction | None]:
    r"""Parses an angle; returns (θ in radians, θ/2π as a Fraction or None).

    Multiples of π and degrees are exact rationals of a turn; a bare float (radians) has no
    known rational value, so the second item is None. θ is the float of the fraction times
    the float64 full turn, so ``"pi"`` gives exactly ``np.pi``.

    Args:
      text: e.g. ``"pi"``, ``"3pi/2"``, ``"2*pi/3"``, ``"0.5pi"``, ``"240deg"``, ``"1.5"``.

    Returns:
      ``(theta, turns)``.

    Raises:
      ValueError: the text is not an angle of these forms, or θ is not in (0, 2π].
    """
    if not isinstance(text, str):
        raise TypeError(f"THETA (text) must be a string such as 'pi' or '240deg'; got {text!r}")
    s = text.strip().lower()
    turns = None
    if m := _PI_FORM.match(s):
        den = Fraction(m["den"]) if m["den"] else Fraction(1)
        if den == 0:
            raise ValueError(f"THETA must be an angle in (0, 2pi], got {text!r} (division by 0)")
        turns = Fraction(m["coef"] or 1) / den / 2
    elif m := _DEGREES.match(s):
        turns = Fraction(m["deg"]) / 360
    elif m := _RADIANS.match(s):
        theta = float(m["rad"])
    else:
        raise ValueError(
            f"THETA must be an angle in (0, 2pi] written like pi, 3pi/2, 240deg or 1.5; "
            f"got {text!r}")
    if turns is not None:
        if not 0 < turns <= 1:
            raise ValueError(f"THETA must be an angle in (0, 2pi], got {text!r}")
        theta = float(turns) * FULL_TURN
    try:
        check_theta(theta)
    except ValueError:
        raise ValueError(f"THETA must be an angle in (0, 2pi], got {text!r}") from None
    return theta, turns
