"""hang_report: describe a stuck loop from another thread."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pytest_asyncspec import VirtualClockLoop
from pytest_asyncspec.checks import hang as hang_module, leaks as leaks_module
from pytest_asyncspec.checks.hang import hang_report
from pytest_asyncspec.clock import waiting
from pytest_asyncspec.clock.waiting import foreign_frames, place
from pytest_asyncspec.tracing.trace import Tracer

HERE = __file__
#: Real seconds any wait in these tests may take before the test gives up.
PATIENCE = 20.0


def line_of(marker: str) -> int:
    """The line of this file that carries ``# <marker>`` (so tests survive edits)."""
    with open(HERE, encoding="utf-8") as source:
        for number, text in enumerate(source, start=1):
            if text.rstrip().endswith(f"# {marker}"):
                return number
    raise LookupError(marker)


def where(marker: str, function: str) -> str:
    return f"{HERE}:{line_of(marker)} in {function}"


@contextmanager
def running_in_thread(
    loop: asyncio.AbstractEventLoop, main: Callable[[], Coroutine[Any, Any, None]]
) -> Iterator[threading.Thread]:
    """Run ``main()`` on ``loop`` in a helper thread; join and close on exit."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as error:  # reported by the main thread below
            errors.append(error)

    thread = threading.Thread(target=run, name="loop-thread", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        thread.join(PATIENCE)
        assert not thread.is_alive(), "the loop thread did not finish"
        loop.close()
    if errors:
        raise errors[0]


async def waiter(event: asyncio.Event) -> None:
    await event.wait()  # waiter-suspended


async def sleeper() -> None:
    await asyncio.sleep(3600)  # sleeper-suspended


async def blocker(entered: threading.Event, release: threading.Event) -> None:
    await asyncio.sleep(0)
    entered.set()
    release.wait(PATIENCE)  # blocked-here


async def spinner(entered: threading.Event, release: threading.Event) -> None:
    await asyncio.sleep(0)
    entered.set()
    while not release.is_set():
        time.sleep(0.005)  # sleeping-here


def scenario(
    step: Callable[[threading.Event, threading.Event], Coroutine[Any, Any, None]],
    entered: threading.Event,
    release: threading.Event,
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A main task with a waiter, a sleeper and one task that blocks the loop."""

    async def main() -> None:
        event = asyncio.Event()
        others = [
            asyncio.create_task(waiter(event), name="waiter"),
            asyncio.create_task(sleeper(), name="sleeper"),
        ]
        await asyncio.create_task(step(entered, release), name="blocker")  # main-suspended
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    return main


def report_while_blocked(
    loop: asyncio.AbstractEventLoop,
    step: Callable[[threading.Event, threading.Event], Coroutine[Any, Any, None]],
    tracer: Tracer | None = None,
) -> str:
    entered, release = threading.Event(), threading.Event()
    with running_in_thread(loop, scenario(step, entered, release)):
        try:
            assert entered.wait(PATIENCE), "the blocking step never started"
            return hang_report(loop, tracer=tracer)
        finally:
            release.set()


def assert_lists_the_waiting_tasks(report: str) -> None:
    assert "4 pending task(s):" in report
    heads = {
        line.split("'")[1]: line for line in report.splitlines() if line.startswith("  task '")
    }
    assert heads["waiter"].endswith("awaits asyncio Event.wait(): a Future")
    assert f"at {where('waiter-suspended', 'waiter')}" in report
    assert heads["sleeper"].endswith("awaits asyncio sleep(): a Future")
    assert f"at {where('sleeper-suspended', 'sleeper')}" in report
    # Python 3.10 frames carry no qualified name: "main" there.
    assert f"at {HERE}:{line_of('main-suspended')} in " in report


def test_a_step_blocked_on_a_thread_event_is_named_with_its_line() -> None:
    report = report_while_blocked(asyncio.new_event_loop(), blocker)

    assert "running on loop-thread; reported from MainThread" in report
    assert "running a step now: task 'blocker' (blocker)" in report
    assert f"last line of user code: {where('blocked-here', 'blocker')}" in report
    assert "innermost call: " in report
    assert "threading.py" in report.split("innermost call: ")[1].splitlines()[0]
    # The stack starts at the task's coroutine, not in the loop's machinery.
    stack = report.split("loop thread stack (most recent call last):\n")[1]
    assert stack.splitlines()[0].strip().startswith(f'File "{HERE}"')
    assert "task 'blocker' (blocker) is running a step (see above)" in report
    assert_lists_the_waiting_tasks(report)
    assert "awaits task 'blocker'" in report  # the main task


def test_a_step_blocked_in_time_sleep_on_a_stock_loop() -> None:
    report = report_while_blocked(asyncio.new_event_loop(), spinner)

    assert "running a step now: task 'blocker' (spinner)" in report
    assert f"last line of user code: {where('sleeping-here', 'spinner')}" in report
    assert_lists_the_waiting_tasks(report)


def test_traced_virtual_loop_adds_labels_creation_sites_and_step_age() -> None:
    loop = VirtualClockLoop()
    tracer = Tracer(loop)
    tracer.install()
    try:
        report = report_while_blocked(loop, blocker, tracer)
    finally:
        tracer.stop()

    assert report.startswith("event loop VirtualClockLoop at loop time 0 s, running on loop-thread")
    labels = {record.name: record.label for record in tracer.tasks.values()}
    sites = {record.name: record.created_where for record in tracer.tasks.values()}
    assert (
        f"running a step now: task 'blocker' (blocker) "
        f"[label {labels['blocker']}, created at {sites['blocker']}]"
    ) in report
    assert sites["blocker"] == f"{HERE}:{line_of('main-suspended')}"
    assert "the step has held the loop for " in report
    assert f"last line of user code: {where('blocked-here', 'blocker')}" in report
    # Traced tasks are listed in creation order: main, waiter, sleeper, blocker.
    # (The main task's own name is not checked: CPython 3.13.0 names every
    # task made through a task factory without a name 'None'.)
    listed = [line.split("'")[1] for line in report.splitlines() if line.startswith("  task '")]
    assert listed[1:] == ["waiter", "sleeper", "blocker"]
    assert_lists_the_waiting_tasks(report)


def loop_thread_is_idle(thread: threading.Thread) -> bool:
    assert thread.ident is not None
    frame = sys._current_frames().get(thread.ident)
    return frame is not None and frame.f_code.co_filename.endswith("selectors.py")


def test_an_idle_loop_says_no_step_runs_and_lists_the_waiters() -> None:
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: list[asyncio.Event] = []

    async def main() -> None:
        event = asyncio.Event()
        box.append(event)
        task = asyncio.create_task(waiter(event), name="waiter")
        await asyncio.sleep(0)  # the waiter runs up to its await
        # From here on the loop's next select() is the idle, blocking one.
        started.set()
        await task  # idle-main

    with running_in_thread(loop, main) as thread:
        try:
            assert started.wait(PATIENCE)
            deadline = time.monotonic() + PATIENCE
            while not loop_thread_is_idle(thread) and time.monotonic() < deadline:
                time.sleep(0.001)
            report = hang_report(loop)
        finally:
            if box:
                loop.call_soon_threadsafe(box[0].set)

    assert "no task step is running on the loop thread (loop-thread)" in report
    assert "the loop is idle, waiting in its selector" in report
    assert "2 pending task(s):" in report
    assert f"at {where('waiter-suspended', 'waiter')}" in report
    assert f"at {HERE}:{line_of('idle-main')} in " in report


def test_a_loop_that_is_not_running() -> None:
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(sleeper(), name="never-started")
        report = hang_report(loop)
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    finally:
        loop.close()

    assert "not running" in report
    assert "no task step is running (the loop thread is unknown)" in report
    assert "task 'never-started' (sleeper)" in report
    assert "closed" in hang_report(loop)


def test_failed_reads_are_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(sleeper(), name="odd")

        def broken_chain(_task: object) -> list[Any]:
            raise RuntimeError("the task moved on")

        with monkeypatch.context() as patch:
            patch.setattr(leaks_module, "await_chain", broken_chain)
            report = hang_report(loop)
        assert "(could not read task 'odd': RuntimeError: the task moved on)" in report

        def broken_all_tasks(_loop: object) -> set[asyncio.Task[Any]]:
            raise RuntimeError("Set changed size during iteration")

        with monkeypatch.context() as patch:
            patch.setattr(asyncio, "all_tasks", broken_all_tasks)
            report = hang_report(loop)
        assert "(could not read the loop's tasks: RuntimeError: Set changed size" in report

        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    finally:
        loop.close()


def test_reports_taken_while_the_loop_churns_never_raise() -> None:
    loop = VirtualClockLoop()
    tracer = Tracer(loop)
    tracer.install()
    stop = threading.Event()

    async def churn() -> None:
        async def short(n: int) -> int:
            await asyncio.sleep(0)
            return n

        while not stop.is_set():
            await asyncio.gather(*(short(n) for n in range(20)))
            await asyncio.sleep(0.001)

    reports: list[str] = []
    try:
        with running_in_thread(loop, churn):
            try:
                deadline = time.monotonic() + 0.3
                while time.monotonic() < deadline:
                    reports.append(hang_report(loop, tracer=tracer))
            finally:
                stop.set()
    finally:
        tracer.stop()

    assert reports
    assert all(report.startswith("event loop VirtualClockLoop") for report in reports)


class _CodeWithoutQualname:
    """A code object as Python 3.10 has them: no co_qualname."""

    co_name = "method"
    co_filename = "/somewhere/module.py"


class _ForeignFrame:
    """A frame another thread runs: reading its locals would write to it."""

    f_code = _CodeWithoutQualname()
    f_lineno = 3

    @property
    def f_globals(self) -> dict[str, object]:
        return {"__name__": "module"}

    @property
    def f_locals(self) -> dict[str, object]:
        raise AssertionError("the locals of another thread's frame were read")


def test_frames_read_for_a_hang_report_never_have_their_locals_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before Python 3.13 reading ``f_locals`` writes the frame's locals
    dict; on 3.10 naming a frame ``Class.method`` read ``self`` from it.
    Inside a report the bare function name is used instead."""
    frame: Any = _ForeignFrame()
    with foreign_frames():
        assert place(frame) == "/somewhere/module.py:3 in method"
    with pytest.raises(AssertionError, match="locals of another thread's frame"):
        place(frame)

    seen: list[bool] = []

    def describe(task: asyncio.Task[Any], tracer: object = None) -> Any:
        seen.append(waiting._foreign.reading)
        raise RuntimeError("looked")

    monkeypatch.setattr(hang_module, "describe_task", describe)
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(sleeper())
        hang_report(loop)
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    finally:
        loop.close()
    assert seen == [True]
