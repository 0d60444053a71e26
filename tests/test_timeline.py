"""The ASCII timeline: golden pictures of known programs, plus its guarantees.

Golden files live in ``tests/golden/``.  After an intended change to the
picture, regenerate them with ``ASYNCSPEC_UPDATE_GOLDEN=1 pytest
tests/test_timeline.py`` and review the diff: those runs report the golden
tests as skipped, never as passed, so an update run cannot hide a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tracing_helpers import Main, run_traced_main

from pytest_asyncspec.clock.virtual_loop import VirtualClockLoop
from pytest_asyncspec.tracing.timeline import MIN_WIDTH, render_timeline
from pytest_asyncspec.tracing.trace import Tracer

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("ASYNCSPEC_UPDATE_GOLDEN") == "1"


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text + "\n", encoding="ascii")
        pytest.skip(f"golden file {name} rewritten; review the diff")
    if not path.exists():
        pytest.fail(
            f"golden file {path} is missing: run with ASYNCSPEC_UPDATE_GOLDEN=1 to create it"
        )
    expected = path.read_text(encoding="ascii").removesuffix("\n")
    assert text == expected, f"timeline differs from {path}:\n{text}"


def assert_fits(text: str, width: int) -> None:
    for line in text.splitlines():
        assert len(line) <= width, f"line of {len(line)} columns > {width}: {line!r}"
        assert re.fullmatch(r"[ -~]*", line), f"not printable ASCII: {line!r}"


def row(text: str, name: str) -> str:
    """The marks of the row of the task called ``name`` (as printed)."""
    lines = text.splitlines()
    # Marks start in the column of the axis's first tick.
    ticks = next(line for line in lines if line.startswith("task "))
    first = ticks.index("+")
    for line in lines:
        label = re.fullmatch(r"\s*\d+ (.*?)\s*", line[:first])
        if label is not None and label.group(1) == name:
            return line[first:]
    raise AssertionError(f"no row for {name!r} in:\n{text}")


def task_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"\s*\d+ \S", line)]


# -- programs -------------------------------------------------------------------


async def block_then_await() -> None:
    """Five tasks each block the loop 2.5 s, then sleep 2.5 s."""

    async def work() -> None:
        time.sleep(2.5)
        await asyncio.sleep(2.5)

    await asyncio.gather(*(asyncio.create_task(work(), name=f"worker-{i}") for i in range(5)))


async def mixed_outcomes() -> None:
    """A producer and a consumer, a task that raises and one that is cancelled."""
    queue: asyncio.Queue[int] = asyncio.Queue()

    async def producer() -> None:
        for item in range(3):
            time.sleep(0.25)
            await queue.put(item)
            await asyncio.sleep(1)

    async def consumer() -> None:
        for _ in range(3):
            await queue.get()
            time.sleep(0.1)

    async def fails() -> None:
        await asyncio.sleep(1)
        time.sleep(0.5)
        raise ValueError("boom")

    async def waits_forever() -> None:
        await asyncio.Event().wait()

    failing = asyncio.create_task(fails(), name="fails")
    waiter = asyncio.create_task(waits_forever(), name="waits-forever")
    await asyncio.gather(
        asyncio.create_task(producer(), name="producer"),
        asyncio.create_task(consumer(), name="consumer"),
    )
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    with contextlib.suppress(ValueError):
        await failing


async def all_at_once() -> None:
    """Tasks that never wait on a timer: every step at loop time 0."""

    async def hop() -> None:
        await asyncio.sleep(0)

    await asyncio.gather(*(asyncio.create_task(hop(), name=f"hop-{i}") for i in range(3)))


async def many_tasks() -> None:
    """A hundred tasks; three of them block the loop."""

    async def idle(n: int) -> None:
        await asyncio.sleep(n / 100)

    async def busy(seconds: float) -> None:
        await asyncio.sleep(0.5)
        time.sleep(seconds)

    tasks = [asyncio.create_task(idle(n), name=f"idle-{n:03}") for n in range(97)]
    tasks += [asyncio.create_task(busy(s), name=f"busy-{s}") for s in (0.3, 0.2, 0.1)]
    await asyncio.gather(*tasks)


NASTY_NAMES = [
    "line one\nline two",
    "\x1b[31mred\x1b[0m",
    "<script>alert(1)</script>",
    "caf\u00e9 \u6771\u4eac \U0001f600",
    "a-very-long-task-name-that-goes-on-and-on-well-past-any-label-column-width",
]


async def nasty_names() -> None:
    async def sleeper(seconds: float) -> None:
        time.sleep(seconds)
        await asyncio.sleep(seconds)

    await asyncio.gather(
        *(
            asyncio.create_task(sleeper(0.5 * (i + 1)), name=name)
            for i, name in enumerate(NASTY_NAMES)
        )
    )


async def eager_children() -> None:
    """An eager child's first step runs inside its creator's step."""

    async def child() -> None:
        time.sleep(1)
        await asyncio.sleep(1)

    time.sleep(0.5)
    task = asyncio.create_task(child(), name="child")
    time.sleep(0.5)
    await task


# -- golden pictures ------------------------------------------------------------


def test_block_then_await_golden() -> None:
    text = render_timeline(run_traced_main(block_then_await), blocking_threshold=1.0)
    # Independent of the golden file: each worker blocks for exactly ten
    # 0.25 s columns, one after the other.
    assert "1 column = 250 ms" in text
    for index in range(5):
        marks = row(text, f"worker-{index}")
        assert marks.index("#") == 10 * index
        assert marks.count("#") == 10
    assert "longest step: worker-0 (task 2) 2.5 s at 0 s" in text
    assert "blocking: 5 steps over 1 s, 12.5 s in all" in text
    assert_fits(text, 100)
    assert_golden("timeline_block_then_await.txt", text)


def test_block_then_await_without_threshold_draws_no_blocking_marks() -> None:
    text = render_timeline(run_traced_main(block_then_await))
    assert "#" not in text
    assert row(text, "worker-2").count("=") == 10
    assert "blocking:" not in text


def test_window_golden() -> None:
    text = render_timeline(run_traced_main(block_then_await), window=(4.0, 9.0), width=72)
    assert "window 4 s to 9 s (trace: 0 s to 15 s)" in text
    # 100 ms columns from 4 s.  worker-1's step [2.5, 5) is clipped to its last
    # second; worker-2's [5, 7.5) is whole; worker-3's [7.5, 10) still runs at
    # the window's end, so it covers the 9 s column too.
    assert "1 column = 100 ms" in text
    assert row(text, "worker-1").startswith("=" * 10 + ".")
    assert row(text, "worker-2") == "." * 10 + "=" * 25 + "." * 16
    assert row(text, "worker-3") == "." * 35 + "=" * 16
    assert "worker-0" in text  # waiting through the window: still relevant
    assert_fits(text, 72)
    assert_golden("timeline_window.txt", text)


def test_mixed_outcomes_golden() -> None:
    text = render_timeline(run_traced_main(mixed_outcomes), blocking_threshold=0.2)
    assert row(text, "fails").rstrip().endswith("X")
    assert "C" in row(text, "waits-forever")
    assert "#" in row(text, "producer")
    assert "#" not in row(text, "consumer")
    assert "longest step: fails (task 2) 500 ms at 1 s" in text
    assert_fits(text, 100)
    assert_golden("timeline_mixed_outcomes.txt", text)


def test_single_instant_golden() -> None:
    text = render_timeline(run_traced_main(all_at_once))
    assert "loop time 0 s to 0 s" in text
    assert "longest step: every step took no loop time" in text
    assert_fits(text, 100)
    assert_golden("timeline_single_instant.txt", text)


def test_many_tasks_golden() -> None:
    text = render_timeline(run_traced_main(many_tasks), blocking_threshold=0.15)
    assert len(task_rows(text)) == 40
    assert "... 61 more tasks not shown" in text
    # The tasks that held the loop are kept, whatever their position.
    for name in ("busy-0.3", "busy-0.2", "busy-0.1"):
        row(text, name)
    assert_fits(text, 100)
    assert_golden("timeline_many_tasks.txt", text)


def test_nasty_names_golden() -> None:
    text = render_timeline(run_traced_main(nasty_names), blocking_threshold=0.1)
    assert "\x1b" not in text
    assert "line one\\nline two" in text
    assert "\\x1b[31mred" in text
    assert "caf\\xe9" in text
    assert "a-very-long-task-name" in text
    assert "on-and-on-well-past" not in text  # truncated to the label column
    assert_fits(text, 100)
    assert_golden("timeline_nasty_names.txt", text)


def test_narrow_golden() -> None:
    text = render_timeline(run_traced_main(mixed_outcomes), width=MIN_WIDTH, blocking_threshold=0.2)
    assert_fits(text, MIN_WIDTH)
    assert_golden("timeline_narrow.txt", text)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks arrived in Python 3.12")
def test_eager_nested_steps_golden() -> None:
    trace = run_traced_main(eager_children, eager=True)
    nested = [step for step in trace.steps() if step.inside is not None]
    assert len(nested) == 1
    text = render_timeline(trace, blocking_threshold=0.75)
    # 50 ms columns.  The child's first step (0.5 s to 1.5 s) is drawn on its
    # own row although it ran inside main's step (0 s to 2 s), which holds it
    # and is the longest step.
    assert "1 column = 50 ms" in text
    assert row(text, "child").startswith(" " * 10 + "#" * 20 + ".")
    assert row(text, "main").startswith("#" * 40 + ".")
    assert "longest step: main (task 1) 2 s at 0 s" in text
    assert_fits(text, 100)
    assert_golden("timeline_eager.txt", text)


# -- guarantees -----------------------------------------------------------------


@pytest.mark.parametrize("width", [MIN_WIDTH, 57, 80, 100, 137])
@pytest.mark.parametrize("program", [block_then_await, mixed_outcomes, many_tasks, nasty_names])
def test_every_line_fits_the_width(program: Main, width: int) -> None:
    trace = run_traced_main(program)
    for window in (None, (0.5, 1.25)):
        text = render_timeline(trace, width=width, blocking_threshold=0.2, window=window)
        assert_fits(text, width)


def test_rendering_is_deterministic() -> None:
    first = render_timeline(run_traced_main(mixed_outcomes), blocking_threshold=0.2)
    second = render_timeline(run_traced_main(mixed_outcomes), blocking_threshold=0.2)
    assert first == second


def test_empty_trace() -> None:
    loop = VirtualClockLoop()
    tracer = Tracer(loop)
    tracer.install()
    trace = tracer.stop()
    loop.close()
    assert render_timeline(trace) == "asyncspec timeline: no steps recorded (0 tasks traced)"


def test_window_with_nothing_in_it() -> None:
    trace = run_traced_main(block_then_await)
    text = render_timeline(trace, window=(100.0, 200.0))
    assert text == (
        "asyncspec timeline: nothing happened in window 100 s to 200 s "
        "(trace: 0 s to 15 s) (12 steps traced)"
    )


def test_pending_task_waits_to_the_end_of_the_trace() -> None:
    loop = VirtualClockLoop()
    tracer = Tracer(loop)
    tracer.install()

    async def main() -> None:
        never = asyncio.create_task(asyncio.Event().wait(), name="never-set")
        await asyncio.sleep(3)
        assert not never.done()

    try:
        loop.run_until_complete(loop.create_task(main(), name="main"))
        text = render_timeline(tracer.stop())
        marks = row(text, "never-set")
        # Alive from 0 s to the trace's end at 3 s; no end mark.
        assert marks == "|" + "." * (len(row(text, "main")) - 2) + "."
        assert not set(marks) & {"X", "C"}
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.gather(*asyncio.all_tasks(loop), return_exceptions=True))
        loop.close()


def test_far_loop_times_label_the_axis_from_its_origin() -> None:
    async def late() -> None:
        await asyncio.sleep(1e9)
        time.sleep(2)
        await asyncio.sleep(1)

    text = render_timeline(run_traced_main(late), window=(1e9, 1e9 + 4))
    assert "axis: +s after loop time 1000000000 s" in text
    assert "+0" in text
    assert "+2" in text
    assert "longest step: main (task 1) 2 s at 1000000000 s" in text
    assert_fits(text, 100)


def test_real_loop_trace_renders() -> None:
    async def main() -> None:
        async def napper() -> None:
            await asyncio.sleep(0.01)
            time.sleep(0.02)

        await asyncio.gather(asyncio.create_task(napper(), name="napper"))

    trace = run_traced_main(main, loop_factory=asyncio.new_event_loop)
    text = render_timeline(trace, blocking_threshold=0.01)
    assert_fits(text, 100)
    assert "#" in row(text, "napper")
    assert "longest step: napper (task 2)" in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": MIN_WIDTH - 1}, "width must be at least"),
        ({"max_tasks": 0}, "max_tasks must be at least 1"),
        ({"blocking_threshold": -0.1}, "blocking_threshold must be"),
        ({"blocking_threshold": float("nan")}, "blocking_threshold must be"),
        ({"blocking_threshold": float("inf")}, "blocking_threshold must be"),
        ({"window": (2.0, 1.0)}, "start <= end"),
        ({"window": (0.0, float("inf"))}, "start <= end"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    trace = run_traced_main(all_at_once)
    with pytest.raises(ValueError, match=re.escape(message)):
        render_timeline(trace, **kwargs)


def test_max_tasks_caps_rows() -> None:
    text = render_timeline(run_traced_main(block_then_await), max_tasks=2, blocking_threshold=1)
    assert len(task_rows(text)) == 2
    assert "... 4 more tasks not shown" in text
    # worker-0 has the longest step (first of the equal 2.5 s ones).
    row(text, "worker-0")


def test_window_of_one_instant() -> None:
    text = render_timeline(run_traced_main(block_then_await), window=(12.5, 12.5))
    assert "window 12.5 s to 12.5 s" in text
    # Workers 0-3 finish at 12.5 s; worker-4's step [10, 12.5) ends there but
    # does not cover it, so worker-4 only waits.
    for index in range(4):
        assert row(text, f"worker-{index}").strip() == "|"
    assert row(text, "worker-4").strip() == "."
    assert_fits(text, 100)


def test_uvloop_trace_renders() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        async def napper() -> None:
            await asyncio.sleep(0.005)
            time.sleep(0.01)

        await asyncio.gather(asyncio.create_task(napper(), name="napper"))

    trace = run_traced_main(main, loop_factory=uvloop.new_event_loop)
    text = render_timeline(trace, blocking_threshold=0.005)
    assert_fits(text, 100)
    assert "#" in row(text, "napper")


def test_phases_tag_the_rows_of_the_fixtures_tasks() -> None:
    """Given the phase that created each task, the rows of tasks made in a
    test's setup or teardown say so; the test body's own tasks stay as they
    were."""
    trace = run_traced_main(block_then_await)
    plain = render_timeline(trace)
    tagged = render_timeline(trace, phases={2: "setup", 3: "teardown", 4: "call"})
    assert row(tagged, "worker-0 [setup]") == row(plain, "worker-0")
    assert row(tagged, "worker-1 [teardown]") == row(plain, "worker-1")
    assert row(tagged, "worker-2") == row(plain, "worker-2")
    assert "[call]" not in tagged


# -- steps that block in real time on the virtual clock ------------------------------


async def blocks_in_real_time() -> None:
    """A step that holds the loop thread 0.15 s of real time (a blocking call
    in C: no virtual clock advances) between two virtual sleeps."""

    async def worker() -> None:
        await asyncio.sleep(0.5)
        select.select([], [], [], 0.15)
        await asyncio.sleep(0.5)

    await asyncio.create_task(worker(), name="worker")


def test_a_step_blocking_in_real_time_is_drawn_as_blocking() -> None:
    """On the virtual clock a busy step takes no loop time, yet the gate
    reports it over max_blocking in real time: the timeline marks it ``#``
    where it ran, and says how long it held the loop thread in real time,
    instead of "every step took no loop time"."""
    trace = run_traced_main(blocks_in_real_time)
    (blocking,) = [step for step in trace.steps() if step.real_ns > 100_000_000]
    assert blocking.duration == 0.0  # no loop time: the virtual clock stood still
    text = render_timeline(trace, blocking_threshold=0.1)
    assert_fits(text, 100)
    marks = row(text, "worker")
    assert marks.count("#") == 1, text
    # Drawn where the step ran: at 0.5 s, half way along the worker's life.
    assert marks.index("#") == len(marks.rstrip()) // 2, text
    assert "# step over 100 ms (blocking)" in text
    assert "longest step: every step took no loop time (some real time: see blocking)" in text
    blocking_line = r"^blocking: 1 step over 100 ms, 1[5-9]\d(\.\d+)? ms in all$"
    assert re.search(blocking_line, text, re.M), text
    assert re.search(
        r"^real time: 1 step, worst worker \(task 2\) 1[5-9]\d(\.\d+)? ms at 0\.5 s$",
        text,
        re.M,
    ), text
    # Without a threshold nothing real is shown: the picture stays reproducible.
    plain = render_timeline(trace)
    assert "#" not in plain
    assert "real time" not in plain
