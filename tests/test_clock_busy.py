"""A loop that never idles: its clock follows the real time it spends busy, past a grace.

On asyncio's own loop, ``while not flag: await asyncio.sleep(0)`` under
``wait_for(..., 1)`` times out after a second of real time.  A virtual clock
that only jumps when the loop idles would never get there: the loop is never
idle, so the poll would spin forever.  While a timer is pending, the time the
loop spends busy beyond ``DEFAULT_BUSY_GRACE`` real seconds is charged to the
clock (never faster than real time), so such a loop times out, at most the
grace later than on the stock loop; shorter bursts keep exact virtual times.
The exploring loop measures a streak in picks during a schedule, so that its
schedules replay exactly.

Each test runs under a watchdog (``run_virtual``'s, or ``_explore``'s): a loop
that spins forever fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import pytest
from pytester_helpers import VIRTUAL_INI, output_of

from pytest_asyncspec import VirtualClockLoop
from pytest_asyncspec.clock import time_patch
from pytest_asyncspec.clock.virtual_loop import DEFAULT_BUSY_GRACE
from pytest_asyncspec.exploration import ExploringLoop
from pytest_asyncspec.exploration.exploring_loop import PICK_NS, Chooser
from pytest_asyncspec.exploration.strategies import FifoChooser, RandomChooser

if TYPE_CHECKING:
    from conftest import RunVirtual

#: Real seconds after which a loop that should have timed out counts as hung.
WATCHDOG = 20.0


def _spin(seconds: float) -> None:
    """Compute on the loop's thread for ``seconds`` of real time."""
    end = time_patch.real_monotonic() + seconds
    while time_patch.real_monotonic() < end:
        pass


# -- ways to keep a loop busy until a flag is set ------------------------------------


async def _sleep0_poll(done: Callable[[], bool]) -> None:
    while not done():
        await asyncio.sleep(0)


async def _call_soon_chain(done: Callable[[], bool]) -> None:
    # No task step at all between checks: a callback that schedules itself.
    loop = asyncio.get_running_loop()
    finished = loop.create_future()

    def again() -> None:
        if finished.done():
            return  # the awaiting task was cancelled
        if done():
            finished.set_result(None)
        else:
            loop.call_soon(again)

    loop.call_soon(again)
    try:
        await finished
    finally:
        finished.cancel()


async def _compute_between_awaits(done: Callable[[], bool]) -> None:
    while not done():
        _spin(0.002)
        await asyncio.sleep(0)


async def _several_tasks(done: Callable[[], bool]) -> None:
    await asyncio.gather(*(_sleep0_poll(done) for _ in range(3)))


BUSY = [_sleep0_poll, _call_soon_chain, _compute_between_awaits, _several_tasks]


def _never() -> bool:
    return False


# -- a busy loop reaches its pending timer -------------------------------------------


@pytest.mark.parametrize("busy", BUSY, ids=lambda f: f.__name__.strip("_"))
def test_a_busy_loop_times_out_as_on_the_stock_loop(
    run_virtual: RunVirtual, busy: Callable[[Callable[[], bool]], Awaitable[None]]
) -> None:
    """A poll that never succeeds under ``wait_for(..., 1)`` raises TimeoutError
    (the stock loop's outcome) instead of spinning forever: once the loop has been
    busy for the grace, the clock follows the real time it spends busy, and the
    timer fires at its own tick. All of the span is real time, so
    ``real_flow_ticks`` counts all of it."""

    async def main() -> tuple[bool, float, int, int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        started, flow = loop.virtual_ticks(), loop.real_flow_ticks()
        timed_out = False
        try:
            await asyncio.wait_for(busy(_never), 1)
        except asyncio.TimeoutError:
            timed_out = True
        moved = loop.virtual_ticks() - started
        return timed_out, moved / 1e9, moved, loop.real_flow_ticks() - flow

    timed_out, elapsed, moved, flowed = run_virtual(main, watchdog=WATCHDOG)

    assert timed_out
    assert 1.0 <= elapsed < 1.5
    assert flowed == moved


@pytest.mark.parametrize("busy", BUSY, ids=lambda f: f.__name__.strip("_"))
def test_a_busy_poll_sees_the_flag_a_timer_sets(
    run_virtual: RunVirtual, busy: Callable[[Callable[[], bool]], Awaitable[None]]
) -> None:
    """The poll's flag is set by ``call_later(1, ...)`` and by a task sleeping
    1 s: on the stock loop the poll ends after a second; here too, at 1 s of
    loop time (no later than the first iteration past it)."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        flags: list[str] = []

        async def sleeper() -> None:
            await asyncio.sleep(1)
            flags.append("task")

        loop.call_later(1, flags.append, "timer")
        task = asyncio.ensure_future(sleeper())
        await busy(lambda: len(flags) == 2)
        await task
        return loop.time() - started

    elapsed = run_virtual(main, watchdog=WATCHDOG)

    assert 1.0 <= elapsed < 1.5


@pytest.mark.skipif(not hasattr(asyncio, "timeout"), reason="asyncio.timeout is 3.11+")
def test_a_busy_poll_under_asyncio_timeout_times_out(run_virtual: RunVirtual) -> None:
    """``async with asyncio.timeout(1)`` around the poll: TimeoutError, as on the
    stock loop."""

    async def main() -> bool:
        try:
            async with asyncio.timeout(1):  # type: ignore[attr-defined,unused-ignore]
                await _sleep0_poll(_never)
        except TimeoutError:
            return True
        return False

    assert run_virtual(main, watchdog=WATCHDOG)


# -- what stays exact -----------------------------------------------------------------


def test_a_short_burst_with_a_timer_pending_keeps_exact_times(run_virtual: RunVirtual) -> None:
    """Thousands of ``sleep(0)`` steps and ``call_soon`` callbacks (milliseconds
    of real time, far under the grace) beside a pending 0.5 s sleep: the sleep
    ends at exactly 0.5 s and no real time was charged."""

    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        count = 0

        def counted() -> bool:
            nonlocal count
            count += 1
            return count >= 2_000

        async def burst() -> None:
            await _sleep0_poll(counted)
            await _call_soon_chain(lambda: counted() and count >= 4_000)

        await asyncio.gather(asyncio.sleep(0.5), burst())
        return loop.time(), loop.real_flow_ticks()

    assert run_virtual(main) == (0.5, 0)


def test_busy_time_with_no_timer_pending_is_charged_past_the_grace(
    run_virtual: RunVirtual,
) -> None:
    """Real compute of more than the grace, spread over ``sleep(0)`` steps, with
    no timer pending: as on the stock loop, where it takes real time, the clock
    moves by the part past the grace (never more than the real time it took), and
    it all counts as real flow; a 1 s sleep after it takes 1 s from when it was
    scheduled (the streak ends when the loop jumps to it)."""

    async def main() -> tuple[float, float, float, int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        real_start = time_patch.real_monotonic()
        end = real_start + DEFAULT_BUSY_GRACE + 0.1
        while time_patch.real_monotonic() < end:
            _spin(0.01)
            await asyncio.sleep(0)
        real = time_patch.real_monotonic() - real_start
        computed = loop.time()
        await asyncio.sleep(1)
        return real, computed, loop.time() - computed, loop.real_flow_ticks()

    real, computed, slept, flowed = run_virtual(main)

    assert 0 < computed <= real - DEFAULT_BUSY_GRACE + 0.01
    # Still following until the sleep is scheduled: microseconds more.
    assert 1.0 <= slept < 1.01
    assert abs(flowed - (computed + slept - 1.0) * 1e9) < 10


async def _poll_loop_time(seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        await asyncio.sleep(0)


async def _poll_monotonic(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0)


async def _poll_time(seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        await asyncio.sleep(0)


async def _wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    # The helper many test suites write: poll with sleep(0) up to a deadline.
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(0)
    return True


async def _poll_with_wait_until(seconds: float) -> None:
    assert not await _wait_until(_never, seconds)


CLOCK_POLLS = [_poll_loop_time, _poll_monotonic, _poll_time, _poll_with_wait_until]


@pytest.mark.parametrize("poll", CLOCK_POLLS, ids=lambda f: f.__name__.strip("_"))
def test_a_busy_poll_on_the_clock_with_no_timer_pending_ends(
    run_virtual: RunVirtual, poll: Callable[[float], Awaitable[None]]
) -> None:
    """A poll that reads the clock up to a deadline 1 s ahead, yielding with
    ``sleep(0)``, no timer pending: on the stock loop it ends after 1 s of real
    time; here the clock follows the busy time past the grace, so it ends after
    about 1.5 s, at a loop time of at least 1 s and never ahead of real time
    (the watchdog fails it if it spins)."""

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        real_start = time_patch.real_monotonic()
        await poll(1.0)
        return loop.time(), time_patch.real_monotonic() - real_start

    virtual, real = run_virtual(main, watchdog=WATCHDOG)

    assert 1.0 <= virtual <= real - DEFAULT_BUSY_GRACE + 0.01
    assert real < 1.0 + DEFAULT_BUSY_GRACE + 1.0


def test_a_timeout_set_during_a_streak_is_never_early(run_virtual: RunVirtual) -> None:
    """A busy streak with a far timer pending; 0.3 real s into it (before the
    grace) a 0.4 s ``wait_for`` starts, and the busy loop sets its event 0.3 real
    s later (past the grace).  On the stock loop 0.3 s < 0.4 s: no timeout.  Here
    only the time past the grace is charged, so the clock has moved about 0.1 s:
    no timeout either (charging the whole streak at the grace would have fired
    it), and the clock never ran ahead of real time."""

    async def main() -> tuple[bool, float, float]:
        loop = asyncio.get_running_loop()
        far = loop.call_later(3600, lambda: None)  # a timer is pending throughout
        real_start = time_patch.real_monotonic()
        started = loop.time()
        event = asyncio.Event()

        async def busy_until(seconds: float) -> None:
            end = real_start + seconds
            while time_patch.real_monotonic() < end:
                await asyncio.sleep(0)

        await busy_until(0.3)
        setter = asyncio.ensure_future(busy_until(0.6))
        setter.add_done_callback(lambda _: event.set())
        try:
            await asyncio.wait_for(event.wait(), 0.4)
            on_time = True
        except asyncio.TimeoutError:
            on_time = False
        far.cancel()
        virtual = loop.time() - started
        return on_time, virtual, time_patch.real_monotonic() - real_start

    on_time, virtual, real = run_virtual(main)

    assert on_time
    assert 0 < virtual <= real


def test_without_a_grace_compute_never_moves_the_clock(run_virtual: RunVirtual) -> None:
    """``VirtualClockLoop(busy_grace=None)``: fully deterministic, busy time is
    never charged (and a busy poll would never time out), so a busy stretch longer
    than the default grace beside a pending timer takes no virtual time."""

    class Strict(VirtualClockLoop):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, busy_grace=None, **kwargs)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        far = loop.call_later(3600, lambda: None)
        end = time_patch.real_monotonic() + DEFAULT_BUSY_GRACE + 0.1
        while time_patch.real_monotonic() < end:
            await asyncio.sleep(0)
        far.cancel()
        return loop.time()

    assert run_virtual(main, loop_class=Strict) == 0.0


# -- exploration: a streak is counted in picks -----------------------------------------

#: Busy grace of the exploring loops below: a thousand picks.
EXPLORE_GRACE = 0.001
EXPLORE_TIMEOUT = 0.002


def _explore(
    chooser: Chooser, main: Callable[[], Coroutine[Any, Any, float]]
) -> tuple[float, list[str]]:
    """Run ``main`` under one schedule of ``chooser`` on a fresh exploring loop
    (a busy grace of EXPLORE_GRACE); its result and the schedule's picks."""
    loop = ExploringLoop(busy_grace=EXPLORE_GRACE)

    def rescue() -> None:
        for task in asyncio.all_tasks(loop):
            loop.call_soon_threadsafe(task.cancel)

    watchdog = threading.Timer(WATCHDOG, rescue)
    watchdog.start()
    try:
        loop.begin_schedule(chooser)
        result = loop.run_until_complete(main())
        picks = list(loop.picks)
        loop.end_schedule()
        return result, picks
    finally:
        watchdog.cancel()
        loop.close()


def _poll_until_timeout(step_seconds: float) -> Callable[[], Coroutine[Any, Any, float]]:
    """Two tasks polling with ``sleep(0)`` (each step computing ``step_seconds``
    of real time) under ``wait_for(..., EXPLORE_TIMEOUT)``: the loop time at
    which it timed out."""

    async def poller() -> None:
        while True:
            _spin(step_seconds)
            await asyncio.sleep(0)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(asyncio.gather(poller(), poller()), EXPLORE_TIMEOUT)
        except asyncio.TimeoutError:
            return loop.time()
        raise AssertionError("the poll ended without a timeout")

    return main


@pytest.mark.parametrize(
    "make_chooser", [FifoChooser, lambda: RandomChooser(3)], ids=["fifo", "random"]
)
def test_an_explored_busy_poll_times_out_the_same_however_slow_its_steps(
    make_chooser: Callable[[], Chooser],
) -> None:
    """Under a schedule a busy streak is measured in picks (PICK_NS each), not
    real time: the busy poll times out, and a schedule run again with steps that
    compute 30 times longer (real time) makes the same picks and times out at the
    same loop time, so a failing schedule replays exactly."""
    fast, fast_picks = _explore(make_chooser(), _poll_until_timeout(0.0))
    slow, slow_picks = _explore(make_chooser(), _poll_until_timeout(0.00003))

    assert fast == slow >= EXPLORE_TIMEOUT
    assert fast_picks == slow_picks
    # The clock moved by the picks past the grace: about EXPLORE_TIMEOUT's worth.
    picks_for_timeout = (EXPLORE_GRACE + EXPLORE_TIMEOUT) * 1e9 / PICK_NS
    assert picks_for_timeout <= len(fast_picks) < 2 * picks_for_timeout


def test_a_real_blocking_sleep_in_a_streak_is_charged_once(run_virtual: RunVirtual) -> None:
    """Past the grace, with a job in flight (so ``time.sleep`` on the loop thread
    sleeps for real, rule 3), ``time.sleep(0.2)`` moves the clock by 0.2 s, as it
    always does: the busy streak does not charge the same real 0.2 s again."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        far = loop.call_later(3600, lambda: None)
        job = loop.run_in_executor(None, time_patch.real_sleep, 1.0)
        end = time_patch.real_monotonic() + DEFAULT_BUSY_GRACE + 0.1
        while time_patch.real_monotonic() < end:
            await asyncio.sleep(0)
        before = loop.time()
        time.sleep(0.2)
        moved = loop.time() - before
        await job
        far.cancel()
        return moved

    assert 0.2 <= run_virtual(main) < 0.3


# -- under the plugin ------------------------------------------------------------------

BUSY_SUITE = """
import asyncio

import pytest


async def poll():
    while True:
        await asyncio.sleep(0)


async def test_a_busy_poll_times_out():
    loop = asyncio.get_running_loop()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(poll(), 1)
    assert loop.time() >= 1


@pytest.mark.asyncspec(schedules=3)
async def test_an_explored_busy_poll_times_out():
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(poll(), 0.01)
"""


def test_a_busy_poll_times_out_under_the_plugin(pytester: pytest.Pytester) -> None:
    """With ``asyncspec_clock = virtual``, the loop pytest-asyncio runs a test on
    (the exploring loop, traced) times the poll out, in a plain run and in
    explored schedules alike.  A subprocess with a timeout keeps a hang bounded."""
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(test_busy=BUSY_SUITE)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)

    assert result.ret == 0, output_of(result)
    result.assert_outcomes(passed=2)
