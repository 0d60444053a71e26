"""Claims S0.1-S0.4 of "Async Processing in Python: Make Data Pipelines Scream".

The document times one 5-second job run five ways: blocking calls in sequence,
awaited sleeps under ``gather``, and two mixes of half awaiting, half blocking
whose order decides who waits for whom.  Each claim below carries the
document's own figures as data and checks the ideal figures exactly on the
virtual clock (the document's extra milliseconds are interpreter overhead).

Every claim is paired with a negative control: the same assertion applied to
the wrong behaviour (sequential instead of gathered, the other order of
blocking and awaiting) must fail, so the assertion is known to discriminate.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import pytest

from pytest_asyncspec import LoopClock, TimingAssertionError

SOURCE = "Async Processing in Python: Make Data Pipelines Scream"
CALLS = 5


async def blocking_job(seconds: float) -> None:
    time.sleep(seconds)


async def awaiting_job(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def await_then_block(half: float) -> None:
    await asyncio.sleep(half)
    time.sleep(half)


async def block_then_await(half: float) -> None:
    time.sleep(half)
    await asyncio.sleep(half)


async def _starts_and_durations(
    clock: LoopClock, job: Callable[[float], Awaitable[None]], seconds: float
) -> tuple[list[float], list[float], float]:
    """Gather ``CALLS`` calls of ``job``; note when each started and how long it took."""
    starts: list[float] = []
    durations: list[float] = []

    async def timed() -> None:
        started = clock.now()
        starts.append(started)
        await job(seconds)
        durations.append(round(clock.now() - started, 9))

    clock.reset()
    await asyncio.gather(*(timed() for _ in range(CALLS)))
    return starts, durations, clock.now()


@pytest.mark.claim("S0.1", source=SOURCE, kind="T,O")
async def test_blocking_calls_in_sequence_add_up(asyncspec_clock: LoopClock) -> None:
    """Five calls that each block for 5 s, made one after the other, take 5 s each
    and 25 s together; each starts only when the previous one has finished."""
    documented_job = 25.01145
    clock = asyncspec_clock
    spans: list[tuple[float, float]] = []
    clock.reset()
    for _ in range(CALLS):
        started = clock.now()
        await blocking_job(5)
        spans.append((started, clock.now()))
    clock.assert_times([end - start for start, end in spans], [5.0] * CALLS, what="each call")
    clock.assert_time(clock.now(), 25.0, what="whole job", documented=documented_job)
    for (_, previous_end), (next_start, _) in itertools.pairwise(spans):
        assert next_start >= previous_end


@pytest.mark.claim("S0.2", source=SOURCE, kind="T,O")
async def test_awaited_sleeps_overlap_under_gather(asyncspec_clock: LoopClock) -> None:
    """Five coroutines that each await a 5 s sleep, gathered: all five start before
    any finishes, each call still lasts 5 s, and the whole job lasts 5 s."""
    documented_job = 5.00495
    starts, durations, total = await _starts_and_durations(asyncspec_clock, awaiting_job, 5)
    asyncspec_clock.assert_times(starts, [0.0] * CALLS, what="start times")
    asyncspec_clock.assert_times(durations, [5.0] * CALLS, what="each call")
    asyncspec_clock.assert_time(total, 5.0, what="whole job", documented=documented_job)


@pytest.mark.claim("S0.2", source=SOURCE, kind="T,O", control=True)
async def test_control_sequential_awaits_do_not_overlap(asyncspec_clock: LoopClock) -> None:
    """Negative control for S0.2: awaiting the five sleeps one by one takes 25 s, so
    the 5 s assertion of S0.2 rejects it."""
    asyncspec_clock.reset()
    for _ in range(CALLS):
        await awaiting_job(5)
    with pytest.raises(TimingAssertionError, match=r"whole job: expected 5\.0 s, measured 25\.0"):
        asyncspec_clock.assert_time(asyncspec_clock.now(), 5.0, what="whole job")


@pytest.mark.claim("S0.3", source=SOURCE, kind="T,O")
async def test_await_then_block_finishes_staggered(asyncspec_clock: LoopClock) -> None:
    """Awaiting 2.5 s and then blocking 2.5 s: all five calls start at 0, but the
    blocking halves queue up behind each other, so the calls finish 2.5 s apart,
    at 5, 7.5, 10, 12.5 and 15 s."""
    documented_finishes = [5.00751, 7.50905, 10.01197, 12.51726, 15.02254]
    starts, durations, total = await _starts_and_durations(asyncspec_clock, await_then_block, 2.5)
    asyncspec_clock.assert_times(starts, [0.0] * CALLS, what="start times")
    asyncspec_clock.assert_times(
        durations,
        [5.0, 7.5, 10.0, 12.5, 15.0],
        what="finish times",
        documented=documented_finishes,
    )
    asyncspec_clock.assert_time(total, 15.0, what="whole job", documented=15.02414)


@pytest.mark.claim("S0.4", source=SOURCE, kind="T,O")
async def test_block_then_await_starts_staggered(asyncspec_clock: LoopClock) -> None:
    """Blocking 2.5 s first and awaiting 2.5 s after: each call can only start once
    the previous one has blocked, so starts come 2.5 s apart, and the early calls
    wait longest: durations 12.5, 10, 7.5, 5 and 5 s, 15 s in all."""
    documented_durations = [12.51053, 10.00526, 7.50407, 5.00093, 5.00068]
    starts, durations, total = await _starts_and_durations(asyncspec_clock, block_then_await, 2.5)
    asyncspec_clock.assert_times(starts, [0.0, 2.5, 5.0, 7.5, 10.0], what="start times")
    asyncspec_clock.assert_times(
        durations,
        [12.5, 10.0, 7.5, 5.0, 5.0],
        what="durations",
        documented=documented_durations,
    )
    asyncspec_clock.assert_time(total, 15.0, what="whole job", documented=15.01211)


@pytest.mark.claim("S0.4", source=SOURCE, kind="T,O", control=True)
async def test_control_order_of_blocking_and_awaiting_matters(
    asyncspec_clock: LoopClock,
) -> None:
    """Negative control for S0.3/S0.4: the two orders give different start times,
    so the S0.4 start-time assertion rejects the S0.3 program."""
    starts, _, _ = await _starts_and_durations(asyncspec_clock, await_then_block, 2.5)
    with pytest.raises(TimingAssertionError, match="start times"):
        asyncspec_clock.assert_times(starts, [0.0, 2.5, 5.0, 7.5, 10.0], what="start times")


@pytest.mark.claim("S0.1", source=SOURCE, kind="T,O", control=True)
async def test_control_awaited_calls_do_not_add_up(asyncspec_clock: LoopClock) -> None:
    """Negative control for S0.1: five gathered calls that await instead of
    blocking overlap, so S0.1's 25 s total and its strict alternation both
    reject them."""
    starts, durations, total = await _starts_and_durations(asyncspec_clock, awaiting_job, 5)
    with pytest.raises(TimingAssertionError, match=r"whole job: expected 25\.0 s, measured 5\.0"):
        asyncspec_clock.assert_time(total, 25.0, what="whole job")
    spans = [(start, start + duration) for start, duration in zip(starts, durations, strict=True)]
    assert any(
        next_start < previous_end
        for (_, previous_end), (next_start, _) in itertools.pairwise(spans)
    ), "the awaited calls should overlap, so the alternation check would reject them"


@pytest.mark.claim("S0.3", source=SOURCE, kind="T,O", control=True)
async def test_control_blocking_first_does_not_finish_staggered(
    asyncspec_clock: LoopClock,
) -> None:
    """Negative control for S0.3: blocking first and awaiting after gives other
    durations (12.5, 10, 7.5, 5, 5 s), so S0.3's staggered finish-time
    assertion rejects that program."""
    _, durations, _ = await _starts_and_durations(asyncspec_clock, block_then_await, 2.5)
    with pytest.raises(TimingAssertionError, match="finish times"):
        asyncspec_clock.assert_times(durations, [5.0, 7.5, 10.0, 12.5, 15.0], what="finish times")
