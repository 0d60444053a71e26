"""Helpers shared by the plain (non-pytester) tests of the virtual clock."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import warnings
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Protocol, TypeVar

import pytest

from pytest_asyncspec import DEFAULT_DEADLOCK_GRACE, VirtualClockLoop

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


@pytest.fixture(autouse=True)
def _keep_outer_event_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    """Give this thread's current event loop back after an in-process inner run.

    On a sync test, looptime's ``pytest_pyfunc_call`` asks the policy for the
    current loop, which creates and sets an idle one; the inner pytest-asyncio
    run then sets its own loop and finally ``None``, dropping that idle loop
    unclosed, and the ResourceWarning fails the outer session under
    ``filterwarnings = error``.  Putting the outer loop back leaves the thread
    as the test found it; nothing is closed here.
    """
    if "pytester" not in request.fixturenames:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        try:
            outer: asyncio.AbstractEventLoop | None = policy.get_event_loop()
        except RuntimeError:
            outer = None
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy.set_event_loop(outer)
