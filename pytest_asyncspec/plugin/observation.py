"""What the plugin watches while one async test runs, and what it concludes.

An :class:`Observation` installs a :class:`~pytest_asyncspec.tracing.trace.Tracer` on
the test's loop when pytest-asyncio's runner makes that loop available, so
the tasks of the test's async fixtures are traced as well as the test's own:
it spans the test's setup, call and teardown.  Each phase gets its own
blocking watchdog, timed output capture and unawaited-coroutine tracking
(entered and left inside pytest's own capture of that phase), and every
task is known by the phase, and the fixture, that created it.  The
observation turns what it saw into failures and report sections, and never
lets its own trouble decide a test's outcome: an internal error becomes a
report section, and the test's result stands.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import traceback
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checks.allow_rules import AllowRule, first_match
from ..checks.blocking import BlockingEvent, BlockingWatchdog
from ..checks.blocking_groups import BlockingGroup, Schedule, describe_violations, group_events
from ..checks.hang import hang_report
from ..checks.leaks import (
    LeakedTask,
    UnawaitedCoroutine,
    creation_site,
    describe_task,
    pending_tasks,
    task_order,
    teardown_report,
    track_unawaited,
    unique_unawaited,
)
from ..checks.output import TimedOutput, capture_output
from ..tracing.timeline import render_timeline
from ..tracing.trace import Outcome, Step, TaskRecord, Trace, Tracer
from ..tracing.trace_events import MAX_STEPS, trace_file_name, write_trace_events
from .settings import Effective

if TYPE_CHECKING:
    import pytest

    from ..exploration.replay_token import ReplayToken
    from ..exploration.strategies import ScheduleSpec


#: pytest's phases of a test, in order, and how reports say them.
PHASE_WORDS = {"setup": "during setup", "call": "during the test", "teardown": "during teardown"}


@dataclass(frozen=True)
class Origin:
    """When in a test something began: the phase, and the fixture being set up."""

    phase: str
    fixture: str | None = None
    #: The fixture's scope when it is wider than the test's (module, session):
    #: what it starts outlives the test, so it is not the test's leak.
    shared_scope: str | None = None

    def describe(self) -> str:
        words = PHASE_WORDS[self.phase]
        if self.fixture is None:
            return words
        if self.shared_scope is None:
            return f"{words} (fixture {self.fixture!r})"
        return f"{words} ({self.shared_scope}-scoped fixture {self.fixture!r})"


@dataclass
class RunMark:
    """Where one run of an explored test's body began in its trace."""

    #: "schedule 3", "a trial run while shrinking a failure", ...
    name: str
    #: Steps recorded, and the label of the next task, when the run began.
    steps: int
    label: int
    #: The command that replays the run, when there is one.
    replay: str | None = None


@dataclass
class Observation:
    """The instruments around one test: its setup, call and teardown."""

    nodeid: str
    effective: Effective
    loop: asyncio.AbstractEventLoop
    allow: list[AllowRule]
    trace_dir: Path | None
    #: Record every step (trace on, the trace fixture, trace files).  Without
    #: it only steps over max_blocking are kept: blocking detection at a
    #: fraction of the cost, and no timeline.
    full_trace: bool = True
    #: Places whose tasks and coroutines may outlive the test (leak allow-list:
    #: the run's rules, then the test's allow_leaks markers').
    allow_leaks: list[AllowRule] = field(default_factory=list)
    tracer: Tracer | None = None
    output: TimedOutput | None = None
    unawaited: list[UnawaitedCoroutine] = field(default_factory=list)
    #: In an explored test: what the first schedule to leave tasks running
    #: left (the explorer cancels them before the next schedule), and in how
    #: many schedules that happened.
    schedule_leaks: list[LeakedTask] = field(default_factory=list)
    schedules_leaking: int = 0
    internal_errors: list[str] = field(default_factory=list)
    trace_file: Path | None = None
    #: The run's config, whose command-line options replay commands carry.
    replay_config: pytest.Config | None = None
    #: When the trace file left steps out: (steps kept, steps recorded).
    trace_clipped: tuple[int, int] | None = None
    #: Blocking steps of a phase that failed for another reason (a report section).
    blocking_report: str = ""
    #: The phase being watched (None: between phases, or stopped).
    phase: str | None = None
    #: The blocking steps of each phase that has ended (allowed or not, and
    #: the garbage collector's pauses), as its watchdog settled them.
    blocking: dict[str, list[BlockingEvent]] = field(default_factory=dict)
    #: In an explored test: the schedule each of the call phase's watchdog
    #: periods ran (the schedules run inside the call phase).
    schedules: dict[int, Schedule] = field(default_factory=dict)
    #: In an explored test: each run of its body (schedules, the shrinking's
    #: trials, the failing schedule's final run), in order, where it began
    #: in the trace (see :class:`RunMark`).
    runs: list[RunMark] = field(default_factory=list)
    _period: int = 0
    #: Where each phase and each fixture setup began, in order: the steps
    #: recorded by then, the label of the next task, and the origin.
    _mark_steps: list[int] = field(default_factory=list)
    _mark_labels: list[int] = field(default_factory=list)
    _mark_origins: list[Origin] = field(default_factory=list)
    _fixtures: list[Origin] = field(default_factory=list)
    _watchdog: BlockingWatchdog | None = None
    _phase_unawaited: list[UnawaitedCoroutine] = field(default_factory=list)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _phase_stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def start(self, phase: str = "setup") -> None:
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
            self.output = TimedOutput()
        except Exception:
            self.internal_errors.append(traceback.format_exc())
            return
        self.begin_phase(phase)

    def begin_phase(self, phase: str) -> None:
        """Watch ``phase`` (``setup``, ``call`` or ``teardown``) from now on."""
        self.end_phase()
        tracer = self.tracer
        if tracer is None:
            return
        self.phase = phase
        self._fixtures.clear()
        self._mark(Origin(phase))
        try:
            # pytest swaps sys.stdout and the warning filters between phases:
            # what replaces them must be put back inside the same phase.
            self._phase_stack.enter_context(capture_output(tracer, into=self.output))
            if self.effective.leaks != "off":
                # The garbage collection that finds coroutines dropped in
                # reference cycles runs once, at the end of the test.
                self._phase_unawaited = self._phase_stack.enter_context(
                    track_unawaited(collect=phase == "teardown")
                )
            if self.effective.max_blocking is not None:
                watchdog = BlockingWatchdog(tracer, self.effective.max_blocking, allow=self.allow)
                watchdog.start()
                self._watchdog = watchdog
        except Exception:
            self.internal_errors.append(traceback.format_exc())

    def end_phase(self) -> None:
        """Stop watching the current phase and settle its blocking steps."""
        phase, self.phase = self.phase, None
        if phase is None:
            return
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.stop()
            self.blocking[phase] = watchdog.events()
            self.internal_errors.extend(watchdog.watchdog_errors)
        try:
            self._phase_stack.close()
        except Exception:
            self.internal_errors.append(traceback.format_exc())
        # Filled as the tracking block exits.
        self.unawaited.extend(self._phase_unawaited)
        self._phase_unawaited = []
        self._collect_tracer_errors()

    def _collect_tracer_errors(self) -> None:
        # Each phase's report shows what went wrong in it.
        if self.tracer is not None:
            self.internal_errors.extend(self.tracer.internal_errors)
            self.tracer.internal_errors.clear()

    def fixture_setup_began(self, name: str, shared_scope: str | None) -> None:
        """A fixture's setup starts: tasks made until it ends are its own."""
        if self.phase is None:
            return
        origin = Origin(self.phase, name, shared_scope)
        self._fixtures.append(origin)
        self._mark(origin)

    def fixture_setup_ended(self) -> None:
        if self.phase is None or not self._fixtures:
            return
        self._fixtures.pop()
        self._mark(self._fixtures[-1] if self._fixtures else Origin(self.phase))

    def _mark(self, origin: Origin) -> None:
        if self.tracer is None:
            return
        steps, label = self.tracer.position()
        self._mark_steps.append(steps)
        self._mark_labels.append(label)
        self._mark_origins.append(origin)

    def stop(self) -> None:
        self.end_phase()
        try:
            self._stack.close()
        except Exception:
            self.internal_errors.append(traceback.format_exc())
        self._collect_tracer_errors()

    @property
    def trace(self) -> Trace | None:
        return None if self.tracer is None else self.tracer.trace()

    # -- where things began --------------------------------------------------

    def origin_of_task(self, label: int) -> Origin | None:
        """The phase (and fixture) in which the task with ``label`` was created."""
        return self._origin_at(self._mark_labels, label)

    def origin_of_step(self, index: int) -> Origin | None:
        """The phase (and fixture setup) in which the trace's step ``index`` ran."""
        return self._origin_at(self._mark_steps, index)

    def _origin_at(self, keys: list[int], value: int) -> Origin | None:
        at = bisect.bisect_right(keys, value) - 1
        return self._mark_origins[at] if at >= 0 else None

    def _shared(self, label: int, records: dict[int, TaskRecord]) -> bool:
        """Whether a wider-scoped fixture started the task, or a task it
        started did (a server's connection handlers): it outlives the test."""
        seen: set[int] = set()
        while label and label not in seen:
            seen.add(label)
            origin = self.origin_of_task(label)
            if origin is not None and origin.shared_scope is not None:
                return True
            record = records.get(label)
            label = record.parent or 0 if record is not None else 0
        return False

    # -- conclusions ---------------------------------------------------------

    def _phase_events(self, phase: str) -> list[BlockingEvent]:
        """The blocking steps of ``phase``: settled once it ended, a snapshot
        while it runs."""
        if phase == self.phase and self._watchdog is not None:
            return self._watchdog.events()
        return self.blocking.get(phase, [])

    def blocking_groups(self, phase: str, *, allowed: bool) -> list[BlockingGroup]:
        """The blocking steps of ``phase`` that no rule allowed (or, with
        ``allowed``, that one did), one group per place.  The collector's
        pauses are neither (see :meth:`collector_report`)."""
        events = [
            event
            for event in self._phase_events(phase)
            if not event.by_collector and (event.allowed_by is not None) == allowed
        ]
        # Only the call phase runs schedules: other phases' periods are all 0.
        return group_events(events, self.schedules if phase == "call" else None)

    def blocking_failures(self, phase: str) -> str:
        """The report of the unallowed blocking steps of ``phase``, one entry
        per place, or ``""``."""
        threshold = self.effective.max_blocking
        if threshold is None:
            return ""
        return describe_violations(
            self.blocking_groups(phase, allowed=False),
            threshold,
            when=PHASE_WORDS[phase],
            note=self._created,
        )

    def _created(self, group: BlockingGroup) -> str:
        """Where the tasks of a place were created.  In an explored test the
        same task is made anew each schedule: by pytest's setup the first
        time, by the schedule's own fixture setup (in the call) after."""
        origins: dict[str, None] = {}
        for event in group.events:
            origin = self.origin_of_task(event.task_label)
            if origin is not None:
                origins[origin.describe()] = None
        if not origins:
            return ""
        if len(origins) == 1:
            return f"The task was created {next(iter(origins))}."
        return f"The task, one per run, was created {' or '.join(origins)}."

    # -- an explored test's runs of its body ---------------------------------

    def begin_schedule_run(self, spec: ScheduleSpec | None) -> None:
        if spec is None:
            schedule = Schedule("a trial run while shrinking a failure", counted=False)
        elif spec.number < 0:
            # Several stored tokens may replay before exploring: tell them apart.
            schedule = Schedule(f"the replayed schedule ({spec.name}, seed {spec.seed})")
        else:
            schedule = Schedule(f"schedule {spec.number + 1}")
        if self.tracer is not None:
            steps, label = self.tracer.position()
            self.runs.append(RunMark(schedule.name, steps, label))
        watchdog = self._watchdog
        if watchdog is None:
            return
        self._period = watchdog.new_period()
        self.schedules[self._period] = schedule

    def end_schedule_run(self, token: ReplayToken | None) -> None:
        if token is None:
            return
        from .replay_command import replay_line

        command = replay_line(self.replay_config, self.nodeid, token.encode())
        if self.runs:
            self.runs[-1].replay = command
        schedule = self.schedules.get(self._period)
        if schedule is None:
            return
        self.schedules[self._period] = replace(schedule, replay=command)

    def collector_report(self, phase: str) -> str:
        """Steps of ``phase`` over max_blocking only because the garbage
        collector ran inside them: not failures, but shown, so a slow
        collection is seen."""
        return "\n\n".join(
            event.describe() for event in self._phase_events(phase) if event.by_collector
        )

    def note_schedule_leftovers(self, tasks: list[asyncio.Task[Any]]) -> None:
        """An explored test's schedule ended with these tasks still running."""
        if self.effective.leaks == "off" or not tasks:
            return
        try:
            left = self._unallowed(
                [describe_task(task, self.tracer) for task in tasks], self.allow_leaks
            )
        except Exception:
            self.internal_errors.append(traceback.format_exc())
            return
        if not left:
            return
        self.schedules_leaking += 1
        if not self.schedule_leaks:
            self.schedule_leaks = sorted(left, key=task_order)

    def _unallowed(self, leaked: list[LeakedTask], rules: Sequence[AllowRule]) -> list[LeakedTask]:
        """``leaked`` less the tasks of wider-scoped fixtures and those a rule
        allows, each told in which phase (and fixture) it was started.  In an
        explored test each schedule sets its function-scoped fixtures up in
        the call: their tasks were started "during the test (fixture ...)"."""
        assert self.tracer is not None
        records = self.tracer.tasks
        return [
            replace(leak, started=self._started(leak.label))
            for leak in leaked
            if leak.label
            and not self._shared(leak.label, records)
            and first_match(rules, leak.sites) is None
        ]

    def leaks(self, allow: Sequence[AllowRule] = ()) -> str:
        """The leak report, judged once the test's fixtures are torn down.

        Only tasks this test created count (a shared loop may keep tasks that
        belong to a wider-scoped fixture on purpose), less the tasks started by
        a wider-scoped fixture and those an allow rule names
        (:attr:`allow_leaks`: the run's list, then the test's markers; then
        ``allow``)."""
        if self.effective.leaks == "off" or self.tracer is None:
            return ""
        tracer = self.tracer
        rules = [*self.allow_leaks, *allow]
        try:
            records = tracer.tasks
            tasks = self._unallowed(pending_tasks(self.loop, tracer), rules)
            # A pending task nothing referenced is garbage-collected before the
            # test ends ("Task was destroyed but it is pending"): still a leak.
            lost = [
                record
                for record in records.values()
                if record.outcome is Outcome.PENDING
                and tracer.live_task(record.label) is None
                and not self._shared(record.label, records)
                and first_match(rules, (creation_site(record.created_where),)) is None
            ]
            return teardown_report(
                tasks,
                unique_unawaited(self.unawaited, rules),
                lost,
                self.schedule_leaks,
                self.schedules_leaking,
            )
        except Exception:
            self.internal_errors.append(traceback.format_exc())
            return ""

    def _started(self, label: int | None) -> str:
        origin = None if label is None else self.origin_of_task(label)
        return "" if origin is None else origin.describe()

    def timeline(self) -> str:
        trace = self.trace
        if not self.full_trace or trace is None or not len(trace):
            return ""
        return render_timeline(
            trace, blocking_threshold=self.effective.max_blocking, phases=self.task_phases(trace)
        )

    def task_phases(self, trace: Trace) -> dict[int, str]:
        """The phase that created each task of ``trace``, by label."""
        phases = {}
        for label in trace.tasks:
            origin = self.origin_of_task(label)
            if origin is not None:
                phases[label] = origin.phase
        return phases

    def hang(self) -> str:
        return hang_report(self.loop, tracer=self.tracer)

    def write_trace_file(self, max_steps: int = MAX_STEPS) -> None:
        """Write the test's trace file, keeping at most ``max_steps`` steps
        (:attr:`trace_clipped` then says how many it kept of how many)."""
        trace = self.trace
        if self.trace_dir is None or trace is None:
            return
        try:
            self.trace_file = write_trace_events(
                trace,
                self.trace_dir / trace_file_name(self.nodeid),
                test_id=self.nodeid,
                max_steps=max_steps,
            )
            if len(trace) > max_steps:
                self.trace_clipped = (max_steps, len(trace))
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


_TRACE_OUTSIDE_THE_LOOP = (
    "asyncspec_trace records the tasks of the test's loop, from its async "
    "fixtures' setup to their teardown: read it inside the async test body or "
    "an async fixture, not in a synchronous test or fixture"
)


class TraceView:
    """The ``asyncspec_trace`` fixture: the running test's trace, live.

    Each query of :class:`~pytest_asyncspec.tracing.trace.Trace` reads the trace as it
    stands when asked (``asyncspec_trace.start_of("worker")``); ``output`` holds the lines the
    test and its async fixtures printed, each with its loop time and task;
    :meth:`phase_of` says in which phase a task was created.
    """

    def __init__(self) -> None:
        self._observation: Observation | None = None
        #: Set in an explored test: where the current schedule's recording
        #: began, and its first line of output.
        self._window: tuple[int, int] | None = None
        self._first_line = 0

    def _current(self) -> Observation:
        __tracebackhide__ = True
        if self._observation is None or self._observation.tracer is None:
            raise RuntimeError(_TRACE_OUTSIDE_THE_LOOP)
        return self._observation

    @property
    def output(self) -> TimedOutput:
        output = self._current().output
        assert output is not None
        return output if not self._first_line else TimedOutput(output.lines[self._first_line :])

    def phase_of(self, which: int | str) -> str:
        """The phase that created a task (by label or name): ``setup``,
        ``call`` or ``teardown``."""
        observation = self._current()
        label = self.snapshot().task(which).label
        origin = observation.origin_of_task(label)
        assert origin is not None  # every traced task was made in a phase
        return origin.phase

    def snapshot(self) -> Trace:
        """The trace as it stands now (what each query below reads)."""
        tracer = self._current().tracer
        assert tracer is not None
        return tracer.trace() if self._window is None else tracer.trace_since(self._window)

    # The queries of Trace (trace.TraceQueries), each on the trace as it
    # stands when asked; tests/test_public_names.py keeps the two in step.

    @property
    def tasks(self) -> dict[int, TaskRecord]:
        return self.snapshot().tasks

    @property
    def helper_tasks(self) -> frozenset[int]:
        return self.snapshot().helper_tasks

    @property
    def virtual(self) -> bool:
        return self.snapshot().virtual

    def step(self, index: int) -> Step:
        return self.snapshot().step(index)

    def steps(self) -> Iterator[Step]:
        return self.snapshot().steps()

    def task(self, which: int | str) -> TaskRecord:
        return self.snapshot().task(which)

    def steps_of(self, which: int | str) -> list[Step]:
        return self.snapshot().steps_of(which)

    def start_of(self, which: int | str) -> float:
        return self.snapshot().start_of(which)

    def finish_of(self, which: int | str) -> float:
        return self.snapshot().finish_of(which)

    def longest_step(self) -> Step:
        return self.snapshot().longest_step()

    def blocked_total(self) -> float:
        return self.snapshot().blocked_total()

    def running_at(self, instant: float) -> TaskRecord | None:
        return self.snapshot().running_at(instant)

    def every_start_before_any_finish(self, *which: int | str) -> bool:
        return self.snapshot().every_start_before_any_finish(*which)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.snapshot().steps())

    def __len__(self) -> int:
        return len(self.snapshot())


# The plugin moves a view between recordings through these, not through
# methods: the view is what a test holds, and they are not its to call.


def show_observation(view: TraceView, observation: Observation | None) -> None:
    """Make ``view`` show ``observation``'s trace (None: the test is over)."""
    view._observation = observation


def show_from_here(view: TraceView) -> None:
    """Make ``view`` show only what happens from now on: an explored test's
    body runs once per schedule, and each run makes its own tasks."""
    observation = view._current()
    assert observation.tracer is not None
    view._window = observation.tracer.position()
    view._first_line = 0 if observation.output is None else len(observation.output.lines)
