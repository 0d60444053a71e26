"""Trace queries on three workers that overlap."""

import asyncio

import pytest

pytestmark = pytest.mark.asyncspec(clock="virtual")


async def work(number: int) -> None:
    print(f"w{number} started")
    await asyncio.sleep(number + 1)
    print(f"w{number} finished")


async def test_workers_overlap(asyncspec_trace):
    await asyncio.gather(*(asyncio.create_task(work(i), name=f"w{i}") for i in range(3)))
    trace = asyncspec_trace
    assert trace.every_start_before_any_finish("w0", "w1", "w2")
    assert trace.finish_of("w2") == 3.0
    assert trace.longest_step().duration == 0.0  # nothing blocked the loop
    assert [line.text for line in trace.output.lines][:2] == ["w0 started", "w1 started"]
