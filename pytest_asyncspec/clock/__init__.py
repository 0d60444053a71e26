"""The virtual clock: integer ticks, the patched time sources, what is in
flight, the threads a loop waits for, the stall rules, the loop itself and
the choice of loop.  Standard library only.

As a namespace, this package offers the clock's constants (the loop and its
errors are at the top level); nothing is imported until a name is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import namespace

if TYPE_CHECKING:  # each name re-exported explicitly (X as X): typed for users
    from .ticks import (
        TICKS_PER_SECOND as TICKS_PER_SECOND,
    )
    from .virtual_loop import (
        DEFAULT_DEADLOCK_GRACE as DEFAULT_DEADLOCK_GRACE,
        DEFAULT_STALL_BUDGET as DEFAULT_STALL_BUDGET,
        DEFAULT_TIME_BUDGET as DEFAULT_TIME_BUDGET,
    )

#: Public name -> the module (under pytest_asyncspec) that defines it.
_HOMES = {
    "TICKS_PER_SECOND": "clock.ticks",
    "DEFAULT_DEADLOCK_GRACE": "clock.virtual_loop",
    "DEFAULT_STALL_BUDGET": "clock.virtual_loop",
    "DEFAULT_TIME_BUDGET": "clock.virtual_loop",
}

#: Names of the module this package replaced (``clock.py``, before 0.2)
#: that are at the top level now.
_MOVED = dict.fromkeys(("DeadlockError", "VirtualClockLoop"), "")

__all__ = sorted(_HOMES)

if not TYPE_CHECKING:  # type checkers see the imports above, with their types
    __getattr__, __dir__ = namespace(__name__, _HOMES, _MOVED)
