"""Which threads may call back into a virtual loop, and whether each one is busy.

A virtual clock may only jump when no real event can arrive first.  Threads
are such a source: a thread that does real work and then calls
``loop.call_soon_threadsafe`` (a database driver's worker, a one-shot helper,
an executor job) owes the loop an event, and a jump would overtake it.  But a
thread that waits, without a timeout, for something only the loop can give it
(a ``queue.Queue.get`` the loop feeds, an ``Event`` the loop sets, a
``concurrent.futures.Future`` a coroutine on the loop completes) owes nothing
until the loop acts, and must not freeze time.

Which threads count (:class:`ThreadWatch`, one per loop):

* every thread started while a virtual loop runs, from the loop's thread or
  from a thread that counts already (its helpers' helpers), the worker
  threads of executors the loop submits to included; threads that existed
  before (pytest-xdist's, pytest-timeout's) and the plugin's own
  (:func:`exclude`) never count;
* every job the loop hands to a ``ThreadPoolExecutor`` through
  ``run_in_executor``, or that its thread submits to one itself
  (``pool.submit``, patched while a virtual loop runs, :func:`_submit`): the
  submitted callable is wrapped (never for other executors, which may pickle
  it) to note which thread runs it.  A job that
  has not started yet, or has finished but not yet reported back, is busy.

Whether one is busy (:func:`judge`) is read from its innermost Python frame
(``sys._current_frames()``), only when the loop is about to jump or to report
a deadlock and such threads exist.  It is *idle* only in an untimed wait:

* ``threading.Condition.wait(None)``, under ``Event.wait()``,
  ``queue.Queue.get()``, ``Semaphore.acquire()``, ``Future.result()`` and the
  like, and only while its waiter lock is still queued on the condition:
  ``notify`` dequeues it under the condition's lock, so a thread the loop has
  just woken (``queue.put``, ``Event.set``, ``future.set_result``) is busy
  even though its frame still shows the wait;
* ``Thread.join()`` without a timeout (the joined thread, if it counts, is
  judged on its own);
* on Linux, any wait in C code on a lock or semaphore with no timeout
  (``queue.SimpleQueue.get()``, a raw ``Lock.acquire()``), told by the
  kernel: the thread sleeps in a ``futex`` wait whose timeout is NULL
  (``/proc/self/task/<tid>/syscall``).  The GIL is waited for with a timeout,
  and a thread the loop wakes is runnable the moment the loop releases its
  lock, so neither looks idle.  The verdict is confirmed after letting go of
  the GIL for a moment (the thread must still wait at the same instruction);
* elsewhere, from Python 3.13, ``queue.SimpleQueue.get()`` (the frame is the
  caller's, stopped at a ``.get()`` call, read from its bytecode) while every
  SimpleQueue among the frame's locals and its ``self``'s attributes is
  empty, confirmed the same way.  Before 3.13 such a thread counts as busy
  there: reading the caller's locals is not safe;
* an executor worker waiting on an empty work queue.

Everything else is busy, timed waits included: ``.result(timeout=5)``,
``Queue.get(timeout=...)`` or a ``threading.Timer`` end at a *real* instant,
so the clock flows at real speed with them, which is exactly when their
timeout fires.  Without the kernel's word, a raw ``Lock.acquire()`` counts
as busy: a lock the loop has just released is taken by the waiter before it
gets the GIL back, so "locked, and the frame is at the call" would also
describe a thread that is already on its way.
"""

from __future__ import annotations

import asyncio.events as _asyncio_events
import concurrent.futures._base as _futures_base
import concurrent.futures.thread as _futures_thread
import dis
import functools
import inspect
import itertools
import os
import queue
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any, TypeVar

from . import procfs
from .ticks import TICKS_PER_SECOND
from .time_patch import real_sleep
from .waiting import place, qualname

_T = TypeVar("_T")

#: Real seconds between two looks at the threads while one of them holds the
#: clock: a thread that stops to wait for the loop calls nobody to say so.
RECHECK_SECONDS = 0.005
RECHECK_TICKS = round(RECHECK_SECONDS * TICKS_PER_SECOND)
#: Real seconds the loop lets go of the GIL to confirm that a thread seen
#: waiting in C (``SimpleQueue.get``, a lock) still waits.
CONFIRM_SECONDS = 0.001
#: From 3.13 on, ``SimpleQueue.put`` hands its item straight to a waiting
#: ``get``: the queue stays empty while the woken thread waits for the GIL, so
#: "empty, and the frame is at the call" must be confirmed after letting it run.
_HANDOFF = sys.version_info >= (3, 13)

_CONDITION_WAIT: CodeType = threading.Condition.wait.__code__
#: The untimed part of Thread.join: the join itself on 3.13 (which waits in
#: C), ``_wait_for_tstate_lock`` before.
_JOIN: CodeType = getattr(threading.Thread, "_wait_for_tstate_lock", threading.Thread.join).__code__
_WORKER: CodeType = _futures_thread._worker.__code__
#: Waits judged in Python, from state that a wake-up changes at once.
_PYTHON_WAITS = frozenset({_CONDITION_WAIT, _JOIN, _WORKER})
#: Modules whose frames are part of a wait, not the place that waits.
_WAIT_MODULES = frozenset({"threading", "queue", _futures_base.__name__})
_IDLE_WORKER = "an executor's work queue"

#: The futex system call's number on this machine (Linux), and the wait
#: commands of futex(2); the flags FUTEX_PRIVATE_FLAG (128) and
#: FUTEX_CLOCK_REALTIME (256) are masked off.
_MACHINE = os.uname().machine if hasattr(os, "uname") else ""
_FUTEX_SYSCALL = {"x86_64": 202, "aarch64": 98, "i686": 240, "i386": 240}.get(_MACHINE)
_FUTEX_WAITS = frozenset({0, 9})  # FUTEX_WAIT, FUTEX_WAIT_BITSET
_FUTEX_FLAGS = 128 | 256
_KERNEL_WAITS = sys.platform == "linux" and _FUTEX_SYSCALL is not None


def _native_id(ident: int) -> int | None:
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    native: int | None = getattr(thread, "native_id", None)
    return native


def _untimed_lock_wait(ident: int) -> bool:
    """Linux: whether the thread sleeps in a futex wait with no timeout.

    ``/proc/self/task/<tid>/syscall`` names the call a sleeping thread is in
    and its arguments (futex: address, operation, value, timeout pointer), or
    says ``running`` for a thread the scheduler may run.
    """
    native = _native_id(ident)
    if native is None:
        return False
    try:
        with open(f"/proc/self/task/{native}/syscall", "rb") as call:
            fields = call.read().split()
    except OSError:  # the thread just ended
        return False
    if len(fields) < 5 or not fields[0].isdigit() or int(fields[0]) != _FUTEX_SYSCALL:
        return False
    operation = int(fields[2], 16) & ~_FUTEX_FLAGS
    return operation in _FUTEX_WAITS and int(fields[4], 16) == 0


@functools.cache  # read on first use: the source lookup costs milliseconds
def _worker_get_line() -> int | None:
    try:
        lines, first = inspect.getsourcelines(_futures_thread._worker)
    except (OSError, TypeError):  # no source: never judge a worker idle
        return None
    for offset, line in enumerate(lines):
        if "work_queue.get(block=True)" in line:
            return first + offset
    return None


@dataclass(frozen=True)
class ThreadState:
    """One thread as the loop sees it: busy (real work) or idle (waits for the loop)."""

    name: str
    idle: bool
    #: What it waits in, e.g. ``queue.Queue.get()``; empty for a busy thread.
    waits_in: str
    #: file:line in function of the innermost frame that is not part of the wait.
    where: str

    def describe(self) -> str:
        state = f"waits in {self.waits_in} with no timeout" if self.idle else "is running"
        return f"thread {self.name!r} {state}\n    at {self.where}"


def _condition_still_waiting(frame: FrameType) -> bool:
    local = frame.f_locals
    if local.get("timeout") is not None:
        return False
    waiter = local.get("waiter")
    condition = local.get("self")
    if waiter is None or condition is None:
        return False  # still setting the wait up
    try:
        # notify() releases the waiter and takes it off the queue: once it is
        # off, the thread is on its way, whatever its frame says.
        return bool(waiter.locked()) and any(w is waiter for w in condition._waiters)
    except RuntimeError:  # the deque changed while we read it: someone notifies
        return False


_CALL_OPS = frozenset({"CALL", "CALL_METHOD", "CALL_FUNCTION"})


@functools.lru_cache(maxsize=512)
def _instructions(code: CodeType) -> tuple[dict[int, int], tuple[dis.Instruction, ...]]:
    instructions = tuple(dis.get_instructions(code))
    return {ins.offset: n for n, ins in enumerate(instructions)}, instructions


def _calls_untimed_get(frame: FrameType) -> bool:
    """Whether the frame is stopped in ``<expression>.get()`` (or ``.get(True)``,
    ``.get(True, None)``), read from its bytecode."""
    index, instructions = _instructions(frame.f_code)
    at = index.get(frame.f_lasti)
    if at is None or instructions[at].opname not in _CALL_OPS:
        return False
    argc = instructions[at].arg or 0
    n = at - 1
    if n >= 0 and instructions[n].opname == "PRECALL":  # 3.11
        n -= 1
    args = []
    for _ in range(argc):
        if n < 0 or instructions[n].opname != "LOAD_CONST":
            return False
        args.append(instructions[n].argval)
        n -= 1
    return (
        tuple(reversed(args)) in _UNTIMED_GET
        and n >= 0
        and instructions[n].opname in ("LOAD_METHOD", "LOAD_ATTR")
        and instructions[n].argval == "get"
    )


_UNTIMED_GET = frozenset({(), (True,), (True, None)})


def _in_simple_queue_get(frame: FrameType) -> bool:
    if _KERNEL_WAITS or not _HANDOFF or not _calls_untimed_get(frame):
        # Before 3.13 reading ``f_locals`` of a frame whose thread is not
        # parked in a known wait writes the frame's locals dict, freeing stale
        # values under the feet of the thread (aiosqlite's own suite crashed
        # on 3.11): such a thread counts as busy there.
        return False
    # 3.13's f_locals is a read-only view of the frame (PEP 667).
    queues = [item for item in frame.f_locals.values() if isinstance(item, queue.SimpleQueue)]
    owner = frame.f_locals.get("self")
    if owner is not None and isinstance(getattr(owner, "__dict__", None), dict):
        queues += [item for item in vars(owner).values() if isinstance(item, queue.SimpleQueue)]
    return bool(queues) and all(q.empty() for q in queues)


def _idle_at(frame: FrameType) -> bool:
    code = frame.f_code
    if code is _CONDITION_WAIT:
        return _condition_still_waiting(frame)
    if code is _JOIN:
        local = frame.f_locals
        if code.co_name == "join":
            return local.get("timeout") is None
        return local.get("block", True) is True and local.get("timeout", -1) == -1
    if code is _WORKER:
        work_queue = frame.f_locals.get("work_queue")
        return (
            frame.f_lineno == _worker_get_line()
            and work_queue is not None
            and bool(work_queue.empty())
        )
    return _in_simple_queue_get(frame)


def _module(frame: FrameType) -> str:
    return str(frame.f_globals.get("__name__", ""))


def judge(name: str, frame: FrameType | None, ident: int | None = None) -> ThreadState:
    """The state of thread ``ident`` whose innermost Python frame is ``frame``."""
    if frame is None:  # starting or ending: no Python frame to read yet
        return ThreadState(name, False, "", "<no Python frame>")
    if not _idle_at(frame):
        if ident is not None and _waits_in_c(ident, frame):
            what = "queue.SimpleQueue.get()" if _calls_untimed_get(frame) else "a lock (in C)"
            return ThreadState(name, True, what, place(frame))
        return ThreadState(name, False, "", place(frame))
    if frame.f_code is _WORKER:
        return ThreadState(name, True, _IDLE_WORKER, place(frame))
    if frame.f_code is not _CONDITION_WAIT and frame.f_code is not _JOIN:
        return ThreadState(name, True, "queue.SimpleQueue.get()", place(frame))
    # The outermost frame of the wait names the primitive (Queue.get over
    # Condition.wait); the frame below it is where the thread waits.
    outer = frame
    while outer.f_back is not None and _module(outer.f_back) in _WAIT_MODULES:
        outer = outer.f_back
    caller = outer.f_back or outer
    return ThreadState(name, True, f"{_module(outer)}.{qualname(outer)}()", place(caller))


class ThreadWatch:
    """The threads and executor jobs that may call back into one loop."""

    __slots__ = ("_job_ids", "jobs", "threads")

    def __init__(self) -> None:
        #: Watched threads, in start order (a dict as an ordered set). The loop
        #: reads this and ``jobs`` for truth before it asks anything costlier.
        #: Held weakly, as asyncio holds nothing of a finished thread: a
        #: test that checks its threads were cleaned up (CPython's
        #: threading_cleanup) must not find them kept alive by the loop.
        self.threads: weakref.WeakKeyDictionary[threading.Thread, None] = (
            weakref.WeakKeyDictionary()
        )
        #: Running ThreadPoolExecutor jobs: job number -> ident of their thread.
        self.jobs: dict[int, int] = {}
        self._job_ids = itertools.count()

    def add(self, thread: threading.Thread) -> None:
        self.threads[thread] = None

    def discard(self, thread: threading.Thread) -> None:
        self.threads.pop(thread, None)

    def wrap_job(self, func: Callable[..., _T]) -> Callable[..., _T]:
        """``func`` noting, while it runs, which thread runs it."""
        key = next(self._job_ids)
        jobs = self.jobs

        def job(*args: Any) -> _T:
            jobs[key] = threading.get_ident()
            try:
                return func(*args)
            finally:
                del jobs[key]

        return job

    def _live_threads(self) -> list[threading.Thread]:
        alive = []
        for thread in list(self.threads):
            # ident is None until the thread runs: it is about to, so it counts.
            if thread.ident is not None and not thread.is_alive():
                self.threads.pop(thread, None)
            else:
                alive.append(thread)
        return alive

    def holds_time(self, jobs_in_flight: int) -> bool:
        """Whether real work owed to the loop is under way in a thread.

        ``jobs_in_flight`` counts every executor job the loop has not seen
        finish; those not known to be idle (not started, not a thread pool's,
        or finished and reporting back) hold the clock.
        """
        if not self.threads and not self.jobs:
            return jobs_in_flight > 0
        frames = sys._current_frames()
        idle_jobs = sum(
            1 for ident in list(self.jobs.values()) if _idle_frame(frames.get(ident), ident)
        )
        if jobs_in_flight > idle_jobs:
            return True
        idents = set(self.jobs.values())
        for thread in self._live_threads():
            if thread.ident is None or not _idle_frame(frames.get(thread.ident), thread.ident):
                return True
            idents.add(thread.ident)
        return (_HANDOFF or _KERNEL_WAITS) and _handed_off(frames, idents)

    def states(self) -> list[ThreadState]:
        """Every watched thread still alive, with its state (for reports).

        Executor workers with nothing to do are left out: they wait for
        nothing in particular.
        """
        frames = sys._current_frames()
        states = [
            judge(
                thread.name,
                frames.get(thread.ident) if thread.ident is not None else None,
                thread.ident,
            )
            for thread in self._live_threads()
        ]
        return [state for state in states if state.waits_in != _IDLE_WORKER]


def _waits_in_c(ident: int, frame: FrameType) -> bool:
    """Linux: a thread outside the Python-judged waits, asleep on a lock with
    no timeout (see the module docstring)."""
    return _KERNEL_WAITS and frame.f_code not in _PYTHON_WAITS and _untimed_lock_wait(ident)


def _idle_frame(frame: FrameType | None, ident: int) -> bool:
    return frame is not None and (_idle_at(frame) or _waits_in_c(ident, frame))


def _handed_off(frames: dict[int, FrameType], idents: set[int]) -> bool:
    """Whether a thread seen idle in a wait in C (``SimpleQueue.get``, a lock)
    was in fact woken: let it run for a moment, then see whether it moved on."""
    waiting = {
        ident: (frame, frame.f_lasti)
        for ident in idents
        if (frame := frames.get(ident)) is not None and frame.f_code not in _PYTHON_WAITS
    }
    if not waiting:
        return False
    # Let go of the GIL: a thread that was handed an item and waits for the
    # GIL takes it now and moves on.
    real_sleep(CONFIRM_SECONDS)
    now = sys._current_frames()
    return any(
        now.get(ident) is not frame
        or frame.f_lasti != lasti
        or not _idle_frame(frame, ident)
        or _scheduled(ident)  # woken, but the OS has not run it yet
        for ident, (frame, lasti) in waiting.items()
    )


def _scheduled(ident: int) -> bool:
    """Whether the OS has the thread runnable (Linux: ``R`` in its stat)."""
    native = _native_id(ident)
    return native is not None and procfs.stat_state(f"/proc/self/task/{native}/stat") == b"R"


def recheck_due(due: int | None, now: int) -> int:
    """The tick until which to flow before looking at the threads again."""
    soon = now + RECHECK_TICKS
    return soon if due is None else min(due, soon)


# -- which threads count: Thread.start while a virtual loop runs -------------------

_real_start = threading.Thread.start
#: ``ThreadPoolExecutor.submit`` as the standard library defines it.
real_submit = _futures_thread.ThreadPoolExecutor.submit
_lock = threading.Lock()
_active = 0
#: Ident of each thread running a virtual loop -> that loop's watch.
_loop_threads: dict[int, ThreadWatch] = {}
#: Each watched thread -> the watch it belongs to (its own starts count there).
_owners: weakref.WeakKeyDictionary[threading.Thread, ThreadWatch] = weakref.WeakKeyDictionary()
_excluded: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def exclude(thread: threading.Thread) -> None:
    """Never count ``thread`` (the plugin's own helpers)."""
    _excluded.add(thread)


def _start(self: threading.Thread) -> None:
    loop_watch = _loop_threads.get(threading.get_ident())
    watch = loop_watch or _owners.get(threading.current_thread())
    if watch is None or self in _excluded:
        _real_start(self)
        return
    # Counted before it runs, so helpers it starts at once count too.
    _owners[self] = watch
    watch.add(self)
    try:
        _real_start(self)
    except BaseException:
        watch.discard(self)
        raise


def _submit(
    self: _futures_thread.ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> _futures_base.Future[Any]:
    """``ThreadPoolExecutor.submit`` while a virtual loop runs: a job submitted
    from the loop's own thread (``asyncio.wrap_future(pool.submit(fn))``) is
    handed to the loop, which times it as it times ``run_in_executor``'s."""
    if threading.get_ident() in _loop_threads:
        loop = _asyncio_events._get_running_loop()
        timed = getattr(loop, "submit_to_pool", None)
        if timed is not None:
            job: _futures_base.Future[Any] = timed(self, fn, args, kwargs)
            return job
    return real_submit(self, fn, *args, **kwargs)


def enter(watch: ThreadWatch) -> None:
    """The current thread runs the loop of ``watch``: threads it starts count."""
    global _active
    with _lock:
        _loop_threads[threading.get_ident()] = watch
        _active += 1
        if _active == 1:
            threading.Thread.start = _start  # type: ignore[method-assign]
            _futures_thread.ThreadPoolExecutor.submit = _submit  # type: ignore[method-assign,assignment]


def hold() -> None:
    """Keep ``Thread.start`` and ``submit`` replaced until :func:`release`, across
    the loops that start and stop meanwhile (see ``time_patch.hold``): a
    thread started where no loop runs is started as usual."""
    global _active
    with _lock:
        _active += 1
        if _active == 1:
            threading.Thread.start = _start  # type: ignore[method-assign]
            _futures_thread.ThreadPoolExecutor.submit = _submit  # type: ignore[method-assign,assignment]


def release() -> None:
    """End one :func:`hold`."""
    global _active
    with _lock:
        if _active == 0:
            return
        _active -= 1
        if _active == 0 and threading.Thread.start is _start:
            threading.Thread.start = _real_start  # type: ignore[method-assign]
        if _active == 0 and _futures_thread.ThreadPoolExecutor.submit is _submit:
            _futures_thread.ThreadPoolExecutor.submit = real_submit  # type: ignore[method-assign]


def leave() -> None:
    """The current thread's loop stopped."""
    global _active
    with _lock:
        if _loop_threads.pop(threading.get_ident(), None) is None:
            return
        _active -= 1
        if _active == 0 and threading.Thread.start is _start:
            threading.Thread.start = _real_start  # type: ignore[method-assign]
        if _active == 0 and _futures_thread.ThreadPoolExecutor.submit is _submit:
            _futures_thread.ThreadPoolExecutor.submit = real_submit  # type: ignore[method-assign]
