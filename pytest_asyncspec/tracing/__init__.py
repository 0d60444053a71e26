"""The event-loop trace and what is read from it.

The modules here record every task step (:mod:`.step_log`, with its optional
C twin, :mod:`.task_table`, :mod:`.trace`) and draw or export it
(:mod:`.timeline`, :mod:`.trace_events`).  As a namespace, this package also
offers the trace's public names and those of the checks built on it (leaks,
hangs, blocking calls); nothing is imported until a name is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import namespace

if TYPE_CHECKING:  # each name re-exported explicitly (X as X): typed for users
    from ..checks.allow_rules import (
        AllowRule as AllowRule,
        parse_allow_rules as parse_allow_rules,
    )
    from ..checks.blocking import (
        BlockingWatchdog as BlockingWatchdog,
    )
    from ..checks.blocking_sites import (
        BlockingEvent as BlockingEvent,
    )
    from ..checks.hang import (
        hang_report as hang_report,
    )
    from ..checks.leaks import (
        LeakedTask as LeakedTask,
        UnawaitedCoroutine as UnawaitedCoroutine,
        leak_report as leak_report,
        pending_tasks as pending_tasks,
        track_unawaited as track_unawaited,
    )
    from .step_log import (
        ACCELERATED as ACCELERATED,
    )
    from .task_table import (
        Outcome as Outcome,
        TaskRecord as TaskRecord,
    )
    from .timeline import (
        render_timeline as render_timeline,
    )
    from .trace import (
        Awaits as Awaits,
        Step as Step,
        Trace as Trace,
        TraceQueries as TraceQueries,
        Tracer as Tracer,
    )
    from .trace_events import (
        to_trace_events as to_trace_events,
        trace_file_name as trace_file_name,
        write_trace_events as write_trace_events,
    )

#: Public name -> the module (under pytest_asyncspec) that defines it.
_HOMES = {
    "AllowRule": "checks.allow_rules",
    "parse_allow_rules": "checks.allow_rules",
    "BlockingWatchdog": "checks.blocking",
    "BlockingEvent": "checks.blocking_sites",
    "hang_report": "checks.hang",
    "LeakedTask": "checks.leaks",
    "UnawaitedCoroutine": "checks.leaks",
    "leak_report": "checks.leaks",
    "pending_tasks": "checks.leaks",
    "track_unawaited": "checks.leaks",
    "ACCELERATED": "tracing.step_log",
    "Outcome": "tracing.task_table",
    "TaskRecord": "tracing.task_table",
    "render_timeline": "tracing.timeline",
    "Awaits": "tracing.trace",
    "Step": "tracing.trace",
    "Trace": "tracing.trace",
    "TraceQueries": "tracing.trace",
    "Tracer": "tracing.trace",
    "to_trace_events": "tracing.trace_events",
    "trace_file_name": "tracing.trace_events",
    "write_trace_events": "tracing.trace_events",
}

__all__ = sorted(_HOMES)

if not TYPE_CHECKING:  # type checkers see the imports above, with their types
    __getattr__, __dir__ = namespace(__name__, _HOMES)
