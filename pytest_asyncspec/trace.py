"""Record every task step of an event loop.

A *step* is the run of a task between two suspensions: one ``send`` (or
``throw``) into its coroutine.  The tracer installs a task factory, chained
after any factory already set (eager tasks included), that wraps each task's
coroutine in a small recorder.  The recorder notes, around each step, the real
time (``perf_counter_ns``) and the loop time, what the task awaits after the
step, and how the task ended.  It works on any loop that honours task
factories: asyncio's own, :class:`~pytest_asyncspec.clock.VirtualClockLoop`
and uvloop.

Records are packed into one ``array('q')`` (six integers a step, 48 bytes) so a
million steps fit in under 50 MB; :class:`Trace` decodes them on demand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import sys
import weakref
from array import array
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from struct import Struct
from types import CodeType
from typing import Any

from . import time_patch
from .clock import VirtualClockLoop
from .ticks import TICKS_PER_SECOND

_real_ns = time_patch.real_perf_counter_ns

#: Integers recorded per step: key (label << 8 | awaits), real start, real
#: end, loop start, loop end (virtual loops only; 0 on real loops, whose loop
#: time is derived from the real stamps), and awaited << 32 | outer, where
#: outer is the label of the step this one ran inside (eager tasks), or 0.
_WORDS = 6
_LABEL_SHIFT = 8
_AWAITED_SHIFT = 32
#: Packs one step's six words for ``array.frombytes``: array.extend with a
#: tuple converts each item through PyArg_Parse, which cost more than the
#: rest of the recording together.
_PACK = Struct("=6q").pack


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


class Outcome(enum.Enum):
    """How a task ended (``PENDING`` while it has not)."""

    PENDING = "pending"
    RETURNED = "returned"
    RAISED = "raised"
    CANCELLED = "cancelled"


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
    # on the queue.
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


@dataclass
class TaskRecord:
    """One traced task: who it is, who made it, how it ended."""

    label: int
    name: str
    coroutine: str
    parent: int | None
    created_at: float
    created_where: str
    outcome: Outcome = Outcome.PENDING
    error: str | None = None


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


class _StepRecorder:
    """Stands in for a task's coroutine and records each step it runs.

    Registered as a :class:`collections.abc.Coroutine` so asyncio accepts it;
    the ``cr_*`` attributes forward to the real coroutine so task reprs,
    ``Task.get_stack`` and await-chain walks keep working.
    """

    # No __getattr__: a Python-level __getattr__ makes every attribute load on
    # the recorder (self._coro, self._tracer, ... in send) take CPython's
    # generic, unspecialised path.  The coroutine's identity is forwarded by
    # the properties below and by these two slots, copied at creation.
    __slots__ = ("__name__", "__qualname__", "__weakref__", "_coro", "_label", "_task", "_tracer")

    def __init__(self, coro: Coroutine[Any, Any, Any], tracer: Tracer, label: int) -> None:
        self._coro = coro
        self.__name__: str = getattr(coro, "__name__", type(coro).__name__)
        self.__qualname__: str = getattr(coro, "__qualname__", self.__name__)
        self._tracer = tracer
        self._label = label
        self._task: weakref.ref[asyncio.Future[Any]] | None = None

    # send() is the hot path of tracing (once per step): everything it does
    # is inlined, and loop time is read from the virtual loop's attribute
    # directly (real loops' times are derived from the real stamps later).
    def send(self, value: Any = None) -> Any:
        tracer = self._tracer
        label = self._label
        outer = tracer.current
        outer_started = tracer.step_started_ns
        vloop = tracer._vloop
        loop_start = 0 if vloop is None else vloop._ticks
        start = _real_ns()
        # Start first, then the label: a watchdog reading the pair between
        # the two stores sees the previous step's label with a fresh start,
        # which can only make it late, never wrong.
        tracer.step_started_ns = start
        tracer.current = label
        try:
            result = self._coro.send(value)
        except BaseException as error:
            self._finish(start, loop_start, outer, outer_started, error)
            raise
        end = _real_ns()
        if result is None:
            key = label << _LABEL_SHIFT  # Awaits.YIELD == 0
            awaited = 0
        else:
            key, awaited = self._classify(result)
        tracer.records.frombytes(
            _PACK(
                key,
                start,
                end,
                loop_start,
                0 if vloop is None else vloop._ticks,
                awaited << _AWAITED_SHIFT | outer,
            )
        )
        # Back to the step this one ran inside (an eager task's first step).
        tracer.current = outer
        tracer.step_started_ns = outer_started
        return result

    # asyncio's C task steps a coroutine that is not a native one through
    # PyIter_Send, which calls __next__ when the value sent is None: with
    # __next__ being send itself that is one Python call a step, not two.
    __next__ = send

    def throw(self, *exc_info: Any) -> Any:
        tracer = self._tracer
        outer = tracer.current
        outer_started = tracer.step_started_ns
        vloop = tracer._vloop
        loop_start = 0 if vloop is None else vloop._ticks
        start = _real_ns()
        tracer.step_started_ns = start
        tracer.current = self._label
        try:
            result = self._coro.throw(*exc_info)
        except BaseException as error:
            self._finish(start, loop_start, outer, outer_started, error)
            raise
        if result is None:
            key, awaited = self._label << _LABEL_SHIFT, 0
        else:
            key, awaited = self._classify(result)
        tracer.records.frombytes(
            _PACK(
                key,
                start,
                _real_ns(),
                loop_start,
                0 if vloop is None else vloop._ticks,
                awaited << _AWAITED_SHIFT | outer,
            )
        )
        tracer.current = outer
        tracer.step_started_ns = outer_started
        return result

    def _classify(self, result: Any) -> tuple[int, int]:
        awaited = 0
        if isinstance(result, asyncio.Task):
            kind = Awaits.TASK
            # Looked up by task, not through task.get_coro(): with stacked
            # factories the coroutine may be someone else's wrapper.
            awaited = self._tracer._labels.get(result, 0)
        else:
            kind = _awaited_kind(self._coro)
        return self._label << _LABEL_SHIFT | kind, awaited

    def _finish(
        self, start: int, loop_start: int, outer: int, outer_started: int, error: BaseException
    ) -> None:
        tracer = self._tracer
        vloop = tracer._vloop
        tracer.records.frombytes(
            _PACK(
                self._label << _LABEL_SHIFT | Awaits.DONE,
                start,
                _real_ns(),
                loop_start,
                0 if vloop is None else vloop._ticks,
                outer,
            )
        )
        tracer.current = outer
        tracer.step_started_ns = outer_started
        if isinstance(error, StopIteration):
            tracer._task_ended(self, Outcome.RETURNED, None)
        elif isinstance(error, asyncio.CancelledError):
            tracer._task_ended(self, Outcome.CANCELLED, None)
        else:
            tracer._task_ended(self, Outcome.RAISED, error)

    def close(self) -> None:
        self._coro.close()

    # Awaiting the recorder directly steps it through send(), so the steps are
    # recorded either way.
    def __await__(self) -> _StepRecorder:
        return self

    def __iter__(self) -> _StepRecorder:
        return self

    # -- the coroutine's identity, forwarded ---------------------------------

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


def _creation_site() -> str:
    # The first frame outside asyncio and this package is where user code
    # asked for the task (create_task, gather, ensure_future, ...).
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not (filename.startswith(_ASYNCIO_DIR) or filename.startswith(_PACKAGE_DIR)):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return "<unknown>"


_ASYNCIO_DIR = asyncio.__file__.rsplit("/", 1)[0]
_PACKAGE_DIR = __file__.rsplit("/", 1)[0]


class Tracer:
    """Records the task steps of one loop while installed.

    Use it around a loop (``with Tracer(loop) as trace: loop.run_until_complete(...)``)
    or from inside one (``tracer = Tracer.start()``, then ``tracer.stop()``).
    Only tasks created while the tracer is installed are recorded.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.records = array("q")
        self.tasks: dict[int, TaskRecord] = {}
        #: Label of the task whose step is running (0: none); read by watchdogs.
        self.current = 0
        #: Real ns at which the latest step started; read by watchdogs.
        self.step_started_ns = 0
        self._recorders: dict[int, weakref.ref[_StepRecorder]] = {}
        self._labels: weakref.WeakKeyDictionary[asyncio.Future[Any], int] = (
            weakref.WeakKeyDictionary()
        )
        #: Tasks made since the last loop iteration, whose name create_task
        #: may have set after the factory returned.
        self._unnamed: list[tuple[int, asyncio.Future[Any]]] = []
        self._previous_factory: Any = None
        self._installed = False
        self._vloop = loop if isinstance(loop, VirtualClockLoop) else None
        # Real loops keep time on the monotonic clock, as perf_counter does on
        # the platforms we support: one offset converts real stamps to it.
        self._real_to_loop = round(loop.time() * TICKS_PER_SECOND) - _real_ns()

    def _loop_now_ns(self) -> int:
        if self._vloop is not None:
            return self._vloop.virtual_ticks()
        return _real_ns() + self._real_to_loop

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
        trace = self.trace()
        trace._end = len(trace)
        # Outcomes set after the stop (cancellation at teardown) must not
        # contradict the steps the snapshot keeps.
        trace._tasks = {label: dataclasses.replace(r) for label, r in self.tasks.items()}
        return trace

    def __enter__(self) -> Trace:
        self.install()
        return Trace(self)

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _factory(
        self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
    ) -> asyncio.Future[Any]:
        if not self._installed:
            # stop() could not unhook us (a factory installed later chains to
            # us): make the task untraced.
            if self._previous_factory is not None:
                return self._previous_factory(loop, coro, **kwargs)  # type: ignore[no-any-return]
            return _TASK_TYPE(coro, loop=loop, **kwargs)
        label = len(self.tasks) + 1
        recorder = _StepRecorder(coro, self, label)
        self.tasks[label] = TaskRecord(
            label=label,
            name=f"task {label}",
            coroutine=getattr(coro, "__qualname__", type(coro).__name__),
            parent=self.current or None,
            created_at=self._loop_now_ns() / TICKS_PER_SECOND,
            created_where=_creation_site(),
        )
        self._recorders[label] = weakref.ref(recorder)
        task: asyncio.Future[Any]
        if self._previous_factory is not None:
            task = self._previous_factory(loop, recorder, **kwargs)
        else:
            task = _TASK_TYPE(recorder, loop=loop, **kwargs)
        recorder._task = weakref.ref(task)
        self._labels[task] = label
        self._refresh_name(recorder)
        # create_task names the task only after the factory returns (before
        # Python 3.13): read the name again once that has happened.
        # Held strongly until read: an eager task that already finished may
        # have no other reference by then (``await create_task(...)``).
        if not self._unnamed:
            loop.call_soon(self._read_new_names)
        self._unnamed.append((label, task))
        return task

    # -- task life ---------------------------------------------------------

    def _refresh_name(self, recorder: _StepRecorder) -> None:
        task = recorder._task() if recorder._task is not None else None
        if isinstance(task, asyncio.Task):
            self.tasks[recorder._label].name = task.get_name()

    def _read_new_names(self) -> None:
        for label, task in self._unnamed:
            if isinstance(task, asyncio.Task):
                self.tasks[label].name = task.get_name()
        self._unnamed.clear()

    def _task_ended(
        self, recorder: _StepRecorder, outcome: Outcome, error: BaseException | None
    ) -> None:
        record = self.tasks[recorder._label]
        record.outcome = outcome
        record.error = None if error is None else f"{type(error).__name__}: {error}"
        self._refresh_name(recorder)

    def record_of(self, task: asyncio.Future[Any]) -> TaskRecord | None:
        """The record of ``task`` if this tracer traced it."""
        label = self._labels.get(task)
        return None if label is None else self.tasks.get(label)

    def live_task(self, label: int) -> asyncio.Future[Any] | None:
        """The task with ``label`` if it still exists (tasks are held weakly)."""
        reference = self._recorders.get(label)
        recorder = reference() if reference is not None else None
        if recorder is None or recorder._task is None:
            return None
        return recorder._task()

    def trace(self) -> Trace:
        """The recorded steps and tasks, names refreshed from live tasks."""
        self._read_new_names()
        for reference in self._recorders.values():
            recorder = reference()
            if recorder is not None:
                self._refresh_name(recorder)
        return Trace(self)


class Trace:
    """A read-only view of what a :class:`Tracer` recorded."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        #: Number of steps shown (None: all, growing while the tracer records).
        self._end: int | None = None
        #: The task records as they were at the stop (None: live).
        self._tasks: dict[int, TaskRecord] | None = None
        # (steps covered, label -> step indexes): rebuilt when steps are added.
        self._index: tuple[int, dict[int, list[int]]] = (0, {})

    @property
    def tasks(self) -> dict[int, TaskRecord]:
        return self._tracer.tasks if self._tasks is None else self._tasks

    @property
    def virtual(self) -> bool:
        """Whether loop times are virtual-clock times (else real loop time)."""
        return self._tracer._vloop is not None

    def __len__(self) -> int:
        recorded = len(self._tracer.records) // _WORDS
        return recorded if self._end is None else min(self._end, recorded)

    def step(self, index: int) -> Step:
        if not 0 <= index < len(self):
            raise IndexError(f"step {index} is outside the trace (steps 0..{len(self) - 1})")
        words = self._tracer.records[index * _WORDS : (index + 1) * _WORDS]
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
            keys = self._tracer.records[covered * _WORDS : count * _WORDS : _WORDS]
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
