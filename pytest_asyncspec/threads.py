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
  ``run_in_executor``: the submitted callable is wrapped (never for other
  executors, which may pickle it) to note which thread runs it.  A job that
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
* ``queue.SimpleQueue.get()`` (C code: the frame is the caller's, stopped
  at the call; the receiver is read back from the bytecode) on an empty
  queue: ``get`` takes its item only once it holds the GIL again, so an item
  the loop has just put makes the thread busy;
* an executor worker waiting on an empty work queue.

Everything else is busy, timed waits included: ``.result(timeout=5)``,
``Queue.get(timeout=...)`` or a ``threading.Timer`` end at a *real* instant,
so the clock flows at real speed with them, which is exactly when their
timeout fires.  A raw ``Lock.acquire()`` (C code, with no Python frame of its
own) counts as busy: a lock the loop has just released is taken by the
waiter before it gets the GIL back, so "locked, and the frame is at the call"
would also describe a thread that is already on its way.
"""

from __future__ import annotations

import concurrent.futures._base as _futures_base
import concurrent.futures.thread as _futures_thread
import dis
import functools
import inspect
import itertools
import queue
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any, TypeVar

from .ticks import TICKS_PER_SECOND
from .waiting import place, qualname

_T = TypeVar("_T")

#: Real seconds between two looks at the threads while one of them holds the
#: clock: a thread that stops to wait for the loop calls nobody to say so.
RECHECK_SECONDS = 0.005
RECHECK_TICKS = round(RECHECK_SECONDS * TICKS_PER_SECOND)

_CONDITION_WAIT: CodeType = threading.Condition.wait.__code__
#: The untimed part of Thread.join: the join itself on 3.13 (which waits in
#: C), ``_wait_for_tstate_lock`` before.
_JOIN: CodeType = getattr(threading.Thread, "_wait_for_tstate_lock", threading.Thread.join).__code__
_WORKER: CodeType = _futures_thread._worker.__code__
#: Modules whose frames are part of a wait, not the place that waits.
_WAIT_MODULES = frozenset({"threading", "queue", _futures_base.__name__})
_IDLE_WORKER = "an executor's work queue"


def _worker_get_line() -> int | None:
    try:
        lines, first = inspect.getsourcelines(_futures_thread._worker)
    except (OSError, TypeError):  # no source: never judge a worker idle
        return None
    for offset, line in enumerate(lines):
        if "work_queue.get(block=True)" in line:
            return first + offset
    return None


_WORKER_GET_LINE = _worker_get_line()


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
_LOCAL_OPS = frozenset({"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_DEREF"})
_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_MISSING = object()


@functools.lru_cache(maxsize=512)
def _instructions(code: CodeType) -> tuple[dict[int, int], tuple[dis.Instruction, ...]]:
    instructions = tuple(dis.get_instructions(code))
    return {ins.offset: n for n, ins in enumerate(instructions)}, instructions


def _called_method(frame: FrameType) -> tuple[object, str, tuple[object, ...]] | None:
    """For a frame stopped in ``name.attr....method(constants)``, the receiver
    object, the method's name and the arguments; None for any other call.

    The receiver is read back from the frame without running any code: a
    local, closure or global name, then instance attributes found in
    ``__dict__`` (never a property).
    """
    index, instructions = _instructions(frame.f_code)
    at = index.get(frame.f_lasti)
    if at is None or instructions[at].opname not in _CALL_OPS:
        return None
    argc = instructions[at].arg or 0
    n = at - 1
    if n >= 0 and instructions[n].opname == "PRECALL":  # 3.11
        n -= 1
    args = []
    for _ in range(argc):
        if n < 0 or instructions[n].opname != "LOAD_CONST":
            return None
        args.append(instructions[n].argval)
        n -= 1
    if n < 0 or instructions[n].opname not in ("LOAD_METHOD", "LOAD_ATTR"):
        return None
    method = str(instructions[n].argval)
    n -= 1
    attributes = []
    while n >= 0 and instructions[n].opname == "LOAD_ATTR":
        attributes.append(str(instructions[n].argval))
        n -= 1
    if n < 0:
        return None
    base = instructions[n]
    if base.opname in _LOCAL_OPS:
        receiver = frame.f_locals.get(base.argval, _MISSING)
    elif base.opname in _GLOBAL_OPS:
        receiver = frame.f_globals.get(base.argval, _MISSING)
    else:
        return None
    for attribute in reversed(attributes):
        namespace = getattr(receiver, "__dict__", None)
        receiver = namespace.get(attribute, _MISSING) if isinstance(namespace, dict) else _MISSING
    if receiver is _MISSING:
        return None
    return receiver, method, tuple(reversed(args))


def _in_simple_queue_get(frame: FrameType) -> bool:
    call = _called_method(frame)
    if call is None:
        return False
    receiver, method, args = call
    return (
        isinstance(receiver, queue.SimpleQueue)
        and method == "get"
        and args in ((), (True,), (True, None))
        and receiver.empty()
    )


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
            frame.f_lineno == _WORKER_GET_LINE
            and work_queue is not None
            and bool(work_queue.empty())
        )
    return _in_simple_queue_get(frame)


def _module(frame: FrameType) -> str:
    return str(frame.f_globals.get("__name__", ""))


def judge(name: str, frame: FrameType | None) -> ThreadState:
    """The state of a thread whose innermost Python frame is ``frame``."""
    if frame is None:  # starting or ending: no Python frame to read yet
        return ThreadState(name, False, "", "<no Python frame>")
    if not _idle_at(frame):
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

    __slots__ = ("_job_ids", "_on_start", "jobs", "threads")

    def __init__(self, on_start: Callable[[], None] | None = None) -> None:
        #: Watched threads, in start order (a dict as an ordered set). The loop
        #: reads this and ``jobs`` for truth before it asks anything costlier.
        self.threads: dict[threading.Thread, None] = {}
        #: Running ThreadPoolExecutor jobs: job number -> ident of their thread.
        self.jobs: dict[int, int] = {}
        self._job_ids = itertools.count()
        #: Called on the loop's thread when it starts a thread (real work begins).
        self._on_start = on_start

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
        idle_jobs = sum(1 for ident in list(self.jobs.values()) if _idle_frame(frames.get(ident)))
        if jobs_in_flight > idle_jobs:
            return True
        return any(
            thread.ident is None or not _idle_frame(frames.get(thread.ident))
            for thread in self._live_threads()
        )

    def states(self) -> list[ThreadState]:
        """Every watched thread still alive, with its state (for reports).

        Executor workers with nothing to do are left out: they wait for
        nothing in particular.
        """
        frames = sys._current_frames()
        states = [
            judge(thread.name, frames.get(thread.ident) if thread.ident is not None else None)
            for thread in self._live_threads()
        ]
        return [state for state in states if state.waits_in != _IDLE_WORKER]


def _idle_frame(frame: FrameType | None) -> bool:
    return frame is not None and _idle_at(frame)


def recheck_due(due: int | None, now: int) -> int:
    """The tick until which to flow before looking at the threads again."""
    soon = now + RECHECK_TICKS
    return soon if due is None else min(due, soon)


# -- which threads count: Thread.start while a virtual loop runs -------------------

_real_start = threading.Thread.start
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
    if loop_watch is not None and loop_watch._on_start is not None:
        loop_watch._on_start()
    try:
        _real_start(self)
    except BaseException:
        watch.discard(self)
        raise


def enter(watch: ThreadWatch) -> None:
    """The current thread runs the loop of ``watch``: threads it starts count."""
    global _active
    with _lock:
        _loop_threads[threading.get_ident()] = watch
        _active += 1
        if _active == 1:
            threading.Thread.start = _start  # type: ignore[method-assign]


def leave() -> None:
    """The current thread's loop stopped."""
    global _active
    with _lock:
        if _loop_threads.pop(threading.get_ident(), None) is None:
            return
        _active -= 1
        if _active == 0 and threading.Thread.start is _start:
            threading.Thread.start = _real_start  # type: ignore[method-assign]
