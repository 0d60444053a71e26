"""pytest-asyncspec: virtual time, event-loop traces and timing checks for asyncio."""

from __future__ import annotations

from .blocking import AllowRule, BlockingEvent, BlockingWatchdog, parse_allow_rules
from .claims import ClaimRecorder
from .clock import DEFAULT_DEADLOCK_GRACE, DeadlockError, VirtualClockLoop
from .exploration import Exploration, Explorer, Failure, explore
from .exploring_loop import Deviation, ExploringLoop
from .hang import hang_report
from .leaks import LeakedTask, UnawaitedCoroutine, leak_report, pending_tasks, track_unawaited
from .loops import UnsupportedLoopError, loop_factory
from .ordering import (
    OrderAssertionError,
    assert_every_start_before_any_finish,
    assert_order,
    assert_step_after,
    nth_step,
)
from .output import OutputLine, TimedOutput, capture_output, compare_transcript
from .replay_token import ReplayToken, TokenError
from .ticks import TICKS_PER_SECOND
from .timeline import render_timeline
from .timing import (
    REAL_CLOCK_TOLERANCE,
    Finished,
    LoopClock,
    NoRunningLoopError,
    Span,
    TimingAssertionError,
    TimingCheck,
    Tolerance,
)
from .trace import Awaits, Outcome, Step, TaskRecord, Trace, Tracer
from .trace_events import to_trace_events, trace_file_name, write_trace_events

__all__ = [
    "DEFAULT_DEADLOCK_GRACE",
    "REAL_CLOCK_TOLERANCE",
    "TICKS_PER_SECOND",
    "AllowRule",
    "Awaits",
    "BlockingEvent",
    "BlockingWatchdog",
    "ClaimRecorder",
    "DeadlockError",
    "Deviation",
    "Exploration",
    "Explorer",
    "ExploringLoop",
    "Failure",
    "Finished",
    "LeakedTask",
    "LoopClock",
    "NoRunningLoopError",
    "OrderAssertionError",
    "Outcome",
    "OutputLine",
    "ReplayToken",
    "Span",
    "Step",
    "TaskRecord",
    "TimedOutput",
    "TimingAssertionError",
    "TimingCheck",
    "TokenError",
    "Tolerance",
    "Trace",
    "Tracer",
    "UnawaitedCoroutine",
    "UnsupportedLoopError",
    "VirtualClockLoop",
    "assert_every_start_before_any_finish",
    "assert_order",
    "assert_step_after",
    "capture_output",
    "compare_transcript",
    "explore",
    "hang_report",
    "leak_report",
    "loop_factory",
    "nth_step",
    "parse_allow_rules",
    "pending_tasks",
    "render_timeline",
    "to_trace_events",
    "trace_file_name",
    "track_unawaited",
    "write_trace_events",
]
