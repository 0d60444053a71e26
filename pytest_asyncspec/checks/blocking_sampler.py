"""The blocking watchdog's sampling thread: where the loop thread is while
a step runs long, on the real clock.

A daemon thread wakes every ``interval`` and reads two attributes of the
:class:`~pytest_asyncspec.tracing.trace.Tracer` (the running step's task and real
start).  It looks at the loop thread's stack (``sys._current_frames``) once
a step has run half the threshold, and again once it has run longer than
the threshold: two wakes fall in the second half of the threshold, so every
step over it has a stack to name its line and to judge allow rules by,
however the wakes fall.  With allow rules it looks at every wake and judges
each look, so a rule naming one call of a step does not allow the step's
other blocking (see :class:`Sample`).  What it gathers is settled against
the trace later (:mod:`.blocking_settle`).
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

from ..clock import threads
from ..tracing.trace import Tracer
from .allow_rules import AllowRule, allowing_rule
from .blocking_sites import FrameSite, coroutine_frame, step_frames
from .collector import CollectorTime

#: Wrapped so tests can make the sampler fail on purpose.
_current_frames: Callable[[], dict[int, FrameType]] = sys._current_frames

#: After this many internal errors the sampling thread gives up (it records
#: each error; the test itself is never affected).
MAX_ERRORS = 5
JOIN_TIMEOUT = 5.0


@dataclass
class Lane:
    """What the sampler saw of a step that allow rules allow, or do not."""

    #: Real time the step spent here, as far as the sampler can tell: each
    #: look counts the time since the look before (or the step's start).
    spent_ns: int = 0
    #: The stack that names it: the first look past the threshold, else the
    #: last look before it.
    frames: tuple[FrameSite, ...] = ()
    over: bool = False

    def add(self, elapsed_ns: int, frames: tuple[FrameSite, ...], *, over: bool) -> None:
        self.spent_ns += elapsed_ns
        if not self.over:
            self.frames, self.over = frames, over


@dataclass
class Sample:
    """The sampler's looks at task ``label``'s step (started at ``started_ns``),
    from half the threshold on.

    Without allow rules one look past the threshold names the step.  With
    rules every wake looks, and each look is judged on its own, so a rule
    naming one call of the step does not allow the rest of it: the step is
    allowed when the time seen outside every rule stays within the threshold.
    """

    label: int
    started_ns: int
    #: When the step was last looked at (inside it).
    seen_ns: int
    period: int = 0
    allowed: Lane = field(default_factory=Lane)
    unallowed: Lane = field(default_factory=Lane)

    def frames(self, threshold_ns: int) -> tuple[FrameSite, ...]:
        """The stack that names the step; the allow rules, read again on it
        when settling, then decide the step as the looks did."""
        if self.allowed.frames and self.unallowed.spent_ns <= threshold_ns:
            return self.allowed.frames
        return self.unallowed.frames or self.allowed.frames


class Sampler:
    """The sampling thread of one watchdog, and the samples it gathered.

    ``period`` tells the period a sample begins in; ``errors`` collects the
    thread's internal errors (formatted), never raised into the test.
    """

    def __init__(
        self,
        tracer: Tracer,
        threshold_ns: int,
        interval: float,
        allow: Sequence[AllowRule],
        *,
        period: Callable[[], int],
        errors: list[str],
    ) -> None:
        self.tracer = tracer
        self._clock = tracer.log.clock
        self._threshold_ns = threshold_ns
        self._interval = interval
        self._allow = tuple(allow)
        self._period = period
        self._errors = errors
        self._loop_thread: int | None = None
        self._collector: CollectorTime | None = None
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        #: Looks at steps that ran (or may have run) past the threshold.
        self._samples: list[Sample] = []
        #: The looks at the step last seen past half the threshold, until
        #: another step is looked at.
        self._looking: Sample | None = None
        #: Set when a step may have run too long unseen; only then is the
        #: whole trace scanned for long steps when settling.
        self.maybe_missed = False

    def start(self, loop_thread: int, start_ns: int, collector: CollectorTime | None) -> None:
        self._loop_thread = loop_thread
        self._collector = collector
        thread = self._thread = threading.Thread(
            target=self._watch, args=(start_ns,), name="asyncspec-blocking-watchdog", daemon=True
        )
        # Its sampling is none of the virtual clock's business (see threads.py).
        threads.exclude(thread)
        thread.start()

    def stop(self) -> None:
        """Stop the thread promptly (an error is recorded if it will not)."""
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT)
            if self._thread.is_alive():
                self._errors.append(
                    f"the sampling thread did not stop within {JOIN_TIMEOUT:g} s; "
                    "it is a daemon thread and is left behind"
                )

    def samples(self) -> list[Sample]:
        """Every sample so far, the one being taken included."""
        looking = self._looking
        return [*self._samples, *([looking] if looking is not None else [])]

    def _watch(self, start_ns: int) -> None:
        tracer = self.tracer
        threshold_ns = self._threshold_ns
        early_ns = threshold_ns // 2
        wait = self._stop_event.wait
        # The step looked at past the threshold (no need to look again unless
        # rules judge every look), and the step last looked at.
        sampled: tuple[int, int] | None = None
        looked: tuple[int, int] | None = None
        every_wake = bool(self._allow)
        last_label, last_started = 0, 0
        last_wake = start_ns
        errors = 0
        while True:
            stopping = wait(self._interval)
            try:
                # The cheap part, every wake: two attributes and the clock.
                label = tracer.current
                started = tracer.step_started_ns
                now = self._clock()
                # A step can hide only between two wakes: if they were far
                # apart (the GIL was held, the machine starved), or the step
                # seen last time has ended and may have run too long, a scan
                # of the trace settles it at the end.
                last = (last_label, last_started)
                if now - last_wake > threshold_ns or (
                    last_label
                    and last != (label, started)
                    and last not in (sampled, looked)
                    and now - last_started > threshold_ns
                ):
                    self.maybe_missed = True
                last_wake, last_label, last_started = now, label, started
                step = (label, started)
                age = now - started
                if label and age > early_ns and step != sampled:
                    over = age > threshold_ns
                    if (over or every_wake or step != looked) and self._sample(
                        label, started, over=over
                    ):
                        looked = step
                        if over and not every_wake:
                            sampled = step
            except Exception:
                errors += 1
                self._errors.append(f"error in the sampling thread:\n{traceback.format_exc()}")
                if errors >= MAX_ERRORS:
                    self._errors.append(
                        f"the sampling thread stopped after {errors} errors; long steps are "
                        "still found by duration when the watchdog stops"
                    )
                    self.maybe_missed = True
                    return
            if stopping:
                return

    def _sample(self, label: int, started: int, *, over: bool) -> bool:
        """Record where the loop thread is; False if it was not inside the step.

        ``over``: the step has run past the threshold (else past half of it).
        """
        assert self._loop_thread is not None
        frame = _current_frames().get(self._loop_thread)
        if frame is None:
            return False
        seen = self._clock()
        tracer = self.tracer
        # Our thread may have lost the GIL between reading the step and the
        # stack: if the step changed meanwhile, the stack is another step's.
        # During a collection it shows whatever line allocated last.
        if tracer.current != label or tracer.step_started_ns != started:
            return False
        if self._collector is not None and self._collector.collecting:
            return False
        sites, count, boundary = step_frames(frame, coroutine_frame(tracer, label))
        del frame
        if not boundary or count == 0:
            # Not in a traced step, or on the step's very edge (the recorder
            # has set the task but not yet the start): look again next wake.
            return False
        sample = self._looking
        if sample is None or (sample.label, sample.started_ns) != (label, started):
            # The looks at another step are kept only if it may have run past
            # the threshold (the trace settles it).
            if sample is not None and seen - sample.started_ns > self._threshold_ns:
                self._samples.append(sample)
            sample = self._looking = Sample(label, started, started, self._period())
        lane = sample.allowed if allowing_rule(self._allow, sites) else sample.unallowed
        lane.add(seen - sample.seen_ns, sites, over=over)
        sample.seen_ns = seen
        tracer.remember_name(label)
        return True
