"""Integer time: the unit every virtual clock counts in.

Virtual time is kept as whole nanoseconds ("ticks") so that adding up many
small delays never accumulates floating-point error: ten sleeps of 0.1 s end
at exactly 1_000_000_000 ticks, which converts back to exactly ``1.0``.
"""

from __future__ import annotations

import math
from typing import Any, cast

TICKS_PER_SECOND = 1_000_000_000

#: The tick of ``float("inf")``: later than the tick of any finite float (the
#: largest, about 1.8e308 s, is about 2**1054 ticks), so every finite timer,
#: however far, is reached by jumping and only an infinite one never fires.
NEVER = 2**1100

#: Below this many seconds a float times 1e9 is rounded directly; above it
#: (and for NaN, which fails the comparison) the careful path runs.
_FAST_LIMIT = 1e6


def seconds_to_ticks(seconds: float) -> int:
    """Convert a duration or instant in seconds to the nearest whole tick."""
    if -_FAST_LIMIT < seconds < _FAST_LIMIT:
        return round(seconds * TICKS_PER_SECOND)
    if math.isnan(seconds):
        raise ValueError("a time in seconds cannot be NaN")
    if math.isinf(seconds):
        return NEVER if seconds > 0 else -NEVER
    # Multiplying a large float by 1e9 rounds (and past 1.8e299 s overflows):
    # split it into its exact whole seconds and the fraction instead.
    whole = int(seconds)
    return whole * TICKS_PER_SECOND + round((seconds - whole) * TICKS_PER_SECOND)


def ticks_to_seconds(ticks: int) -> float:
    """Convert ticks to seconds (exact for any figure with a short decimal form)."""
    if ticks >= NEVER:
        return math.inf
    if ticks <= -NEVER:
        return -math.inf
    return ticks / TICKS_PER_SECOND


#: Units a duration's text may end with (``90s``, ``30m``, ``1h``, ``2d``).
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: The words that switch a duration off where it can be.  Only words: ``0``
#: is a (bad) amount of time, never a switch.
_OFF = ("off", "none")


def parse_seconds(value: object, what: str, *, example: str, units: bool = False) -> float:
    """``value`` (a number, or its text) as a positive, finite number of seconds.

    With ``units``, text may end with ``s``, ``m``, ``h`` or ``d``.  Anything
    else is a ``ValueError`` that names ``what``, shows the value and gives
    ``example`` of what is expected.
    """
    return _seconds(value, what, example, units, off=False)


def parse_seconds_or_off(
    value: object, what: str, *, example: str, units: bool = False
) -> float | None:
    """As :func:`parse_seconds`, or None for ``off``, ``none`` (any case) or None."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _OFF):
        return None
    return _seconds(value, what, example, units, off=True)


def _seconds(value: object, what: str, example: str, units: bool, off: bool) -> float:
    seconds = _read_seconds(value, units)
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        kind = "time in seconds, optionally with a unit" if units else "number of seconds"
        raise ValueError(
            f"invalid {what} {value!r}; expected a positive {kind} (e.g. {example})"
            + (" or 'off'" if off else "")
        )
    return seconds


def _read_seconds(value: object, units: bool) -> float | None:
    if isinstance(value, bool):  # float(True) is 1.0, but True is no duration
        return None
    scale = 1.0
    if isinstance(value, str):
        value = value.strip().lower()
        if units and value[-1:] in _UNITS:
            value, scale = value[:-1], _UNITS[value[-1:]]
    try:
        return float(cast(Any, value)) * scale  # any number type, or its text
    except (TypeError, ValueError):
        return None
