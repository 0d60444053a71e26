"""Find task steps that block the event loop, and name the blocking line.

A task step that runs longer than a threshold holds the loop: no other task,
timer or I/O callback runs meanwhile.  :class:`BlockingWatchdog` reports each
such step as a :class:`BlockingEvent` with the task, how long the step held
the loop, and the line that blocked, whatever the blocking call was
(``time.sleep``, a busy loop, a synchronous socket or file read, a long C call).
The watchdog puts together four parts, each in its own module:

* **real time** -- a sampling thread looks at the loop thread's stack while a
  step runs long (:mod:`.blocking_sampler`); the step's final duration comes
  from the trace;
* **virtual time** -- on a :class:`~pytest_asyncspec.clock.virtual_loop.VirtualClockLoop`
  a blocking ``time.sleep`` returns at once, so no sampler could see it; the
  loop reports every such sleep with its caller's frame instead, and the
  sleeps of one step add up to its virtual blocking time, exactly
  (:mod:`.blocking_sleeps`);
* **settling** -- pure functions turn the looks and the tallies into events
  against the trace, report by duration alone a long step the sampler could
  not look at (a C call that holds the GIL, a starved machine), and read the
  allow rules (:mod:`.blocking_settle`); the frames all of them read are in
  :mod:`.blocking_sites`;
* **the garbage collector** -- a collection that runs inside a step (a full
  one can take tens of milliseconds) is timed through ``gc.callbacks``
  (:mod:`.collector`) and taken out of the step's blocking time: a step that
  is over the threshold only because of it is reported as the collector's,
  never a violation, and the sampler does not sample during a collection.

An event is allowed, not a violation, when an :class:`AllowRule` names the
frame that made the blocking call or a library frame between it and the
user's code (:func:`~pytest_asyncspec.checks.allow_rules.allowing_rule`).  Nothing
here imports pytest.
"""

from __future__ import annotations

import bisect
import threading
import traceback
from collections.abc import Sequence
from types import TracebackType

from ..clock.ticks import parse_seconds, seconds_to_ticks
from ..clock.virtual_loop import VirtualClockLoop
from ..tracing.trace import Trace, Tracer
from .allow_rules import AllowRule
from .blocking_sampler import Sampler
from .blocking_settle import EventMaker, Window, apply_rules, events_from
from .blocking_sites import BlockingEvent as BlockingEvent, FrameSite as FrameSite
from .blocking_sleeps import SleepTallies
from .collector import CollectorTime

#: The sampler wakes this often per threshold (a step is seen at most a
#: quarter threshold late) but never more often than every millisecond.
_WAKES_PER_THRESHOLD = 4
_MIN_SAMPLE_INTERVAL = 0.001


class BlockingWatchdog:
    """Reports task steps that hold the loop longer than ``threshold`` seconds.

    ``tracer`` must be installed on the loop (only traced tasks' steps are
    watched).  ``loop_thread`` is the ident of the thread that runs the loop;
    by default the thread running it when :meth:`start` is called, else the
    thread calling :meth:`start`.  Use as a context manager or call
    :meth:`start` / :meth:`stop`; read :meth:`violations` after stopping.
    """

    def __init__(
        self,
        tracer: Tracer,
        threshold: float,
        *,
        allow: Sequence[AllowRule | str] = (),
        sample_interval: float | None = None,
        loop_thread: int | None = None,
    ) -> None:
        self.tracer = tracer
        # The clock the tracer stamps steps with (coarse when it keeps only
        # long steps): every time compared with a step's must come from it.
        self._clock = tracer.log.clock
        self.threshold = parse_seconds(threshold, "blocking threshold", example="0.1")
        self.allow: tuple[AllowRule, ...] = tuple(
            rule if isinstance(rule, AllowRule) else AllowRule(rule) for rule in allow
        )
        if sample_interval is None:
            sample_interval = max(self.threshold / _WAKES_PER_THRESHOLD, _MIN_SAMPLE_INTERVAL)
        self.sample_interval = parse_seconds(
            sample_interval,
            "sample_interval",
            example="0.025, or None for a quarter of the threshold",
        )
        #: Internal errors of the watchdog (formatted), never raised into the test.
        self.watchdog_errors: list[str] = []
        self._threshold_ns = seconds_to_ticks(self.threshold)
        self._loop_thread = loop_thread
        self._started = False
        self._stopped = False
        self._start_ns = 0
        self._first_step = 0
        self._period = 0
        #: Clock reading at which each period after the 0th began.
        self._period_starts: list[int] = []
        self._sampler = Sampler(
            tracer,
            self._threshold_ns,
            self.sample_interval,
            self.allow,
            period=self._current_period,
            errors=self.watchdog_errors,
        )
        self._sleeps = SleepTallies(
            tracer,
            self._threshold_ns,
            self.allow,
            period=self._current_period,
            errors=self.watchdog_errors,
        )
        self._final: list[BlockingEvent] | None = None
        self._collector: CollectorTime | None = None

    # -- life --------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError("this BlockingWatchdog was already started; make a new one")
        self._started = True
        loop = self.tracer.loop
        if self._loop_thread is None:
            # asyncio's loops note the thread running them (None while
            # stopped); uvloop does not, and is then run by our caller.
            running = getattr(loop, "_thread_id", None) if loop.is_running() else None
            self._loop_thread = running if isinstance(running, int) else threading.get_ident()
        # A tenth of a millisecond, or a hundredth of the threshold, of
        # collection in one step is worth keeping; less cannot matter.
        self._collector = CollectorTime(
            self.tracer, self._loop_thread, min(100_000, self._threshold_ns // 100)
        )
        self._collector.install()
        # Steps recorded before the watchdog started are not its business.
        self._first_step = len(Trace(self.tracer))
        self._start_ns = self._clock()
        if isinstance(loop, VirtualClockLoop):
            self._sleeps.listen(loop)
        self._sampler.start(self._loop_thread, self._start_ns, self._collector)

    def stop(self) -> None:
        """Stop watching (promptly) and settle the events; safe to call twice."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        self._sampler.stop()
        if self._collector is not None:
            self._collector.remove()
        self._sleeps.stop()
        self._final = self._settle(count_hits=True)

    @property
    def may_have_missed(self) -> bool:
        """Whether the sampler may have missed a long step (it woke late), so
        that settling reads every step of the trace, not only those sampled."""
        return self._sampler.maybe_missed

    @property
    def running(self) -> bool:
        return self._started and not self._stopped

    def new_period(self) -> int:
        """Start a new period: events of steps that begin from now on carry
        its number (1, 2, ...).  Call it between steps, on the loop's thread."""
        self._period_starts.append(self._clock())
        self._period += 1
        return self._period

    def _current_period(self) -> int:
        return self._period

    def _period_at(self, started_ns: int) -> int:
        return bisect.bisect_right(self._period_starts, started_ns)

    def __enter__(self) -> BlockingWatchdog:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- results -----------------------------------------------------------

    def events(self) -> list[BlockingEvent]:
        """Every blocking step, allowed or not, in the order they started.

        Final once stopped; while running, a snapshot (rule hits not counted).
        """
        if self._final is not None:
            return list(self._final)
        return self._settle(count_hits=False)

    def violations(self) -> list[BlockingEvent]:
        """The blocking steps no allow rule accepts (the collector's pauses are
        not the task's)."""
        return [
            event for event in self.events() if event.allowed_by is None and not event.by_collector
        ]

    def collector_pauses(self) -> list[BlockingEvent]:
        """The steps over the threshold only because the garbage collector
        ran inside them."""
        return [event for event in self.events() if event.by_collector]

    def allowed(self) -> list[BlockingEvent]:
        """The blocking steps some allow rule accepts."""
        return [event for event in self.events() if event.allowed_by is not None]

    def unused_rules(self) -> list[AllowRule]:
        """This watchdog's allow rules that never allowed an event (in any
        watchdog sharing them)."""
        return [rule for rule in self.allow if not rule.used]

    # -- settling: samples and tallies become events -------------------------

    def _settle(self, *, count_hits: bool) -> list[BlockingEvent]:
        try:
            samples = self._sampler.samples()
            tallies = self._sleeps.tallies()
            scan_all = self._sampler.maybe_missed or self._stopped is False
            if not samples and not tallies and not scan_all:
                return []  # the sampler saw nothing long: no need to read the trace
            tracer = self.tracer
            window = Window(
                first_step=self._first_step,
                start_ns=self._start_ns,
                threshold_ns=self._threshold_ns,
                running=(tracer.current, tracer.step_started_ns),
                running_serial=(tracer.current, tracer.step_serial),
                now_ns=self._clock(),
                scan_all=scan_all,
            )
            events = events_from(
                tracer.trace(),
                samples,
                tallies,
                window,
                EventMaker(tracer, self.threshold, self._collector),
                self._period_at,
            )
        except Exception:
            self.watchdog_errors.append(
                f"error in settling the blocking events:\n{traceback.format_exc()}"
            )
            return []
        return apply_rules(events, self.allow, count_hits=count_hits)
