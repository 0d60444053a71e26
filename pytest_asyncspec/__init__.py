"""pytest-asyncspec: virtual time and timing assertions for asyncio code."""

from __future__ import annotations

from .clock import DEFAULT_DEADLOCK_GRACE, DeadlockError, VirtualClockLoop
from .loops import UnsupportedLoopError, loop_factory
from .ticks import TICKS_PER_SECOND
from .timing import (
    REAL_CLOCK_TOLERANCE,
    Finished,
    LoopClock,
    NoRunningLoopError,
    Span,
    TimingAssertionError,
    TimingCheck,
    Tolerance,
)

__all__ = [
    "DEFAULT_DEADLOCK_GRACE",
    "REAL_CLOCK_TOLERANCE",
    "TICKS_PER_SECOND",
    "DeadlockError",
    "Finished",
    "LoopClock",
    "NoRunningLoopError",
    "Span",
    "TimingAssertionError",
    "TimingCheck",
    "Tolerance",
    "UnsupportedLoopError",
    "VirtualClockLoop",
    "loop_factory",
]
