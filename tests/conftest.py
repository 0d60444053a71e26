"""Fixtures shared by the tests: running on a fresh virtual-clock loop, and
subprocess runs that import this checkout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

import pytest_asyncspec
from pytest_asyncspec import VirtualClockLoop
from pytest_asyncspec.clock import DEFAULT_DEADLOCK_GRACE

_T = TypeVar("_T")

#: Real seconds after which ``run_virtual`` gives up on a loop that hangs.
DEFAULT_WATCHDOG = 60.0


class RunVirtual(Protocol):
    """Runs ``main()`` on a fresh :class:`VirtualClockLoop` and returns its result."""

    def __call__(
        self,
        main: Callable[[], Coroutine[Any, Any, _T]],
        *,
        deadlock_grace: float = DEFAULT_DEADLOCK_GRACE,
        watchdog: float = DEFAULT_WATCHDOG,
        loop_class: type[VirtualClockLoop] = VirtualClockLoop,
    ) -> _T: ...


def _cancel_remaining_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    # return_exceptions retrieves every outcome, so nothing is logged as
    # "exception was never retrieved" when the loop is collected.
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def _cancel_from_watchdog(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()


def _run_virtual(
    main: Callable[[], Coroutine[Any, Any, _T]],
    *,
    deadlock_grace: float = DEFAULT_DEADLOCK_GRACE,
    watchdog: float = DEFAULT_WATCHDOG,
    loop_class: type[VirtualClockLoop] = VirtualClockLoop,
) -> _T:
    """Run ``main()`` on a new virtual-clock loop, then tear the loop down.

    ``loop_class`` may name a subclass (``ExploringLoop``, which runs in stock
    order until a schedule begins).

    The teardown mirrors ``asyncio.Runner.close`` (cancel what is left, close
    async generators, shut the default executor down, close) but works on
    Python 3.10, which has no ``asyncio.Runner``, and awaits the executor
    shutdown without a timeout (see
    ``test_clock_real_work.py::test_executor_shutdown_under_a_timeout_is_not_overtaken``
    for why a timeout there matters on the virtual clock).

    A watchdog thread cancels every task if the loop is still running after
    ``watchdog`` real seconds, so a hang fails the test with a clear message
    instead of waiting for pytest-timeout.
    """
    loop = loop_class(deadlock_grace=deadlock_grace)
    fired = threading.Event()

    def rescue() -> None:
        fired.set()
        # The loop may have finished (and closed) meanwhile; then there is
        # nothing left to rescue.
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_cancel_from_watchdog, loop)

    timer = threading.Timer(watchdog, rescue)
    timer.daemon = True
    timer.start()
    try:
        try:
            return loop.run_until_complete(main())
        except asyncio.CancelledError:
            if fired.is_set():
                raise AssertionError(
                    f"the virtual-clock loop was still running after {watchdog} s of "
                    "real time: it hung (tasks were cancelled by the test's watchdog)"
                ) from None
            raise
    finally:
        timer.cancel()
        timer.join()
        try:
            _cancel_remaining_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


@pytest.fixture
def run_virtual() -> RunVirtual:
    """A runner for coroutines on a fresh virtual-clock loop (Python 3.10+)."""
    return _run_virtual


@pytest.fixture
def worktree_pythonpath(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subprocess runs import this checkout of the plugin, not another install."""
    root = str(Path(pytest_asyncspec.__file__).resolve().parent.parent)
    existing = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", root if not existing else f"{root}{os.pathsep}{existing}")
