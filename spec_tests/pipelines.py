"""The two shared-state programs of "Async Processing in Python: Make Data
Pipelines Scream" (claims S0.5-S0.8), written afresh: five gathered calls
each update a shared count and trail of call ids, either after their await
(then block) or while they block (then await), and report what they saw.

Shared by the claims about stock asyncio's order
(``test_pipelines_shared_state.py``) and about the orders exploration
reaches (``test_pipelines_shared_state_explored.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

CALL_IDS = (1, 2, 3, 4, 5)
HALF = 2.5  # each call waits 2.5 s and blocks 2.5 s


@dataclass
class Shared:
    """The state every call of one run updates: a count and a trail of call ids."""

    count: int = 0
    trail: str = ""
    # count > 3, tested by each call the moment it has updated the state.
    over_three_at_update: dict[int, bool] = field(default_factory=dict)

    def update(self, call_id: int) -> None:
        self.trail += f"->{call_id}"
        self.count += 1
        self.over_three_at_update[call_id] = self.count > 3


@dataclass(frozen=True)
class Report:
    """What one call printed when it finished."""

    call_id: int
    seconds: float
    count: int
    trail: str


Step = Callable[[Shared, int, list[Report]], Awaitable[None]]


def _announce_start(call_id: int) -> float:
    print(f"myProc {call_id} started ...")
    return time.perf_counter()


def _announce_finish(shared: Shared, call_id: int, began: float, reports: list[Report]) -> None:
    seconds = time.perf_counter() - began
    reports.append(Report(call_id, seconds, shared.count, shared.trail))
    print(
        f"myProc {call_id} finished in {seconds:0.5f} seconds. "
        f"sum = {shared.count} chain {shared.trail}"
    )


async def update_after_await(shared: Shared, call_id: int, reports: list[Report]) -> None:
    """Wait, then update the shared state, then block (the document's first variant)."""
    began = _announce_start(call_id)
    await asyncio.sleep(HALF)
    shared.update(call_id)
    time.sleep(HALF)
    _announce_finish(shared, call_id, began, reports)


async def update_while_blocking(shared: Shared, call_id: int, reports: list[Report]) -> None:
    """Block and update the shared state, then wait (the document's second variant)."""
    began = _announce_start(call_id)
    time.sleep(HALF)
    shared.update(call_id)
    await asyncio.sleep(HALF)
    _announce_finish(shared, call_id, began, reports)
