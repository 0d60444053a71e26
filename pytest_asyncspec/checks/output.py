"""Capture what a program prints, line by line, with the loop time of each line.

Many documented asyncio examples prove their point with a printed transcript
("myProc started ..." five times, then "myProc finished in 7.5 s").  To check
such a claim we need more than the text: *when* (on the loop's clock) and *by
which task* each line was printed.  :func:`capture_output` records exactly
that, while still passing every byte on to the stream it replaced, so pytest's
own capture (and ``capsys``) keep seeing the output.

Nothing here imports pytest.
"""

from __future__ import annotations

import asyncio
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeAlias, cast

from ..clock.ticks import seconds_to_ticks, ticks_to_seconds
from ..clock.virtual_loop import VirtualClockLoop
from ..tracing.trace import Tracer
from .timing import Tolerance

#: One expected transcript line: the loop time it should be printed at (None:
#: any time) and its text, exact or a pattern the whole line must match.
ExpectedLine: TypeAlias = tuple[float | None, str | re.Pattern[str]]

#: How close a measured time must be to the expected one when not exact: a
#: :class:`~pytest_asyncspec.checks.timing.Tolerance` window, or any predicate
#: ``accept(expected, measured)``.
TimeTolerance: TypeAlias = Tolerance | Callable[[float, float], bool]


@dataclass(frozen=True)
class OutputLine:
    """One complete line of output.

    ``time`` is the loop time (seconds) at which the line's first character
    was written; ``task`` the tracer label of the task whose step wrote it,
    or None when no traced step was running (a plain callback, code outside
    the loop).
    """

    time: float
    task: int | None
    text: str


@dataclass
class TimedOutput:
    """The lines recorded by :func:`capture_output` (filled while it runs)."""

    lines: list[OutputLine] = field(default_factory=list)

    def texts(self) -> list[str]:
        """The text of every recorded line, in order."""
        return [line.text for line in self.lines]

    def times(self) -> list[float]:
        """The loop time of every recorded line, in order."""
        return [line.time for line in self.lines]

    def compare(
        self, expected: Sequence[ExpectedLine], *, tolerance: TimeTolerance | None = None
    ) -> list[str]:
        """Shorthand for :func:`compare_transcript` on these lines."""
        return compare_transcript(self.lines, expected, tolerance=tolerance)


def _loop_seconds_reader(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    # Virtual loops are read in whole ticks so a line printed after 2.5 + 2.5
    # seconds reads exactly 5.0, not a float sum.
    if isinstance(loop, VirtualClockLoop):
        return lambda: ticks_to_seconds(loop.virtual_ticks())
    return loop.time


class _StdoutProxy:
    """Stands in for ``sys.stdout``: forwards everything, records loop-thread lines."""

    def __init__(
        self, target: TextIO, tracer: Tracer, loop_thread: int, output: TimedOutput
    ) -> None:
        self._target = target
        self._tracer = tracer
        self._loop_thread = loop_thread
        self._output = output
        self._now = _loop_seconds_reader(tracer.loop)
        # The unfinished line, with the time and task that started it.
        self._started = False
        self._pending: list[str] = []
        self._pending_time = 0.0
        self._pending_task: int | None = None

    def write(self, text: str) -> int:
        # Forward first: whatever happens to our bookkeeping, the real stream
        # must see the text, in the order it was written.
        written = self._target.write(text)
        if isinstance(text, str) and threading.get_ident() == self._loop_thread:
            self._record(text)
        return written

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def _record(self, text: str) -> None:
        while text:
            if not self._started:
                # A line belongs to the moment (and task) that began it: a
                # line finished in a later step was still started here.
                self._started = True
                self._pending_time = self._now()
                self._pending_task = self._tracer.current or None
            head, newline, text = text.partition("\n")
            if head:
                self._pending.append(head)
            if newline:
                self._emit()

    def _emit(self) -> None:
        self._output.lines.append(
            OutputLine(
                time=self._pending_time, task=self._pending_task, text="".join(self._pending)
            )
        )
        self._pending.clear()
        self._started = False

    def finish(self) -> None:
        """Record a last line that never got its newline."""
        if self._started:
            self._emit()

    def flush(self) -> None:
        self._target.flush()

    # Everything else (encoding, isatty, fileno, buffer, ...) is the real
    # stream's business.
    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


@contextmanager
def capture_output(tracer: Tracer, into: TimedOutput | None = None) -> Iterator[TimedOutput]:
    """Record each line printed on this thread, with its loop time and task.

    Enter it on the thread that will run ``tracer.loop``.  Until the block
    exits, ``sys.stdout`` is a proxy that forwards everything to the stream it
    replaced; text written on this thread is also split into lines and
    recorded in the yielded :class:`TimedOutput`.  Writes from other threads
    are forwarded only: their loop time would mean nothing.  A trailing line
    without a newline is recorded at exit, and ``sys.stdout`` is restored
    whatever happened in the block.

    ``into`` continues an earlier recording: a test's setup, call and
    teardown are captured in turn (each inside pytest's own capture of that
    phase) into one transcript.
    """
    original = sys.stdout
    output = TimedOutput() if into is None else into
    proxy = _StdoutProxy(original, tracer, threading.get_ident(), output)
    sys.stdout = cast(TextIO, proxy)
    try:
        yield output
    finally:
        sys.stdout = original
        proxy.finish()


# -- comparing with a documented transcript ---------------------------------


def _seconds(value: float) -> str:
    text = f"{value:.9f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _text_matches(expected: str | re.Pattern[str], text: str) -> bool:
    if isinstance(expected, str):
        return expected == text
    return expected.fullmatch(text) is not None


def _shown(expected: str | re.Pattern[str]) -> str:
    if isinstance(expected, str):
        return repr(expected)
    return f"a line matching /{expected.pattern}/"


def _time_matches(expected: float, measured: float, tolerance: TimeTolerance | None) -> bool:
    if tolerance is None:
        # Compared in ticks: exact to the nanosecond, blind to float noise.
        return seconds_to_ticks(expected) == seconds_to_ticks(measured)
    if isinstance(tolerance, Tolerance):
        low, high = tolerance.window(expected)
        return low <= measured <= high
    return bool(tolerance(expected, measured))


def _tolerance_note(tolerance: TimeTolerance | None, expected: float) -> str:
    if tolerance is None:
        return "exact"
    if isinstance(tolerance, Tolerance):
        low, high = tolerance.window(expected)
        return f"accepted {_seconds(low)} s to {_seconds(high)} s"
    return "rejected by the tolerance function"


def compare_transcript(
    measured: Sequence[OutputLine],
    expected: Sequence[ExpectedLine],
    *,
    tolerance: TimeTolerance | None = None,
) -> list[str]:
    """Compare recorded lines with a documented transcript, line by line.

    Each expected entry is ``(time, text)``: ``time`` in loop seconds, or None
    to accept any time; ``text`` an exact string or a compiled pattern that
    must match the whole line.  Times are compared exactly (to the tick)
    unless ``tolerance`` is given, as a :class:`Tolerance` or a predicate
    ``accept(expected, measured)``.

    Returns one human-readable sentence per mismatch; an empty list means the
    transcript matches.  Two neighbouring lines printed in the opposite order
    are reported once, as a swap, rather than as two unrelated mismatches.
    """
    problems: list[str] = []
    index = 0
    count = max(len(measured), len(expected))
    while index < count:
        number = index + 1
        if index >= len(measured):
            want_time, want_text = expected[index]
            when = "" if want_time is None else f" at t={_seconds(want_time)} s"
            problems.append(
                f"line {number}: expected {_shown(want_text)}{when}, but the output "
                f"ended after {len(measured)} line(s)"
            )
            index += 1
            continue
        line = measured[index]
        if index >= len(expected):
            problems.append(
                f"line {number}: unexpected extra line {line.text!r} printed at "
                f"t={_seconds(line.time)} s (the transcript has {len(expected)} line(s))"
            )
            index += 1
            continue
        want_time, want_text = expected[index]
        if _text_matches(want_text, line.text):
            if want_time is not None and not _time_matches(want_time, line.time, tolerance):
                problems.append(
                    f"line {number} {line.text!r}: expected at t={_seconds(want_time)} s, "
                    f"printed at t={_seconds(line.time)} s "
                    f"(off by {line.time - want_time:+g} s; "
                    f"{_tolerance_note(tolerance, want_time)})"
                )
            index += 1
            continue
        if _is_swap(measured, expected, index):
            following = measured[index + 1]
            problems.append(
                f"lines {number} and {number + 1} are in the opposite order: expected "
                f"{_shown(want_text)} then {_shown(expected[index + 1][1])}, "
                f"printed {line.text!r} (t={_seconds(line.time)} s) then "
                f"{following.text!r} (t={_seconds(following.time)} s)"
            )
            index += 2
            continue
        problem = (
            f"line {number}: expected {_shown(want_text)}, printed {line.text!r} "
            f"at t={_seconds(line.time)} s"
        )
        elsewhere = [
            position + 1
            for position, other in enumerate(measured)
            if position != index and _text_matches(want_text, other.text)
        ]
        if elsewhere:
            problem += f" (the expected text was printed as line {elsewhere[0]})"
        problems.append(problem)
        index += 1
    return problems


def _is_swap(measured: Sequence[OutputLine], expected: Sequence[ExpectedLine], index: int) -> bool:
    if index + 1 >= len(measured) or index + 1 >= len(expected):
        return False
    return _text_matches(expected[index][1], measured[index + 1].text) and _text_matches(
        expected[index + 1][1], measured[index].text
    )
