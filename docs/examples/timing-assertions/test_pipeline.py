"""Timing assertions on a small pipeline: exact on the virtual clock."""

import asyncio

import pytest

pytestmark = pytest.mark.asyncspec(clock="virtual")


async def stage(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def run_pipeline() -> None:
    await stage(5.0)  # fetch
    await asyncio.gather(stage(5.0), stage(5.0))  # two parsers side by side
    await stage(5.0)  # store


async def job(number: int) -> int:
    await asyncio.sleep(2.5 * (number + 1))
    return number


async def test_pipeline(asyncspec_clock):
    clock = asyncspec_clock
    with clock.measure() as span:  # elapsed time of a block
        await run_pipeline()
    clock.assert_time(span.elapsed, 15.0, what="pipeline")

    clock.reset()  # t = 0 again
    finished = await clock.finish_times(job(1), job(2), job(3))  # like gather
    clock.assert_times(finished.times, [5.0, 7.5, 10.0], what="finish times")
    assert finished.results == [1, 2, 3]

    clock.assert_time(clock.now(), 10.0, what="time of this point")
