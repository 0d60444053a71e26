"""The HTML report: one self-contained page with the claims table and timelines.

``--asyncspec-html=PATH`` writes a page that needs nothing but a browser: its
CSS is inline, it has no script at all (hover details are SVG ``<title>``
tooltips, which browsers show natively), and a Content-Security-Policy meta
tag forbids every external resource and any script, so the page stays inert
even if some text were to slip through unescaped.  Every string that comes
from user code (test ids, task names, claim titles, figures, failure reasons)
goes through :func:`html.escape`.

The page is drawn from plain, JSON-able data only:

* the aggregated claims of :class:`~pytest_asyncspec.claims.ClaimsReport`;
* one *timeline payload* per traced test (:func:`timeline_payload`), built
  where the test ran and carried on its call report in :data:`.report_fields.TIMELINE`,
  so that a pytest-xdist controller receives the same data a serial run
  collects.  A payload keeps at most :data:`MAX_TASKS` tasks and
  :data:`MAX_STEPS` steps; the page says when a timeline was clipped.  It
  travels, and waits for the page, packed (:func:`pack_timeline`: JSON,
  zlib, base64), since pytest keeps every report to the end of the run: a
  suite of thousands of traced tests keeps a few hundred bytes a test, not
  the tens of kilobytes of the decoded data.

:class:`HtmlReport` is the pytest plugin object that gathers the payloads
where reports arrive (never on an xdist worker) and writes the page at the
end of the run.  Nothing in the page depends on when or where it was made,
so a serial run and ``-n 2`` on the virtual clock give the same file.
"""

from __future__ import annotations

import base64
import html
import json
import math
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from . import report_fields
from .claims import (
    ClaimsReport,
    JsonDict,
    JsonValue,
    fail_the_run,
    format_value,
    write_atomically,
)

if TYPE_CHECKING:
    from .trace import Trace

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

#: Most tasks one test's timeline keeps (the first ones created).  Beyond a
#: few hundred rows a picture is no longer read, only scrolled.
MAX_TASKS = 200
#: Most steps one test's timeline keeps: each is an SVG rectangle, and a page
#: of many such tests must still open quickly.
MAX_STEPS = 20_000

# SVG geometry, in pixels of the picture's own coordinate system.
_WIDTH = 960
_LABEL_WIDTH = 210
_RIGHT_MARGIN = 24
_AXIS_HEIGHT = 26
_ROW_HEIGHT = 18
_BAR_HEIGHT = 12
#: Narrowest drawn step: most steps take no loop time on the virtual clock,
#: and a zero-width rectangle would be invisible and impossible to hover.
_MIN_BAR = 2.0
_PLOT_WIDTH = _WIDTH - _LABEL_WIDTH - _RIGHT_MARGIN
#: Characters of a task name shown beside its row (the tooltip has it all).
_NAME_CHARS = 30

#: asyncio's name for a task nobody named: its number counts tasks process-wide,
#: so it differs between a serial run and an xdist worker.

_OUTCOME_CLASSES = {"passed", "failed", "skipped", "error"}
_TASK_OUTCOMES = {"returned", "raised", "cancelled", "pending"}


# -- the per-test data ---------------------------------------------------------


def timeline_payload(
    trace: Trace,
    *,
    test: str,
    outcome: str,
    position: int,
    virtual: bool,
    phases: Mapping[int, str] | None = None,
) -> JsonDict:
    """One traced test's timeline as plain data (what travels on its report).

    Tasks are kept in creation order, the first :data:`MAX_TASKS` of them;
    their steps in the order they ended, the first :data:`MAX_STEPS`.  Each
    step is ``[start, end, awaits]``: loop seconds, and what the task waited
    on after it.  ``total_tasks`` and ``total_steps`` count the whole trace,
    so the page can say what it left out.  ``phases`` (task label -> the
    test's phase that created it) marks the tasks of its fixtures.
    """
    records = sorted(trace.tasks.values(), key=lambda record: record.label)
    kept = records[:MAX_TASKS]
    rows: dict[int, list[JsonValue]] = {record.label: [] for record in kept}
    shown = 0
    # Steps are decoded one by one, and the loop stops at the cap: a trace of
    # a million steps costs no more than MAX_STEPS of them here.
    for step in trace.steps():
        if shown >= MAX_STEPS:
            break
        row = rows.get(step.task)
        if row is None:
            continue
        row.append([step.start, step.end, step.awaits.name])
        shown += 1
    tasks: list[JsonValue] = [
        {
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
            "phase": (phases or {}).get(record.label, "call"),
            "steps": rows[record.label],
        }
        for record in kept
    ]
    return {
        "test": test,
        "outcome": outcome,
        "position": position,
        "virtual": virtual,
        "tasks": tasks,
        "total_tasks": len(records),
        "total_steps": len(trace),
    }


def pack_timeline(payload: JsonDict) -> str:
    """``payload`` as compact text (JSON, zlib, base64): still a plain
    string on the report, for pytest-xdist to carry."""
    encoded = json.dumps(payload, separators=(",", ":")).encode()
    return base64.b64encode(zlib.compress(encoded)).decode("ascii")


def unpack_timeline(packed: str) -> JsonDict:
    """The payload :func:`pack_timeline` packed."""
    return cast(JsonDict, json.loads(zlib.decompress(base64.b64decode(packed))))


class _PackedTimelines(Sequence[JsonDict]):
    """Packed payloads, unpacked one at a time as the page is drawn (all of
    them at once would be the memory the packing saved)."""

    def __init__(self, packed: list[str]) -> None:
        self._packed = packed

    def __len__(self) -> int:
        return len(self._packed)

    def __getitem__(self, index: int) -> JsonDict:  # type: ignore[override]
        return unpack_timeline(self._packed[index])


# -- rendering -------------------------------------------------------------------


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _number(value: object) -> float | None:
    """A finite float from payload data, else None (data may come from any worker)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _seconds(value: float) -> str:
    """Loop seconds for a tooltip: exact enough to tell steps apart, no noise."""
    return f"{value:.9f}".rstrip("0").rstrip(".") + " s"


def _duration(value: float) -> str:
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if value >= scale:
            return f"{value / scale:.4g} {unit}"
    return "0 s" if value == 0 else f"{value * 1e9:.4g} ns"


def _count(value: object, noun: str = "") -> str:
    """A count with thousands separators and its noun: ``10,005 tasks``, ``1 step``."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = f"{value:,}"
        plural = value != 1
    else:
        text, plural = _esc(value), True
    if not noun:
        return text
    return f"{text} {noun}{'s' if plural else ''}"


def _clip(text: str, limit: int) -> str:
    # Clipped before escaping, so an entity is never cut in half.
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _outcome_class(outcome: object) -> str:
    text = str(outcome)
    return text if text in _OUTCOME_CLASSES | _TASK_OUTCOMES else "other"


def _tick_step(span: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving at most ten ticks."""
    raw = span / 10
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _tick_label(value: float, step: float) -> str:
    # Steps are 1, 2 or 5 times a power of ten: its exponent gives the decimals.
    decimals = max(0, -math.floor(math.log10(step)))
    return f"{value:.{decimals}f}"


def _svg(entry: JsonDict, index: int) -> str:
    tasks = [
        task for task in cast(list[JsonDict], entry.get("tasks") or []) if isinstance(task, dict)
    ]
    starts: list[float] = []
    ends: list[float] = []
    for task in tasks:
        created = _number(task.get("created"))
        if created is not None:
            starts.append(created)
        for item in cast(list[list[JsonValue]], task.get("steps") or []):
            start, end = _number(item[0]), _number(item[1])
            if start is not None and end is not None:
                starts.append(start)
                ends.append(end)
    if not ends:
        return '<p class="empty">No task steps were recorded.</p>'
    origin = min(starts)
    finish = max(ends)
    span = finish - origin if finish > origin else 1.0
    tick = _tick_step(span)
    scale = _PLOT_WIDTH / span
    height = _AXIS_HEIGHT + _ROW_HEIGHT * len(tasks) + 4
    test = str(entry.get("test", ""))
    parts = [
        f'<svg class="timeline" id="timeline-{index}" role="img" '
        f'viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" height="{height}" '
        f'aria-label="{_esc(f"timeline of {test}")}">'
    ]
    # The axis: round ticks in seconds from the origin.
    ticks = math.floor(span / tick + 1e-9)
    for number in range(ticks + 1):
        x = _LABEL_WIDTH + number * tick * scale
        # Labels centre on their tick, but the first and last stay inside.
        anchor = "start" if number == 0 else "end" if number == ticks else "middle"
        parts.append(
            f'<line class="tick" x1="{x:.2f}" y1="{_AXIS_HEIGHT - 6}" x2="{x:.2f}" '
            f'y2="{height}"/>'
            f'<text class="axis" x="{x:.2f}" y="{_AXIS_HEIGHT - 10}" text-anchor="{anchor}">'
            f"{_esc(_tick_label(number * tick, tick))}</text>"
        )
    parts.append(f'<text class="axis" x="4" y="{_AXIS_HEIGHT - 10}">task</text>')
    for row, task in enumerate(tasks):
        top = _AXIS_HEIGHT + row * _ROW_HEIGHT
        name = str(task.get("name", ""))
        label = task.get("label", row + 1)
        outcome = str(task.get("outcome", ""))
        created = _number(task.get("created"))
        phase = str(task.get("phase", "call"))
        if phase != "call":
            # A task of the test's fixtures, made during its setup or teardown.
            name = f"{name} [{phase}]"
        about = [f"{name} (task {label}, {task.get('coroutine', '')})", f"outcome: {outcome}"]
        if task.get("error"):
            about.append(f"error: {task.get('error')}")
        if created is not None:
            about.append(f"created at {_seconds(created)} in {task.get('created_where', '?')}")
        parts.append(
            f'<g class="task {_outcome_class(outcome)}">'
            f"<title>{_esc(chr(10).join(about))}</title>"
            f'<text class="name" x="4" y="{top + _BAR_HEIGHT}">'
            f"{_esc(_clip(f'{label} {name}', _NAME_CHARS))}</text>"
        )
        steps = cast(list[list[JsonValue]], task.get("steps") or [])
        if created is not None and steps:
            last = _number(steps[-1][1])
            if last is not None:
                # A thin line for the task's life: where it waited between steps.
                parts.append(
                    f'<line class="life" x1="{_LABEL_WIDTH + (created - origin) * scale:.2f}" '
                    f'y1="{top + _BAR_HEIGHT / 2 + 1}" '
                    f'x2="{_LABEL_WIDTH + (last - origin) * scale:.2f}" '
                    f'y2="{top + _BAR_HEIGHT / 2 + 1}"/>'
                )
        for number, item in enumerate(steps, start=1):
            start, end = _number(item[0]), _number(item[1])
            if start is None or end is None:
                continue
            awaits = str(item[2]) if len(item) > 2 else ""
            final = number == len(steps) and awaits == "DONE"
            kind = "instant" if end <= start else "held"
            if final and outcome in ("raised", "cancelled"):
                kind += f" {outcome}"
            x = _LABEL_WIDTH + (start - origin) * scale
            width = max((end - start) * scale, _MIN_BAR)
            tip = (
                f"{name} (task {label}) step {number}: {_seconds(start)} to {_seconds(end)} "
                f"(held the loop {_duration(max(end - start, 0.0))}), then "
                f"{'finished' if awaits == 'DONE' else f'awaits {awaits}'}"
            )
            parts.append(
                f'<rect class="{kind}" x="{x:.2f}" y="{top + 1}" width="{width:.2f}" '
                f'height="{_BAR_HEIGHT}"><title>{_esc(tip)}</title></rect>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _timeline_section(entry: JsonDict, index: int) -> str:
    test = str(entry.get("test", ""))
    outcome = entry.get("outcome", "")
    tasks = cast(list[JsonValue], entry.get("tasks") or [])
    total_tasks = entry.get("total_tasks", len(tasks))
    steps = sum(
        len(cast(list[JsonValue], task.get("steps") or []))
        for task in tasks
        if isinstance(task, dict)
    )
    total_steps = entry.get("total_steps", steps)
    clock = "virtual" if entry.get("virtual") else "real"
    lines = [
        f'<section class="test" id="test-{index}">',
        f'<h3><span class="outcome {_outcome_class(outcome)}">{_esc(outcome)}</span> '
        f"<code>{_esc(test)}</code></h3>",
        f'<p class="meta">{_count(total_tasks, "task")}, {_count(total_steps, "step")}, '
        f"loop time on the {clock} clock</p>",
    ]
    if total_tasks != len(tasks) or total_steps != steps:
        lines.append(
            f'<p class="clipped">Clipped: showing the first {len(tasks):,} of '
            f"{_count(total_tasks)} tasks and {steps:,} of {_count(total_steps)} steps "
            f"(at most {MAX_TASKS} tasks and {MAX_STEPS:,} steps a test).</p>"
        )
    if steps:
        lines.append(_svg(entry, index))
    else:
        lines.append('<p class="empty">No task steps were recorded.</p>')
    lines.append("</section>")
    return "\n".join(lines)


def _figure_cell(value: JsonValue, unit: object) -> str:
    return _esc(format_value(value, unit if isinstance(unit, str) else None))


def _claims_section(claims: Sequence[JsonDict], summary: JsonDict | None) -> str:
    if not claims:
        return '<h2>Claims</h2>\n<p class="empty">No claim-tagged tests ran.</p>'
    lines = ["<h2>Claims</h2>"]
    if summary is not None:
        counts = ", ".join(
            f"{_esc(summary.get(outcome, 0))} {outcome}"
            for outcome in ("passed", "failed", "skipped", "error")
            if summary.get(outcome)
        )
        lines.append(
            f'<p class="summary">{_esc(summary.get("total", len(claims)))} claims: {counts}; '
            f"{_esc(summary.get('tests', ''))} tests ({_esc(summary.get('controls', ''))} "
            "negative controls)</p>"
        )
    lines.append(
        '<table class="claims"><thead><tr><th>ID</th><th>Title</th><th>Outcome</th>'
        "<th>Documented</th><th>Measured</th><th>Details</th></tr></thead><tbody>"
    )
    for claim in claims:
        outcome = claim.get("outcome", "")
        unit = claim.get("unit")
        details = []
        if claim.get("reason") is not None and outcome != "passed":
            details.append(f'<p class="reason">{_esc(claim.get("reason"))}</p>')
        figures = [
            f for f in cast(list[JsonValue], claim.get("figures") or []) if isinstance(f, dict)
        ]
        if figures:
            rows = "".join(
                f"<tr><td>{_esc(figure.get('what', ''))}</td>"
                f"<td>{_figure_cell(figure.get('documented'), figure.get('unit'))}</td>"
                f"<td>{_figure_cell(figure.get('measured'), figure.get('unit'))}</td>"
                f"<td><code>{_esc(figure.get('test', ''))}</code></td></tr>"
                for figure in figures
            )
            details.append(
                f"<details><summary>{len(figures)} figure{'' if len(figures) == 1 else 's'}"
                "</summary>"
                '<table class="figures"><thead><tr><th>What</th><th>Documented</th>'
                f"<th>Measured</th><th>Test</th></tr></thead><tbody>{rows}</tbody></table>"
                "</details>"
            )
        source = claim.get("source")
        if source:
            details.append(f'<p class="source">{_esc(source)}</p>')
        lines.append(
            f'<tr class="{_outcome_class(outcome)}"><td class="id">{_esc(claim.get("id", ""))}</td>'
            f"<td>{_esc(claim.get('title', ''))}</td>"
            f'<td><span class="outcome {_outcome_class(outcome)}">{_esc(outcome)}</span></td>'
            f"<td>{_figure_cell(claim.get('documented'), unit)}</td>"
            f"<td>{_figure_cell(claim.get('measured'), unit)}</td>"
            f"<td>{''.join(details)}</td></tr>"
        )
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _timelines_pieces(timelines: Sequence[JsonDict]) -> Iterator[str]:
    lines = ["<h2>Timelines</h2>"]
    if not timelines:
        lines.append(
            '<p class="empty">No traced tests. Timelines are drawn for async tests with a '
            "full trace: <code>--asyncspec-trace=on</code>, the <code>asyncspec_trace</code> "
            "fixture or <code>--asyncspec-trace-dir</code>.</p>"
        )
        yield "\n".join(lines)
        return
    lines.append(
        '<p class="legend">One row per task, one bar per step on the loop-time axis '
        '(seconds from the first instant shown). <span class="key held"></span> a step that '
        'held the loop, <span class="key instant"></span> a step that took no loop time, '
        '<span class="key raised"></span> raised, <span class="key cancelled"></span> '
        "cancelled; the thin line is the task waiting. Hover a bar or a name for details.</p>"
    )
    yield "\n".join(lines)
    for index, entry in enumerate(timelines):
        yield "\n" + _timeline_section(entry, index)


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; margin: 0 0 .5em; }
h2 { font-size: 1.2em; margin: 1.5em 0 .5em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1em; margin: 1.2em 0 .2em; }
code { font: 12px ui-monospace, monospace; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.id { white-space: nowrap; font-weight: 600; }
.outcome { padding: 0 4px; border-radius: 3px; color: #fff; background: #777; }
.outcome.passed { background: #2a7d2a; }
.outcome.failed, .outcome.error { background: #b52a2a; }
.outcome.skipped { background: #a07800; }
.reason { color: #b52a2a; margin: 0; }
.source { color: #666; margin: 0; font-size: 12px; }
.meta, .legend { color: #555; margin: .2em 0; }
.clipped { color: #a05000; font-weight: 600; }
svg.timeline { display: block; max-width: 100%; height: auto; background: #fcfcfc;
  border: 1px solid #e4e4e4; }
svg text { font: 11px ui-monospace, monospace; fill: #333; }
svg text.axis { fill: #777; }
svg line.tick { stroke: #eee; }
svg line.life { stroke: #bbb; stroke-dasharray: 2 2; }
rect.held { fill: #3a6fb0; }
rect.instant { fill: #8fb3de; }
rect.raised { fill: #c0392b; }
rect.cancelled { fill: #d68910; }
svg rect:hover { stroke: #000; stroke-width: 1; }
g.task:hover text.name { font-weight: 700; }
.key { display: inline-block; width: 12px; height: 10px; vertical-align: middle; }
.key.held { background: #3a6fb0; } .key.instant { background: #8fb3de; }
.key.raised { background: #c0392b; } .key.cancelled { background: #d68910; }
"""

#: No script, no external resource: only the inline style may apply.
_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def render_page(
    claims: Sequence[JsonDict], summary: JsonDict | None, timelines: Sequence[JsonDict]
) -> str:
    """The whole page: claims table, then one timeline per traced test."""
    return "".join(page_pieces(claims, summary, timelines))


def page_pieces(
    claims: Sequence[JsonDict], summary: JsonDict | None, timelines: Sequence[JsonDict]
) -> Iterator[str]:
    """The page of :func:`render_page` in pieces, one test's timeline at a
    time: written as they come, a page of thousands of timelines (tens of
    megabytes) is never held whole in memory."""
    yield (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>pytest-asyncspec report</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n"
    )
    yield "<h1>pytest-asyncspec report</h1>\n"
    yield (
        f'<p class="meta">{_count(len(claims), "claim")}, '
        f"{_count(len(timelines), 'traced test')}</p>\n"
    )
    yield _claims_section(claims, summary) + "\n"
    yield from _timelines_pieces(timelines)
    yield "\n</body>\n</html>\n"


# -- the plugin object -----------------------------------------------------------


class HtmlReport:
    """Gathers timeline payloads where reports arrive and writes the page.

    Registered only where reports are aggregated (never on an xdist worker);
    the claims come from the run's :class:`ClaimsReport`.
    """

    def __init__(self, path: Path, claims: ClaimsReport) -> None:
        self.path = path
        self.claims = claims
        #: By test id: (its position, the packed payload).
        self.timelines: dict[str, tuple[int, str]] = {}
        self.write_error: str | None = None
        self.written = False

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        packed = getattr(report, report_fields.TIMELINE, None)
        if report.when == "call" and isinstance(packed, str):
            try:
                position = unpack_timeline(packed).get("position", 0)
            except (ValueError, zlib.error):
                return
            self.timelines[report.nodeid] = (position if isinstance(position, int) else 0, packed)

    def page(self) -> Iterator[str]:
        """The page, in pieces (see :func:`page_pieces`)."""
        document = self.claims.document()
        order = sorted(self.timelines.items(), key=lambda item: (item[1][0], item[0]))
        return page_pieces(
            cast(list[JsonDict], document["claims"]),
            cast(JsonDict, document["summary"]),
            _PackedTimelines([packed for _, (_, packed) in order]),
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus == pytest.ExitCode.USAGE_ERROR:
            return
        try:
            write_atomically(self.path, self.page())
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
