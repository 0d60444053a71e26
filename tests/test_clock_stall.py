"""Virtual time that runs on while nothing progresses (pytest_asyncspec.clock.stall).

A deadlock beside a periodic task keeps a timer pending forever, so the loop
jumps from beat to beat instead of reporting it; the stall budget ends it
with a livelock report.  Long tests that progress, however much virtual time
they take, are left alone.  All timings here are virtual.
"""

from __future__ import annotations

import asyncio
import functools
import re
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pytest_asyncspec import DeadlockError, LivelockError, RunawayTimeError, VirtualClockLoop
from pytest_asyncspec.clock import DEFAULT_STALL_BUDGET, DEFAULT_TIME_BUDGET

if TYPE_CHECKING:
    from conftest import RunVirtual

_T = TypeVar("_T")


async def heartbeat(period: float = 1.0) -> None:
    while True:
        await asyncio.sleep(period)  # the heartbeat's beat


def _run_on(loop: VirtualClockLoop, main: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run ``main()`` on ``loop``, then cancel what is left and close it."""
    try:
        return loop.run_until_complete(main())
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()


def test_a_deadlock_beside_a_heartbeat_is_reported_as_a_livelock(run_virtual: RunVirtual) -> None:
    """An Event nobody sets beside ``while True: sleep(1)``: once the same task has
    waited on the same Event for the budget (1 h) while only the heartbeat's
    timer fired, a LivelockError lists both tasks with their await places and
    names the heartbeat's timer and how often it fired."""
    assert DEFAULT_STALL_BUDGET == 3600.0

    async def main() -> None:
        beating = asyncio.create_task(heartbeat(), name="heartbeat")
        await asyncio.Event().wait()
        await beating

    with pytest.raises(LivelockError) as excinfo:
        run_virtual(main, watchdog=30.0)

    error = excinfo.value
    assert isinstance(error, DeadlockError)  # the deadlock report, extended
    message = str(error)
    assert message.startswith("livelock at virtual time ")
    # First seen stalled at the first check (450 s), reported a budget later.
    assert error.at_seconds == 4050.0
    assert error.stalled_seconds == 3600.0
    beat = f"{__file__}:{heartbeat.__code__.co_firstlineno + 2} in heartbeat"
    assert f"the timer of task 'heartbeat' at {beat} fired 450 time(s) in the last 450 s" in message
    tasks = {task.name: task for task in error.tasks}
    assert tasks["heartbeat"].awaiting == "asyncio sleep(): a timer due at virtual time 4050 s"
    stuck = next(task for name, task in tasks.items() if name != "heartbeat")
    assert stuck.awaiting.startswith("asyncio Event.wait(): a future that nothing will complete")
    assert any(__file__ in place and place.endswith("main") for place in stuck.chain)


def test_a_livelock_is_reported_at_the_same_virtual_instant_on_every_run(
    run_virtual: RunVirtual,
) -> None:
    """The budget is judged at virtual instants only: two runs, one report time."""

    async def main() -> None:
        beating = [
            asyncio.create_task(heartbeat(period), name=f"beat-{period}") for period in (0.7, 3.0)
        ]
        queue: asyncio.Queue[int] = asyncio.Queue()
        await queue.get()
        await asyncio.gather(*beating)

    instants = []
    for _ in range(2):
        with pytest.raises(LivelockError) as excinfo:
            run_virtual(main, watchdog=30.0)
        instants.append(excinfo.value.at_seconds)
        assert "asyncio Queue.get()" in str(excinfo.value)
        assert "the timer of task 'beat-0.7'" in str(excinfo.value)
        assert "the timer of task 'beat-3.0'" in str(excinfo.value)
    assert instants[0] == instants[1]
    assert 3600 <= instants[0] <= 3600 + 2 * 450 + 3


def test_a_budget_of_two_hours_lets_a_one_and_a_half_hour_wait_end() -> None:
    """A task blocked for 1.5 h beside a heartbeat that then sets the Event:
    a livelock under the default budget, a pass under a budget of 2 h."""

    async def main() -> float:
        event = asyncio.Event()

        async def beat_then_set() -> None:
            for _ in range(5400):
                await asyncio.sleep(1)
            event.set()

        setter = asyncio.create_task(beat_then_set())
        await event.wait()
        await setter
        return asyncio.get_running_loop().time()

    with pytest.raises(LivelockError):
        _run_on(VirtualClockLoop(), main)
    assert _run_on(VirtualClockLoop(stall_budget=7200), main) == 5400.0
    assert _run_on(VirtualClockLoop(stall_budget=None), main) == 5400.0


def test_long_tests_that_progress_are_not_livelocks(run_virtual: RunVirtual) -> None:
    """1,000 sequential sleep(3600) (41.7 virtual days), workers gathered for 1,000 h,
    and a consumer fed every 30 min for 100 h: none stalls, however long."""

    async def sequential() -> None:
        for _ in range(1000):
            await asyncio.sleep(3600)

    async def worker() -> None:
        for _ in range(1000):
            await asyncio.sleep(3600)

    async def gathered() -> None:
        await asyncio.gather(*(worker() for _ in range(5)))

    async def fed_every_half_hour() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()

        async def producer() -> None:
            for n in range(200):
                await asyncio.sleep(1800)
                await queue.put(n)

        producing = asyncio.create_task(producer())
        for _ in range(200):
            await queue.get()
        await producing

    for main, hours in ((sequential, 1000), (gathered, 1000), (fed_every_half_hour, 100)):

        async def timed(main: Callable[[], Coroutine[Any, Any, None]] = main) -> float:
            await main()
            return asyncio.get_running_loop().time()

        assert run_virtual(timed, watchdog=60.0) == hours * 3600.0


def test_a_plain_deadlock_is_still_a_deadlock(run_virtual: RunVirtual) -> None:
    """With no timer pending the loop reports a DeadlockError, not a livelock."""

    async def main() -> None:
        await asyncio.Event().wait()

    with pytest.raises(DeadlockError) as excinfo:
        run_virtual(main, deadlock_grace=0.1, watchdog=5.0)
    assert not isinstance(excinfo.value, LivelockError)


def test_a_timeout_that_ends_a_deadlock_is_remembered() -> None:
    """wait_for on a task blocked on an Event nobody sets: when the timeout fires,
    every task waited on what only the timeout could end; the loop keeps that
    listing, at the timeout's virtual instant."""
    loop = VirtualClockLoop()

    async def main() -> None:
        async def consumer(event: asyncio.Event) -> None:
            await event.wait()

        task = asyncio.create_task(consumer(asyncio.Event()), name="consumer")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(task, 30)

    try:
        loop.run_until_complete(main())
        assert loop.hidden_deadlock is not None
        at, tasks, on_timers = loop.hidden_deadlock
    finally:
        loop.close()
    assert at == 30.0
    assert on_timers == []  # every task waited: a deadlock
    consumer = next(task for task in tasks if task.name == "consumer")
    assert consumer.awaiting.startswith("asyncio Event.wait()")
    main_task = next(task for task in tasks if task.name != "consumer")
    assert main_task.awaiting.endswith("a timer due at virtual time 30 s")


def test_a_timeout_beside_a_task_sleeping_toward_completion_is_no_deadlock() -> None:
    """Negative control: the awaited task sleeps toward its end (its timer would
    fire), so the timeout is legitimate and nothing is remembered."""
    loop = VirtualClockLoop()

    async def main() -> None:
        async def slow() -> None:
            await asyncio.sleep(60)

        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.create_task(slow()), 30)

    try:
        loop.run_until_complete(main())
        assert loop.hidden_deadlock is None
    finally:
        loop.close()


def _hidden_deadlock_of(main: Callable[[], Coroutine[Any, Any, None]]) -> Any:
    """Run ``main``, which must fail with a timeout; the loop's hidden_deadlock."""
    loop = VirtualClockLoop()
    try:
        with pytest.raises(asyncio.TimeoutError):
            loop.run_until_complete(main())
        return loop.hidden_deadlock
    finally:
        loop.close()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is 3.11+")
def test_an_asyncio_timeout_block_that_ends_a_deadlock_is_remembered() -> None:
    async def main() -> None:
        async with asyncio.timeout(30):
            await asyncio.Event().wait()

    at, tasks, on_timers = _hidden_deadlock_of(main)
    assert (at, on_timers) == (30.0, [])
    assert [task.awaiting for task in tasks] == [
        "asyncio Event.wait(): a timer due at virtual time 30 s"
    ]


def test_an_async_timeout_block_that_ends_a_deadlock_is_remembered() -> None:
    """async-timeout's ``timeout()`` (its own class before Python 3.11) cancels
    through ``_on_timeout`` as asyncio's does."""
    import async_timeout  # in the test extra

    async def main() -> None:
        async with async_timeout.timeout(30):
            await asyncio.Event().wait()

    at, tasks, on_timers = _hidden_deadlock_of(main)
    assert (at, on_timers) == (30.0, [])
    assert [task.awaiting for task in tasks] == [
        "asyncio Event.wait(): a timer due at virtual time 30 s"
    ]


def test_a_timeout_beside_a_heartbeat_remembers_the_blocked_wait() -> None:
    """The same deadlock as above with a heartbeat beside it: the heartbeat's
    timer is always pending, so "every timer is a timeout" never held; the
    wait the timeout ends is still one that no timer completes, and the loop
    keeps that moment's listing, naming the heartbeat as the task on timers."""

    async def main() -> None:
        beating = asyncio.create_task(heartbeat(), name="heartbeat")
        await asyncio.wait_for(asyncio.Event().wait(), 30)
        await beating

    loop = VirtualClockLoop()
    with pytest.raises(asyncio.TimeoutError):
        _run_on(loop, main)
    assert loop.hidden_deadlock is not None
    at, tasks, on_timers = loop.hidden_deadlock
    assert at == 30.0
    assert on_timers == ["heartbeat"]
    # The test's task, the heartbeat, and before Python 3.12 wait_for's inner task.
    waits = [task.awaiting for task in tasks if task.name != "heartbeat"]
    assert any(awaiting.startswith("asyncio Event.wait()") for awaiting in waits)


def test_a_timeout_over_a_task_that_awaits_a_sleeping_task_is_no_blocked_wait() -> None:
    """Negative control: the wait ends through a task that sleeps toward its end
    (wait_for's waiter released by the inner task, on every Python), so the
    timeout is a slow test, not a hidden deadlock."""

    async def main() -> None:
        async def slow() -> None:
            await asyncio.sleep(60)

        async def middle() -> None:
            await asyncio.create_task(slow(), name="slow")

        beating = asyncio.create_task(heartbeat(), name="heartbeat")
        await asyncio.wait_for(middle(), 30)
        await beating

    loop = VirtualClockLoop()
    with pytest.raises(asyncio.TimeoutError):
        _run_on(loop, main)
    assert loop.hidden_deadlock is None


async def _poll_forever() -> None:
    done = False
    while not done:
        await asyncio.sleep(1)  # the poll's line


def test_a_poll_that_never_ends_runs_out_of_time_budget(run_virtual: RunVirtual) -> None:
    """Nothing is blocked (the stall budget sees a task that keeps sleeping), yet
    the test can never end: past a day of virtual time, and with more than
    10,000 jumps behind it, the loop raises RunawayTimeError naming the poll's
    timer and the task at its line."""
    assert DEFAULT_TIME_BUDGET == 86400.0

    with pytest.raises(RunawayTimeError) as excinfo:
        run_virtual(_poll_forever, watchdog=60.0)

    error = excinfo.value
    assert isinstance(error, DeadlockError)
    assert error.budget_seconds == 86400.0
    # Judged at the first eighth-of-the-budget check past a day (24 h), then
    # the timers of the next 1,000 jumps are counted for the report.
    assert error.at_seconds == 86400.0 + 1000
    assert error.jumps == 86400 + 1000
    assert len(error.timers) == 1
    what, count = error.timers[0]
    line = _poll_forever.__code__.co_firstlineno + 3
    assert re.fullmatch(
        rf"the timer of task 'Task-\d+' at {re.escape(__file__)}:{line} in _poll_forever", what
    )
    assert count == 1000
    message = str(error)
    assert "virtual time ran away: the test has run 24.3 h (87400 s) of virtual time" in message
    assert "past its time budget of 24 h (86400 s)" in message
    assert re.search(r"task 'Task-\d+' \(_poll_forever\) awaits asyncio sleep\(\)", message)


def test_the_time_budget_spares_long_simulations_and_can_be_switched_off() -> None:
    """Few long jumps are no runaway (1,000 sleeps of an hour: 41.7 days in
    1,000 jumps); a 30-hour poll of one-second sleeps ends with the budget
    off or raised, and fails under the default."""

    async def poll_for_30_hours() -> float:
        loop = asyncio.get_running_loop()
        while loop.time() < 30 * 3600:
            await asyncio.sleep(1)
        return loop.time()

    async def hours_of_sleep() -> float:
        for _ in range(1000):
            await asyncio.sleep(3600)
        return asyncio.get_running_loop().time()

    assert _run_on(VirtualClockLoop(), hours_of_sleep) == 1000 * 3600.0
    assert _run_on(VirtualClockLoop(time_budget=None), poll_for_30_hours) == 30 * 3600.0
    assert _run_on(VirtualClockLoop(time_budget=31 * 3600), poll_for_30_hours) == 30 * 3600.0
    with pytest.raises(RunawayTimeError):
        _run_on(VirtualClockLoop(), poll_for_30_hours)


def test_the_time_budget_counts_from_its_restart() -> None:
    """A loop shared by tests: each restart gives the next test a whole budget."""
    loop = VirtualClockLoop(time_budget=3600.0)

    async def poll_for(hours: float) -> None:
        end = asyncio.get_running_loop().time() + hours * 3600
        while asyncio.get_running_loop().time() < end:
            await asyncio.sleep(0.25)

    try:
        for _ in range(3):
            loop.restart_time_budget(3600.0)
            loop.run_until_complete(poll_for(0.9))
        loop.restart_time_budget(3600.0)
        with pytest.raises(RunawayTimeError):
            loop.run_until_complete(poll_for(2))
    finally:
        loop.close()


def _complete_later_by_future(loop: asyncio.AbstractEventLoop) -> Coroutine[Any, Any, Any]:
    future = loop.create_future()
    loop.call_later(7200, future.set_result, None)
    return future  # type: ignore[return-value]


def _complete_later_by_event(loop: asyncio.AbstractEventLoop) -> Coroutine[Any, Any, Any]:
    event = asyncio.Event()
    loop.call_later(7200, event.set)
    return event.wait()


def _complete_later_by_lambda(loop: asyncio.AbstractEventLoop) -> Coroutine[Any, Any, Any]:
    event = asyncio.Event()
    loop.call_later(7200, lambda: event.set())
    return event.wait()


def _complete_later_by_queue(loop: asyncio.AbstractEventLoop) -> Coroutine[Any, Any, Any]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    loop.call_later(7200, functools.partial(queue.put_nowait, 1))
    return queue.get()


@pytest.mark.parametrize(
    "complete_later",
    [
        _complete_later_by_future,
        _complete_later_by_event,
        _complete_later_by_lambda,
        _complete_later_by_queue,
    ],
    ids=["future.set_result", "event.set", "lambda", "partial(queue.put_nowait)"],
)
def test_a_wait_a_timer_will_end_is_no_stall_beside_a_heartbeat(
    complete_later: Callable[[asyncio.AbstractEventLoop], Coroutine[Any, Any, Any]],
) -> None:
    """A timer two hours out completes what the test awaits, beside a heartbeat:
    the wait is not blocked (a timer will end it), whether the timer sets the
    future itself, calls an asyncio primitive's method, or runs code the rules
    cannot read (a lambda, which might set anything).  Before, each of these
    was reported as a livelock after an hour."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        beating = asyncio.create_task(heartbeat(), name="heartbeat")
        await complete_later(loop)
        beating.cancel()
        return loop.time()

    assert _run_on(VirtualClockLoop(), main) == 7200.0


def test_a_later_legitimate_timeout_forgets_an_earlier_hidden_deadlock() -> None:
    """A test that expects one timeout over a deadlock and then times out on a
    slow task: the report must not describe the first timeout's deadlock."""

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), 10)

        async def slow() -> None:
            await asyncio.sleep(60)

        await asyncio.wait_for(asyncio.create_task(slow()), 30)

    assert _hidden_deadlock_of(main) is None
