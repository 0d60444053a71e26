"""Order assertions on a trace: they pass on the right order and fail, with a
timeline slice, on the wrong one."""

from __future__ import annotations

import asyncio
import time

import pytest

from pytest_asyncspec import VirtualClockLoop
from pytest_asyncspec.checks.ordering import (
    OrderAssertionError,
    assert_every_start_before_any_finish,
    assert_order,
    assert_step_after,
    nth_step,
)
from pytest_asyncspec.tracing import Trace, Tracer


def _trace(gathered: bool) -> Trace:
    async def job(name: str) -> None:
        await asyncio.sleep(1)
        time.sleep(0.5)

    async def main() -> None:
        if gathered:
            await asyncio.gather(
                asyncio.create_task(job("a"), name="a"), asyncio.create_task(job("b"), name="b")
            )
        else:
            await asyncio.create_task(job("a"), name="a")
            await asyncio.create_task(job("b"), name="b")

    loop = VirtualClockLoop()
    tracer = Tracer(loop)
    tracer.install()
    try:
        loop.run_until_complete(main())
    finally:
        trace = tracer.stop()
        loop.close()
    return trace


def test_gathered_tasks_all_start_before_any_finishes() -> None:
    """Gathered: both start at 0 before either finishes, and the asserted start/finish
    order (a starts, b starts, a finishes, b finishes) holds."""
    trace = _trace(gathered=True)
    assert_every_start_before_any_finish(trace, "a", "b")
    assert_order(trace, [("start", "a"), ("start", "b"), ("finish", "a"), ("finish", "b")])
    assert_step_after(trace, ("b", 2), ("a", 2))


def test_sequential_tasks_fail_with_a_timeline_slice() -> None:
    """One after the other: the same assertions fail, naming what happened and
    showing the timeline rows of both tasks."""
    trace = _trace(gathered=False)
    with pytest.raises(OrderAssertionError) as caught:
        assert_every_start_before_any_finish(trace, "a", "b")
    message = str(caught.value)
    assert "one after another" in message
    assert "asyncspec timeline" in message
    assert " a " in message
    assert " b " in message

    with pytest.raises(OrderAssertionError, match="start of 'b' before finish of 'a'"):
        assert_order(trace, [("start", "a"), ("start", "b"), ("finish", "a")])


def test_step_numbers_are_checked() -> None:
    """Asking for a step a task never ran is a clear LookupError."""
    trace = _trace(gathered=True)
    assert nth_step(trace, "a", 1).start == 0.0
    with pytest.raises(LookupError, match="ran 2 step"):
        nth_step(trace, "a", 3)
    with pytest.raises(OrderAssertionError, match="step 1 of 'a'"):
        assert_step_after(trace, ("a", 1), ("b", 2))
