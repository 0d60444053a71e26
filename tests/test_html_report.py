"""The HTML report of ``--asyncspec-html``.

Unit tests of the renderer (escaping, clipping, an empty run), pytester runs
as a user meets the option (the file, the ini key, a usage error for a bad
path, the same page from pytest-xdist), and the page opened in a real
headless Chromium driven by Playwright: it loads without console errors,
lists every claim, draws one timeline per traced test, and shows a task
named ``<script>alert(1)</script>`` as text.

The browser test needs the ``playwright`` package (in the ``test`` extra) and
a Chromium executable, which is a system package (Debian: ``apt-get install
chromium``) or the path in ``ASYNCSPEC_CHROMIUM``; without either it is
skipped, saying which is missing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pytester_helpers import NO_BENCHMARK, VIRTUAL_INI, assert_usage_error, line_of, output_of

from pytest_asyncspec.clock.virtual_loop import VirtualClockLoop
from pytest_asyncspec.plugin.claims import JsonDict
from pytest_asyncspec.plugin.hooks import report_fields
from pytest_asyncspec.plugin.html_assets import SCRIPT
from pytest_asyncspec.plugin.html_report import (
    MAX_STEPS,
    MAX_TASKS,
    page_pieces,
    render_page,
    timeline_payload,
    unpack_timeline,
)
from pytest_asyncspec.tracing.trace import Trace, Tracer

if TYPE_CHECKING:
    # Only the annotation: with spec_tests collected too, "conftest" may be theirs.
    from conftest import RunVirtual

EVIL = "<script>alert(1)</script>"


# Three claims (one failing, one with markup in its title), two traced async
# tests and one that is untraced only because it is synchronous.
SUITE = f'''\
import asyncio
import time

import pytest

SOURCE = "A <Document> & more"


@pytest.mark.claim("S1.1", source=SOURCE, kind="T,O")
async def test_workers(asyncspec_clock):
    """Three gathered workers overlap."""
    asyncspec_clock.reset()

    async def work(i):
        await asyncio.sleep(i)
        time.sleep(0.5)
        await asyncio.sleep(1)

    await asyncio.gather(*(asyncio.create_task(work(i), name=f"w{{i}}") for i in range(3)))
    await asyncio.create_task(asyncio.sleep(0.5), name={EVIL!r})
    asyncspec_clock.assert_time(asyncspec_clock.now(), 4.0, what="whole job", documented=4.01)


@pytest.mark.claim("S1.10", title="Bold <b>claim</b> & co")
def test_sync(asyncspec_claim):
    asyncspec_claim.record("count", documented=3, measured=3)


@pytest.mark.claim("E2")
async def test_fails():
    """A task that raises."""
    async def boom():
        await asyncio.sleep(0.25)
        raise ValueError("boom")

    task = asyncio.create_task(boom(), name="boom")
    await asyncio.sleep(1)
    await task
'''
CLAIM_IDS = ("E2", "S1.1", "S1.10")
TRACED = ("test_suite.py::test_workers", "test_suite.py::test_fails")


def make_project(pytester: pytest.Pytester, *ini_lines: str) -> None:
    pytester.makeini(VIRTUAL_INI + "".join(f"{line}\n" for line in ini_lines))
    pytester.makepyfile(test_suite=SUITE)


# -- the renderer -------------------------------------------------------------------


def _timeline(test: str, tasks: list[JsonDict], **extra: object) -> JsonDict:
    entry: JsonDict = {
        "test": test,
        "outcome": "passed",
        "position": 0,
        "virtual": True,
        "tasks": tasks,  # type: ignore[dict-item]
        "total_tasks": len(tasks),
        "total_steps": sum(len(task["steps"]) for task in tasks),  # type: ignore[arg-type]
    }
    entry.update(extra)  # type: ignore[arg-type]
    return entry


def _entry(timeline: JsonDict | None, **extra: object) -> JsonDict:
    """A test's entry on the page, with ``timeline`` when it was traced."""
    entry: JsonDict = {
        "test": timeline["test"] if timeline else "t.py::t",
        "outcome": timeline["outcome"] if timeline else "passed",
        "position": 0,
        "failure": None,
        "sections": [],
        "timeline": timeline,
    }
    entry.update(extra)  # type: ignore[arg-type]
    return entry


def _task(label: int, name: str, steps: list[list[object]], outcome: str = "returned") -> JsonDict:
    return {
        "label": label,
        "name": name,
        "coroutine": "work",
        "created": 0.0,
        "created_where": "test_x.py:3",
        "outcome": outcome,
        "error": None,
        "steps": steps,  # type: ignore[dict-item]
    }


def _claim(claim_id: str, title: str, **fields: object) -> JsonDict:
    claim: JsonDict = {
        "id": claim_id,
        "title": title,
        "source": None,
        "outcome": "passed",
        "documented": None,
        "measured": None,
        "unit": None,
        "figures": [],
        "reason": None,
    }
    claim.update(fields)  # type: ignore[arg-type]
    return claim


def test_everything_from_user_code_is_escaped() -> None:
    """Task names, test ids, claim titles, sources, reasons and figures are
    text: the page has no script element and no markup of theirs."""
    claims = [
        _claim(
            EVIL,
            f"title {EVIL}",
            source=f"<img src=x onerror=alert(2)> {EVIL}",
            outcome="failed",
            reason=f"AssertionError: {EVIL}",
            documented=EVIL,
            measured=1.5,
            unit="<u>",
            figures=[
                {
                    "what": EVIL,
                    "documented": EVIL,
                    "measured": 1,
                    "unit": None,
                    "test": f"t.py::{EVIL}",
                }
            ],
        )
    ]
    timelines = [
        _timeline(
            f'test_x.py::test["{EVIL}"]',
            [_task(1, EVIL, [[0.0, 0.5, "SLEEP"], [1.0, 1.0, "DONE"]], outcome="raised")],
            outcome=EVIL,
        )
    ]
    timelines[0]["tasks"][0]["error"] = f"ValueError: {EVIL}"  # type: ignore[index]
    entry = _entry(
        timelines[0],
        failure=f"AssertionError: assert \"{EVIL}\" == 'x'",
        sections=[[f"Captured stdout {EVIL}", f"printed {EVIL} \"quoted\" 'single'"]],
    )
    page = render_page(claims, None, [entry])
    # The page's own script is its only one: no markup of theirs.
    assert page.lower().count("<script") == 1
    assert f"<script>{SCRIPT}</script>" in page
    assert "<img" not in page
    assert "<u>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    # Attribute values are quoted and escaped too (the SVG's aria-label).
    assert 'aria-label="timeline of test_x.py::test[&quot;&lt;script&gt;' in page
    # An outcome string is never used as a class name unchecked.
    assert 'class="outcome other"' in page
    # The failure text, the sections and the test id as data for the filter.
    assert (
        "AssertionError: assert &quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot; == &#x27;x&#x27;"
        in page
    )
    assert (
        "printed &lt;script&gt;alert(1)&lt;/script&gt; &quot;quoted&quot; &#x27;single&#x27;"
        in page
    )
    assert "<summary>Captured stdout &lt;script&gt;" in page
    assert 'data-id="test_x.py::test[&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;]"' in page


def test_the_page_is_drawn_one_timeline_at_a_time() -> None:
    """A page of thousands of timelines is tens of megabytes: it is written
    in pieces, each timeline unpacked only when its piece is drawn."""
    unpacked: list[int] = []

    entries = [
        _entry(_timeline(f"test_x.py::test_{n}", [_task(1, "main", [[0.0, 0.0, "DONE"]])]))
        for n in range(3)
    ]

    class Counting(Sequence[JsonDict]):
        """Notes which entries were read, as the packed payloads unpack."""

        def __len__(self) -> int:
            return len(entries)

        def __getitem__(self, index: Any) -> Any:
            unpacked.append(index)
            return entries[index]

    pieces = page_pieces([], None, Counting(), {"passed": 3})
    head = "".join(itertools.islice(pieces, 4))
    assert "<h2>Tests</h2>" in head
    assert unpacked == []
    first = next(pieces)
    assert "test_x.py::test_0" in first
    assert unpacked == [0]
    rest = list(pieces)
    # Each timeline is two pictures: the names, and the plot.
    assert [piece.count("<svg") for piece in [first, *rest]] == [2, 2, 2, 0]
    assert head + first + "".join(rest) == render_page([], None, entries)


def test_page_is_self_contained() -> None:
    """No external resources and no script but the page's own: a policy
    forbids the rest, naming the one script by its hash."""
    page = render_page(
        [_claim("S1", "t")],
        None,
        [_entry(_timeline("t.py::t", [_task(1, "a", [[0, 1, "DONE"]])]))],
    )
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    assert (
        "content=\"default-src 'none'; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'\"" in page
    )
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<svg" in page
    assert "<rect" in page
    assert "<title>" in page


def test_empty_report() -> None:
    page = render_page([], None, [])
    assert "No test ran." in page
    assert "<svg" not in page
    assert "<table" not in page


def test_claims_section_only_when_claims_ran() -> None:
    """A run without claim-tagged tests has no Claims heading at all."""
    tests = [_entry(None, test="t.py::test_plain")]
    assert "Claims" not in render_page([], None, tests)
    assert "<h2>Claims</h2>" in render_page([_claim("S1", "t")], None, tests)


def test_a_traced_test_without_steps_gets_a_note_not_a_picture() -> None:
    page = render_page([], None, [_entry(_timeline("t.py::t", [_task(1, "idle", [], "pending")]))])
    assert "No task steps were recorded." in page
    assert "<svg" not in page


def test_claims_table_shows_documented_and_measured_figures() -> None:
    claims = [
        _claim(
            "S0.3",
            "Awaiting then blocking",
            documented=15.02414,
            measured=15.0,
            unit="s",
            source="A Document",
            figures=[
                {
                    "what": "finish[0]",
                    "documented": 5.00751,
                    "measured": 5.0,
                    "unit": "s",
                    "test": "t.py::a",
                },
                {
                    "what": "whole job",
                    "documented": 15.02414,
                    "measured": 15.0,
                    "unit": "s",
                    "test": "t.py::a",
                },
            ],
        ),
        _claim("S0.4", "No figures"),
    ]
    page = render_page(claims, {"passed": 2, "total": 2, "tests": 2, "controls": 0}, [])
    assert "<td>15.02 s</td><td>15.0 s</td>" in page
    assert "<td>5.008 s</td><td>5.0 s</td>" in page
    assert "2 figures" in page
    assert "2 claims: 2 passed" in page


def _many_tasks(tasks: int, yields: int) -> Trace:
    loop = VirtualClockLoop()
    try:

        async def spin() -> None:
            for _ in range(yields):
                await asyncio.sleep(0)

        async def main() -> None:
            await asyncio.gather(*(asyncio.create_task(spin()) for _ in range(tasks)))

        with Tracer(loop) as trace:
            loop.run_until_complete(main())
    finally:
        loop.close()
    return trace


def test_payload_is_clipped_and_the_page_says_so() -> None:
    """Past MAX_TASKS tasks or MAX_STEPS steps the payload keeps the first
    ones and the totals, and the page states what it left out."""
    # 120 steps a task: the kept tasks alone have more than MAX_STEPS.
    trace = _many_tasks(MAX_TASKS + 50, 119)
    payload = timeline_payload(trace, test="t.py::t", outcome="passed", position=0, virtual=True)
    tasks = payload["tasks"]
    assert isinstance(tasks, list)
    assert len(tasks) == MAX_TASKS
    assert payload["total_tasks"] == MAX_TASKS + 51  # the gathering task too
    assert payload["total_steps"] == len(trace) > MAX_STEPS
    kept = sum(len(task["steps"]) for task in tasks)  # type: ignore[arg-type,index]
    assert kept == MAX_STEPS
    assert [task["label"] for task in tasks] == list(range(1, MAX_TASKS + 1))  # type: ignore[index]
    page = render_page([], None, [_entry(payload)])
    assert (
        f"Clipped: showing the first {MAX_TASKS} of {MAX_TASKS + 51} tasks and "
        f"{MAX_STEPS:,} of {len(trace):,} steps"
    ) in page
    assert page.count("<rect") == MAX_STEPS


def test_payload_names_unnamed_tasks_by_their_coroutine(run_virtual: RunVirtual) -> None:
    """asyncio's Task-N counts tasks process-wide (it differs under xdist), so
    an unnamed task is named by its coroutine; a given name is kept."""

    async def main() -> Trace:
        async def job() -> None:
            await asyncio.sleep(1)

        tracer = Tracer.start()
        await asyncio.gather(asyncio.create_task(job()), asyncio.create_task(job(), name="mine"))
        return tracer.stop()

    trace = run_virtual(main)
    payload = timeline_payload(trace, test="t", outcome="passed", position=0, virtual=True)
    names = [task["name"] for task in payload["tasks"]]  # type: ignore[index,union-attr]
    assert names == ["job", "mine"]
    steps = payload["tasks"][1]["steps"]  # type: ignore[index,call-overload]
    assert steps == [[0.0, 0.0, "SLEEP"], [1.0, 1.0, "DONE"]]


# -- the option, as a user meets it --------------------------------------------------


def test_flag_writes_the_page(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    result = pytester.runpytest("--asyncspec-trace=on", "--asyncspec-html=out/report.html")
    result.assert_outcomes(passed=2, failed=1)
    path = pytester.path / "out" / "report.html"
    result.stdout.fnmatch_lines([f"asyncspec: HTML report written to {path}"])
    page = path.read_text(encoding="utf-8")
    for claim_id in CLAIM_IDS:
        assert f'<td class="id">{claim_id}</td>' in page
    assert page.count('<svg class="timeline"') == len(TRACED)
    for test in TRACED:
        assert f'<code>{test}</code> <span class="meta">traced</span></summary>' in page
    # Synchronous: listed, nothing was traced.
    assert "<code>test_suite.py::test_sync</code></summary>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Bold &lt;b&gt;claim&lt;/b&gt; &amp; co" in page
    assert "<td>4.01 s</td><td>4.0 s</td>" in page
    assert "ValueError: boom" in page


def test_ini_key_and_the_fixture_trace(pytester: pytest.Pytester) -> None:
    """The ini key works like the flag; a test traced through the
    asyncspec_trace fixture alone gets its timeline."""
    pytester.makeini(VIRTUAL_INI + "asyncspec_html = page.html\n")
    pytester.makepyfile(
        test_fixture="""
        import asyncio

        async def test_traced(asyncspec_trace):
            await asyncio.create_task(asyncio.sleep(2), name="sleeper")

        async def test_untraced():
            await asyncio.sleep(1)
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)
    page = (pytester.path / "page.html").read_text(encoding="utf-8")
    assert page.count('<svg class="timeline"') == 1
    assert 'test_traced</code> <span class="meta">traced</span>' in page
    assert "sleeper" in page
    assert "test_untraced</code></summary>" in page


def test_reports_carry_no_timeline_without_the_option(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    recorder = pytester.inline_run("--asyncspec-trace=on")
    reports = recorder.getreports("pytest_runtest_logreport")
    assert [r for r in reports if r.when == "call"]
    assert not any(hasattr(report, report_fields.TIMELINE) for report in reports)


def test_reports_carry_the_timeline_packed(pytester: pytest.Pytester) -> None:
    """pytest keeps every report to the end of the run: the timeline rides on
    it as compressed text, a fraction of its decoded size, that unpacks to
    the payload the page is drawn from."""
    pytester.makeini(VIRTUAL_INI + "asyncspec_html = page.html\n")
    pytester.makepyfile(
        test_many="""
        import asyncio

        async def test_many_steps():
            for _ in range(500):
                await asyncio.sleep(0.001)
        """
    )
    recorder = pytester.inline_run("--asyncspec-trace=on")
    (report,) = [r for r in recorder.getreports("pytest_runtest_logreport") if r.when == "call"]
    packed = getattr(report, report_fields.TIMELINE)
    assert isinstance(packed, str)
    payload = unpack_timeline(packed)
    assert payload["test"] == "test_many.py::test_many_steps"
    assert payload["total_steps"] == 501
    assert len(packed) * 3 < len(json.dumps(payload))
    page = (pytester.path / "page.html").read_text(encoding="utf-8")
    assert page.count('<svg class="timeline"') == 1


def test_a_directory_is_a_usage_error(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.mkdir("out")
    result = pytester.runpytest("--asyncspec-html=out")
    assert_usage_error(
        result,
        f"ERROR: --asyncspec-html: '{pytester.path / 'out'}' is a directory; give the path "
        "of an HTML file to write",
    )
    pytester.makeini(VIRTUAL_INI + "asyncspec_html = out\n")
    assert_usage_error(pytester.runpytest(), "ERROR: ini key asyncspec_html: *is a directory*")


@pytest.mark.usefixtures("worktree_pythonpath")
def test_xdist_gives_the_same_page(pytester: pytest.Pytester) -> None:
    """Timelines travel on the reports, so ``-n 2`` draws the same page."""
    pytest.importorskip("xdist")
    make_project(pytester)
    serial = pytester.runpytest_subprocess("--asyncspec-trace=on", "--asyncspec-html=serial.html")
    parallel = pytester.runpytest_subprocess(
        "-n", "2", *NO_BENCHMARK, "--asyncspec-trace=on", "--asyncspec-html=parallel.html"
    )
    for result in (serial, parallel):
        assert result.ret == pytest.ExitCode.TESTS_FAILED, output_of(result)
    assert "bringing up nodes" in output_of(parallel) or "[gw" in output_of(parallel)
    page = (pytester.path / "serial.html").read_text(encoding="utf-8")
    assert page.count('<svg class="timeline"') == len(TRACED)
    assert (pytester.path / "parallel.html").read_text(encoding="utf-8") == page


# -- in a real browser ------------------------------------------------------------------


def _chromium() -> str:
    """The Chromium to drive, or skip saying what is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright not installed: pip install -e '.[test]'")
    executable = os.environ.get("ASYNCSPEC_CHROMIUM") or shutil.which("chromium")
    if not executable:
        pytest.skip(
            "no chromium executable: apt-get install chromium (or set ASYNCSPEC_CHROMIUM "
            "to a Chromium binary)"
        )
    return executable


@contextlib.contextmanager
def _browser(url: str) -> Iterator[tuple[Any, list[str]]]:
    """A headless Chromium page at ``url`` (1400 x 1000), and the problems it
    met: console errors, page errors and dialogs (the last two also
    checked here, once the page is closed)."""
    executable = _chromium()
    from playwright.sync_api import ConsoleMessage, Dialog, sync_playwright

    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    def on_dialog(dialog: Dialog) -> None:
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", on_console)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("dialog", on_dialog)
            page.goto(url, wait_until="load")
            yield page, problems
        finally:
            browser.close()
    assert not problems, problems


def test_page_in_a_headless_chromium(pytester: pytest.Pytester) -> None:
    """The page loads without console errors, lists every claim, draws one
    SVG timeline with rectangles per traced test, and shows the task named
    ``<script>alert(1)</script>`` as text without running it."""
    make_project(pytester)
    pytester.runpytest("--asyncspec-trace=on", "--asyncspec-html=report.html").assert_outcomes(
        passed=2, failed=1
    )
    with _browser((pytester.path / "report.html").as_uri()) as (page, problems):
        table = page.inner_text("table.claims")
        svgs = page.locator("svg.timeline")
        svg_count = svgs.count()
        rects = [svgs.nth(i).locator("rect").count() for i in range(svg_count)]
        names = page.locator("svg.names text.name").all_text_contents()
        scripts = page.locator("script").count()
    assert not problems, problems
    for claim_id in CLAIM_IDS:
        assert re.search(rf"^{re.escape(claim_id)}\t", table, re.MULTILINE), table
    assert "Bold <b>claim</b> & co" in table
    assert svg_count == len(TRACED)
    assert all(count > 0 for count in rects), rects
    assert any(EVIL in name for name in names), names
    assert scripts == 1  # the page's own


def test_payload_and_page_tag_the_fixtures_tasks() -> None:
    """A task a test's fixture made in its setup is named with its phase on
    the page; the body's tasks keep their plain name."""
    trace = _many_tasks(2, 1)
    payload = timeline_payload(
        trace, test="t", outcome="passed", position=0, virtual=True, phases={2: "setup"}
    )
    tasks = payload["tasks"]
    assert isinstance(tasks, list)
    assert [task["phase"] for task in tasks] == ["call", "setup", "call"]  # type: ignore[index]
    page = render_page([], None, [_entry(payload)])
    assert re.search(r'<text class="name"[^>]*>2 \w+ \[setup\]</text>', page), page
    assert not re.search(r'<text class="name"[^>]*>[13] \w+ \[', page), page
    assert "[call]" not in page


# -- a page to debug a failing run from ------------------------------------------------

#: A blocking helper an allow rule names (a virtual-clock time.sleep: loop
#: time), a real-time blocking call no rule allows (select: no loop time on
#: the virtual clock), an explored test that fails in a non-stock order, and
#: a test whose id, output and failure carry markup and quotes.
DEBUG_SUITE = {
    "slow_helpers": """
        import time

        def legacy():
            time.sleep(0.3)
        """,
    "test_gate": """
        import asyncio
        import select

        import slow_helpers

        async def test_gate():
            async def worker():
                await asyncio.sleep(0.5)
                slow_helpers.legacy()
                await asyncio.sleep(0.5)
                select.select([], [], [], 0.15)  # blocks in real time
                await asyncio.sleep(0.5)

            await asyncio.create_task(worker(), name="worker")
        """,
    "test_order": """
        import asyncio

        import pytest

        @pytest.mark.asyncspec(schedules=60)
        async def test_order():
            state = []

            async def first():
                await asyncio.sleep(0)
                state.append("first")

            async def second():
                state.append("second")

            await asyncio.gather(
                asyncio.create_task(first(), name="first"),
                asyncio.create_task(second(), name="second"),
            )
            # A callback that queues another: the second is still queued when
            # the run ends, so the explorer's clean-up runs the loop (its
            # helper task) between runs, which it skips when nothing is left.
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, state.append, "late")
            assert state == ["second", "first"]
        """,
    "test_debug": """
        import pytest

        @pytest.mark.parametrize("text", ['<script>alert(1)</script> "q"'])
        async def test_prints(text):
            print("captured", text)
            assert text == "other"

        async def test_passes():
            pass

        @pytest.mark.skip(reason="not today")
        async def test_skipped():
            pass
        """,
}
DEBUG_ARGS = (
    "--asyncspec-trace=on",
    "--asyncspec-html=report.html",
    "--asyncspec-max-blocking=0.1",
    "--asyncspec-allow-blocking=slow_helpers.py",
)


def make_debug_project(pytester: pytest.Pytester) -> str:
    """The project of DEBUG_SUITE, run: its page."""
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(**DEBUG_SUITE)
    result = pytester.runpytest(*DEBUG_ARGS)
    result.assert_outcomes(passed=1, failed=3, skipped=1)
    return (pytester.path / "report.html").read_text(encoding="utf-8")


def _section(page: str, test: str) -> str:
    """The page's section of ``test`` (its id as escaped in the page)."""
    match = re.search(
        rf'<section class="test" [^>]*data-id="{re.escape(test)}">(.*?)</section>', page, re.S
    )
    assert match is not None, test
    return match.group(1)


def test_page_counts_outcomes_and_shows_failures_and_output(pytester: pytest.Pytester) -> None:
    """Counts by outcome (each a filter button), every test's section, the
    failure text the terminal shows (the gate's report with file:line, the
    assertion) and the captured output, escaped; no Claims section, as no
    claim ran."""
    page = make_debug_project(pytester)
    assert re.search(r'data-filter="all" [^>]*>all 5</button>', page)
    assert re.search(r'data-filter="failed" [^>]*>3 failed</button>', page)
    assert re.search(r'data-filter="passed" [^>]*>1 passed</button>', page)
    assert re.search(r'data-filter="skipped" [^>]*>1 skipped</button>', page)
    assert "Claims" not in page
    gate = _section(page, "test_gate.py::test_gate")
    assert 'data-outcome="failed"' in page.split('data-id="test_gate.py::test_gate"')[0][-80:]
    assert "blocked the event loop for 0.1" in gate
    assert f"test_gate.py:{line_of(pytester.path / 'test_gate.py', 'select.select')}" in gate
    evil_id = "test_debug.py::test_prints[&lt;script&gt;alert(1)&lt;/script&gt; &quot;q&quot;]"
    prints = _section(page, evil_id)
    # The assertion as pytest words it (it shortens the long string).
    assert (
        "E       assert &#x27;&lt;script&gt;aler...&lt;/script&gt; &quot;q&quot;&#x27; == "
        "&#x27;other&#x27;"
    ) in prints
    assert "<summary>Captured stdout call</summary>" in prints
    assert "captured &lt;script&gt;alert(1)&lt;/script&gt; &quot;q&quot;" in prints
    assert "not today" in _section(page, "test_debug.py::test_skipped")
    # Failed tests start unfolded, the others folded.
    assert prints.startswith("\n<details open>")
    assert _section(page, "test_debug.py::test_passes").startswith("\n<details>")
    assert page.lower().count("<script") == 1


def test_explored_test_shows_the_failing_run_first(pytester: pytest.Pytester) -> None:
    """An explored test's timeline is cut at each run of its body: the
    failing run first, marked, with the replay command the terminal gives;
    every other run folded below under its own heading; the explorer's
    helper tasks hidden unless shown."""
    page = make_debug_project(pytester)
    section = _section(page, "test_order.py::test_order")
    replay = re.search(r"--asyncspec-replay=(\S+)", section)
    assert replay is not None
    failing, folded = section.split('<details class="runs">', 1)
    assert failing.count('<div class="run failing">') == 1
    assert re.search(
        r'<span class="badge">failing</span> the failing run: schedule \d+ of 60 failed', failing
    )
    # The run's own options follow the token, as in the terminal's command.
    assert re.search(
        r'<p class="replay">replay: <code>pytest &#x27;test_order\.py::test_order&#x27; '
        rf"--asyncspec-replay={re.escape(replay.group(1))}( --asyncspec-\S+)*</code></p>",
        failing,
    )
    assert failing.count('<svg class="timeline"') == 1
    runs = re.findall(r'<div class="run"><h4>([^<]*)</h4>', folded)
    assert "schedule 1" in runs
    assert len(runs) == folded.count('<svg class="timeline"') >= 2
    assert re.search(r"<summary>\d+ other runs of the body</summary>", folded)
    # The explorer's own task, between runs, is a hidden helper; the test's are not.
    assert re.search(r'<g class="task \w+ helper" [^>]*><title>until_quiet', section)
    assert not re.search(r'<g class="task \w+ helper" [^>]*><title>(first|second) ', section)
    assert re.search(r"\d+ helper tasks? hidden", section)


def test_blocking_steps_drawn_as_the_gate_judged_them(pytester: pytest.Pytester) -> None:
    """A step the gate failed the test for is drawn as blocking, with a mark
    on the axis where it ran, even on the virtual clock where it took no loop
    time (its tooltip gives its real duration); a step an allow rule allowed
    is drawn apart."""
    page = make_debug_project(pytester)
    section = _section(page, "test_gate.py::test_gate")
    (offending,) = re.findall(r'<rect class="blocking"[^>]*><title>([^<]*)</title>', section)
    assert "held the loop 0 s of loop time, 1" in offending
    assert re.search(r"held the loop 0 s of loop time, 1[5-9]\d(\.\d+)? ms of real time", offending)
    assert re.search(
        r"blocking over max_blocking: 0\.1\d\d s of real time at .*test_gate\.py:\d+", offending
    )
    (allowed,) = re.findall(r'<rect class="allowed"[^>]*><title>([^<]*)</title>', section)
    assert "held the loop 300 ms of loop time" in allowed
    assert "blocking allowed by slow_helpers.py: 0.300 s of virtual time" in allowed
    assert section.count('<polygon class="gate"') == 1


def _visible_tests(page: Any) -> list[str]:
    return [
        str(test)
        for test in page.eval_on_selector_all(
            "section.test",
            "sections => sections.filter(s => s.offsetParent !== null)"
            ".map(s => s.getAttribute('data-id'))",
        )
    ]


def test_debugging_in_a_headless_chromium(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """In Chromium, on the DEBUG_SUITE page: the outcome filter and the search
    box show the tests they select; the failure texts and the failing run are
    on screen; the helper toggle adds the explorer's rows; zoom widens a
    timeline and drag pans it; and the task named after a script tag stays
    text.  Screenshots (1400 x 1000) are left in the test's tmp_path."""
    make_debug_project(pytester)
    shots = tmp_path / "screenshots"
    with _browser((pytester.path / "report.html").as_uri()) as (page, problems):
        page.screenshot(path=str(shots / "1-loaded.png"))
        every = _visible_tests(page)
        page.click('button[data-filter="failed"]')
        failed = _visible_tests(page)
        shown = page.inner_text(".shown")
        page.screenshot(path=str(shots / "2-failed.png"))
        page.fill("input.search", "order")
        searched = _visible_tests(page)
        page.fill("input.search", "")
        page.click('button[data-filter="all"]')
        # The explored test: its failing run, then the folded runs and helpers.
        order = page.locator('section.test[data-id="test_order.py::test_order"]')
        order.locator("details.runs > summary").click()
        failing_run = order.locator(".run.failing").inner_text()
        rows = order.locator("svg.names g.task:visible").count()
        page.check("input.helpers")
        rows_with_helpers = order.locator("svg.names g.task:visible").count()
        order.locator(".run.failing").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "3-explored-with-helpers.png"))
        # The gate's test: zoom in twice on its timeline, then drag it.
        gate = page.locator('section.test[data-id="test_gate.py::test_gate"]')
        box = gate.locator(".timeline-box")
        box.scroll_into_view_if_needed()
        width = float(box.locator("svg.timeline").get_attribute("width") or 0)
        box.locator('button[data-zoom="in"]').click()
        box.locator('button[data-zoom="in"]').click()
        zoomed = float(box.locator("svg.timeline").get_attribute("width") or 0)
        level = box.locator(".level").inner_text()
        scroll = box.locator(".scroll")
        start = scroll.evaluate("element => element.scrollLeft")
        bounds = scroll.bounding_box()
        assert bounds is not None
        page.mouse.move(bounds["x"] + 400, bounds["y"] + 40)
        page.mouse.down()
        page.mouse.move(bounds["x"] + 100, bounds["y"] + 40)
        page.mouse.up()
        panned = scroll.evaluate("element => element.scrollLeft")
        blocking = gate.locator("rect.blocking").count()
        marks = gate.locator("polygon.gate").count()
        page.screenshot(path=str(shots / "4-gate-zoomed.png"))
        failure = gate.locator("pre.failure").inner_text()
        names = page.locator("svg.names text.name").all_text_contents()
    assert not problems, problems
    assert len(every) == 5
    assert sorted(failed) == sorted(
        test for test in every if "gate" in test or "order" in test or "prints" in test
    )
    assert shown == "3 shown"
    assert searched == ["test_order.py::test_order"]
    assert "the failing run: schedule" in failing_run
    assert "replay: pytest 'test_order.py::test_order' --asyncspec-replay=" in failing_run
    assert rows_with_helpers > rows > 0
    assert zoomed == 4 * width
    assert level == "4.0x"
    assert panned > start
    assert (blocking, marks) == (1, 1)
    assert "blocked the event loop for 0.1" in failure
    assert any("test_order" in name for name in names)
    for shot in ("1-loaded", "2-failed", "3-explored-with-helpers", "4-gate-zoomed"):
        assert (shots / f"{shot}.png").stat().st_size > 10_000


def test_five_hundred_tests_in_a_headless_chromium(pytester: pytest.Pytester) -> None:
    """A page of 500 traced tests (every 50th failing) loads and filters in
    Chromium without console errors, each test folded until opened: passed
    tests' timelines are not laid out until their section is."""
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(
        test_many="""
        import asyncio

        import pytest

        @pytest.mark.parametrize("n", range(500))
        async def test_many(n):
            async def work(i):
                await asyncio.sleep(i / 10)

            await asyncio.gather(*(asyncio.create_task(work(i)) for i in range(3)))
            assert n % 50 != 7
        """
    )
    result = pytester.runpytest("--asyncspec-trace=on", "--asyncspec-html=report.html", "-q")
    result.assert_outcomes(passed=490, failed=10)
    path = pytester.path / "report.html"
    size = path.stat().st_size
    print(f"500-test page: {size:,} bytes")
    assert size < 5_000_000
    with _browser(path.as_uri()) as (page, problems):
        sections = page.locator("section.test").count()
        open_sections = page.locator("section.test > details[open]").count()
        page.click('button[data-filter="failed"]')
        failed = _visible_tests(page)
        page.fill("input.search", "test_many[107]")
        searched = _visible_tests(page)
        shown = page.inner_text(".shown")
    assert not problems, problems
    assert sections == 500
    assert open_sections == 10
    assert failed == [f"test_many.py::test_many[{n}]" for n in range(7, 500, 50)]
    assert searched == ["test_many.py::test_many[107]"]
    assert shown == "1 shown"


def test_errors_and_xfails_are_counted_as_pytest_counts_them(pytester: pytest.Pytester) -> None:
    """A setup error is an error, with the phase named above its text; a test
    whose teardown also errs stays failed; xfail and xpass get their own
    counts."""
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(
        test_phases="""
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("setup broke")

        @pytest.fixture
        def bad_teardown():
            yield
            raise RuntimeError("teardown broke")

        def test_setup_error(broken):
            pass

        def test_fails_twice(bad_teardown):
            assert False, "call broke"

        @pytest.mark.xfail(reason="known")
        def test_xfail():
            assert False

        @pytest.mark.xfail(reason="fixed?")
        def test_xpass():
            pass
        """
    )
    result = pytester.runpytest("--asyncspec-html=report.html")
    result.assert_outcomes(failed=1, errors=2, xfailed=1, xpassed=1)
    page = (pytester.path / "report.html").read_text(encoding="utf-8")
    for outcome in ("failed", "error", "xfailed", "xpassed"):
        assert re.search(rf'data-filter="{outcome}" [^>]*>1 {outcome}</button>', page), outcome
    setup = _section(page, "test_phases.py::test_setup_error")
    assert "error at setup:\n" in setup
    assert "RuntimeError: setup broke" in setup
    twice = _section(page, "test_phases.py::test_fails_twice")
    assert 'class="outcome failed">failed</span>' in twice
    assert "AssertionError: call broke" in twice
    assert "error at teardown:\n" in twice
    assert "xfail: known" in _section(page, "test_phases.py::test_xfail")
