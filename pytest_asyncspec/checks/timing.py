"""Measure the timing of async code and compare it with expected figures.

One assertion reads the same under both clocks:

* under the virtual clock it is exact to the tick (1 ns), except for a span
  that contained real work in flight (an executor job, a subprocess, an
  outside socket): that span is exact up to the real time that flowed inside
  it (:attr:`Span.real_work`), and a tolerance applies to it as on the real
  clock;
* under the real clock it accepts a documented, noise-aware window around the
  expected figure (:class:`Tolerance`), narrow enough that the wrong
  behaviour (25 s where 5 s is expected, a sequential run where a concurrent
  one is claimed) still fails.  A span measured with :meth:`LoopClock.measure`
  also knows how long the loop's thread waited for a CPU inside it
  (:attr:`Span.cpu_wait`, from the kernel's scheduler statistics): that wait
  is the machine's load, not the program's time, and the window's upper end
  moves up by it, so the bound holds however busy the machine is.

Nothing here imports pytest; :class:`LoopClock` works in any coroutine.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from ..clock.loops import ClockChoice
from ..clock.ticks import seconds_to_ticks, ticks_to_seconds
from ..clock.virtual_loop import VirtualClockLoop


class TimingAssertionError(AssertionError):
    """A measured time is not the expected one (message shows both)."""


class NoRunningLoopError(RuntimeError):
    """A loop clock was read outside a running event loop."""


class ClockControlError(RuntimeError):
    """The clock cannot be moved by hand here (the loop runs on real time)."""


_NO_RUNNING_LOOP = (
    "the asyncspec clock reads the running event loop's time, and no "
    "loop is running here. Read it inside a coroutine: make the test "
    "`async def` (run by pytest-asyncio) or call it from code that "
    "the loop runs; a synchronous test or fixture has no loop time."
)


@dataclass(frozen=True)
class Tolerance:
    """How far a real-clock measurement may stray from the expected figure.

    A measurement of ``expected`` seconds passes when it lies in
    ``[expected - early - early_fraction * expected,
    expected + late + late_fraction * expected]``.  Real timers almost never
    fire early, but a loaded machine makes them late, hence the asymmetry.
    """

    early: float = 0.01
    early_fraction: float = 0.01
    late: float = 0.1
    late_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("early", "early_fraction", "late", "late_fraction"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(
                    f"Tolerance.{name} must be a non-negative number of seconds "
                    f"or a fraction, got {value!r}"
                )

    def window(self, expected: float) -> tuple[float, float]:
        scale = abs(expected)
        return (
            expected - self.early - self.early_fraction * scale,
            expected + self.late + self.late_fraction * scale,
        )

    def describe(self) -> str:
        return (
            f"-{_fmt(self.early)} s-{self.early_fraction:.0%} / "
            f"+{_fmt(self.late)} s+{self.late_fraction:.0%}"
        )

    def delayed(self, seconds: float) -> Tolerance:
        """This window with its upper end ``seconds`` later (see :func:`cpu_wait`)."""
        return replace(self, late=self.late + max(0.0, seconds))


#: The window used under the real clock unless a test passes its own.
REAL_CLOCK_TOLERANCE = Tolerance()


def cpu_wait() -> float | None:
    """Seconds the calling thread has spent runnable but waiting for a CPU, so far.

    Linux counts it per thread (the second figure of
    ``/proc/thread-self/schedstat``: time on a run queue).  On a loaded
    machine it is what makes a real timer, a woken thread or a child process
    late: the difference of two readings is how much of a span the thread
    could not run although it was ready to.  ``None`` where the kernel does
    not say (not Linux, or a kernel without scheduler statistics).
    """
    try:
        with open("/proc/thread-self/schedstat", "rb") as stat:
            fields = stat.read().split()
        return int(fields[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def cpu_wait_since(start: float | None) -> float:
    """Seconds of :func:`cpu_wait` since the reading ``start`` (0.0 when unknown)."""
    now = cpu_wait()
    return 0.0 if start is None or now is None else max(0.0, now - start)


def _fmt(seconds: float) -> str:
    text = f"{seconds:.9f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


@dataclass(frozen=True)
class TimingCheck:
    """The record of one timing comparison, kept for reports."""

    what: str
    expected: float
    measured: float
    clock: ClockChoice
    passed: bool
    low: float
    high: float
    tolerance: str
    documented: float | None = None
    #: Seconds of real work in flight inside the measured span (virtual clock).
    real_work: float = 0.0
    #: Seconds the loop's thread waited for a CPU inside the span (real clock).
    cpu_wait: float = 0.0

    def message(self) -> str:
        if self.clock != "real" and self.real_work:
            rule = (
                f"{self.clock} clock: {_fmt(self.measured - self.real_work)} s virtual + "
                f"{_fmt(self.real_work)} s of real work in flight; accepted "
                f"{_fmt(self.low)} s to {_fmt(self.high)} s, {self.tolerance}"
            )
        elif self.clock != "real":
            rule = f"{self.clock} clock, {self.tolerance}"
        else:
            rule = (
                f"real clock, accepted {_fmt(self.low)} s to {_fmt(self.high)} s "
                f"with tolerance {self.tolerance}"
            )
            if self.cpu_wait:
                rule += f" + {_fmt(round(self.cpu_wait, 6))} s the loop waited for a CPU"
        text = (
            f"{self.what}: expected {_fmt(self.expected)} s, "
            f"measured {_fmt(self.measured)} s ({rule})"
        )
        if self.documented is not None:
            text += f"; the source documents {_fmt(self.documented)} s"
        return text


class Elapsed(float):
    """A measured duration in seconds that knows how much of it was real work.

    ``real_work`` is the real time that flowed on a virtual clock while real
    work was in flight inside the span (0.0 for a span of pure virtual time,
    and always 0.0 on the real clock, where everything is real).
    ``cpu_wait`` is, on the real clock, the time the loop's thread waited for
    a CPU inside the span (0.0 on the virtual clock, and where the kernel
    does not say).  Arithmetic gives plain floats.
    """

    real_work: float
    cpu_wait: float

    def __new__(cls, seconds: float, real_work: float = 0.0, cpu_wait: float = 0.0) -> Elapsed:
        value = super().__new__(cls, seconds)
        value.real_work = real_work
        value.cpu_wait = cpu_wait
        return value


@dataclass
class Span:
    """The start, end and elapsed time of a measured block (seconds)."""

    start: float
    end: float | None = None
    _flow_start: int = field(default=0, repr=False, compare=False)
    _flow_end: int = field(default=0, repr=False, compare=False)
    _wait_start: float | None = field(default=None, repr=False, compare=False)
    _wait: float = field(default=0.0, repr=False, compare=False)

    def _finished(self) -> float:
        if self.end is None:
            raise RuntimeError(
                "the measured block has not finished yet: read span.elapsed after the "
                "`with clock.measure() as span:` block"
            )
        return self.end

    @property
    def real_work(self) -> float:
        """Seconds of real time that flowed inside the span (virtual clock)."""
        self._finished()
        return ticks_to_seconds(self._flow_end - self._flow_start)

    @property
    def cpu_wait(self) -> float:
        """Seconds the loop's thread waited for a CPU inside the span (real clock)."""
        self._finished()
        return self._wait

    @property
    def elapsed(self) -> Elapsed:
        end = self._finished()
        return Elapsed(
            ticks_to_seconds(seconds_to_ticks(end) - seconds_to_ticks(self.start)),
            self.real_work,
            self._wait,
        )


@dataclass
class Finished:
    """Results of awaitables run together and the time each finished."""

    results: list[Any]
    times: list[float]


@dataclass
class LoopClock:
    """Reads the running loop's clock relative to an origin, and checks timings.

    The origin (t = 0) is the loop time when the clock was first read in a
    coroutine, or when :meth:`reset` was called.
    """

    tolerance: Tolerance = REAL_CLOCK_TOLERANCE
    #: Every comparison made so far (a claim test's figures come from here).
    checks: list[TimingCheck] = field(default_factory=list, init=False, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    _origin: int = field(default=0, init=False, repr=False)

    # -- reading the clock -------------------------------------------------

    def _bound(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise NoRunningLoopError(_NO_RUNNING_LOOP) from None
            self._loop = loop
            self._origin = self._loop_ticks(loop)
        return self._loop

    @staticmethod
    def _loop_ticks(loop: asyncio.AbstractEventLoop) -> int:
        if isinstance(loop, VirtualClockLoop):
            return loop.virtual_ticks()
        return seconds_to_ticks(loop.time())

    @staticmethod
    def _loop_flow(loop: asyncio.AbstractEventLoop) -> int:
        if isinstance(loop, VirtualClockLoop):
            return loop.real_flow_ticks()
        return 0

    @property
    def mode(self) -> ClockChoice:
        """``"virtual"`` or ``"manual"`` on a virtual-clock loop (see
        :meth:`advance`), ``"real"`` on any other."""
        loop = self._bound()
        if isinstance(loop, VirtualClockLoop):
            return "manual" if loop.manual else "virtual"
        return "real"

    def now(self) -> float:
        """Seconds since the origin."""
        loop = self._bound()
        return ticks_to_seconds(self._loop_ticks(loop) - self._origin)

    def restart(self) -> None:
        """Forget the loop, the origin and the checks: the test runs afresh
        (exploration runs a test's body once per schedule)."""
        self._loop = None
        self._origin = 0
        self.checks.clear()

    def reset(self) -> None:
        """Make the current instant t = 0."""
        self._origin = self._loop_ticks(self._bound())

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, then return.

        Everything due up to now + ``seconds`` runs first -- timers, the
        tasks they wake, and the timers those set, in the order the loop
        would run them -- and the call returns at exactly that instant,
        once nothing else is left to run at or before it.  On the manual
        clock (``clock="manual"``) this is how time moves; on the virtual
        clock it is a sleep whose end comes after everything due then.
        Real work in flight (a thread, an outside socket) keeps its real
        timing: the clock flows with it, as on the virtual clock.
        """
        loop = self._bound()
        if not isinstance(loop, VirtualClockLoop):
            raise ClockControlError(
                f"advance() moves a virtual clock, and this test's loop "
                f"({type(loop).__module__}.{type(loop).__qualname__}) runs on real time: "
                "ask for the virtual or the manual clock (@pytest.mark.asyncspec("
                "clock='manual'), --asyncspec-clock=manual, or asyncspec_clock = manual "
                "in the ini file), or wait with asyncio.sleep on the real clock"
            )
        if asyncio.get_running_loop() is not loop:
            raise ClockControlError(
                "advance() was awaited on another event loop than the one this clock "
                "first read: a clock belongs to one loop (the test's)"
            )
        await loop.run_for(seconds)

    @contextmanager
    def measure(self) -> Iterator[Span]:
        """Time a block: ``with clock.measure() as span: ...; span.elapsed``."""
        real = self.mode == "real"
        span = Span(
            start=self.now(),
            _flow_start=self._loop_flow(self._bound()),
            _wait_start=cpu_wait() if real else None,
        )
        try:
            yield span
        finally:
            span.end = self.now()
            span._flow_end = self._loop_flow(self._bound())
            if real:
                span._wait = cpu_wait_since(span._wait_start)

    async def finish_times(self, *awaitables: Awaitable[Any]) -> Finished:
        """Run the awaitables together (like ``gather``) and note when each ended."""
        for awaitable in awaitables:
            if not inspect.isawaitable(awaitable):
                hint = " (call it: job(), not job)" if callable(awaitable) else ""
                raise TypeError(f"finish_times() takes awaitables, got {awaitable!r}{hint}")
        times: list[float] = [0.0] * len(awaitables)

        async def timed(index: int, awaitable: Awaitable[Any]) -> Any:
            result = await awaitable
            times[index] = self.now()
            return result

        self._bound()
        results = await asyncio.gather(*(timed(i, aw) for i, aw in enumerate(awaitables)))
        return Finished(results=list(results), times=times)

    # -- comparing ---------------------------------------------------------

    def check(
        self,
        measured: float,
        expected: float,
        *,
        what: str = "time",
        documented: float | None = None,
        tolerance: Tolerance | None = None,
    ) -> TimingCheck:
        """Compare without raising; the record is kept in :attr:`checks`.

        A ``measured`` figure from :attr:`Span.elapsed` carries the real work
        in flight inside its span; on the virtual clock it is accepted within
        that much of ``expected``, or within ``tolerance`` when one is given.
        On the real clock it carries the time the loop waited for a CPU inside
        the span, and the window's upper end is that much later.
        """
        mode = self.mode
        real_work = getattr(measured, "real_work", 0.0) if mode != "real" else 0.0
        waited = getattr(measured, "cpu_wait", 0.0) if mode == "real" else 0.0
        # Records hold plain floats (they travel to reports and other processes).
        measured = float(measured)
        if real_work:
            slack = seconds_to_ticks(real_work)
            passed = abs(seconds_to_ticks(measured) - seconds_to_ticks(expected)) <= slack
            low, high = expected - real_work, expected + real_work
            rule = "exact up to the real work"
            if tolerance is not None:
                window_low, window_high = tolerance.window(expected)
                passed = passed or window_low <= measured <= window_high
                low, high = min(low, window_low), max(high, window_high)
                rule += f", or with tolerance {tolerance.describe()}"
        elif mode != "real":
            passed = seconds_to_ticks(measured) == seconds_to_ticks(expected)
            low = high = expected
            # A tolerance is for the real clock's noise; the virtual clock has none.
            rule = (
                "exact to 1 ns"
                if tolerance is None
                else "exact to 1 ns; tolerance= is for the real clock"
            )
        else:
            window = tolerance or self.tolerance
            low, high = window.delayed(waited).window(expected)
            passed = low <= measured <= high
            rule = window.describe()
        record = TimingCheck(
            what=what,
            expected=expected,
            measured=measured,
            clock=mode,
            passed=passed,
            low=low,
            high=high,
            tolerance=rule,
            documented=documented,
            real_work=real_work,
            cpu_wait=waited,
        )
        self.checks.append(record)
        return record

    def assert_time(
        self,
        measured: float,
        expected: float,
        *,
        what: str = "time",
        documented: float | None = None,
        tolerance: Tolerance | None = None,
    ) -> None:
        """Fail unless ``measured`` equals ``expected`` (exactly, or within tolerance)."""
        __tracebackhide__ = True
        record = self.check(
            measured, expected, what=what, documented=documented, tolerance=tolerance
        )
        if not record.passed:
            raise TimingAssertionError(record.message())

    def assert_times(
        self,
        measured: Sequence[float],
        expected: Sequence[float],
        *,
        what: str = "times",
        documented: Sequence[float] | None = None,
        tolerance: Tolerance | None = None,
    ) -> None:
        """Compare two sequences figure by figure; the message lists every mismatch."""
        __tracebackhide__ = True
        if documented is not None and len(documented) != len(expected):
            raise ValueError(
                f"{what}: {len(documented)} documented figures for {len(expected)} "
                "expected ones; give one documented figure per expected figure"
            )
        if len(measured) != len(expected):
            raise TimingAssertionError(
                f"{what}: expected {len(expected)} figures {list(expected)}, "
                f"measured {len(measured)} figures {list(measured)}"
            )
        records = [
            self.check(
                m,
                e,
                what=f"{what}[{i}]",
                tolerance=tolerance,
                documented=None if documented is None else documented[i],
            )
            for i, (m, e) in enumerate(zip(measured, expected, strict=True))
        ]
        failures = [r for r in records if not r.passed]
        if failures:
            shown = ", ".join(_fmt(m) for m in measured)
            wanted = ", ".join(_fmt(e) for e in expected)
            detail = "\n".join("  " + r.message() for r in failures)
            raise TimingAssertionError(
                f"{what}: expected [{wanted}] s, measured [{shown}] s\n{detail}"
            )
