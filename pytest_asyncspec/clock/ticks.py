"""Integer time: the unit every virtual clock counts in.

Virtual time is kept as whole nanoseconds ("ticks") so that adding up many
small delays never accumulates floating-point error: ten sleeps of 0.1 s end
at exactly 1_000_000_000 ticks, which converts back to exactly ``1.0``.
"""

from __future__ import annotations

import math

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
