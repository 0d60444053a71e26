"""Record every task step of an event loop.

A *step* is the run of a task between two suspensions: one ``send`` (or
``throw``) into its coroutine.  The tracer installs a task factory, chained
after any factory already set (eager tasks included), that wraps each task's
coroutine in a small recorder.  The recorder notes, around each step, the real
time (``perf_counter_ns``) and the loop time, what the task awaits after the
step, and how the task ended.  It works on any loop that honours task
factories: asyncio's own, :class:`~pytest_asyncspec.clock.virtual_loop.VirtualClockLoop`
and uvloop.

Records are packed into one ``array('q')`` (six integers a step, 48 bytes) so a
million steps fit in under 50 MB; :class:`Trace` decodes them on demand.  The
per-step work lives in :mod:`pytest_asyncspec.tracing.step_log` (in C where it is
built); what happens once per task is kept to a few appends here, and task
records are built when first read.
"""

from __future__ import annotations

import asyncio
import enum
import sys
import traceback
import weakref
from array import array
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from types import CodeType
from typing import Any, Protocol

from ..clock.ticks import TICKS_PER_SECOND
from ..clock.virtual_loop import VirtualClockLoop
from ..introspection import ASYNCIO_DIR, PACKAGE_DIR, live_coro
from .step_log import (
    AWAITED_SHIFT as _AWAITED_SHIFT,
    LABEL_SHIFT as _LABEL_SHIFT,
    WORDS as _WORDS,
    RecorderBase,
    StepLog,
    coarse_resolution_ns,
    prepare_subclass,
)
from .task_table import Mark, Outcome as Outcome, Site, TaskRecord as TaskRecord, TaskTable


class Awaits(enum.IntEnum):
    """What a task waits on after a step."""

    YIELD = 0  #: a bare yield (``asyncio.sleep(0)``): runnable again at once
    SLEEP = 1  #: a timer (``asyncio.sleep``)
    FUTURE = 2  #: a future nothing here recognises
    QUEUE = 3  #: ``asyncio.Queue`` get, put or join
    LOCK = 4  #: a lock, event, condition, semaphore or barrier
    IO = 5  #: a stream, socket or subprocess read/write
    TASK = 6  #: another task
    DONE = 7  #: nothing: the task finished in this step


def _kinds_by_code() -> dict[CodeType, Awaits]:
    import asyncio.base_events
    import asyncio.locks
    import asyncio.queues
    import asyncio.selector_events
    import asyncio.streams
    import asyncio.tasks

    kinds: dict[CodeType, Awaits] = {}

    def add(owner: object, names: tuple[str, ...], kind: Awaits) -> None:
        for name in names:
            function = getattr(owner, name, None)
            code = getattr(function, "__code__", None)
            if code is not None:
                kinds[code] = kind

    add(asyncio.tasks, ("sleep",), Awaits.SLEEP)
    add(asyncio.queues.Queue, ("get", "put", "join"), Awaits.QUEUE)
    for lock_type in ("Lock", "Event", "Condition", "Semaphore", "BoundedSemaphore", "Barrier"):
        owner = getattr(asyncio.locks, lock_type, None)
        if owner is not None:
            add(owner, ("acquire", "wait", "wait_for", "_block", "_wait"), Awaits.LOCK)
    add(
        asyncio.streams.StreamReader,
        ("_wait_for_data", "read", "readline", "readexactly", "readuntil"),
        Awaits.IO,
    )
    add(asyncio.streams.StreamWriter, ("drain", "wait_closed"), Awaits.IO)
    add(asyncio.streams.FlowControlMixin, ("_drain_helper",), Awaits.IO)
    add(
        asyncio.selector_events.BaseSelectorEventLoop,
        ("sock_recv", "sock_recv_into", "sock_sendall", "sock_connect", "sock_accept"),
        Awaits.IO,
    )
    add(asyncio.base_events.BaseEventLoop, ("sock_sendfile", "getaddrinfo"), Awaits.IO)
    return kinds


_KIND_BY_CODE = _kinds_by_code()


def _awaited_kind(coro: Any) -> Awaits:
    # The outermost function we recognise on the await chain says what the
    # task waits for: Queue.join waits on an Event inside, but the task waits
    # on the queue.  Its own walk, not introspection.awaitable_frames: this
    # runs on every step that yields, and stops at the first known code
    # without building a list.
    node = coro
    while node is not None:
        code = getattr(node, "cr_code", None) or getattr(node, "gi_code", None)
        if code is None:
            break
        kind = _KIND_BY_CODE.get(code)
        if kind is not None:
            return kind
        node = getattr(node, "cr_await", None) or getattr(node, "gi_yieldfrom", None)
    return Awaits.FUTURE


@dataclass(frozen=True)
class Step:
    """One step of one task (times in loop seconds and real nanoseconds)."""

    index: int
    task: int
    start: float
    end: float
    real_start_ns: int
    real_end_ns: int
    awaits: Awaits
    awaited_task: int | None
    #: Label of the task whose step this one ran inside (an eager task's
    #: first step runs inside its creator's step), or None.
    inside: int | None

    @property
    def duration(self) -> float:
        """Loop time the step held the loop (virtual: blocking sleeps count)."""
        return self.end - self.start

    @property
    def real_ns(self) -> int:
        return self.real_end_ns - self.real_start_ns


class _StepRecorder(RecorderBase):
    """Stands in for a task's coroutine and records each step it runs.

    The per-step work is :class:`~pytest_asyncspec.tracing.step_log.RecorderBase`'s
    (in C when the accelerator is built); this subclass adds the rare paths
    and the coroutine's identity.  Registered as a
    :class:`collections.abc.Coroutine` so asyncio accepts it; the ``cr_*``
    attributes forward to the real coroutine so task reprs,
    ``Task.get_stack`` and await-chain walks keep working.
    """

    # No __getattr__: it would slow every attribute load on the recorder.
    # The coroutine's names are copied into these slots at creation, since
    # asyncio reads them for task reprs.
    __slots__ = ("__name__", "__qualname__", "__weakref__", "_tracer")
    __name__: str
    __qualname__: str
    _tracer: Tracer

    def _yielded(self, result: Any) -> int:
        # A step yielded a future: what does the task wait for?
        try:
            if isinstance(result, asyncio.Task):
                return self._tracer._label_of(result) << _LABEL_SHIFT | Awaits.TASK
            return int(_awaited_kind(self._coro))
        except Exception:
            self._tracer._internal_error("classifying what a task awaits")
            return int(Awaits.FUTURE)

    cr_await = property(lambda self: self._coro.cr_await)
    cr_code = property(lambda self: self._coro.cr_code)
    cr_frame = property(lambda self: self._coro.cr_frame)
    cr_origin = property(lambda self: self._coro.cr_origin)
    cr_running = property(lambda self: self._coro.cr_running)
    cr_suspended = property(lambda self: self._coro.cr_suspended)
    # Generator-based coroutines (types.coroutine) answer to gi_* instead.
    gi_code = property(lambda self: self._coro.gi_code)
    gi_frame = property(lambda self: self._coro.gi_frame)
    gi_running = property(lambda self: self._coro.gi_running)
    gi_suspended = property(lambda self: self._coro.gi_suspended)
    gi_yieldfrom = property(lambda self: self._coro.gi_yieldfrom)

    def __repr__(self) -> str:
        return repr(self._coro)


Coroutine.register(_StepRecorder)
prepare_subclass(_StepRecorder)

TaskFactory = Callable[..., "asyncio.Future[Any]"]


class _NameKeepingTask(asyncio.Task):  # type: ignore[type-arg]
    """CPython 3.13.0's create_task renames a factory-made task to 'None' when
    no name was given (fixed in 3.13.1); installing our factory must not
    change task names, so ignore that call."""

    def set_name(self, value: object) -> None:
        if value is not None:
            super().set_name(value)


# asyncio's task repr prints the class name: keep reading "Task".
_NameKeepingTask.__name__ = _NameKeepingTask.__qualname__ = "Task"


_TASK_TYPE: type[asyncio.Task[Any]] = (
    _NameKeepingTask if sys.version_info[:3] == (3, 13, 0) else asyncio.Task
)


def _runs(task: asyncio.Future[Any], recorder: _StepRecorder) -> bool:
    """Whether ``task`` steps ``recorder`` itself (no factory wrapped it)."""
    if not isinstance(task, asyncio.Task):
        return False
    # A task that already finished (eagerly) is ours: a wrapping factory is
    # rare, and its coroutine can no longer be asked for (see live_coro).
    return task.done() or live_coro(task) is recorder


def _creation_site() -> Site | None:
    # The first frame outside asyncio and this package is where user code
    # asked for the task (create_task, gather, ensure_future, ...).  Once a
    # task: which files are ours is remembered, not recomputed.
    frame: Any = sys._getframe(2)
    internal = _INTERNAL_FILES
    callee: Any = None
    while frame is not None:
        code = frame.f_code
        filename = code.co_filename
        inside = internal.get(filename)
        if inside is None:
            inside = internal[filename] = filename.startswith((ASYNCIO_DIR, PACKAGE_DIR))
        if not inside:
            return (filename, frame.f_lineno)
        if code is _HANDLE_RUN and callee is not None:
            # Made by a callback the loop ran, inside asyncio (start_server's
            # connection handler, say): the frames further out only drive the
            # loop (pytest-asyncio's runner), so they would mislead.
            name = getattr(callee.f_code, "co_qualname", callee.f_code.co_name)
            return (f"<asyncio's {name}, a loop callback>", 0)
        callee = frame
        frame = frame.f_back
    return None


def _is_helper(coro: Any) -> bool:
    """Whether the task runs a coroutine of this package or of pytest-asyncio
    (their machinery: an exploration's settling task, say), not the user's."""
    code = getattr(coro, "cr_code", None)
    if code is None:
        return False
    filename = code.co_filename
    helper = _HELPER_FILES.get(filename)
    if helper is None:
        helper = _HELPER_FILES[filename] = (
            filename.startswith(PACKAGE_DIR) or "/pytest_asyncio/" in filename
        )
    return helper


_HELPER_FILES: dict[str, bool] = {}
#: The code of the function through which the loop runs every callback.
_HANDLE_RUN = asyncio.Handle._run.__code__
_INTERNAL_FILES: dict[str, bool] = {}


class Tracer:
    """Records the task steps of one loop while installed.

    Use it around a loop (``with Tracer(loop) as trace: loop.run_until_complete(...)``)
    or from inside one (``tracer = Tracer.start()``, then ``tracer.stop()``).
    Only tasks created while the tracer is installed are recorded.

    ``keep_over`` (seconds) keeps only the steps that held the loop longer than
    that in real time: what blocking detection needs, at a fraction of the
    cost of a full trace.  Tasks are recorded either way.  From ten kernel
    ticks up (40 ms at 250 Hz) the steps are then stamped with the coarse
    monotonic clock, so their real times are good to one tick.

    ``task_details=False`` skips what only reports of tasks need (where each
    was created, when, and its name read right after create_task named it):
    the cheapest blocking gate, whose reports name the blocking task as the
    watchdog saw it.
    """

    #: Its loop callbacks only read task names: an exploring loop runs them
    #: outside the schedule, so tracing a test does not change its schedules.
    _asyncspec_bookkeeping = True

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        keep_over: float | None = None,
        task_details: bool = True,
    ) -> None:
        self.loop = loop
        self._vloop = loop if isinstance(loop, VirtualClockLoop) else None
        #: The running step and the kept steps (see step_log).
        keep_over_ns = -1 if keep_over is None else round(keep_over * TICKS_PER_SECOND)
        # Keeping only long steps needs stamps good to a tenth of the
        # threshold: the kernel's coarse clock is that (its tick, 1-4 ms) for
        # thresholds from 10 ticks up, at a fifth of the precise clock's cost.
        resolution = coarse_resolution_ns()
        coarse = keep_over_ns >= 0 and resolution is not None and keep_over_ns >= 10 * resolution
        self.log = StepLog(self._vloop, keep_over_ns, coarse)
        #: What the tracer saw go wrong inside itself (never the test's business).
        self.internal_errors: list[str] = []
        self._table = TaskTable(self.log.endings)
        self._task_details = task_details
        # Tasks whose coroutine is not our recorder (a factory chained after
        # ours wrapped it): their labels, for record_of and awaited tasks.
        self._labels: weakref.WeakKeyDictionary[asyncio.Future[Any], int] = (
            weakref.WeakKeyDictionary()
        )
        #: Tasks made since the last loop iteration, whose name create_task
        #: may have set after the factory returned.
        self._unnamed: list[tuple[int, asyncio.Future[Any]]] = []
        self._previous_factory: Any = None
        self._installed = False
        # Real loops keep time on the monotonic clock, as perf_counter does on
        # the platforms we support: one offset converts real stamps to it.
        self._real_to_loop = round(loop.time() * TICKS_PER_SECOND) - self.log.clock()

    @property
    def records(self) -> array[int]:
        """The kept steps, six integers each (see :mod:`pytest_asyncspec.tracing.step_log`)."""
        return self.log.records

    @property
    def current(self) -> int:
        """Label of the task whose step is running (0: none); read by watchdogs."""
        return self.log.current

    @property
    def step_started_ns(self) -> int:
        """Real ns at which the latest step started; read by watchdogs."""
        return self.log.step_started_ns

    @property
    def step_serial(self) -> int:
        """Serial number of the running step (0: none); unlike its start
        stamp, never the same for two steps."""
        return self.log.step_serial

    @property
    def tasks(self) -> dict[int, TaskRecord]:
        """Every traced task by label (records are built on first read)."""
        return self._table.records()

    def _loop_now_ns(self) -> int:
        if self._vloop is not None:
            return self._vloop.virtual_ticks()
        return self.log.clock() + self._real_to_loop

    def _internal_error(self, where: str) -> None:
        self.internal_errors.append(f"tracer error while {where}:\n{traceback.format_exc()}")

    # -- installing --------------------------------------------------------

    @classmethod
    def start(cls) -> Tracer:
        """Trace the running loop from now on (call inside a coroutine)."""
        tracer = cls(asyncio.get_running_loop())
        tracer.install()
        return tracer

    def install(self) -> None:
        if self._installed:
            raise RuntimeError("this tracer is already installed")
        self._previous_factory = self.loop.get_task_factory()
        self.loop.set_task_factory(self._factory)
        self._installed = True

    def stop(self) -> Trace:
        """Stop recording new tasks; return the trace so far, fixed in size.

        Tasks created before the stop still record their later steps (their
        cancellation at loop shutdown, say) in the tracer, but the returned
        trace keeps the steps recorded up to now, so a picture drawn from it
        later shows what the test saw.
        """
        if self._installed:
            if self.loop.get_task_factory() == self._factory:
                self.loop.set_task_factory(self._previous_factory)
            self._installed = False
        self._read_new_names()
        trace = Trace(self)
        trace._end = len(trace)
        # Outcomes set after the stop (cancellation at teardown) must not
        # contradict the steps the snapshot keeps.
        trace._mark = self._table.mark()
        return trace

    def __enter__(self) -> Trace:
        self.install()
        return Trace(self)

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Once per task: keep it to appends (the records are built on first read).
    def _factory(
        self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
    ) -> asyncio.Future[Any]:
        if not self._installed:
            # stop() could not unhook us (a factory installed later chains to
            # us): make the task untraced.
            if self._previous_factory is not None:
                return self._previous_factory(loop, coro, **kwargs)  # type: ignore[no-any-return]
            return _TASK_TYPE(coro, loop=loop, **kwargs)
        name = getattr(coro, "__name__", None) or type(coro).__name__
        qualname = getattr(coro, "__qualname__", name)
        table = self._table
        if self._task_details:
            label = table.add(qualname, self.log.current, self._loop_now_ns(), _creation_site())
            if _is_helper(coro):
                table.helpers.add(label)
        else:
            label = table.add(qualname, self.log.current, 0, None)
        recorder = _StepRecorder(coro, self.log, label)
        recorder._tracer = self
        recorder.__name__ = name
        recorder.__qualname__ = qualname
        task: asyncio.Future[Any]
        if self._previous_factory is not None:
            task = self._previous_factory(loop, recorder, **kwargs)
            if not _runs(task, recorder):
                self._labels[task] = label
        else:
            task = _TASK_TYPE(recorder, loop=loop, **kwargs)
        table.bind(label, task)
        # create_task names the task only after the factory returns: read
        # the names of new tasks on the next loop iteration, holding the
        # tasks strongly until then (an eager task may have finished already,
        # with nothing else referring to it: ``await create_task(...)``).
        # Names given later with set_name are read when the records are built
        # or refreshed, if the task still exists.
        if self._task_details:
            if not self._unnamed:
                loop.call_soon(self._read_new_names)
            self._unnamed.append((label, task))
        return task

    # -- task life ---------------------------------------------------------

    def _label_of(self, task: asyncio.Future[Any]) -> int:
        """The label of a task this tracer traced, else 0."""
        # On the per-step path (a step that awaits a task): live_coro's guard
        # written in place, without the call.
        if isinstance(task, asyncio.Task) and not task.done():
            coro = task.get_coro()
            if isinstance(coro, _StepRecorder) and coro._tracer is self:
                return coro._label
        return self._labels.get(task, 0)

    def _read_new_names(self) -> None:
        for label, _ in self._unnamed:
            self._table.read_name(label)
        self._unnamed.clear()

    def record_of(self, task: asyncio.Future[Any]) -> TaskRecord | None:
        """The record of ``task`` if this tracer traced it."""
        label = self._label_of(task)
        return self.tasks.get(label) if label else None

    def remember_name(self, label: int) -> None:
        """Read the task's name now, while it exists (a blocking report is
        built after the task may be gone)."""
        self._table.read_name(label)

    def live_task(self, label: int) -> asyncio.Future[Any] | None:
        """The task with ``label`` if it still exists (tasks are held weakly)."""
        return self._table.live(label)

    def trace(self) -> Trace:
        """The recorded steps and tasks, names refreshed from live tasks."""
        self._read_new_names()
        self._table.records()
        self._table.refresh_names()
        return Trace(self)

    def position(self) -> tuple[int, int]:
        """Where the recording stands: (steps recorded, label of the next task)."""
        return len(self.records) // _WORDS, len(self._table) + 1

    def trace_since(self, position: tuple[int, int]) -> Trace:
        """The live trace from ``position`` on: the steps recorded since, and
        the tasks made since or stepping since (an exploration reads one
        schedule's tasks this way, each schedule making its own)."""
        trace = self.trace()
        trace._first, trace._first_label = position
        return trace


class TraceQueries(Protocol):
    """What a trace answers: :class:`Trace`, and the ``asyncspec_trace``
    fixture's live view of the running test's trace.  The ordering
    assertions take either."""

    @property
    def tasks(self) -> dict[int, TaskRecord]: ...
    @property
    def helper_tasks(self) -> frozenset[int]: ...
    @property
    def virtual(self) -> bool: ...
    def step(self, index: int) -> Step: ...
    def steps(self) -> Iterator[Step]: ...
    def task(self, which: int | str) -> TaskRecord: ...
    def steps_of(self, which: int | str) -> list[Step]: ...
    def start_of(self, which: int | str) -> float: ...
    def finish_of(self, which: int | str) -> float: ...
    def longest_step(self) -> Step: ...
    def blocked_total(self) -> float: ...
    def running_at(self, instant: float) -> TaskRecord | None: ...
    def every_start_before_any_finish(self, *which: int | str) -> bool: ...


class Trace:
    """A read-only view of what a :class:`Tracer` recorded."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        #: Number of steps shown (None: all, growing while the tracer records).
        self._end: int | None = None
        #: Where the tracer's task table stood at the stop (None: live), and
        #: the records as of then, built on first read.
        self._mark: Mark | None = None
        self._tasks: dict[int, TaskRecord] | None = None
        # (steps covered, label -> step indexes): rebuilt when steps are added.
        self._index: tuple[int, dict[int, list[int]]] = (0, {})
        #: A window (Tracer.trace_since): the first step shown, and the first
        #: label of the tasks made in it.
        self._first = 0
        self._first_label = 1

    @property
    def tasks(self) -> dict[int, TaskRecord]:
        if self._mark is None:
            every = self._tracer.tasks
        else:
            if self._tasks is None:
                self._tasks = self._tracer._table.records_at(self._mark)
            every = self._tasks
        if self._first == 0 and self._first_label <= 1:
            return every
        # A task made before the window still belongs to it if it stepped in it
        # (a server a fixture started, serving this schedule's requests).
        stepped = self._steps_by_task()
        return {
            label: record
            for label, record in every.items()
            if label >= self._first_label or label in stepped
        }

    @property
    def helper_tasks(self) -> frozenset[int]:
        """Labels of the tasks whose coroutine is this package's or
        pytest-asyncio's own (their machinery, not the code under test)."""
        return frozenset(self._tracer._table.helpers)

    @property
    def virtual(self) -> bool:
        """Whether loop times are virtual-clock times (else real loop time)."""
        return self._tracer._vloop is not None

    def __len__(self) -> int:
        recorded = len(self._tracer.records) // _WORDS
        shown = recorded if self._end is None else min(self._end, recorded)
        return max(shown - self._first, 0)

    def step(self, index: int) -> Step:
        if not 0 <= index < len(self):
            raise IndexError(f"step {index} is outside the trace (steps 0..{len(self) - 1})")
        at = self._first + index
        words = self._tracer.records[at * _WORDS : (at + 1) * _WORDS]
        key, real_start, real_end, loop_start, loop_end, links = words
        if self._tracer._vloop is None:
            loop_start = real_start + self._tracer._real_to_loop
            loop_end = real_end + self._tracer._real_to_loop
        awaited = links >> _AWAITED_SHIFT
        outer = links & 0xFFFFFFFF
        return Step(
            index=index,
            task=key >> _LABEL_SHIFT,
            start=loop_start / TICKS_PER_SECOND,
            end=loop_end / TICKS_PER_SECOND,
            real_start_ns=real_start,
            real_end_ns=real_end,
            awaits=Awaits(key & 0xFF),
            awaited_task=awaited or None,
            inside=outer or None,
        )

    def steps(self) -> Iterator[Step]:
        """Every step, in the order the steps ended."""
        for index in range(len(self)):
            yield self.step(index)

    # -- queries -------------------------------------------------------------

    def task(self, which: int | str) -> TaskRecord:
        """A task by label, or by name (the only task with that name)."""
        if isinstance(which, int):
            try:
                return self.tasks[which]
            except KeyError:
                raise LookupError(
                    f"no traced task has label {which}; labels run 1..{len(self.tasks)}"
                ) from None
        matches = [record for record in self.tasks.values() if record.name == which]
        if not matches:  # the name timelines and trace files show an unnamed task by
            matches = [record for record in self.tasks.values() if record.shown_name == which]
        if len(matches) != 1:
            known = ", ".join(sorted({record.name for record in self.tasks.values()}))
            problem = "no traced task is" if not matches else f"{len(matches)} tasks are"
            raise LookupError(
                f"{problem} named {which!r}; pass a label or give tasks unique names "
                f"(create_task(..., name=...)). Traced names: {known}"
            )
        return matches[0]

    def steps_of(self, which: int | str) -> list[Step]:
        """The steps of one task, in order."""
        label = self.task(which).label
        return [self.step(index) for index in self._steps_by_task().get(label, [])]

    def _steps_by_task(self) -> dict[int, list[int]]:
        # Group step indexes by task from the packed keys alone, so per-task
        # queries on a large trace do not decode every step each time.
        count = len(self)
        covered, index = self._index
        if covered != count:
            index = {label: list(steps) for label, steps in index.items()}
            first = self._first
            keys = self._tracer.records[
                (first + covered) * _WORDS : (first + count) * _WORDS : _WORDS
            ]
            for offset, key in enumerate(keys, start=covered):
                index.setdefault(key >> _LABEL_SHIFT, []).append(offset)
            self._index = (count, index)
        return index

    def start_of(self, which: int | str) -> float:
        """Loop time at which the task's first step began."""
        steps = self.steps_of(which)
        if not steps:
            raise LookupError(f"task {which!r} never ran a step")
        return steps[0].start

    def finish_of(self, which: int | str) -> float:
        """Loop time at which the task finished (its last step ended)."""
        steps = self.steps_of(which)
        if not steps or steps[-1].awaits is not Awaits.DONE:
            raise LookupError(f"task {which!r} has not finished")
        return steps[-1].end

    def longest_step(self) -> Step:
        """The step that held the loop longest (nested eager steps not counted twice)."""
        top = [step for step in self.steps() if step.inside is None]
        if not top:
            raise LookupError("the trace has no steps")
        return max(top, key=lambda step: step.duration)

    def blocked_total(self) -> float:
        """Loop time spent inside task steps, each instant counted once."""
        return sum(step.duration for step in self.steps() if step.inside is None)

    def running_at(self, instant: float) -> TaskRecord | None:
        """The task whose step held the loop at loop time ``instant``, if any."""
        for step in self.steps():
            if step.inside is None and step.start <= instant < step.end:
                return self.tasks[step.task]
        return None

    def every_start_before_any_finish(self, *which: int | str) -> bool:
        """Did all the given tasks (default: all) start before any of them finished?"""
        labels = [self.task(w).label for w in which] or list(self.tasks)
        starts = [self.start_of(label) for label in labels]
        finishes = [self.finish_of(label) for label in labels if self._finished(label)]
        if not finishes:
            return True
        # Equal loop times cannot tell order apart; the real stamps can.  Step
        # indexes cannot: steps are recorded when they end, so an eager
        # child's step precedes its parent's, and a one-step task's start and
        # finish share an index.
        last_start = max(self.steps_of(label)[0].real_start_ns for label in labels)
        first_finish = min(
            self.steps_of(label)[-1].real_end_ns for label in labels if self._finished(label)
        )
        return max(starts) <= min(finishes) and last_start < first_finish

    def _finished(self, label: int) -> bool:
        return self.tasks[label].outcome is not Outcome.PENDING
