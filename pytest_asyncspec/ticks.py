"""Integer time: the unit every virtual clock counts in.

Virtual time is kept as whole nanoseconds ("ticks") so that adding up many
small delays never accumulates floating-point error: ten sleeps of 0.1 s end
at exactly 1_000_000_000 ticks, which converts back to exactly ``1.0``.
"""

from __future__ import annotations

import math

TICKS_PER_SECOND = 1_000_000_000

#: A deadline so far away that it can never be reached by jumping; timers at
#: ``float("inf")`` land here and are treated as "never".
NEVER = 2**62


def seconds_to_ticks(seconds: float) -> int:
    """Convert a duration or instant in seconds to the nearest whole tick."""
    if math.isnan(seconds):
        raise ValueError("a time in seconds cannot be NaN")
    if math.isinf(seconds):
        return NEVER if seconds > 0 else -NEVER
    ticks = round(seconds * TICKS_PER_SECOND)
    return max(-NEVER, min(NEVER, ticks))


def ticks_to_seconds(ticks: int) -> float:
    """Convert ticks to seconds (exact for any figure with a short decimal form)."""
    return ticks / TICKS_PER_SECOND
