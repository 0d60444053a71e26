"""Fail a test whose event loop waits for an event that nothing will deliver.

A test that awaits something never set beside a listening server (nothing
will ever connect) hangs in real time: on the virtual clock the loop cannot
call it a deadlock (a client may yet connect), and on the real clock the
stock loop waits in its selector forever.  :class:`HangWatch` notices such a
loop from another thread and ends the test with the pending-task report of
:func:`~pytest_asyncspec.checks.hang.hang_report`, pytest-timeout or not.

**What counts as a hang.**  The loop thread has been inside *one* call of its
selector's ``select`` for ``hang_after`` seconds of real time (the same frame
object at every look, so the loop never woke meanwhile), and at every look
in that span nothing but an outside source could wake it:

* no callback is ready and no timer is set (a timer that will fire, however
  far ahead, is not a hang: ``await asyncio.sleep(100)`` is a legitimate
  wait), and no signal alarm the loop handles is armed;
* every descriptor the loop waits on is a listening socket (a server waiting
  for clients; on the virtual clock an unconnected datagram socket that sent
  nothing outside counts as one) or a connection whose peer is this same,
  idle loop (see :mod:`~pytest_asyncspec.clock.inflight`).  A connection to a peer outside the loop,
  a pipe to a child, any other descriptor means an event may still come:
  never a hang (pytest-timeout bounds such waits);
* no child process of the test process is running;
* no thread started since pytest started is busy: a thread counts as idle
  only in an untimed wait (the judgment of
  :func:`~pytest_asyncspec.clock.threads.judge`, the one the virtual clock
  uses).  Threads that existed before (pytest-xdist's),
  pytest-timeout's timer and this watch's own are not asked.

So a correct test is never failed: whatever could still wake the loop lets
it wait, for as long as it takes.

**Ending the test.**  The watch builds the report while the loop is idle,
then, through ``call_soon_threadsafe``, cancels the tasks that the runner's
``run_until_complete`` waits for (the test's, or the fixture's being set up
or torn down), or stops the loop when it finds none.  The phase then ends,
fixtures are torn down and the runner closes the loop as after any failure;
the plugin turns that phase's report into the failure, whose text is the
report (once, even if pytest-timeout fires too).

**Reading another thread's stack.**  Only through ``sys._current_frames()``,
under the GIL, and only the frames' code, line and globals: never a frame's
``f_locals`` (see :func:`~pytest_asyncspec.clock.waiting.foreign_frames`), never faulthandler.  One
thread per run does the looking; it wakes a few times per span while a test
is armed, and about once a second otherwise.
"""

from __future__ import annotations

import asyncio
import math
import os
import selectors
import signal
import socket
import stat
import sys
import threading
import time
import traceback
from asyncio import base_events
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

#: How often the watch looks while a test is armed: four times a span, but
#: never more often than every 5 ms nor less than every second.
_LOOKS_PER_SPAN = 4
_MIN_INTERVAL = 0.005
_MAX_INTERVAL = 1.0
#: How long the thread sleeps while no test is armed.
_IDLE_INTERVAL = 1.0
_JOIN_TIMEOUT = 5.0
#: Frames of the idle loop thread's stack shown (from its run_forever down).
_STACK_LIMIT = 4
_CANCEL_MESSAGE = "asyncspec: the test hung (see its report)"
#: The virtual clock's thread watch, looked up rather than imported: it
#: exists only once a virtual loop was made, and the watch must not make one.
_THREAD_WATCH_MODULE = "pytest_asyncspec.clock.threads"


def _select_codes() -> frozenset[CodeType]:
    codes = set()
    for value in vars(selectors).values():
        if isinstance(value, type) and issubclass(value, selectors.BaseSelector):
            method = vars(value).get("select")
            code = getattr(method, "__code__", None)
            if isinstance(code, CodeType):
                codes.add(code)
    return frozenset(codes)


#: The code of every standard selector's ``select``: a loop thread whose
#: innermost Python frame runs one of them is waiting in its selector.
_SELECT_CODES = _select_codes()


class Armed:
    """One test under watch, from the start of its setup to the end of its teardown."""

    __slots__ = (
        "_frame",
        "_since",
        "errors",
        "fired",
        "get_loop",
        "get_tracer",
        "known_threads",
        "message",
        "reported",
        "span",
        "stopped_loop",
    )

    def __init__(
        self,
        span: float,
        get_loop: Callable[[], asyncio.AbstractEventLoop | None],
        get_tracer: Callable[[], Any] = lambda: None,
        known_threads: set[int | None] | None = None,
    ) -> None:
        self.span = span
        self.get_loop = get_loop
        self.get_tracer = get_tracer
        #: Threads not asked whether they are busy: the run's own (the plugin
        #: gives those alive when pytest started: pytest-xdist's), by default
        #: those alive now.
        if known_threads is None:
            known_threads = {thread.ident for thread in threading.enumerate()}
        self.known_threads = known_threads
        #: Set once the hang is diagnosed: the failure's text.
        self.fired = False
        self.message = ""
        #: Whether a report of the test carries the failure yet.
        self.reported = False
        #: The loop was stopped (still stuck a span after the cancellation).
        self.stopped_loop = False
        #: The watch's own errors (the test's outcome never depends on them).
        self.errors: list[str] = []
        #: The selector call the loop thread was seen idle in, and since when.
        self._frame: FrameType | None = None
        self._since = 0.0

    @property
    def interval(self) -> float:
        return min(max(self.span / _LOOKS_PER_SPAN, _MIN_INTERVAL), _MAX_INTERVAL)

    def _forget(self) -> None:
        self._frame = None


class HangWatch:
    """The run's hang watchdog: one thread, one armed test at a time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        # Read on the watch's own thread, where the virtual clock never
        # replaces the time module's readings.
        self._clock = clock
        self._armed: Armed | None = None
        #: Held while a diagnosis is made and while a test is disarmed, so a
        #: test is never failed after it ended.
        self._lock = threading.Lock()
        self._stopping = False
        #: Set to wake the thread: at the end, or for a test whose span is
        #: shorter than the idle sleep.
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self, armed: Armed) -> Armed:
        """Watch ``armed``'s loop from now on (the thread starts on first use)."""
        self._armed = armed
        if armed.interval < _IDLE_INTERVAL:
            self._wake.set()
        if self._thread is None:
            thread = threading.Thread(target=self._run, name="asyncspec-hang-watch", daemon=True)
            # Never real work a virtual clock waits for (its thread watch
            # exists only once a virtual loop was made).
            watch = sys.modules.get(_THREAD_WATCH_MODULE)
            if watch is not None:
                watch.exclude(thread)
            thread.start()
            self._thread = thread
        return armed

    def disarm(self, armed: Armed) -> None:
        with self._lock:
            if self._armed is armed:
                self._armed = None
            armed._forget()

    def stop(self) -> None:
        """End the thread (at the end of the run)."""
        self._stopping = True
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(_JOIN_TIMEOUT)

    # -- the watch's thread ----------------------------------------------------

    def _run(self) -> None:
        while True:
            armed = self._armed
            self._wake.wait(_IDLE_INTERVAL if armed is None else armed.interval)
            self._wake.clear()
            if self._stopping:
                return
            armed = self._armed
            if armed is None or (armed.fired and armed.stopped_loop):
                continue
            try:
                self._look(armed)
            except Exception:
                armed.errors.append(traceback.format_exc())

    def _look(self, armed: Armed) -> None:
        loop = armed.get_loop()
        frame = _idle_select(loop)
        if loop is None or frame is None or not _only_outside_wakers(loop, armed.known_threads):
            armed._forget()
            return
        now = self._clock()
        if frame is not armed._frame:
            armed._frame, armed._since = frame, now
            return
        if now - armed._since < armed.span:
            return
        # Still the same select call after the checks: the loop never woke.
        if _idle_select(loop) is not frame:
            armed._forget()
            return
        armed._forget()
        with self._lock:
            if self._armed is not armed:
                return  # the test ended meanwhile
            if armed.fired:
                # Still stuck a span after the cancellation (a task that
                # swallowed it): stop the loop; the report stands.
                armed.stopped_loop = True
                loop.call_soon_threadsafe(loop.stop)
                return
            armed.message = _message(loop, armed)
            armed.fired = True
            loop.call_soon_threadsafe(_interrupt, loop)


def _idle_select(loop: asyncio.AbstractEventLoop | None) -> FrameType | None:
    """The frame of the selector call the loop thread waits in, if it does."""
    if loop is None or loop.is_closed():
        return None
    ident = getattr(loop, "_thread_id", None)
    if not isinstance(ident, int):
        return None  # not running, or a loop that does not say (uvloop)
    frame = sys._current_frames().get(ident)
    if frame is None or frame.f_code not in _SELECT_CODES:
        return None
    return frame


def _only_outside_wakers(loop: asyncio.AbstractEventLoop, known_threads: set[int | None]) -> bool:
    """Whether nothing but a listening socket or an outside source could
    wake the idle ``loop`` (see the module docstring).  Any doubt, a read
    that fails because the loop moved on included, answers no."""
    from ..clock.waiting import foreign_frames

    try:
        with foreign_frames():  # judging threads names the line each waits at
            return (
                _nothing_scheduled(loop)
                and _only_listening(loop)
                and not _children_running()
                and not _threads_busy(loop, known_threads)
            )
    except Exception:
        return False


def _nothing_scheduled(loop: Any) -> bool:
    if len(loop._ready) or getattr(loop, "_held", 0) or loop._stopping:
        return False
    # Stock loops keep timers in _scheduled; the virtual clock in its own heap.
    for handle in list(loop._scheduled):
        if not handle.cancelled() and math.isfinite(handle.when()):
            return False
    heap = getattr(loop, "_timer_heap", None)
    if heap:
        from ..clock.ticks import NEVER

        for due, _, handle in list(heap):
            if due < NEVER and not handle.cancelled():
                return False
    handlers = getattr(loop, "_signal_handlers", None)
    return not (
        handlers and signal.SIGALRM in handlers and signal.getitimer(signal.ITIMER_REAL)[0] > 0
    )


def _only_listening(loop: Any) -> bool:
    """Every descriptor the loop waits on is a listening socket or a
    connection to a peer the loop itself holds."""
    own = loop._ssock.fileno()
    registered = {key.fd: key.events for key in loop._selector.get_map().values() if key.fd != own}
    if not registered:
        return True
    from ..clock.inflight import FdKind, PeerTracker, PeerTrackingLoop

    if isinstance(loop, PeerTrackingLoop):
        # It knows which datagram sockets sent outside (a client awaiting a reply).
        kinds = loop._peer_kinds(registered)
    else:
        if any(_unconnected_datagram(fd) for fd in registered):
            return False  # it may have sent a request outside: a reply may come
        kinds = PeerTracker().kinds(registered, getattr(loop, "_transports", {}))
    return FdKind.EXTERNAL not in kinds


def _unconnected_datagram(fd: int) -> bool:
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return False
        sock = socket.socket(fileno=fd)
    except OSError:
        return True  # gone meanwhile: say nothing sure
    try:
        if sock.type != socket.SOCK_DGRAM:
            return False
        try:
            sock.getpeername()
        except OSError:
            return True
        return False
    finally:
        sock.detach()


def _children_running() -> bool:
    """Whether a child process of this process runs (Linux: ``/proc``; a
    zombie waiting to be reaped does not run).  Elsewhere none is seen."""
    from ..clock import procfs

    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return False
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as listing:
                pids = listing.read().split()
        except OSError:
            continue
        for pid in pids:
            if procfs.stat_state(f"/proc/{int(pid)}/stat") not in (None, b"Z"):
                return True
    return False


def _threads_busy(loop: Any, known_threads: set[int | None]) -> bool:
    """Whether a thread started since the test began is doing real work."""
    from ..clock.threads import judge

    loop_thread = getattr(loop, "_thread_id", None)
    me = threading.get_ident()
    frames = sys._current_frames()
    for thread in threading.enumerate():
        ident = thread.ident
        if ident in known_threads or ident in (loop_thread, me) or _timeout_timer(thread):
            continue
        if ident is None or not judge(thread.name, frames.get(ident), ident).idle:
            return True
    return False


def _timeout_timer(thread: threading.Thread) -> bool:
    """pytest-timeout's own timer (its thread method): it ends the test
    itself, and never wakes the loop."""
    function = getattr(thread, "function", None)
    return getattr(function, "__module__", None) == "pytest_timeout"


def _message(loop: asyncio.AbstractEventLoop, armed: Armed) -> str:
    from .hang import hang_report

    try:
        # The loop is idle: the frames under its selector call are its own.
        report = hang_report(loop, tracer=armed.get_tracer(), stack_limit=_STACK_LIMIT)
    except Exception:  # hang_report guards its reads; this is a last resort
        report = f"(the pending-task report failed:\n{traceback.format_exc()})"
    return (
        f"asyncspec: the test hung: its event loop waited {armed.span:g} s of real time in "
        "its selector with no callback ready, no timer set, no busy thread or child "
        "process and no peer outside the loop, so only a listening socket or a source "
        "outside the test could have woken it (hang_after: give the test more with "
        "@pytest.mark.asyncspec(hang_after=SECONDS), or hang_after='off')\n" + report
    )


def _interrupt(loop: asyncio.AbstractEventLoop) -> None:
    """On the loop thread: cancel what the runner waits for, else stop the loop."""
    roots = [task for task in asyncio.all_tasks(loop) if _awaited_by_runner(task)]
    for task in roots:
        task.cancel(_CANCEL_MESSAGE)
    if not roots:
        loop.stop()


def _awaited_by_runner(task: asyncio.Task[Any]) -> bool:
    # run_until_complete(task) adds this done callback to the task it runs.
    callbacks = getattr(task, "_callbacks", None) or ()
    return any(
        getattr(entry, "__getitem__", None) is not None
        and entry[0] is base_events._run_until_complete_cb  # type: ignore[attr-defined]
        for entry in callbacks
    )
