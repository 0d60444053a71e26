"""Assertions about the order of task events, failing with a picture.

Each assertion reads a :class:`~pytest_asyncspec.tracing.trace.Trace` and, when the
order is not the expected one, raises :class:`OrderAssertionError` whose
message says what was expected, what happened, and shows the slice of the
timeline where it happened.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal

from ..tracing.timeline import render_timeline
from ..tracing.trace import Step, TraceQueries

EventKind = Literal["start", "finish"]


class OrderAssertionError(AssertionError):
    """Task events did not happen in the expected order."""


def _slice(trace: TraceQueries, steps: Sequence[Step]) -> str:
    if not steps:
        return render_timeline(trace)
    low = min(step.start for step in steps)
    high = max(step.end for step in steps)
    return render_timeline(trace, window=(low, high) if high > low else None)


def _fail(trace: TraceQueries, message: str, steps: Sequence[Step]) -> OrderAssertionError:
    return OrderAssertionError(f"{message}\n{_slice(trace, steps)}")


def nth_step(trace: TraceQueries, task: int | str, number: int) -> Step:
    """The ``number``-th step (1-based) of ``task``."""
    steps = trace.steps_of(task)
    if not 1 <= number <= len(steps):
        raise LookupError(
            f"task {task!r} ran {len(steps)} step(s); there is no step number {number} "
            "(steps are counted from 1)"
        )
    return steps[number - 1]


def assert_step_after(
    trace: TraceQueries, later: tuple[int | str, int], earlier: tuple[int | str, int]
) -> None:
    """Fail unless step ``later`` = (task, n) began after step ``earlier`` ended.

    ``assert_step_after(trace, ("A", 2), ("B", 1))``: A's second step ran
    after B's first.  Real stamps order steps that share a loop instant.
    """
    __tracebackhide__ = True
    after = nth_step(trace, *later)
    before = nth_step(trace, *earlier)
    if after.real_start_ns < before.real_end_ns or after.start < before.end:
        raise _fail(
            trace,
            f"expected step {later[1]} of {later[0]!r} (at {after.start:g} s) to run after "
            f"step {earlier[1]} of {earlier[0]!r} (ended {before.end:g} s), but it did not",
            [after, before],
        )


def assert_every_start_before_any_finish(trace: TraceQueries, *tasks: int | str) -> None:
    """Fail unless all ``tasks`` (default: all traced) started before any finished."""
    __tracebackhide__ = True
    if not trace.every_start_before_any_finish(*tasks):
        labels = [trace.task(t).label for t in tasks] or list(trace.tasks)
        steps = [step for label in labels for step in trace.steps_of(label)]
        raise _fail(
            trace,
            "expected every task to start before any task finished, but some task "
            "finished before another had started (they ran one after another)",
            steps,
        )


def _event_step(trace: TraceQueries, kind: EventKind, task: int | str) -> Step:
    steps = trace.steps_of(task)
    if not steps:
        raise LookupError(f"task {task!r} never ran a step")
    return steps[0] if kind == "start" else steps[-1]


def assert_order(trace: TraceQueries, events: Sequence[tuple[EventKind, int | str]]) -> None:
    """Fail unless the events happened in this order.

    ``events`` are ``("start", task)`` or ``("finish", task)``; a start is the
    beginning of the task's first step, a finish the end of its last.
    """
    __tracebackhide__ = True
    stamps = []
    for kind, task in events:
        if kind not in ("start", "finish"):
            raise ValueError(f"event kind must be 'start' or 'finish', got {kind!r}")
        step = _event_step(trace, kind, task)
        stamps.append((step.real_start_ns if kind == "start" else step.real_end_ns, step))
    for ((first, first_step), (second, second_step)), (event_a, event_b) in zip(
        itertools.pairwise(stamps), itertools.pairwise(events), strict=True
    ):
        if second < first:
            actual = sorted(zip((s for s, _ in stamps), events, strict=True))
            shown = ", ".join(f"{kind} {task}" for _, (kind, task) in actual)
            raise _fail(
                trace,
                f"expected {event_a[0]} of {event_a[1]!r} before {event_b[0]} of "
                f"{event_b[1]!r}; the events happened in this order: {shown}",
                [first_step, second_step],
            )
