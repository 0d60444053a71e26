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
import itertools
import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pytester_helpers import NO_BENCHMARK, VIRTUAL_INI, assert_usage_error, output_of

import pytest_asyncspec
from pytest_asyncspec import report_fields
from pytest_asyncspec.claims import JsonDict
from pytest_asyncspec.clock import VirtualClockLoop
from pytest_asyncspec.html_report import (
    MAX_STEPS,
    MAX_TASKS,
    page_pieces,
    render_page,
    timeline_payload,
    unpack_timeline,
)
from pytest_asyncspec.trace import Trace, Tracer

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


@pytest.fixture
def worktree_pythonpath(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subprocess runs import this checkout of the plugin, not another install."""
    root = str(Path(pytest_asyncspec.__file__).resolve().parent.parent)
    existing = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", root if not existing else f"{root}{os.pathsep}{existing}")


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
    page = render_page(claims, None, timelines)
    assert "<script" not in page.lower()
    assert "<img" not in page
    assert "<u>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    # Attribute values are quoted and escaped too (the SVG's aria-label).
    assert 'aria-label="timeline of test_x.py::test[&quot;&lt;script&gt;' in page
    # An outcome string is never used as a class name unchecked.
    assert 'class="outcome other"' in page


def test_the_page_is_drawn_one_timeline_at_a_time() -> None:
    """A page of thousands of timelines is tens of megabytes: it is written
    in pieces, each timeline unpacked only when its piece is drawn."""
    unpacked: list[int] = []

    entries = [
        _timeline(f"test_x.py::test_{n}", [_task(1, "main", [[0.0, 0.0, "DONE"]])])
        for n in range(3)
    ]

    class Counting(Sequence[JsonDict]):
        """Notes which entries were read, as the packed payloads unpack."""

        def __len__(self) -> int:
            return len(entries)

        def __getitem__(self, index: Any) -> Any:
            unpacked.append(index)
            return entries[index]

    pieces = page_pieces([], None, Counting())
    head = "".join(itertools.islice(pieces, 5))
    assert "<h2>Timelines</h2>" in head
    assert unpacked == []
    first = next(pieces)
    assert "test_x.py::test_0" in first
    assert unpacked == [0]
    rest = list(pieces)
    assert [piece.count("<svg") for piece in [first, *rest]] == [1, 1, 1, 0]
    assert head + first + "".join(rest) == render_page([], None, entries)


def test_page_is_self_contained() -> None:
    """No external resources and no script: a policy forbids both."""
    page = render_page(
        [_claim("S1", "t")], None, [_timeline("t.py::t", [_task(1, "a", [[0, 1, "DONE"]])])]
    )
    assert "default-src 'none'" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<svg" in page
    assert "<rect" in page
    assert "<title>" in page


def test_empty_report() -> None:
    page = render_page([], None, [])
    assert "No claim-tagged tests ran." in page
    assert "No traced tests." in page
    assert "<svg" not in page
    assert "<table" not in page


def test_a_traced_test_without_steps_gets_a_note_not_a_picture() -> None:
    page = render_page([], None, [_timeline("t.py::t", [_task(1, "idle", [], "pending")])])
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
    page = render_page([], None, [payload])
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
        assert f"<code>{test}</code></h3>" in page
    assert "test_sync</code></h3>" not in page  # synchronous: nothing was traced
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
    assert "test_traced</code>" in page
    assert "sleeper" in page
    assert "test_untraced" not in page


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


def test_page_in_a_headless_chromium(pytester: pytest.Pytester) -> None:
    """The page loads without console errors, lists every claim, draws one
    SVG timeline with rectangles per traced test, and shows the task named
    ``<script>alert(1)</script>`` as text without running it."""
    executable = _chromium()
    from playwright.sync_api import ConsoleMessage, Dialog, sync_playwright

    make_project(pytester)
    pytester.runpytest("--asyncspec-trace=on", "--asyncspec-html=report.html").assert_outcomes(
        passed=2, failed=1
    )
    url = (pytester.path / "report.html").as_uri()
    console: list[ConsoleMessage] = []
    errors: list[str] = []
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page()
            page.on("console", lambda message: console.append(message))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("dialog", on_dialog)
            page.goto(url, wait_until="load")
            table = page.inner_text("table.claims")
            svgs = page.locator("svg.timeline")
            svg_count = svgs.count()
            rects = [svgs.nth(i).locator("rect").count() for i in range(svg_count)]
            names = page.locator("svg.timeline text.name").all_text_contents()
            scripts = page.locator("script").count()
            version = browser.version
        finally:
            browser.close()
    assert not errors, errors
    assert not [m.text for m in console if m.type == "error"], [m.text for m in console]
    for claim_id in CLAIM_IDS:
        assert re.search(rf"^{re.escape(claim_id)}\t", table, re.MULTILINE), table
    assert "Bold <b>claim</b> & co" in table
    assert svg_count == len(TRACED), version
    assert all(count > 0 for count in rects), rects
    assert any(EVIL in name for name in names), names
    assert scripts == 0
    assert not dialogs


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
    page = render_page([], None, [payload])
    assert re.search(r'<text class="name"[^>]*>2 \w+ \[setup\]</text>', page), page
    assert not re.search(r'<text class="name"[^>]*>[13] \w+ \[', page), page
    assert "[call]" not in page
