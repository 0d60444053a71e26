"""A selector event loop whose clock is virtual.

Semantics (see ``docs/concepts/virtual-time.md``):

* time is counted in integer ticks (nanoseconds) starting at 0 per loop;
* when nothing is runnable the clock jumps straight to the next timer, unless
  real work is in flight (an executor job, a socket whose peer is outside
  this loop, a subprocess): then it advances by the real time the loop spends
  waiting for the outside (never by its own compute), stopping exactly at the
  next due timer, so a real event is never overtaken by a jump (no false
  timeouts);
* a blocking ``time.sleep(d)`` on the loop's thread moves the clock by ``d``:
  at once when nothing real is in flight, after a real sleep of ``d`` when
  something is (the outside world gets its ``d`` too); on any other thread it
  stays real;
* timers due at the same instant fire in the order they were scheduled;
* a loop that never idles (a busy poll on ``sleep(0)``, under a timeout or
  reading the clock up to a deadline) is charged the real time it spends
  busy beyond a grace, so its timers fire and its deadlines pass as on
  asyncio's own loop instead of never;
* threads started while the loop runs, and thread-pool jobs, are real work
  while they run and do not hold the clock while they wait, untimed, for the
  loop itself (see :mod:`pytest_asyncspec.clock.threads`);
* a deadlock (tasks pending, nothing runnable, no timer, nothing in flight)
  raises :class:`DeadlockError` naming each waiting task, and each thread
  that waits for the loop, after a short real grace period, instead of hanging;
* on a *manual* clock (``manual=True``) time moves only while a test awaits
  :meth:`~VirtualClockLoop.run_for` (``asyncspec_clock.advance``) and by
  blocking sleeps on the loop's thread: an idle loop never jumps by itself,
  and tasks that wait for timers only an advance would fire are a deadlock
  that says so.

Nothing here imports pytest: ``asyncio.Runner(loop_factory=VirtualClockLoop)``
or ``asyncio.run(main(), loop_factory=VirtualClockLoop)`` (3.12+) work alone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import heapq
import itertools
import selectors
import signal
import sys
import threading
import weakref
from asyncio import base_events
from collections.abc import Callable
from contextvars import Context
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from ..introspection import PACKAGE_DIR
from . import procfs, threads, time_patch
from .inflight import FdKind, PeerTrackingLoop
from .threads import ThreadState
from .ticks import NEVER, TICKS_PER_SECOND, seconds_to_ticks, ticks_to_seconds
from .waiting import WaitingTask, waiting_tasks

if TYPE_CHECKING:
    from .stall import HiddenDeadlock

_T = TypeVar("_T")

#: asyncio's own cap on one selector wait (``MAXIMUM_SELECT_TIMEOUT``): a
#: wait for a timer far ahead (``sleep(1e9)``) would overflow the selector.
_MAX_POLL_TICKS = 24 * 3600 * TICKS_PER_SECOND

# Same housekeeping thresholds as asyncio's own loop: rebuild the heap when
# more than half of a large heap is cancelled timers.
_MIN_TIMERS_FOR_CLEANUP = 100
_MAX_CANCELLED_FRACTION = 0.5

#: Real seconds a loop with pending tasks and nothing else waits for a
#: thread to call back before it reports a deadlock.
DEFAULT_DEADLOCK_GRACE = 0.5
#: Real seconds the loop may stay busy (never idle) before its
#: clock follows the real time it spends busy (see _follow_busy_time).
DEFAULT_BUSY_GRACE = 0.5
#: Default virtual seconds tasks may stay blocked while only timers fire
#: (see pytest_asyncspec.clock.stall).
DEFAULT_STALL_BUDGET = 3600.0
#: Default virtual seconds a test may run before a runaway is judged (see
#: pytest_asyncspec.clock.stall): a day.
DEFAULT_TIME_BUDGET = 86400.0
#: Names of timeout timers' callbacks: asyncio's Timeout (3.11+) and
#: async-timeout's call ``_on_timeout``; ``wait_for`` before 3.12 calls
#: ``_release_waiter``.
TIMEOUT_CALLBACKS = frozenset({"_on_timeout", "_release_waiter"})
#: The busy grace of a loop whose busy time is never charged (``busy_grace=None``).
_NEVER_CHARGED = 1 << 80


class DeadlockError(RuntimeError):
    """Every task waits, no timer is set and nothing outside can wake them."""

    def __init__(
        self,
        at_seconds: float,
        tasks: list[WaitingTask],
        threads: list[ThreadState] | None = None,
        manual_timers: tuple[int, float] | None = None,
    ) -> None:
        self.at_seconds = at_seconds
        self.tasks = tasks
        #: Threads that could call back into the loop, each waiting for it.
        self.threads = list(threads or ())
        #: On a manual clock: how many timers are set, and when the next one
        #: is due (virtual seconds); None when none is, or time is not manual.
        self.manual_timers = manual_timers
        listing = "\n".join(task.describe() for task in tasks)
        if manual_timers is not None:
            count, next_due = manual_timers
            timers = "1 timer is" if count == 1 else f"{count} timers are"
            cause = (
                f"waiting for advance(): time is manual, and {timers} set, the next due at "
                f"{next_due:g} s ({next_due - at_seconds:g} s from now), but only "
                "`await asyncspec_clock.advance(seconds)` moves a manual clock (or a "
                "blocking time.sleep on the loop's thread), and no task is left to call it."
            )
            if self.threads:
                listing += "\n" + "\n".join(thread.describe() for thread in self.threads)
            super().__init__(
                f"deadlock at virtual time {at_seconds:g} s: {len(tasks)} task(s) wait, "
                f"{cause}\n"
                f"{listing}\n"
                "Advance the clock from the test before awaiting what the timers lead to "
                "(start the work as a task, then `await asyncspec_clock.advance(...)`), "
                "or run the test on the virtual clock, where time jumps by itself."
            )
            return
        if self.threads:
            cause = (
                "no timer is scheduled, no I/O is in flight, and the "
                f"{len(self.threads)} thread(s) that could call back all wait for the "
                "loop in turn, so none of them will wake them."
            )
            listing += "\n" + "\n".join(thread.describe() for thread in self.threads)
        else:
            cause = (
                "no timer is scheduled, and no I/O or executor job is in flight, "
                "so nothing can ever wake them."
            )
        super().__init__(
            f"deadlock at virtual time {at_seconds:g} s: {len(tasks)} task(s) wait, "
            f"{cause}\n"
            f"{listing}\n"
            "Look for an Event/Future/Queue that is never set or fed, or a task "
            "awaiting itself through another task."
        )


class _JobTiming:
    """When an executor job was submitted, which worker ran it, and for how long."""

    __slots__ = (
        "duration",
        "ended_ns",
        "flow_at_submit",
        "submitted_ns",
        "ticks_at_submit",
        "worker",
    )

    def __init__(self, ticks: int, flow: int, submitted_ns: int) -> None:
        self.ticks_at_submit = ticks
        self.flow_at_submit = flow
        self.submitted_ns = submitted_ns
        #: Real ns the job ran (set on the thread that ran or finished it).
        self.duration: int | None = None
        #: The thread-pool worker that ran it, and the real ns it ended at
        #: (None for other executors, whose workers cannot be told apart).
        self.worker: threading.Thread | None = None
        self.ended_ns = 0


def _run_timed(timing: _JobTiming, func: Callable[..., _T], *args: Any) -> _T:
    # Runs on the executor's worker thread: measures the job's own real time,
    # and notes the worker, which a job queued behind this one waits for.
    timing.worker = threading.current_thread()
    start = time_patch.real_monotonic_ns()
    try:
        return func(*args)
    finally:
        timing.ended_ns = time_patch.real_monotonic_ns()
        timing.duration = timing.ended_ns - start


def _cancel_job(job: concurrent.futures.Future[Any], future: asyncio.Future[Any]) -> None:
    # As asyncio.wrap_future does: cancelling the awaited future cancels a
    # job that has not started.
    if future.cancelled():
        job.cancel()


def _deliver_job(job: concurrent.futures.Future[Any], future: asyncio.Future[Any]) -> None:
    # asyncio's own copy (the one wrap_future uses): result, exception or
    # cancellation, nothing if the awaited future was cancelled meanwhile.
    asyncio.futures._copy_future_state(job, future)  # type: ignore[attr-defined]


def _chained_set_state() -> CodeType | None:
    """The code of the callback through which ``asyncio.wrap_future`` hands a
    ``concurrent.futures.Future``'s outcome to its loop (a closure of
    ``asyncio.futures._chain_future``: ``call_soon_threadsafe(_set_state,
    destination, source)``)."""
    chain = getattr(asyncio.futures, "_chain_future", None)
    consts = chain.__code__.co_consts if chain is not None else ()
    return next(
        (c for c in consts if isinstance(c, CodeType) and c.co_name == "_set_state"),
        None,
    )


_CHAINED_SET_STATE = _chained_set_state()


class _LoopTime:
    """``loop.time``: this loop's virtual clock, unless a test replaced it.

    A test may patch it on one loop (``mock.patch.object(loop, "time", ...)``,
    to drive a rate limiter by hand), and asyncio's own loop then schedules
    and fires timers by the patched clock.  A data descriptor notices the
    patch without the loop ever reading its instance ``__dict__``: reading it
    would turn the instance's attribute storage into a plain dict and slow
    every attribute access of the loop (a tenth more instructions per task
    step on 3.11).
    """

    def __get__(self, loop: VirtualClockLoop | None, owner: type | None = None) -> Any:
        if loop is None:
            return self
        patched = loop._patched_time
        return loop._virtual_time if patched is None else patched

    def __set__(self, loop: VirtualClockLoop, value: Callable[[], float]) -> None:
        loop._patched_time = value

    def __delete__(self, loop: VirtualClockLoop) -> None:
        loop._patched_time = None


class VirtualClockLoop(PeerTrackingLoop):
    """An asyncio loop on virtual time; a drop-in ``loop_factory``."""

    __slots__ = (
        "_busy_clock",
        "_busy_grace",
        "_busy_limit",
        "_children",
        "_deadlock_grace",
        "_epoch",
        "_following",
        "_foreign_time",
        "_forked",
        "_held",
        "_jobs_in_flight",
        "_jumps",
        "_manual",
        "_patched_time",
        "_pool_jobs",
        "_real_debt",
        "_real_flow",
        "_run_for",
        "_spawning",
        "_stall_check",
        "_stall_watch",
        "_threads",
        "_ticks",
        "_timer_heap",
        "_timer_seq",
        "_worker_free",
        "hidden_deadlock",
        "on_blocking_sleep",
    )

    def __init__(
        self,
        selector: selectors.BaseSelector | None = None,
        *,
        deadlock_grace: float = DEFAULT_DEADLOCK_GRACE,
        busy_grace: float | None = DEFAULT_BUSY_GRACE,
        stall_budget: float | None = DEFAULT_STALL_BUDGET,
        time_budget: float | None = DEFAULT_TIME_BUDGET,
        manual: bool = False,
    ) -> None:
        #: Time moves only by run_for() and blocking sleeps (see run_for);
        #: the loop's compute never moves it, so busy time is never charged.
        self._manual = manual
        #: The run_for() in progress: (the tick it ends at, its future).
        self._run_for: tuple[int, asyncio.Future[None]] | None = None
        if manual:
            busy_grace = None
        #: A replacement of ``time`` set on this loop (see _LoopTime), and
        #: whether a subclass defines its own ``time``.
        self._patched_time: Callable[[], float] | None = None
        defines_time = next(cls for cls in type(self).__mro__ if "time" in vars(cls))
        self._foreign_time = defines_time is not VirtualClockLoop
        super().__init__(selector)
        self._ticks = 0
        self._epoch = time_patch.real_time_ns()
        # (due tick, scheduling sequence, handle): the sequence number makes
        # timers due at the same tick fire in the order they were scheduled.
        self._timer_heap: list[tuple[int, int, asyncio.TimerHandle]] = []
        self._timer_seq = itertools.count()
        self._jobs_in_flight = 0
        #: Jobs the loop's thread submitted to a thread pool itself
        #: (``pool.submit``, see submit_to_pool) -> their timing.
        self._pool_jobs: weakref.WeakKeyDictionary[concurrent.futures.Future[Any], _JobTiming] = (
            weakref.WeakKeyDictionary()
        )
        #: Each thread-pool worker -> (real ns its last job ended, tick at
        #: which the loop sees that job done): where a job queued behind it
        #: starts.
        self._worker_free: weakref.WeakKeyDictionary[threading.Thread, tuple[int, int]] = (
            weakref.WeakKeyDictionary()
        )
        #: Ready callbacks a subclass holds outside ``_ready`` (the exploring
        #: loop's pool): while any are held, time must not jump.
        self._held = 0
        self._children: weakref.WeakSet[Any] = weakref.WeakSet()
        #: Subprocesses being spawned (no transport to ask yet).
        self._spawning = 0
        #: Pids of children forked by hand (os.fork) from the loop's thread.
        self._forked: set[int] = set()
        self._deadlock_grace = deadlock_grace
        #: The busy streak (see _follow_busy_time): what it is measured in
        #: (real ns; the exploring loop counts picks during a schedule), its
        #: grace (_NEVER_CHARGED for busy_grace=None: compute never moves the
        #: clock, and a busy poll never times out), the reading past which it
        #: is charged, and whether the clock follows it on every reading.
        self._busy_clock: Callable[[], int] = time_patch.real_monotonic_ns
        self._busy_grace = _NEVER_CHARGED if busy_grace is None else seconds_to_ticks(busy_grace)
        self._busy_limit = _NEVER_CHARGED  # until the loop runs
        self._following = False
        #: Ticks of real time charged to the clock so far (real_flow_ticks()).
        self._real_flow = 0
        #: Real ns waited for the outside but not yet charged, because a
        #: timer came due first (the clock stopped at its exact tick) or a
        #: real blocking sleep overslept.  Charged by the next real-time wait
        #: while work is still in flight; dropped when nothing is.
        self._real_debt = 0
        #: Threads and thread-pool jobs that may call back into this loop.
        self._threads = threads.ThreadWatch()
        #: Called as ``on_blocking_sleep(seconds, caller_frame)`` for every
        #: blocking ``time.sleep`` on the loop thread (blocking detection).
        self.on_blocking_sleep: Callable[[float, FrameType], None] | None = None
        # Imported here: the stall rules build on DeadlockError, defined above.
        from .stall import StallWatch

        #: How many times the clock jumped to a timer (the time budget's
        #: measure of a runaway, see pytest_asyncspec.clock.stall).
        self._jumps = 0
        #: The stall and time budgets (see pytest_asyncspec.clock.stall), judged
        #: when a jump reaches _stall_check.
        self._stall_watch = StallWatch(stall_budget, time_budget)
        self._stall_check = self._stall_watch.next_check
        #: The last blocked wait a timeout ended (see stall.timeout_ends_wait).
        self.hidden_deadlock: HiddenDeadlock | None = None

    # -- the clock ---------------------------------------------------------

    time = _LoopTime()

    def _virtual_time(self) -> float:
        if self._following:
            self._follow_busy_time_here()
        return self._ticks / TICKS_PER_SECOND

    def virtual_ticks(self) -> int:
        """Ticks (ns) elapsed on this loop's clock since it was created."""
        if self._following:
            self._follow_busy_time_here()
        return self._ticks

    def epoch_ns(self) -> int:
        """Wall-clock ns since the Unix epoch that ``time.time()`` shows at tick 0."""
        return self._epoch

    def real_flow_ticks(self) -> int:
        """Ticks of real time charged to this clock so far (it only grows).

        The clock moves by real time only while real work is in flight (an
        executor job, a subprocess, a socket whose peer is outside the loop);
        every such tick is counted here, so the difference between two
        readings is how much of a span was real rather than exact virtual time.
        """
        return self._real_flow

    def block_for(self, seconds: float) -> None:
        """A blocking sleep on the loop thread: time passes, nothing else runs.

        With real work in flight the sleep is real, as on asyncio's own loop:
        a job that finishes during ``time.sleep(d)`` is seen finished at the
        virtual ``d``, not ``d`` later.  The clock moves by exactly ``d``
        either way; a real oversleep is owed to later real waits.
        """
        ticks = seconds_to_ticks(seconds)
        if ticks <= 0 < seconds:
            # As for call_later: rounded to nothing, a positive sleep in a
            # deadline loop (sleep(deadline - now)) would never end it.
            ticks = 1
        if ticks > 0 and self._real_work_in_flight():
            start = time_patch.real_monotonic_ns()
            busy_before = self._busy_clock()
            time_patch.real_sleep(seconds)
            self._real_debt += max(0, time_patch.real_monotonic_ns() - start - ticks)
            # The sleep moves the clock by itself: a busy streak must not
            # charge its real time a second time.
            self._busy_limit += self._busy_clock() - busy_before
        self._ticks += ticks
        listener = self.on_blocking_sleep
        if listener is not None:
            # Frame 0 is this method, 1 the patched time.sleep, 2 its caller.
            listener(seconds, sys._getframe(2))

    @property
    def stall_budget(self) -> float | None:
        """Virtual seconds tasks may stay blocked while only timers fire (None: off)."""
        return self._stall_watch.budget_seconds

    def restart_stall_budget(self, seconds: float | None) -> None:
        """A test (or schedule) begins: the stall budget is ``seconds`` of
        virtual time from now (None: off), and no deadlock a timeout ended
        is remembered."""
        self._stall_check = self._stall_watch.restart(seconds, self._ticks)
        self.hidden_deadlock = None

    def restart_budgets(self) -> None:
        """A schedule begins: the stall and time budgets, unchanged, count
        from now, and no deadlock a timeout ended is remembered."""
        self._stall_check = self._stall_watch.restart_both(self._ticks, self._jumps)
        self.hidden_deadlock = None

    @property
    def time_budget(self) -> float | None:
        """Virtual seconds a test may run before a runaway is judged (None: off)."""
        return self._stall_watch.time_budget_seconds

    def restart_time_budget(self, seconds: float | None) -> None:
        """A test (or schedule) begins: the time budget is ``seconds`` of
        virtual time from now (None: off)."""
        self._stall_check = self._stall_watch.restart_time(seconds, self._ticks, self._jumps)

    def advance(self, seconds: float) -> None:
        """Move the clock forward by hand (timers that become due run next)."""
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards (asked for {seconds} s)")
        self._ticks += seconds_to_ticks(seconds)

    @property
    def manual(self) -> bool:
        """Whether time moves only by :meth:`run_for` and blocking sleeps."""
        return self._manual

    def run_for(self, seconds: float) -> asyncio.Future[None]:
        """A future done once everything due in the next ``seconds`` has run.

        The loop runs as the virtual clock always does -- jumping from timer
        to timer while it idles, flowing in real time while real work is in
        flight -- up to now + ``seconds``, and stops there: the future is done
        when the clock has reached that instant and the loop has nothing left
        to run at or before it (what it runs next is the awaiting task).  On
        a manual clock this is the only way time moves, apart from blocking
        sleeps on the loop's thread; on the virtual clock it is a sleep that
        lets everything due at its end run first.  One at a time per loop.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(
                f"advance() takes a number of seconds (an int or a float), got "
                f"{type(seconds).__name__} {seconds!r}"
            )
        if not seconds >= 0 or seconds == float("inf"):
            raise ValueError(
                f"advance() moves the clock forward by a finite number of seconds "
                f"(0 or more), got {seconds!r}"
            )
        running = self._run_for
        if running is not None and not running[1].done():
            raise RuntimeError(
                "advance() is already running on this loop (another task awaits it): "
                "await one advance at a time, or await that one first"
            )
        ticks = seconds_to_ticks(seconds)
        if ticks <= 0 < seconds:
            ticks = 1  # as for call_later: a positive wait takes at least a tick
        future: asyncio.Future[None] = self.create_future()
        self._run_for = (self.virtual_ticks() + ticks, future)
        return future

    def _end_run_for(self) -> None:
        running = self._run_for
        self._run_for = None
        if running is not None and not running[1].done():
            running[1].set_result(None)

    # -- timers ------------------------------------------------------------

    # The stubs type *args with a TypeVarTuple, which Python 3.10's typing
    # lacks; the runtime signature is asyncio's own.
    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        due = seconds_to_ticks(when)
        if self._following:
            self._follow_busy_time()
        now = self._ticks if self._own_time() else seconds_to_ticks(self.time())
        if due <= now and when > ticks_to_seconds(now):
            # A moment after now that rounds to now (a deadline a few ulps
            # ahead of loop.time()) fires one tick later: at now, a loop such
            # as ``while loop.time() < deadline: await sleep(deadline -
            # loop.time())`` would never see time move.
            due = now + 1
        return self._schedule(due, callback, args, context)

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        if delay is None:
            raise TypeError("delay must not be None")
        if not self._own_time():
            # A test that patched loop.time sets the pace, as in stock asyncio
            # (call_later is call_at(self.time() + delay)).
            return self.call_at(self.time() + delay, callback, *args, context=context)
        # Adding integer ticks keeps long chains of short delays exact.  A
        # positive delay under half a tick still takes one: rounded to none,
        # a sleep in a loop (a token bucket refilling 1e-17 s short) would
        # never let time move.
        ticks = seconds_to_ticks(delay)
        if ticks <= 0 < delay:
            ticks = 1
        if self._following:
            self._follow_busy_time()
        return self._schedule(self._ticks + ticks, callback, args, context)

    def _own_time(self) -> bool:
        """Whether ``self.time`` is this class's own clock.

        A test may patch it (``mock.patch.object(loop, "time", ...)``) to drive a
        rate limiter by hand; the stock loop then schedules and fires timers
        by the patched clock, and so does this one.
        """
        return self._patched_time is None and not self._foreign_time

    def _schedule(
        self,
        due: int,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        context: Context | None,
    ) -> asyncio.TimerHandle:
        self._check_closed()  # type: ignore[attr-defined]
        if self.get_debug():
            self._check_thread()  # type: ignore[attr-defined]
            self._check_callback(callback, "call_at")  # type: ignore[attr-defined]
        timer = asyncio.TimerHandle(ticks_to_seconds(due), callback, args, self, context)
        source = timer._source_traceback  # type: ignore[attr-defined]
        while source and source[-1].filename.startswith(PACKAGE_DIR):
            del source[-1]  # debug mode: end at the caller's line, as stock does
        heapq.heappush(self._timer_heap, (due, next(self._timer_seq), timer))
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer

    def _drop_cancelled_timers(self) -> None:
        heap = self._timer_heap
        cancelled: int = self._timer_cancelled_count  # type: ignore[has-type]
        if len(heap) > _MIN_TIMERS_FOR_CLEANUP and cancelled / len(heap) > _MAX_CANCELLED_FRACTION:
            kept = []
            for entry in heap:
                if entry[2]._cancelled:
                    entry[2]._scheduled = False  # type: ignore[attr-defined]
                else:
                    kept.append(entry)
            heapq.heapify(kept)
            self._timer_heap = kept
            self._timer_cancelled_count = 0
        else:
            while heap and heap[0][2]._cancelled:
                self._timer_cancelled_count -= 1
                heapq.heappop(heap)[2]._scheduled = False  # type: ignore[attr-defined]

    # -- executor jobs -----------------------------------------------------

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., _T], *args: Any
    ) -> asyncio.Future[_T]:
        self._check_closed()  # type: ignore[attr-defined]
        if self._debug:  # type: ignore[attr-defined]
            self._check_callback(func, "run_in_executor")  # type: ignore[attr-defined]
        if executor is None:
            executor = self._default_executor  # type: ignore[has-type]
            self._check_default_executor()  # type: ignore[attr-defined]
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="asyncio")
                self._default_executor = executor
        timing = _JobTiming(self.virtual_ticks(), self._real_flow, time_patch.real_monotonic_ns())
        if isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            # The job's own running time, measured on its thread, and which
            # thread runs it (a job waiting for the loop is idle).  A process
            # pool's job cannot be wrapped: it is pickled.
            job = executor.submit(_run_timed, timing, self._threads.wrap_job(func), *args)
        else:
            job = executor.submit(func, *args)
        # In flight until the job itself is done (ran, failed, or was cancelled
        # before it started), not merely until its asyncio future is cancelled.
        self._jobs_in_flight += 1
        future = self.create_future()
        future.add_done_callback(functools.partial(_cancel_job, job))
        job.add_done_callback(functools.partial(self._job_done_threadsafe, future, timing))
        return future

    def submit_to_pool(
        self,
        executor: concurrent.futures.ThreadPoolExecutor,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> concurrent.futures.Future[Any]:
        """``executor.submit(fn, *args, **kwargs)`` called on the loop's thread
        while it runs (see :func:`threads._submit`): timed as
        ``run_in_executor``'s jobs are, so that when its outcome reaches the
        loop through ``asyncio.wrap_future`` it is delivered no earlier than
        the job's start plus its real running time (see call_soon_threadsafe)."""
        if fn is _run_timed or self.is_closed():  # run_in_executor's own, timed already
            return threads.real_submit(executor, fn, *args, **kwargs)
        func = functools.partial(fn, **kwargs) if kwargs else fn
        timing = _JobTiming(self.virtual_ticks(), self._real_flow, time_patch.real_monotonic_ns())
        job = threads.real_submit(executor, _run_timed, timing, self._threads.wrap_job(func), *args)
        self._pool_jobs[job] = timing
        return job

    # The stubs type *args with a TypeVarTuple (see call_at).
    def call_soon_threadsafe(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: Context | None = None,
    ) -> asyncio.Handle:
        if (
            self._pool_jobs
            and getattr(callback, "__code__", None) is _CHAINED_SET_STATE
            and len(args) == 2
        ):
            # asyncio.wrap_future hands over a job's outcome: if the loop's
            # thread submitted it to a thread pool, a floor applies, as to
            # run_in_executor's jobs (_deliver_no_sooner).
            destination, source = args
            timing = self._pool_jobs.pop(source, None)
            if timing is not None and isinstance(destination, asyncio.Future):
                if timing.duration is None:  # cancelled before it started
                    timing.duration = time_patch.real_monotonic_ns() - timing.submitted_ns
                return super().call_soon_threadsafe(
                    self._deliver_no_sooner, source, destination, timing, context=context
                )
        return super().call_soon_threadsafe(callback, *args, context=context)

    def _job_done_threadsafe(
        self,
        future: asyncio.Future[Any],
        timing: _JobTiming,
        job: concurrent.futures.Future[Any],
    ) -> None:
        if timing.duration is None:  # not run by a thread pool, or cancelled
            timing.duration = time_patch.real_monotonic_ns() - timing.submitted_ns
        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            self.call_soon_threadsafe(self._job_done, job, future, timing)

    def _job_done(
        self,
        job: concurrent.futures.Future[Any],
        future: asyncio.Future[Any],
        timing: _JobTiming,
    ) -> None:
        # One callback both ends the job's flight and hands its outcome over,
        # so the loop never sees "nothing in flight" while a result is on its way.
        self._jobs_in_flight -= 1
        self._deliver_no_sooner(job, future, timing)

    def _deliver_no_sooner(
        self,
        job: concurrent.futures.Future[Any],
        future: asyncio.Future[Any],
        timing: _JobTiming,
    ) -> None:
        # The job is seen no earlier than its start (_job_start_tick) plus its
        # real running time, so a job never looks faster than it ran (nor a
        # queued one sooner than its worker could take it), although the loop's
        # own compute (after submitting, before waiting) is not charged.  What
        # ran while the loop computed counts for at most as long as the loop
        # waited for the job: a job that finished during the loop's compute,
        # which the loop never waited for, takes no virtual time.
        assert timing.duration is not None
        waited = self._real_flow - timing.flow_at_submit
        owed = min(
            self._job_start_tick(timing) + timing.duration - self._ticks,
            waited,
        )
        if timing.worker is not None:
            self._worker_free[timing.worker] = (timing.ended_ns, self._ticks + max(0, owed))
        if owed > 0 and not future.done():
            # Delivered by a timer at that tick: a timer due earlier still
            # fires first, at its own tick.
            VirtualClockLoop._schedule(
                self,
                self._ticks + owed,
                self._deliver_job_late,
                (job, future, owed, self._real_flow),
                None,
            )
        else:
            _deliver_job(job, future)

    def _job_start_tick(self, timing: _JobTiming) -> int:
        """The tick at which a job started: its submission, or, if it waited
        in the pool's queue for the job before it on its worker, the tick at
        which that job was seen done (as in real time, it starts when its
        worker frees, so three 1 s jobs on one worker end at 1, 2 and 3 s)."""
        start = timing.ticks_at_submit
        worker = timing.worker
        if worker is not None:
            before = self._worker_free.get(worker)
            if before is not None and timing.submitted_ns < before[0]:
                start = max(start, before[1])
        return start

    def _deliver_job_late(
        self,
        job: concurrent.futures.Future[Any],
        future: asyncio.Future[Any],
        owed: int,
        flow_then: int,
    ) -> None:
        # The clock reached this tick partly by real flow (a thread still
        # busy meanwhile), which counted itself, and partly by a jump, which
        # stood for the job's own real running time: count that part only,
        # so real_flow_ticks() never exceeds what the clock really moved.
        self._real_flow += max(0, owed - (self._real_flow - flow_then))
        _deliver_job(job, future)

    async def shutdown_default_executor(self, *args: Any) -> None:
        # asyncio waits for a helper thread's call_soon_threadsafe: real work.
        self._jobs_in_flight += 1
        try:
            await super().shutdown_default_executor(*args)
        finally:
            self._jobs_in_flight -= 1

    async def _make_subprocess_transport(self, *args: Any, **kwargs: Any) -> Any:
        # From spawn: the child runs before its transport is handed back.
        self._spawning += 1
        try:
            transport = await super()._make_subprocess_transport(*args, **kwargs)  # type: ignore[misc]
            self._children.add(transport)
        finally:
            self._spawning -= 1
        return transport

    def _children_running(self) -> bool:
        if self._spawning:
            return True
        if not self._children:
            return False
        # Until its exit is reported, closed transports included: close()
        # kills the child, whose exit the watcher reports later.
        return any(t.get_returncode() is None for t in list(self._children))

    def forked(self) -> None:
        """The loop's thread forked a child by hand (``os.fork``): told by
        time_patch's fork handler.  Until it exits, a blocking sleep on the
        loop thread is real, so a poll for its exit (``waitpid(pid, WNOHANG)``
        between ``time.sleep`` calls, up to a ``time.monotonic`` deadline)
        waits for it as on asyncio's own loop.  It does not hold jumps back:
        a fork pool's idle workers live as long as the pool."""
        self._forked.update(procfs.children_of_this_thread())

    def _forked_child_running(self) -> bool:
        if not self._forked:
            return False
        # Reaped (no /proc entry) or a zombie waiting to be: no longer runs.
        self._forked = {
            pid
            for pid in self._forked
            if procfs.stat_state(f"/proc/{pid}/stat") not in (None, b"Z")
        }
        return bool(self._forked)

    def _event_owed(self, kinds: set[FdKind]) -> bool:
        """Whether an outside peer, a subprocess or a real alarm owes the loop
        an event (``kinds``: the registered descriptors' kinds)."""
        return FdKind.EXTERNAL in kinds or self._children_running() or self._alarm_armed()

    def _threads_busy(self) -> bool:
        """Whether a watched thread or an executor job is doing real work."""
        watch = self._threads
        if watch.threads or watch.jobs or self._jobs_in_flight:
            return watch.holds_time(self._jobs_in_flight)
        return False

    def _real_work_in_flight(self) -> bool:
        """Whether real work is under way outside the loop's thread: what holds
        a jump back, and a child forked by hand (which makes a blocking sleep
        real, see :meth:`forked`)."""
        return (
            self._forked_child_running()
            or self._event_owed(self._registered_fd_kinds())
            or self._threads_busy()
        )

    # -- the iteration -----------------------------------------------------

    def run_forever(self) -> None:
        __tracebackhide__ = True  # a deadlock's traceback ends at the user's code
        # asyncio's own checks and errors first ("This event loop is already
        # running", "Cannot run the event loop while another loop is
        # running"), before this thread's clock is claimed.
        self._check_closed()  # type: ignore[attr-defined]
        self._check_running()  # type: ignore[attr-defined]
        time_patch.enter(self)
        threads.enter(self._threads)
        # Real time spent while the loop was stopped was not spent busy.
        self._restart_busy_streak()
        try:
            super().run_forever()
        except DeadlockError as error:
            # The loop's own frames below this one say nothing to the reader.
            raise error.with_traceback(None) from None
        finally:
            threads.leave()
            time_patch.leave()

    def close(self) -> None:
        super().close()
        self._timer_heap.clear()

    def _run_once(self) -> None:
        if self._timer_cancelled_count:
            self._drop_cancelled_timers()
        heap = self._timer_heap
        own_time = self._patched_time is None and not self._foreign_time  # _own_time, inline
        if (
            self._ready  # type: ignore[attr-defined]
            or self._held
            or self._stopping  # type: ignore[attr-defined]
            or (heap and heap[0][0] <= self._ticks)
            or (heap and not own_time and heap[0][0] <= seconds_to_ticks(self.time()))
        ):
            # The loop will not sleep in this iteration: still busy.
            if self._busy_clock() > self._busy_limit:
                self._follow_busy_time()
                running = self._run_for
                if running is not None and self._ticks > running[0]:
                    # A loop that never idles (a task polling on sleep(0))
                    # ends an advance once its charged busy time passed it.
                    self._end_run_for()
            # _poll(0), inline: this runs at every busy iteration.
            events = self._selector.select(0)  # type: ignore[attr-defined]
            if events:
                self._process_events(events)  # type: ignore[attr-defined]
        else:
            self._wait_or_jump()

        now = self._ticks if own_time else seconds_to_ticks(self.time())
        ready = self._ready  # type: ignore[attr-defined]
        while heap and heap[0][0] <= now:
            handle = heapq.heappop(heap)[2]
            handle._scheduled = False  # type: ignore[attr-defined]
            ready.append(handle)
        handle = None  # type: ignore[assignment]  # see _run_ready
        self._run_ready()

    def _run_ready(self) -> None:
        # Only the callbacks ready now run; those they schedule wait for the
        # next iteration, exactly as in asyncio's own loop.
        ready = self._ready  # type: ignore[attr-defined]
        for _ in range(len(ready)):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            if self._debug:  # type: ignore[attr-defined]
                self._run_handle_debug(handle)
            else:
                handle._run()
        # As in stock asyncio: a coroutine that failed in this step keeps its
        # callers' frames alive through its traceback (3.12+ links them by
        # f_back), so a loop frame still naming the handle would keep the
        # failed task alive in a cycle, and "exception was never retrieved"
        # would come late or never.
        handle = None

    def _run_handle_debug(self, handle: asyncio.Handle) -> None:
        try:
            self._current_handle: asyncio.Handle | None = handle
            start = self._ticks
            handle._run()
            took = (self._ticks - start) / TICKS_PER_SECOND
            if took >= self.slow_callback_duration:
                # asyncio's logger object and wording, looked up at each use
                # so that a test patching base_events.logger sees it.
                base_events.logger.warning(  # type: ignore[attr-defined]
                    "Executing %s took %.3f seconds",
                    base_events._format_handle(handle),  # type: ignore[attr-defined]
                    took,
                )
        finally:
            self._current_handle = None
            handle = None  # type: ignore[assignment]  # see _run_ready

    def _poll(self, timeout: float | None) -> None:
        events = self._selector.select(timeout)  # type: ignore[attr-defined]
        if events:
            self._process_events(events)  # type: ignore[attr-defined]

    def _wait_or_jump(self) -> None:
        """Nothing is runnable: wait for real work, jump, or report a deadlock."""
        heap = self._timer_heap
        due = heap[0][0] if heap and heap[0][0] < NEVER else None
        running = self._run_for
        if running is not None:
            end, future = running
            if future.done():  # its awaiting task was cancelled
                self._run_for = running = None
            elif self._ticks >= end:
                self._end_run_for()
                return
            elif due is None or due > end:
                # Nothing is due before the advance ends: its end is where
                # the clock stops, as it would at a timer.
                self._wait_or_jump_to(end, timer=False)
                return
        if running is None and self._manual:
            self._wait_frozen()
            return
        self._wait_or_jump_to(due, timer=True)

    def _wait_or_jump_to(self, due: int | None, timer: bool) -> None:
        """Wait for real work up to ``due`` (the next timer's tick, or where a
        run_for ends: ``timer`` False), jump to it, or report a deadlock."""
        heap = self._timer_heap
        kinds = self._registered_fd_kinds()
        if self._event_owed(kinds):
            self._flow_in_real_time(due)
            return
        if self._threads_busy():
            # A busy thread or job says nothing when it stops to wait for the
            # loop: look again soon.
            self._flow_in_real_time(threads.recheck_due(due, self._ticks))
            return
        self._real_debt = 0  # nothing real is owed any more
        if len(kinds) or due is None or self._threads.threads or self._threads.jobs:
            # A loopback peer's data or a thread's call_soon_threadsafe may
            # already be waiting: collect it before deciding to jump.
            self._poll(0)
            if self._ready:  # type: ignore[attr-defined]
                return
        if due is not None and not timer:
            self._ticks = max(self._ticks, due)
            self._restart_busy_streak()
            return
        if due is not None:
            self._jumps += 1
            if due >= self._stall_check:
                self._stall_check = self._stall_watch.check(self, due)
            callback = heap[0][2]._callback  # type: ignore[attr-defined]
            if getattr(callback, "__name__", None) in TIMEOUT_CALLBACKS:
                self._note_hidden_deadlock(due)
            self._ticks = max(self._ticks, due)
            self._restart_busy_streak()  # the loop was idle: it jumped
            return
        self._wait_without_timers(FdKind.LISTENING in kinds)
        self._restart_busy_streak()

    def _wait_frozen(self) -> None:
        """A manual clock that no run_for() moves: wait for the outside, in
        real time that the clock does not count, or report a deadlock."""
        kinds = self._registered_fd_kinds()
        if self._event_owed(kinds):
            self._poll(None)
        elif self._threads_busy():
            self._poll(threads.RECHECK_SECONDS)
        else:
            if len(kinds) or self._threads.threads or self._threads.jobs:
                # As in _wait_or_jump_to: what already arrived comes first.
                self._poll(0)
                if self._ready:  # type: ignore[attr-defined]
                    return
            self._wait_without_timers(FdKind.LISTENING in kinds)
        self._restart_busy_streak()

    def _manual_timers(self) -> tuple[int, float] | None:
        """How many timers a manual clock holds back, and the next one's due time."""
        if not self._manual:
            return None
        live = [entry[0] for entry in self._timer_heap if not entry[2]._cancelled]
        due = [tick for tick in live if tick < NEVER]
        if not due:
            return None
        return len(live), ticks_to_seconds(min(due))

    def _timer_targets(self) -> dict[asyncio.Task[Any], str]:
        """The tasks that pending timers would wake, each with what it waits
        for: a sleep's or a timeout's timer, named by its due time."""
        by_future: dict[int, int] = {}
        by_task: dict[asyncio.Task[Any], int] = {}
        for due, _, timer in self._timer_heap:
            if timer._cancelled or due >= NEVER:
                continue
            # A sleep's timer completes the future the task awaits
            # (futures._set_result_unless_cancelled(future, ...)), wait_for's
            # before 3.12 releases its waiter; asyncio.timeout's cancels the
            # task it holds (Timeout._on_timeout).
            for arg in timer._args or ():
                if isinstance(arg, asyncio.Future):
                    by_future[id(arg)] = min(due, by_future.get(id(arg), due))
            owner = getattr(timer._callback, "__self__", None)  # type: ignore[attr-defined]
            task = getattr(owner, "_task", None)
            if isinstance(task, asyncio.Task):
                by_task[task] = min(due, by_task.get(task, due))
        targets = {}
        for task in asyncio.all_tasks(self):
            waiter = getattr(task, "_fut_waiter", None)
            wakes_at = [by_future[id(waiter)]] if id(waiter) in by_future else []
            if task in by_task:
                wakes_at.append(by_task[task])
            if wakes_at:
                when = ticks_to_seconds(min(wakes_at))
                targets[task] = f"a timer due at {when:g} s, waiting for advance()"
        return targets

    def _note_hidden_deadlock(self, due: int) -> None:
        # A timeout is the next timer: if the wait it ends is one that no
        # other timer could end, remember what the loop looked like (the
        # plugin reports it beside the test's TimeoutError); a timeout that
        # ends a wait some timer would have ended forgets an earlier one, so
        # a test that expected one timeout and then failed on another is not
        # told about the first.
        from .stall import timeout_ends_wait

        self.hidden_deadlock = timeout_ends_wait(self, self._timer_heap[0][2], due)

    # -- a loop that never idles -----------------------------------------------

    def _restart_busy_streak(self) -> None:
        """The loop was idle (it jumped or waited) or runs again after a stop:
        a new busy streak begins now."""
        self._busy_limit = self._busy_clock() + self._busy_grace
        self._following = False

    def _follow_busy_time(self) -> None:
        """The clock follows the time the loop spends busy past the grace.

        A loop that never idles never jumps, so a poll such as ``while not
        flag: await asyncio.sleep(0)`` under ``wait_for(..., 1)``, or ``while
        loop.time() < deadline: await asyncio.sleep(0)`` with no timer at all,
        would spin forever where asyncio's own loop ends it after a second.
        So the time the loop has spent busy (no iteration in which it would
        have slept) beyond the grace is charged to the clock, timer or not
        (nothing tells a poll on the clock from compute), on every reading
        once charging began.  Only the excess is charged,
        never faster than real time: a timer never fires before its delay has
        passed for real, as on asyncio's own loop (no false timeouts), and a
        busy poll times out at most the grace late.  A streak shorter than the
        grace charges nothing: short bursts of work keep exact timings.
        """
        now = self._busy_clock()
        excess = now - self._busy_limit
        if excess > 0:
            self._ticks += excess
            # Real time, as the real work of rule 5: a span with it is not exact.
            self._real_flow += excess
            self._busy_limit = now
            self._following = True

    def _follow_busy_time_here(self) -> None:
        # A reading from another thread (a hang report's) only reads: the
        # clock is the loop thread's to move.
        if self._thread_id == threading.get_ident():  # type: ignore[attr-defined]
            self._follow_busy_time()

    def _alarm_armed(self) -> bool:
        """Whether a real interval timer will deliver a signal this loop handles.

        ``signal.setitimer(ITIMER_REAL, ...)`` (or ``signal.alarm``) with a
        handler from ``loop.add_signal_handler(SIGALRM, ...)`` is an outside
        event the loop can see coming: until it fires, time flows for real.
        A SIGALRM the loop does not handle (pytest-timeout's own alarm, say)
        does not hold time back.
        """
        handlers = getattr(self, "_signal_handlers", None)
        if not handlers or signal.SIGALRM not in handlers:
            return False
        return signal.getitimer(signal.ITIMER_REAL)[0] > 0

    def _registered_fd_kinds(self) -> set[FdKind]:
        selector_map = self._selector.get_map()  # type: ignore[attr-defined]
        if len(selector_map) <= 1:
            return set()  # nothing but the loop's own self-pipe
        own = self._ssock.fileno()  # type: ignore[attr-defined]
        registered = {key.fd: key.events for key in selector_map.values() if key.fd != own}
        if not registered:
            return set()
        # Which ends are this loop's own, and bytes still in flight between
        # them: see pytest_asyncspec.clock.inflight.
        return self._peer_kinds(registered)

    def _flow_in_real_time(self, due: int | None) -> None:
        """The outside world owes the loop an event: wait for it for real.

        The clock advances by the real time spent waiting here (the loop's
        own compute is never charged) and stops at ``due``, the next finite
        timer's tick, exactly: real time waited beyond it is owed
        (``_real_debt``) and charged by the next wait while work is still in
        flight, so what flows is never lost for the outside work, and no timer
        fires late.  ``due`` is None when no timer, or only ``NEVER`` ones, is
        set: the wait is then bounded by the event alone.
        """
        room = None if due is None else due - self._ticks
        debt = self._real_debt
        if debt:
            paid = debt if room is None else min(debt, room)
            self._real_debt = debt - paid
            self._ticks += paid
            self._real_flow += paid
            if room is not None:
                room -= paid
        if room is not None and room <= 0:
            self._poll(0)  # the timer is due; collect what has arrived
            return
        timeout = None if room is None else min(room, _MAX_POLL_TICKS) / TICKS_PER_SECOND
        start = time_patch.real_monotonic_ns()
        self._poll(timeout)
        waited = time_patch.real_monotonic_ns() - start
        step = waited if room is None else min(waited, room)
        self._real_debt += waited - step
        self._ticks += step
        self._real_flow += step
        self._restart_busy_streak()  # the loop was idle: it waited

    def _wait_without_timers(self, may_get_connections: bool) -> None:
        if may_get_connections or not asyncio.all_tasks(self):
            # A server waiting for clients, or an idle loop waiting for a
            # thread to call it: both are legitimate real waits.
            self._poll(None)
            return
        deadline = time_patch.real_monotonic() + self._deadlock_grace
        while True:
            remaining = deadline - time_patch.real_monotonic()
            if remaining <= 0:
                break
            if self._threads.threads or self._threads.jobs:
                # A waiting thread may be woken by another: look again soon.
                remaining = min(remaining, threads.RECHECK_SECONDS)
            self._poll(remaining)
            # A manual clock's timers wake nothing until an advance: they do
            # not end the wait (and no advance can start while nothing runs).
            finite_timer = (
                not self._manual and bool(self._timer_heap) and self._timer_heap[0][0] < NEVER
            )
            if (
                self._ready  # type: ignore[attr-defined]
                or finite_timer
                or self._threads.holds_time(self._jobs_in_flight)
            ):
                return
        manual_timers = self._manual_timers()
        targets = self._timer_targets() if manual_timers is not None else None
        raise DeadlockError(
            self.time(), waiting_tasks(self, targets), self._threads.states(), manual_timers
        )
