"""Settling what the blocking watchdog gathered into events: pure functions
of the trace, the sampler's looks, the sleep tallies and the allow rules.

The trace says how long each step really took; the looks say where a long
step was (its line, and whether a rule allows it); a long step the sampler
never saw (a C call that held the GIL, a starved machine) is still reported,
by duration only, and no allow rule applies to it.  On a virtual clock the
tallies of blocking sleeps make the events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ..clock.loops import ClockChoice
from ..clock.ticks import TICKS_PER_SECOND
from ..tracing.trace import Step, Trace, Tracer
from .allow_rules import AllowRule, allowing_rule
from .blocking_sampler import Sample
from .blocking_sites import BlockingEvent, FrameSite
from .blocking_sleeps import SleepTally
from .collector import CollectorTime


class EventMaker:
    """Builds the events of one watchdog: the task's record from the tracer,
    and the garbage collector's share of a real-clock step."""

    def __init__(self, tracer: Tracer, threshold: float, collector: CollectorTime | None) -> None:
        self._tracer = tracer
        self._threshold = threshold
        self._collector = collector

    def __call__(
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
        record = self._tracer.tasks.get(label)
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
            threshold=self._threshold,
            frames=frames,
            finished=finished,
            step_index=step.index if step is not None else None,
            collector=min(spent, duration_ns) / TICKS_PER_SECOND,
            period=period,
        )


@dataclass(frozen=True)
class Window:
    """What part of the trace is the watchdog's, and where the loop stands."""

    #: The first step recorded after the watchdog started, and its real start.
    first_step: int
    start_ns: int
    threshold_ns: int
    #: The step running now: (task label, real start), and (label, serial).
    running: tuple[int, int]
    running_serial: tuple[int, int]
    now_ns: int
    #: Scan the whole trace for long steps (the sampler may have missed one,
    #: or the watchdog still runs).
    scan_all: bool


def events_from(
    trace: Trace,
    samples: Sequence[Sample],
    tallies: Sequence[SleepTally],
    window: Window,
    make_event: EventMaker,
    period_at: Callable[[int], int],
) -> list[BlockingEvent]:
    """Every blocking step, allowed or not (rules not yet read), in the order
    they started."""
    threshold_ns = window.threshold_ns
    wanted = {sample.label for sample in samples} | {tally.label for tally in tallies}
    by_label: dict[int, list[Step]] = {}
    long_steps: list[Step] = []
    for index in range(window.first_step, len(trace)):
        step = trace.step(index)
        if step.real_end_ns < window.start_ns:
            continue
        if step.task in wanted:
            by_label.setdefault(step.task, []).append(step)
        if window.scan_all and step.real_ns > threshold_ns:
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

    running = window.running
    now = window.now_ns
    events: list[BlockingEvent] = []
    real_steps: dict[int, Step] = {}
    for sample in samples:
        matched = step_of(sample.label, sample.started_ns, sample.seen_ns)
        if matched is not None:
            if matched.index in real_steps or matched.real_ns <= threshold_ns:
                continue
            real_steps[matched.index] = matched
            events.append(
                make_event(
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
            running == (sample.label, sample.started_ns) and now - sample.started_ns > threshold_ns
        ):
            events.append(
                make_event(
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
            make_event(
                long_step.task,
                long_step.real_start_ns,
                long_step.real_ns,
                "real",
                (),
                long_step,
                period=period_at(long_step.real_start_ns),
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
            make_event(
                label,
                started,
                now - started,
                "real",
                (),
                None,
                finished=False,
                period=period_at(started),
            )
        )
    events.extend(_virtual_events(tallies, by_label, window, make_event))
    events.sort(key=lambda event: (event.started_ns, event.clock))
    return events


def _virtual_events(
    tallies: Sequence[SleepTally],
    by_label: dict[int, list[Step]],
    window: Window,
    make_event: EventMaker,
) -> list[BlockingEvent]:
    # Several tallies can belong to one step (an eager child ran in the
    # middle of it): they add up.
    merged: dict[tuple[int, int], list[SleepTally]] = {}
    for tally in tallies:
        merged.setdefault((tally.label, tally.serial), []).append(tally)
    events = []
    for (label, serial), parts in merged.items():
        ticks = sum(part.ticks for part in parts)
        # The step is a violation when the sleeps no rule allows add up
        # to more than the threshold: it is then named by the longest of
        # them (settling finds no rule for its frames); otherwise by the
        # longest allowed one, whose rule allows the step.
        if sum(part.unallowed for part in parts) > window.threshold_ns:
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
        unfinished = step is None and window.running_serial == (label, serial)
        event = make_event(
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


def apply_rules(
    events: Sequence[BlockingEvent], rules: Sequence[AllowRule], *, count_hits: bool
) -> list[BlockingEvent]:
    """``events``, each allowed by the first rule that names one of its frames
    (``count_hits``: and that rule's hits counted)."""
    settled: list[BlockingEvent] = []
    for event in events:
        rule = allowing_rule(rules, event.frames)
        if rule is not None:
            if count_hits:
                rule.hits += 1
            event = replace(event, allowed_by=rule)
        settled.append(event)
    return settled
