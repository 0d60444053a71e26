"""A deliberately unfaithful loop: the negative control of the conformance runner."""

from __future__ import annotations

import asyncio
from typing import Any

from pytest_asyncspec.clock.virtual_loop import VirtualClockLoop


class TimersNeverFireLoop(VirtualClockLoop):
    """A timer due later than now never fires: ``sleep(10)`` never returns,
    and a ``wait_for`` never gives up (the loop's deadlock check then ends
    the test).  Both ways of scheduling one are covered (3.12's wait_for
    uses ``call_at``, 3.11's ``call_later``), so it is broken on every Python."""

    def call_later(self, delay: float, callback: Any, *args: Any, context: Any = None) -> Any:  # type: ignore[override]
        handle = super().call_later(delay, callback, *args, context=context)
        if delay > 0:
            handle.cancel()
        return handle

    def call_at(self, when: float, callback: Any, *args: Any, context: Any = None) -> Any:  # type: ignore[override]
        handle = super().call_at(when, callback, *args, context=context)
        if when > self.time():
            handle.cancel()
        return handle


__all__ = ["TimersNeverFireLoop", "asyncio"]
