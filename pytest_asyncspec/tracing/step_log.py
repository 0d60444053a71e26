"""The tracer's per-step hot path: the running step and the packed records.

Two small types carry everything the tracer does once per task step:

:class:`StepLog`
    the label, real start and serial number of the step running now (read
    by the blocking watchdog) and the kept steps, six ``int64`` words each,
    in an ``array('q')``.
:class:`RecorderBase`
    stands in for a task's coroutine; each ``send``/``throw`` into it runs one
    step of the real coroutine and records it in its log.  A subclass supplies
    the one rare path: ``_yielded(result) -> int`` (what a kept step that
    yielded something other than ``None`` waits for, as
    ``awaited << 8 | kind``).  When the coroutine finishes, the log notes
    ``(label, detail)`` in :attr:`StepLog.endings`: ``detail`` is ``None``
    when it returned, else :func:`describe_ending` of the exception it
    raised.  A return is noted without a Python call (one per task would
    cost more than the task's steps); an exception is rare, and is reduced to
    plain data at once: holding it would keep its traceback, the frames on
    it and their locals alive after stock asyncio has freed them.

This module is the reference implementation and the contract.  A C
implementation of the same two types (``_step_log_c``, built on Linux when a
compiler is present) replaces them when it imports, because a Python-level
wrapper costs a few hundred nanoseconds a step, a large share of a step on
uvloop.  Set ``PYTEST_ASYNCSPEC_PURE_PYTHON=1`` to use this module's types
anyway; :data:`ACCELERATED` says which are in use.

Record layout (the words of one step): key (``label << 8 | kind``), real
start ns, real end ns, loop start and loop end (virtual loops' ticks; 0 on
real loops, whose loop time is derived from the real stamps), and
``awaited << 32 | outer`` where outer is the label of the step this one ran
inside (an eager task's first step), or 0.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from array import array
from struct import Struct
from typing import TYPE_CHECKING, Any

from ..clock import time_patch

WORDS = 6
LABEL_SHIFT = 8
AWAITED_SHIFT = 32
KIND_DONE = 7

_PACK = Struct("=6q").pack

#: What :attr:`StepLog.endings` keeps of a task's end besides its label:
#: ``None`` when it returned, else (``"cancelled"`` or ``"raised"``, the
#: error as ``"Type: message"`` or None).
EndDetail = tuple[str, str | None] | None

_CANCELLED: EndDetail = ("cancelled", None)


def describe_ending(error: BaseException) -> EndDetail:
    """What is kept of the exception a task's coroutine ended with: strings
    only (never the exception, its traceback or its frames)."""
    if isinstance(error, StopIteration):
        return None
    if isinstance(error, asyncio.CancelledError):
        return _CANCELLED
    name = type(error).__name__
    try:
        text = f"{name}: {error}"
    except Exception:  # a broken __str__ must not break the recording
        text = f"{name}: <unprintable {name} object>"
    return ("raised", text)


class PyStepLog:
    """The running step and the packed step records of one tracer.

    ``vloop`` is a :class:`~pytest_asyncspec.clock.virtual_loop.VirtualClockLoop` whose
    ticks are read as loop time, or None.  ``keep_over_ns`` keeps only steps
    longer than that many real nanoseconds (the blocking watchdog's needs);
    -1 keeps every step.  ``coarse`` (with ``keep_over_ns`` only) stamps
    steps with ``CLOCK_MONOTONIC_COARSE``: a fifth of the cost of the precise
    clock, exact to the kernel's tick (see :func:`coarse_resolution_ns`).
    Everything compared with the stamps must read :meth:`clock`.
    """

    __slots__ = (
        "_now",
        "coarse",
        "current",
        "endings",
        "keep_over_ns",
        "records",
        "step_serial",
        "step_started_ns",
        "steps",
        "vloop",
    )

    def __init__(self, vloop: Any = None, keep_over_ns: int = -1, coarse: bool = False) -> None:
        if coarse and keep_over_ns < 0:
            raise ValueError("coarse stamps are for keeping long steps only: give keep_over_ns")
        self.coarse = coarse
        self._now = _coarse_now_ns if coarse else _now_ns
        #: Label of the task whose step is running (0: none).
        self.current = 0
        #: Real ns at which the running step started.
        self.step_started_ns = 0
        #: Serial number of the running step: the value of :attr:`steps` when
        #: it began (0: none).  Unlike the start stamp (coarse, or on a
        #: virtual clock taken by steps microseconds apart) it tells any two
        #: steps apart.
        self.step_serial = 0
        #: Steps run through recorders of this log, kept or not.
        self.steps = 0
        self.keep_over_ns = keep_over_ns
        self.vloop = vloop
        self.records = array("q")
        #: Every task's end, in order: (label, what it left; see EndDetail).
        self.endings: list[tuple[int, EndDetail]] = []

    def clock(self) -> int:
        """Now, in ns, on the clock this log stamps steps with."""
        return self._now()

    def append(
        self, key: int, start: int, end: int, loop_start: int, loop_end: int, last: int
    ) -> None:
        # array.extend with a tuple converts each item through PyArg_Parse,
        # which costs more than packing the six words at once.
        self.records.frombytes(_PACK(key, start, end, loop_start, loop_end, last))


_now_ns = time_patch.real_perf_counter_ns
# Python's time module does not name it; Linux's number for it is 6.
_COARSE: int | None = getattr(
    time, "CLOCK_MONOTONIC_COARSE", 6 if sys.platform == "linux" else None
)


def _coarse_now_ns() -> int:
    return time.clock_gettime_ns(_COARSE) if _COARSE is not None else _now_ns()


def coarse_resolution_ns() -> int | None:
    """The coarse clock's resolution in ns, or None where there is none."""
    if _COARSE is None:
        return None
    return round(time.clock_getres(_COARSE) * 1e9)


class PyRecorderBase:
    """Stands in for a task's coroutine and records each step it runs."""

    __slots__ = ("_coro", "_label", "_log")

    def __init__(self, coro: Any, log: PyStepLog, label: int) -> None:
        if not 0 < label < 1 << (AWAITED_SHIFT - 1):
            raise ValueError(f"label must be in 1..2**31-1, not {label}")
        self._coro = coro
        self._log = log
        self._label = label

    def _yielded(self, result: Any) -> int:
        raise NotImplementedError

    def send(self, value: Any = None) -> Any:
        log = self._log
        outer = log.current
        outer_started = log.step_started_ns
        outer_serial = log.step_serial
        vloop = log.vloop
        loop_start = 0 if vloop is None else vloop._ticks
        start = log._now()
        # Start first, then the label: a watchdog reading the pair between
        # the two stores sees the previous step's label with a fresh start,
        # which can only make it late, never wrong.
        log.step_started_ns = start
        log.current = self._label
        log.steps += 1
        log.step_serial = log.steps
        try:
            result = self._coro.send(value)
        except BaseException as error:
            self._finish(start, loop_start, outer, outer_started, outer_serial, error)
            raise
        self._record(start, loop_start, outer, outer_started, outer_serial, result)
        return result

    # asyncio's C task steps a coroutine that is not a native one through
    # PyIter_Send, which calls __next__ when the value sent is None: with
    # __next__ being send itself that is one Python call a step, not two.
    __next__ = send

    def throw(self, *exc_info: Any) -> Any:
        log = self._log
        outer = log.current
        outer_started = log.step_started_ns
        outer_serial = log.step_serial
        vloop = log.vloop
        loop_start = 0 if vloop is None else vloop._ticks
        start = log._now()
        log.step_started_ns = start
        log.current = self._label
        log.steps += 1
        log.step_serial = log.steps
        try:
            result = self._coro.throw(*exc_info)
        except BaseException as error:
            self._finish(start, loop_start, outer, outer_started, outer_serial, error)
            raise
        self._record(start, loop_start, outer, outer_started, outer_serial, result)
        return result

    def _record(
        self,
        start: int,
        loop_start: int,
        outer: int,
        outer_started: int,
        outer_serial: int,
        result: Any,
    ) -> None:
        log = self._log
        end = log._now()
        keep = log.keep_over_ns
        if keep < 0 or end - start > keep:
            key = self._label << LABEL_SHIFT
            awaited = 0
            if result is not None:
                code = self._yielded(result)
                key |= code & 0xFF
                awaited = code >> LABEL_SHIFT
            vloop = log.vloop
            log.append(
                key,
                start,
                end,
                loop_start,
                0 if vloop is None else vloop._ticks,
                awaited << AWAITED_SHIFT | outer,
            )
        # Back to the step this one ran inside (an eager task's first step).
        log.current = outer
        log.step_started_ns = outer_started
        log.step_serial = outer_serial

    def _finish(
        self,
        start: int,
        loop_start: int,
        outer: int,
        outer_started: int,
        outer_serial: int,
        error: BaseException,
    ) -> None:
        log = self._log
        end = log._now()
        keep = log.keep_over_ns
        if keep < 0 or end - start > keep:
            vloop = log.vloop
            log.append(
                self._label << LABEL_SHIFT | KIND_DONE,
                start,
                end,
                loop_start,
                0 if vloop is None else vloop._ticks,
                outer,
            )
        log.current = outer
        log.step_started_ns = outer_started
        log.step_serial = outer_serial
        log.endings.append((self._label, describe_ending(error)))

    def close(self) -> None:
        self._coro.close()

    # Awaiting the recorder directly steps it through send(), so the steps are
    # recorded either way.
    def __await__(self) -> PyRecorderBase:
        return self

    def __iter__(self) -> PyRecorderBase:
        return self


def _prepare_subclass(cls: type) -> None:
    """Nothing to do for the Python types (the C module's version gives a
    subclass the C send slot, which Python 3.10/3.11 do not inherit)."""


def _accelerator() -> Any:
    if os.environ.get("PYTEST_ASYNCSPEC_PURE_PYTHON"):
        return None
    try:
        from . import _step_log_c  # type: ignore[attr-defined]
    except ImportError:  # no compiler at install time, or not Linux
        return None
    return _step_log_c


_C = _accelerator()
#: Whether the C types are in use.
ACCELERATED = _C is not None

if TYPE_CHECKING:  # the C types honour the same interface
    StepLog = PyStepLog
    RecorderBase = PyRecorderBase
    now_ns = _now_ns
    prepare_subclass = _prepare_subclass
elif _C is not None:
    StepLog = _C.StepLog
    RecorderBase = _C.RecorderBase
    now_ns = _C.now_ns
    prepare_subclass = _C.prepare_subclass
else:
    StepLog = PyStepLog
    RecorderBase = PyRecorderBase
    now_ns = _now_ns
    prepare_subclass = _prepare_subclass
