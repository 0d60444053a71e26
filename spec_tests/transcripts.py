"""Printed transcripts of spec programs: lines with times from a start point,
compared with a document's transcript on either clock."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Sequence

from pytest_asyncspec import LoopClock, OutputLine, TraceView, VirtualClockLoop, compare_transcript
from pytest_asyncspec.checks.output import ExpectedLine
from pytest_asyncspec.clock.ticks import ticks_to_seconds

#: A printed float, as str(float) writes it.
FLOAT = r"(\d+\.\d+(?:e-\d+)?)"


def loop_seconds() -> float:
    """The running loop's time, read as the output recorder reads it."""
    loop = asyncio.get_running_loop()
    if isinstance(loop, VirtualClockLoop):
        return ticks_to_seconds(loop.virtual_ticks())
    return loop.time()


class Printed:
    """The lines printed from now on, with times relative to now."""

    def __init__(self, trace: TraceView) -> None:
        self._output = trace.output
        self._first = len(self._output.lines)
        self._origin = loop_seconds()

    def lines(self) -> list[OutputLine]:
        return [
            dataclasses.replace(line, time=line.time - self._origin)
            for line in self._output.lines[self._first :]
        ]


def assert_transcript(
    clock: LoopClock, lines: Sequence[OutputLine], expected: Sequence[ExpectedLine]
) -> None:
    """Fail unless every printed line has the expected text at the expected time."""
    tolerance = None if clock.mode == "virtual" else clock.tolerance
    problems = compare_transcript(lines, expected, tolerance=tolerance)
    assert not problems, "transcript differs:\n  " + "\n  ".join(problems)


def figure(line: OutputLine) -> float:
    """The last number printed on a line."""
    return float(re.findall(FLOAT, line.text)[-1])
