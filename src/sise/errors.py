"""The one exception type the package raises for bad input, and the checks that raise it.

Every option is checked where it enters (a constructor, the command line): its type, its range,
and never NaN, so that bad input fails at once with a message that says what to do, instead of
giving a blank map or a traceback after the work is done.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real


class SiseError(ValueError):
    """Raised for bad input; the message says what went wrong and what to do instead."""


def check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """``value`` as a float if it is a finite real number in the range, else a :class:`SiseError`.

    ``bool`` is refused (``True`` is an ``int`` to Python, never a number to a user), and so are
    NaN and the infinities.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise SiseError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    number = float(value)
    if not math.isfinite(number):
        raise SiseError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (number < low or (number == low and not low_inclusive)):
        raise SiseError(f"{name} must be {'>=' if low_inclusive else '>'} {low}, got {value!r}")
    if high is not None and (number > high or (number == high and not high_inclusive)):
        raise SiseError(f"{name} must be {'<=' if high_inclusive else '<'} {high}, got {value!r}")
    return number


def check_integer(
    name: str, value: object, *, low: int | None = None, high: int | None = None
) -> int:
    """``value`` as an int if it is an integer (not a bool, not 2.5) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise SiseError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    number = int(value)
    if low is not None and number < low:
        raise SiseError(f"{name} must be >= {low}, got {number}")
    if high is not None and number > high:
        raise SiseError(f"{name} must be <= {high}, got {number}")
    return number


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``, else an error that lists them."""
    options = list(choices)
    if not isinstance(value, str) or value not in options:
        raise SiseError(f"unknown {name} {value!r}: use {', '.join(repr(c) for c in options)}")
    return value


def check_flag(name: str, value: object) -> bool:
    """``value`` if it is a bool (``0``/``1``/``"yes"`` are refused: they hide typos)."""
    if not isinstance(value, bool):
        raise SiseError(f"{name} must be True or False, got {value!r}")
    return value
