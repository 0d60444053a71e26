"""The HTML report: one self-contained page a failing run can be debugged from.

``--asyncspec-html=PATH`` writes a page that needs nothing but a browser
(drawn by :mod:`.html_page`, styled and scripted by :mod:`.html_assets`): the
counts by outcome with a filter, the claims table when claims ran, and per
test its failure text, captured output and report sections, and its
timeline when it was traced.  Every string that comes from user code goes
through :func:`html.escape`, and the page's Content-Security-Policy lets no
script run but its own.

This module gathers the page's data, all of it plain and JSON-able:

* one *timeline payload* per traced test (:func:`timeline_payload`), built
  where the test ran and carried on its call report in
  :data:`.report_fields.TIMELINE`, so that a pytest-xdist controller
  receives the same data a serial run collects.  A payload keeps at most
  :data:`MAX_TASKS` tasks and :data:`MAX_STEPS` steps; the page says when a
  timeline was clipped.  It travels, and waits for the page, packed
  (:func:`pack_timeline`: JSON, zlib, base64), since pytest keeps every
  report to the end of the run;
* per test, from its reports (:class:`HtmlReport`): its outcome, the long
  failure text pytest prints, its report sections (captured output, the
  asyncspec sections), and its collection position
  (:data:`.report_fields.POSITION`), which orders the page.

:class:`HtmlReport` is the pytest plugin object that gathers them where
reports arrive (never on an xdist worker) and writes the page at the end of
the run.  Nothing in the page depends on when or where it was made (no
wall-clock durations: real step durations appear only for steps over
``max_blocking``), so a serial run and ``-n 2`` on the virtual clock give the
same file.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from ..clock.ticks import TICKS_PER_SECOND
from . import report_fields
from .claims import (
    ClaimsReport,
    JsonDict,
    JsonValue,
    fail_the_run,
)
from .html_page import MAX_STEPS, MAX_TASKS, page_pieces, render_page
from .report_files import write_report

if TYPE_CHECKING:
    from ..tracing.trace import Trace
    from .observation import RunMark

__all__ = [
    "MAX_STEPS",
    "MAX_TASKS",
    "HtmlReport",
    "pack_timeline",
    "page_pieces",
    "render_page",
    "timeline_payload",
    "unpack_timeline",
]

#: A step the blocking gate judged: step index -> ("offending" or "allowed",
#: what the tooltip says about it).
GateMarks = Mapping[int, tuple[str, str]]


# -- the per-test timeline ------------------------------------------------------


def timeline_payload(
    trace: Trace,
    *,
    test: str,
    outcome: str,
    position: int,
    virtual: bool,
    phases: Mapping[int, str] | None = None,
    runs: Sequence[RunMark] = (),
    failing_run: tuple[str, str | None] | None = None,
    gate: GateMarks | None = None,
    threshold: float | None = None,
) -> JsonDict:
    """One traced test's timeline as plain data (what travels on its report).

    Tasks are kept in label (creation) order, the first :data:`MAX_TASKS` of
    them; their steps in the order they ended, the first :data:`MAX_STEPS`.
    Each step is ``[start, end, awaits]`` (loop seconds, and what the task
    waited on after it), followed by its real duration in seconds when that
    is over ``threshold`` (max_blocking) on the virtual clock, and by the
    gate's verdict and its words when ``gate`` has the step.  ``phases``
    (task label -> the test's phase that created it) marks the tasks of its
    fixtures; a task running this package's or pytest-asyncio's own
    coroutine is marked ``helper``.

    ``runs`` (an explored test's runs of its body) cuts the trace: each run
    gets its own tasks and steps under ``runs``, what came before them stays
    at the top; ``failing_run`` (what to call it, its replay command) says
    the last run is the failing one, and its steps are kept first.
    ``total_tasks`` and ``total_steps`` count each part whole (``trace_tasks``
    and ``trace_steps`` the trace when it is cut), so the page can say what
    it left out.
    """
    builder = _PayloadBuilder(trace, phases or {}, gate or {}, threshold if virtual else None)
    payload: JsonDict = {
        "test": test,
        "outcome": outcome,
        "position": position,
        "virtual": virtual,
        "threshold": threshold,
    }
    total = len(trace)
    if not runs:
        payload.update(builder.part(0, total, 1, None, every_task=True))
        return payload
    # Each run from its first step (and first new task) to the next run's.
    bounds = [(min(run.steps, total), run.label) for run in runs]
    ends = [*(bound[0] for bound in bounds[1:]), total]
    labels = [*(bound[1] for bound in bounds[1:]), None]
    order = list(range(len(runs)))
    if failing_run is not None:
        order = [order[-1], *order[:-1]]  # its steps are kept first
    parts: dict[int, JsonDict] = {}
    for number in order:
        parts[number] = builder.part(
            bounds[number][0], ends[number], bounds[number][1], labels[number]
        )
    payload.update(builder.part(0, bounds[0][0], 1, bounds[0][1]))
    described: list[tuple[str, str | None, bool]] = [(run.name, run.replay, False) for run in runs]
    if failing_run is not None:
        described[-1] = (*failing_run, True)
    payload["runs"] = [
        {"name": name, "replay": replay, "failing": failing, **parts[number]}
        for number, (name, replay, failing) in enumerate(described)
    ]
    payload["trace_tasks"] = len(trace.tasks)
    payload["trace_steps"] = total
    return payload


@dataclass
class _PayloadBuilder:
    trace: Trace
    phases: Mapping[int, str]
    gate: GateMarks
    #: Real durations over this many seconds are kept (None: none are).
    threshold: float | None
    kept: int = 0
    helpers: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        self.helpers = self.trace.helper_tasks
        self._records = self.trace.tasks
        self._real_over = (
            None if self.threshold is None else round(self.threshold * TICKS_PER_SECOND)
        )

    def part(
        self,
        first: int,
        end: int,
        first_label: int,
        end_label: int | None,
        *,
        every_task: bool = False,
    ) -> JsonDict:
        """The tasks and steps of steps ``first``..``end`` (and of the tasks
        made from ``first_label`` to ``end_label``)."""
        records = self._records
        made = [
            label
            for label in sorted(records)
            if every_task or (label >= first_label and (end_label is None or label < end_label))
        ]
        rows: dict[int, list[JsonValue]] = {label: [] for label in made[:MAX_TASKS]}
        members = set(made)
        # Steps are decoded one by one, and the loop stops at the cap: a trace
        # of a million steps costs no more than MAX_STEPS of them here.
        for index in range(first, end):
            if self.kept >= MAX_STEPS:
                break
            step = self.trace.step(index)
            members.add(step.task)
            row = rows.get(step.task)
            if row is None:
                if step.task not in records or len(rows) >= MAX_TASKS or every_task:
                    continue
                row = rows[step.task] = []
            item: list[JsonValue] = [step.start, step.end, step.awaits.name]
            real = (
                step.real_ns / TICKS_PER_SECOND
                if self._real_over is not None and step.real_ns > self._real_over
                else None
            )
            mark = self.gate.get(index)
            if mark is not None:
                item.extend([real, mark[0], mark[1]])
            elif real is not None:
                item.append(real)
            row.append(item)
            self.kept += 1
        tasks: list[JsonValue] = [self._task(label, rows[label]) for label in sorted(rows)]
        return {
            "tasks": tasks,
            "total_tasks": len(members),
            "total_steps": end - first,
        }

    def _task(self, label: int, steps: list[JsonValue]) -> JsonDict:
        record = self._records[label]
        return {
            "label": record.label,
            # An unnamed task is shown by its coroutine's name (as the tracer's
            # labels replace Task-N), so the page is the same however tests
            # are spread over processes; the tooltip has the qualified name.
            "name": record.shown_name,
            "coroutine": record.coroutine,
            "created": record.created_at,
            "created_where": record.created_where,
            "outcome": record.outcome.value,
            "error": record.error,
            "phase": self.phases.get(record.label, "call"),
            "helper": label in self.helpers,
            "steps": steps,
        }


def pack_timeline(payload: JsonDict) -> str:
    """``payload`` as compact text (JSON, zlib, base64): still a plain
    string on the report, for pytest-xdist to carry."""
    encoded = json.dumps(payload, separators=(",", ":")).encode()
    return base64.b64encode(zlib.compress(encoded)).decode("ascii")


def unpack_timeline(packed: str) -> JsonDict:
    """The payload :func:`pack_timeline` packed."""
    return cast(JsonDict, json.loads(zlib.decompress(base64.b64decode(packed))))


# -- the plugin object -----------------------------------------------------------

#: The line pytest-xdist puts above a failure from a worker: "[gw0] linux -- Python 3.11.7 ...".
_WORKER_LINE = re.compile(r"\A\[gw\d+\] [^\n]*\n\n?")


@dataclass
class _TestData:
    """What the page shows of one test, gathered from its reports."""

    position: int
    outcome: str = "passed"
    #: The failure texts of its phases, as pytest prints them.
    failures: list[str] = field(default_factory=list)
    #: Its reports' sections (title, text), each once, in order.
    sections: dict[tuple[str, str], None] = field(default_factory=dict)
    #: The packed timeline of its call report.
    timeline: str | None = None

    def note(self, report: pytest.TestReport) -> None:
        when = report.when
        xfail = getattr(report, "wasxfail", None)
        if report.failed:
            # pytest-xdist heads the text with its worker (not the test's
            # business) and indents the line after it, which a serial run's
            # text does not.
            text = _WORKER_LINE.sub("", report.longreprtext, count=1).lstrip(" ")
            if when != "call":
                text = f"error at {when}:\n{text}"
            self.failures.append(text)
            # A test that failed stays failed when its teardown errs too.
            if self.outcome not in ("failed", "error"):
                self.outcome = "failed" if when == "call" else "error"
        elif report.skipped and self.outcome == "passed":
            self.outcome = "xfailed" if xfail is not None else "skipped"
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            self.failures.append(f"xfail: {xfail}" if xfail else str(reason))
        elif when == "call" and xfail is not None and self.outcome == "passed":
            self.outcome = "xpassed"
        for title, text in report.sections:
            self.sections[(title, text)] = None
        packed = getattr(report, report_fields.TIMELINE, None)
        if when == "call" and isinstance(packed, str):
            self.timeline = packed

    def entry(self, test: str) -> JsonDict:
        timeline: JsonValue = None
        if self.timeline is not None:
            try:
                timeline = unpack_timeline(self.timeline)
            except (ValueError, zlib.error):
                timeline = None
        sections: list[JsonValue] = [
            [title, text]
            for title, text in self.sections
            # The picture replaces the terminal's drawing of the same trace.
            if not (timeline is not None and title == "asyncspec timeline")
        ]
        return {
            "test": test,
            "outcome": self.outcome,
            "position": self.position,
            "failure": "\n\n".join(self.failures) or None,
            "sections": sections,
            "timeline": timeline,
        }


class _Entries(Sequence[JsonDict]):
    """The tests' entries, built (their timelines unpacked) one at a time as
    the page is drawn: all of them at once would be the memory the packing
    saved."""

    def __init__(self, tests: list[tuple[str, _TestData]]) -> None:
        self._tests = tests

    def __len__(self) -> int:
        return len(self._tests)

    def __getitem__(self, index: int) -> JsonDict:  # type: ignore[override]
        test, data = self._tests[index]
        return data.entry(test)


class HtmlReport:
    """Gathers each test's page data where reports arrive and writes the page.

    Registered only where reports are aggregated (never on an xdist worker);
    the claims come from the run's :class:`ClaimsReport`.
    """

    def __init__(self, path: Path, claims: ClaimsReport) -> None:
        self.path = path
        self.claims = claims
        #: By test id, in the order their first reports arrived.
        self.tests: dict[str, _TestData] = {}
        self.write_error: str | None = None
        self.written = False

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = self.tests.get(report.nodeid)
        if data is None:
            position = getattr(report, report_fields.POSITION, None)
            if not isinstance(position, int):
                position = len(self.tests)
            data = self.tests[report.nodeid] = _TestData(position)
        data.note(report)

    def page(self) -> Iterator[str]:
        """The page, in pieces (see :func:`page_pieces`)."""
        document = self.claims.document()
        order = sorted(self.tests.items(), key=lambda item: (item[1].position, item[0]))
        counts: dict[str, int] = {}
        for _, data in order:
            counts[data.outcome] = counts.get(data.outcome, 0) + 1
        return page_pieces(
            cast(list[JsonDict], document["claims"]),
            cast(JsonDict, document["summary"]),
            _Entries(order),
            counts,
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus == pytest.ExitCode.USAGE_ERROR:
            return
        try:
            write_report(self.path, self.page())
            self.written = True
        except OSError as error:
            self.write_error = f"{self.path}: {error.strerror or error}"
            fail_the_run(session)

    @pytest.hookimpl(trylast=True)  # after the claims table
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.write_error is not None:
            terminalreporter.line(
                f"asyncspec: could not write the HTML report {self.write_error}", red=True
            )
        elif self.written:
            terminalreporter.line(f"asyncspec: HTML report written to {self.path}")
