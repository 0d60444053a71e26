"""Draw a :class:`~pytest_asyncspec.tracing.trace.Trace` as a plain-text timeline.

The picture is meant for a terminal or a failure message: pure ASCII, every
line at most ``width`` characters, one row per task under a time axis in loop
seconds.  Each column stands for a fixed, round slice of loop time (0.25 s,
2 ms, ...) so the tick labels stay short and a bar's length can be read off
the axis.  Only loop times are drawn (never wall-clock stamps), so the same trace
renders to the same text and the output can be compared against a stored
golden file.  Real step durations enter only with ``blocking_threshold``: a
step that held the loop thread longer than it in *real* time is blocking
even when it took no loop time (on the virtual clock, a busy loop or a long
C call advances no clock), as the blocking gate reports it.  Such steps are
rare, and the summary names the worst with its real duration.

Marks, weakest first (when several fall in one column, the strongest wins)::

    .   the task exists and waits (between its creation and its end)
    |   a step that took no loop time (most steps on the virtual clock)
    =   a step that held the loop
    #   a step that held the loop longer than ``blocking_threshold``, in
        loop time or in real time
    C   the step in which the task was cancelled
    X   the step in which the task raised

Nothing here imports pytest.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

from ..clock.ticks import TICKS_PER_SECOND
from .trace import Awaits, Outcome, TaskRecord, TraceQueries

__all__ = ["DEFAULT_MAX_TASKS", "MIN_WIDTH", "render_timeline"]

#: Narrowest picture we agree to draw: below this the label column and a
#: useful number of time columns no longer fit side by side.
MIN_WIDTH = 40

#: Rows drawn before the rest are summarised in one "... N more tasks" line.
DEFAULT_MAX_TASKS = 40

#: Columns between two labelled ticks of the axis.
_TICK_EVERY = 10

#: Resolution used when every step happened at one instant: any scale would
#: do, and a round one keeps the axis labels readable.
_INSTANT_RESOLUTION = TICKS_PER_SECOND // 10

_WAIT, _INSTANT, _BAR, _BLOCK, _CANCELLED, _RAISED = ".", "|", "=", "#", "C", "X"
_STRENGTH = {" ": 0, _WAIT: 1, _INSTANT: 2, _BAR: 3, _BLOCK: 4, _CANCELLED: 5, _RAISED: 6}

# Units for axis labels and durations, largest first.
_UNITS = ((TICKS_PER_SECOND, "s"), (1_000_000, "ms"), (1_000, "us"), (1, "ns"))


def render_timeline(
    trace: TraceQueries,
    *,
    width: int = 100,
    blocking_threshold: float | None = None,
    window: tuple[float, float] | None = None,
    max_tasks: int = DEFAULT_MAX_TASKS,
    phases: Mapping[int, str] | None = None,
) -> str:
    """Render ``trace`` as an ASCII timeline no wider than ``width`` columns.

    ``blocking_threshold`` (loop seconds) draws steps that held the loop longer
    than it with ``#``.  ``window`` (start, end in loop seconds) draws only that
    slice of the trace, e.g. the few seconds around a failure.  At most
    ``max_tasks`` rows are drawn; the busiest tasks (most loop time spent in
    steps inside the view) are kept, and the rest are counted in one line.
    ``phases`` (task label -> ``setup``, ``call`` or ``teardown``) tags each
    row of a task the test's fixtures made, e.g. ``worker [setup]``.
    """
    if width < MIN_WIDTH:
        raise ValueError(f"width must be at least {MIN_WIDTH} columns, got {width}")
    if max_tasks < 1:
        raise ValueError(f"max_tasks must be at least 1, got {max_tasks}")
    threshold = None
    if blocking_threshold is not None:
        if not blocking_threshold >= 0 or math.isinf(blocking_threshold):
            raise ValueError(
                f"blocking_threshold must be a finite number of seconds >= 0, "
                f"got {blocking_threshold!r}"
            )
        threshold = _to_ticks(blocking_threshold)
    view = None
    if window is not None:
        low, high = window
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise ValueError(
                f"window must be (start, end) in loop seconds with start <= end, got {window!r}"
            )
        view = (_to_ticks(low), _to_ticks(high))
    return _Renderer(trace, width, threshold, view, max_tasks, phases or {}).render()


# -- helpers -------------------------------------------------------------------


def _to_ticks(seconds: float) -> int:
    # Trace times are whole ticks divided by TICKS_PER_SECOND; rounding gets
    # the exact tick back, so every later computation is integer arithmetic.
    return round(seconds * TICKS_PER_SECOND)


def _decimal(ticks: int, unit: int) -> str:
    """``ticks / unit`` written exactly, without trailing zeros."""
    sign = "-" if ticks < 0 else ""
    whole, rest = divmod(abs(ticks), unit)
    if not rest:
        return f"{sign}{whole}"
    digits = len(str(unit)) - 1
    return f"{sign}{whole}.{str(rest).rjust(digits, '0').rstrip('0')}"


def _instant(ticks: int) -> str:
    """A loop instant in seconds, to the microsecond."""
    micros = round(ticks / 1_000)
    return f"{_decimal(micros, 1_000_000)} s"


def _duration(ticks: int) -> str:
    """A duration in the largest unit it reaches, to three decimals."""
    for unit, name in _UNITS:
        if abs(ticks) >= unit:
            scaled = round(ticks * 1_000 / unit)
            return f"{_decimal(scaled, 1_000)} {name}"
    return "0 s"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _printable(text: str) -> str:
    """``text`` as printable ASCII: control and non-ASCII characters escaped.

    Task names come from user code; a newline or escape sequence would break
    the picture or the terminal, and a wide character would misalign the
    columns, so anything outside printable ASCII is shown as its escape.
    """
    out: list[str] = []
    for char in text:
        if " " <= char <= "~":
            out.append(char)
        elif char in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char])
        else:
            code = ord(char)
            if code < 0x100:
                out.append(f"\\x{code:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    return "".join(out)


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    if limit <= 3:
        return text[:limit]
    return text[: limit - 3] + "..."


def _wrap(items: Sequence[str], prefix: str, width: int, *, sep: str, indent: str) -> list[str]:
    """Join ``items`` after ``prefix`` with ``sep``, breaking lines at ``width``."""
    lines: list[str] = []
    line = prefix
    for item in items:
        if line in (prefix, indent):
            line += item
        elif len(line) + len(sep) + len(item) <= width:
            line = f"{line}{sep}{item}"
        else:
            lines.append(line + sep.rstrip())
            line = indent + item
    lines.append(line)
    return [_clip(entry, width) for entry in lines]


def _round_resolutions() -> Iterator[int]:
    """1, 2, 5, 10, 20, 25, 50, 100, ... ticks: round steps for a column.

    With a labelled tick every ten columns, each of these puts the labels on
    round numbers too (2.5 x 1 tick is skipped: it is not a whole tick).
    """
    power = 1
    while True:
        yield power
        yield 2 * power
        if power >= 10:
            yield 25 * power // 10
        yield 5 * power
        power *= 10


def _choose_resolution(start: int, end: int, columns: int, boundaries: set[int]) -> int:
    """Loop ticks per column: the finest round step that fits [start, end] in ``columns``.

    A slightly coarser step (up to the next three) is preferred when every step
    boundary falls on a column edge with it, so that on the virtual clock's round
    figures each bar covers exactly its own columns.
    """
    if end == start:
        return _INSTANT_RESOLUTION
    candidates = _round_resolutions()
    finest = next(r for r in candidates if _columns_needed(start, end, r) <= columns)
    for resolution in (finest, *(next(candidates) for _ in range(3))):
        if all(boundary % resolution == 0 for boundary in boundaries):
            return resolution
    return finest


def _columns_needed(start: int, end: int, resolution: int) -> int:
    tick = resolution * _TICK_EVERY
    origin = start // tick * tick
    last = (end - origin) // resolution
    # The axis runs on to the next labelled tick so its end can be read.
    return -(-last // _TICK_EVERY) * _TICK_EVERY + 1


# -- the renderer --------------------------------------------------------------


class _Span(NamedTuple):
    """A step reduced to what the picture needs, in whole ticks."""

    task: int
    start: int
    end: int
    done: bool
    #: Ran inside another task's step (an eager task's first step).
    nested: bool
    #: Real (perf_counter) nanoseconds the step held the loop thread.
    real: int = 0

    @property
    def ticks(self) -> int:
        return self.end - self.start

    @property
    def held(self) -> int:
        """How long the step held the loop thread: its loop time, or its real
        time when that is longer (a virtual clock does not advance while a
        step computes)."""
        return max(self.ticks, self.real)


class _Renderer:
    def __init__(
        self,
        trace: TraceQueries,
        width: int,
        threshold: int | None,
        view: tuple[int, int] | None,
        max_tasks: int,
        phases: Mapping[int, str],
    ) -> None:
        self.trace = trace
        self.phases = phases
        self.width = width
        self.threshold = threshold
        self.view = view
        self.max_tasks = max_tasks

    def render(self) -> str:
        tasks = self.trace.tasks
        # Each step is converted once: traces can hold a million of them.
        spans = [
            _Span(
                step.task,
                _to_ticks(step.start),
                _to_ticks(step.end),
                step.awaits is Awaits.DONE,
                step.inside is not None,
                step.real_ns,
            )
            for step in self.trace.steps()
        ]
        if not spans:
            return f"asyncspec timeline: no steps recorded ({_count(len(tasks), 'task')} traced)"
        trace_start = min(
            min(span.start for span in spans),
            min(_to_ticks(record.created_at) for record in tasks.values()),
        )
        trace_end = max(span.end for span in spans)
        start, end = self.view if self.view is not None else (trace_start, trace_end)
        lifetimes = self._lifetimes(spans, trace_end)
        shown = [
            span
            for span in spans
            if span.task in lifetimes
            and (
                start <= span.start <= end
                if span.start == span.end
                else span.start < end and span.end > start
            )
        ]
        labels = {span.task for span in shown} | {
            label for label, (born, died) in lifetimes.items() if born <= end and died > start
        }
        period = f"loop time {_instant(start)} to {_instant(end)}"
        if self.view is not None:
            period = (
                f"window {_instant(start)} to {_instant(end)} "
                f"(trace: {_instant(trace_start)} to {_instant(trace_end)})"
            )
        if not labels:
            return (
                f"asyncspec timeline: nothing happened in {period} "
                f"({_count(len(spans), 'step')} traced)"
            )

        longest = self._longest(shown)
        kept = self._keep(labels, shown, start, end, longest)
        label_width = self._label_width(kept)
        boundaries = {span.start for span in shown} | {span.end for span in shown}
        resolution = _choose_resolution(start, end, self.width - label_width - 1, boundaries)
        columns = _columns_needed(start, end, resolution)
        tick = resolution * _TICK_EVERY
        origin = start // tick * tick

        marks = {label: [" "] * columns for label in kept}
        for label, row in marks.items():
            born, died = lifetimes[label]
            # The view includes its end instant, where a pending task still waits.
            self._paint(row, max(born, start), min(died, end + 1), _WAIT, origin, resolution)
        for span in shown:
            row_or_none = marks.get(span.task)
            if row_or_none is None:
                continue
            # A step still running at the view's end covers that instant too.
            clipped = (max(span.start, start), min(span.end, end + 1))
            self._paint(row_or_none, *clipped, self._mark_for(span), origin, resolution)
            ending = self._ending_mark(span, tasks[span.task])
            if ending is not None:
                self._paint(row_or_none, *clipped, ending, origin, resolution)

        lines = _wrap(
            [
                _count(len(labels), "task"),
                _count(len(shown), "step"),
                period,
                f"1 column = {_duration(resolution)}",
            ],
            "asyncspec timeline: ",
            self.width,
            sep=", ",
            indent="  ",
        )
        lines.extend(self._axis(label_width, origin, resolution, columns))
        digits = len(str(max(kept)))
        for label in kept:
            name = self._row_label(tasks[label], digits, label_width)
            lines.append(f"{name} {''.join(marks[label])}")
        hidden = len(labels) - len(kept)
        if hidden:
            lines.append(
                _clip(
                    f"... {_count(hidden, 'more task')} not shown "
                    "(those with the least loop time in steps)",
                    self.width,
                )
            )
        used = {mark for row in marks.values() for mark in row}
        lines.extend(self._legend(used))
        lines.extend(self._summary(shown, longest))
        return "\n".join(line.rstrip() for line in lines)

    def _keep(
        self,
        labels: set[int],
        shown: Sequence[_Span],
        start: int,
        end: int,
        longest: _Span | None,
    ) -> list[int]:
        """The labels to draw, in label order: all of them, or the busiest ``max_tasks``."""
        if len(labels) <= self.max_tasks:
            return sorted(labels)
        busy = dict.fromkeys(labels, 0)
        for span in shown:
            if not span.nested:
                busy[span.task] += max(0, min(span.end, end) - max(span.start, start))
        # The task of the longest step always stays: the summary line names it.
        ranked = sorted(
            labels,
            key=lambda label: (longest is None or label != longest.task, -busy[label], label),
        )
        return sorted(ranked[: self.max_tasks])

    # -- what to draw ------------------------------------------------------

    def _lifetimes(self, spans: Iterable[_Span], trace_end: int) -> dict[int, tuple[int, int]]:
        """Each task's [creation, end) in ticks.

        A finished task ends with its last step, whose own mark closes the
        row; a pending one waits on to the trace's end, that instant included.
        """
        last_end: dict[int, int] = {}
        finished: set[int] = set()
        for span in spans:
            if span.end > last_end.get(span.task, -1):
                last_end[span.task] = span.end
            if span.done:
                finished.add(span.task)
        lifetimes: dict[int, tuple[int, int]] = {}
        for label, record in self.trace.tasks.items():
            born = _to_ticks(record.created_at)
            died = last_end[label] if label in finished else max(trace_end, born) + 1
            lifetimes[label] = (born, died)
        return lifetimes

    def _mark_for(self, span: _Span) -> str:
        if self.threshold is not None and span.held > self.threshold:
            return _BLOCK
        return _BAR if span.ticks > 0 else _INSTANT

    @staticmethod
    def _ending_mark(span: _Span, record: TaskRecord) -> str | None:
        if span.done:
            if record.outcome is Outcome.RAISED:
                return _RAISED
            if record.outcome is Outcome.CANCELLED:
                return _CANCELLED
        return None

    @staticmethod
    def _paint(
        marks: list[str], start: int, end: int, mark: str, origin: int, resolution: int
    ) -> None:
        first = (start - origin) // resolution
        # A bar covers [start, end): its last column is the one holding the
        # last tick before end.  An instant (or a zero-width clip) is one column.
        last = (end - 1 - origin) // resolution if end > start else first
        if mark in (_RAISED, _CANCELLED):
            first = last  # drawn over the step's own bar, at its end
        strength = _STRENGTH[mark]
        for column in range(max(first, 0), min(last, len(marks) - 1) + 1):
            if _STRENGTH[marks[column]] < strength:
                marks[column] = mark

    # -- layout ------------------------------------------------------------

    def _label_width(self, labels: Sequence[int]) -> int:
        digits = len(str(max(labels)))
        longest = max(digits + 1 + len(self._name(self.trace.tasks[label])) for label in labels)
        cap = max(12, min(30, self.width // 4))
        return max(len("task"), min(longest, cap))

    def _name(self, record: TaskRecord) -> str:
        # The test body's own tasks are the usual case: only the others say
        # their phase.
        phase = self.phases.get(record.label, "call")
        name = _printable(record.shown_name)
        return name if phase == "call" else f"{name} [{phase}]"

    def _row_label(self, record: TaskRecord, digits: int, label_width: int) -> str:
        text = f"{record.label:>{digits}} {self._name(record)}"
        return _clip(text, label_width).ljust(label_width)

    def _axis(self, label_width: int, origin: int, resolution: int, columns: int) -> list[str]:
        tick = resolution * _TICK_EVERY
        # The largest unit in which a tick is at least 0.1: labels such as
        # 0.5 / 1 / 1.5 s rather than 500 / 1000 / 1500 ms.
        unit, unit_name = next((u, n) for u, n in _UNITS if tick * 10 >= u)
        instants = [origin + column * resolution for column in range(0, columns, _TICK_EVERY)]
        texts = [_decimal(instant, unit) for instant in instants]
        lines: list[str] = []
        # Absolute loop times can be too long for the space between two ticks
        # (a real loop's clock counts from boot); then the labels count from
        # the axis origin instead, stated on a line of its own.
        if origin and any(len(text) >= _TICK_EVERY for text in texts):
            texts = ["+" + _decimal(instant - origin, unit) for instant in instants]
            lines.append(
                _clip(f"axis: +{unit_name} after loop time {_instant(origin)}", self.width)
            )
        label_line = [" "] * (self.width - label_width - 1)
        free_from = 0
        for index, text in enumerate(texts):
            column = index * _TICK_EVERY
            if column < free_from or column + len(text) > len(label_line):
                continue  # would run into the previous label or off the edge
            label_line[column : column + len(text)] = text
            free_from = column + len(text) + 1
        ticks = "".join("+" if column % _TICK_EVERY == 0 else "-" for column in range(columns))
        lines.append(f"{_clip(f'({unit_name})', label_width):<{label_width}} {''.join(label_line)}")
        lines.append(f"{'task':<{label_width}} {ticks}")
        return lines

    def _legend(self, used: set[str]) -> list[str]:
        threshold = "" if self.threshold is None else _duration(self.threshold)
        meanings = [
            (_BLOCK, f"step over {threshold} (blocking)"),
            (_BAR, "step"),
            (_INSTANT, "step taking no loop time"),
            (_WAIT, "task waiting"),
            (_CANCELLED, "cancelled"),
            (_RAISED, "raised"),
        ]
        items = [f"{mark} {meaning}" for mark, meaning in meanings if mark in used]
        return _wrap(items, "legend: ", self.width, sep="  ", indent="        ")

    @staticmethod
    def _longest(shown: Sequence[_Span]) -> _Span | None:
        # Nested (eager) steps lie inside their creator's step: counting them
        # would report the same stretch of loop time twice.  The first of
        # equally long steps wins, as in Trace.longest_step().
        longest: _Span | None = None
        for span in shown:
            if not span.nested and (longest is None or span.ticks > longest.ticks):
                longest = span
        return longest

    def _summary(self, shown: Sequence[_Span], longest: _Span | None) -> list[str]:
        lines: list[str] = []
        if longest is not None:
            if longest.ticks == 0:
                text = "longest step: every step took no loop time"
                if self.threshold is not None and any(
                    not span.nested and span.real > self.threshold for span in shown
                ):
                    text += " (some real time: see blocking)"
                lines.append(text)
            else:
                record = self.trace.tasks.get(longest.task)
                name = _clip(_printable(record.shown_name), 40) if record else "?"
                lines.append(
                    f"longest step: {name} (task {longest.task}) {_duration(longest.ticks)} "
                    f"at {_instant(longest.start)}"
                )
        if self.threshold is not None:
            over = [span for span in shown if not span.nested and span.held > self.threshold]
            if over:
                total = sum(span.held for span in over)
                lines.append(
                    f"blocking: {_count(len(over), 'step')} over {_duration(self.threshold)}, "
                    f"{_duration(total)} in all"
                )
                real = [span for span in over if span.real > span.ticks]
                if real:
                    worst = max(real, key=lambda span: span.real)
                    record = self.trace.tasks.get(worst.task)
                    name = _clip(_printable(record.shown_name), 40) if record else "?"
                    lines.append(
                        f"real time: {_count(len(real), 'step')}, worst {name} "
                        f"(task {worst.task}) {_duration(worst.real)} at {_instant(worst.start)}"
                    )
            else:
                lines.append(f"blocking: no step over {_duration(self.threshold)}")
        return [_clip(line, self.width) for line in lines]
