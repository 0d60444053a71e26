"""What the plugin watches while one async test runs, and what it concludes.

An :class:`Observation` installs a :class:`~pytest_asyncspec.trace.Tracer` on
the test's loop, a blocking watchdog when a threshold is set, timed output
capture and leak tracking, then turns what they saw into failures and report
sections.  It never lets its own trouble decide a test's outcome: an internal
error becomes a report section, and the test's result stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .allow_rules import AllowRule
from .blocking import BlockingWatchdog
from .blocking_groups import BlockingGroup, Schedule, describe_violations, group_events
from .hang import hang_report
from .leaks import (
    LeakedTask,
    UnawaitedCoroutine,
    describe_task,
    leak_report,
    pending_tasks,
    task_order,
    track_unawaited,
)
from .output import TimedOutput, capture_output
from .settings import Effective
from .timeline import render_timeline
from .trace import Outcome, Trace, Tracer
from .trace_events import trace_file_name, write_trace_events

if TYPE_CHECKING:
    from .replay_token import ReplayToken
    from .strategies import ScheduleSpec


@dataclass
class Observation:
    """The instruments around one test call."""

    nodeid: str
    effective: Effective
    loop: asyncio.AbstractEventLoop
    allow: list[AllowRule]
    trace_dir: Path | None
    #: Record every step (trace on, the trace fixture, trace files).  Without
    #: it only steps over max_blocking are kept: blocking detection at a
    #: fraction of the cost, and no timeline.
    full_trace: bool = True
    tracer: Tracer | None = None
    watchdog: BlockingWatchdog | None = None
    output: TimedOutput | None = None
    unawaited: list[UnawaitedCoroutine] = field(default_factory=list)
    #: In an explored test: what the first schedule to leave tasks running
    #: left (the explorer cancels them before the next schedule), and in how
    #: many schedules that happened.
    schedule_leaks: list[LeakedTask] = field(default_factory=list)
    schedules_leaking: int = 0
    internal_errors: list[str] = field(default_factory=list)
    trace_file: Path | None = None
    #: Blocking steps of a test that failed for another reason (a report section).
    blocking_report: str = ""
    #: In an explored test: the schedule each of the watchdog's periods ran.
    schedules: dict[int, Schedule] = field(default_factory=dict)
    _period: int = 0
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def start(self) -> None:
        try:
            keep_over = None
            if not self.full_trace:
                # Only blocking steps, or none when nothing asks for steps
                # (leak tracking needs the tasks alone).
                keep_over = self.effective.max_blocking
                if keep_over is None:
                    keep_over = float(2**31)
            self.tracer = Tracer(
                self.loop,
                keep_over=keep_over,
                # Leak reports name where each task was created.
                task_details=self.full_trace or self.effective.leaks != "off",
            )
            self.tracer.install()
            self._stack.callback(self.tracer.stop)
            self.output = self._stack.enter_context(capture_output(self.tracer))
            if self.effective.leaks != "off":
                self.unawaited = self._stack.enter_context(track_unawaited())
            if self.effective.max_blocking is not None:
                self.watchdog = BlockingWatchdog(
                    self.tracer, self.effective.max_blocking, allow=self.allow
                )
                self.watchdog.start()
                self._stack.callback(self.watchdog.stop)
        except Exception:
            self.internal_errors.append(traceback.format_exc())

    def stop(self) -> None:
        try:
            self._stack.close()
        except Exception:
            self.internal_errors.append(traceback.format_exc())
        if self.tracer is not None:
            self.internal_errors.extend(self.tracer.internal_errors)
        if self.watchdog is not None:
            self.internal_errors.extend(self.watchdog.watchdog_errors)

    @property
    def trace(self) -> Trace | None:
        return None if self.tracer is None else self.tracer.trace()

    # -- conclusions ---------------------------------------------------------

    def blocking_groups(self, *, allowed: bool) -> list[BlockingGroup]:
        """The test's blocking steps that no rule allowed (or, with
        ``allowed``, that one did), one group per place."""
        if self.watchdog is None:
            return []
        events = self.watchdog.allowed() if allowed else self.watchdog.violations()
        return group_events(events, self.schedules)

    def blocking_failures(self) -> str:
        threshold = self.effective.max_blocking
        if threshold is None:
            return ""
        return describe_violations(self.blocking_groups(allowed=False), threshold)

    # -- an explored test's runs of its body ---------------------------------

    def begin_schedule_run(self, spec: ScheduleSpec | None) -> None:
        if self.watchdog is None:
            return
        self._period = self.watchdog.new_period()
        if spec is None:
            schedule = Schedule("a trial run while shrinking a failure", counted=False)
        elif spec.number < 0:
            # Several stored tokens may replay before exploring: tell them apart.
            schedule = Schedule(f"the replayed schedule ({spec.name}, seed {spec.seed})")
        else:
            schedule = Schedule(f"schedule {spec.number + 1}")
        self.schedules[self._period] = schedule

    def end_schedule_run(self, token: ReplayToken | None) -> None:
        schedule = self.schedules.get(self._period)
        if schedule is None or token is None:
            return
        command = f"pytest '{self.nodeid}' --asyncspec-replay={token.encode()}"
        self.schedules[self._period] = replace(schedule, replay=command)

    def collector_report(self) -> str:
        """Steps over max_blocking only because the garbage collector ran
        inside them: not failures, but shown, so a slow collection is seen."""
        if self.watchdog is None:
            return ""
        return "\n\n".join(event.describe() for event in self.watchdog.collector_pauses())

    def note_schedule_leftovers(self, tasks: list[asyncio.Task[Any]]) -> None:
        """An explored test's schedule ended with these tasks still running."""
        if self.effective.leaks == "off" or not tasks:
            return
        self.schedules_leaking += 1
        if not self.schedule_leaks:
            self.schedule_leaks = sorted(
                (describe_task(task, self.tracer) for task in tasks), key=task_order
            )

    def leaks(self) -> str:
        if self.effective.leaks == "off" or self.tracer is None:
            return ""
        tracer = self.tracer
        try:
            # Only tasks this test created: a shared loop may keep tasks that
            # belong to a wider-scoped fixture on purpose.
            tasks = [leak for leak in pending_tasks(self.loop, tracer) if leak.label]
            # Each schedule of an explored test makes its own coroutines: name each once.
            unawaited = list({(c.name, c.created_where): c for c in self.unawaited}.values())
            report = leak_report(tasks, unawaited)
            if self.schedule_leaks:
                left = leak_report(
                    self.schedule_leaks,
                    when=f"when a schedule's run of the test ended (in "
                    f"{self.schedules_leaking} schedule(s); the explorer cancelled them "
                    "before the next)",
                )
                report = "\n".join(part for part in (report, left) if part)
            # A pending task nothing referenced is garbage-collected before the
            # test ends ("Task was destroyed but it is pending"): still a leak.
            lost = [
                record
                for record in tracer.tasks.values()
                if record.outcome is Outcome.PENDING and tracer.live_task(record.label) is None
            ]
        except Exception:
            self.internal_errors.append(traceback.format_exc())
            return ""
        if lost:
            lines = [
                f"{len(lost)} task(s) destroyed while still pending (nothing kept a "
                "reference to them, so they never finished):"
            ]
            lines.extend(
                f"task {record.name!r} ({record.coroutine}) created at {record.created_where}"
                for record in lost
            )
            report = "\n".join(filter(None, [report, "\n".join(lines)]))
        return report

    def timeline(self) -> str:
        trace = self.trace
        if not self.full_trace or trace is None or not len(trace):
            return ""
        return render_timeline(trace, blocking_threshold=self.effective.max_blocking)

    def hang(self) -> str:
        return hang_report(self.loop, tracer=self.tracer)

    def write_trace_file(self) -> None:
        trace = self.trace
        if self.trace_dir is None or trace is None:
            return
        try:
            self.trace_file = write_trace_events(
                trace, self.trace_dir / trace_file_name(self.nodeid), test_id=self.nodeid
            )
        except Exception:
            self.internal_errors.append(traceback.format_exc())


def wants_observation(
    effective: Effective, uses_trace_fixture: bool, trace_dir: Path | None
) -> bool:
    return (
        effective.trace
        or effective.max_blocking is not None
        or effective.leaks != "off"
        or uses_trace_fixture
        or trace_dir is not None
    )


def current_loop() -> asyncio.AbstractEventLoop | None:
    """The loop pytest-asyncio set for the test about to run, if any."""
    # pytest-asyncio sets the loop it made as the thread's current loop, so the
    # policy hands it back without creating one.
    with contextlib.suppress(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loop = asyncio.get_event_loop_policy().get_event_loop()
        if not loop.is_closed():
            return loop
    return None


class TraceView:
    """The ``asyncspec_trace`` fixture: the running test's trace, live.

    Attribute access forwards to the current :class:`~pytest_asyncspec.trace.Trace`
    (``asyncspec_trace.start_of("worker")``); ``output`` holds the lines the
    test printed, each with its loop time and task.
    """

    def __init__(self) -> None:
        self._observation: Observation | None = None
        #: Set in an explored test: where the current schedule's recording
        #: began, and its first line of output.
        self._window: tuple[int, int] | None = None
        self._first_line = 0

    def _attach(self, observation: Observation | None) -> None:
        """Show ``observation``'s trace (None: the test is over)."""
        self._observation = observation

    def _begin_schedule(self) -> None:
        """From now on show only what this schedule does (an explored test's
        body runs once per schedule; each run makes its own tasks)."""
        observation = self._current()
        assert observation.tracer is not None
        self._window = observation.tracer.position()
        self._first_line = 0 if observation.output is None else len(observation.output.lines)

    def _current(self) -> Observation:
        __tracebackhide__ = True
        if self._observation is None or self._observation.tracer is None:
            raise RuntimeError(
                "asyncspec_trace records the test's own coroutine: read it inside the "
                "async test body, not in a fixture or a synchronous test"
            )
        return self._observation

    @property
    def output(self) -> TimedOutput:
        output = self._current().output
        assert output is not None
        return output if not self._first_line else TimedOutput(output.lines[self._first_line :])

    def snapshot(self) -> Trace:
        tracer = self._current().tracer
        assert tracer is not None
        return tracer.trace() if self._window is None else tracer.trace_since(self._window)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.snapshot(), name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.snapshot().steps())

    def __len__(self) -> int:
        return len(self.snapshot())
