"""Moving the clock by hand: ``LoopClock.advance`` and the manual clock.

On a manual clock only an advance (and a blocking sleep on the loop's
thread) moves time; on the virtual clock an advance is a sleep whose end
comes after everything due then.  Every figure here is exact.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from pytest_asyncspec import ClockControlError, DeadlockError, LoopClock, VirtualClockLoop
from pytest_asyncspec.exploration import ExploringLoop

if TYPE_CHECKING:
    from conftest import RunVirtual


class ManualLoop(VirtualClockLoop):
    """The virtual-clock loop on a manual clock (run_virtual makes loops by class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, manual=True, **kwargs)


class ManualExploringLoop(ExploringLoop):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, manual=True, **kwargs)


async def _ticker(clock: LoopClock, period: float, seen: list[float]) -> None:
    while True:
        await asyncio.sleep(period)
        seen.append(clock.now())


@pytest.mark.parametrize("loop_class", [ManualLoop, ManualExploringLoop])
def test_a_manual_clock_moves_only_when_advanced(
    run_virtual: RunVirtual, loop_class: type[VirtualClockLoop]
) -> None:
    async def main() -> list[tuple[float, list[float]]]:
        clock = LoopClock()
        seen: list[float] = []
        task = asyncio.create_task(_ticker(clock, 1, seen))
        states = []
        for _ in range(50):  # an idle loop with a timer set: no jump
            await asyncio.sleep(0)
        states.append((clock.now(), list(seen)))
        await clock.advance(0.999)
        states.append((clock.now(), list(seen)))
        await clock.advance(0.001)
        states.append((clock.now(), list(seen)))
        await clock.advance(2.5)
        states.append((clock.now(), list(seen)))
        task.cancel()
        return states

    assert run_virtual(main, loop_class=loop_class) == [
        (0.0, []),
        (0.999, []),
        (1.0, [1.0]),
        (3.5, [1.0, 2.0, 3.0]),
    ]


def test_an_advance_returns_after_everything_due_at_its_end_and_what_that_sets_off(
    run_virtual: RunVirtual,
) -> None:
    async def main() -> list[str]:
        clock = LoopClock()
        loop = asyncio.get_running_loop()
        order: list[str] = []

        def at_two() -> None:
            order.append("timer at 2")
            loop.call_later(0, order.append, "timer set at 2 for 2")
            loop.call_soon(order.append, "callback soon after it")

        loop.call_later(2, at_two)
        loop.call_later(2.000000001, order.append, "timer 1 ns later")
        await clock.advance(2)
        order.append(f"advance returned at {clock.now()}")
        await clock.advance(0)
        order.append(f"advance(0) returned at {clock.now()}")
        return order

    assert run_virtual(main, loop_class=ManualLoop) == [
        "timer at 2",
        "callback soon after it",
        "timer set at 2 for 2",
        "advance returned at 2.0",
        "advance(0) returned at 2.0",
    ]


def test_on_the_virtual_clock_an_advance_is_a_sleep_that_ends_after_its_instant(
    run_virtual: RunVirtual,
) -> None:
    async def main() -> tuple[list[str], list[str]]:
        clock = LoopClock()
        loop = asyncio.get_running_loop()
        by_sleep: list[str] = []
        by_advance: list[str] = []
        clock.reset()  # t = 0 now

        def timer(trail: list[str]) -> None:
            trail.append("timer")
            loop.call_later(0, trail.append, "what the timer set off")

        # A sleep resumes in the iteration after its timer, before what a
        # timer due at the same instant set off (as on asyncio's own loop);
        # an advance returns after it.
        loop.call_later(3, timer, by_sleep)
        await asyncio.sleep(3)
        by_sleep.append(f"resumed at {clock.now()}")
        await asyncio.sleep(0)
        loop.call_later(3, timer, by_advance)
        await clock.advance(3)
        by_advance.append(f"resumed at {clock.now()}")
        return by_sleep, by_advance

    by_sleep, by_advance = run_virtual(main)
    assert by_sleep == ["timer", "resumed at 3.0", "what the timer set off"]
    assert by_advance == ["timer", "what the timer set off", "resumed at 6.0"]


def test_a_blocking_sleep_moves_a_manual_clock_and_real_waits_do_not(
    run_virtual: RunVirtual,
) -> None:
    async def main() -> list[float]:
        clock = LoopClock()
        loop = asyncio.get_running_loop()
        readings = [clock.now()]
        time.sleep(0.25)  # the loop's thread is held: that time is lost
        readings.append(clock.now())
        # A job of real time, awaited while no advance runs: it ends at the
        # instant it began.
        await loop.run_in_executor(None, time.sleep, 0.05)
        readings.append(clock.now())
        return readings

    assert run_virtual(main, loop_class=ManualLoop) == [0.0, 0.25, 0.25]


def test_real_work_during_an_advance_keeps_its_real_timing(run_virtual: RunVirtual) -> None:
    async def main() -> tuple[float, float, bool]:
        clock = LoopClock()
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(None, time.sleep, 0.05)
        await clock.advance(10)
        after_advance = clock.now()
        finished_within = job.done()
        await job
        return after_advance, clock.now(), finished_within

    after_advance, after_job, finished_within = run_virtual(main, loop_class=ManualLoop)
    # The advance ends exactly at 10 s; the job's 50 ms of real time ran
    # inside it and was delivered no earlier than that (rule 5).
    assert after_advance == 10.0
    assert after_job == 10.0
    assert finished_within


def test_a_manual_deadlock_says_the_timers_wait_for_an_advance(run_virtual: RunVirtual) -> None:
    async def main() -> None:
        sleeper = asyncio.create_task(asyncio.sleep(7), name="sleeper")
        await asyncio.sleep(0)
        await asyncio.wait_for(sleeper, 30)

    with pytest.raises(DeadlockError) as caught:
        run_virtual(main, loop_class=ManualLoop, deadlock_grace=0.05)
    error = caught.value
    assert error.manual_timers == (2, 7.0)
    text = str(error)
    assert "waiting for advance(): time is manual, and 2 timers are set, the next due at 7 s" in (
        text
    )
    assert "task 'sleeper' (sleep) awaits asyncio sleep(): a timer due at 7 s" in text
    # The test itself waits for wait_for's timeout timer (due at 30 s).
    assert "a timer due at 30 s, waiting for advance()" in text


def test_a_virtual_deadlock_is_reported_as_before(run_virtual: RunVirtual) -> None:
    async def main() -> None:
        await asyncio.Event().wait()

    with pytest.raises(DeadlockError) as caught:
        run_virtual(main, deadlock_grace=0.05)
    assert caught.value.manual_timers is None
    assert "no timer is scheduled" in str(caught.value)
    assert "advance()" not in str(caught.value)


@pytest.mark.parametrize(
    ("seconds", "error", "words"),
    [
        (-1, ValueError, "got -1"),
        (float("nan"), ValueError, "got nan"),
        (float("inf"), ValueError, "got inf"),
        ("5", TypeError, "got str '5'"),
        (True, TypeError, "got bool True"),
    ],
)
def test_an_advance_by_a_bad_amount_says_what_it_takes(
    run_virtual: RunVirtual, seconds: Any, error: type[Exception], words: str
) -> None:
    async def main() -> None:
        await LoopClock().advance(seconds)

    with pytest.raises(error, match="advance\\(\\)") as caught:
        run_virtual(main, loop_class=ManualLoop)
    assert words in str(caught.value)


def test_two_advances_at_once_are_refused_and_a_cancelled_one_is_forgotten(
    run_virtual: RunVirtual,
) -> None:
    async def main() -> tuple[str, float]:
        clock = LoopClock()
        first = asyncio.ensure_future(clock.advance(5))
        await asyncio.sleep(0)
        try:
            await clock.advance(1)
        except RuntimeError as error:
            refused = str(error)
        else:
            refused = ""
        first.cancel()
        await asyncio.sleep(0)
        await clock.advance(2)  # the cancelled one no longer holds the loop
        return refused, clock.now()

    refused, now = run_virtual(main, loop_class=ManualLoop)
    assert "advance() is already running on this loop" in refused
    assert now == 2.0


def test_an_advance_on_the_real_clock_says_how_to_get_a_virtual_one() -> None:
    async def main() -> None:
        await LoopClock().advance(1)

    with pytest.raises(ClockControlError) as caught:
        asyncio.run(main())
    message = str(caught.value)
    assert "runs on real time" in message
    assert "clock='manual'" in message
    assert "--asyncspec-clock=manual" in message


def test_a_busy_loop_ends_an_advance_on_the_virtual_clock_once_its_time_is_charged() -> None:
    class QuickToCharge(VirtualClockLoop):
        def __init__(self) -> None:
            super().__init__(busy_grace=0.01)

    async def main() -> float:
        clock = LoopClock()
        stop = False

        async def spin() -> None:
            while not stop:
                await asyncio.sleep(0)

        spinner = asyncio.create_task(spin())
        await clock.advance(0.02)
        stop = True
        await spinner
        return clock.now()

    loop = QuickToCharge()
    try:
        now = loop.run_until_complete(asyncio.wait_for(main(), 60))
    finally:
        loop.close()
    # Charged busy time only (never faster than real time): past 0.02 s.
    assert now > 0.02
