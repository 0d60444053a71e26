"""Claims and the spec-suite report as a user meets them.

Every test runs a small pytest session inside ``pytester`` and reads what the
user gets: the JSON file of ``--asyncspec-report`` (one entry per claim ID,
its outcome, settings and documented vs measured figures), the claims table
of the terminal summary, the same report from a pytest-xdist run, and a usage
error naming the test for every bad ``claim`` marker or report path.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import pytest
from pytester_helpers import NO_BENCHMARK, VIRTUAL_INI, assert_usage_error, output_of

from pytest_asyncspec.plugin.claims import (
    ClaimRecorder,
    format_value,
    natural_key,
)
from pytest_asyncspec.plugin.report_files import write_report

PYTHON = platform.python_version()
SECTION = "*= asyncspec claims =*"
HEADER = "ID * TITLE * OUTCOME  DOCUMENTED / MEASURED"

# Timing checks with documented figures, an untracked check, a control whose
# figures must stay out, and explicit records in a test without a clock.
SCHEMA_TESTS = '''\
from __future__ import annotations

import asyncio

import pytest

from pytest_asyncspec import LoopClock, TimingAssertionError
from pytest_asyncspec.plugin.claims import ClaimRecorder

SOURCE = "A Document"


@pytest.mark.claim("S1.2", source=SOURCE, kind="T,S")
async def test_gathered(asyncspec_clock: LoopClock) -> None:
    """Three gathered   1 s sleeps
    take 1 s in all. The rest of the docstring is not the title."""
    clock = asyncspec_clock
    clock.reset()
    await asyncio.gather(*(asyncio.sleep(1) for _ in range(3)))
    clock.assert_time(clock.now(), 1.0, what="no documented figure")
    clock.assert_times([1.0, 1.0], [1.0, 1.0], what="each", documented=[1.01, 1.02])
    clock.assert_time(clock.now(), 1.0, what="whole job", documented=1.005)


@pytest.mark.claim("S1.2", source=SOURCE, kind="T,S", control=True)
async def test_control(asyncspec_clock: LoopClock, asyncspec_claim: ClaimRecorder) -> None:
    """Negative control: the same sleeps in sequence take 3 s."""
    clock = asyncspec_clock
    clock.reset()
    for _ in range(3):
        await asyncio.sleep(1)
    clock.check(clock.now(), 1.0, what="whole job", documented=1.005)
    asyncspec_claim.record("kept out", documented=1, measured=2)
    with pytest.raises(TimingAssertionError):
        clock.assert_time(clock.now(), 1.0, what="whole job")


@pytest.mark.claim("S1.8", source=SOURCE, kind="S", title="Reducers give the documented values")
def test_reduce(asyncspec_claim: ClaimRecorder) -> None:
    """Not the title: the marker gives one."""
    total = sum([10, 20, 40])
    asyncspec_claim.record("sum", documented=70, measured=total)
    asyncspec_claim.record("reducer", documented=[0, 5000, 1850.0], measured=[0, 5000, 1850.0])
    asyncspec_claim.record("rate", documented=2.5, measured=2.5, unit="items/s")
    assert total == 70
'''

# One claim per aggregation rule.
OUTCOME_TESTS = '''\
from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from pytest_asyncspec import LoopClock


@pytest.fixture
def broken_setup() -> None:
    raise RuntimeError("setup broke")


@pytest.fixture
def broken_teardown() -> Iterator[None]:
    yield
    raise RuntimeError("teardown broke")


@pytest.mark.claim("A1")
def test_a1() -> None:
    """Passes with its control."""


@pytest.mark.claim("A1", control=True)
def test_a1_control() -> None:
    pass


@pytest.mark.claim("A2")
def test_a2() -> None:
    """A failing control fails the claim."""


@pytest.mark.claim("A2", control=True)
def test_a2_control() -> None:
    assert 1 == 2, "the control went wrong"


@pytest.mark.claim("A3")
@pytest.mark.skip(reason="needs a free-threaded build")
def test_a3() -> None:
    """Skipped everywhere."""


@pytest.mark.claim("A3", control=True)
def test_a3_control() -> None:
    pytest.skip("needs a free-threaded build")


@pytest.mark.claim("A4")
def test_a4() -> None:
    """One test passes, one skips: the claim passed."""


@pytest.mark.claim("A4")
def test_a4_skipped() -> None:
    pytest.skip("only on Windows")


@pytest.mark.claim("A5")
def test_a5_fails() -> None:
    """A setup error wins over a failure."""
    raise ValueError("wrong value")


@pytest.mark.claim("A5")
def test_a5_setup_error(broken_setup: None) -> None:
    pass


@pytest.mark.claim("A6")
def test_a6(broken_teardown: None) -> None:
    """A teardown error makes the claim an error."""


@pytest.mark.claim("A7")
@pytest.mark.xfail(reason="known bug", strict=True)
def test_a7() -> None:
    """An expected failure counts as skipped."""
    raise AssertionError("still broken")


@pytest.mark.claim("A8")
async def test_a8(asyncspec_clock: LoopClock) -> None:
    """A failed timing check shows both figures."""
    asyncspec_clock.reset()
    for _ in range(3):
        await asyncio.sleep(1)
    asyncspec_clock.assert_time(asyncspec_clock.now(), 1.0, what="whole job", documented=1.004)


@pytest.mark.claim("A9")
def test_a9() -> None:
    """pytest.fail without a traceback."""
    pytest.fail("custom reason\\nsecond line", pytrace=False)
'''

EXPECTED_OUTCOMES = {
    "A1": ("passed", None),
    "A2": ("failed", "AssertionError: the control went wrong"),
    "A3": ("skipped", "needs a free-threaded build"),
    "A4": ("passed", None),
    "A5": ("error", "RuntimeError: setup broke"),
    "A6": ("error", "RuntimeError: teardown broke"),
    "A7": ("skipped", "xfail: known bug"),
    "A8": (
        "failed",
        "TimingAssertionError: whole job: expected 1.0 s, measured 3.0 s (virtual clock, "
        "exact to 1 ns); the source documents 1.004 s",
    ),
    "A9": ("failed", "Failed: custom reason"),
}


def make_project(pytester: pytest.Pytester, *ini_lines: str) -> None:
    pytester.makeini(VIRTUAL_INI + "".join(f"{line}\n" for line in ini_lines))


def read_report(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text())
    assert isinstance(document, dict)
    return document


def claims_by_id(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {claim["id"]: claim for claim in document["claims"]}


def section_lines(result: pytest.RunResult) -> list[str]:
    """The lines of the claims section, up to pytest's closing line."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if "= asyncspec claims =" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(("=", "asyncspec:")))
    return lines[start + 1 : end]


# -- the JSON report ---------------------------------------------------------------


def test_report_schema_and_values(pytester: pytest.Pytester) -> None:
    """One entry per claim ID with its metadata, outcome, settings and figures:
    timing checks given ``documented=`` and explicit records count, checks
    without a documented figure and everything a control records do not;
    the headline figure is the last one recorded."""
    make_project(pytester)
    pytester.makepyfile(test_schema=SCHEMA_TESTS)
    result = pytester.runpytest("--asyncspec-report=report.json")
    result.assert_outcomes(passed=3)
    document = read_report(pytester.path / "report.json")
    gathered = "test_schema.py::test_gathered"
    control = "test_schema.py::test_control"
    reduce = "test_schema.py::test_reduce"

    def timing(what: str, documented: float) -> dict[str, Any]:
        return {
            "what": what,
            "documented": documented,
            "measured": 1.0,
            "unit": "s",
            "test": gathered,
        }

    def record(what: str, value: Any, measured: Any, unit: str | None = None) -> dict[str, Any]:
        return {
            "what": what,
            "documented": value,
            "measured": measured,
            "unit": unit,
            "test": reduce,
        }

    assert document == {
        "schema": 1,
        "claims": [
            {
                "id": "S1.2",
                "title": "Three gathered 1 s sleeps take 1 s in all",
                "source": "A Document",
                "kind": ["T", "S"],
                "outcome": "passed",
                "clock": "virtual",
                "loop": "asyncio",
                "python": PYTHON,
                "documented": 1.005,
                "measured": 1.0,
                "unit": "s",
                "figures": [
                    timing("each[0]", 1.01),
                    timing("each[1]", 1.02),
                    timing("whole job", 1.005),
                ],
                "reason": None,
                "tests": [gathered, control],
                "controls": [control],
            },
            {
                "id": "S1.8",
                "title": "Reducers give the documented values",
                "source": "A Document",
                "kind": ["S"],
                "outcome": "passed",
                "clock": "virtual",
                "loop": "asyncio",
                "python": PYTHON,
                "documented": 2.5,
                "measured": 2.5,
                "unit": "items/s",
                "figures": [
                    record("sum", 70, 70),
                    record("reducer", [0, 5000, 1850.0], [0, 5000, 1850.0]),
                    record("rate", 2.5, 2.5, "items/s"),
                ],
                "reason": None,
                "tests": [reduce],
                "controls": [],
            },
        ],
        "summary": {
            "passed": 2,
            "failed": 0,
            "skipped": 0,
            "error": 0,
            "total": 2,
            "tests": 3,
            "controls": 1,
            "python": PYTHON,
            "clock": "virtual",
            "loop": "asyncio",
            "sources": ["A Document"],
        },
    }


def test_aggregation_rules_and_reasons(pytester: pytest.Pytester) -> None:
    """error if any test of the claim errored in setup or teardown, failed if
    any failed (a control included), skipped only if all skipped, else passed;
    ``reason`` is the first line of the failure or the skip reason.  The file
    is written although tests failed, and the summary counts claims."""
    make_project(pytester)
    pytester.makepyfile(test_outcomes=OUTCOME_TESTS)
    result = pytester.runpytest("--asyncspec-report=out/report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    document = read_report(pytester.path / "out" / "report.json")
    claims = claims_by_id(document)
    assert {key: (c["outcome"], c["reason"]) for key, c in claims.items()} == EXPECTED_OUTCOMES
    assert claims["A8"]["documented"] == 1.004
    assert claims["A8"]["measured"] == 3.0
    assert claims["A1"]["title"] == "Passes with its control"
    assert claims["A9"]["title"] == "pytest.fail without a traceback"
    assert claims["A3"]["tests"] == [
        "test_outcomes.py::test_a3",
        "test_outcomes.py::test_a3_control",
    ]
    summary = document["summary"]
    assert (summary["passed"], summary["failed"], summary["skipped"], summary["error"]) == (
        2,
        3,
        2,
        2,
    )
    assert summary["total"] == 9
    assert summary["tests"] == 14
    assert summary["controls"] == 3
    assert summary["sources"] == []
    # Reasons of claims that did not pass follow the table, one line each.
    result.stdout.fnmatch_lines(
        [
            SECTION,
            "A2 failed: AssertionError: the control went wrong",
            "A3 skipped: needs a free-threaded build",
            "A5 error: RuntimeError: setup broke",
            "A6 error: RuntimeError: teardown broke",
            "A7 skipped: xfail: known bug",
            "A8 failed: TimingAssertionError: whole job: expected 1.0 s, measured 3.0 s*",
            "A9 failed: Failed: custom reason",
            "9 claims: 2 passed, 3 failed, 2 skipped, 2 error",
            f"asyncspec: claims report written to {pytester.path / 'out' / 'report.json'}",
        ]
    )


def test_title_falls_back_to_the_control_then_to_the_test_name(
    pytester: pytest.Pytester,
) -> None:
    """A claim's title comes from ``title=``, else from its first non-control
    test with a docstring, else from a control's docstring, else the name of
    its first test; a docstring's first sentence ends at ``.``, ``!`` or
    ``?`` followed by a space, so ``2.5 s`` does not end it."""
    make_project(pytester)
    pytester.makepyfile(
        test_titles='''
        import pytest

        @pytest.mark.claim("T1")
        def test_t1():
            pass

        @pytest.mark.claim("T1", control=True)
        def test_t1_control():
            """The control says 2.5 s is right! Rest."""

        @pytest.mark.claim("T2")
        def test_t2_plain():
            pass

        @pytest.mark.claim("T3")
        def test_t3_first():
            """Sleeps of 2.5 s overlap"""

        @pytest.mark.claim("T3", title="Explicit title wins")
        def test_t3_second():
            """Not this one."""
        '''
    )
    pytester.runpytest("--asyncspec-report=report.json").assert_outcomes(passed=5)
    titles = {c["id"]: c["title"] for c in read_report(pytester.path / "report.json")["claims"]}
    assert titles == {
        "T1": "The control says 2.5 s is right!",
        "T2": "test_t2_plain",
        "T3": "Explicit title wins",
    }


def test_claims_are_sorted_naturally(pytester: pytest.Pytester) -> None:
    """Claim IDs sort in natural order: numbers by value (S0.2 before S0.10),
    letters alphabetically (so E-rows come before S-rows)."""
    make_project(pytester)
    ids = ["S0.10", "S1.1", "E10", "S0.2", "E2", "S0.1"]
    pytester.makepyfile(
        test_order="import pytest\n"
        + "".join(
            f"\n\n@pytest.mark.claim({claim_id!r})\ndef test_{i}():\n    pass\n"
            for i, claim_id in enumerate(ids)
        )
    )
    result = pytester.runpytest("--asyncspec-report=report.json")
    result.assert_outcomes(passed=len(ids))
    order = [c["id"] for c in read_report(pytester.path / "report.json")["claims"]]
    assert order == ["E2", "E10", "S0.1", "S0.2", "S0.10", "S1.1"]
    assert sorted(ids, key=natural_key) == order


def test_claim_tests_with_different_settings_list_them(pytester: pytest.Pytester) -> None:
    """When the tests of one claim ran with different clocks, ``clock`` lists
    them; a setting they share stays a single value."""
    make_project(pytester)
    pytester.makepyfile(
        test_clocks="""
        import pytest

        @pytest.mark.claim("C1")
        async def test_virtual():
            pass

        @pytest.mark.claim("C1")
        @pytest.mark.asyncspec(clock="real")
        async def test_real():
            pass
        """
    )
    pytester.runpytest("--asyncspec-report=report.json").assert_outcomes(passed=2)
    document = read_report(pytester.path / "report.json")
    (claim,) = document["claims"]
    assert claim["clock"] == ["real", "virtual"]
    assert claim["loop"] == "asyncio"
    assert document["summary"]["clock"] == ["real", "virtual"]


def test_ini_key_and_flag_precedence(pytester: pytest.Pytester) -> None:
    """``asyncspec_report`` in the ini file writes the report (relative to the
    invocation directory); ``--asyncspec-report`` wins over it."""
    make_project(pytester, "asyncspec_report = from_ini.json")
    pytester.makepyfile(
        test_one="import pytest\n\n@pytest.mark.claim('X1')\ndef test_x():\n    pass\n"
    )
    pytester.runpytest().assert_outcomes(passed=1)
    assert [c["id"] for c in read_report(pytester.path / "from_ini.json")["claims"]] == ["X1"]
    (pytester.path / "from_ini.json").unlink()
    pytester.runpytest("--asyncspec-report=from_flag.json").assert_outcomes(passed=1)
    assert (pytester.path / "from_flag.json").exists()
    assert not (pytester.path / "from_ini.json").exists()


def test_report_replaces_an_old_file_and_leaves_no_temporary(pytester: pytest.Pytester) -> None:
    """An existing report is replaced whole; no temporary file stays beside it."""
    make_project(pytester)
    pytester.makepyfile(
        test_one="import pytest\n\n@pytest.mark.claim('X1')\ndef test_x():\n    pass\n"
    )
    (pytester.path / "reports").mkdir()
    target = pytester.path / "reports" / "report.json"
    target.write_text("old contents that are longer than nothing " * 100)
    pytester.runpytest(f"--asyncspec-report={target}").assert_outcomes(passed=1)
    assert [c["id"] for c in read_report(target)["claims"]] == ["X1"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]


def test_atomic_write_keeps_the_old_file_when_the_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the rename never happens, the old report is intact and the
    temporary file is removed."""
    target = tmp_path / "report.json"
    target.write_text("old")

    def fail(source: object, destination: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        write_report(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_run_without_claims_writes_an_empty_report_and_no_table(
    pytester: pytest.Pytester,
) -> None:
    """Without claim-tagged tests there is no table, and the report lists no claim."""
    make_project(pytester)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest("--asyncspec-report=report.json")
    result.assert_outcomes(passed=1)
    assert "asyncspec claims" not in output_of(result)
    document = read_report(pytester.path / "report.json")
    assert document["claims"] == []
    assert document["summary"]["total"] == 0


# -- the asyncspec_claim fixture ----------------------------------------------------


def test_recording_fixture_needs_a_claim_marker(pytester: pytest.Pytester) -> None:
    """``asyncspec_claim`` in a test without a claim marker errors at setup,
    saying what to do."""
    make_project(pytester)
    pytester.makepyfile(
        test_untagged="def test_untagged(asyncspec_claim):\n    asyncspec_claim.record('x')\n"
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_untagged.py::test_untagged: the asyncspec_claim fixture records figures of "
            "a claim, and this test has no @pytest.mark.claim marker*"
        ]
    )


def test_record_rejects_values_the_json_cannot_hold() -> None:
    """A value that JSON cannot hold is refused when it is recorded, naming it."""
    recorder = ClaimRecorder(claim_id="X1")
    with pytest.raises(TypeError, match=r"record\('sum'\): documented=\{1, 2\} cannot go"):
        recorder.record("sum", documented={1, 2}, measured=3)
    with pytest.raises(TypeError, match="measured=nan"):
        recorder.record("sum", documented=1, measured=float("nan"))
    with pytest.raises(TypeError, match="what must be a non-empty string"):
        recorder.record("  ", documented=1, measured=1)
    assert recorder.figures == []
    figure = recorder.record("pair", documented=(1, 2), measured=[1, 2])
    assert (figure.documented, figure.measured) == ([1, 2], [1, 2])


# -- the terminal table ---------------------------------------------------------------


def test_claims_table_fits_100_columns(pytester: pytest.Pytester) -> None:
    """The table lists ID, title (cut to fit), outcome and the headline figure
    as ``documented / measured``; every line fits 100 columns.  It is shown
    without ``--asyncspec-report`` too, and then names no file."""
    make_project(pytester)
    pytester.makepyfile(
        test_table='''
        import asyncio

        import pytest

        @pytest.mark.claim("S0.3", kind="T,O")
        async def test_staggered(asyncspec_clock):
            """Awaiting 2.5 s and then blocking 2.5 s: all five calls start at 0, but the
            blocking halves queue up behind each other, so the calls finish 2.5 s apart."""
            asyncspec_clock.reset()
            await asyncio.sleep(15)
            asyncspec_clock.assert_time(asyncspec_clock.now(), 15.0, documented=15.02414)

        @pytest.mark.claim("S0.10")
        def test_short():
            """Short title."""
            assert False, "no"

        @pytest.mark.claim("S1.8")
        def test_count(asyncspec_claim):
            """Counts."""
            asyncspec_claim.record("sum", documented=70, measured=70)
        '''
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            SECTION,
            HEADER,
            "S0.3   Awaiting 2.5 s and then blocking 2.5 s: all five calls sta...  "
            "passed   15.02 s / 15.0 s",
            "S0.10  Short title * failed",
            "S1.8   Counts * passed   70 / 70",
            "S0.10 failed: AssertionError: no",
            "3 claims: 2 passed, 1 failed",
        ]
    )
    lines = section_lines(result)
    assert len(lines) == 6
    assert all(len(line) <= 100 for line in lines), lines
    assert "claims report written" not in output_of(result)


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (15.02414, "s", "15.02 s"),
        (15.0, "s", "15.0 s"),
        (5.00751, "s", "5.008 s"),
        (0.304, "s", "0.304 s"),
        (70, None, "70"),
        (None, "s", "-"),
        ([0, 5000, 1850.0], None, "[0, 5000, 1850.0]"),
        ("ok", None, "ok"),
    ],
)
def test_figures_are_compact(value: Any, unit: str | None, text: str) -> None:
    """Figures in the table have four significant digits and their unit."""
    assert format_value(value, unit) == text


# -- pytest-xdist -----------------------------------------------------------------------


@pytest.mark.usefixtures("worktree_pythonpath")
def test_xdist_gives_the_same_report_as_a_serial_run(pytester: pytest.Pytester) -> None:
    """``-n 2`` aggregates the workers' claim data on the controller: the same
    claims, outcomes, reasons and figures as a serial run (on the virtual
    clock the measured figures are exact, so the whole JSON is equal), and the
    controller prints the table."""
    pytest.importorskip("xdist")
    make_project(pytester)
    pytester.makepyfile(test_schema=SCHEMA_TESTS, test_outcomes=OUTCOME_TESTS)
    serial = pytester.runpytest_subprocess("--asyncspec-report=serial.json")
    parallel = pytester.runpytest_subprocess(
        "-n", "2", *NO_BENCHMARK, "--asyncspec-report=parallel.json"
    )
    for result in (serial, parallel):
        assert result.ret == pytest.ExitCode.TESTS_FAILED, output_of(result)
        result.stdout.fnmatch_lines(
            [SECTION, HEADER, "11 claims: 4 passed, 3 failed, 2 skipped, 2 error"]
        )
    assert "[gw" in output_of(parallel) or "bringing up nodes" in output_of(parallel)
    serial_report = read_report(pytester.path / "serial.json")
    parallel_report = read_report(pytester.path / "parallel.json")
    assert len(serial_report["claims"]) == 11
    assert claims_by_id(serial_report)["S1.2"]["documented"] == 1.005
    assert parallel_report == serial_report


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        pytest.param(
            "claim()",
            "takes exactly one positional argument, the claim ID, got 0 (); give the ID first*",
            id="no-id",
        ),
        pytest.param(
            "claim('')",
            "the claim ID must be a non-empty string without spaces, got ''; give the "
            "inventory ID (e.g. @pytest.mark.claim('S0.3', *))",
            id="empty-id",
        ),
        pytest.param(
            "claim(3)",
            "the claim ID must be a non-empty string without spaces, got 3; *",
            id="number-id",
        ),
        pytest.param(
            "claim('S0 1')",
            "the claim ID must be a non-empty string without spaces, got 'S0 1'; *",
            id="id-with-space",
        ),
        pytest.param(
            "claim('S0.1', 'S0.2')",
            "takes exactly one positional argument, the claim ID, got 2 ('S0.1', 'S0.2')*",
            id="two-ids",
        ),
        pytest.param(
            "claim('S0.1', sorce='A Document')",
            "unknown keyword 'sorce'; did you mean 'source'? accepted keywords are source, kind, "
            "title, control",
            id="unknown-keyword",
        ),
        pytest.param(
            "claim('S0.1', kind='T,X')",
            "invalid kind 'T,X'; give comma-separated letters from T, O, S, V, R *e.g. kind='T,O'",
            id="bad-kind-letter",
        ),
        pytest.param(
            "claim('S0.1', kind='TO')",
            "invalid kind 'TO'; give comma-separated letters *",
            id="kind-without-commas",
        ),
        pytest.param(
            "claim('S0.1', kind='T,T')",
            "kind 'T,T' repeats T; give each letter once",
            id="repeated-kind",
        ),
        pytest.param(
            "claim('S0.1', control='yes')",
            "control must be True or False, got 'yes'; write control=True on a negative "
            "control, or leave it out",
            id="control-not-bool",
        ),
        pytest.param(
            "claim('S0.1', source='')",
            "source must be a non-empty string, got ''; give a source text or leave the "
            "keyword out",
            id="empty-source",
        ),
    ],
)
def test_bad_claim_marker_is_a_usage_error(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    """Every malformed claim marker stops the run before any test, naming the
    test, what was expected and what to do; no report file is written."""
    make_project(pytester)
    pytester.makepyfile(
        test_bad=f"import pytest\n\n@pytest.mark.{marker}\ndef test_it():\n    pass\n"
    )
    result = pytester.runpytest("--asyncspec-report=report.json")
    assert_usage_error(result, f"ERROR: test_bad.py::test_it: @pytest.mark.claim: {message}")
    assert not (pytester.path / "report.json").exists()


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(
            "import pytest\n\n@pytest.mark.claim('S0.1')\n@pytest.mark.claim('S0.2')\n"
            "def test_it():\n    pass\n",
            id="two-markers",
        ),
        pytest.param(
            "import pytest\n\npytestmark = pytest.mark.claim('S0.1')\n\n"
            "@pytest.mark.claim('S0.1', kind='T')\ndef test_it():\n    pass\n",
            id="module-and-function",
        ),
    ],
)
def test_disagreeing_claim_markers_are_a_usage_error(
    pytester: pytest.Pytester, source: str
) -> None:
    """Several claim markers on one test (its own, its class's, its module's)
    must agree: a test belongs to one claim."""
    make_project(pytester)
    pytester.makepyfile(test_bad=source)
    result = pytester.runpytest()
    assert_usage_error(
        result,
        "ERROR: test_bad.py::test_it: 2 @pytest.mark.claim markers disagree "
        "(claim('S0.*') and claim('S0.*)); a test belongs to one claim: keep one claim "
        "marker (check the class and module markers too)",
    )


def test_agreeing_repeated_markers_are_fine(pytester: pytest.Pytester) -> None:
    """The same claim marker on a module and its test is one claim."""
    make_project(pytester)
    pytester.makepyfile(
        test_same="import pytest\n\npytestmark = pytest.mark.claim('S0.1')\n\n"
        "@pytest.mark.claim('S0.1')\ndef test_it():\n    pass\n"
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_tests_of_one_claim_must_agree_on_its_metadata(pytester: pytest.Pytester) -> None:
    """Two tests of one claim ID that give it different sources are a usage
    error naming both; a keyword left out never conflicts."""
    make_project(pytester)
    pytester.makepyfile(
        test_meta="""
        import pytest

        @pytest.mark.claim("S0.1", source="One")
        def test_first():
            pass

        @pytest.mark.claim("S0.1", control=True)
        def test_silent():
            pass

        @pytest.mark.claim("S0.1", source="Other")
        def test_second():
            pass
        """
    )
    result = pytester.runpytest()
    assert_usage_error(
        result,
        "ERROR: test_meta.py::test_second: @pytest.mark.claim('S0.1'): source='Other' "
        "disagrees with source='One' of test_meta.py::test_first (same claim ID); give every "
        "test of claim S0.1 the same source, or leave it out on all but one",
    )


def test_report_path_that_is_a_directory_is_a_usage_error(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makepyfile(test_a="def test_a():\n    pass\n")
    (pytester.path / "adir").mkdir()
    result = pytester.runpytest("--asyncspec-report=adir")
    assert_usage_error(
        result,
        f"ERROR: --asyncspec-report: '{pytester.path / 'adir'}' is a directory; give the path "
        "of a JSON file to write",
    )


def test_report_path_under_a_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """A report path whose directory cannot be created is refused before any
    test runs; from the ini file it names the ini key."""
    make_project(pytester, "asyncspec_report = afile/report.json")
    pytester.makepyfile(test_a="def test_a():\n    pass\n")
    (pytester.path / "afile").write_text("not a directory")
    result = pytester.runpytest()
    assert_usage_error(
        result,
        f"ERROR: ini key asyncspec_report: '{pytester.path / 'afile'}' is a file, not a "
        "directory; give a path in a directory you can write to",
    )
    result = pytester.runpytest(f"--asyncspec-report={pytester.path / 'afile' / 'r.json'}")
    assert_usage_error(result, "ERROR: --asyncspec-report: '*afile' is a file, not a directory*")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="permission bits do not stop root from writing",
)
def test_report_in_a_read_only_directory_is_a_usage_error(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makepyfile(test_a="def test_a():\n    pass\n")
    target = pytester.path / "locked"
    target.mkdir()
    target.chmod(0o500)
    try:
        result = pytester.runpytest(f"--asyncspec-report={target / 'r.json'}")
    finally:
        target.chmod(0o700)
    assert_usage_error(
        result, f"ERROR: --asyncspec-report: cannot write in '{target}' (Permission denied)*"
    )


@pytest.mark.parametrize("option", ["--asyncspec-report", "--asyncspec-html"])
def test_a_report_that_cannot_be_written_at_the_end_fails_the_run(
    pytester: pytest.Pytester, option: str
) -> None:
    """The directory passes the start-up check, then is a file when the run
    ends: the run says so and does not exit 0 (a CI job must not pass without
    the file it publishes)."""
    make_project(pytester)
    out = pytester.mkdir("out")
    pytester.makepyfile(
        test_a="import shutil\n\n\ndef test_a():\n"
        f"    shutil.rmtree({str(out)!r})\n"
        f"    open({str(out)!r}, 'w').close()\n"
    )
    result = pytester.runpytest(f"{option}={out / 'report'}")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines([f"asyncspec: could not write the * report {out / 'report'}: *"])


def test_reports_are_readable_by_others_as_plain_files_are(pytester: pytest.Pytester) -> None:
    """Written through a private temporary file, a report still gets the mode a
    plain open() gives (0644 under umask 022), so CI artifact servers can read it."""
    make_project(pytester)
    pytester.makepyfile(test_a="def test_a():\n    pass\n")
    previous = os.umask(0o022)
    try:
        result = pytester.runpytest("--asyncspec-report=r.json", "--asyncspec-html=r.html")
    finally:
        os.umask(previous)
    assert result.ret == pytest.ExitCode.OK
    for name in ("r.json", "r.html"):
        assert (pytester.path / name).stat().st_mode & 0o777 == 0o644, name


def test_a_bad_claim_marker_under_xdist_shows_its_message(pytester: pytest.Pytester) -> None:
    """Under -n 2 a usage error found while the workers collect is one test's
    error with the message, not an INTERNALERROR from pytest-xdist."""
    make_project(pytester)
    pytester.makepyfile(
        test_bad="import pytest\n\n\n@pytest.mark.claim('A1', kind='T,X')\n"
        "def test_x():\n    pass\n\n\ndef test_y():\n    pass\n"
    )
    result = pytester.runpytest_subprocess("-n", "2", *NO_BENCHMARK, "-p", "no:randomly")
    text = output_of(result)
    assert "INTERNALERROR" not in text
    result.assert_outcomes(errors=1)
    # The error section's line (the short summary is clipped to the terminal width).
    result.stdout.fnmatch_lines(
        ["usage error, no test was run: test_bad.py::test_x: *invalid kind 'T,X'*"]
    )
