"""The virtual loop answers as asyncio's own loop does where time plays no part.

Stock asyncio is the reference: errors, debug-mode diagnostics, the logger,
and a ``loop.time`` patched by a test decide what they decide in the stock
loop.  Each test runs on both of our loops (the exploring loop with no
schedule active must be the virtual loop exactly).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Callable, Iterator
from unittest import mock

import pytest

from pytest_asyncspec import VirtualClockLoop
from pytest_asyncspec.exploration.exploring_loop import ExploringLoop

LoopClass = Callable[[], asyncio.AbstractEventLoop]


@pytest.fixture(params=[VirtualClockLoop, ExploringLoop], ids=["virtual", "exploring"])
def new_loop(request: pytest.FixtureRequest) -> Iterator[LoopClass]:
    made: list[asyncio.AbstractEventLoop] = []

    def make() -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop = request.param()
        made.append(loop)
        return loop

    yield make
    for loop in made:
        loop.close()


# -- every positive sleep moves time; every finite sleep ends ---------------------


def test_a_blocking_sleep_under_half_a_tick_still_moves_time(new_loop: LoopClass) -> None:
    loop = new_loop()

    async def main() -> list[int]:
        seen = [time.monotonic_ns()]
        time.sleep(1e-12)
        seen.append(time.monotonic_ns())
        return seen

    before, after = loop.run_until_complete(main())
    assert after - before == 1


def test_a_blocking_deadline_loop_reaches_its_deadline(new_loop: LoopClass) -> None:
    loop = new_loop()

    async def main() -> int:
        deadline = time.monotonic() + 0.3 + 1e-16
        rounds = 0
        while time.monotonic() < deadline:
            time.sleep(deadline - time.monotonic())
            rounds += 1
            assert rounds < 10, "the deadline loop does not move time"
        return rounds

    assert loop.run_until_complete(main()) <= 2


@pytest.mark.parametrize("seconds", [5e9, 1e17, 1e300])
def test_a_finite_sleep_however_long_ends_at_its_time(new_loop: LoopClass, seconds: float) -> None:
    loop = new_loop()

    async def main() -> float:
        await asyncio.sleep(seconds)
        return loop.time()

    assert loop.run_until_complete(main()) == seconds


def test_an_infinite_timer_never_fires_and_a_finite_one_still_does(new_loop: LoopClass) -> None:
    loop = new_loop()
    fired: list[str] = []
    loop.call_at(float("inf"), fired.append, "never")

    async def main() -> None:
        await asyncio.sleep(7e9)
        fired.append("finite")

    loop.run_until_complete(main())
    assert fired == ["finite"]
    assert loop.time() == 7e9


# -- a patched loop.time decides which timers are due ------------------------------


def test_a_patched_loop_time_decides_which_timers_are_due(new_loop: LoopClass) -> None:
    """As in stock ``_run_once``: readiness is judged by ``self.time()``."""
    loop = new_loop()
    fired: list[str] = []

    async def main() -> None:
        loop.call_later(10, fired.append, "after 10 s")
        loop.call_later(100, fired.append, "after 100 s")
        with mock.patch.object(loop, "time", return_value=loop.time() + 50):
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        assert fired == ["after 10 s"], "a timer due by the patched time must fire"

    loop.run_until_complete(main())


def test_call_later_counts_from_a_patched_loop_time(new_loop: LoopClass) -> None:
    loop = new_loop()
    with mock.patch.object(loop, "time", return_value=1000.0):
        timer = loop.call_later(5, lambda: None)
    assert timer.when() == 1005.0
    timer.cancel()


# -- stock errors and diagnostics ---------------------------------------------------


def test_a_nested_run_raises_asyncios_own_error(new_loop: LoopClass) -> None:
    loop = new_loop()

    async def main() -> str:
        with pytest.raises(RuntimeError) as raised:
            loop.run_forever()
        return str(raised.value)

    assert loop.run_until_complete(main()) == "This event loop is already running"


def test_running_a_second_loop_inside_a_running_one_raises_asyncios_error(
    new_loop: LoopClass,
) -> None:
    outer, inner = new_loop(), new_loop()

    async def main() -> str:
        with pytest.raises(RuntimeError) as raised:
            inner.run_forever()
        return str(raised.value)

    message = outer.run_until_complete(main())
    assert message == "Cannot run the event loop while another loop is running"


def _callback() -> None:
    pass


@pytest.mark.parametrize("schedule", ["call_later", "call_at", "call_soon"])
def test_a_debug_source_traceback_ends_at_the_callers_line(
    new_loop: LoopClass, schedule: str
) -> None:
    loop = new_loop()
    loop.set_debug(True)
    method = getattr(loop, schedule)
    args = () if schedule == "call_soon" else (1.0,)
    handle = method(*args, _callback)  # this line must be the last entry
    last = handle._source_traceback[-1]
    handle.cancel()
    assert (last.filename, last.name) == (
        __file__,
        "test_a_debug_source_traceback_ends_at_the_callers_line",
    )


def test_the_slow_callback_warning_names_the_task_as_stock_does(
    new_loop: LoopClass, caplog: pytest.LogCaptureFixture
) -> None:
    loop = new_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05

    async def sluggish() -> None:
        time.sleep(0.1)  # blocks the loop for 0.1 s of virtual time

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(sluggish())
    warnings = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert len(warnings) == 1
    # Stock formats the handle with base_events._format_handle: the task, not
    # the bound method of its step.
    assert warnings[0].startswith("Executing <Task ")
    assert (
        "coro=<test_the_slow_callback_warning_names_the_task_as_stock_does.<locals>.sluggish()"
        in warnings[0]
    )
    assert warnings[0].endswith("took 0.100 seconds")


def test_the_loop_logs_through_asyncios_own_logger_object(new_loop: LoopClass) -> None:
    """A test that patches ``asyncio.base_events.logger`` sees our warnings."""
    loop = new_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05

    async def sluggish() -> None:
        time.sleep(0.1)

    with mock.patch("asyncio.base_events.logger") as patched:
        loop.run_until_complete(sluggish())
    assert patched.warning.called


@pytest.mark.parametrize("debug", [False, True], ids=["normal", "debug"])
@pytest.mark.parametrize("failing_last", [False, True], ids=["failing-first", "failing-last"])
def test_a_dropped_failed_task_is_reported_before_the_next_step(
    new_loop: LoopClass, debug: bool, failing_last: bool
) -> None:
    """CPython's test_task_exc_handler_correct_context: a task that failed and
    that nobody holds is freed at once (by reference counting), so "exception
    was never retrieved" reaches the handler before the awaiting task resumes.

    On 3.12+ the failed coroutine's frame keeps its callers' frames alive (its
    traceback holds it, and it links to them through f_back): a loop frame
    that still names the handle it ran keeps the task alive in a cycle.
    """
    loop = new_loop()
    loop.set_debug(debug)
    reported: list[str] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))

    async def fails() -> None:
        raise ZeroDivisionError

    async def main() -> list[str]:
        if failing_last:
            # The failing step is the last ready callback of its iteration.
            loop.call_soon(lambda: None)
            await asyncio.sleep(0)
        asyncio.ensure_future(fails())  # noqa: RUF006 (dropped on purpose)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return list(reported)

    gc.disable()  # reference counting alone, as the stock loop needs
    try:
        seen = loop.run_until_complete(main())
    finally:
        gc.enable()
    assert seen == ["Task exception was never retrieved"]


# -- a real interval timer the loop handles is an outside event ----------------------


def test_an_alarm_the_loop_handles_arrives_before_a_later_timer(new_loop: LoopClass) -> None:
    """CPython's test_signal_handling_args, on our loops: the SIGALRM armed
    with setitimer for 0.1 s real arrives before a 60 s timer stops the loop."""
    loop = new_loop()
    caught: list[tuple[object, ...]] = []

    def on_alarm(*args: object) -> None:
        caught.append(args)
        loop.stop()

    loop.add_signal_handler(signal.SIGALRM, on_alarm, 42)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1, 0)
        loop.call_later(60, loop.stop)
        loop.run_forever()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        loop.remove_signal_handler(signal.SIGALRM)
    assert caught == [(42,)]
    assert 0.05 < loop.time() < 30


def test_an_alarm_the_loop_does_not_handle_does_not_hold_time(new_loop: LoopClass) -> None:
    """pytest-timeout's SIGALRM (a handler of its own) must not slow a test."""
    loop = new_loop()
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    try:
        signal.setitimer(signal.ITIMER_REAL, 600, 0)
        real_start = time.perf_counter()
        loop.run_until_complete(asyncio.sleep(60))
        real_taken = time.perf_counter() - real_start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)
    assert loop.time() == 60
    assert real_taken < 10


def test_patching_loop_time_leaves_the_instance_dict_alone(new_loop: LoopClass) -> None:
    """The patch is noticed by a descriptor: the loop never reads (and so never
    materialises) its own ``__dict__`` on the hot path, and unpatching restores
    the virtual clock."""
    loop = new_loop()
    loop.run_until_complete(asyncio.sleep(5))
    with mock.patch.object(loop, "time", return_value=123.0):
        assert loop.time() == 123.0
    assert loop.time() == 5.0
    assert "time" not in vars(loop)


def test_a_subclass_with_its_own_time_sets_the_pace(new_loop: LoopClass) -> None:
    base = type(new_loop())

    class Offset(base):  # type: ignore[misc, valid-type]
        def time(self) -> float:
            return float(self.virtual_ticks() / 1e9 + 1000)

    loop = Offset()
    try:
        timer = loop.call_later(5, lambda: None)
        assert timer.when() == 1005.0
        timer.cancel()
    finally:
        loop.close()
