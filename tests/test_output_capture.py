"""Timed output capture: printed lines with their loop time and task."""

from __future__ import annotations

import asyncio
import re
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from pytest_asyncspec import VirtualClockLoop
from pytest_asyncspec.checks.output import (
    OutputLine,
    TimedOutput,
    capture_output,
    compare_transcript,
)
from pytest_asyncspec.checks.timing import Tolerance
from pytest_asyncspec.tracing.trace import Tracer


@pytest.fixture
def traced_loop() -> Iterator[tuple[VirtualClockLoop, Tracer]]:
    loop = VirtualClockLoop()
    tracer = Tracer(loop)
    tracer.install()
    try:
        yield loop, tracer
    finally:
        tracer.stop()
        loop.close()


# "Async Processing in Python", async2: each job awaits half of its time and
# blocks the other half, and prints a line when it starts and when it ends.
async def half_awaited_job(half: float = 2.5) -> None:
    began = time.perf_counter()
    print("myProc started ...")
    await asyncio.sleep(half)
    time.sleep(half)
    print(" myProc finished in %.5f seconds." % (time.perf_counter() - began))


async def async2_main() -> None:
    await asyncio.gather(*(half_awaited_job() for _ in range(5)))


ASYNC2_TRANSCRIPT: list[tuple[float | None, str | re.Pattern[str]]] = [
    (0, "myProc started ..."),
    (0, "myProc started ..."),
    (0, "myProc started ..."),
    (0, "myProc started ..."),
    (0, "myProc started ..."),
    (5, " myProc finished in 5.00000 seconds."),
    (7.5, " myProc finished in 7.50000 seconds."),
    (10, " myProc finished in 10.00000 seconds."),
    (12.5, " myProc finished in 12.50000 seconds."),
    (15, " myProc finished in 15.00000 seconds."),
]


def run_captured(
    loop: VirtualClockLoop, tracer: Tracer, main: Callable[[], Coroutine[Any, Any, None]]
) -> list[OutputLine]:
    with capture_output(tracer) as output:
        loop.run_until_complete(main())
    return output.lines


def test_async2_prints_each_line_at_its_virtual_time(
    traced_loop: tuple[VirtualClockLoop, Tracer], capsys: pytest.CaptureFixture[str]
) -> None:
    loop, tracer = traced_loop
    lines = run_captured(loop, tracer, async2_main)

    assert [line.time for line in lines] == [0, 0, 0, 0, 0, 5, 7.5, 10, 12.5, 15]
    assert [line.text for line in lines] == [text for _, text in ASYNC2_TRANSCRIPT]
    assert compare_transcript(lines, ASYNC2_TRANSCRIPT) == []
    # Everything still reached the stream the proxy replaced (pytest's capture).
    assert capsys.readouterr().out.splitlines() == [line.text for line in lines]


def test_lines_name_the_task_that_printed_them(
    traced_loop: tuple[VirtualClockLoop, Tracer],
) -> None:
    loop, tracer = traced_loop
    lines = run_captured(loop, tracer, async2_main)

    workers = [
        record.label for record in tracer.tasks.values() if record.coroutine == "half_awaited_job"
    ]
    assert len(workers) == 5
    # Each worker prints its start in creation order, then its finish in the
    # same order, 2.5 s apart.
    assert [line.task for line in lines] == workers + workers


def test_output_object_offers_texts_times_and_compare(
    traced_loop: tuple[VirtualClockLoop, Tracer],
) -> None:
    loop, tracer = traced_loop
    with capture_output(tracer) as output:
        loop.run_until_complete(async2_main())

    assert output.texts()[0] == "myProc started ..."
    assert output.times()[-1] == 15
    assert output.compare(ASYNC2_TRANSCRIPT) == []


def test_regex_lines_and_untimed_lines_match(
    traced_loop: tuple[VirtualClockLoop, Tracer],
) -> None:
    loop, tracer = traced_loop
    lines = run_captured(loop, tracer, async2_main)
    finished = re.compile(r" myProc finished in \d+\.\d{5} seconds\.")
    expected: list[tuple[float | None, str | re.Pattern[str]]] = [
        *[(None, "myProc started ...")] * 5,
        *[(when, finished) for when in (5, 7.5, 10, 12.5, 15)],
    ]
    assert compare_transcript(lines, expected) == []


def test_swapped_lines_are_reported_as_a_swap(
    traced_loop: tuple[VirtualClockLoop, Tracer],
) -> None:
    loop, tracer = traced_loop
    lines = run_captured(loop, tracer, async2_main)
    expected = list(ASYNC2_TRANSCRIPT)
    expected[6], expected[7] = expected[7], expected[6]

    problems = compare_transcript(lines, expected)

    assert problems == [
        "lines 7 and 8 are in the opposite order: expected "
        "' myProc finished in 10.00000 seconds.' then ' myProc finished in 7.50000 seconds.', "
        "printed ' myProc finished in 7.50000 seconds.' (t=7.5 s) then "
        "' myProc finished in 10.00000 seconds.' (t=10.0 s)"
    ]


def test_wrong_time_is_reported_with_both_times(
    traced_loop: tuple[VirtualClockLoop, Tracer],
) -> None:
    loop, tracer = traced_loop
    lines = run_captured(loop, tracer, async2_main)
    expected = list(ASYNC2_TRANSCRIPT)
    # The figure a reader might guess if they forgot the blocking half.
    expected[5] = (2.5, expected[5][1])

    problems = compare_transcript(lines, expected)

    assert problems == [
        "line 6 ' myProc finished in 5.00000 seconds.': expected at t=2.5 s, "
        "printed at t=5.0 s (off by +2.5 s; exact)"
    ]


def test_tolerance_accepts_near_times_and_explains_rejections() -> None:
    measured = [OutputLine(time=5.04, task=None, text="done")]

    assert compare_transcript(measured, [(5, "done")], tolerance=Tolerance()) == []
    near = compare_transcript(measured, [(5, "done")], tolerance=lambda e, m: abs(e - m) < 0.1)
    assert near == []
    assert compare_transcript(measured, [(4, "done")], tolerance=Tolerance()) == [
        "line 1 'done': expected at t=4.0 s, printed at t=5.04 s "
        "(off by +1.04 s; accepted 3.95 s to 4.5 s)"
    ]
    assert compare_transcript(measured, [(5, "done")], tolerance=lambda e, m: False) == [
        "line 1 'done': expected at t=5.0 s, printed at t=5.04 s "
        "(off by +0.04 s; rejected by the tolerance function)"
    ]


def test_missing_extra_and_wrong_lines_are_each_described() -> None:
    measured = [
        OutputLine(time=0, task=1, text="a"),
        OutputLine(time=1, task=1, text="x"),
        OutputLine(time=2, task=1, text="b"),
    ]

    assert compare_transcript(measured, [(0, "a"), (1, "b")]) == [
        "line 2: expected 'b', printed 'x' at t=1.0 s (the expected text was printed as line 3)",
        "line 3: unexpected extra line 'b' printed at t=2.0 s (the transcript has 2 line(s))",
    ]
    assert compare_transcript(measured[:1], [(0, "a"), (1, re.compile("b+"))]) == [
        "line 2: expected a line matching /b+/ at t=1.0 s, but the output ended after 1 line(s)"
    ]


def test_partial_lines_are_joined_and_flushed_at_exit(
    traced_loop: tuple[VirtualClockLoop, Tracer],
) -> None:
    loop, tracer = traced_loop

    async def main() -> None:
        print("waiting", end="")
        await asyncio.sleep(1)
        print(" ... done")
        print("a\nb", end="")
        await asyncio.sleep(1)
        sys.stdout.write("c")

    lines = run_captured(loop, tracer, main)

    # A line belongs to the moment it was started.
    assert [(line.time, line.text) for line in lines] == [
        (0, "waiting ... done"),
        (1, "a"),
        (1, "bc"),
    ]


def test_empty_lines_are_lines(traced_loop: tuple[VirtualClockLoop, Tracer]) -> None:
    loop, tracer = traced_loop

    async def main() -> None:
        print()
        await asyncio.sleep(0.5)
        print("\n")

    lines = run_captured(loop, tracer, main)

    assert [(line.time, line.text) for line in lines] == [(0, ""), (0.5, ""), (0.5, "")]


def test_output_outside_a_task_step_has_no_task(
    traced_loop: tuple[VirtualClockLoop, Tracer],
) -> None:
    loop, tracer = traced_loop
    with capture_output(tracer) as output:
        print("before the loop runs")
        loop.call_soon(print, "from a plain callback")
        loop.run_until_complete(asyncio.sleep(3))
        print("after")

    assert [(line.time, line.task, line.text) for line in output.lines] == [
        (0, None, "before the loop runs"),
        (0, None, "from a plain callback"),
        (3, None, "after"),
    ]


def test_other_threads_are_forwarded_but_not_recorded(
    traced_loop: tuple[VirtualClockLoop, Tracer], capsys: pytest.CaptureFixture[str]
) -> None:
    loop, tracer = traced_loop

    def worker() -> None:
        print("from a worker thread")

    async def main() -> None:
        await loop.run_in_executor(None, worker)
        print("back on the loop")

    with capture_output(tracer) as output:
        loop.run_until_complete(main())
        loop.run_until_complete(loop.shutdown_default_executor())

    assert output.texts() == ["back on the loop"]
    assert capsys.readouterr().out == "from a worker thread\nback on the loop\n"


def test_real_loop_times_come_from_loop_time(capsys: pytest.CaptureFixture[str]) -> None:
    loop = asyncio.new_event_loop()
    tracer = Tracer(loop)
    tracer.install()
    try:

        async def main() -> None:
            print("one")
            await asyncio.sleep(0.01)
            print("two")

        before = loop.time()
        with capture_output(tracer) as output:
            loop.run_until_complete(main())
        after = loop.time()
    finally:
        tracer.stop()
        loop.close()

    first, second = output.lines
    assert before <= first.time <= second.time <= after
    assert second.time - first.time >= 0.009
    assert first.task is not None
    assert first.task == second.task
    assert capsys.readouterr().out == "one\ntwo\n"


def test_stdout_is_restored_even_when_the_block_raises(
    traced_loop: tuple[VirtualClockLoop, Tracer],
) -> None:
    _, tracer = traced_loop
    original = sys.stdout
    captured: list[TimedOutput] = []

    def print_then_fail() -> None:
        with capture_output(tracer) as output:
            captured.append(output)
            print("half", end="")
            assert sys.stdout is not original
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        print_then_fail()

    assert sys.stdout is original
    assert captured[0].texts() == ["half"]


def test_proxy_passes_stream_attributes_through(
    traced_loop: tuple[VirtualClockLoop, Tracer],
) -> None:
    _, tracer = traced_loop
    original = sys.stdout
    with capture_output(tracer):
        assert sys.stdout.encoding == original.encoding
        assert sys.stdout.isatty() == original.isatty()
        sys.stdout.writelines(["x\n", "y\n"])
        sys.stdout.flush()


def test_thread_recorded_is_the_entering_thread(
    traced_loop: tuple[VirtualClockLoop, Tracer],
) -> None:
    _, tracer = traced_loop

    with capture_output(tracer) as output:
        thread = threading.Thread(target=lambda: print("elsewhere"))
        thread.start()
        thread.join()
        print("here")

    assert output.texts() == ["here"]
