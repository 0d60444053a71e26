"""pytest-asyncspec: virtual time, event-loop traces, timing checks and schedule
exploration for asyncio.

The public names below are imported on first use (PEP 562), so that pytest
with the plugin installed starts as fast as without it: a run that never
explores or traces never loads the modules that do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .allow_rules import AllowRule, parse_allow_rules
    from .blocking import BlockingEvent, BlockingWatchdog
    from .claims import ClaimRecorder
    from .clock import (
        DEFAULT_DEADLOCK_GRACE,
        DEFAULT_STALL_BUDGET,
        DEFAULT_TIME_BUDGET,
        DeadlockError,
        VirtualClockLoop,
    )
    from .deviation import Deviation
    from .exploration import (
        Exploration,
        Explorer,
        Failure,
        ReplayMismatchError,
        explore,
        replay,
    )
    from .exploring_loop import ExploringLoop
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
    from .stall import LivelockError, RunawayTimeError
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

#: Public name -> the module that defines it.
_HOMES = {
    "AllowRule": "allow_rules",
    "BlockingEvent": "blocking",
    "BlockingWatchdog": "blocking",
    "parse_allow_rules": "allow_rules",
    "ClaimRecorder": "claims",
    "DEFAULT_DEADLOCK_GRACE": "clock",
    "DEFAULT_STALL_BUDGET": "clock",
    "DEFAULT_TIME_BUDGET": "clock",
    "DeadlockError": "clock",
    "VirtualClockLoop": "clock",
    "Exploration": "exploration",
    "Explorer": "exploration",
    "Failure": "exploration",
    "ReplayMismatchError": "exploration",
    "explore": "exploration",
    "replay": "exploration",
    "Deviation": "deviation",
    "ExploringLoop": "exploring_loop",
    "hang_report": "hang",
    "LeakedTask": "leaks",
    "UnawaitedCoroutine": "leaks",
    "leak_report": "leaks",
    "pending_tasks": "leaks",
    "track_unawaited": "leaks",
    "UnsupportedLoopError": "loops",
    "loop_factory": "loops",
    "OrderAssertionError": "ordering",
    "assert_every_start_before_any_finish": "ordering",
    "assert_order": "ordering",
    "assert_step_after": "ordering",
    "nth_step": "ordering",
    "OutputLine": "output",
    "TimedOutput": "output",
    "capture_output": "output",
    "compare_transcript": "output",
    "ReplayToken": "replay_token",
    "TokenError": "replay_token",
    "LivelockError": "stall",
    "RunawayTimeError": "stall",
    "TICKS_PER_SECOND": "ticks",
    "render_timeline": "timeline",
    "Finished": "timing",
    "LoopClock": "timing",
    "NoRunningLoopError": "timing",
    "REAL_CLOCK_TOLERANCE": "timing",
    "Span": "timing",
    "TimingAssertionError": "timing",
    "TimingCheck": "timing",
    "Tolerance": "timing",
    "Awaits": "trace",
    "Outcome": "trace",
    "Step": "trace",
    "TaskRecord": "trace",
    "Trace": "trace",
    "Tracer": "trace",
    "to_trace_events": "trace_events",
    "trace_file_name": "trace_events",
    "write_trace_events": "trace_events",
}

__all__ = [
    "DEFAULT_DEADLOCK_GRACE",
    "DEFAULT_STALL_BUDGET",
    "DEFAULT_TIME_BUDGET",
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
    "LivelockError",
    "LoopClock",
    "NoRunningLoopError",
    "OrderAssertionError",
    "Outcome",
    "OutputLine",
    "ReplayMismatchError",
    "ReplayToken",
    "RunawayTimeError",
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
    "replay",
    "to_trace_events",
    "trace_file_name",
    "track_unawaited",
    "write_trace_events",
]


if not TYPE_CHECKING:  # type checkers see the imports above, with their types

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'pytest_asyncspec' has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{home}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted([*globals(), *__all__])
