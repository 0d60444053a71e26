"""pytest-asyncspec: virtual time, event-loop traces, timing checks and schedule
exploration for asyncio.

The top level holds what tests use: the types behind the fixtures, the
assertions, ``explore``/``replay``, the virtual-clock loop and its errors.
The rest is in two namespaces, :mod:`pytest_asyncspec.tracing` (the trace, its
exports and the checks read from it) and :mod:`pytest_asyncspec.exploration`
(the explorer's parts), and the clock's constants in
:mod:`pytest_asyncspec.clock`.

Every name is imported on first use (PEP 562), so that pytest with the
plugin installed starts as fast as without it: a run that never explores or
traces never loads the modules that do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import namespace

if TYPE_CHECKING:  # each name re-exported explicitly (X as X): typed for users
    from .checks.ordering import (
        OrderAssertionError as OrderAssertionError,
        assert_every_start_before_any_finish as assert_every_start_before_any_finish,
        assert_order as assert_order,
        assert_step_after as assert_step_after,
        nth_step as nth_step,
    )
    from .checks.output import (
        OutputLine as OutputLine,
        TimedOutput as TimedOutput,
        capture_output as capture_output,
        compare_transcript as compare_transcript,
    )
    from .checks.timing import (
        REAL_CLOCK_TOLERANCE as REAL_CLOCK_TOLERANCE,
        ClockControlError as ClockControlError,
        Finished as Finished,
        LoopClock as LoopClock,
        NoRunningLoopError as NoRunningLoopError,
        Span as Span,
        TimingAssertionError as TimingAssertionError,
        TimingCheck as TimingCheck,
        Tolerance as Tolerance,
        cpu_wait as cpu_wait,
    )
    from .clock.loops import (
        UnsupportedLoopError as UnsupportedLoopError,
        loop_factory as loop_factory,
    )
    from .clock.stall import (
        LivelockError as LivelockError,
        RunawayTimeError as RunawayTimeError,
    )
    from .clock.virtual_loop import (
        DeadlockError as DeadlockError,
        VirtualClockLoop as VirtualClockLoop,
    )
    from .exploration.explorer import (
        ReplayMismatchError as ReplayMismatchError,
        explore as explore,
        replay as replay,
    )
    from .plugin.claims import (
        ClaimRecorder as ClaimRecorder,
    )
    from .plugin.hooks import (
        AsyncspecLeakWarning as AsyncspecLeakWarning,
    )
    from .plugin.observation import (
        TraceView as TraceView,
    )
    from .plugin.settings import (
        Effective as Effective,
    )

#: Public name -> the module that defines it.
_HOMES = {
    "OrderAssertionError": "checks.ordering",
    "assert_every_start_before_any_finish": "checks.ordering",
    "assert_order": "checks.ordering",
    "assert_step_after": "checks.ordering",
    "nth_step": "checks.ordering",
    "OutputLine": "checks.output",
    "TimedOutput": "checks.output",
    "capture_output": "checks.output",
    "compare_transcript": "checks.output",
    "REAL_CLOCK_TOLERANCE": "checks.timing",
    "ClockControlError": "checks.timing",
    "Finished": "checks.timing",
    "LoopClock": "checks.timing",
    "NoRunningLoopError": "checks.timing",
    "Span": "checks.timing",
    "TimingAssertionError": "checks.timing",
    "TimingCheck": "checks.timing",
    "Tolerance": "checks.timing",
    "cpu_wait": "checks.timing",
    "UnsupportedLoopError": "clock.loops",
    "loop_factory": "clock.loops",
    "LivelockError": "clock.stall",
    "RunawayTimeError": "clock.stall",
    "DeadlockError": "clock.virtual_loop",
    "VirtualClockLoop": "clock.virtual_loop",
    "ReplayMismatchError": "exploration.explorer",
    "explore": "exploration.explorer",
    "replay": "exploration.explorer",
    "ClaimRecorder": "plugin.claims",
    "AsyncspecLeakWarning": "plugin.hooks",
    "TraceView": "plugin.observation",
    "Effective": "plugin.settings",
}

#: Names this namespace offered before 0.2 -> the namespace offering them now.
_MOVED = {
    **dict.fromkeys(
        (
            "AllowRule",
            "Awaits",
            "BlockingEvent",
            "BlockingWatchdog",
            "LeakedTask",
            "Outcome",
            "Step",
            "TaskRecord",
            "Trace",
            "Tracer",
            "UnawaitedCoroutine",
            "hang_report",
            "leak_report",
            "parse_allow_rules",
            "pending_tasks",
            "render_timeline",
            "to_trace_events",
            "trace_file_name",
            "track_unawaited",
            "write_trace_events",
        ),
        "tracing",
    ),
    **dict.fromkeys(
        (
            "Deviation",
            "Exploration",
            "Explorer",
            "ExploringLoop",
            "Failure",
            "ReplayToken",
            "TokenError",
        ),
        "exploration",
    ),
    **dict.fromkeys(
        (
            "DEFAULT_DEADLOCK_GRACE",
            "DEFAULT_STALL_BUDGET",
            "DEFAULT_TIME_BUDGET",
            "TICKS_PER_SECOND",
        ),
        "clock",
    ),
}

#: Derived from the table, so that the two cannot drift apart
#: (tests/test_public_names.py keeps the imports above in step with it).
__all__ = sorted(_HOMES)

if not TYPE_CHECKING:  # type checkers see the imports above, with their types
    __getattr__, __dir__ = namespace(__name__, _HOMES, _MOVED)
