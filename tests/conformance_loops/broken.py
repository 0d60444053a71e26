"""A deliberately unfaithful loop: the negative control of the conformance runner."""

from __future__ import annotations

import asyncio
from typing import Any

from pytest_asyncspec.clock import VirtualClockLoop


class TimeoutsFireAtOnceLoop(VirtualClockLoop):
    """Every timer is due at once: ``sleep(10)`` returns immediately, and a
    ``wait_for`` gives up before its work is done."""

    def call_later(self, delay: float, callback: Any, *args: Any, context: Any = None) -> Any:  # type: ignore[override]
        return super().call_later(0, callback, *args, context=context)


__all__ = ["TimeoutsFireAtOnceLoop", "asyncio"]
