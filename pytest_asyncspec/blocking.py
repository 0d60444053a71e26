"""Find task steps that block the event loop, and name the blocking line.

A task step that runs longer than a threshold holds the loop: no other task,
timer or I/O callback runs meanwhile.  :class:`BlockingWatchdog` reports each
such step as a :class:`BlockingEvent` with the task, how long the step held
the loop, and the line that blocked, whatever the blocking call was
(``time.sleep``, a busy loop, a synchronous socket or file read, a long C call):

* **real time** -- a daemon thread wakes every quarter threshold and reads two
  attributes of the :class:`~pytest_asyncspec.trace.Tracer` (the running
  step's task and real start).  It samples the loop thread's stack
  (``sys._current_frames``) once a step has run half the threshold, and
  again once it has run longer than the threshold: two wakes fall in the
  second half of the threshold, so every step over it has a stack to name
  its line and to judge allow rules by, however the wakes fall.  The later
  stack, when there is one, is the one kept.  With allow rules it looks at
  every wake and judges each look, so a rule naming one call of a step does
  not allow the step's other blocking (see :class:`_Sample`).  The step's
  final duration comes from the trace;
* **virtual time** -- on a :class:`~pytest_asyncspec.clock.VirtualClockLoop`
  a blocking ``time.sleep`` returns at once, so no sampler could see it; the
  loop reports every such sleep with its caller's frame instead, and the
  sleeps of one step add up to its virtual blocking time (exact);
* **missed samples** -- a step longer than the threshold that the sampler
  could not look at (a C call that holds the GIL, a starved machine) is still
  reported, by duration only, and no allow rule applies to it;
* **the garbage collector** -- a collection that runs inside a step (a full
  one can take tens of milliseconds) is timed through ``gc.callbacks``
  (:mod:`.collector`) and taken out of the step's blocking time: a step that
  is over the threshold only because of it is reported as the collector's,
  never a violation, and the sampler does not sample during a collection.

An event is allowed, not a violation, when an :class:`AllowRule` names the
frame that made the blocking call or a library frame between it and the
user's code (:func:`~pytest_asyncspec.allow_rules.allowing_rule`).  Nothing
here imports pytest.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import os
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import CodeType, FrameType, TracebackType

from . import threads
from .allow_rules import AllowRule, allowing_rule
from .clock import VirtualClockLoop
from .collector import CollectorTime
from .introspection import is_library, live_coro
from .loops import ClockChoice
from .ticks import TICKS_PER_SECOND, seconds_to_ticks
from .trace import Step, Trace, Tracer

#: Wrapped so tests can make the sampler fail on purpose.
_current_frames: Callable[[], dict[int, FrameType]] = sys._current_frames

#: The sampler wakes this often per threshold (a step is seen at most a
#: quarter threshold late) but never more often than every millisecond.
_WAKES_PER_THRESHOLD = 4
_MIN_SAMPLE_INTERVAL = 0.001
#: After this many internal errors the sampling thread gives up (it records
#: each error; the test itself is never affected).
_MAX_WATCHDOG_ERRORS = 5
_JOIN_TIMEOUT = 5.0

_EXPECTED_THRESHOLD = "a finite number of seconds greater than 0, such as 0.1"


def validate_threshold(value: str | float) -> float:
    """The blocking threshold in seconds, or ``ValueError`` saying what is expected."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"blocking threshold must be {_EXPECTED_THRESHOLD}; got {value!r}")
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(
                f"blocking threshold must be {_EXPECTED_THRESHOLD}; got {value!r}"
            ) from None
    else:
        number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"blocking threshold must be {_EXPECTED_THRESHOLD}; got {value!r}")
    return number


# -- frames --------------------------------------------------------------


@dataclass(frozen=True)
class FrameSite:
    """One frame of a blocking step's stack, reduced to plain data."""

    filename: str
    lineno: int
    #: Qualified name on Python 3.11+ (``Class.method``); the bare name on 3.10.
    function: str
    #: The module the code belongs to (its ``__name__``), or "" if unknown.
    module: str
    #: Not the user's own code: the standard library, an installed package
    #: (any file under a site-packages or dist-packages directory), or this
    #: plugin.
    library: bool

    @property
    def location(self) -> str:
        return f"{self.filename}:{self.lineno}"

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno} in {self.function}"

    def shown(self, root: str | None) -> str:
        filename = self.filename
        if root is not None and filename.startswith(root):
            filename = filename[len(root) :]
        return f"{filename}:{self.lineno} in {self.function}"


# Loop, test-runner and plugin machinery: never the place that blocks, so
# left out of the reported stack (the task's own frames start above the
# step recorder anyway; this drops e.g. asyncio.wait_for and timeouts).
_INTERNAL_MODULES = (
    "asyncio",
    "uvloop",
    "_pytest",
    "pytest",
    "pluggy",
    "pytest_asyncio",
    "pytest_asyncspec",
)


def _is_internal(module: str) -> bool:
    head = module.partition(".")[0]
    return head in _INTERNAL_MODULES


def _site_of(frame: FrameType) -> FrameSite:
    code = frame.f_code
    module = frame.f_globals.get("__name__")
    return FrameSite(
        filename=code.co_filename,
        lineno=frame.f_lineno or code.co_firstlineno,
        function=getattr(code, "co_qualname", code.co_name),
        module=module if isinstance(module, str) else "",
        library=is_library(code.co_filename),
    )


def _step_frames(
    innermost: FrameType | None, outermost: FrameType | None
) -> tuple[tuple[FrameSite, ...], int, bool]:
    """The running step's frames, outermost first, without loop machinery.

    ``outermost`` is the frame of the task's own coroutine, where the step
    begins: frames below it are the loop's.  Also returns how many frames
    there are from the innermost to it before filtering, and whether it was
    found at all (no: the stack is not inside that step, which is entering or
    leaving its coroutine, or is another step's).
    """
    above: list[FrameType] = []
    frame = innermost
    boundary = False
    while frame is not None and outermost is not None:
        above.append(frame)
        if frame is outermost:
            boundary = True
            break
        frame = frame.f_back
    if not boundary:
        return (), 0, False
    sites = tuple(
        site
        for site in (_site_of(each) for each in reversed(above))
        if not _is_internal(site.module)
    )
    return sites, len(above), True


def _near_frames(innermost: FrameType, outermost: FrameType | None) -> tuple[FrameSite, ...]:
    """The frames an allow rule may match, outermost first: from the
    innermost outward, without loop machinery, up to the first frame of the
    user's code (or the step's coroutine).  What
    :func:`~pytest_asyncspec.allow_rules.allowing_rule` reads of the whole
    stack, for the price of walking a frame or two."""
    sites: list[FrameSite] = []
    frame: FrameType | None = innermost
    while frame is not None:
        site = _site_of(frame)
        if not _is_internal(site.module):
            sites.append(site)
            if not site.library:
                break
        if frame is outermost:
            break
        frame = frame.f_back
    return tuple(reversed(sites))


def _coroutine_frame(tracer: Tracer, label: int) -> FrameType | None:
    """The frame of the coroutine of the task with ``label``, if it runs one."""
    task = tracer.live_task(label)
    coro = live_coro(task) if isinstance(task, asyncio.Task) else None
    # Our recorder, unless a factory chained after the tracer's wrapped it.
    coro = getattr(coro, "_coro", coro)
    frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
    return frame if isinstance(frame, FrameType) else None


# -- events --------------------------------------------------------------


@dataclass(frozen=True)
class BlockingEvent:
    """A task step that held the loop longer than the threshold."""

    task_label: int
    task_name: str
    #: The task's coroutine (qualified name) and where the task was created.
    coroutine: str
    created_where: str
    #: Real ``perf_counter_ns`` at which the step began.
    started_ns: int
    #: Seconds the step held the loop, on ``clock``: real seconds, or the
    #: virtual seconds of its blocking ``time.sleep`` calls.
    duration: float
    clock: ClockChoice
    threshold: float
    #: The step's stack, outermost first, without loop and runner frames;
    #: empty when the watchdog could not sample it.
    frames: tuple[FrameSite, ...] = ()
    #: False: the step was still blocking when the watchdog stopped, and
    #: ``duration`` is how long it had blocked by then.
    finished: bool = True
    #: Index of the step in the trace (``Trace.step(index)``), when known.
    step_index: int | None = None
    #: Blocking ``time.sleep`` calls that make up a virtual-clock event.
    sleep_calls: int = 0
    allowed_by: AllowRule | None = None
    #: Real seconds of ``duration`` the garbage collector ran (on the loop
    #: thread, inside this step): not the step's own blocking.
    collector: float = 0.0
    #: The watchdog's period (:meth:`BlockingWatchdog.new_period`) the step
    #: began in: 0 before the first.  The plugin starts one per explored
    #: schedule.
    period: int = 0

    @property
    def allowed(self) -> bool:
        return self.allowed_by is not None

    @property
    def own_duration(self) -> float:
        """What the step itself held the loop: ``duration`` less the collector's time."""
        return self.duration - self.collector

    @property
    def by_collector(self) -> bool:
        """Over the threshold only because the garbage collector ran inside
        the step: the collector's pause, not a blocking call of the task."""
        return self.collector > 0 and self.own_duration <= self.threshold

    @property
    def innermost(self) -> FrameSite | None:
        """The innermost sampled frame (possibly inside a library)."""
        return self.frames[-1] if self.frames else None

    @property
    def site_frame(self) -> FrameSite | None:
        """The innermost frame outside the stdlib and installed packages
        (the user's line that made the blocking call), else the innermost."""
        for frame in reversed(self.frames):
            if not frame.library:
                return frame
        return self.innermost

    @property
    def site(self) -> str | None:
        """``file:line in function`` of :attr:`site_frame`, if sampled."""
        frame = self.site_frame
        return None if frame is None else str(frame)

    @property
    def chain(self) -> list[str]:
        """``file:line in function`` from the outermost user frame to the innermost frame."""
        return [str(frame) for frame in self._chain_frames()]

    def _chain_frames(self) -> tuple[FrameSite, ...]:
        # Library frames above the user's first one (a library's task calling
        # back into user code) say nothing about the blocking call.
        frames = self.frames
        first = next((i for i, frame in enumerate(frames) if not frame.library), 0)
        return frames[first:]

    def describe(self, root: str | os.PathLike[str] | None = None) -> str:
        """A multi-line report; file names are shown relative to ``root`` if under it."""
        prefix = None if root is None else os.path.join(os.fspath(root), "")
        how_long = f"{self.duration:g} s" if self.clock == "virtual" else f"{self.duration:.3f} s"
        clock = "virtual time" if self.clock == "virtual" else "real time"
        if self.clock == "virtual":
            calls = "call" if self.sleep_calls == 1 else "calls"
            clock += f", in {self.sleep_calls} blocking time.sleep() {calls}"
        verb = "blocked" if self.finished else "had blocked"
        if self.by_collector:
            return (
                f"The garbage collector held the event loop for {self.collector:.3f} s inside "
                f"a step of task {self.task_name!r} ({self.coroutine}), which took "
                f"{how_long} in all ({clock}; threshold {self.threshold:g} s): "
                f"{self.own_duration:.3f} s of the task's own, under the threshold, so not "
                "counted against it.  Collections run wherever the program happens to "
                "allocate; gc.freeze() after start-up, or fewer long-lived objects, makes "
                "full ones shorter."
            )
        lines = [
            f"Task {self.task_name!r} ({self.coroutine}) {verb} the event loop for "
            f"{'at least ' if not self.finished else ''}{how_long} "
            f"({clock}; threshold {self.threshold:g} s)"
            + ("" if self.finished else " and was still blocking when the watchdog stopped")
            + "."
        ]
        if self.collector:
            lines.append(
                f"Of this, {self.collector:.3f} s was the garbage collector's (not "
                f"counted): the task's own {self.own_duration:.3f} s is over the threshold."
            )
        site = self.site_frame
        if site is None:
            why = (
                "the step ended before the watchdog could look at its stack"
                if self.finished
                else "the watchdog stopped before it could look at the step's stack"
            )
            lines.append(
                f"Blocking call: not caught -- {why} (a C call that holds the GIL, or a "
                "starved machine), so no allow rule can apply to it. The task was "
                f"created at {self.created_where}."
            )
        else:
            lines.append(f"Blocking call: {site.shown(prefix)}")
            lines.append("Call chain (outermost first):")
            for frame in self._chain_frames():
                mark = "> " if frame is site else "  "
                lines.append(f"  {mark}{frame.shown(prefix)}")
        # A rule cannot allow a step whose frames were never caught: no
        # point suggesting one for it.
        allow = "" if site is None else ", or allow this place with an allow rule"
        if self.allowed_by is not None:
            lines.append(f"Allowed by rule {self.allowed_by.text!r}.")
        elif self.clock == "virtual":
            lines.append(f"Fix: await asyncio.sleep(...) instead of time.sleep(...){allow}.")
        else:
            api = ", use an async API" if allow else " or use an async API"
            lines.append(
                "Fix: run the blocking work in a thread (await asyncio.to_thread(...) or "
                f"loop.run_in_executor(...)){api}{allow}."
            )
        return "\n".join(lines)


# -- what the detectors collect while the loop runs ------------------------


@dataclass
class _Lane:
    """What the sampler saw of a step that allow rules allow, or do not."""

    #: Real time the step spent here, as far as the sampler can tell: each
    #: look counts the time since the look before (or the step's start).
    spent_ns: int = 0
    #: The stack that names it: the first look past the threshold, else the
    #: last look before it.
    frames: tuple[FrameSite, ...] = ()
    over: bool = False

    def add(self, elapsed_ns: int, frames: tuple[FrameSite, ...], *, over: bool) -> None:
        self.spent_ns += elapsed_ns
        if not self.over:
            self.frames, self.over = frames, over


@dataclass
class _Sample:
    """The sampler's looks at task ``label``'s step (started at ``started_ns``),
    from half the threshold on.

    Without allow rules one look past the threshold names the step.  With
    rules every wake looks, and each look is judged on its own, so a rule
    naming one call of the step does not allow the rest of it: the step is
    allowed when the time seen outside every rule stays within the threshold.
    """

    label: int
    started_ns: int
    #: When the step was last looked at (inside it).
    seen_ns: int
    period: int = 0
    allowed: _Lane = field(default_factory=_Lane)
    unallowed: _Lane = field(default_factory=_Lane)

    def frames(self, threshold_ns: int) -> tuple[FrameSite, ...]:
        """The stack that names the step; the allow rules, read again on it
        when settling, then decide the step as the looks did."""
        if self.allowed.frames and self.unallowed.spent_ns <= threshold_ns:
            return self.allowed.frames
        return self.unallowed.frames or self.allowed.frames


@dataclass
class _Longest:
    """The longest of some blocking sleeps, and its stack."""

    ticks: int = -1
    frames: tuple[FrameSite, ...] = ()

    def offer(self, ticks: int, frames: Callable[[], tuple[FrameSite, ...]]) -> None:
        # Frames are walked only for a sleep longer than every one before it.
        if ticks > self.ticks:
            self.ticks = ticks
            self.frames = frames()


@dataclass
class _SleepTally:
    """The blocking sleeps of one step on a virtual clock.

    Each sleep is judged by the allow rules on its own: a rule naming one
    call of the step allows that call's time, not the rest of the step.
    """

    label: int
    #: The step's serial number (``Tracer.step_serial``): what tells the
    #: step apart.  Its real start is no use for that: a virtual clock's
    #: steps are microseconds apart in real time, so several share a stamp of
    #: the coarse clock that threshold-only recording uses.
    serial: int
    started_ns: int
    #: Loop time (ticks) just after the latest sleep: inside the step, which
    #: is how the step is found in the trace.
    loop_ns: int = 0
    ticks: int = 0
    calls: int = 0
    period: int = 0
    #: Ticks of the sleeps no allow rule allows.
    unallowed: int = 0
    longest_unallowed: _Longest = field(default_factory=_Longest)
    longest_allowed: _Longest = field(default_factory=_Longest)


class BlockingWatchdog:
    """Reports task steps that hold the loop longer than ``threshold`` seconds.

    ``tracer`` must be installed on the loop (only traced tasks' steps are
    watched).  ``loop_thread`` is the ident of the thread that runs the loop;
    by default the thread running it when :meth:`start` is called, else the
    thread calling :meth:`start`.  Use as a context manager or call
    :meth:`start` / :meth:`stop`; read :meth:`violations` after stopping.
    """

    def __init__(
        self,
        tracer: Tracer,
        threshold: float,
        *,
        allow: Sequence[AllowRule | str] = (),
        sample_interval: float | None = None,
        loop_thread: int | None = None,
    ) -> None:
        self.tracer = tracer
        # The clock the tracer stamps steps with (coarse when it keeps only
        # long steps): every time compared with a step's must come from it.
        self._clock = tracer.log.clock
        self.threshold = validate_threshold(threshold)
        self.allow: tuple[AllowRule, ...] = tuple(
            rule if isinstance(rule, AllowRule) else AllowRule(rule) for rule in allow
        )
        if sample_interval is None:
            sample_interval = max(self.threshold / _WAKES_PER_THRESHOLD, _MIN_SAMPLE_INTERVAL)
        elif (
            isinstance(sample_interval, bool)
            or not math.isfinite(sample_interval)
            or sample_interval <= 0
        ):
            raise ValueError(
                "sample_interval must be a finite number of seconds greater than 0 "
                f"(or None for a quarter of the threshold); got {sample_interval!r}"
            )
        self.sample_interval = float(sample_interval)
        #: Internal errors of the watchdog (formatted), never raised into the test.
        self.watchdog_errors: list[str] = []
        self._threshold_ns = seconds_to_ticks(self.threshold)
        self._loop_thread = loop_thread
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._stopped = False
        self._start_ns = 0
        self._first_step = 0
        #: Stacks of steps that ran (or may have run) past the threshold.
        self._samples: list[_Sample] = []
        #: The looks at the step last seen past half the threshold, until
        #: another step is looked at.
        self._looking: _Sample | None = None
        self._period = 0
        #: Clock reading at which each period after the 0th began.
        self._period_starts: list[int] = []
        # Set by the sampler when a step may have run too long unseen; only
        # then is the whole trace scanned for long steps.
        self._maybe_missed = False
        self._vloop: VirtualClockLoop | None = None
        self._previous_listener: Callable[[float, FrameType], None] | None = None
        self._tallies: list[_SleepTally] = []
        #: Whether the rules allow a sleep called from a line of user code.
        self._user_lines: dict[tuple[CodeType, int], bool] = {}
        self._open_tally: _SleepTally | None = None
        self._final: list[BlockingEvent] | None = None
        self._collector: CollectorTime | None = None

    # -- life --------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError("this BlockingWatchdog was already started; make a new one")
        self._started = True
        loop = self.tracer.loop
        if self._loop_thread is None:
            # asyncio's loops note the thread running them (None while
            # stopped); uvloop does not, and is then run by our caller.
            running = getattr(loop, "_thread_id", None) if loop.is_running() else None
            self._loop_thread = running if isinstance(running, int) else threading.get_ident()
        # A tenth of a millisecond, or a hundredth of the threshold, of
        # collection in one step is worth keeping; less cannot matter.
        self._collector = CollectorTime(
            self.tracer, self._loop_thread, min(100_000, self._threshold_ns // 100)
        )
        self._collector.install()
        # Steps recorded before the watchdog started are not its business.
        self._first_step = len(Trace(self.tracer))
        self._start_ns = self._clock()
        if isinstance(loop, VirtualClockLoop):
            self._vloop = loop
            self._previous_listener = loop.on_blocking_sleep
            loop.on_blocking_sleep = self._on_blocking_sleep
        self._thread = threading.Thread(
            target=self._watch, name="asyncspec-blocking-watchdog", daemon=True
        )
        # Its sampling is none of the virtual clock's business (see threads.py).
        threads.exclude(self._thread)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (promptly) and settle the events; safe to call twice."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(_JOIN_TIMEOUT)
            if self._thread.is_alive():
                self.watchdog_errors.append(
                    f"the sampling thread did not stop within {_JOIN_TIMEOUT:g} s; "
                    "it is a daemon thread and is left behind"
                )
        if self._collector is not None:
            self._collector.remove()
        vloop = self._vloop
        if vloop is not None:
            if vloop.on_blocking_sleep == self._on_blocking_sleep:
                vloop.on_blocking_sleep = self._previous_listener
            self._close_tally()
        self._final = self._settle(count_hits=True)

    @property
    def running(self) -> bool:
        return self._started and not self._stopped

    def new_period(self) -> int:
        """Start a new period: events of steps that begin from now on carry
        its number (1, 2, ...).  Call it between steps, on the loop's thread."""
        self._period_starts.append(self._clock())
        self._period += 1
        return self._period

    def _period_at(self, started_ns: int) -> int:
        return bisect.bisect_right(self._period_starts, started_ns)

    def __enter__(self) -> BlockingWatchdog:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- results -----------------------------------------------------------

    def events(self) -> list[BlockingEvent]:
        """Every blocking step, allowed or not, in the order they started.

        Final once stopped; while running, a snapshot (rule hits not counted).
        """
        if self._final is not None:
            return list(self._final)
        return self._settle(count_hits=False)

    def violations(self) -> list[BlockingEvent]:
        """The blocking steps no allow rule accepts (the collector's pauses are
        not the task's)."""
        return [
            event for event in self.events() if event.allowed_by is None and not event.by_collector
        ]

    def collector_pauses(self) -> list[BlockingEvent]:
        """The steps over the threshold only because the garbage collector
        ran inside them."""
        return [event for event in self.events() if event.by_collector]

    def allowed(self) -> list[BlockingEvent]:
        """The blocking steps some allow rule accepts."""
        return [event for event in self.events() if event.allowed_by is not None]

    def unused_rules(self) -> list[AllowRule]:
        """This watchdog's allow rules that never allowed an event (in any
        watchdog sharing them)."""
        return [rule for rule in self.allow if not rule.used]

    # -- the sampling thread -------------------------------------------------

    def _watch(self) -> None:
        tracer = self.tracer
        threshold_ns = self._threshold_ns
        early_ns = threshold_ns // 2
        interval = self.sample_interval
        wait = self._stop_event.wait
        # The step looked at past the threshold (no need to look again unless
        # rules judge every look), and the step last looked at.
        sampled: tuple[int, int] | None = None
        looked: tuple[int, int] | None = None
        every_wake = bool(self.allow)
        last_label, last_started = 0, 0
        last_wake = self._start_ns
        errors = 0
        while True:
            stopping = wait(interval)
            try:
                # The cheap part, every wake: two attributes and the clock.
                label = tracer.current
                started = tracer.step_started_ns
                now = self._clock()
                # A step can hide only between two wakes: if they were far
                # apart (the GIL was held, the machine starved), or the step
                # seen last time has ended and may have run too long, a scan
                # of the trace settles it at the end.
                last = (last_label, last_started)
                if now - last_wake > threshold_ns or (
                    last_label
                    and last != (label, started)
                    and last not in (sampled, looked)
                    and now - last_started > threshold_ns
                ):
                    self._maybe_missed = True
                last_wake, last_label, last_started = now, label, started
                step = (label, started)
                age = now - started
                if label and age > early_ns and step != sampled:
                    over = age > threshold_ns
                    if (over or every_wake or step != looked) and self._sample(
                        label, started, over=over
                    ):
                        looked = step
                        if over and not every_wake:
                            sampled = step
            except Exception:
                errors += 1
                self._record_error("the sampling thread")
                if errors >= _MAX_WATCHDOG_ERRORS:
                    self.watchdog_errors.append(
                        f"the sampling thread stopped after {errors} errors; long steps are "
                        "still found by duration when the watchdog stops"
                    )
                    self._maybe_missed = True
                    return
            if stopping:
                return

    def _sample(self, label: int, started: int, *, over: bool) -> bool:
        """Record where the loop thread is; False if it was not inside the step.

        ``over``: the step has run past the threshold (else past half of it).
        """
        assert self._loop_thread is not None
        frame = _current_frames().get(self._loop_thread)
        if frame is None:
            return False
        seen = self._clock()
        tracer = self.tracer
        # Our thread may have lost the GIL between reading the step and the
        # stack: if the step changed meanwhile, the stack is another step's.
        # During a collection it shows whatever line allocated last.
        if tracer.current != label or tracer.step_started_ns != started:
            return False
        if self._collector is not None and self._collector.collecting:
            return False
        sites, count, boundary = _step_frames(frame, _coroutine_frame(tracer, label))
        del frame
        if not boundary or count == 0:
            # Not in a traced step, or on the step's very edge (the recorder
            # has set the task but not yet the start): look again next wake.
            return False
        sample = self._looking
        if sample is None or (sample.label, sample.started_ns) != (label, started):
            # The looks at another step are kept only if it may have run past
            # the threshold (the trace settles it).
            if sample is not None and seen - sample.started_ns > self._threshold_ns:
                self._samples.append(sample)
            sample = self._looking = _Sample(label, started, started, self._period)
        lane = sample.allowed if allowing_rule(self.allow, sites) else sample.unallowed
        lane.add(seen - sample.seen_ns, sites, over=over)
        sample.seen_ns = seen
        tracer.remember_name(label)
        return True

    def _record_error(self, where: str) -> None:
        self.watchdog_errors.append(f"error in {where}:\n{traceback.format_exc()}")

    # -- the virtual clock's blocking sleeps ---------------------------------

    def _on_blocking_sleep(self, seconds: float, frame: FrameType) -> None:
        try:
            self._count_sleep(seconds, frame)
        except Exception:
            # Runs on the loop thread, inside the user's time.sleep: a bug
            # here must not surface there.
            self._record_error("the virtual-clock sleep listener")
        previous = self._previous_listener
        if previous is not None:
            previous(seconds, frame)

    def _count_sleep(self, seconds: float, frame: FrameType) -> None:
        tracer = self.tracer
        label = tracer.current
        if not label:
            return  # not inside a traced task's step
        serial = tracer.step_serial
        tally = self._open_tally
        if tally is None or tally.label != label or tally.serial != serial:
            self._close_tally()
            tally = self._open_tally = _SleepTally(
                label, serial, tracer.step_started_ns, period=self._period
            )
            tracer.remember_name(label)
        ticks = seconds_to_ticks(seconds)
        tally.ticks += ticks
        tally.calls += 1
        vloop = self._vloop
        if vloop is not None:
            # The loop has already counted the sleep.
            tally.loop_ns = vloop.virtual_ticks()
        if self.allow and self._sleep_allowed(frame, label):
            longest = tally.longest_allowed
        else:
            tally.unallowed += ticks
            longest = tally.longest_unallowed
        # The longest sleep names the step's blocking line.
        longest.offer(ticks, lambda: _step_frames(frame, _coroutine_frame(tracer, label))[0])

    def _sleep_allowed(self, frame: FrameType, label: int) -> bool:
        """Whether a rule allows a blocking sleep called from ``frame``."""
        code = frame.f_code
        if is_library(code.co_filename):
            near = _near_frames(frame, _coroutine_frame(self.tracer, label))
            return allowing_rule(self.allow, near) is not None
        # Called from the user's code: that frame alone decides, so the
        # answer for its line holds for every sleep made there.
        key = (code, frame.f_lineno)
        known = self._user_lines.get(key)
        if known is None:
            known = self._user_lines[key] = (
                allowing_rule(self.allow, (_site_of(frame),)) is not None
            )
        return known

    def _close_tally(self) -> None:
        # Only steps over the threshold are kept, so memory stays bounded
        # however many steps sleep a little.
        tally = self._open_tally
        if tally is not None and tally.ticks > self._threshold_ns:
            self._tallies.append(tally)
        self._open_tally = None

    # -- settling: samples and tallies become events -------------------------

    def _settle(self, *, count_hits: bool) -> list[BlockingEvent]:
        try:
            events = self._events()
        except Exception:
            self._record_error("settling the blocking events")
            return []
        settled: list[BlockingEvent] = []
        for event in events:
            rule = allowing_rule(self.allow, event.frames)
            if rule is not None:
                if count_hits:
                    rule.hits += 1
                event = replace(event, allowed_by=rule)
            settled.append(event)
        return settled

    def _events(self) -> list[BlockingEvent]:
        samples = list(self._samples)
        looking = self._looking
        if looking is not None:
            samples.append(looking)
        tallies = list(self._tallies)
        open_tally = self._open_tally
        if open_tally is not None and open_tally.ticks > self._threshold_ns:
            tallies.append(open_tally)
        scan_all = self._maybe_missed or self._stopped is False
        if not samples and not tallies and not scan_all:
            return []  # the sampler saw nothing long: no need to read the trace
        trace = self.tracer.trace()
        threshold_ns = self._threshold_ns
        wanted = {sample.label for sample in samples} | {tally.label for tally in tallies}
        by_label: dict[int, list[Step]] = {}
        long_steps: list[Step] = []
        for index in range(self._first_step, len(trace)):
            step = trace.step(index)
            if step.real_end_ns < self._start_ns:
                continue
            if step.task in wanted:
                by_label.setdefault(step.task, []).append(step)
            if scan_all and step.real_ns > threshold_ns:
                long_steps.append(step)

        def step_of(label: int, started: int, seen: int) -> Step | None:
            steps = by_label.get(label, ())
            for step in steps:
                if step.real_start_ns == started:
                    return step
            # Inside an eager child's step the tracer's start is the child's;
            # the step is then the one that was running when we looked.
            for step in steps:
                if step.real_start_ns <= seen <= step.real_end_ns:
                    return step
            return None

        tracer = self.tracer
        running = (tracer.current, tracer.step_started_ns)
        now = self._clock()
        events: list[BlockingEvent] = []
        real_steps: dict[int, Step] = {}
        for sample in samples:
            matched = step_of(sample.label, sample.started_ns, sample.seen_ns)
            if matched is not None:
                if matched.index in real_steps or matched.real_ns <= threshold_ns:
                    continue
                real_steps[matched.index] = matched
                events.append(
                    self._event(
                        sample.label,
                        matched.real_start_ns,
                        matched.real_ns,
                        "real",
                        sample.frames(threshold_ns),
                        matched,
                        period=sample.period,
                    )
                )
            elif (
                running == (sample.label, sample.started_ns)
                and now - sample.started_ns > threshold_ns
            ):
                events.append(
                    self._event(
                        sample.label,
                        sample.started_ns,
                        now - sample.started_ns,
                        "real",
                        sample.frames(threshold_ns),
                        None,
                        finished=False,
                        period=sample.period,
                    )
                )
        # Long steps the sampler never saw, innermost (shortest) first so an
        # eager child's step explains the parent step it ran inside.
        for long_step in sorted(long_steps, key=lambda each: each.real_ns):
            if long_step.index in real_steps or any(
                long_step.real_start_ns <= other.real_start_ns
                and other.real_end_ns <= long_step.real_end_ns
                for other in real_steps.values()
            ):
                continue
            real_steps[long_step.index] = long_step
            events.append(
                self._event(
                    long_step.task,
                    long_step.real_start_ns,
                    long_step.real_ns,
                    "real",
                    (),
                    long_step,
                    period=self._period_at(long_step.real_start_ns),
                )
            )
        label, started = running
        # A step blocking right now that the sampler has not looked at yet.
        if (
            label
            and now - started > threshold_ns
            and not any(not event.finished and event.started_ns == started for event in events)
        ):
            events.append(
                self._event(
                    label,
                    started,
                    now - started,
                    "real",
                    (),
                    None,
                    finished=False,
                    period=self._period_at(started),
                )
            )
        events.extend(self._virtual_events(tallies, by_label))
        events.sort(key=lambda event: (event.started_ns, event.clock))
        return events

    def _virtual_events(
        self, tallies: list[_SleepTally], by_label: dict[int, list[Step]]
    ) -> list[BlockingEvent]:
        # Several tallies can belong to one step (an eager child ran in the
        # middle of it): they add up.
        merged: dict[tuple[int, int], list[_SleepTally]] = {}
        for tally in tallies:
            merged.setdefault((tally.label, tally.serial), []).append(tally)
        tracer = self.tracer
        running = (tracer.current, tracer.step_serial)
        events = []
        for (label, serial), parts in merged.items():
            ticks = sum(part.ticks for part in parts)
            # The step is a violation when the sleeps no rule allows add up
            # to more than the threshold: it is then named by the longest of
            # them (settling finds no rule for its frames); otherwise by the
            # longest allowed one, whose rule allows the step.
            if sum(part.unallowed for part in parts) > self._threshold_ns:
                lanes = [part.longest_unallowed for part in parts]
            else:
                lanes = [part.longest_allowed for part in parts]
            longest = max(lanes, key=lambda lane: lane.ticks)
            # The step in the trace, if kept (threshold-only recording keeps
            # steps long in real time): the task's one step whose loop time
            # holds the sleeps.  A task's steps never overlap, and the sleeps
            # moved the clock past the step's start.
            now = parts[-1].loop_ns / TICKS_PER_SECOND
            step = next(
                (each for each in by_label.get(label, ()) if each.start < now <= each.end),
                None,
            )
            unfinished = step is None and running == (label, serial)
            event = self._event(
                label,
                step.real_start_ns if step is not None else parts[0].started_ns,
                ticks,
                "virtual",
                longest.frames,
                step,
                finished=not unfinished,
                period=parts[0].period,
            )
            events.append(replace(event, sleep_calls=sum(part.calls for part in parts)))
        return events

    def _event(
        self,
        label: int,
        started_ns: int,
        duration_ns: int,
        clock: ClockChoice,
        frames: tuple[FrameSite, ...],
        step: Step | None,
        *,
        finished: bool = True,
        period: int,
    ) -> BlockingEvent:
        record = self.tracer.tasks.get(label)
        collector = self._collector
        spent = collector.spent_in(label, started_ns) if collector and clock == "real" else 0
        return BlockingEvent(
            task_label=label,
            task_name=record.name if record is not None else f"task {label}",
            coroutine=record.coroutine if record is not None else "?",
            created_where=record.created_where if record is not None else "?",
            started_ns=started_ns,
            duration=duration_ns / TICKS_PER_SECOND,
            clock=clock,
            threshold=self.threshold,
            frames=frames,
            finished=finished,
            step_index=step.index if step is not None else None,
            collector=min(spent, duration_ns) / TICKS_PER_SECOND,
            period=period,
        )
