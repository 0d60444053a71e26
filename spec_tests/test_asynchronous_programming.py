"""Claims S4.1-S4.14 and errata E1, E2 of "Asynchronous Programming".

The document introduces asyncio with small programs: two counters that print
"One" and "Two" around a one-second sleep, a fast and a slow job awaited in
turn or wrapped in tasks, a two-stage chain per number, a queue drained by
three workers, and futures set from another task.  Each claim below is our
own program with the document's shape and durations, checked exactly on the
virtual clock and within the noise window on the real one.  Where the
document shows what a program prints, the printed lines are compared with it
line by line, with the time (from the program's start) at which each line
appeared.

Every timing (T) and ordering (O) claim has a negative control carrying the
same ID and ``control=True``: the same assertion applied to the wrong
behaviour (blocking instead of awaiting, awaiting in turn instead of in tasks,
a barrier between the chain stages, one worker instead of three) must fail.

Two snippets are wrong as written and are recorded as errata: E1 (a
one-parameter coroutine function called with two arguments) and E2 (a message
announcing a random sleep while the code sleeps 2 s regardless).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import random
import re
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import pytest

from pytest_asyncspec import (
    LoopClock,
    OutputLine,
    TimingAssertionError,
    TraceView,
    VirtualClockLoop,
    compare_transcript,
)
from pytest_asyncspec.clock import TICKS_PER_SECOND
from pytest_asyncspec.tracing import Awaits

SOURCE = "Asynchronous Programming"


# -- running a program and reading what it printed ---------------------------------


def loop_seconds() -> float:
    """The running loop's time in the units of the recorded output lines."""
    loop = asyncio.get_running_loop()
    if isinstance(loop, VirtualClockLoop):
        return loop.virtual_ticks() / TICKS_PER_SECOND
    return loop.time()


@dataclass
class Run:
    """One program's printed lines (times from its start), duration and result."""

    lines: list[OutputLine]
    elapsed: float
    result: Any
    origin: float


async def run_program(
    trace: TraceView, clock: LoopClock, main: Callable[[], Awaitable[Any]]
) -> Run:
    """Run ``main`` as the document's ``asyncio.run(main())`` would, on this loop."""
    before = len(trace.output.lines)
    origin = loop_seconds()
    with clock.measure() as span:
        result = await main()
    lines = [
        OutputLine(time=round(line.time - origin, 9), task=line.task, text=line.text)
        for line in trace.output.lines[before:]
    ]
    return Run(lines=lines, elapsed=span.elapsed, result=result, origin=origin)


def assert_transcript(
    clock: LoopClock, run: Run, expected: Sequence[tuple[float | None, str]]
) -> None:
    """Fail unless the program printed these lines, in this order, at these times."""
    __tracebackhide__ = True
    tolerance = None if clock.mode == "virtual" else clock.tolerance
    problems = compare_transcript(run.lines, expected, tolerance=tolerance)
    if problems:
        raise AssertionError("transcript differs from the document:\n" + "\n".join(problems))


def assert_at_least(clock: LoopClock, measured: float, bound: float, *, what: str) -> None:
    """``measured >= bound``: to the tick on the virtual clock; on the real clock a
    timer may fire up to the early margin of the tolerance before its deadline."""
    __tracebackhide__ = True
    slack = 0.0 if clock.mode == "virtual" else clock.tolerance.early
    if round(measured * TICKS_PER_SECOND) < round((bound - slack) * TICKS_PER_SECOND):
        raise TimingAssertionError(f"{what}: expected at least {bound} s, measured {measured} s")


# -- S4.1 / S4.13: two counters -----------------------------------------------------

INTERLEAVED = [(0.0, "One"), (0.0, "One"), (1.0, "Two"), (1.0, "Two")]
IN_TURN = [(0.0, "One"), (1.0, "Two"), (1.0, "One"), (2.0, "Two")]


async def count_awaiting() -> None:
    print("One")
    await asyncio.sleep(1)
    print("Two")


def count_blocking() -> None:
    print("One")
    time.sleep(1)
    print("Two")


async def count_blocking_in_coroutine() -> None:
    print("One")
    time.sleep(1)  # an async def that blocks: the loop cannot switch here
    print("Two")


async def gathered_awaiting_counts() -> None:
    await asyncio.gather(count_awaiting(), count_awaiting())


async def synchronous_counts() -> None:
    # The document's synchronous version: a plain loop over a plain function.
    for _ in range(2):
        count_blocking()


async def gathered_blocking_counts() -> None:
    await asyncio.gather(count_blocking_in_coroutine(), count_blocking_in_coroutine())


def assert_interleaved_in_one_second(clock: LoopClock, run: Run) -> None:
    __tracebackhide__ = True
    assert_transcript(clock, run, INTERLEAVED)
    clock.assert_time(run.elapsed, 1.0, what="two gathered counts")


def assert_in_turn_in_two_seconds(clock: LoopClock, run: Run) -> None:
    __tracebackhide__ = True
    assert_transcript(clock, run, IN_TURN)
    clock.assert_time(run.elapsed, 2.0, what="two counts in turn")


@pytest.mark.claim("S4.1", source=SOURCE, kind="O,T")
async def test_gathered_counts_print_one_one_two_two(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Two counters gathered print One, One at once and Two, Two one second later:
    both sleeps overlap and the program takes 1 s."""
    run = await run_program(asyncspec_trace, asyncspec_clock, gathered_awaiting_counts)
    assert_interleaved_in_one_second(asyncspec_clock, run)


@pytest.mark.claim("S4.1", source=SOURCE, kind="O,T")
async def test_synchronous_counts_print_one_two_one_two(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """The synchronous version (a plain function with a blocking one-second sleep,
    called twice in a loop) prints One, Two, One, Two and takes 2 s."""
    run = await run_program(asyncspec_trace, asyncspec_clock, synchronous_counts)
    assert_in_turn_in_two_seconds(asyncspec_clock, run)


@pytest.mark.claim("S4.1", source=SOURCE, kind="O,T", control=True)
async def test_control_counts_sync_and_async_are_told_apart(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Negative control for S4.1: the interleaved 1 s assertion rejects the
    synchronous program, and the in-turn 2 s assertion rejects the gathered one."""
    clock = asyncspec_clock
    synchronous = await run_program(asyncspec_trace, clock, synchronous_counts)
    with pytest.raises(AssertionError, match="opposite order"):
        assert_transcript(clock, synchronous, INTERLEAVED)
    with pytest.raises(TimingAssertionError, match=r"expected 1\.0 s"):
        clock.assert_time(synchronous.elapsed, 1.0, what="two gathered counts")
    gathered = await run_program(asyncspec_trace, clock, gathered_awaiting_counts)
    with pytest.raises(AssertionError, match="opposite order"):
        assert_transcript(clock, gathered, IN_TURN)
    with pytest.raises(TimingAssertionError, match=r"expected 2\.0 s"):
        clock.assert_time(gathered.elapsed, 2.0, what="two counts in turn")


# -- S4.2: await only inside async def ----------------------------------------------

AWAIT_IN_PLAIN_DEF = "def lookup(key):\n    value = await fetch(key)\n    return value\n"


@pytest.mark.claim("S4.2", source=SOURCE, kind="S")
def test_await_in_plain_def_is_a_syntax_error() -> None:
    """An ``await`` in the body of a plain ``def`` is rejected when the source is
    compiled, before anything runs; the same body under ``async def`` compiles."""
    with pytest.raises(SyntaxError, match="'await' outside async function") as caught:
        compile(AWAIT_IN_PLAIN_DEF, "<plain def>", "exec")
    assert caught.value.lineno == 2
    compile("async " + AWAIT_IN_PLAIN_DEF, "<async def>", "exec")


# -- S4.3 / S4.4 / E1: a fast and a slow job ----------------------------------------


async def quick_job(label: str) -> None:
    print(f"before {label}")
    await asyncio.sleep(1)
    print(f"after {label}")


async def slow_job(label: str) -> None:
    print(f"before {label}")
    await asyncio.sleep(2)
    print(f"after {label}")


async def jobs_awaited_in_turn() -> None:
    await quick_job("fast task")
    await slow_job("slow task")


async def jobs_as_tasks() -> None:
    first = asyncio.create_task(quick_job("fast task"))
    second = asyncio.create_task(slow_job("slow task"))
    await first
    await second


IN_TURN_JOBS = [
    (0.0, "before fast task"),
    (1.0, "after fast task"),
    (1.0, "before slow task"),
    (3.0, "after slow task"),
]
OVERLAPPING_JOBS = [
    (0.0, "before fast task"),
    (0.0, "before slow task"),
    (1.0, "after fast task"),
    (2.0, "after slow task"),
]


@pytest.mark.claim("S4.3", source=SOURCE, kind="O,T")
async def test_awaiting_jobs_in_turn_takes_three_seconds(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Awaiting the 1 s job and then the 2 s job runs them one after the other:
    the slow job starts only when the fast one has finished, 3 s in all."""
    run = await run_program(asyncspec_trace, asyncspec_clock, jobs_awaited_in_turn)
    assert_transcript(asyncspec_clock, run, IN_TURN_JOBS)
    asyncspec_clock.assert_time(run.elapsed, 3.0, what="jobs awaited in turn")


@pytest.mark.claim("S4.4", source=SOURCE, kind="O,T")
async def test_jobs_wrapped_in_tasks_overlap(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Wrapping both jobs in ``create_task`` before awaiting them starts both at
    once: both "before" lines come first, the jobs end at 1 s and 2 s, 2 s in all."""
    run = await run_program(asyncspec_trace, asyncspec_clock, jobs_as_tasks)
    assert_transcript(asyncspec_clock, run, OVERLAPPING_JOBS)
    asyncspec_clock.assert_time(run.elapsed, 2.0, what="jobs as tasks")


@pytest.mark.claim("S4.3", source=SOURCE, kind="O,T", control=True)
async def test_control_in_turn_assertion_rejects_tasks(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Negative control for S4.3: the in-turn transcript and the 3 s figure reject
    the program that wraps the jobs in tasks."""
    run = await run_program(asyncspec_trace, asyncspec_clock, jobs_as_tasks)
    with pytest.raises(AssertionError, match="transcript differs"):
        assert_transcript(asyncspec_clock, run, IN_TURN_JOBS)
    with pytest.raises(TimingAssertionError, match=r"expected 3\.0 s, measured 2\.0"):
        asyncspec_clock.assert_time(run.elapsed, 3.0, what="jobs awaited in turn")


@pytest.mark.claim("S4.4", source=SOURCE, kind="O,T", control=True)
async def test_control_overlap_assertion_rejects_awaiting_in_turn(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Negative control for S4.4: the overlapping transcript and the 2 s figure
    reject the program that awaits the coroutines one after the other."""
    run = await run_program(asyncspec_trace, asyncspec_clock, jobs_awaited_in_turn)
    with pytest.raises(AssertionError, match="transcript differs"):
        assert_transcript(asyncspec_clock, run, OVERLAPPING_JOBS)
    with pytest.raises(TimingAssertionError, match=r"expected 2\.0 s, measured 3\.0"):
        asyncspec_clock.assert_time(run.elapsed, 2.0, what="jobs as tasks")


@pytest.mark.claim("E1", source=SOURCE, kind="S")
async def test_erratum_two_arguments_to_a_one_parameter_job() -> None:
    """Erratum E1: the create_task example passes two arguments (a number and a
    label) to a coroutine function that takes one; as written that call raises
    ``TypeError`` before any coroutine or task exists, so nothing is scheduled."""
    tasks_before = asyncio.all_tasks()
    created: list[asyncio.Task[None]] = []
    with pytest.raises(TypeError, match=r"takes 1 positional argument but 2 were given"):
        created.append(asyncio.create_task(quick_job(1, "fast task")))  # type: ignore[call-arg, arg-type]
    assert created == []
    assert asyncio.all_tasks() == tasks_before
    # The evident intent, one argument, is the program S4.4 checks.
    task = asyncio.create_task(quick_job("fast task"))
    assert asyncio.all_tasks() == tasks_before | {task}
    await task


# -- S4.5 / E2: chaining two stages per number --------------------------------------

CHAINS = (1, 2, 3)
#: (n + 2) * 2 for n = 1, 2, 3: the first stage adds 2, the second doubles.
CHAINED_RESULTS = {1: 6, 2: 8, 3: 10}
#: random.Random(4).randint(0, 5) six times: 1, 2, 0, 5, 3, 3, taken in pairs as
#: (first stage, second stage) seconds for chains 1, 2, 3.  Chain 2's first
#: stage ends first (0 s) and chain 3's last (3 s), unlike the chain order.
CHAIN_SEED = 4


def chain_plan(seed: int) -> dict[int, tuple[int, int]]:
    draw = random.Random(seed)
    return {n: (draw.randint(0, 5), draw.randint(0, 5)) for n in CHAINS}


@dataclass
class ChainLog:
    clock: LoopClock
    first_returned: dict[int, float] = field(default_factory=dict)
    second_started: dict[int, float] = field(default_factory=dict)
    results: dict[int, int] = field(default_factory=dict)


async def add_two(n: int, seconds: float) -> int:
    await asyncio.sleep(seconds)
    return n + 2


async def double(n: int, seconds: float) -> int:
    await asyncio.sleep(seconds)
    return n * 2


async def run_chain(n: int, plan: dict[int, tuple[int, int]], log: ChainLog) -> None:
    first_seconds, second_seconds = plan[n]
    middle = await add_two(n, first_seconds)
    log.first_returned[n] = log.clock.now()
    log.second_started[n] = log.clock.now()
    log.results[n] = await double(middle, second_seconds)
    print(f"chain {n}: {n} => {log.results[n]}")


async def run_chain_after_barrier(
    n: int, plan: dict[int, tuple[int, int]], log: ChainLog, all_first: asyncio.Event
) -> None:
    """The wrong behaviour: no second stage begins before every first stage ended."""
    first_seconds, second_seconds = plan[n]
    middle = await add_two(n, first_seconds)
    log.first_returned[n] = log.clock.now()
    if len(log.first_returned) == len(CHAINS):
        all_first.set()
    await all_first.wait()
    log.second_started[n] = log.clock.now()
    log.results[n] = await double(middle, second_seconds)


async def chains_as_named_tasks(
    clock: LoopClock, plan: dict[int, tuple[int, int]], *, barrier: bool = False
) -> ChainLog:
    log = ChainLog(clock)
    all_first = asyncio.Event()
    tasks = [
        asyncio.create_task(
            run_chain_after_barrier(n, plan, log, all_first)
            if barrier
            else run_chain(n, plan, log),
            name=f"chain-{n}",
        )
        for n in CHAINS
    ]
    await asyncio.gather(*tasks)
    return log


def assert_stages_chained_per_chain(
    clock: LoopClock, plan: dict[int, tuple[int, int]], log: ChainLog
) -> None:
    """Each chain's second stage starts the moment its own first stage returns."""
    __tracebackhide__ = True
    for n in CHAINS:
        first, _ = plan[n]
        clock.assert_time(log.first_returned[n], first, what=f"chain {n}: first stage returned")
        clock.assert_time(log.second_started[n], first, what=f"chain {n}: second stage started")


def assert_chain_steps(
    clock: LoopClock, trace: TraceView, origin: float, plan: dict[int, tuple[int, int]]
) -> None:
    """The same seen in the trace: the step of a chain's task that resumes after
    the first stage's sleep goes straight on to the second stage's sleep, so the
    task runs three steps, at 0 s, at its first stage's end, and at its own end."""
    __tracebackhide__ = True
    for n in CHAINS:
        first, second = plan[n]
        steps = trace.steps_of(f"chain-{n}")
        clock.assert_times(
            [step.start - origin for step in steps],
            [0.0, first, first + second],
            what=f"chain {n}: task step starts",
        )
        assert steps[1].awaits is Awaits.SLEEP, f"chain {n}: step 2 ended on {steps[1].awaits}"


@pytest.mark.claim("S4.5", source=SOURCE, kind="O,T")
async def test_chained_stages_run_per_chain(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Chaining under gather: each number's second stage starts as soon as its own
    first stage returns, whatever the other chains are doing, and the chains give
    (n + 2) * 2, that is 1 => 6, 2 => 8, 3 => 10."""
    clock = asyncspec_clock
    plan = chain_plan(CHAIN_SEED)
    assert plan == {1: (1, 2), 2: (0, 5), 3: (3, 3)}  # the seeded draws this test relies on
    origin = loop_seconds()
    clock.reset()
    log = await chains_as_named_tasks(clock, plan)
    assert log.results == CHAINED_RESULTS
    assert_stages_chained_per_chain(clock, plan, log)
    assert_chain_steps(clock, asyncspec_trace, origin, plan)
    # So chains 1 and 2 were in their second stage while chain 3's first ran,
    # and the whole run lasts as long as the longest chain, 6 s.
    clock.assert_time(clock.now(), max(a + b for a, b in plan.values()), what="all chains")


@pytest.mark.claim("S4.5", source=SOURCE, kind="O,T", control=True)
async def test_control_barrier_between_stages_is_rejected(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Negative control for S4.5: with a barrier that holds every second stage
    until all first stages have returned, chain 1's second stage starts at 3 s,
    not at the 1 s its first stage ended, and both per-chain assertions fail."""
    clock = asyncspec_clock
    plan = chain_plan(CHAIN_SEED)
    origin = loop_seconds()
    clock.reset()
    log = await chains_as_named_tasks(clock, plan, barrier=True)
    assert log.results == CHAINED_RESULTS  # same values, different timing
    with pytest.raises(TimingAssertionError, match=r"chain 1: second stage started"):
        assert_stages_chained_per_chain(clock, plan, log)
    with pytest.raises(TimingAssertionError, match=r"chain 1: task step starts"):
        assert_chain_steps(clock, asyncspec_trace, origin, plan)
    with pytest.raises(TimingAssertionError, match="all chains"):
        clock.assert_time(clock.now(), max(a + b for a, b in plan.values()), what="all chains")


#: random.Random(0).randint(0, 5): 3, 3, 0 for the three first stages, none 2.
ANNOUNCE_SEED = 0
ANNOUNCED = re.compile(r"first stage of (\d+): sleeping for (\d+) seconds")


async def document_chains(seed: int, *, corrected: bool = False) -> dict[str, Any]:
    """The chaining program's shape as written: the first stage draws a number,
    announces it as its sleep, and sleeps 2 s (or the announced time if corrected)."""
    draw = random.Random(seed)
    clock = LoopClock()
    first_stage: dict[int, tuple[float, float]] = {}
    second_started: dict[int, float] = {}
    results: dict[int, int] = {}

    async def first(n: int) -> int:
        announced = draw.randint(0, 5)
        print(f"first stage of {n}: sleeping for {announced} seconds")
        started = clock.now()
        await asyncio.sleep(announced if corrected else 2)
        first_stage[n] = (started, clock.now())
        return n + 2

    async def second(n: int) -> int:
        seconds = draw.randint(0, 5)
        await asyncio.sleep(seconds)
        return n * 2

    async def chain(n: int) -> None:
        middle = await first(n)
        second_started[n] = clock.now()
        results[n] = await second(middle)

    clock.reset()
    await asyncio.gather(*(chain(n) for n in CHAINS))
    return {"first_stage": first_stage, "second_started": second_started, "results": results}


@pytest.mark.claim("S4.5", source=SOURCE, kind="O,T")
async def test_chaining_as_written_hands_over_at_two_seconds(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """The chaining program as written (every first stage sleeps 2 s) gives
    1 => 6, 2 => 8, 3 => 10, and every second stage starts at 2 s, when its own
    first stage returns."""
    run = await run_program(asyncspec_trace, asyncspec_clock, lambda: document_chains(0))
    assert run.result["results"] == CHAINED_RESULTS
    firsts = run.result["first_stage"]
    asyncspec_clock.assert_times(
        [run.result["second_started"][n] for n in CHAINS],
        [firsts[n][1] for n in CHAINS],
        what="second stage starts = own first stage ends",
    )
    asyncspec_clock.assert_times(
        [run.result["second_started"][n] for n in CHAINS], [2.0] * 3, what="second stages"
    )


@pytest.mark.claim("S4.5", source=SOURCE, kind="O,T", control=True)
async def test_control_as_written_hand_over_rejects_other_times(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Negative control for the as-written S4.5 check: with the first stages
    sleeping their announced 3, 3 and 0 s, the second stages no longer all start
    at 2 s and the assertion fails."""
    run = await run_program(
        asyncspec_trace, asyncspec_clock, lambda: document_chains(0, corrected=True)
    )
    with pytest.raises(TimingAssertionError, match="second stages"):
        asyncspec_clock.assert_times(
            [run.result["second_started"][n] for n in CHAINS], [2.0] * 3, what="second stages"
        )


def assert_sleeps_two_regardless(clock: LoopClock, run: Run) -> None:
    """E2: the announced seconds are not what the first stage sleeps; it sleeps 2 s."""
    __tracebackhide__ = True
    announced = {}
    for line in run.lines:
        found = ANNOUNCED.fullmatch(line.text)
        if found:
            announced[int(found[1])] = int(found[2])
    assert sorted(announced) == list(CHAINS), run.lines
    measured = {n: end - start for n, (start, end) in run.result["first_stage"].items()}
    clock.assert_times([measured[n] for n in CHAINS], [2.0] * 3, what="first stage sleeps")
    differing = [n for n in CHAINS if announced[n] != 2]
    assert differing == list(CHAINS), f"announced {announced}: this seed draws a 2"


@pytest.mark.claim("E2", source=SOURCE, kind="S")
async def test_erratum_announced_sleep_is_not_the_sleep(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Erratum E2: the chaining example prints a random number of seconds for its
    first stage but sleeps 2 s regardless: with the draws 3, 3, 0 the messages
    announce 3, 3 and 0 s while every first stage measures exactly 2 s."""
    run = await run_program(asyncspec_trace, asyncspec_clock, lambda: document_chains(0))
    assert_transcript(
        asyncspec_clock,
        run,
        [
            (0.0, "first stage of 1: sleeping for 3 seconds"),
            (0.0, "first stage of 2: sleeping for 3 seconds"),
            (0.0, "first stage of 3: sleeping for 0 seconds"),
        ],
    )
    assert_sleeps_two_regardless(asyncspec_clock, run)


@pytest.mark.claim("E2", source=SOURCE, kind="S", control=True)
async def test_control_corrected_sleep_matches_its_announcement(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Negative control for E2: once the first stage sleeps the number it
    announces, the "2 s regardless" check fails."""
    run = await run_program(
        asyncspec_trace, asyncspec_clock, lambda: document_chains(0, corrected=True)
    )
    with pytest.raises(TimingAssertionError, match="first stage sleeps"):
        assert_sleeps_two_regardless(asyncspec_clock, run)


# -- S4.6: queue operations with a timeout ------------------------------------------


async def timed_get(
    clock: LoopClock, queue: asyncio.Queue[str], timeout: float
) -> tuple[str, float, str | None]:
    """``wait_for(queue.get(), timeout)``: the outcome, when it came, the item."""
    started = clock.now()
    try:
        item = await asyncio.wait_for(queue.get(), timeout)
    except asyncio.TimeoutError:
        return "timed out", clock.now() - started, None
    return "got", clock.now() - started, item


def assert_timed_out_at(clock: LoopClock, outcome: tuple[str, float, str | None], t: float) -> None:
    __tracebackhide__ = True
    assert outcome[0] == "timed out", f"expected a timeout at {t} s, got {outcome}"
    clock.assert_time(outcome[1], t, what="wait_for(queue.get()) timeout")


@pytest.mark.claim("S4.6", source=SOURCE, kind="S,T")
def test_queue_get_and_put_take_no_timeout() -> None:
    """``asyncio.Queue.get`` and ``put`` have no timeout parameter: passing one is
    a ``TypeError``."""
    assert list(inspect.signature(asyncio.Queue.get).parameters) == ["self"]
    assert list(inspect.signature(asyncio.Queue.put).parameters) == ["self", "item"]
    queue: asyncio.Queue[str] = asyncio.Queue()
    with pytest.raises(TypeError, match="timeout"):
        queue.get(timeout=1.0)  # type: ignore[call-arg, unused-coroutine]
    with pytest.raises(TypeError, match="timeout"):
        queue.put("item", timeout=1.0)  # type: ignore[call-arg, unused-coroutine]


@pytest.mark.claim("S4.6", source=SOURCE, kind="S,T")
async def test_wait_for_gives_queue_operations_a_timeout(asyncspec_clock: LoopClock) -> None:
    """``wait_for`` gives a queue operation its timeout: a get on an empty queue
    raises ``TimeoutError`` at exactly the timeout, a put on a full queue too, and
    no item is lost or invented: later gets see every item that was put."""
    clock = asyncspec_clock
    clock.reset()
    queue: asyncio.Queue[str] = asyncio.Queue()
    assert_timed_out_at(clock, await timed_get(clock, queue, 1.5), 1.5)
    queue.put_nowait("a")
    queue.put_nowait("b")
    got = await timed_get(clock, queue, 1.5)
    assert got[0] == "got"
    assert got[2] == "a"
    clock.assert_time(got[1], 0.0, what="get with an item waiting")
    assert queue.qsize() == 1

    full: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
    full.put_nowait("kept")
    with clock.measure() as span, pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(full.put("refused"), 0.5)
    clock.assert_time(span.elapsed, 0.5, what="wait_for(queue.put()) timeout")
    assert full.get_nowait() == "kept"
    assert full.empty()  # the refused put left nothing behind


@pytest.mark.claim("S4.6", source=SOURCE, kind="S,T")
async def test_item_arriving_at_the_timeout_is_not_lost(asyncspec_clock: LoopClock) -> None:
    """An item put at the very instant a timed get expires is not lost: either the
    get returns it or it stays in the queue for the next get."""
    clock = asyncspec_clock
    clock.reset()
    queue: asyncio.Queue[str] = asyncio.Queue()

    async def put_later() -> None:
        await asyncio.sleep(1.0)
        queue.put_nowait("late")

    producer = asyncio.create_task(put_later())
    outcome = await timed_get(clock, queue, 1.0)
    await producer
    received = [outcome[2]] if outcome[0] == "got" else []
    while not queue.empty():
        received.append(queue.get_nowait())
    assert received == ["late"], outcome
    clock.assert_time(outcome[1], 1.0, what="timed get at the race")


@pytest.mark.claim("S4.6", source=SOURCE, kind="S,T", control=True)
async def test_control_get_satisfied_before_timeout(asyncspec_clock: LoopClock) -> None:
    """Negative control for S4.6: when an item arrives at 0.4 s the timed get
    returns it then, and the "timed out at 1.5 s" assertion fails."""
    clock = asyncspec_clock
    clock.reset()
    queue: asyncio.Queue[str] = asyncio.Queue()

    async def put_soon() -> None:
        await asyncio.sleep(0.4)
        queue.put_nowait("early")

    producer = asyncio.create_task(put_soon())
    outcome = await timed_get(clock, queue, 1.5)
    await producer
    with pytest.raises(AssertionError, match="expected a timeout"):
        assert_timed_out_at(clock, outcome, 1.5)
    with pytest.raises(TimingAssertionError, match=r"expected 1\.5 s, measured 0\.4"):
        clock.assert_time(outcome[1], 1.5, what="wait_for(queue.get()) timeout")


# -- S4.7: three workers drain a queue ----------------------------------------------

ITEMS = 20
WORKERS = 3
WORK_SEED = 2024


def work_items(seed: int) -> list[float]:
    draw = random.Random(seed)
    return [draw.uniform(0.05, 1.0) for _ in range(ITEMS)]


def ticks(seconds: float) -> int:
    return round(seconds * TICKS_PER_SECOND)


def greedy_makespan(items: Sequence[float], workers: int) -> float:
    """When ``workers`` that each take the next item as soon as they are free
    finish, in whole ticks as the virtual clock adds up sleeps."""
    free = [0] * workers
    for item in items:
        heapq.heappush(free, heapq.heappop(free) + ticks(item))
    return max(free) / TICKS_PER_SECOND


@dataclass
class Drained:
    elapsed: float
    processed: list[tuple[str, float]]
    gathered: list[Any]
    cancelled: list[bool]


async def drain_queue(clock: LoopClock, items: Sequence[float], workers: int) -> Drained:
    queue: asyncio.Queue[float] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    processed: list[tuple[str, float]] = []

    async def worker(name: str) -> None:
        while True:
            seconds = await queue.get()
            await asyncio.sleep(seconds)
            processed.append((name, seconds))
            queue.task_done()
            print(f"{name} worked {seconds:.2f} s")

    tasks = [asyncio.create_task(worker(f"worker-{i}")) for i in range(workers)]
    with clock.measure() as span:
        await queue.join()
    for task in tasks:
        task.cancel()
    gathered = await asyncio.gather(*tasks, return_exceptions=True)
    return Drained(span.elapsed, processed, list(gathered), [task.cancelled() for task in tasks])


def assert_three_workers_share_the_work(
    clock: LoopClock, items: Sequence[float], elapsed: float
) -> None:
    __tracebackhide__ = True
    total = sum(items)
    assert elapsed < total, f"elapsed {elapsed} s is not below the total {total} s"
    assert_at_least(clock, elapsed, max(total / WORKERS, max(items)), what="lower bound")
    clock.assert_time(
        elapsed, greedy_makespan(items, WORKERS), what="three workers, greedy schedule"
    )


@pytest.mark.claim("S4.7", source=SOURCE, kind="T,S")
async def test_three_workers_drain_the_queue(asyncspec_clock: LoopClock) -> None:
    """Three workers draining 20 items of 0.05-1.0 s: ``queue.join()`` returns when
    every item is done, sooner than the items' total and no sooner than a third
    of it or the longest item; each item is processed once, and the cancelled
    workers come back from ``gather(return_exceptions=True)`` as ``CancelledError``."""
    items = work_items(WORK_SEED)
    drained = await drain_queue(asyncspec_clock, items, WORKERS)
    assert_three_workers_share_the_work(asyncspec_clock, items, drained.elapsed)
    assert Counter(seconds for _, seconds in drained.processed) == Counter(items)
    assert {name for name, _ in drained.processed} == {f"worker-{i}" for i in range(WORKERS)}
    assert len(drained.gathered) == WORKERS
    assert all(isinstance(result, asyncio.CancelledError) for result in drained.gathered)
    assert drained.cancelled == [True] * WORKERS


@pytest.mark.claim("S4.7", source=SOURCE, kind="T,S", control=True)
async def test_control_one_worker_takes_the_total(asyncspec_clock: LoopClock) -> None:
    """Negative control for S4.7: one worker takes the items' whole total, so the
    three-worker assertion fails."""
    items = work_items(WORK_SEED)
    drained = await drain_queue(asyncspec_clock, items, 1)
    asyncspec_clock.assert_time(drained.elapsed, ticks(sum(items)) / TICKS_PER_SECOND)
    with pytest.raises(AssertionError, match="is not below the total"):
        assert_three_workers_share_the_work(asyncspec_clock, items, drained.elapsed)


# -- S4.8 - S4.11: futures and exceptions -------------------------------------------


@pytest.mark.claim("S4.8", source=SOURCE, kind="S")
async def test_future_states() -> None:
    """A new future is not done and its result and exception raise
    ``InvalidStateError``; once it has a result or an exception it is done for
    good; a cancelled future raises ``CancelledError`` for both."""
    loop = asyncio.get_running_loop()

    pending = loop.create_future()
    assert not pending.done()
    with pytest.raises(asyncio.InvalidStateError):
        pending.result()
    with pytest.raises(asyncio.InvalidStateError):
        pending.exception()

    pending.set_result(42)
    assert pending.done()
    assert not pending.cancelled()
    assert pending.result() == 42
    assert pending.exception() is None
    with pytest.raises(asyncio.InvalidStateError):
        pending.set_result(43)
    with pytest.raises(asyncio.InvalidStateError):
        pending.set_exception(ValueError("too late"))
    assert not pending.cancel()  # a done future stays done
    assert pending.result() == 42

    failed = loop.create_future()
    error = LookupError("no such key")
    failed.set_exception(error)
    assert failed.done()
    assert failed.exception() is error
    with pytest.raises(LookupError) as raised:
        failed.result()
    assert raised.value is error
    with pytest.raises(asyncio.InvalidStateError):
        failed.set_result(1)

    cancelled = loop.create_future()
    assert cancelled.cancel()
    assert cancelled.done()
    assert cancelled.cancelled()
    with pytest.raises(asyncio.CancelledError):
        cancelled.result()
    with pytest.raises(asyncio.CancelledError):
        cancelled.exception()
    with pytest.raises(asyncio.InvalidStateError):
        cancelled.set_result(1)


BEATS = [0.25, 0.5, 0.75]


async def future_with_waiters(
    clock: LoopClock, wait: Callable[[asyncio.Future[str]], Awaitable[str]]
) -> tuple[list[tuple[str, str, float]], list[float]]:
    """Three waiters and a heartbeat; the future gets its value at 1 s."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()
    beats: list[float] = []

    async def heartbeat() -> None:
        for _ in BEATS:
            await asyncio.sleep(0.25)
            beats.append(clock.now())

    async def setter() -> None:
        await asyncio.sleep(1)
        future.set_result("ready")

    async def waiter() -> tuple[str, str, float]:
        first = await wait(future)
        second = await future  # awaiting a done future again: same value, at once
        return first, second, clock.now()

    clock.reset()
    *seen, _, _ = await asyncio.gather(waiter(), waiter(), waiter(), setter(), heartbeat())
    return seen, beats


async def await_it(future: asyncio.Future[str]) -> str:
    return await future


async def block_until_set(future: asyncio.Future[str]) -> str:
    time.sleep(1)  # the wrong way to wait: hold the loop for the second
    return await future


def assert_waiting_lets_others_run(clock: LoopClock, beats: list[float]) -> None:
    __tracebackhide__ = True
    clock.assert_times(beats, BEATS, what="heartbeat while the future is awaited")


@pytest.mark.claim("S4.9", source=SOURCE, kind="S,T")
async def test_future_awaited_by_several_and_more_than_once(asyncspec_clock: LoopClock) -> None:
    """A future can be awaited by several tasks and more than once: every await
    gets the same value, all at the 1 s it is set, and while they wait another
    task keeps running; a coroutine, by contrast, can be awaited only once."""
    seen, beats = await future_with_waiters(asyncspec_clock, await_it)
    assert [(first, second) for first, second, _ in seen] == [("ready", "ready")] * 3
    asyncspec_clock.assert_times([at for _, _, at in seen], [1.0] * 3, what="waiters resume")
    assert_waiting_lets_others_run(asyncspec_clock, beats)

    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    done.set_result("once")
    coroutine = await_it(done)
    assert await coroutine == "once"
    with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
        await coroutine


@pytest.mark.claim("S4.9", source=SOURCE, kind="S,T", control=True)
async def test_control_blocking_wait_stops_the_heartbeat(asyncspec_clock: LoopClock) -> None:
    """Negative control for S4.9: a waiter that blocks the loop for the second
    instead of awaiting stops the heartbeat, and the heartbeat assertion fails."""
    _, beats = await future_with_waiters(asyncspec_clock, block_until_set)
    with pytest.raises(TimingAssertionError, match="heartbeat"):
        assert_waiting_lets_others_run(asyncspec_clock, beats)


async def set_later(future: asyncio.Future[str], delay: float, value: str) -> None:
    await asyncio.sleep(delay)
    future.set_result(value)


async def hello_world() -> str:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()
    setter = loop.create_task(set_later(future, 1, "... world"))
    print("hello ...")
    value = await future
    print(value)
    await setter  # already finished: it ended in the step that set the value
    return value


async def hello_world_without_task() -> str:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()
    await set_later(future, 1, "... world")  # the wrong way: waits before greeting
    print("hello ...")
    value = await future
    print(value)
    return value


HELLO_WORLD = [(0.0, "hello ..."), (1.0, "... world")]


@pytest.mark.claim("S4.10", source=SOURCE, kind="T,O")
async def test_future_set_after_one_second(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """A task that sets a future after 1 s: "hello ..." is printed at once and
    "... world", the future's value, at exactly 1 s."""
    run = await run_program(asyncspec_trace, asyncspec_clock, hello_world)
    assert run.result == "... world"
    assert_transcript(asyncspec_clock, run, HELLO_WORLD)
    asyncspec_clock.assert_time(run.elapsed, 1.0, what="hello world")


@pytest.mark.claim("S4.10", source=SOURCE, kind="T,O", control=True)
async def test_control_setting_inline_delays_the_greeting(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Negative control for S4.10: awaiting the setter inline instead of in a task
    prints "hello ..." at 1 s, and the transcript assertion fails."""
    run = await run_program(asyncspec_trace, asyncspec_clock, hello_world_without_task)
    with pytest.raises(AssertionError, match=r"'hello \.\.\.': expected at t=0\.0 s"):
        assert_transcript(asyncspec_clock, run, HELLO_WORLD)


@pytest.mark.claim("S4.11", source=SOURCE, kind="S")
async def test_exception_in_task_reaches_its_awaiter() -> None:
    """An exception raised inside a task is raised again where the task is
    awaited, and a ``try``/``except`` there catches that very exception."""
    error = KeyError("missing")

    async def failing() -> None:
        await asyncio.sleep(0.5)
        raise error

    task = asyncio.create_task(failing())
    caught: BaseException | None = None
    try:
        await task
    except Exception as exception:  # the document's form
        caught = exception
    assert caught is error
    assert task.done()
    assert task.exception() is error
    assert not task.cancelled()


# -- S4.12: one thread ---------------------------------------------------------------


@pytest.mark.claim("S4.12", source=SOURCE, kind="S")
async def test_every_step_runs_on_the_loop_thread() -> None:
    """The event loop runs every step of every task on one thread, the thread
    that runs the loop; only work sent to a thread explicitly runs elsewhere."""
    loop_thread = threading.get_ident()
    seen: list[int] = []

    async def stepper(pause: float) -> None:
        for _ in range(3):
            seen.append(threading.get_ident())
            await asyncio.sleep(pause)
        seen.append(threading.get_ident())

    await asyncio.gather(*(stepper(pause) for pause in (0.1, 0.2, 0.3)))
    assert len(seen) == 12
    assert set(seen) == {loop_thread}
    # The check can tell threads apart: an explicit worker thread is another one.
    assert await asyncio.to_thread(threading.get_ident) != loop_thread


# -- S4.13: asyncio.sleep yields, time.sleep blocks ---------------------------------


@pytest.mark.claim("S4.13", source=SOURCE, kind="O,T")
async def test_blocking_sleep_cannot_interleave(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """``time.sleep`` blocks the whole loop: two counters that block inside
    ``async def`` and are gathered still print One, Two, One, Two and take 2 s,
    each holding the loop for a whole second."""
    run = await run_program(asyncspec_trace, asyncspec_clock, gathered_blocking_counts)
    assert_in_turn_in_two_seconds(asyncspec_clock, run)
    asyncspec_clock.assert_time(
        asyncspec_trace.longest_step().duration, 1.0, what="longest hold of the loop"
    )


@pytest.mark.claim("S4.13", source=SOURCE, kind="O,T", control=True)
async def test_control_awaited_sleep_yields(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Negative control for S4.13: with ``asyncio.sleep`` the counters interleave
    and no step holds the loop, so the blocking assertions fail."""
    run = await run_program(asyncspec_trace, asyncspec_clock, gathered_awaiting_counts)
    with pytest.raises(AssertionError, match="opposite order"):
        assert_in_turn_in_two_seconds(asyncspec_clock, run)
    with pytest.raises(TimingAssertionError, match="longest hold of the loop"):
        asyncspec_clock.assert_time(
            asyncspec_trace.longest_step().duration, 1.0, what="longest hold of the loop"
        )


# -- S4.14: async with and async for ------------------------------------------------


class WorkerPool:
    """An async context manager that opens on entry and closes itself on exit."""

    def __init__(self) -> None:
        self.state = "new"

    async def __aenter__(self) -> WorkerPool:
        await asyncio.sleep(0.1)
        self.state = "open"
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.sleep(0.1)
        self.state = "closed"


class Ticker:
    """An async iterator: ``count`` values, each after an awaited pause."""

    def __init__(self, count: int, pause: float) -> None:
        self.count = count
        self.pause = pause
        self.sent = 0

    def __aiter__(self) -> Ticker:
        return self

    async def __anext__(self) -> int:
        if self.sent == self.count:
            raise StopAsyncIteration
        await asyncio.sleep(self.pause)
        self.sent += 1
        return self.sent


@contextlib.asynccontextmanager
async def opened(log: list[str]) -> AsyncIterator[str]:
    log.append("open")
    try:
        yield "resource"
    finally:
        log.append("closed")


@pytest.mark.claim("S4.14", source=SOURCE, kind="S")
async def test_async_with_and_async_for(asyncspec_clock: LoopClock) -> None:
    """``async with`` and ``async for`` work inside ``async def``: the context
    manager is open inside the block and closed after it (also when the block
    raises), the iterator's values arrive in order; outside ``async def`` both
    statements are syntax errors."""
    pool = WorkerPool()
    async with pool as entered:
        assert entered is pool
        assert pool.state == "open"
    assert pool.state == "closed"

    failing = WorkerPool()
    with pytest.raises(ValueError, match="inside the block"):
        async with failing:
            raise ValueError("inside the block")
    assert failing.state == "closed"

    log: list[str] = []
    async with opened(log) as resource:
        assert resource == "resource"
        assert log == ["open"]
    assert log == ["open", "closed"]

    asyncspec_clock.reset()
    received = [value async for value in Ticker(3, 0.5)]
    assert received == [1, 2, 3]
    asyncspec_clock.assert_time(asyncspec_clock.now(), 1.5, what="three values 0.5 s apart")
    collected = []
    async for value in Ticker(2, 0.0):
        collected.append(value)
    assert collected == [1, 2]

    with pytest.raises(SyntaxError, match="'async with' outside async function"):
        compile("def plain(pool):\n    async with pool:\n        pass\n", "<s>", "exec")
    with pytest.raises(SyntaxError, match="'async for' outside async function"):
        compile("def plain(items):\n    async for item in items:\n        pass\n", "<s>", "exec")
