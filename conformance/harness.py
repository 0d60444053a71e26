"""Run test_asyncio modules with a loop class put in place of the stock one.

This module runs inside the interpreter under test, with only the standard
library and ``pytest_asyncspec`` importable (no pytest): the orchestrator
(``python -m conformance``) starts it once per module and loop, and reads the
JSON lines it writes.  Each test writes a ``start`` line before it runs and an
``end`` line after, so when a test hangs (the faulthandler watchdog ends the
process) or crashes the process, the orchestrator knows which one it was and
starts the module again without it.

The substitution: ``asyncio.SelectorEventLoop`` (and 3.13's
``asyncio.EventLoop``) and the default policy's loop factory become a thin
subclass of the loop under test that only counts ``run_forever`` calls, so
``asyncio.new_event_loop()``, ``asyncio.run()``, ``asyncio.Runner`` and
``IsolatedAsyncioTestCase`` all build it.  The stock run goes through the
same kind of subclass, so the three runs differ in the base class alone.  A
test "ran on the loop" when it ran such a loop at least once.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import importlib
import json
import os
import signal
import sys
import time
import traceback
import unittest
from typing import IO, Any

LOOPS = ("stock", "virtual", "exploring")
#: Characters of a failure's traceback kept in the results.
_DETAIL_LIMIT = 4000


class _RunCounter:
    runs = 0


def _base_loop(name: str) -> type[asyncio.AbstractEventLoop]:
    if name == "stock":
        return asyncio.SelectorEventLoop  # type: ignore[no-any-return]
    if name == "virtual":
        from pytest_asyncspec.clock.virtual_loop import VirtualClockLoop

        return VirtualClockLoop
    if name == "exploring":
        from pytest_asyncspec.exploration.exploring_loop import ExploringLoop

        return ExploringLoop
    if ":" in name:  # module:Class, for checking the runner with a broken loop
        module, _, attribute = name.partition(":")
        loaded: type[asyncio.AbstractEventLoop] = getattr(
            importlib.import_module(module), attribute
        )
        return loaded
    raise SystemExit(f"unknown loop {name!r}; expected one of {', '.join(LOOPS)} or module:Class")


def install(name: str) -> type[asyncio.AbstractEventLoop]:
    """Make every stock way of creating a selector loop build ``name``'s loop."""
    base: Any = _base_loop(name)

    class Substitute(base):  # type: ignore[misc]
        def run_forever(self) -> None:
            _RunCounter.runs += 1
            super().run_forever()

    # Tests that print a loop's repr see the class under test's own name.
    Substitute.__name__ = base.__name__
    Substitute.__qualname__ = base.__qualname__
    asyncio.SelectorEventLoop = Substitute  # type: ignore[misc]
    unix_events: Any = asyncio.unix_events
    unix_events.SelectorEventLoop = Substitute
    if hasattr(asyncio, "EventLoop"):  # 3.13+
        asyncio.EventLoop = Substitute  # type: ignore[misc]
        unix_events.EventLoop = Substitute
    unix_events.DefaultEventLoopPolicy._loop_factory = Substitute
    return Substitute


def _flatten(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    tests: list[unittest.TestCase] = []
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            tests.extend(_flatten(item))
        else:
            tests.append(item)
    return tests


class _JsonResult(unittest.TestResult):
    """Writes a start and an end line per test; one outcome per test."""

    def __init__(self, out: IO[str], hang_after: float) -> None:
        super().__init__()
        self._out = out
        self._hang_after = hang_after
        self._outcome = "pass"
        self._detail = ""
        self._runs_before = 0
        self._started = 0.0

    def _write(self, **fields: object) -> None:
        self._out.write(json.dumps(fields) + "\n")
        self._out.flush()

    def _fail(self, outcome: str, err: Any) -> None:
        # The first bad outcome of a test (a failed subtest, then a cleanup
        # error) is the one reported.
        if self._outcome in ("pass", "skip"):
            self._outcome = outcome
            text = err if isinstance(err, str) else "".join(traceback.format_exception(*err))
            self._detail = text[-_DETAIL_LIMIT:]

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        self._outcome, self._detail = "pass", ""
        self._runs_before = _RunCounter.runs
        self._started = time.perf_counter()
        self._write(event="start", id=test.id())
        # A hang ends the process with every thread's stack on stderr; the
        # orchestrator names the test and starts the module again without it.
        faulthandler.dump_traceback_later(self._hang_after, exit=True)

    def stopTest(self, test: unittest.TestCase) -> None:
        # Re-armed, not cancelled: class and module fixtures run between tests
        # and after the last one, and may hang too (waiting for a child).
        faulthandler.dump_traceback_later(self._hang_after, exit=True)
        super().stopTest(test)
        self._write(
            event="end",
            id=test.id(),
            outcome=self._outcome,
            ran_on_loop=_RunCounter.runs > self._runs_before,
            seconds=round(time.perf_counter() - self._started, 3),
            detail=self._detail,
        )

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        if isinstance(test, unittest.TestCase):
            self._fail("error", err)
        else:  # a class or module fixture failed: no start/stop for it
            self._write(
                event="end",
                id=str(test),
                outcome="error",
                ran_on_loop=False,
                seconds=0.0,
                detail="".join(traceback.format_exception(*err))[-_DETAIL_LIMIT:],
            )

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._fail("fail", err)

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._fail("fail" if failed else "error", err)

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        if self._outcome == "pass":
            self._outcome, self._detail = "skip", reason

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._fail("unexpected-success", "the test is marked as an expected failure")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", required=True, help=f"{', '.join(LOOPS)} or module:Class")
    parser.add_argument("--module", required=True, help="e.g. test_tasks")
    parser.add_argument("--only", default=None, help="a file of test ids to run (one a line)")
    parser.add_argument("--skip", default=None, help="a file of test ids not to run")
    parser.add_argument("--hang-after", type=float, default=60.0, help="real seconds per test")
    parser.add_argument("--out", required=True, help="the JSON lines file to append to")
    args = parser.parse_args(argv)

    # A shell that starts a command in the background (``cmd &``) without job
    # control ignores SIGINT in it, and the child inherits that: asyncio's
    # own KeyboardInterrupt tests (test_runners' test_interrupt_*) then wait
    # forever, on every loop.  Python's own handler, as in a foreground run.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    install(args.loop)
    name = f"test.test_asyncio.{args.module}"
    suite = unittest.defaultTestLoader.loadTestsFromName(name)
    tests = _flatten(suite)
    if args.only:
        with open(args.only, encoding="utf-8") as listing:
            wanted = set(listing.read().split())
        tests = [test for test in tests if test.id() in wanted]
    if args.skip:
        with open(args.skip, encoding="utf-8") as listing:
            skipped = set(listing.read().split())
        tests = [test for test in tests if test.id() not in skipped]
    with open(args.out, "a", encoding="utf-8") as out:
        result = _JsonResult(out, args.hang_after)
        unittest.TestSuite(tests).run(result)
        out.write(json.dumps({"event": "done"}) + "\n")
        out.flush()
    # Leave without joining what the tests left behind (a worker a test did
    # not shut down, a forked child): the results are written, and waiting
    # for leftovers at exit would only hang the run.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
