"""Claims S1.1-S1.8, S1.10 and erratum E3 of "Python Asyncio - Using async with python!".

The document drains two three-item "feature" sources, first as plain
generators that block a second per item, then as async generators that
await a second per item and are drained together under ``gather``.  It then
explains why the top-level ``await`` of its notebook fails in a script, why
``asyncio.run`` fails in a notebook (a loop is already running there), and
two ways around that: awaiting directly, or ``nest_asyncio``.  It closes with
the old decorator-based coroutines and with reducers run concurrently over
async generators.  (S1.9, the HTTP client example, is covered elsewhere.)

Timing claims use the document's own durations on the suite's clock and are
paired with negative controls: the same assertion applied to the sequential
or blocking variant must fail.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Sequence
from typing import Any

import pytest
from transcripts import FLOAT, Printed, assert_transcript, figure

from pytest_asyncspec import (
    LoopClock,
    TimingAssertionError,
    TraceView,
)

SOURCE = "Python Asyncio - Using async with python!"
FIRST = (10, 20, 40)
SECOND = (50, 500, 5000)
DOCUMENTED_RESULT = [[10, 20, 40], [50, 500, 5000]]


# -- the programs --------------------------------------------------------------


def blocking_source(values: Sequence[int]) -> Iterator[int]:
    """A plain generator that blocks for 1 s before each item."""
    for value in values:
        time.sleep(1)
        yield value


async def awaiting_source(values: Sequence[int], pause: float = 1.0) -> AsyncIterator[int]:
    """An async generator that awaits ``pause`` seconds before each item."""
    for value in values:
        await asyncio.sleep(pause)
        yield value


async def blocking_async_source(values: Sequence[int]) -> AsyncIterator[int]:
    """An async generator that blocks (``time.sleep``) before each item."""
    for value in values:
        time.sleep(1)
        yield value


async def drain(source: AsyncIterator[int]) -> list[int]:
    return [value async for value in source]


async def both_features() -> list[list[int]]:
    """The document's script entry point: both sources drained under gather."""
    return list(await asyncio.gather(drain(awaiting_source(FIRST)), drain(awaiting_source(SECOND))))


async def both_features_blocking() -> list[list[int]]:
    """The same, with async generators that block instead of awaiting."""
    return list(
        await asyncio.gather(
            drain(blocking_async_source(FIRST)), drain(blocking_async_source(SECOND))
        )
    )


async def timed_and_printed(program: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    """Run ``program`` the way the document does: print its result, then the time."""
    began = time.perf_counter()
    result = await program()
    print(result)
    elapsed = time.perf_counter() - began
    print(elapsed)
    return result, elapsed


# -- S1.1 and S1.2: blocking generators vs async generators under gather -------


@pytest.mark.claim("S1.1", source=SOURCE, kind="T")
async def test_plain_generators_drained_in_turn_take_six_seconds(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Two plain generators of three items, each item after a 1 s blocking
    sleep, drained one after the other take 6 s: every second adds up."""
    clock = asyncspec_clock
    printed = Printed(asyncspec_trace)
    began = time.perf_counter()
    values = [list(blocking_source(FIRST)), list(blocking_source(SECOND))]
    print(f"total time taken is {time.perf_counter() - began}")

    assert values == DOCUMENTED_RESULT
    lines = printed.lines()
    assert_transcript(clock, lines, [(6.0, re.compile(f"total time taken is {FLOAT}"))])
    clock.assert_time(figure(lines[0]), 6.0, what="both drained", documented=6.0033508999913465)


@pytest.mark.claim("S1.1", source=SOURCE, kind="T", control=True)
async def test_control_overlapping_sources_are_not_six_seconds(
    asyncspec_clock: LoopClock,
) -> None:
    """Negative control for S1.1: sources that await and are gathered overlap
    (3 s), and S1.1's 6 s assertion rejects them."""
    with asyncspec_clock.measure() as span:
        await both_features()
    with pytest.raises(TimingAssertionError, match=r"both drained: expected 6\.0 s, measured 3\."):
        asyncspec_clock.assert_time(span.elapsed, 6.0, what="both drained")


@pytest.mark.claim("S1.2", source=SOURCE, kind="T,S")
async def test_async_generators_gathered_take_three_seconds(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """The same sources as async generators that await 1 s per item, each drained
    by its own coroutine under gather, overlap and take 3 s; gather returns
    [[10, 20, 40], [50, 500, 5000]], one list per argument in argument order."""
    clock = asyncspec_clock
    printed = Printed(asyncspec_trace)
    result, elapsed = await timed_and_printed(both_features)

    assert result == DOCUMENTED_RESULT
    assert_transcript(
        clock,
        printed.lines(),
        [(3.0, "[[10, 20, 40], [50, 500, 5000]]"), (3.0, re.compile(FLOAT))],
    )
    clock.assert_time(elapsed, 3.0, what="both drained", documented=3.005606100021396)

    # Argument order, not finishing order: here the second source is quicker.
    quicker_second = await asyncio.gather(
        drain(awaiting_source(FIRST)), drain(awaiting_source(SECOND, pause=0.5))
    )
    assert list(quicker_second) == DOCUMENTED_RESULT


@pytest.mark.claim("S1.2", source=SOURCE, kind="T,S", control=True)
async def test_control_blocking_async_generators_are_not_three_seconds(
    asyncspec_clock: LoopClock,
) -> None:
    """Negative control for S1.2: async generators that block (time.sleep) give
    the same values but take 6 s under gather, and S1.2's 3 s assertion rejects
    them."""
    with asyncspec_clock.measure() as span:
        result = await both_features_blocking()
    assert result == DOCUMENTED_RESULT
    with pytest.raises(TimingAssertionError, match=r"both drained: expected 3\.0 s, measured 6\."):
        asyncspec_clock.assert_time(span.elapsed, 3.0, what="both drained")


@pytest.mark.claim("S1.10", source=SOURCE, kind="T")
async def test_blocking_async_generators_gain_nothing_under_gather(
    asyncspec_clock: LoopClock,
) -> None:
    """Async generators that block with time.sleep(1) instead of awaiting gain
    nothing from gather: the two sources still take 6 s, like the plain ones."""
    with asyncspec_clock.measure() as span:
        result = await both_features_blocking()
    assert result == DOCUMENTED_RESULT
    asyncspec_clock.assert_time(span.elapsed, 6.0, what="both drained")


@pytest.mark.claim("S1.10", source=SOURCE, kind="T", control=True)
async def test_control_awaiting_async_generators_do_gain(asyncspec_clock: LoopClock) -> None:
    """Negative control for S1.10: the awaiting async generators take 3 s under
    gather, and S1.10's 6 s assertion rejects them."""
    with asyncspec_clock.measure() as span:
        await both_features()
    with pytest.raises(TimingAssertionError, match=r"both drained: expected 6\.0 s, measured 3\."):
        asyncspec_clock.assert_time(span.elapsed, 6.0, what="both drained")


# -- S1.3 and E3: what does not compile ----------------------------------------

# A script that awaits at module level, as a notebook cell may.
TOP_LEVEL_AWAIT = """\
import asyncio

async def features():
    return [1, 2]

output = await features()
print(output)
"""

# A generator with one closing parenthesis too many, as the document's
# plain-generator snippet has it, and the same generator as intended.
UNBALANCED = """\
import time

def source():
    for value in [50, 500, 5000]:
        time.sleep(1))
        yield value
"""
BALANCED = UNBALANCED.replace("time.sleep(1))", "time.sleep(1)")


@pytest.mark.claim("S1.3", source=SOURCE, kind="S")
def test_top_level_await_in_a_script_is_a_syntax_error() -> None:
    """An await at module level is a SyntaxError ("'await' outside function")
    when the text is compiled as a script; only an interpreter that compiles
    with the top-level-await flag (as notebooks do) accepts it."""
    with pytest.raises(SyntaxError) as raised:
        compile(TOP_LEVEL_AWAIT, "example.py", "exec")
    assert raised.value.msg == "'await' outside function"
    assert raised.value.lineno == 6

    code = compile(TOP_LEVEL_AWAIT, "<notebook cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    assert code.co_flags & inspect.CO_COROUTINE


@pytest.mark.claim("E3", source=SOURCE, kind="S")
def test_erratum_unbalanced_parenthesis_is_a_syntax_error() -> None:
    """Erratum: the plain-generator snippet as written has an extra closing
    parenthesis after time.sleep(1), which is a SyntaxError ("unmatched ')'")
    on that line; with the parenthesis balanced it compiles."""
    with pytest.raises(SyntaxError) as raised:
        compile(UNBALANCED, "snippet.py", "exec")
    assert raised.value.msg == "unmatched ')'"
    assert raised.value.lineno == 5
    assert raised.value.text is not None
    assert raised.value.text.strip() == "time.sleep(1))"

    compile(BALANCED, "snippet.py", "exec")


# -- S1.4 and S1.5: asyncio.run inside a running loop --------------------------


@pytest.mark.claim("S1.4", source=SOURCE, kind="S")
async def test_asyncio_run_inside_a_running_loop_raises() -> None:
    """asyncio.run() called while a loop is already running in the thread (as in
    a notebook, or this test) raises RuntimeError "asyncio.run() cannot be
    called from a running event loop", without starting the coroutine."""
    coroutine = both_features()
    try:
        with pytest.raises(
            RuntimeError,
            match=r"^asyncio\.run\(\) cannot be called from a running event loop$",
        ):
            asyncio.run(coroutine)
        assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CREATED
    finally:
        coroutine.close()


@pytest.mark.claim("S1.5", source=SOURCE, kind="S")
async def test_awaiting_directly_inside_a_running_loop_works(
    asyncspec_clock: LoopClock,
) -> None:
    """Inside an already-running loop, awaiting the entry coroutine directly
    instead of passing it to asyncio.run works and gives the same result."""
    loop = asyncio.get_running_loop()
    with asyncspec_clock.measure() as span:
        output = await both_features()
    assert output == DOCUMENTED_RESULT
    assert asyncio.get_running_loop() is loop
    asyncspec_clock.assert_time(span.elapsed, 3.0, what="both drained")


# -- S1.6: nest_asyncio --------------------------------------------------------

# Run in a fresh interpreter: nest_asyncio.apply() patches the asyncio module
# itself (asyncio.run, Task, Future) for the rest of the process.
NEST_ASYNCIO_PROBE = """\
import asyncio
import inspect
import json

import nest_asyncio

facts = {}


async def features():
    await asyncio.sleep(0)
    return [[10, 20, 40], [50, 500, 5000]], asyncio.get_running_loop()


async def cell():
    outer = asyncio.get_running_loop()
    pending = features()
    try:
        asyncio.run(pending)
    except RuntimeError as error:
        facts["before_apply"] = str(error)
    finally:
        pending.close()
    facts["loop_factory_before"] = "loop_factory" in inspect.signature(asyncio.run).parameters
    nest_asyncio.apply()
    result, inner = asyncio.run(features())
    facts["after_apply"] = result
    facts["same_loop"] = inner is outer
    facts["loop_factory_after"] = "loop_factory" in inspect.signature(asyncio.run).parameters


asyncio.run(cell())
try:
    import uvloop
except ImportError:
    facts["uvloop"] = None
else:
    other = uvloop.new_event_loop()
    try:
        nest_asyncio.apply(other)
    except ValueError as error:
        facts["uvloop"] = str(error)
    finally:
        other.close()
print(json.dumps(facts))
"""


@pytest.mark.claim("S1.6", source=SOURCE, kind="S,V")
def test_nest_asyncio_makes_nested_asyncio_run_work() -> None:
    """With nest_asyncio 1.6, nest_asyncio.apply() makes asyncio.run() work
    inside a running asyncio loop on every supported Python (3.10-3.13): the
    nested call runs the coroutine on the loop already running; without it the
    call raises RuntimeError. Conditions: the loop must be asyncio's own (it
    refuses uvloop's loop), and from 3.12 the patched asyncio.run drops the
    loop_factory keyword the real one has."""
    finished = subprocess.run(
        [sys.executable, "-W", "error", "-c", NEST_ASYNCIO_PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stderr == ""
    facts = json.loads(finished.stdout)

    assert facts["before_apply"] == "asyncio.run() cannot be called from a running event loop"
    assert facts["after_apply"] == DOCUMENTED_RESULT
    assert facts["same_loop"] is True
    # asyncio.run gained loop_factory in 3.12; the patched replacement lacks it.
    assert facts["loop_factory_before"] is (sys.version_info >= (3, 12))
    assert facts["loop_factory_after"] is False
    if facts["uvloop"] is not None:
        assert facts["uvloop"].startswith("Can't patch loop of type <class 'uvloop.Loop'>")


# -- S1.7: the decorator-based coroutines --------------------------------------


@pytest.mark.claim("S1.7", source=SOURCE, kind="S,V")
async def test_generator_based_coroutine_decorator_is_gone_from_3_11() -> None:
    """The generator-based @asyncio.coroutine decorator exists up to Python 3.10
    (deprecated: using it warns) and is gone from 3.11 (AttributeError); native
    async def coroutines work on every version."""

    async def native() -> str:
        await asyncio.sleep(0)
        return "native"

    assert await native() == "native"

    if sys.version_info < (3, 11):
        decorator = asyncio.coroutine  # type: ignore[attr-defined,unused-ignore]
        with pytest.warns(DeprecationWarning, match="coroutine"):

            @decorator  # type: ignore[misc,unused-ignore]
            def old_style() -> Generator[Any, None, str]:
                result = yield from native().__await__()
                return f"old-style around {result}"

        old_style_coroutine: Any = old_style()
        assert await old_style_coroutine == "old-style around native"
    else:
        with pytest.raises(AttributeError, match="coroutine"):
            _ = asyncio.coroutine  # type: ignore[attr-defined,unused-ignore]


# -- S1.8: reducers over async generators, concurrently ------------------------


async def reduce_source(source: AsyncIterator[int], reducer: Callable[[list[int]], int]) -> int:
    return reducer([value async for value in source])


async def low_high_mean(source: AsyncIterator[int]) -> list[float]:
    """A running minimum, maximum and mean, with the minimum seeded at 0."""
    low, high, total, count = 0, 0, 0, 0
    async for value in source:
        low, high = min(low, value), max(high, value)
        total, count = total + value, count + 1
    return [low, high, total / count]


def three_reducers() -> list[Awaitable[Any]]:
    return [
        reduce_source(awaiting_source(FIRST, pause=0.1), sum),
        reduce_source(awaiting_source(SECOND, pause=0.1), max),
        low_high_mean(awaiting_source(SECOND, pause=0.1)),
    ]


@pytest.mark.claim("S1.8", source=SOURCE, kind="T,S")
async def test_reducers_over_async_generators_run_together(
    asyncspec_clock: LoopClock, asyncspec_trace: TraceView
) -> None:
    """Three reducers over async generators of three items (0.1 s each), gathered:
    sum of the first source is 70, max of the second 5000, and min/max/mean of
    the second [0, 5000, 1850.0] (the minimum starts at 0, so 0 is reported
    though the smallest item is 50); together they take 0.3 s, not 0.9 s."""
    clock = asyncspec_clock
    printed = Printed(asyncspec_trace)
    began = time.perf_counter()
    total, largest, spread = await asyncio.gather(*three_reducers())
    print(total, largest, spread)
    print(time.perf_counter() - began)

    assert (total, largest, spread) == (70, 5000, [0, 5000, 1850.0])
    assert spread[0] != min(SECOND)
    lines = printed.lines()
    assert_transcript(clock, lines, [(0.3, "70 5000 [0, 5000, 1850.0]"), (0.3, re.compile(FLOAT))])
    clock.assert_time(figure(lines[1]), 0.3, what="three reducers", documented=0.3041836000047624)


@pytest.mark.claim("S1.8", source=SOURCE, kind="T,S", control=True)
async def test_control_reducers_one_after_another_take_the_sum(
    asyncspec_clock: LoopClock,
) -> None:
    """Negative control for S1.8: awaiting the three reducers one after another
    gives the same values in 0.9 s, and S1.8's 0.3 s assertion rejects it."""
    with asyncspec_clock.measure() as span:
        results = [await reducer for reducer in three_reducers()]
    assert results == [70, 5000, [0, 5000, 1850.0]]
    with pytest.raises(TimingAssertionError, match=r"three reducers: expected 0\.3 s"):
        asyncspec_clock.assert_time(span.elapsed, 0.3, what="three reducers")
