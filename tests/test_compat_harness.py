"""The compatibility harness's own logic (``python -m compat``), on small fake inputs.

Nothing here downloads or runs a library: junit XML, progress logs and suite
runs are written by the tests themselves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from compat import comparison, report, running
from compat.environment import Environment
from compat.known_differences import BLOCKING_LIBRARY as BLOCKING, KNOWN_DIFFERENCES, Known
from compat.libraries import LIBRARIES, Library
from compat.modes import BASELINE, MODES, PLUGIN_ENTRY_POINT
from compat.outcomes import Outcome, node_id, read_junit
from harness_support.processes import Finished

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="6">
 <testcase classname="tests.test_a" name="test_ok" file="tests/test_a.py" line="1" time="0.010"/>
 <testcase classname="tests.test_a.TestB" name="test_p[1-x]" file="tests/test_a.py" time="0.5">
  <failure message="assert 1 == 2">long text</failure></testcase>
 <testcase classname="tests.test_a" name="test_down" file="tests/test_a.py" time="0.1">
  <error message="failed on teardown">trace</error></testcase>
 <testcase classname="tests.test_a" name="test_skip" file="tests/test_a.py" time="0">
  <skipped type="pytest.skip" message="no redis">skip</skipped></testcase>
 <testcase classname="tests.test_a" name="test_xf" file="tests/test_a.py" time="0">
  <skipped type="pytest.xfail" message="known bug"/></testcase>
 <testcase classname="tests.ut.test_c.TestD.TestE" name="test_n" file="tests/ut/test_c.py"/>
</testsuite></testsuites>
"""


def test_junit_outcomes_are_read_per_node_id(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT, encoding="utf-8")
    results = read_junit(path)
    assert {test: result.outcome for test, result in results.items()} == {
        "tests/test_a.py::test_ok": "passed",
        "tests/test_a.py::TestB::test_p[1-x]": "failed",
        "tests/test_a.py::test_down": "error",
        "tests/test_a.py::test_skip": "skipped",
        "tests/test_a.py::test_xf": "xfailed",
        "tests/ut/test_c.py::TestD::TestE::test_n": "passed",
    }
    failed = results["tests/test_a.py::TestB::test_p[1-x]"]
    assert failed.seconds == 0.5
    assert "assert 1 == 2" in failed.detail
    assert "long text" in failed.detail


def test_a_name_with_dots_is_not_taken_for_classes() -> None:
    assert node_id("t/test_x.py", "t.test_x", "test_y[1.5]") == "t/test_x.py::test_y[1.5]"


def _results(**outcomes: str) -> dict[str, Outcome]:
    return {
        test: Outcome(outcome, detail=f"{test} {outcome}") for test, outcome in outcomes.items()
    }


def test_only_changed_outcomes_are_differences_and_fail_equals_error() -> None:
    baseline = _results(a="passed", b="passed", c="failed", d="skipped", e="passed")
    mine = _results(a="passed", b="failed", c="error", d="passed", f="passed")
    found = comparison.compare("lib", "gate", baseline, mine, known={})
    assert [(d.test, d.baseline, d.outcome) for d in found] == [
        ("b", "passed", "failed"),
        ("d", "skipped", "passed"),
        ("e", "passed", "missing"),
        ("f", "missing", "passed"),
    ]
    assert found[0].kind == "fails only in this mode"
    assert found[0].detail == "b failed"
    assert found[1].kind == "outcome changed"
    assert all(d.known is None for d in found)


def test_a_listed_difference_carries_its_cause_for_its_mode_only() -> None:
    known = {("lib", "b", "gate"): Known(BLOCKING, "reads a file on the loop")}
    baseline = _results(b="passed")
    broken = _results(b="failed")
    listed = comparison.compare("lib", "gate", baseline, broken, known=known)
    assert listed[0].known == known[("lib", "b", "gate")]
    other_mode = comparison.compare("lib", "trace", baseline, broken, known=known)
    assert other_mode[0].known is None


def test_a_listed_difference_that_did_not_occur_is_stale() -> None:
    known = {
        ("lib", "b", "gate"): Known(BLOCKING, "occurs"),
        ("lib", "c", "gate"): Known(BLOCKING, "fixed since"),
        ("lib", "c", "explore"): Known(BLOCKING, "mode not run"),
        ("other", "c", "gate"): Known(BLOCKING, "library not run"),
        ("lib", "d", "gate"): Known(BLOCKING, "near the threshold", intermittent=True),
    }
    found = comparison.compare("lib", "gate", _results(b="passed"), _results(b="failed"), known)
    assert comparison.stale(found, ["lib"], ["none", "gate"], known) == [("lib", "c", "gate")]


def test_a_difference_not_repeated_by_a_second_run_is_flaky() -> None:
    def difference() -> comparison.Difference:
        found = comparison.compare("lib", "gate", _results(b="passed"), _results(b="failed"), {})
        return found[0]

    repeated = difference()
    comparison.confirm(repeated, Outcome("passed"), Outcome("error"))
    assert not repeated.flaky
    passed_again = difference()
    comparison.confirm(passed_again, Outcome("passed"), Outcome("passed"))
    assert passed_again.flaky
    baseline_failed_too = difference()
    comparison.confirm(baseline_failed_too, Outcome("failed"), Outcome("failed"))
    assert baseline_failed_too.flaky


def test_the_table_has_a_cell_per_library_and_mode_with_counts_and_wall_time() -> None:
    library = Library("lib", "1.0", "a thing")
    runs = {
        ("lib", "none"): running.SuiteRun(
            "lib", "none", _results(a="passed", b="passed", c="skipped"), 12.34
        ),
        ("lib", "gate"): running.SuiteRun(
            "lib", "gate", _results(a="passed", b="failed", c="hang"), 2.0, problem="x"
        ),
    }
    found = comparison.compare(
        "lib", "gate", runs[("lib", "none")].results, runs[("lib", "gate")].results, {}
    )
    found[1].flaky = True
    text = report.table([library], ["none", "gate", "trace"], runs, found)
    assert text.splitlines() == [
        "| library | none | gate | trace |",
        "|---|---|---|---|",
        "| lib 1.0 | 2/0/1, 0 diff, 12.3 s | 1/1/1, 1 diff (+1 flaky), 2.0 s (!) | not run |",
    ]


def _environment(tmp_path: Path) -> Environment:
    return Environment(tmp_path / "venv" / "bin" / "python", {"lib": tmp_path / "lib"})


def test_each_mode_adds_only_its_settings_and_the_same_deselections() -> None:
    library = Library(
        "lib",
        "1.0",
        "a thing",
        deselect={"tests/test_a.py::test_net": "needs the network"},
        ini={"asyncio_mode": "auto: the sdist lacks it"},
    )
    env = Environment(Path("/venv/bin/python"), {"lib": Path("/src/lib")})
    none = running.pytest_command(env, library, BASELINE, Path("/scratch"))
    assert ["-p", f"no:{PLUGIN_ENTRY_POINT}"] == none[none.index(f"no:{PLUGIN_ENTRY_POINT}") - 1 :][
        :2
    ]
    assert none[none.index("no:cacheprovider") - 1] == "-p"
    assert none[none.index("--deselect") : none.index("--deselect") + 2] == [
        "--deselect",
        "tests/test_a.py::test_net",
    ]
    assert "asyncio_mode=auto" in none
    virtual = running.pytest_command(env, library, "virtual", Path("/scratch"))
    assert "asyncspec_clock=virtual" in virtual
    assert f"no:{PLUGIN_ENTRY_POINT}" not in virtual
    # Apart from each mode's own settings, every mode runs the same command.
    common = running.pytest_command(env, library, "installed", Path("/scratch"))
    for mode, settings in MODES.items():
        command = running.pytest_command(env, library, mode, Path("/scratch"))
        at = command.index("compat.progress") + 1
        assert tuple(command[at : at + len(settings)]) == settings
        assert command[:at] + command[at + len(settings) :] == common


def test_a_second_run_of_differing_tests_runs_only_those() -> None:
    library = Library("lib", "1.0", "a thing", paths=("tests/ut", "tests/acceptance"))
    env = Environment(Path("/venv/bin/python"), {"lib": Path("/src/lib")})
    whole = running.pytest_command(env, library, "gate", Path("/scratch"))
    assert whole[3:5] == ["tests/ut", "tests/acceptance"]
    again = running.pytest_command(env, library, "gate", Path("/scratch"), ["t.py::a"])
    assert again[3:5] == ["t.py::a", "-p"]
    assert "tests/ut" not in again


def test_a_suite_whose_addopts_use_the_cache_keeps_it_in_scratch() -> None:
    library = Library("lib", "1.0", "a thing", needs_cacheprovider=True)
    env = Environment(Path("/venv/bin/python"), {"lib": Path("/src/lib")})
    command = running.pytest_command(env, library, "gate", Path("/scratch"))
    assert "no:cacheprovider" not in command
    assert "cache_dir=/scratch/pytest-cache" in command


def test_every_library_is_pinned_and_every_deselection_has_its_reason() -> None:
    assert len(LIBRARIES) >= 6
    for library in LIBRARIES:
        assert library.version.count(".") >= 1
        assert all(reason.strip() for reason in library.deselect.values())
        assert all(":" in reason for reason in library.ini.values())


class _FakeSuite:
    """Stands in for the pytest process: the first run hangs in ``hung``."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []
        self.skipped: list[str] = []

    def __call__(
        self, command: list[str], *, cwd: str, env: dict[str, str], limit: float
    ) -> Finished:
        self.commands.append(command)
        self.skipped = Path(env["COMPAT_SKIP"]).read_text("utf-8").split()
        log = Path(env["COMPAT_PROGRESS_LOG"])
        if len(self.commands) == 1:
            log.write_text("start t.py::ok\nend t.py::ok\nstart t.py::hung\n", encoding="utf-8")
            Path(env["COMPAT_HANG_STACKS"]).write_text("Timeout (0:02:00)!\nstack", "utf-8")
            return Finished(1, "", "", timed_out=False)
        junit = Path(command[command.index("--junitxml") + 1])
        junit.write_text(
            '<testsuites><testsuite><testcase classname="t" name="ok" file="t.py"/>'
            "</testsuite></testsuites>",
            encoding="utf-8",
        )
        return Finished(0, "", "", timed_out=False)


def test_a_hung_test_is_reported_as_a_hang_and_the_suite_runs_again_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _FakeSuite()
    monkeypatch.setattr(running, "run_bounded", fake)
    library = Library("lib", "1.0", "a thing")
    run = running.run_suite(_environment(tmp_path), library, "virtual", running.Limits(5, 60, 2))
    assert run.results["t.py::ok"].outcome == "passed"
    assert run.results["t.py::hung"].outcome == "hang"
    assert "stack" in run.results["t.py::hung"].detail
    assert run.problem == ""
    # The second run leaves out exactly the hung test (not tests whose ids it
    # begins, as --deselect's prefix match would).
    assert fake.skipped == ["t.py::hung"]


def test_a_run_that_dies_outside_any_test_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dies(command: list[str], *, cwd: str, env: dict[str, str], limit: float) -> Finished:
        return Finished(4, "", "ERROR: usage", timed_out=False)

    monkeypatch.setattr(running, "run_bounded", dies)
    library = Library("lib", "1.0", "a thing")
    run = running.run_suite(_environment(tmp_path), library, "gate", running.Limits(5, 60, 2))
    assert run.results == {}
    assert "status 4" in run.problem
    assert "ERROR: usage" in run.problem


def test_every_known_difference_is_in_the_docs_with_its_cause() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "compat.md").read_text("utf-8")
    for (library, test, mode), known in KNOWN_DIFFERENCES.items():
        row = f"| {library} | `{test}` |"
        assert row in page, f"docs/compat.md does not list {library} {test} ({mode})"
        assert known.cause in page


@pytest.mark.usefixtures("worktree_pythonpath")  # this checkout's compat
def test_the_progress_plugin_logs_each_test_and_leaves_out_exactly_the_listed_ones(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_server="def test_serve(): pass\ndef test_serve_run(): pass\ndef test_other(): pass\n"
    )
    skip = pytester.path / "skip.txt"
    skip.write_text("test_server.py::test_serve\n", encoding="utf-8")
    log = pytester.path / "progress.log"
    monkeypatch.setenv("COMPAT_SKIP", str(skip))
    monkeypatch.setenv("COMPAT_PROGRESS_LOG", str(log))
    result = pytester.runpytest_subprocess("-p", "compat.progress", "-p", "no:asyncspec")
    result.assert_outcomes(passed=2, deselected=1)
    assert log.read_text("utf-8").splitlines() == [
        "start test_server.py::test_serve_run",
        "end test_server.py::test_serve_run",
        "start test_server.py::test_other",
        "end test_server.py::test_other",
    ]
