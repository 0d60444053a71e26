"""pytest-asyncspec: virtual time, event-loop traces, timing checks and schedule
exploration for asyncio.

The public names below are imported on first use (PEP 562), so that pytest
with the plugin installed starts as fast as without it: a run that never
explores or traces never loads the modules that do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # each name re-exported explicitly (X as X): typed for users
    from .allow_rules import (
        AllowRule as AllowRule,
        parse_allow_rules as parse_allow_rules,
    )
    from .blocking import (
        BlockingEvent as BlockingEvent,
        BlockingWatchdog as BlockingWatchdog,
    )
    from .claims import (
        ClaimRecorder as ClaimRecorder,
    )
    from .clock import (
        DEFAULT_DEADLOCK_GRACE as DEFAULT_DEADLOCK_GRACE,
        DEFAULT_STALL_BUDGET as DEFAULT_STALL_BUDGET,
        DEFAULT_TIME_BUDGET as DEFAULT_TIME_BUDGET,
        DeadlockError as DeadlockError,
        VirtualClockLoop as VirtualClockLoop,
    )
    from .deviation import (
        Deviation as Deviation,
    )
    from .exploration import (
        Exploration as Exploration,
        Explorer as Explorer,
        Failure as Failure,
        ReplayMismatchError as ReplayMismatchError,
        explore as explore,
        replay as replay,
    )
    from .exploring_loop import (
        ExploringLoop as ExploringLoop,
    )
    from .hang import (
        hang_report as hang_report,
    )
    from .leaks import (
        LeakedTask as LeakedTask,
        UnawaitedCoroutine as UnawaitedCoroutine,
        leak_report as leak_report,
        pending_tasks as pending_tasks,
        track_unawaited as track_unawaited,
    )
    from .loops import (
        UnsupportedLoopError as UnsupportedLoopError,
        loop_factory as loop_factory,
    )
    from .ordering import (
        OrderAssertionError as OrderAssertionError,
        assert_every_start_before_any_finish as assert_every_start_before_any_finish,
        assert_order as assert_order,
        assert_step_after as assert_step_after,
        nth_step as nth_step,
    )
    from .output import (
        OutputLine as OutputLine,
        TimedOutput as TimedOutput,
        capture_output as capture_output,
        compare_transcript as compare_transcript,
    )
    from .replay_token import (
        ReplayToken as ReplayToken,
        TokenError as TokenError,
    )
    from .stall import (
        LivelockError as LivelockError,
        RunawayTimeError as RunawayTimeError,
    )
    from .ticks import (
        TICKS_PER_SECOND as TICKS_PER_SECOND,
    )
    from .timeline import (
        render_timeline as render_timeline,
    )
    from .timing import (
        REAL_CLOCK_TOLERANCE as REAL_CLOCK_TOLERANCE,
        Finished as Finished,
        LoopClock as LoopClock,
        NoRunningLoopError as NoRunningLoopError,
        Span as Span,
        TimingAssertionError as TimingAssertionError,
        TimingCheck as TimingCheck,
        Tolerance as Tolerance,
    )
    from .trace import (
        Awaits as Awaits,
        Outcome as Outcome,
        Step as Step,
        TaskRecord as TaskRecord,
        Trace as Trace,
        Tracer as Tracer,
    )
    from .trace_events import (
        to_trace_events as to_trace_events,
        trace_file_name as trace_file_name,
        write_trace_events as write_trace_events,
    )

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

#: Derived from the table, so that the two cannot drift apart
#: (tests/test_public_names.py keeps the imports above in step with it).
__all__ = sorted(_HOMES)


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
