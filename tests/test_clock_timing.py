"""Timings on the virtual clock: overlap, blocking calls, timeouts, ordering, exactness.

The first tests run through the plugin, so ``pytest --asyncspec-clock=real``
re-runs them on the stock loop with every duration scaled down: the same
scenario must give the same figures on both clocks (exact on the virtual one,
within the documented tolerance on the real one).  The rest drive a
:class:`VirtualClockLoop` directly and hold whatever clock the run selects.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from pytest_asyncspec import LoopClock, VirtualClockLoop
from pytest_asyncspec.clock import time_patch
from pytest_asyncspec.plugin.settings import Effective

if TYPE_CHECKING:
    from conftest import RunVirtual

#: Real-clock runs shrink every duration by this factor to stay fast.
REAL_CLOCK_SCALE = 0.05


@dataclass
class Timing:
    """Expected figures for a scenario on the clock this test runs with."""

    clock: LoopClock
    settings: Effective

    @property
    def scale(self) -> float:
        return 1.0 if self.settings.clock == "virtual" else REAL_CLOCK_SCALE

    def seconds(self, figures: list[float]) -> list[float]:
        return [figure * self.scale for figure in figures]

    def expect(self, measured: list[float], expected: list[float], what: str) -> None:
        """Exact equality on the virtual clock; the tolerance window on the real one."""
        __tracebackhide__ = True
        # The plugin must really have given this test the clock it claims.
        assert self.clock.mode == self.settings.clock
        scaled = self.seconds(expected)
        if self.clock.mode == "virtual":
            assert measured == scaled, f"{what}: expected exactly {scaled}, measured {measured}"
        else:
            self.clock.assert_times(measured, scaled, what=what)


@pytest.fixture
def timing(asyncspec_clock: LoopClock, asyncspec_settings: Effective) -> Timing:
    return Timing(asyncspec_clock, asyncspec_settings)


# -- scenarios that read the same on both clocks -------------------------------


async def test_gathered_sleeps_overlap_and_sequential_sleeps_add_up(
    asyncspec_clock: LoopClock, timing: Timing
) -> None:
    """Five 5 s sleeps run together end at 5 s; one after another they end at 25 s."""
    clock, scale = asyncspec_clock, timing.scale

    clock.reset()
    await asyncio.gather(*(asyncio.sleep(5 * scale) for _ in range(5)))
    gathered = clock.now()

    clock.reset()
    for _ in range(5):
        await asyncio.sleep(5 * scale)
    sequential = clock.now()

    timing.expect([gathered, sequential], [5.0, 25.0], "gathered, then sequential")


async def test_blocking_after_awaiting_serialises_the_blocks(
    asyncspec_clock: LoopClock, timing: Timing
) -> None:
    """Five gathered "await 2.5 s, then block 2.5 s" finish 2.5 s apart, from 5 s to 15 s.

    The awaits overlap (all wake at 2.5 s) but the blocking sleeps hold the
    loop one after another.
    """
    clock, scale = asyncspec_clock, timing.scale

    async def sleep_then_block() -> float:
        await asyncio.sleep(2.5 * scale)
        time.sleep(2.5 * scale)
        return clock.now()

    clock.reset()
    finished = await asyncio.gather(*(sleep_then_block() for _ in range(5)))

    timing.expect(list(finished), [5.0, 7.5, 10.0, 12.5, 15.0], "finish times")


async def test_blocking_before_awaiting_gives_the_documented_durations(
    asyncspec_clock: LoopClock, timing: Timing
) -> None:
    """Five gathered "block 2.5 s, then await 2.5 s" start 2.5 s apart and last
    12.5, 10, 7.5, 5 and 5 s.

    Each block delays the next coroutine's start; the first four timers all come
    due while the fifth coroutine blocks and fire together at 12.5 s.
    """
    clock, scale = asyncspec_clock, timing.scale

    async def block_then_sleep() -> tuple[float, float]:
        started = clock.now()
        time.sleep(2.5 * scale)
        await asyncio.sleep(2.5 * scale)
        return started, clock.now() - started

    clock.reset()
    results = await asyncio.gather(*(block_then_sleep() for _ in range(5)))
    starts = [start for start, _ in results]
    durations = [duration for _, duration in results]

    timing.expect(starts, [0.0, 2.5, 5.0, 7.5, 10.0], "start times")
    timing.expect(durations, [12.5, 10.0, 7.5, 5.0, 5.0], "durations")


async def test_wait_for_times_out_at_its_deadline_and_cancels_the_inner_coroutine(
    asyncspec_clock: LoopClock, timing: Timing
) -> None:
    """``wait_for(sleep(2), 1)`` raises TimeoutError at 1 s and the inner coroutine
    is cancelled there: it sees CancelledError and never runs to its end."""
    clock, scale = asyncspec_clock, timing.scale
    events: list[tuple[str, float]] = []

    async def inner() -> None:
        events.append(("started", clock.now()))
        try:
            await asyncio.sleep(2 * scale)
        except asyncio.CancelledError:
            events.append(("cancelled", clock.now()))
            raise
        events.append(("reached its end", clock.now()))

    clock.reset()
    # asyncio.TimeoutError is the builtin TimeoutError from 3.11 on, a
    # distinct class on 3.10; wait_for raises it on every version.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(inner(), 1 * scale)
    raised_at = clock.now()
    # Stay past the moment the inner sleep would have ended.
    await asyncio.sleep(2 * scale)

    assert [what for what, _ in events] == ["started", "cancelled"]
    timing.expect([raised_at, events[1][1]], [1.0, 1.0], "timeout raised, inner cancelled")


async def test_ten_sleeps_of_a_tenth_add_up_to_one_second(
    asyncspec_clock: LoopClock, timing: Timing
) -> None:
    """Ten sleeps of 0.1 s end at 1 s: exactly 1.0 on the virtual clock, where
    adding floats would give 0.9999999999999999."""
    clock, scale = asyncspec_clock, timing.scale

    clock.reset()
    for _ in range(10):
        await asyncio.sleep(0.1 * scale)

    timing.expect([clock.now()], [1.0], "ten sleeps of 0.1 s")


# -- exactness of the virtual clock itself ---------------------------------------


def test_short_sleeps_add_up_without_float_drift(run_virtual: RunVirtual) -> None:
    """Chains of short sleeps land on exact figures: 10 x 0.1 s is 1.0, 3 x 0.1 s
    is 0.3 and 1000 x 1 ms is 1.0, in ``loop.time()``, ``time.monotonic()`` and
    the tick count of a fresh loop."""

    async def main() -> list[tuple[float, float, int]]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        readings = []
        for count, delay in ((10, 0.1), (3, 0.1), (1000, 0.001)):
            start = loop.virtual_ticks()
            for _ in range(count):
                await asyncio.sleep(delay)
            readings.append((loop.time(), time.monotonic(), loop.virtual_ticks() - start))
        return readings

    assert run_virtual(main) == [
        (1.0, 1.0, 1_000_000_000),
        (1.3, 1.3, 300_000_000),
        (2.3, 2.3, 1_000_000_000),
    ]


def test_a_positive_delay_under_half_a_tick_still_moves_time(run_virtual: RunVirtual) -> None:
    """A token bucket 1e-17 s short sleeps that long; rounded to no tick, the
    sleep would wake at the same instant and the loop spin forever."""

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        start = loop.virtual_ticks()
        await asyncio.sleep(2.2e-17)
        after_sleep = loop.virtual_ticks() - start
        await asyncio.sleep(0)  # zero stays zero: a plain yield
        return after_sleep, loop.virtual_ticks() - start

    assert run_virtual(main) == (1, 1)


def test_sleeping_until_a_deadline_ulps_ahead_of_now_ends(run_virtual: RunVirtual) -> None:
    """``while loop.time() < deadline: await sleep(deadline - loop.time())``
    with deadlines such as 8.700000000000001 (the float sum of short steps)
    just ahead of loop.time() == 8.7: each deadline is passed in one tick."""

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        passes = []
        deadline = 0.0
        for _ in range(200):
            deadline += 0.1  # drifts from the tick grid, as float sums do
            count = 0
            while loop.time() < deadline:
                count += 1
                assert count < 10, f"time stuck at {loop.time()}, deadline {deadline}"
                await asyncio.sleep(deadline - loop.time())
            passes.append(count)
        return passes

    passes = run_virtual(main)
    assert set(passes) <= {1, 2}
    assert passes.count(2) > 0  # the drift did put deadlines between ticks


def test_a_deadline_between_now_and_the_next_tick_fires_at_the_next_tick() -> None:
    loop = VirtualClockLoop()
    try:
        loop.advance(8.7)
        fired: list[int] = []
        loop.call_at(8.700000000000001, lambda: fired.append(loop.virtual_ticks()))
        loop.call_at(8.7, lambda: fired.append(loop.virtual_ticks()))  # now: stays now
        loop.run_until_complete(asyncio.sleep(1e-9))
        assert fired == [8_700_000_000, 8_700_000_001]
    finally:
        loop.close()


# -- ordering --------------------------------------------------------------------


class _NoBusyGrace(VirtualClockLoop):
    """Busy time never charged (rule 9 off): creating and starting 100,000
    tasks keeps the loop busy for more than the grace, which on asyncio's own
    loop, and by default here, moves the clock by the real time it took."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, busy_grace=None, **kwargs)  # type: ignore[arg-type]


def test_many_concurrent_sleeps_wake_in_order_of_duration(run_virtual: RunVirtual) -> None:
    """100,000 tasks sleeping distinct durations, created in random order, wake
    shortest first, each at exactly its own duration (on a loop that never
    charges busy time: the heap's order and exactness are under test, not how
    long the machine takes to start the tasks)."""
    durations = [i / 1000 for i in range(1, 100_001)]  # 1 ms to 100 s
    random.Random(1729).shuffle(durations)
    woke: list[tuple[float, float]] = []

    async def sleeper(duration: float) -> None:
        await asyncio.sleep(duration)
        woke.append((duration, asyncio.get_running_loop().time()))

    async def main() -> float:
        await asyncio.gather(*(sleeper(duration) for duration in durations))
        return asyncio.get_running_loop().time()

    ended_at = run_virtual(main, loop_class=_NoBusyGrace)

    assert [duration for duration, _ in woke] == sorted(durations)
    late_or_early = [(duration, at) for duration, at in woke if at != duration]
    assert late_or_early == []
    assert ended_at == 100.0


def test_timers_due_at_the_same_instant_fire_in_scheduling_order(
    run_virtual: RunVirtual,
) -> None:
    """1000 ``call_at`` timers for one instant fire in the order they were set
    (asyncio's own timer heap does not keep that order)."""

    async def main() -> tuple[list[int], float]:
        loop = asyncio.get_running_loop()
        fired: list[int] = []
        done: asyncio.Future[None] = loop.create_future()
        for index in range(1000):
            loop.call_at(5.0, fired.append, index)
        loop.call_at(5.0, done.set_result, None)
        await done
        return fired, loop.time()

    fired, ended_at = run_virtual(main)

    assert fired == list(range(1000))
    assert ended_at == 5.0


def test_ties_keep_scheduling_order_across_instants_and_scheduling_calls(
    run_virtual: RunVirtual,
) -> None:
    """Timers for two instants set alternately fire grouped by instant, each group in
    scheduling order; a ``call_later`` set earlier fires before a ``call_at`` set
    later for the same instant; equal sleeps wake in task-creation order."""

    async def main() -> tuple[list[str], list[int]]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        for index in range(10):
            when = 3.0 if index % 2 else 2.0
            loop.call_at(when, fired.append, f"{when:g}s #{index}")
        loop.call_later(4.0, fired.append, "call_later at 0 s")
        await asyncio.sleep(1.5)
        loop.call_at(4.0, fired.append, "call_at at 1.5 s")
        loop.call_later(2.5, fired.append, "call_later at 1.5 s")

        woke: list[int] = []

        async def sleeper(index: int) -> None:
            await asyncio.sleep(10)
            woke.append(index)

        await asyncio.gather(*(sleeper(index) for index in range(50)))
        return fired, woke

    fired, woke = run_virtual(main)

    assert fired == [
        "2s #0",
        "2s #2",
        "2s #4",
        "2s #6",
        "2s #8",
        "3s #1",
        "3s #3",
        "3s #5",
        "3s #7",
        "3s #9",
        "call_later at 0 s",
        "call_at at 1.5 s",
        "call_later at 1.5 s",
    ]
    assert woke == list(range(50))


# -- a loop's clock over its lifetime --------------------------------------------


def test_a_new_loop_starts_at_zero_whatever_earlier_loops_did(run_virtual: RunVirtual) -> None:
    """Every new loop starts at 0 and runs on its own clock: twenty loops in a row
    each end at exactly their own sleep, whatever the previous ones reached."""

    for index in range(1, 21):
        fresh = VirtualClockLoop()
        try:
            assert (fresh.time(), fresh.virtual_ticks()) == (0.0, 0)
        finally:
            fresh.close()

        async def main(delay: float = index * 7.5) -> tuple[float, float]:
            started = asyncio.get_running_loop().time()
            await asyncio.sleep(delay)
            return started, asyncio.get_running_loop().time()

        assert run_virtual(main) == (0.0, index * 7.5)


def test_advance_moves_the_clock_and_makes_timers_due() -> None:
    """``advance`` moves a stopped loop's clock by the exact amount, refuses to go
    backwards, and timers it makes due fire on the next run without a further jump."""
    loop = VirtualClockLoop()
    try:
        fired: list[float] = []
        loop.call_later(5.0, lambda: fired.append(loop.time()))
        loop.advance(2.5)
        assert loop.time() == 2.5
        with pytest.raises(ValueError, match="backwards"):
            loop.advance(-1.0)
        assert loop.time() == 2.5

        loop.advance(2.5)
        loop.run_until_complete(asyncio.sleep(0))

        assert fired == [5.0]
        assert loop.time() == 5.0
    finally:
        loop.close()


def test_loop_time_never_decreases_across_runs_of_one_loop() -> None:
    """One loop run several times keeps its clock: each run starts where the last
    ended, time stands still between runs, and it only ever moves forward."""
    loop = VirtualClockLoop()
    readings: list[float] = []

    async def sleep_for(seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def block_for(seconds: float) -> None:
        time.sleep(seconds)

    async def executor_job() -> None:
        await asyncio.get_running_loop().run_in_executor(None, time.sleep, 0.01)

    try:
        loop.run_until_complete(sleep_for(1.0))
        readings.append(loop.time())
        time_patch.real_sleep(0.02)  # real time passing between runs is not counted
        readings.append(loop.time())
        loop.run_until_complete(block_for(2.0))
        readings.append(loop.time())
        loop.advance(0.5)
        readings.append(loop.time())
        loop.run_until_complete(sleep_for(0.25))
        readings.append(loop.time())
        loop.run_until_complete(executor_job())  # flows at real speed: > 3.75
        readings.append(loop.time())
        loop.run_until_complete(sleep_for(0))
        readings.append(loop.time())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    assert readings[:5] == [1.0, 1.0, 3.0, 3.5, 3.75]
    assert readings[5] > 3.75
    assert readings[6] == readings[5]
    assert readings == sorted(readings)
