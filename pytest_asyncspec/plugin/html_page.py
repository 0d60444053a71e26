"""The HTML report's page, drawn from plain data (see :mod:`.html_report`).

The page has, under a bar with the counts by outcome (each a filter), a
search box and the helper-task toggle:

* the claims table, when claim-tagged tests ran;
* one section per test, in collection order: its outcome, its failure text
  as the terminal shows it (pytest's long report: the assertion, the
  blocking report with file:line, the deadlock report), its captured output
  and asyncspec's report sections, folded, and its timeline when it was
  traced.  Failed tests start unfolded.  An explored test's timeline is cut
  at each run of its body: the failing run first, marked, with its replay
  command, and every other run folded below, each under its own heading.

A timeline is two SVG pictures side by side: the task names, and the plot
(one row per task, one bar per step on loop seconds), which the page's
script zooms and pans.  A step over ``max_blocking`` is drawn red with a
mark on the axis when the gate failed the test for it, grey and dashed when
an allow rule allowed it; on the virtual clock such a step may take no loop
time, and its real duration is in its tooltip.  Tasks of this package's and
pytest-asyncio's own machinery are hidden unless the toggle shows them.

Every string from user code goes through :func:`html.escape`; nothing here
builds markup from it otherwise.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator, Sequence
from typing import cast

from .claims import JsonDict, JsonValue, format_value
from .html_assets import CSP, CSS, SCRIPT

__all__ = ["MAX_STEPS", "MAX_TASKS", "OUTCOMES", "page_pieces", "render_page"]

#: Most tasks one timeline keeps (the first ones created).  Beyond a few
#: hundred rows a picture is no longer read, only scrolled.
MAX_TASKS = 200
#: Most steps one test's timeline keeps: each is an SVG rectangle, and a page
#: of many such tests must still open quickly.
MAX_STEPS = 20_000

#: Test outcomes, in the order the counts show them.
OUTCOMES = ("failed", "error", "passed", "skipped", "xfailed", "xpassed")

# SVG geometry, in pixels.
_LABEL_WIDTH = 210
_PLOT_WIDTH = 1040
_AXIS_HEIGHT = 26
_ROW_HEIGHT = 18
_BAR_HEIGHT = 12
#: Narrowest drawn step: most steps take no loop time on the virtual clock,
#: and a zero-width rectangle would be invisible and impossible to hover.
_MIN_BAR = 2.0
#: Characters of a task name shown beside its row (the tooltip has it all).
_NAME_CHARS = 30

_TASK_OUTCOMES = {"returned", "raised", "cancelled", "pending"}


# -- small helpers -------------------------------------------------------------


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
    return text if text in {*OUTCOMES, *_TASK_OUTCOMES} else "other"


def _tick_step(span: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving at most ten ticks."""
    raw = span / 10
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _tick_label(value: float, step: float) -> str:
    # Steps are 1, 2 or 5 times a power of ten: its exponent gives the decimals.
    decimals = max(0, -math.floor(math.log10(step)))
    return f"{value:.{decimals}f}"


def _tasks_of(part: JsonDict) -> list[JsonDict]:
    return [
        task for task in cast(list[JsonValue], part.get("tasks") or []) if isinstance(task, dict)
    ]


def _steps_of(task: JsonDict) -> list[list[JsonValue]]:
    return [
        item for item in cast(list[JsonValue], task.get("steps") or []) if isinstance(item, list)
    ]


# -- one timeline ----------------------------------------------------------------


def _bounds(tasks: Sequence[JsonDict]) -> tuple[float, float] | None:
    starts: list[float] = []
    ends: list[float] = []
    for task in tasks:
        created = _number(task.get("created"))
        if created is not None:
            starts.append(created)
        for item in _steps_of(task):
            start, end = _number(item[0]), _number(item[1])
            if start is not None and end is not None:
                starts.append(start)
                ends.append(end)
    if not ends:
        return None
    return min(starts), max(ends)


def _step_rect(
    item: list[JsonValue],
    number: int,
    steps: int,
    *,
    name: str,
    label: object,
    outcome: str,
    origin: float,
    scale: float,
    threshold: float | None,
    height: int,
) -> tuple[str, str]:
    """The step's rectangle, and its gate mark ("" if none): a line down
    the picture from a triangle on the axis."""
    start, end = _number(item[0]), _number(item[1])
    if start is None or end is None:
        return "", ""
    awaits = str(item[2]) if len(item) > 2 else ""
    real = _number(item[3]) if len(item) > 3 else None
    gate = str(item[4]) if len(item) > 4 and item[4] is not None else None
    about = str(item[5]) if len(item) > 5 and item[5] is not None else ""
    loop_time = max(end - start, 0.0)
    held = max(loop_time, real or 0.0)
    kind = "instant" if end <= start else "held"
    if gate == "offending" or (gate is None and threshold is not None and held > threshold):
        kind = "blocking"
    elif gate == "allowed":
        kind = "allowed"
    if number == steps and awaits == "DONE" and outcome in ("raised", "cancelled"):
        kind += f" {outcome}"
    x = (start - origin) * scale
    exact = loop_time * scale
    width = max(exact, _MIN_BAR)
    lines = [
        f"{name} (task {label}) step {number}: {_seconds(start)} to {_seconds(end)}",
        f"held the loop {_duration(loop_time)} of loop time"
        + ("" if real is None else f", {_duration(real)} of real time"),
    ]
    if about:
        lines.append(about)
    lines.append("then finished" if awaits == "DONE" else f"then awaits {awaits}")
    exact_attr = f' data-w="{exact:.4f}"' if width != exact else ""
    rect = (
        f'<rect class="{kind}" x="{x:.2f}" y="1" width="{width:.2f}" '
        f'height="{_BAR_HEIGHT}"{exact_attr}><title>{_esc(chr(10).join(lines))}</title></rect>'
    )
    mark = ""
    if gate == "offending":
        mark = (
            f'<line class="gate" x1="{x:.2f}" y1="{_AXIS_HEIGHT - 4}" x2="{x:.2f}" '
            f'y2="{height}"/>'
            f'<polygon class="gate" data-x="{x:.2f}" transform="translate({x:.2f},0)" '
            f'points="-5,{_AXIS_HEIGHT - 12} 5,{_AXIS_HEIGHT - 12} 0,{_AXIS_HEIGHT - 4}">'
            f"<title>{_esc(chr(10).join(lines))}</title></polygon>"
        )
    return rect, mark


def timeline_box(part: JsonDict, *, key: str, test: str, threshold: float | None) -> str:
    """One timeline (the tasks of ``part``) as its names and plot pictures,
    or a note when no step was recorded."""
    tasks = _tasks_of(part)
    bounds = _bounds(tasks)
    if bounds is None:
        return '<p class="empty">No task steps were recorded.</p>'
    origin, finish = bounds
    span = finish - origin if finish > origin else 1.0
    scale = _PLOT_WIDTH / span
    # Helper tasks start hidden: the others are stacked first (the script
    # stacks them again when the toggle shows the helpers).
    visible = [task for task in tasks if not task.get("helper")]
    height = _AXIS_HEIGHT + _ROW_HEIGHT * len(visible) + 4
    rows: dict[int, float] = {}
    for position, task in enumerate(visible):
        rows[id(task)] = _AXIS_HEIGHT + position * _ROW_HEIGHT
    names = [
        f'<svg class="names" viewBox="0 0 {_LABEL_WIDTH} {height}" width="{_LABEL_WIDTH}" '
        f'height="{height}"><text class="axis" x="4" y="{_AXIS_HEIGHT - 10}">task</text>'
    ]
    plot = [
        f'<svg class="timeline" id="timeline-{_esc(key)}" role="img" '
        f'viewBox="0 0 {_PLOT_WIDTH} {height}" width="{_PLOT_WIDTH}" height="{height}" '
        f'aria-label="{_esc(f"timeline of {test}")}"><g class="axis">'
    ]
    tick = _tick_step(span)
    ticks = math.floor(span / tick + 1e-9)
    for number in range(ticks + 1):
        x = number * tick * scale
        # Labels centre on their tick, but the first and last stay inside.
        anchor = "start" if number == 0 else "end" if number == ticks else "middle"
        plot.append(
            f'<line class="tick" x1="{x:.2f}" y1="{_AXIS_HEIGHT - 6}" x2="{x:.2f}" '
            f'y2="{height}"/>'
            f'<text class="axis" x="{x:.2f}" y="{_AXIS_HEIGHT - 10}" text-anchor="{anchor}">'
            f"{_esc(_tick_label(number * tick, tick))}</text>"
        )
    plot.append("</g>")
    marks: list[str] = []
    hidden_top = height  # helper rows wait below the picture until shown
    for row, task in enumerate(tasks):
        top = rows.get(id(task), hidden_top)
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
        if task.get("helper"):
            about.append("a helper task of pytest-asyncspec or pytest-asyncio")
        helper = " helper" if task.get("helper") else ""
        group = (
            f'<g class="task {_outcome_class(outcome)}{helper}" data-row="{row}" '
            f'transform="translate(0,{top:g})"><title>{_esc(chr(10).join(about))}</title>'
        )
        names.append(
            f'{group}<text class="name" x="4" y="{_BAR_HEIGHT}">'
            f"{_esc(_clip(f'{label} {name}', _NAME_CHARS))}</text></g>"
        )
        plot.append(group)
        steps = _steps_of(task)
        if created is not None and steps:
            last = _number(steps[-1][1])
            if last is not None:
                # A thin line for the task's life: where it waited between steps.
                plot.append(
                    f'<line class="life" x1="{(created - origin) * scale:.2f}" '
                    f'y1="{_BAR_HEIGHT / 2 + 1}" x2="{(last - origin) * scale:.2f}" '
                    f'y2="{_BAR_HEIGHT / 2 + 1}"/>'
                )
        for number, item in enumerate(steps, start=1):
            rect, mark = _step_rect(
                item,
                number,
                len(steps),
                name=name,
                label=label,
                outcome=outcome,
                origin=origin,
                scale=scale,
                threshold=threshold,
                height=height,
            )
            plot.append(rect)
            if mark:
                marks.append(mark)
        plot.append("</g>")
    plot.extend(marks)
    plot.append("</svg>")
    names.append("</svg>")
    return (
        f'<div class="timeline-box" data-plot-width="{_PLOT_WIDTH}" data-span="{span!r}" '
        f'data-row-height="{_ROW_HEIGHT}" data-axis-height="{_AXIS_HEIGHT}">'
        '<div class="tools">zoom <button type="button" data-zoom="out">&minus;</button>'
        '<button type="button" data-zoom="in">+</button>'
        '<button type="button" data-zoom="fit">fit</button> <span class="level">1.0x</span>'
        " (Ctrl + wheel zooms, drag pans)</div>"
        f'<div class="frame">{"".join(names)}<div class="scroll">{"".join(plot)}</div></div>'
        "</div>"
    )


def _part_note(part: JsonDict) -> str:
    """What a clipped part left out, or ""."""
    tasks = _tasks_of(part)
    steps = sum(len(_steps_of(task)) for task in tasks)
    total_tasks = part.get("total_tasks", len(tasks))
    total_steps = part.get("total_steps", steps)
    if total_tasks == len(tasks) and total_steps == steps:
        return ""
    return (
        f'<p class="clipped">Clipped: showing the first {len(tasks):,} of '
        f"{_count(total_tasks)} tasks and {steps:,} of {_count(total_steps)} steps "
        f"(at most {MAX_TASKS} tasks and {MAX_STEPS:,} steps a test).</p>"
    )


def _timeline_html(timeline: JsonDict, index: int) -> str:
    test = str(timeline.get("test", ""))
    threshold = _number(timeline.get("threshold"))
    clock = "virtual" if timeline.get("virtual") else "real"
    tasks = _tasks_of(timeline)
    runs = [
        run for run in cast(list[JsonValue], timeline.get("runs") or []) if isinstance(run, dict)
    ]
    total_tasks = timeline.get("trace_tasks", timeline.get("total_tasks", len(tasks)))
    total_steps = timeline.get("trace_steps", timeline.get("total_steps", 0))
    helpers = sum(1 for part in [timeline, *runs] for task in _tasks_of(part) if task.get("helper"))
    meta = (
        f"{_count(total_tasks, 'task')}, {_count(total_steps, 'step')}, "
        f"loop time on the {clock} clock"
    )
    if runs:
        meta += f"; {_count(len(runs), 'run')} of the body"
    if helpers:
        meta += f"; {_count(helpers, 'helper task')} hidden (show them above)"
    lines = ["<h4>Timeline</h4>", f'<p class="meta">{meta}</p>']
    if not runs:
        lines.append(_part_note(timeline))
        lines.append(timeline_box(timeline, key=str(index), test=test, threshold=threshold))
        return "\n".join(lines)
    failing = [run for run in runs if run.get("failing")]
    others = [run for run in runs if not run.get("failing")]
    for number, run in enumerate(failing):
        lines.append(_run_html(run, f"{index}-f{number}", test, threshold, failing=True))
    folded: list[str] = []
    if _tasks_of(timeline):
        folded.append(
            '<div class="run"><h4>Before the runs (the test\'s setup)</h4>'
            + _part_note(timeline)
            + timeline_box(timeline, key=f"{index}-setup", test=test, threshold=threshold)
            + "</div>"
        )
    for number, run in enumerate(others):
        folded.append(_run_html(run, f"{index}-r{number}", test, threshold, failing=False))
    if folded:
        what = "other run" if failing else "run"
        lines.append(
            f'<details class="runs"{"" if failing else " open"}><summary>'
            f"{_count(len(others), what)} of the body"
            f"{', and the setup' if _tasks_of(timeline) else ''}</summary>"
            + "\n".join(folded)
            + "</details>"
        )
    return "\n".join(lines)


def _run_html(run: JsonDict, key: str, test: str, threshold: float | None, *, failing: bool) -> str:
    name = str(run.get("name", "a run"))
    heading = f"{_esc(name)}"
    if failing:
        heading = f'<span class="badge">failing</span> the failing run: {heading}'
    parts = [f'<div class="run{" failing" if failing else ""}"><h4>{heading}</h4>']
    replay = run.get("replay")
    if replay:
        parts.append(f'<p class="replay">replay: <code>{_esc(replay)}</code></p>')
    parts.append(_part_note(run))
    parts.append(timeline_box(run, key=key, test=test, threshold=threshold))
    parts.append("</div>")
    return "".join(parts)


# -- one test ------------------------------------------------------------------------


def _test_section(entry: JsonDict, index: int) -> str:
    test = str(entry.get("test", ""))
    outcome = str(entry.get("outcome", ""))
    failing = outcome in ("failed", "error")
    timeline = entry.get("timeline")
    summary_meta = ""
    if isinstance(timeline, dict):
        summary_meta = ' <span class="meta">traced</span>'
    parts = [
        f'<section class="test" id="test-{index}" data-outcome="{_outcome_class(outcome)}" '
        f'data-id="{_esc(test)}">',
        f"<details{' open' if failing else ''}><summary>"
        f'<span class="outcome {_outcome_class(outcome)}">{_esc(outcome)}</span> '
        f"<code>{_esc(test)}</code>{summary_meta}</summary>",
        '<div class="body">',
    ]
    failure = entry.get("failure")
    if failure:
        heading = {"skipped": "Skipped", "xfailed": "Expected failure"}.get(outcome, "Failure")
        parts.append(f'<h4>{heading}</h4><pre class="failure">{_esc(failure)}</pre>')
    for section in cast(list[JsonValue], entry.get("sections") or []):
        if isinstance(section, list) and len(section) == 2:
            parts.append(
                f'<details class="section"><summary>{_esc(section[0])}</summary>'
                f"<pre>{_esc(section[1])}</pre></details>"
            )
    if isinstance(timeline, dict):
        parts.append(_timeline_html(timeline, index))
    elif not failure and not entry.get("sections"):
        parts.append('<p class="empty">Not traced, no output.</p>')
    parts.append("</div></details></section>")
    return "\n".join(parts)


# -- the claims ----------------------------------------------------------------------


def _figure_cell(value: JsonValue, unit: object) -> str:
    return _esc(format_value(value, unit if isinstance(unit, str) else None))


def _claims_section(claims: Sequence[JsonDict], summary: JsonDict | None) -> str:
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


# -- the page ------------------------------------------------------------------------

_LEGEND = (
    '<p class="legend">A traced test\'s timeline has one row per task, one bar per step '
    "on the loop-time axis (seconds from its first instant). "
    '<span class="key held"></span> a step that held the loop, '
    '<span class="key instant"></span> a step that took no loop time, '
    '<span class="key blocking"></span> a step over max_blocking (in loop or real time; '
    "a red mark on the axis where the gate failed the test for it), "
    '<span class="key allowed"></span> blocking an allow rule allowed, '
    '<span class="key raised"></span> raised, <span class="key cancelled"></span> '
    "cancelled; the thin line is the task waiting. Hover a bar or a name for details "
    "(real durations of blocking steps among them). Timelines are drawn for traced "
    "tests: <code>--asyncspec-trace=on</code>, the <code>asyncspec_trace</code> fixture "
    "or <code>--asyncspec-trace-dir</code>.</p>"
)


def render_page(
    claims: Sequence[JsonDict],
    summary: JsonDict | None,
    tests: Sequence[JsonDict],
    counts: dict[str, int] | None = None,
) -> str:
    """The whole page: see :func:`page_pieces`."""
    return "".join(page_pieces(claims, summary, tests, counts))


def page_pieces(
    claims: Sequence[JsonDict],
    summary: JsonDict | None,
    tests: Sequence[JsonDict],
    counts: dict[str, int] | None = None,
) -> Iterator[str]:
    """The page in pieces, one test at a time: written as they come, a page
    of thousands of tests (tens of megabytes) is never held whole in memory,
    and each test's entry is read (its timeline unpacked) only for its piece.

    ``counts`` (outcome -> tests) is read from the entries when not given,
    which reads every entry twice.
    """
    if counts is None:
        counts = {}
        for entry in tests:
            outcome = _outcome_class(entry.get("outcome", ""))
            counts[outcome] = counts.get(outcome, 0) + 1
    yield (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>pytest-asyncspec report</title>\n"
        f'<style>{CSS}</style>\n</head>\n<body data-filter="all">\n'
    )
    total = sum(counts.values())
    buttons = [
        f'<button type="button" data-filter="all" aria-pressed="true">all {total:,}</button>'
    ]
    buttons.extend(
        f'<button type="button" class="{outcome}" data-filter="{outcome}" aria-pressed="false">'
        f"{counts[outcome]:,} {outcome}</button>"
        for outcome in (*OUTCOMES, "other")
        if counts.get(outcome)
    )
    traced = f", {_count(len(claims), 'claim')}" if claims else ""
    yield (
        '<header class="bar"><h1>pytest-asyncspec report</h1>'
        f'<span class="counts">{" ".join(buttons)}</span>'
        '<input class="search" type="search" placeholder="filter by test id" '
        'aria-label="filter by test id">'
        f'<span class="shown">{total:,} shown</span>'
        '<label><input class="helpers" type="checkbox"> show helper tasks</label>'
        f'<span class="meta">{_count(total, "test")}{traced}</span></header>\n<main>\n'
    )
    if claims:
        yield _claims_section(claims, summary) + "\n"
    yield "<h2>Tests</h2>\n"
    if not total:
        yield '<p class="empty">No test ran.</p>\n'
    else:
        yield _LEGEND + "\n"
    for index, entry in enumerate(tests):
        yield _test_section(entry, index) + "\n"
    yield f"</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
