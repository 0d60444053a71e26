"""Threads that call back into the virtual loop: real work while runnable, idle while they wait.

A thread started from the loop's thread while the loop runs (a database
driver's worker, a one-shot helper) and every ThreadPoolExecutor job is real
work while it runs: the clock flows at real speed and is never overtaken.
While such a thread sits in an untimed wait that only the loop can end (a
``queue.Queue.get``, an ``Event.wait``, a ``Future.result``), sleeps jump as
usual, and if every task and every such thread waits, the deadlock is reported
with the threads listed.

Real threads throughout, no mocks. Virtual figures are asserted exactly where
the clock jumps; real durations with bounds that hold on a loaded machine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from pytest_asyncspec import DeadlockError
from pytest_asyncspec.clock import time_patch

if TYPE_CHECKING:
    from conftest import RunVirtual

#: Real seconds a query of the driver-like worker takes.
QUERY = 0.3
#: Every test here that is meant to jump finishes well within this (real s).
INSTANT = 10.0

#: A thread waiting in SimpleQueue.get (C code) is told idle by the kernel on
#: Linux, elsewhere from 3.13 only (see pytest_asyncspec/clock/threads.py).
SIMPLE_QUEUE_IDLE = pytest.mark.skipif(
    sys.platform != "linux" and sys.version_info < (3, 13),
    reason="SimpleQueue.get counts as busy before Python 3.13 off Linux",
)


# -- an aiosqlite-like driver ------------------------------------------------------


class Connection(threading.Thread):
    """aiosqlite's shape: a Thread subclass, fed by a queue, answering through
    ``call_soon_threadsafe``; ``time.sleep`` here is real (no virtual loop runs
    on this thread)."""

    def __init__(self, simple: bool = False) -> None:
        super().__init__(name="driver-worker", daemon=True)
        # aiosqlite 0.22 feeds its worker through a SimpleQueue (whose get is C
        # code), older versions through a queue.Queue.
        self._tx: queue.Queue[Any] | queue.SimpleQueue[Any] = (
            queue.SimpleQueue() if simple else queue.Queue()
        )

    def run(self) -> None:
        while True:
            item = self._tx.get()
            if item is None:
                return
            future, seconds, answer = item
            time.sleep(seconds)  # the blocking query
            future.get_loop().call_soon_threadsafe(_set_unless_done, future, answer)

    def execute(self, seconds: float, answer: str = "row") -> asyncio.Future[str]:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._tx.put((future, seconds, answer))
        return future

    def close(self) -> None:
        self._tx.put(None)
        self.join(timeout=10)  # the worker is idle or finishing: this is quick


def _set_unless_done(future: asyncio.Future[str], answer: str) -> None:
    if not future.done():
        future.set_result(answer)


def connect(simple: bool = False) -> Connection:
    connection = Connection(simple)
    connection.start()  # from the loop's thread, as aiosqlite's connect() does
    return connection


def _timed(run: Callable[[], Any]) -> tuple[Any, float]:
    started = time_patch.real_monotonic()
    result = run()
    return result, time_patch.real_monotonic() - started


# -- threads the test starts itself ------------------------------------------------


def test_a_driver_query_under_a_timeout_beside_a_timer_is_not_overtaken(
    run_virtual: RunVirtual,
) -> None:
    """A 0.3 s query under ``wait_for(..., 300)`` beside a pending 60 s timer
    returns its row: the clock flows at real speed while the worker runs (the loop
    thread's ``time.monotonic`` moves by about 0.3 s), the timer does not fire."""

    async def main() -> tuple[str, float, float, list[str]]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        far = loop.call_later(60, fired.append, "60 s timer")
        db = connect()
        try:
            started, mono = loop.time(), time.monotonic()
            row = await asyncio.wait_for(db.execute(QUERY), 300)
            elapsed, mono_elapsed = loop.time() - started, time.monotonic() - mono
        finally:
            db.close()
        far.cancel()
        return row, elapsed, mono_elapsed, fired

    row, elapsed, mono_elapsed, fired = run_virtual(main)

    assert row == "row"
    assert fired == []
    assert 0.25 <= elapsed < 60
    assert mono_elapsed == elapsed


def test_a_driver_query_with_no_timer_is_not_a_deadlock(run_virtual: RunVirtual) -> None:
    """A 1 s query (twice the deadlock grace) with no timer anywhere is waited for:
    the worker thread can call back, so this is no deadlock."""

    async def main() -> tuple[str, float]:
        db = connect()
        try:
            mono = time.monotonic()
            row = await db.execute(1.0)
            return row, time.monotonic() - mono
        finally:
            db.close()

    row, elapsed = run_virtual(main)

    assert row == "row"
    assert 0.8 <= elapsed < 60


@pytest.mark.parametrize(
    "simple", [False, pytest.param(True, marks=SIMPLE_QUEUE_IDLE)], ids=["Queue", "SimpleQueue"]
)
def test_sleeps_jump_beside_an_idle_driver_worker(run_virtual: RunVirtual, simple: bool) -> None:
    """Once the worker has answered and waits on its queue again, an hour's sleep
    is jumped over: exactly 3600 s of virtual time, in a few real seconds at most;
    queries before and after it are still real work."""

    async def main() -> tuple[list[str], float]:
        loop = asyncio.get_running_loop()
        db = connect(simple)
        try:
            rows = [await db.execute(0.05, "before")]
            started = loop.time()
            await asyncio.sleep(3600)
            slept = loop.time() - started
            rows.append(await asyncio.wait_for(db.execute(0.05, "after"), 5))
        finally:
            db.close()
        return rows, slept

    (rows, slept), took = _timed(lambda: run_virtual(main))

    assert rows == ["before", "after"]
    assert slept == 3600.0
    assert took < INSTANT


@pytest.mark.parametrize("simple", [False, True], ids=["Queue", "SimpleQueue"])
def test_many_short_queries_are_never_overtaken(run_virtual: RunVirtual, simple: bool) -> None:
    """Forty 10 ms queries, each under a 5 s timeout beside a 60 s timer: the
    loop puts the query on the queue and must not judge the worker idle while
    it is being woken (its frame still shows the queue wait)."""

    async def main() -> tuple[list[str], list[str]]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        far = loop.call_later(60, fired.append, "60 s timer")
        db = connect(simple)
        rows = []
        try:
            for n in range(40):
                rows.append(await asyncio.wait_for(db.execute(0.01, str(n)), 5))
                await asyncio.sleep(0.001)  # a jump between queries
        finally:
            db.close()
        far.cancel()
        return rows, fired

    rows, fired = run_virtual(main)

    assert rows == [str(n) for n in range(40)]
    assert fired == []


def test_a_one_shot_thread_is_real_work(run_virtual: RunVirtual) -> None:
    """A ``threading.Thread`` started in a coroutine does 0.3 s of real work and
    sets a future through ``call_soon_threadsafe``: awaited under a 300 s timeout
    beside a 60 s timer, the result arrives and about 0.3 s pass."""

    async def main() -> tuple[str, float, list[str]]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        far = loop.call_later(60, fired.append, "60 s timer")
        future: asyncio.Future[str] = loop.create_future()

        def work() -> None:
            time.sleep(QUERY)
            loop.call_soon_threadsafe(future.set_result, "done")

        thread = threading.Thread(target=work, name="one-shot")
        mono = time.monotonic()
        thread.start()
        result = await asyncio.wait_for(future, 300)
        elapsed = time.monotonic() - mono
        thread.join(timeout=10)
        far.cancel()
        return result, elapsed, fired

    result, elapsed, fired = run_virtual(main)

    assert result == "done"
    assert fired == []
    assert 0.25 <= elapsed < 60


def test_a_thread_started_by_a_watched_thread_is_watched_too(run_virtual: RunVirtual) -> None:
    """A helper thread hands the work to a thread of its own and ends at once; the
    grandchild's 1 s of real work is still waited for (no deadlock, no jump)."""

    async def main() -> tuple[str, float, list[str]]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        far = loop.call_later(60, fired.append, "60 s timer")
        future: asyncio.Future[str] = loop.create_future()

        def grandchild() -> None:
            time.sleep(QUERY)
            loop.call_soon_threadsafe(future.set_result, "from the grandchild")

        def child() -> None:
            threading.Thread(target=grandchild, name="grandchild").start()

        mono = time.monotonic()
        threading.Thread(target=child, name="child").start()
        result = await asyncio.wait_for(future, 300)
        far.cancel()
        return result, time.monotonic() - mono, fired

    result, elapsed, fired = run_virtual(main)

    assert result == "from the grandchild"
    assert fired == []
    assert 0.25 <= elapsed < 60


def test_a_thread_that_existed_before_the_loop_does_not_hold_time(
    run_virtual: RunVirtual,
) -> None:
    """A busy thread started before the loop runs (an xdist or pytest-timeout
    thread, say) is none of the loop's business: an hour's sleep stays instant."""
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            time_patch.real_sleep(0.001)

    bystander = threading.Thread(target=busy, name="bystander", daemon=True)
    bystander.start()

    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - started

    try:
        slept, took = _timed(lambda: run_virtual(main))
    finally:
        stop.set()
        bystander.join(timeout=10)

    assert slept == 3600.0
    assert took < INSTANT


# -- deadlocks with threads alive ------------------------------------------------


@pytest.mark.parametrize(
    "simple", [False, pytest.param(True, marks=SIMPLE_QUEUE_IDLE)], ids=["Queue", "SimpleQueue"]
)
def test_a_deadlock_beside_an_idle_worker_lists_the_worker(
    run_virtual: RunVirtual, simple: bool
) -> None:
    """A task awaits a future nobody completes while the driver worker waits on
    its queue: a real deadlock, reported within seconds, naming the worker, the
    queue wait it sits in and the line of its ``get``; it does not claim that no
    thread could call back."""

    async def main() -> None:
        db = connect(simple)
        try:
            await db.execute(0.01)
            await asyncio.get_running_loop().create_future()
        finally:
            db.close()

    started = time_patch.real_monotonic()
    with pytest.raises(DeadlockError) as excinfo:
        run_virtual(main, watchdog=10.0)
    assert time_patch.real_monotonic() - started < 5.0

    message = str(excinfo.value)
    assert "driver-worker" in message
    assert ("queue.SimpleQueue.get()" if simple else "queue.Queue.get()") in message
    assert f"{__file__}:" in message  # the worker's own frame: item = self._tx.get()
    assert "nothing can ever wake" not in message
    assert [thread.name for thread in excinfo.value.threads] == ["driver-worker"]


# -- executor jobs that wait on the loop (item 10) ---------------------------------


def test_an_executor_job_waiting_on_the_loop_lets_sleeps_jump(run_virtual: RunVirtual) -> None:
    """``to_thread(lambda: run_coroutine_threadsafe(coro, loop).result())`` where
    the coroutine sleeps an hour: the job's thread waits on a future only the loop
    completes, so the hour is jumped over (exactly 3600 s, in real seconds)."""

    async def main() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        slept: list[float] = []

        async def on_the_loop() -> str:
            started = loop.time()
            await asyncio.sleep(3600)
            slept.append(loop.time() - started)
            return "woke"

        result = await asyncio.to_thread(
            lambda: asyncio.run_coroutine_threadsafe(on_the_loop(), loop).result()
        )
        return result, slept[0]

    (result, slept), took = _timed(lambda: run_virtual(main))

    assert result == "woke"
    assert slept == 3600.0
    assert took < INSTANT


def test_a_timed_wait_in_a_job_is_real_time(run_virtual: RunVirtual) -> None:
    """``.result(timeout=...)`` in the job is a real-time deadline: the clock flows
    at real speed meanwhile (a jump could let the thread's timeout, counted in real
    seconds, disagree with the loop), so a 0.3 s sleep on the loop takes about 0.3
    real seconds and the job gets its result."""

    async def main() -> str:
        loop = asyncio.get_running_loop()

        async def on_the_loop() -> str:
            await asyncio.sleep(QUERY)
            return "in time"

        return await asyncio.to_thread(
            lambda: asyncio.run_coroutine_threadsafe(on_the_loop(), loop).result(timeout=30)
        )

    result, took = _timed(lambda: run_virtual(main))

    assert result == "in time"
    assert took >= 0.25


@pytest.mark.parametrize("made", ["on the loop", "before the loop"])
def test_a_user_executor_job_waiting_on_the_loop_lets_sleeps_jump(
    run_virtual: RunVirtual, made: str
) -> None:
    """The same through ``run_in_executor`` on a ThreadPoolExecutor of the test's
    own, whose job waits on an ``threading.Event`` the loop sets after an hour;
    whether the pool's thread was started by the loop or before it ran, the job
    is watched."""
    ready = threading.Event()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    if made == "before the loop":
        pool.submit(int).result()  # its worker thread starts here, outside the loop

    async def main() -> float:
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(pool, ready.wait)
        started = loop.time()
        await asyncio.sleep(3600)
        slept = loop.time() - started
        ready.set()
        assert await job is True
        return slept

    try:
        slept, took = _timed(lambda: run_virtual(main))
    finally:
        ready.set()
        pool.shutdown(wait=True)

    assert slept == 3600.0
    assert took < INSTANT


def test_an_executor_job_waiting_on_a_future_nobody_completes_is_a_deadlock(
    run_virtual: RunVirtual,
) -> None:
    """The job waits on a coroutine that awaits an Event nobody sets: every task
    and the job's thread wait on each other, which is reported as a deadlock (not
    a real-time wait until the watchdog) naming the thread and its wait."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        never = asyncio.Event()
        await asyncio.to_thread(
            lambda: asyncio.run_coroutine_threadsafe(never.wait(), loop).result()
        )

    started = time_patch.real_monotonic()
    with pytest.raises(DeadlockError) as excinfo:
        run_virtual(main, watchdog=8.0)
    assert time_patch.real_monotonic() - started < 5.0

    message = str(excinfo.value)
    assert "Future.result" in message
    assert "nothing can ever wake" not in message
    assert len(excinfo.value.threads) == 1


def test_a_thread_joining_a_waiting_thread_is_idle(run_virtual: RunVirtual) -> None:
    """A helper joins (no timeout) a thread that waits on a ``threading.Event`` the
    loop sets after an hour's sleep: both wait for the loop, so the hour is jumped
    over (``Thread.join`` waits in C on 3.13, in Python before)."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        release = threading.Event()
        waiter = threading.Thread(target=release.wait, name="waiter")
        joiner = threading.Thread(target=waiter.join, name="joiner")
        waiter.start()
        joiner.start()
        started = loop.time()
        await asyncio.sleep(3600)
        slept = loop.time() - started
        release.set()
        joiner.join(timeout=10)
        return slept

    slept, took = _timed(lambda: run_virtual(main))

    assert slept == 3600.0
    assert took < INSTANT


@SIMPLE_QUEUE_IDLE  # aiosqlite 0.22's worker waits in SimpleQueue.get
def test_real_aiosqlite_is_real_work_and_its_idle_worker_lets_sleeps_jump(
    run_virtual: RunVirtual, tmp_path: Any
) -> None:
    """aiosqlite itself: queries beside a pending 60 s timer and under a 30 s
    timeout are answered, and an hour's sleep beside the open (idle) connection
    takes exactly 3600 s of virtual time in a few real seconds."""
    aiosqlite = pytest.importorskip("aiosqlite")

    async def main() -> tuple[list[Any], float, list[str]]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        far = loop.call_later(60, fired.append, "60 s timer")
        async with aiosqlite.connect(tmp_path / "test.db") as db:
            await asyncio.wait_for(db.execute("create table t (n integer)"), 30)
            await asyncio.wait_for(db.executemany("insert into t values (?)", [(1,), (2,)]), 30)
            await db.commit()
            started = loop.time()
            await asyncio.sleep(3600)
            slept = loop.time() - started
            async with db.execute("select n from t order by n") as cursor:
                rows = list(await asyncio.wait_for(cursor.fetchall(), 30))
        far.cancel()
        return rows, slept, fired

    (rows, slept, fired), took = _timed(lambda: run_virtual(main))

    assert [tuple(row) for row in rows] == [(1,), (2,)]
    assert slept == 3600.0
    assert fired == ["60 s timer"]  # the hour's sleep passed it, as it should
    assert took < INSTANT


KERNEL_WAITS = pytest.mark.skipif(
    sys.platform != "linux", reason="a wait in C is told idle by the Linux kernel only"
)


@KERNEL_WAITS
def test_a_thread_blocked_on_a_raw_lock_the_loop_holds_lets_sleeps_jump(
    run_virtual: RunVirtual,
) -> None:
    """A raw ``Lock.acquire()`` (C code, no Python frame of its own) on a lock
    the loop holds: the thread can do nothing until the loop lets go, so an
    hour's sleep jumps; once released, its real work (0.3 s) holds time again
    and arrives under a 10 s timeout beside a 60 s timer."""

    async def main() -> tuple[float, str, float]:
        loop = asyncio.get_running_loop()
        gate = threading.Lock()
        gate.acquire()
        answer: asyncio.Future[str] = loop.create_future()

        def worker() -> None:
            with gate:
                time.sleep(0.3)  # real work, after the loop lets it in
            loop.call_soon_threadsafe(answer.set_result, "done")

        threading.Thread(target=worker, name="gated").start()
        started = loop.time()
        await asyncio.sleep(3600)
        slept = loop.time() - started
        pending = asyncio.ensure_future(asyncio.sleep(60))
        gate.release()
        started = loop.time()
        result = await asyncio.wait_for(answer, 10)
        pending.cancel()
        return slept, result, loop.time() - started

    (slept, result, worked), took = _timed(lambda: run_virtual(main))

    assert slept == 3600.0
    assert result == "done"
    assert 0.25 <= worked < 10
    assert took < INSTANT


def test_a_finished_thread_is_not_kept_alive_by_the_loop(run_virtual: RunVirtual) -> None:
    """Stock asyncio holds nothing of a thread that ended: CPython's
    threading_cleanup() (test.support) waits for "dangling" thread objects
    and finds none.  The loop watches the threads started while it runs, and
    must let go of one that finished and that nobody else holds."""

    async def main() -> bool:
        thread = threading.Thread(target=lambda: None, name="one-shot")
        thread.start()  # from the loop's thread: watched while it runs
        thread.join()
        witness = weakref.ref(thread)
        del thread
        await asyncio.sleep(0)
        return witness() is None

    assert run_virtual(main)


# -- jobs queued behind others on a pool's workers ------------------------------------

#: Real seconds each queued job sleeps on its worker.
JOB = 0.3


def _job_ends(submit: Callable[[asyncio.AbstractEventLoop], Any], count: int) -> Callable[[], Any]:
    """A ``main`` that submits ``count`` jobs at once (each a real ``time.sleep(JOB)``)
    and returns the loop time at which each one was seen done, in submission order."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        ends = [0.0] * count

        async def one(index: int) -> None:
            await submit(loop)
            ends[index] = loop.time() - started

        await asyncio.gather(*(one(index) for index in range(count)))
        return ends

    return main


def _slots(ends: list[float]) -> list[int]:
    """Which round of a pool's workers each job ran in (1 for the first jobs)."""
    return [round(end / JOB) for end in ends]


def _assert_seen_as_run(ends: list[float], slots: list[int]) -> None:
    # Never seen before the worker could have finished it (the slot's end),
    # and not a whole extra job later: a loaded machine adds milliseconds.
    for end, slot in zip(ends, slots, strict=True):
        assert slot * JOB <= end < (slot + 0.5) * JOB, (ends, slots)


@pytest.mark.parametrize(("workers", "slots"), [(1, [1, 2, 3]), (2, [1, 1, 2])])
def test_jobs_queued_on_a_busy_worker_start_when_the_one_before_ends(
    run_virtual: RunVirtual, workers: int, slots: list[int]
) -> None:
    """Three ``time.sleep(JOB)`` jobs handed at once to a pool of ``workers``: a job
    waiting in the pool's queue starts (in virtual time) when the one before it on
    its worker ends, as in real time on the stock loop: on one worker they are seen
    done at JOB, 2 JOB and 3 JOB, on two at JOB, JOB and 2 JOB, never earlier."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    main = _job_ends(lambda loop: loop.run_in_executor(pool, time.sleep, JOB), 3)
    try:
        ends = run_virtual(main)
    finally:
        pool.shutdown(wait=True)

    _assert_seen_as_run(ends, slots)


def _stock_default_workers() -> int:
    # ThreadPoolExecutor's own default, which asyncio's default executor keeps.
    count = getattr(os, "process_cpu_count", os.cpu_count)()
    return min(32, (count or 1) + 4)


@pytest.mark.parametrize("how", ["to_thread", "run_in_executor(None)", "set_default_executor"])
def test_the_default_executor_queues_jobs_as_on_the_stock_loop(
    run_virtual: RunVirtual, how: str
) -> None:
    """One job more than the default executor has workers, through
    ``asyncio.to_thread`` or ``run_in_executor(None, ...)``: on the stock loop all
    but the last end after JOB and the last after 2 JOB, and so on the virtual
    clock (same worker count, the queued job starts when a worker frees).  With a
    one-worker default executor set by the test, each job waits for the one before."""
    workers = 1 if how == "set_default_executor" else _stock_default_workers()
    count = workers + 1

    def submit(loop: asyncio.AbstractEventLoop) -> Any:
        if how == "to_thread":
            return asyncio.to_thread(time.sleep, JOB)
        return loop.run_in_executor(None, time.sleep, JOB)

    def on(run: Callable[[Callable[[], Any]], list[float]]) -> list[float]:
        main = _job_ends(submit, count)
        if how != "set_default_executor":
            return run(main)

        async def with_one_worker() -> list[float]:
            pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
            asyncio.get_running_loop().set_default_executor(pool)
            ends: list[float] = await main()
            return ends

        return run(with_one_worker)

    stock = on(lambda main: asyncio.run(main()))
    virtual = on(run_virtual)

    expected = list(range(1, count + 1)) if workers == 1 else [1] * workers + [2]
    assert _slots(stock) == expected, stock
    _assert_seen_as_run(virtual, expected)


def _sleep_job(*, seconds: float) -> None:
    time.sleep(seconds)


@pytest.mark.parametrize(("workers", "slots"), [(1, [1, 2, 3]), (2, [1, 1, 2])])
@pytest.mark.parametrize("made", ["before the loop", "on the loop"])
def test_jobs_awaited_through_wrap_future_are_seen_as_run(
    run_virtual: RunVirtual, workers: int, slots: list[int], made: str
) -> None:
    """``asyncio.wrap_future(pool.submit(fn, ...))`` instead of ``run_in_executor``:
    the same floor applies, so three ``time.sleep(JOB)`` jobs on one worker are seen
    done at JOB, 2 JOB and 3 JOB (on two workers at JOB, JOB and 2 JOB) as on the
    stock loop, never earlier, whether the pool was made before the loop ran (its
    workers unknown to it) or on it; keyword arguments reach the job."""
    pools: list[concurrent.futures.ThreadPoolExecutor] = []
    if made == "before the loop":
        pools.append(concurrent.futures.ThreadPoolExecutor(max_workers=workers))

    def submit(loop: asyncio.AbstractEventLoop) -> Any:
        if not pools:
            pools.append(concurrent.futures.ThreadPoolExecutor(max_workers=workers))
        return asyncio.wrap_future(pools[0].submit(_sleep_job, seconds=JOB))

    def on(run: Callable[[Callable[[], Any]], list[float]]) -> list[float]:
        try:
            return run(_job_ends(submit, 3))
        finally:
            pools.pop().shutdown(wait=True)
            if made == "before the loop":
                pools.append(concurrent.futures.ThreadPoolExecutor(max_workers=workers))

    stock = on(lambda main: asyncio.run(main()))
    virtual = on(run_virtual)
    for pool in pools:
        pool.shutdown(wait=True)

    assert _slots(stock) == slots, stock
    _assert_seen_as_run(virtual, slots)


def test_a_wrapped_pool_job_keeps_its_outcome(run_virtual: RunVirtual) -> None:
    """A job submitted from the loop is wrapped to be timed: its result, its
    exception and a cancellation before it starts come through unchanged."""

    def fail() -> None:
        raise ValueError("job failed")

    async def main() -> tuple[int, str, bool]:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            blocker = pool.submit(time.sleep, 0.05)
            queued = pool.submit(time.sleep, 10)
            assert queued.cancel()
            value = await asyncio.wrap_future(pool.submit(divmod, 7, 2))
            try:
                await asyncio.wrap_future(pool.submit(fail))
            except ValueError as error:
                message = str(error)
            await asyncio.wrap_future(blocker)
            return value[0], message, queued.cancelled()

    assert run_virtual(main) == (3, "job failed", True)
