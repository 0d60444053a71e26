"""The blocking watchdog's tallies of blocking sleeps on a virtual clock.

On a :class:`~pytest_asyncspec.clock.virtual_loop.VirtualClockLoop` a blocking
``time.sleep`` returns at once, so no sampler could see it; the loop reports
every such sleep with its caller's frame instead (``on_blocking_sleep``),
and the sleeps of one step add up to its virtual blocking time, exactly.
Each sleep is judged by the allow rules on its own.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import CodeType, FrameType

from ..clock.ticks import seconds_to_ticks
from ..clock.virtual_loop import VirtualClockLoop
from ..introspection import is_library
from ..tracing.trace import Tracer
from .allow_rules import AllowRule, allowing_rule
from .blocking_sites import FrameSite, coroutine_frame, near_frames, site_of, step_frames


@dataclass
class Longest:
    """The longest of some blocking sleeps, and its stack."""

    ticks: int = -1
    frames: tuple[FrameSite, ...] = ()

    def offer(self, ticks: int, frames: Callable[[], tuple[FrameSite, ...]]) -> None:
        # Frames are walked only for a sleep longer than every one before it.
        if ticks > self.ticks:
            self.ticks = ticks
            self.frames = frames()


@dataclass
class SleepTally:
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
    longest_unallowed: Longest = field(default_factory=Longest)
    longest_allowed: Longest = field(default_factory=Longest)


class SleepTallies:
    """The blocking sleeps of a virtual-clock loop's steps, while listening.

    :meth:`listen` puts this in the loop's ``on_blocking_sleep`` (chained to
    the listener already there), :meth:`stop` takes it out.  Only steps that
    slept longer than the threshold are kept, so memory stays bounded however
    many steps sleep a little.
    """

    def __init__(
        self,
        tracer: Tracer,
        threshold_ns: int,
        allow: Sequence[AllowRule],
        *,
        period: Callable[[], int],
        errors: list[str],
    ) -> None:
        self.tracer = tracer
        self._threshold_ns = threshold_ns
        self._allow = tuple(allow)
        self._period = period
        self._errors = errors
        self._vloop: VirtualClockLoop | None = None
        self._previous: Callable[[float, FrameType], None] | None = None
        self._closed: list[SleepTally] = []
        self._open: SleepTally | None = None
        #: Whether the rules allow a sleep called from a line of user code.
        self._user_lines: dict[tuple[CodeType, int], bool] = {}

    def listen(self, vloop: VirtualClockLoop) -> None:
        self._vloop = vloop
        self._previous = vloop.on_blocking_sleep
        vloop.on_blocking_sleep = self._on_blocking_sleep

    def stop(self) -> None:
        vloop = self._vloop
        if vloop is None:
            return
        if vloop.on_blocking_sleep == self._on_blocking_sleep:
            vloop.on_blocking_sleep = self._previous
        self._close()

    def tallies(self) -> list[SleepTally]:
        """The steps that slept longer than the threshold, the open one included."""
        open_tally = self._open
        extra = (
            [open_tally] if open_tally is not None and open_tally.ticks > self._threshold_ns else []
        )
        return [*self._closed, *extra]

    def _on_blocking_sleep(self, seconds: float, frame: FrameType) -> None:
        try:
            self._count(seconds, frame)
        except Exception:
            # Runs on the loop thread, inside the user's time.sleep: a bug
            # here must not surface there.
            self._errors.append(
                f"error in the virtual-clock sleep listener:\n{traceback.format_exc()}"
            )
        previous = self._previous
        if previous is not None:
            previous(seconds, frame)

    def _count(self, seconds: float, frame: FrameType) -> None:
        tracer = self.tracer
        label = tracer.current
        if not label:
            return  # not inside a traced task's step
        serial = tracer.step_serial
        tally = self._open
        if tally is None or tally.label != label or tally.serial != serial:
            self._close()
            tally = self._open = SleepTally(
                label, serial, tracer.step_started_ns, period=self._period()
            )
            tracer.remember_name(label)
        ticks = seconds_to_ticks(seconds)
        tally.ticks += ticks
        tally.calls += 1
        vloop = self._vloop
        if vloop is not None:
            # The loop has already counted the sleep.
            tally.loop_ns = vloop.virtual_ticks()
        if self._allow and self._allowed(frame, label):
            longest = tally.longest_allowed
        else:
            tally.unallowed += ticks
            longest = tally.longest_unallowed
        # The longest sleep names the step's blocking line.
        longest.offer(ticks, lambda: step_frames(frame, coroutine_frame(tracer, label))[0])

    def _allowed(self, frame: FrameType, label: int) -> bool:
        """Whether a rule allows a blocking sleep called from ``frame``."""
        code = frame.f_code
        if is_library(code.co_filename):
            near = near_frames(frame, coroutine_frame(self.tracer, label))
            return allowing_rule(self._allow, near) is not None
        # Called from the user's code: that frame alone decides, so the
        # answer for its line holds for every sleep made there.
        key = (code, frame.f_lineno)
        known = self._user_lines.get(key)
        if known is None:
            known = self._user_lines[key] = (
                allowing_rule(self._allow, (site_of(frame),)) is not None
            )
        return known

    def _close(self) -> None:
        tally = self._open
        if tally is not None and tally.ticks > self._threshold_ns:
            self._closed.append(tally)
        self._open = None
