"""Deadlocks on the virtual clock fail fast and say who waits on what.

The real-time bound checked here is the only wall-clock assertion of these
tests: a deadlock must be reported, not sit there until pytest-timeout.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import pytest

from pytest_asyncspec import DeadlockError
from pytest_asyncspec.clock import time_patch

if TYPE_CHECKING:
    from conftest import RunVirtual

#: Real seconds within which a deadlock must be reported (the grace is 0.5 s).
REPORTED_WITHIN = 1.5


def _expect_deadlock(
    run_virtual: RunVirtual,
    main: Callable[[], Coroutine[Any, Any, None]],
    *,
    deadlock_grace: float = 0.5,
) -> DeadlockError:
    """Run ``main``, which must end in a DeadlockError reported within the bound."""
    __tracebackhide__ = True
    started = time_patch.real_monotonic()
    with pytest.raises(DeadlockError) as excinfo:
        run_virtual(main, deadlock_grace=deadlock_grace, watchdog=5.0)
    took = time_patch.real_monotonic() - started
    assert took < REPORTED_WITHIN, f"the deadlock took {took:.2f} real seconds to report"
    return excinfo.value


def test_event_nobody_sets_is_reported_naming_the_task_and_what_it_awaits(
    run_virtual: RunVirtual,
) -> None:
    """A task awaiting an Event that nobody sets ends the run with a DeadlockError,
    within 1.5 real seconds, at the virtual instant the loop ran dry, naming the
    task, the Event.wait it is stuck in and the line of its await."""
    name = "stuck-on-an-event-nobody-sets"

    async def wait_for_event(event: asyncio.Event) -> None:
        await event.wait()

    async def main() -> None:
        await asyncio.sleep(3)
        await asyncio.create_task(wait_for_event(asyncio.Event()), name=name)

    error = _expect_deadlock(run_virtual, main)

    message = str(error)
    assert message.startswith("deadlock at virtual time 3 s: 2 task(s) wait")
    assert f"task {name!r} (" in message
    assert "Event.wait" in message
    assert error.at_seconds == 3.0
    stuck = {task.name: task for task in error.tasks}[name]
    assert stuck.coroutine.endswith("wait_for_event")
    assert stuck.awaiting.startswith("asyncio Event.wait()")
    assert any(__file__ in place and "wait_for_event" in place for place in stuck.chain)


def test_queue_nobody_feeds_is_reported_as_a_queue_get(run_virtual: RunVirtual) -> None:
    """A consumer waiting on an empty queue that no producer feeds is a deadlock
    whose report shows Queue.get."""
    name = "consumer-of-an-empty-queue"

    async def consume(queue: asyncio.Queue[int]) -> None:
        await queue.get()

    async def main() -> None:
        await asyncio.create_task(consume(asyncio.Queue()), name=name)

    error = _expect_deadlock(run_virtual, main)

    stuck = {task.name: task for task in error.tasks}[name]
    assert "Queue.get" in stuck.awaiting
    assert f"task {name!r}" in str(error)
    assert error.at_seconds == 0.0


def test_a_task_awaiting_a_stuck_task_is_reported_with_its_target(
    run_virtual: RunVirtual,
) -> None:
    """A chain of waits (main awaits "outer", which awaits "inner", which awaits an
    Event): the report says which task each one awaits, down to the Event."""

    async def inner() -> None:
        await asyncio.Event().wait()

    async def outer(target: asyncio.Task[None]) -> None:
        await target

    async def main() -> None:
        await asyncio.sleep(1.5)
        stuck = asyncio.create_task(inner(), name="inner")
        await asyncio.create_task(outer(stuck), name="outer")

    error = _expect_deadlock(run_virtual, main)

    by_name = {task.name: task for task in error.tasks}
    assert len(by_name) == 3
    (main_task,) = (task for name, task in by_name.items() if name not in ("inner", "outer"))
    assert main_task.awaiting.startswith("task 'outer'")
    assert by_name["outer"].awaiting.startswith("task 'inner'")
    assert by_name["inner"].awaiting.endswith("a future that nothing will complete (Future)")
    assert error.at_seconds == 1.5


def test_a_bare_future_nobody_completes_is_reported(run_virtual: RunVirtual) -> None:
    """Awaiting a plain Future that nothing completes is reported quickly, naming
    the waiting task and saying it awaits such a future."""
    name = "awaits-a-bare-future"

    async def await_future() -> None:
        await asyncio.get_running_loop().create_future()

    async def main() -> None:
        await asyncio.sleep(0.25)
        await asyncio.create_task(await_future(), name=name)

    error = _expect_deadlock(run_virtual, main)

    assert f"task {name!r} (" in str(error)
    assert {task.name: task for task in error.tasks}[name].awaiting == (
        "a future that nothing will complete (Future)"
    )
    assert error.at_seconds == 0.25


def test_time_functions_are_restored_after_a_deadlock(run_virtual: RunVirtual) -> None:
    """The time module gets its real functions back even when the run ends in a
    DeadlockError."""

    async def main() -> None:
        assert time.sleep is not time_patch.real_sleep
        await asyncio.Event().wait()

    _expect_deadlock(run_virtual, main, deadlock_grace=0.05)

    assert time.sleep is time_patch.real_sleep
    assert time.monotonic is time_patch.real_monotonic


def test_a_long_timer_is_not_a_deadlock(run_virtual: RunVirtual) -> None:
    """A task whose only way out is a timer far away is not deadlocked: the clock
    jumps there."""

    async def main() -> float:
        event = asyncio.Event()
        asyncio.get_running_loop().call_later(10_000, event.set)
        await event.wait()
        return asyncio.get_running_loop().time()

    assert run_virtual(main) == 10_000.0


def test_a_thread_calling_back_within_the_grace_is_not_a_deadlock(
    run_virtual: RunVirtual,
) -> None:
    """A thread that sets the awaited Event through ``call_soon_threadsafe`` after
    0.1 real seconds wakes the task before the 0.5 s grace runs out."""

    async def main() -> str:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def set_later() -> None:
            time.sleep(0.1)  # a real sleep: this thread runs no virtual loop
            loop.call_soon_threadsafe(event.set)

        thread = threading.Thread(target=set_later, name="sets-the-event")
        thread.start()
        try:
            await event.wait()
        finally:
            thread.join(timeout=5)
        return "woken"

    assert run_virtual(main) == "woken"


def test_an_infinite_timeout_does_not_hide_a_deadlock(run_virtual: RunVirtual) -> None:
    """``wait_for(event.wait(), math.inf)`` on an Event nobody sets is a deadlock too:
    a timer that never fires cannot wake anyone."""

    async def main() -> None:
        await asyncio.wait_for(asyncio.Event().wait(), math.inf)

    with pytest.raises(DeadlockError):
        run_virtual(main, deadlock_grace=0.1, watchdog=1.5)
