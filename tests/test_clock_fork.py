"""A process forked from a virtual loop's thread lives on real time.

The child of a fork copies the parent's memory: the patched ``time`` module,
the registration of the loop's thread and ``time_patch``'s lock (possibly
held by another thread).  The child is not the loop, so it must see the real
clock: its ``time.sleep`` waits, its clocks move, and it may run an event loop
of its own, virtual or not.  Every test here forks for real and has the child
report over a pipe (or the executor's own channel); nothing is mocked.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as datetime_module
import json
import multiprocessing
import os
import select
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from real_work_helpers import REAL_TIME_FUNCTIONS

from pytest_asyncspec import VirtualClockLoop
from pytest_asyncspec.clock import time_patch

if TYPE_CHECKING:
    from conftest import RunVirtual

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns (DeprecationWarning) when a process that runs several
    # threads forks: the child may inherit a lock another thread held.  The
    # run_virtual fixture's watchdog thread (and ProcessPoolExecutor's manager
    # thread) make every fork here such a fork, on purpose: that is exactly
    # the situation these tests check, so the warning is expected, not a bug.
    pytest.mark.filterwarnings(
        r"ignore:This process \(pid=\d+\) is multi-threaded, use of fork\(\) may lead "
        r"to deadlocks in the child\.:DeprecationWarning"
    ),
]

#: Real seconds the children sleep, and the least they must take for it.
SLEEP = 0.2
AT_LEAST = 0.15
#: Real seconds the parent waits for a child's report before giving up.
REPORT_TIMEOUT = 30.0

_DATETIME_NOW = datetime_module.datetime.__dict__["now"]
_DATETIME_UTCNOW = datetime_module.datetime.__dict__["utcnow"]


def _replaced_functions() -> list[str]:
    return [name for name, real in REAL_TIME_FUNCTIONS.items() if getattr(time, name) is not real]


def _timed_sleep(seconds: float) -> dict[str, Any]:
    """Sleep through the time module; say how long it took by both clocks."""
    real_before = time_patch.real_monotonic()
    module_before = time.monotonic()
    wall_before = time_patch.real_time()
    wall = time.time()
    time.sleep(seconds)
    return {
        "real": time_patch.real_monotonic() - real_before,
        "module": time.monotonic() - module_before,
        "wall is real": wall_before <= wall <= time_patch.real_time(),
        "replaced": _replaced_functions(),
        "datetime untouched": (
            datetime_module.datetime.__dict__["now"] is _DATETIME_NOW
            and datetime_module.datetime.__dict__["utcnow"] is _DATETIME_UTCNOW
        ),
        "source": time_patch.current_source() is not None,
    }


def _fork_and_report(child: Callable[[], object]) -> Any:
    """Fork; run ``child()`` in the child and return what it returned (as JSON).

    The child never returns into pytest: it writes its result, or the
    traceback of what it raised, to a pipe and leaves with ``os._exit``.  The
    parent reads with a real timeout, so a child stuck on a lock fails the
    test instead of hanging it.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.close(read_fd)
            try:
                payload = {"result": child()}
            except BaseException:
                payload = {"error": traceback.format_exc()}
            os.write(write_fd, json.dumps(payload).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time_patch.real_monotonic() + REPORT_TIMEOUT
    try:
        while True:
            remaining = deadline - time_patch.real_monotonic()
            readable, _, _ = select.select([read_fd], [], [], max(remaining, 0))
            if not readable:
                os.kill(pid, 9)
                raise AssertionError(f"the forked child sent nothing in {REPORT_TIMEOUT} s")
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    payload = json.loads(b"".join(chunks))
    assert "error" not in payload, payload["error"]
    return payload["result"]


def _expect_real(report: dict[str, Any]) -> None:
    assert report["real"] >= AT_LEAST, report
    assert report["module"] >= AT_LEAST, report
    assert report["wall is real"], report
    assert report["replaced"] == [], report
    assert report["datetime untouched"], report
    assert report["source"] is False, report


def test_a_bare_fork_from_the_loop_thread_gets_real_time(run_virtual: RunVirtual) -> None:
    """``os.fork()`` inside a coroutine: in the child ``time.sleep(0.2)`` really
    waits, ``time.monotonic`` and ``time.time`` are real, the module's own
    functions are back, no virtual clock is registered, and the blocking-sleep
    listener of the loop (the blocking watchdog's hook) is never called; the
    parent's loop keeps its virtual clock."""
    heard: list[float] = []

    async def main() -> tuple[dict[str, Any], float, list[str]]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        loop.on_blocking_sleep = lambda seconds, _frame: heard.append(seconds)
        await asyncio.sleep(100)

        def child() -> dict[str, Any]:
            report = _timed_sleep(SLEEP)
            report["listener heard"] = heard
            return report

        report = _fork_and_report(child)
        return report, loop.time(), _replaced_functions()

    report, after, parent_replaced = run_virtual(main)

    assert report.pop("listener heard") == []
    _expect_real(report)
    assert after == 100.0  # the parent's blocking wait for the child is not virtual time
    assert parent_replaced == list(REAL_TIME_FUNCTIONS)
    assert heard == []


def _run_a_virtual_loop_here() -> dict[str, Any]:
    async def main() -> list[float]:
        started = time.monotonic()
        await asyncio.sleep(3600)
        time.sleep(60)
        return [started, time.monotonic()]

    loop = VirtualClockLoop()
    try:
        by_hand = loop.run_until_complete(main())
    finally:
        loop.close()
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
            by_runner = runner.run(main())
    else:
        by_runner = by_hand
    if sys.version_info >= (3, 12):
        by_run = asyncio.run(main(), loop_factory=VirtualClockLoop)
    else:
        by_run = by_hand
    report = _timed_sleep(SLEEP)
    report["loops"] = [by_hand, by_runner, by_run]
    return report


def test_a_forked_child_can_run_its_own_virtual_loop(run_virtual: RunVirtual) -> None:
    """A child forked from a running virtual loop starts a virtual loop of its own
    (by hand, through ``asyncio.Runner`` and through ``asyncio.run``): none is
    refused as nested, each reads its own clock, and once they stop the child
    has real time again."""

    async def main() -> dict[str, Any]:
        await asyncio.sleep(5)
        result: dict[str, Any] = _fork_and_report(_run_a_virtual_loop_here)
        return result

    report = run_virtual(main)

    assert report.pop("loops") == [[0.0, 3660.0]] * 3
    _expect_real(report)


def test_a_child_forked_while_another_thread_holds_the_patch_lock_is_not_stuck(
    run_virtual: RunVirtual,
) -> None:
    """Another thread holds time_patch's lock at the moment of the fork: in the
    child that lock would stay taken forever; the child must still be able to
    start and stop a virtual loop."""
    holding = threading.Event()
    release = threading.Event()

    def hold_the_lock() -> None:
        with time_patch._lock:
            holding.set()
            release.wait(REPORT_TIMEOUT)

    async def main() -> dict[str, Any]:
        holder = threading.Thread(target=hold_the_lock, name="holds-the-patch-lock")
        holder.start()
        try:
            assert holding.wait(REPORT_TIMEOUT)
            result: dict[str, Any] = _fork_and_report(_run_a_virtual_loop_here)
        finally:
            release.set()
            holder.join(REPORT_TIMEOUT)
        return result

    report = run_virtual(main)

    assert report.pop("loops") == [[0.0, 3660.0]] * 3
    _expect_real(report)


def _report_to(connection: Any) -> None:
    connection.send(_timed_sleep(SLEEP))
    connection.close()


def test_a_multiprocessing_fork_process_gets_real_time(run_virtual: RunVirtual) -> None:
    """``multiprocessing.get_context("fork").Process`` started from a coroutine:
    its ``time.sleep(0.2)`` takes 0.2 s of real time."""

    async def main() -> dict[str, Any]:
        context = multiprocessing.get_context("fork")
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_report_to, args=(sender,))
        process.start()
        sender.close()
        try:
            assert receiver.poll(REPORT_TIMEOUT), "the forked process sent nothing"
            report: dict[str, Any] = receiver.recv()
        finally:
            process.join(REPORT_TIMEOUT)
            receiver.close()
        assert process.exitcode == 0
        return report

    _expect_real(run_virtual(main))


def test_a_fork_process_pool_job_gets_real_time(run_virtual: RunVirtual) -> None:
    """A ``ProcessPoolExecutor`` with the fork start method, called through
    ``run_in_executor`` from the virtual loop: the worker (forked from the loop
    thread at submit) sleeps 0.2 s for real and measures 0.2 s with the time
    module, and the loop's clock, flowing in real time while the job is in
    flight, moves by at least as much."""

    async def main() -> tuple[dict[str, Any], float]:
        loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            started = loop.time()
            report: dict[str, Any] = await loop.run_in_executor(pool, _timed_sleep, SLEEP)
            return report, loop.time() - started

    report, loop_took = run_virtual(main)

    _expect_real(report)
    assert loop_took >= report["real"]


def test_blocking_polls_for_a_bare_forked_child_wait_as_long_as_it_runs(
    run_virtual: RunVirtual,
) -> None:
    """CPython's test_fork_not_share_event_loop waits for a child it forked
    with ``os.fork()`` by polling ``os.waitpid(pid, WNOHANG)`` between
    blocking ``time.sleep`` calls, up to a deadline read from
    ``time.monotonic()``.  The child is real work: while it runs, a blocking
    sleep on the loop thread is real (as it is beside an executor job), so
    the poll sees the child exit long before its deadline instead of
    spinning through 300 virtual seconds at once."""

    async def main() -> tuple[int, float]:
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: real work of 0.3 s
            try:
                time.sleep(0.3)
            finally:
                os._exit(7)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status), time.monotonic() - started
            time.sleep(0.01)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise AssertionError("the child was still running at the poll's deadline")

    exit_code, waited = run_virtual(main)
    assert exit_code == 7
    assert 0.25 <= waited < 60
