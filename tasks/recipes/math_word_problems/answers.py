"""Reading numeric answers and comparing them.

A model states its final answer in JSON as a number or a short string ("12", "3/4",
"$1,250.50", "15%"); the program computes one (an int, a float, a ``Fraction`` printed as
"3/4"). Both are read into a float the same way, then compared with a tolerance, so
``0.1 + 0.2`` equals ``0.3`` and ``Fraction(1, 3)`` equals ``0.333333333``.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

_NUMBER = re.compile(
    r"""^\s*
    [$€£]?\s*
    (?P<num>[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?
        (?:\s*/\s*[-+]?\d+(?:\.\d+)?)?)
    \s*%?\s*$""",
    re.VERBOSE,
)


def parse_number(value: Any) -> float | None:
    """The number in ``value``, or None when it is not one (booleans are not numbers)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    match = _NUMBER.match(str(value))
    if not match or not any(ch.isdigit() for ch in match.group("num")):
        return None
    text = match.group("num").replace(",", "").replace(" ", "")
    try:
        number = float(Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) else None


def same_answer(computed: float, stated: float, tolerance: float) -> bool:
    """Equal within ``tolerance``, relative to the larger magnitude (absolute near 0)."""
    return math.isclose(computed, stated, rel_tol=tolerance, abs_tol=tolerance)


def show(number: float) -> str:
    """A number as a person writes it: 12 rather than 12.0."""
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else f"{number:g}"
