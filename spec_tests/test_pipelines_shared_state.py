"""Claims S0.5-S0.8 of "Async Processing in Python: Make Data Pipelines Scream".

The document's last two programs give each of five gathered calls an id and
let every call update two shared values, a counter ("sum") and a trail of ids
("chain"), then print what it sees when it finishes.  Where the update sits
relative to the one await of the call decides what each call sees: updated
after the await and before a blocking stretch, each call sees only the calls
before it; updated during the blocking stretch before the await, every call
sees all five.  The claims here are about stock asyncio's order (gather
starts the calls in argument order; timers due together run in the order
they were set), compared line by line with the document's transcripts, times
included, and with its per-call figures.

Each claim is paired with a negative control: the same assertion applied to
the other placement of the update (or to calls started in another order)
must fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from pipelines import (
    CALL_IDS,
    Report,
    Shared,
    Step,
    update_after_await,
    update_while_blocking,
)
from transcripts import assert_transcript, loop_seconds

from pytest_asyncspec import LoopClock, OutputLine, TraceView
from pytest_asyncspec.checks.output import ExpectedLine

SOURCE = "Async Processing in Python: Make Data Pipelines Scream"
FIGURE = r"(\d+\.\d{5})"  # the program prints its own timing with 5 decimals

# The document's figures for the two programs.
DOCUMENTED_AFTER_AWAIT_FINISHES = [5.00606, 7.51137, 10.01224, 12.51499, 15.01671]
DOCUMENTED_AFTER_AWAIT_JOB = 15.01861
DOCUMENTED_WHILE_BLOCKING_DURATIONS = [12.51241, 10.01062, 7.51010, 5.00613, 5.00680]
DOCUMENTED_WHILE_BLOCKING_JOB = 15.01523
# S0.3 and S0.4 (the same programs without the shared state) end the same way.
AFTER_AWAIT_FINISHES = [5.0, 7.5, 10.0, 12.5, 15.0]
WHILE_BLOCKING_STARTS = [0.0, 2.5, 5.0, 7.5, 10.0]
WHILE_BLOCKING_DURATIONS = [12.5, 10.0, 7.5, 5.0, 5.0]


@dataclass
class Run:
    shared: Shared
    reports: list[Report]
    lines: list[OutputLine]  # printed lines, times relative to the start of the run
    job: float


async def run_pipeline(
    clock: LoopClock,
    trace: TraceView,
    step: Step,
    order: Sequence[int] = CALL_IDS,
) -> Run:
    """Gather one call of ``step`` per id in ``order``; keep what was printed."""
    output = trace.output
    first_line = len(output.lines)
    origin = loop_seconds()
    shared = Shared()
    reports: list[Report] = []
    clock.reset()
    await asyncio.gather(*(step(shared, call_id, reports) for call_id in order))
    job = clock.now()
    lines = [
        dataclasses.replace(line, time=line.time - origin) for line in output.lines[first_line:]
    ]
    return Run(shared, reports, lines, job)


# -- comparing -----------------------------------------------------------------


def started_line(call_id: int) -> str:
    return f"myProc {call_id} started ..."


def finished_line(call_id: int, count: int, trail: str) -> re.Pattern[str]:
    return re.compile(
        rf"myProc {call_id} finished in {FIGURE} seconds\. "
        rf"sum = {count} chain {re.escape(trail)}"
    )


def printed_figures(lines: Sequence[OutputLine]) -> list[float]:
    """The timings the calls printed in their "finished" lines, in print order."""
    found = (re.search(rf"finished in {FIGURE} seconds", line.text) for line in lines)
    return [float(match.group(1)) for match in found if match]


def after_await_transcript() -> list[ExpectedLine]:
    # Each call updates the state when its wait is over, then blocks, so the
    # n-th call to finish has seen exactly the first n updates.
    expected: list[ExpectedLine] = [(0.0, started_line(call_id)) for call_id in CALL_IDS]
    for position, call_id in enumerate(CALL_IDS):
        trail = "".join(f"->{seen}" for seen in CALL_IDS[: position + 1])
        expected.append(
            (AFTER_AWAIT_FINISHES[position], finished_line(call_id, position + 1, trail))
        )
    return expected


def while_blocking_transcript() -> list[ExpectedLine]:
    # All five updates happen during the blocking stretches, before any wait
    # ends: every call reports the final state.
    full = "".join(f"->{call_id}" for call_id in CALL_IDS)
    expected: list[ExpectedLine] = [
        (start, started_line(call_id))
        for start, call_id in zip(WHILE_BLOCKING_STARTS, CALL_IDS, strict=True)
    ]
    for call_id, duration, start in zip(
        CALL_IDS, WHILE_BLOCKING_DURATIONS, WHILE_BLOCKING_STARTS, strict=True
    ):
        expected.append((start + duration, finished_line(call_id, len(CALL_IDS), full)))
    return expected


def assert_reports_progress(reports: Sequence[Report]) -> None:
    """S0.5's per-call values: call n sees count n and the trail ->1 ... ->n."""
    seen = [(report.call_id, report.count, report.trail) for report in reports]
    expected = [
        (call_id, n, "".join(f"->{i}" for i in CALL_IDS[:n]))
        for n, call_id in enumerate(CALL_IDS, start=1)
    ]
    assert seen == expected


def assert_reports_final_state(reports: Sequence[Report]) -> None:
    """S0.6's per-call values: every call sees count 5 and the full trail."""
    seen = [(report.call_id, report.count, report.trail) for report in reports]
    assert seen == [(call_id, 5, "->1->2->3->4->5") for call_id in CALL_IDS]


# -- S0.5 ----------------------------------------------------------------------


@pytest.mark.claim("S0.5", source=SOURCE, kind="O")
async def test_update_after_await_each_call_sees_its_predecessors(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """When each call updates the shared count and trail after its await and then
    blocks, the calls finish one by one and call n reports count n and the trail
    of calls 1..n, finishing at 5, 7.5, 10, 12.5 and 15 s as in S0.3."""
    clock = asyncspec_clock
    run = await run_pipeline(clock, asyncspec_trace, update_after_await)

    assert_reports_progress(run.reports)
    assert_transcript(clock, run.lines, after_await_transcript())
    # Every call started at t = 0, so what it printed is its finish time.
    clock.assert_times(
        printed_figures(run.lines),
        AFTER_AWAIT_FINISHES,
        what="finish times",
        documented=DOCUMENTED_AFTER_AWAIT_FINISHES,
    )
    clock.assert_time(run.job, 15.0, what="whole job", documented=DOCUMENTED_AFTER_AWAIT_JOB)


@pytest.mark.claim("S0.5", source=SOURCE, kind="O", control=True)
async def test_control_update_while_blocking_does_not_show_progress(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Negative control for S0.5: when the update happens during the blocking
    stretch, every call reports the final state, and S0.5's per-call and
    transcript assertions reject it."""
    clock = asyncspec_clock
    run = await run_pipeline(clock, asyncspec_trace, update_while_blocking)

    with pytest.raises(AssertionError):
        assert_reports_progress(run.reports)
    call_one_saw_everything = (
        r"printed 'myProc 1 finished in \S+ seconds\. sum = 5 chain ->1->2->3->4->5'"
    )
    with pytest.raises(AssertionError, match=call_one_saw_everything):
        assert_transcript(clock, run.lines, after_await_transcript())


# -- S0.6 ----------------------------------------------------------------------


@pytest.mark.claim("S0.6", source=SOURCE, kind="O")
async def test_update_while_blocking_every_call_sees_the_final_state(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """When each call updates the shared state while it blocks, before its await,
    all five updates are done before any wait ends, so every call reports count
    5 and the trail ->1->2->3->4->5; durations are 12.5, 10, 7.5, 5 and 5 s as
    in S0.4."""
    clock = asyncspec_clock
    run = await run_pipeline(clock, asyncspec_trace, update_while_blocking)

    assert_reports_final_state(run.reports)
    assert_transcript(clock, run.lines, while_blocking_transcript())
    clock.assert_times(
        printed_figures(run.lines),
        WHILE_BLOCKING_DURATIONS,
        what="durations",
        documented=DOCUMENTED_WHILE_BLOCKING_DURATIONS,
    )
    clock.assert_time(run.job, 15.0, what="whole job", documented=DOCUMENTED_WHILE_BLOCKING_JOB)


@pytest.mark.claim("S0.6", source=SOURCE, kind="O", control=True)
async def test_control_update_after_await_does_not_see_the_final_state(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Negative control for S0.6: when the update follows the await, the early
    calls report a partial count and trail, and S0.6's per-call and transcript
    assertions reject it."""
    clock = asyncspec_clock
    run = await run_pipeline(clock, asyncspec_trace, update_after_await)

    with pytest.raises(AssertionError):
        assert_reports_final_state(run.reports)
    call_one_saw_itself = r"printed 'myProc 1 finished in \S+ seconds\. sum = 1 chain ->1'"
    with pytest.raises(AssertionError, match=call_one_saw_itself):
        assert_transcript(clock, run.lines, while_blocking_transcript())


# -- S0.7 ----------------------------------------------------------------------


def assert_check_fails_for_first_three(over_three: dict[int, bool]) -> None:
    assert over_three == {1: False, 2: False, 3: False, 4: True, 5: True}


@pytest.mark.claim("S0.7", source=SOURCE, kind="O")
async def test_check_right_after_update_fails_for_the_first_three_calls(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """A test of count > 3 made by each call right after its own update (update
    after the await) fails in calls 1, 2 and 3 and holds in calls 4 and 5,
    although the count ends at 5."""
    run = await run_pipeline(asyncspec_clock, asyncspec_trace, update_after_await)

    assert_check_fails_for_first_three(run.shared.over_three_at_update)
    # What each call printed agrees with what it tested.
    assert_check_fails_for_first_three({r.call_id: r.count > 3 for r in run.reports})
    assert run.shared.count == 5


@pytest.mark.claim("S0.7", source=SOURCE, kind="O", control=True)
async def test_control_check_at_the_end_of_each_call_always_holds(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Negative control for S0.7: the same test made where the second variant
    reads the state (after its await) holds in every call, and S0.7's assertion
    rejects that."""
    run = await run_pipeline(asyncspec_clock, asyncspec_trace, update_while_blocking)

    read_at_end = {report.call_id: report.count > 3 for report in run.reports}
    assert read_at_end == dict.fromkeys(CALL_IDS, True)
    with pytest.raises(AssertionError):
        assert_check_fails_for_first_three(read_at_end)


# -- S0.8 ----------------------------------------------------------------------

SHUFFLED = (3, 1, 5, 2, 4)


def assert_started_in_argument_order(run: Run, order: Sequence[int]) -> None:
    started = [line.text for line in run.lines if line.text.endswith("started ...")]
    assert started == [started_line(call_id) for call_id in order]
    assert run.shared.trail == "".join(f"->{call_id}" for call_id in order)


@pytest.mark.claim("S0.8", source=SOURCE, kind="O")
async def test_gather_starts_calls_in_argument_order(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """gather starts its coroutines in the order they were passed: the "started"
    lines and the trail of updates follow the argument order, for 1..5 as in the
    document and for a shuffled order alike."""
    run = await run_pipeline(asyncspec_clock, asyncspec_trace, update_after_await)
    assert_started_in_argument_order(run, CALL_IDS)

    run = await run_pipeline(asyncspec_clock, asyncspec_trace, update_after_await, SHUFFLED)
    assert_started_in_argument_order(run, SHUFFLED)
    assert [report.call_id for report in run.reports] == list(SHUFFLED)


@pytest.mark.claim("S0.8", source=SOURCE, kind="O", control=True)
async def test_control_tasks_created_earlier_start_in_creation_order(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Negative control for S0.8: tasks created 1..5 before being handed to gather
    in the shuffled order start in creation order, and S0.8's assertion rejects
    that."""

    async def step(shared: Shared, call_id: int, reports: list[Report]) -> None:
        await tasks[call_id]

    shared_state = Shared()
    created_reports: list[Report] = []
    tasks = {
        call_id: asyncio.ensure_future(update_after_await(shared_state, call_id, created_reports))
        for call_id in CALL_IDS
    }
    run = await run_pipeline(asyncspec_clock, asyncspec_trace, step, SHUFFLED)
    run.shared = shared_state

    with pytest.raises(AssertionError):
        assert_started_in_argument_order(run, SHUFFLED)
    assert_started_in_argument_order(run, CALL_IDS)
