"""A periodic task stepped tick by tick on the manual clock."""

import asyncio

import pytest

from pytest_asyncspec import LoopClock


class Heartbeat:
    """Sends a beat every `period` seconds until stopped."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.beats: list[float] = []

    async def run(self, clock: LoopClock) -> None:
        while True:
            await asyncio.sleep(self.period)
            self.beats.append(clock.now())


@pytest.mark.asyncspec(clock="manual")
async def test_each_advance_runs_the_beats_due_by_then(asyncspec_clock: LoopClock) -> None:
    heartbeat = Heartbeat(period=5)
    task = asyncio.create_task(heartbeat.run(asyncspec_clock))

    await asyncio.sleep(0)  # the task starts; on a manual clock time stands still
    assert heartbeat.beats == []

    await asyncspec_clock.advance(4.9)
    assert heartbeat.beats == []

    await asyncspec_clock.advance(0.1)  # t = 5: the first beat is due, and runs
    assert heartbeat.beats == [5.0]

    await asyncspec_clock.advance(12)  # t = 17: the beats of t = 10 and 15
    assert heartbeat.beats == [5.0, 10.0, 15.0]
    assert asyncspec_clock.now() == 17
    task.cancel()


@pytest.mark.asyncspec(clock="virtual")
async def test_on_the_virtual_clock_advance_is_a_sleep_that_comes_last(
    asyncspec_clock: LoopClock,
) -> None:
    done: list[str] = []
    asyncio.get_running_loop().call_later(3, done.append, "timer at t = 3")

    await asyncspec_clock.advance(3)  # everything due at t = 3 ran first

    assert done == ["timer at t = 3"]
    assert asyncspec_clock.now() == 3
