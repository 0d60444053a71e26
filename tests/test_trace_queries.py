"""The trace queries answer questions about a recorded run correctly.

Most programs here run on :class:`VirtualClockLoop`, where step times are
exact, so each query is checked against figures worked out by hand: which task
a name or label means, a task's steps, its first start and last finish, the
longest step, the total time the loop was held, who held it at an instant,
and whether tasks overlapped.  The last test records a million steps and
checks that the packed record array stays small.
"""

from __future__ import annotations

import asyncio
import sys
import time
import types
from collections import Counter
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

import pytest
from tracing_helpers import close_loop

from pytest_asyncspec import VirtualClockLoop
from pytest_asyncspec.tracing.trace import Awaits, Outcome, Trace, Tracer

_T = TypeVar("_T")


def run_traced(
    main: Callable[[], Coroutine[Any, Any, _T]],
    make_loop: Callable[[], asyncio.AbstractEventLoop] = VirtualClockLoop,
) -> tuple[_T, Trace, Tracer]:
    """Run ``main()`` traced on a fresh loop; stop the tracer before teardown."""
    loop = make_loop()
    try:
        tracer = Tracer(loop)
        tracer.install()
        try:
            result = loop.run_until_complete(main())
        finally:
            trace = tracer.stop()
        return result, trace, tracer
    finally:
        close_loop(loop)


# -- a program with known figures ------------------------------------------------------


async def blocker() -> None:
    await asyncio.sleep(1)
    time.sleep(2.5)  # the step [1.0, 3.5]: the longest
    await asyncio.sleep(1)  # wakes at 4.5


async def short() -> None:
    time.sleep(0.5)  # the step [0.0, 0.5]
    await asyncio.sleep(5)  # wakes at 5.5
    time.sleep(1.0)  # the last step [5.5, 6.5]


async def known_program() -> None:
    await asyncio.gather(
        asyncio.create_task(blocker(), name="blocker"),
        asyncio.create_task(short(), name="short"),
    )


@pytest.fixture(scope="module")
def known() -> Trace:
    """The trace of :func:`known_program` (blocking sleeps total 4.0 s)."""
    _, trace, _ = run_traced(known_program)
    return trace


def test_known_program_trace_is_what_the_figures_assume(known: Trace) -> None:
    """Sanity: the steps the other query tests reason about, exactly."""
    got = [
        ("main" if s.task == 1 else known.tasks[s.task].name, s.awaits, s.start, s.end)
        for s in known.steps()
    ]
    assert got == [
        ("main", Awaits.FUTURE, 0.0, 0.0),
        ("blocker", Awaits.SLEEP, 0.0, 0.0),
        ("short", Awaits.SLEEP, 0.0, 0.5),
        ("blocker", Awaits.SLEEP, 1.0, 3.5),
        ("blocker", Awaits.DONE, 4.5, 4.5),
        ("short", Awaits.DONE, 5.5, 6.5),
        ("main", Awaits.DONE, 6.5, 6.5),
    ]


def test_step_outside_the_trace_is_an_index_error(known: Trace) -> None:
    """step(i) past the last step raises IndexError, like any sequence."""
    assert known.step(len(known) - 1).awaits is Awaits.DONE
    with pytest.raises(IndexError):
        known.step(len(known))


# -- finding a task ------------------------------------------------------------------


def test_task_by_label_and_by_name(known: Trace) -> None:
    """task() takes a label or a unique name and gives the same record."""
    record = known.task("blocker")
    assert record.name == "blocker"
    assert record.coroutine == "blocker"
    assert known.task(record.label) is record
    assert known.task(2) is record  # created first by main (label 1)
    assert known.task("short").label == 3
    assert known.task(1).coroutine == "known_program"


def test_an_unnamed_task_is_found_by_the_name_timelines_show(known: Trace) -> None:
    """The main task has asyncio's Task-N name; timelines and trace files show
    it by its coroutine, and a query by that shown name finds it."""
    main = known.task(1)
    assert main.name.startswith("Task-")
    assert main.shown_name == "known_program"
    assert known.task("known_program") is main


def test_unknown_label_is_a_lookup_error_saying_the_range(known: Trace) -> None:
    """An unknown label names the valid range."""
    with pytest.raises(LookupError, match=r"no traced task has label 9; labels run 1\.\.3"):
        known.task(9)
    with pytest.raises(LookupError, match="label 0"):
        known.steps_of(0)


def test_unknown_name_is_a_lookup_error_listing_known_names(known: Trace) -> None:
    """An unknown name lists the traced names and suggests create_task(name=...)."""
    with pytest.raises(LookupError) as info:
        known.task("blockr")
    message = str(info.value)
    assert "no traced task is named 'blockr'" in message
    assert "name=" in message
    assert "blocker" in message
    assert "short" in message


def test_duplicate_name_is_a_lookup_error_counting_them() -> None:
    """A name shared by tasks is ambiguous: the error says how many and to use a label."""

    async def main() -> None:
        await asyncio.gather(
            asyncio.create_task(asyncio.sleep(0), name="twin"),
            asyncio.create_task(asyncio.sleep(0), name="twin"),
            asyncio.create_task(asyncio.sleep(0), name="single"),
        )

    _, trace, _ = run_traced(main)
    with pytest.raises(LookupError, match="2 tasks are named 'twin'; pass a label"):
        trace.task("twin")
    with pytest.raises(LookupError, match="2 tasks are named 'twin'"):
        trace.steps_of("twin")
    assert trace.task("single").label == 4
    assert [trace.task(label).name for label in (2, 3)] == ["twin", "twin"]


# -- steps, starts and finishes ------------------------------------------------------


def test_steps_of_gives_one_tasks_steps_in_order(known: Trace) -> None:
    """steps_of() keeps only that task's steps, in recorded order."""
    blocker_steps = known.steps_of("blocker")
    assert [s.index for s in blocker_steps] == [1, 3, 4]
    assert {s.task for s in blocker_steps} == {2}
    assert [s.awaits for s in blocker_steps] == [Awaits.SLEEP, Awaits.SLEEP, Awaits.DONE]
    assert [s.index for s in known.steps_of("short")] == [2, 5]
    assert known.steps_of(3) == known.steps_of("short")
    total = sum(len(known.steps_of(label)) for label in known.tasks)
    assert total == len(known) == 7


def test_start_of_and_finish_of_are_exact(known: Trace) -> None:
    """start_of: the first step's start; finish_of: the DONE step's end."""
    assert known.start_of("blocker") == 0.0
    assert known.finish_of("blocker") == 4.5
    assert known.start_of("short") == 0.0
    assert known.finish_of("short") == 6.5
    assert known.finish_of(1) == 6.5


def test_start_and_finish_of_late_tasks_are_exact() -> None:
    """A task created at 2 s that sleeps 3 s starts at 2.0 and finishes at 5.0."""

    async def late() -> None:
        await asyncio.sleep(3)

    async def main() -> None:
        await asyncio.sleep(2)
        await asyncio.create_task(late(), name="late")

    _, trace, _ = run_traced(main)
    assert trace.task("late").created_at == 2.0
    assert trace.start_of("late") == 2.0
    assert trace.finish_of("late") == 5.0


def test_unstarted_and_unfinished_tasks_are_lookup_errors() -> None:
    """Mid-run: start_of a task that never ran, finish_of one still waiting."""
    problems: dict[str, str] = {}

    async def wait_long() -> None:
        await asyncio.sleep(60)

    async def main() -> None:
        tracer = Tracer.start()
        waiting = asyncio.create_task(wait_long(), name="waiting")
        trace = tracer.trace()
        with pytest.raises(LookupError) as never_ran:
            trace.start_of("waiting")
        problems["start"] = str(never_ran.value)
        await asyncio.sleep(1)
        assert trace.start_of("waiting") == 0.0
        with pytest.raises(LookupError) as unfinished:
            trace.finish_of("waiting")
        problems["finish"] = str(unfinished.value)
        assert trace.task("waiting").outcome is Outcome.PENDING
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert trace.finish_of("waiting") == 1.0
        tracer.stop()

    loop = VirtualClockLoop()
    try:
        loop.run_until_complete(main())
    finally:
        close_loop(loop)
    assert problems == {
        "start": "task 'waiting' never ran a step",
        "finish": "task 'waiting' has not finished",
    }


# -- holding the loop ----------------------------------------------------------------


def test_longest_step_is_the_blocking_one(known: Trace) -> None:
    """longest_step(): the step that blocked 2.5 s in time.sleep."""
    longest = known.longest_step()
    assert known.tasks[longest.task].name == "blocker"
    assert (longest.start, longest.end, longest.duration) == (1.0, 3.5, 2.5)
    assert longest.index == 3


def test_blocked_total_sums_blocking_sleeps(known: Trace) -> None:
    """blocked_total(): 0.5 + 2.5 + 1.0 seconds of blocking, exactly."""
    assert known.blocked_total() == 4.0


def test_empty_trace_queries() -> None:
    """No steps: longest_step() is a LookupError, blocked_total() is 0, nobody runs."""
    loop = VirtualClockLoop()
    try:
        trace = Tracer(loop).stop()
    finally:
        loop.close()
    assert len(trace) == 0
    assert list(trace.steps()) == []
    with pytest.raises(LookupError, match="no steps"):
        trace.longest_step()
    assert trace.blocked_total() == 0
    assert trace.running_at(0.0) is None


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (0.0, "short"),
        (0.25, "short"),
        (0.5, None),  # a step's end is exclusive
        (0.75, None),
        (1.0, "blocker"),
        (2.0, "blocker"),
        (3.4999, "blocker"),
        (3.5, None),
        (4.5, None),  # a zero-length step holds the loop at no instant
        (5.0, None),
        (5.5, "short"),
        (6.4, "short"),
        (6.5, None),
        (100.0, None),
    ],
)
def test_running_at_names_the_task_holding_the_loop(
    known: Trace, instant: float, expected: str | None
) -> None:
    """running_at(t): the task whose step spans t (start inclusive, end exclusive)."""
    record = known.running_at(instant)
    assert (None if record is None else record.name) == expected


# -- overlap -------------------------------------------------------------------------


async def sleeper(delay: float) -> None:
    await asyncio.sleep(delay)


async def gathered_sleepers(delay: float) -> None:
    names = ("s1", "s2", "s3")
    await asyncio.gather(*(asyncio.create_task(sleeper(delay), name=n) for n in names))


async def sequential_sleepers(delay: float) -> None:
    for name in ("s1", "s2", "s3"):
        await asyncio.create_task(sleeper(delay), name=name)


async def sequential_instant_tasks(delay: float) -> None:
    """Tasks that finish in one step, awaited one after another: no time passes."""

    async def instant() -> None:
        pass

    for name in ("s1", "s2", "s3"):
        await asyncio.create_task(instant(), name=name)


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "virtual": VirtualClockLoop,
    "stock": asyncio.new_event_loop,
}


@pytest.mark.parametrize("loop_kind", sorted(LOOPS))
def test_gathered_sleeps_all_start_before_any_finishes(loop_kind: str) -> None:
    """Gathered sleeps overlap: True for the named tasks, for any subset, and by default."""
    _, trace, _ = run_traced(lambda: gathered_sleepers(0.01), LOOPS[loop_kind])
    assert trace.every_start_before_any_finish("s1", "s2", "s3") is True
    assert trace.every_start_before_any_finish("s1", "s3") is True
    assert trace.every_start_before_any_finish() is True


@pytest.mark.parametrize("loop_kind", sorted(LOOPS))
@pytest.mark.parametrize(
    "program", [sequential_sleepers, sequential_instant_tasks], ids=["sleeping", "instant"]
)
def test_a_sequential_chain_does_not_overlap(
    loop_kind: str, program: Callable[[float], Coroutine[Any, Any, None]]
) -> None:
    """A chain where each task is awaited before the next is made: False, including
    when no time passes at all (the step order decides)."""
    _, trace, _ = run_traced(lambda: program(0.01), LOOPS[loop_kind])
    assert trace.every_start_before_any_finish("s1", "s2", "s3") is False
    assert trace.every_start_before_any_finish("s2", "s3") is False
    assert trace.every_start_before_any_finish() is False


@pytest.mark.parametrize("loop_kind", sorted(LOOPS))
def test_a_task_finishing_in_its_first_step_started_before_it_finished(loop_kind: str) -> None:
    """A task that returns in its first step, gathered with one still sleeping:
    both started before either finished (True); alone, it trivially overlaps itself."""

    async def instant() -> None:
        pass

    async def main() -> None:
        await asyncio.gather(
            asyncio.create_task(sleeper(0.01), name="sleeping"),
            asyncio.create_task(instant(), name="instant"),
        )

    _, trace, _ = run_traced(main, LOOPS[loop_kind])
    assert [s.awaits for s in trace.steps_of("instant")] == [Awaits.DONE]
    assert trace.every_start_before_any_finish("instant") is True
    assert trace.every_start_before_any_finish("sleeping", "instant") is True


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is 3.12+")
def test_eager_child_finishing_inside_its_parents_step_overlaps_the_parent() -> None:
    """The parent starts, its eager child starts and finishes inside the parent's
    step, the parent goes on: both started before either finished."""

    kept: list[asyncio.Task[None]] = []

    async def child() -> None:
        pass

    async def parent() -> None:
        kept.append(asyncio.create_task(child(), name="child"))
        assert kept[0].done()
        await asyncio.sleep(1)

    async def main() -> None:
        await asyncio.create_task(parent(), name="parent")

    def make_loop() -> asyncio.AbstractEventLoop:
        loop = VirtualClockLoop()
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        return loop

    _, trace, _ = run_traced(main, make_loop)
    parent_label, child_label = 2, 3  # by creation order (see the name bug in
    # test_trace_recording.py: a child finished eagerly may lose its name)
    assert trace.task(parent_label).name == "parent"
    assert trace.task(child_label).coroutine.endswith("child")
    assert trace.steps_of(child_label)[0].inside == parent_label
    assert [s.awaits for s in trace.steps_of(child_label)] == [Awaits.DONE]
    assert trace.every_start_before_any_finish(parent_label, child_label) is True


def test_virtual_sequential_chain_times_add_up() -> None:
    """The sequential chain on the virtual clock: each task starts when the last finished."""
    _, trace, _ = run_traced(lambda: sequential_sleepers(1.0))
    spans = [(trace.start_of(n), trace.finish_of(n)) for n in ("s1", "s2", "s3")]
    assert spans == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]


# -- size ----------------------------------------------------------------------------


TASKS = 1000
YIELDS = 1000


@types.coroutine
def bare_yield() -> Generator[None, None, None]:
    """What ``asyncio.sleep(0)`` does, without building a coroutine each time."""
    yield


async def yielder() -> None:
    for _ in range(YIELDS):
        await bare_yield()


async def million_steps() -> None:
    await asyncio.gather(*(yielder() for _ in range(TASKS)))


#: The limit the packed records must stay under (they are designed for 48).
MAX_BYTES_PER_STEP = 150


def test_a_million_steps_are_recorded_compactly() -> None:
    """1000 tasks x 1000 bare yields on the virtual loop: every step recorded,
    and the packed record array holds them in at most 150 bytes a step.

    Takes about 4.5-7 s (measured on 3.10-3.13); the loop and the recorder's
    per-step cost are most of it.
    """
    # A million yields keep the loop busy for seconds of real time, which
    # the clock would follow past its grace (rule 9): this is about the
    # record, so the rule is off.
    _, trace, tracer = run_traced(million_steps, lambda: VirtualClockLoop(busy_grace=None))
    steps = len(trace)
    expected = TASKS * (YIELDS + 1) + 2  # each yielder: 1000 yields + its last step; main: 2
    assert steps == expected

    used = tracer.records.buffer_info()[1] * tracer.records.itemsize / steps
    allocated = (sys.getsizeof(tracer.records) - sys.getsizeof(type(tracer.records)("q"))) / steps
    assert used <= MAX_BYTES_PER_STEP, f"{used:.1f} bytes a step"
    assert allocated <= MAX_BYTES_PER_STEP, f"{allocated:.1f} bytes a step allocated"

    # Every task's steps were kept: count them straight from the packed keys.
    keys = tracer.records[0 :: len(tracer.records) // steps]
    per_label = Counter(key >> 8 for key in keys)
    assert per_label[1] == 2
    assert sorted(set(per_label.values())) == [2, YIELDS + 1]
    assert len(per_label) == TASKS + 1
    assert all(per_label[label] == YIELDS + 1 for label in range(2, TASKS + 2))
    assert all(record.outcome is Outcome.RETURNED for record in trace.tasks.values())

    # Decoding still works at both ends of the array.
    first, last = trace.step(0), trace.step(steps - 1)
    assert (first.task, first.awaits) == (1, Awaits.FUTURE)
    assert (last.task, last.awaits) == (1, Awaits.DONE)
    assert trace.step(steps - 2).awaits is Awaits.DONE
    assert trace.step(1).awaits is Awaits.YIELD
    assert last.end == 0.0  # yielding never moves the clock while the busy rule is off
