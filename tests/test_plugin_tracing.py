"""Tracing as a user meets it: timelines, trace files, hang and leak reports.

Every test runs a small pytest session inside ``pytester`` and checks what
the user gets: the ``asyncspec timeline`` and ``asyncspec pending tasks``
report sections, the Trace Event JSON files in ``--asyncspec-trace-dir``,
leak warnings and failures, the ``asyncspec_trace`` fixture, the usage error
for a bad value, and that a crash inside the tracer never changes a test's
own outcome.  Tests stopped by pytest-timeout run in a subprocess, so the
inner SIGALRM cannot disturb the outer run's own timeout.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from pytester_helpers import NO_BENCHMARK, STRICT_INI, assert_usage_error, line_of, output_of

TIMELINE = "asyncspec timeline"
PENDING = "asyncspec pending tasks"
INTERNAL = "asyncspec internal error (the test's own outcome stands)"
INTERNAL_TEARDOWN = "asyncspec internal error at teardown (the test's own outcome stands)"
SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.trace\.json")

# A failing test with two named tasks: "quick" never holds the loop, "slow"
# holds it for 2 s (virtual) or 0.05 s (real) after a first await.
TWO_TASKS = """\
from __future__ import annotations

import asyncio
import time

import pytest

from pytest_asyncspec import VirtualClockLoop


async def quick() -> None:
    await asyncio.sleep(0)


async def slow(hold: float) -> None:
    await asyncio.sleep(hold / 2)
    time.sleep(hold)


{decorator}async def test_two_tasks() -> None:
    asyncio.current_task().set_name("body")
    hold = 2.0 if isinstance(asyncio.get_running_loop(), VirtualClockLoop) else 0.05
    await asyncio.gather(
        asyncio.create_task(quick(), name="quick"),
        asyncio.create_task(slow(hold), name="slow"),
    )
    assert 1 == 2, "the test's own failure"


{decorator}async def test_passes() -> None:
    await asyncio.create_task(quick(), name="quick")
"""


def make_project(pytester: pytest.Pytester, *ini_lines: str) -> None:
    pytester.makeini(STRICT_INI + "".join(f"{line}\n" for line in ini_lines))


_HEADING = re.compile(r"^[-_=]{3,} .* [-_=]{3,}$|^[_=]{10,}$")


def section(result: pytest.RunResult, title: str, occurrence: int = 0) -> list[str]:
    """The lines of the ``occurrence``-th report section called ``title``."""
    lines = result.outlines
    starts = [
        index
        for index, line in enumerate(lines)
        if re.fullmatch(rf"-+ {re.escape(title)} -+", line)
    ]
    assert len(starts) > occurrence, f"no section {title!r} #{occurrence}:\n{output_of(result)}"
    body: list[str] = []
    for line in lines[starts[occurrence] + 1 :]:
        if _HEADING.match(line):
            break
        body.append(line)
    return body


def section_count(result: pytest.RunResult, title: str) -> int:
    return sum(1 for line in result.outlines if re.fullmatch(rf"-+ {re.escape(title)} -+", line))


def trace_files(directory: Path) -> dict[str, dict[str, Any]]:
    """Every trace file in ``directory``, by the test id it records."""
    documents: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.iterdir()):
        assert path.is_file(), path
        assert SAFE_FILE_NAME.fullmatch(path.name), path.name
        document = json.loads(path.read_text(encoding="ascii"))
        assert isinstance(document["traceEvents"], list)
        assert document["traceEvents"], path
        documents[document["otherData"]["test_id"]] = document
    return documents


def thread_names(document: dict[str, Any]) -> list[str]:
    return [
        event["args"]["name"]
        for event in document["traceEvents"]
        if event.get("ph") == "M" and event.get("name") == "thread_name"
    ]


def process_name(document: dict[str, Any]) -> str:
    (name,) = (
        event["args"]["name"]
        for event in document["traceEvents"]
        if event.get("ph") == "M" and event.get("name") == "process_name"
    )
    return str(name)


# -- the ASCII timeline ---------------------------------------------------------


@pytest.mark.parametrize(
    ("decorator", "args", "clock"),
    [
        pytest.param("", ("--asyncspec-trace=on",), "real", id="flag-real-clock"),
        pytest.param("@pytest.mark.asyncspec(trace=True)\n", (), "real", id="marker-real-clock"),
        pytest.param(
            "@pytest.mark.asyncspec(clock='virtual', trace=True)\n",
            (),
            "virtual",
            id="marker-virtual-clock",
        ),
        pytest.param("", ("-o", "asyncspec_trace=on"), "real", id="ini-real-clock"),
    ],
)
def test_failing_traced_test_shows_a_timeline_with_a_row_per_task(
    pytester: pytest.Pytester, decorator: str, args: tuple[str, ...], clock: str
) -> None:
    """A failing traced test keeps its own failure and gains an ``asyncspec
    timeline`` section: one row per task, named, in creation order, and the
    longest step (the slow task's blocking stretch) labelled.  The passing
    traced test gets no timeline, even with ``-rP``."""
    make_project(pytester)
    pytester.makepyfile(test_traced=TWO_TASKS.format(decorator=decorator))
    result = pytester.runpytest("-rP", *args)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["E   *AssertionError: the test's own failure"])
    assert section_count(result, TIMELINE) == 1
    assert PENDING not in output_of(result)
    timeline = section(result, TIMELINE)
    rows = [line for line in timeline if re.match(r"^\d \S+ +\S", line)]
    assert [row.split()[1] for row in rows] == ["body", "quick", "slow"], timeline
    assert all(len(line) <= 100 for line in timeline), timeline
    assert timeline[0].startswith("asyncspec timeline: 3 tasks, ")
    longest = [line for line in timeline if line.startswith("longest step: ")]
    if clock == "virtual":
        assert longest == ["longest step: slow (task 3) 2 s at 1 s"], timeline
        assert "loop time 0 s to 3 s" in timeline[0]
    else:
        assert len(longest) == 1, timeline
        assert re.fullmatch(r"longest step: slow \(task 3\) [0-9.]+ ms at [0-9.]+ s", longest[0])


def test_passing_and_untraced_tests_show_no_timeline(pytester: pytest.Pytester) -> None:
    """Without tracing a failing async test shows no timeline; with tracing a
    passing one shows none either (even with ``-rA``)."""
    make_project(pytester)
    pytester.makepyfile(test_traced=TWO_TASKS.format(decorator=""))
    untraced = pytester.runpytest("-rA")
    untraced.assert_outcomes(failed=1, passed=1)
    assert TIMELINE not in output_of(untraced)
    traced_pass = pytester.runpytest("-rA", "--asyncspec-trace=on", "-k", "passes")
    traced_pass.assert_outcomes(passed=1)
    assert TIMELINE not in output_of(traced_pass)


def test_timeline_stays_within_100_columns_for_many_long_named_tasks(
    pytester: pytest.Pytester,
) -> None:
    """Fifty tasks with 150-character names still give a timeline whose
    every line fits in 100 columns, with clipped names and a count of the
    rows left out."""
    make_project(pytester, "asyncspec_clock = virtual", "asyncspec_trace = on")
    pytester.makepyfile(
        test_wide="""
        from __future__ import annotations

        import asyncio


        async def work(delay: float) -> None:
            await asyncio.sleep(delay)


        async def test_wide() -> None:
            await asyncio.gather(
                *(
                    asyncio.create_task(work(i * 0.37), name="n" * 150 + str(i))
                    for i in range(50)
                )
            )
            assert False
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    timeline = section(result, TIMELINE)
    assert max(len(line) for line in timeline) <= 100, timeline
    assert any(line.startswith("... 11 more tasks not shown") for line in timeline), timeline
    assert any("nnn..." in line for line in timeline)


# -- Trace Event files ----------------------------------------------------------

TRACE_DIR_SUITE = """\
from __future__ import annotations

import asyncio

import pytest


async def helper(name: str) -> None:
    await asyncio.sleep(0.01)


async def test_passes() -> None:
    await asyncio.create_task(helper("p"), name="child-of-pass")


async def test_fails() -> None:
    await asyncio.create_task(helper("f"), name="child-of-fail")
    assert 1 == 2


async def test_errors() -> None:
    await asyncio.create_task(helper("e"), name="child-of-error")
    raise RuntimeError("boom")


def test_sync() -> None:
    pass
"""


def without_real_times(document: dict[str, Any]) -> dict[str, Any]:
    """The document minus what the wall clock decides (real step durations)."""
    events = []
    for event in document["traceEvents"]:
        event = dict(event)
        if isinstance(event.get("args"), dict):
            event["args"] = {k: v for k, v in event["args"].items() if k != "real_us"}
        events.append(event)
    return {**document, "traceEvents": events}


def test_trace_files_are_the_same_under_xdist(pytester: pytest.Pytester) -> None:
    """On the virtual clock, ``-n 2`` writes the same trace files as a serial
    run: same names, same tracks (unnamed tasks by coroutine, not by asyncio's
    process-wide ``Task-N``), same times; only the real durations of steps,
    measured by the wall clock, differ."""
    pytest.importorskip("xdist")
    # On the virtual clock every time in the file is exact, so equal.
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makepyfile(test_suite=TRACE_DIR_SUITE)
    # More async tests than workers, so a worker runs several and its Task-N
    # counter differs from the serial run's.
    pytester.makepyfile(
        test_more="""
        import asyncio

        async def test_gathers():
            await asyncio.gather(*(asyncio.sleep(0.1 * n) for n in range(4)))
        """
    )
    serial = pytester.runpytest_subprocess("--asyncspec-trace-dir=serial")
    parallel = pytester.runpytest_subprocess(
        "-n", "2", *NO_BENCHMARK, "--asyncspec-trace-dir=parallel"
    )
    for result, directory in ((serial, "serial"), (parallel, "parallel")):
        result.assert_outcomes(passed=3, failed=2)
        # The controller counts the files its workers wrote.
        result.stdout.fnmatch_lines([f"asyncspec: 4 trace files written to *{directory}"])
    one, two = trace_files(pytester.path / "serial"), trace_files(pytester.path / "parallel")
    assert set(one) == set(two)
    assert len(one) == 4  # the async tests
    for nodeid in one:
        assert without_real_times(one[nodeid]) == without_real_times(two[nodeid]), nodeid


@pytest.mark.parametrize("where", ["flag-absolute", "flag-relative", "ini"])
def test_trace_dir_gets_one_file_per_traced_test(pytester: pytest.Pytester, where: str) -> None:
    """``--asyncspec-trace-dir`` (or the ini key; a relative path is taken
    from the invocation directory) gets one JSON file per async test --
    passed, failed and erroring alike, none for the sync test.  Each loads
    with ``json``, has ``traceEvents``, names the process after the test id
    and has a ``thread_name`` for the test's own task and for its child."""
    directory = pytester.path / "traces"
    ini_lines = ["asyncspec_trace_dir = traces"] if where == "ini" else []
    make_project(pytester, *ini_lines)
    pytester.makepyfile(test_suite=TRACE_DIR_SUITE)
    args = {
        "flag-absolute": (f"--asyncspec-trace-dir={directory}",),
        "flag-relative": ("--asyncspec-trace-dir", "traces"),
        "ini": (),
    }[where]
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=2, failed=2)
    documents = trace_files(directory)
    expected = {
        "test_suite.py::test_passes": "child-of-pass",
        "test_suite.py::test_fails": "child-of-fail",
        "test_suite.py::test_errors": "child-of-error",
    }
    assert set(documents) == set(expected)
    for nodeid, child in expected.items():
        document = documents[nodeid]
        assert process_name(document) == nodeid
        names = thread_names(document)
        assert child in names, names
        # The test's own task has no name of its own: its coroutine's is shown.
        assert nodeid.split("::")[-1] in names, names
        assert document["otherData"]["producer"] == "pytest-asyncspec"
        phases = {event["ph"] for event in document["traceEvents"]}
        assert {"M", "X", "i"} <= phases


def test_trace_files_use_the_test_task_name_and_record_the_outcome(
    pytester: pytest.Pytester,
) -> None:
    """The test's own task track carries the name the test gave it, and the
    test task's "ended" event records that it raised, with the error."""
    make_project(pytester)
    pytester.makepyfile(
        test_named="""
        import asyncio


        async def test_named() -> None:
            asyncio.current_task().set_name("the-test-body")
            await asyncio.sleep(0)
            raise ValueError("wrong value")
        """
    )
    result = pytester.runpytest("--asyncspec-trace-dir=traces")
    result.assert_outcomes(failed=1)
    (document,) = trace_files(pytester.path / "traces").values()
    assert thread_names(document) == ["the-test-body"]
    (ended,) = (event for event in document["traceEvents"] if event.get("name") == "ended")
    assert ended["args"]["outcome"] == "raised"
    assert "wrong value" in ended["args"]["error"]


def test_parametrized_ids_give_safe_distinct_file_names_inside_the_directory(
    pytester: pytest.Pytester,
) -> None:
    """Test ids containing ``/``, ``..``, ``[``, ``]`` and ``::`` give one
    file each, all directly inside the trace directory with plain names, and
    nothing is written anywhere else."""
    make_project(pytester)
    pytester.makepyfile(
        test_params="""
        import pytest

        IDS = ["a/b", "../../escape", "x::y", "[z]", "a_b", "plain"]


        @pytest.mark.parametrize("value", IDS, ids=IDS)
        async def test_it(value: str) -> None:
            pass
        """
    )
    directory = pytester.path / "deep" / "traces"
    result = pytester.runpytest(f"--asyncspec-trace-dir={directory}")
    result.assert_outcomes(passed=6)
    documents = trace_files(directory)
    ids = ["a/b", "../../escape", "x::y", "[z]", "a_b", "plain"]
    assert set(documents) == {f"test_params.py::test_it[{each}]" for each in ids}
    assert len(list(directory.iterdir())) == 6
    # The directory is two levels down, so a "../.." escape would land in the
    # project (or just above it).
    everywhere = {path.resolve() for path in pytester.path.rglob("*.trace.json")}
    assert everywhere == {path.resolve() for path in directory.iterdir()}
    assert not list(pytester.path.parent.glob("*escape*"))


def test_trace_files_get_the_usual_permissions(pytester: pytest.Pytester) -> None:
    """A trace file is created with the permissions any other file gets under
    the current umask (like pytest's own JUnit XML report)."""
    make_project(pytester)
    pytester.makepyfile(test_one="async def test_one():\n    pass\n")
    result = pytester.runpytest("--asyncspec-trace-dir=traces", "--junitxml=report.xml")
    result.assert_outcomes(passed=1)
    umask = os.umask(0)
    os.umask(umask)
    (path,) = (pytester.path / "traces").iterdir()
    expected = 0o666 & ~umask
    assert stat.S_IMODE((pytester.path / "report.xml").stat().st_mode) == expected
    assert stat.S_IMODE(path.stat().st_mode) == expected


HANGING_TEST = """\
from __future__ import annotations

import asyncio

import pytest


async def waiter() -> None:
    await asyncio.sleep(30)  # waiter waits


@pytest.mark.timeout(1, method="signal")
async def test_hangs() -> None:
    task = asyncio.create_task(waiter(), name="sleeper")
    await task  # test waits
"""


def run_hanging_test(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, Path]:
    """Run a test that pytest-timeout stops after 1 s (in a subprocess)."""
    make_project(pytester)
    path = pytester.makepyfile(test_hang=HANGING_TEST)
    result = pytester.runpytest_subprocess(*args, timeout=60)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Failed: Timeout (>1.0s) from pytest-timeout*"])
    assert result.duration < 20
    return result, path


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGALRM"), reason="needs SIGALRM")
def test_trace_file_is_written_for_a_test_stopped_by_pytest_timeout(
    pytester: pytest.Pytester,
) -> None:
    """A test stopped by pytest-timeout's signal method still gets its trace
    file, with a track for the task it was waiting on."""
    directory = pytester.path / "traces"
    run_hanging_test(pytester, f"--asyncspec-trace-dir={directory}")
    documents = trace_files(directory)
    assert list(documents) == ["test_hang.py::test_hangs"]
    assert "sleeper" in thread_names(documents["test_hang.py::test_hangs"])


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGALRM"), reason="needs SIGALRM")
def test_hang_report_lists_pending_tasks_and_where_each_is_suspended(
    pytester: pytest.Pytester,
) -> None:
    """When pytest-timeout stops a traced test, its report has an ``asyncspec
    pending tasks`` section naming each pending task with the line where it
    is suspended and what it awaits."""
    result, path = run_hanging_test(pytester, "--asyncspec-trace=on")
    report = section(result, PENDING)
    text = "\n".join(report)
    waits = line_of(path, "# waiter waits")
    awaits = line_of(path, "# test waits")
    assert "2 pending task(s):" in text, text
    pytest.LineMatcher(report).fnmatch_lines(
        [
            "*task 'Task-*' (test_hangs) [[]label 1, created at *] awaits task 'sleeper' (waiter)",
            f"      at */test_hang.py:{awaits} in test_hangs",
            "*task 'sleeper' (waiter) [[]label 2, created at */test_hang.py:*] "
            "awaits asyncio sleep()*",
            f"      at */test_hang.py:{waits} in waiter",
        ]
    )


# -- leaks ----------------------------------------------------------------------

LEAKY_TESTS = """\
from __future__ import annotations

import asyncio


async def forever() -> None:
    await asyncio.sleep(3600)


async def forgotten() -> None:
    pass


async def test_leaks_a_task() -> None:
    asyncio.create_task(forever(), name="leaker")  # task made here
    await asyncio.sleep(0)


async def test_forgets_an_await() -> None:
    forgotten()  # coroutine made here
    await asyncio.sleep(0)


async def test_tidy() -> None:
    task = asyncio.create_task(forever(), name="tidy")
    await asyncio.sleep(0)
    task.cancel()
"""

# Leak warnings are shown, every other warning is still an error.
SHOW_LEAK_WARNINGS = ("-W", "default::pytest_asyncspec.plugin.hooks.AsyncspecLeakWarning")


def test_leaks_warn_names_the_task_and_the_coroutine_with_their_lines(
    pytester: pytest.Pytester,
) -> None:
    """``asyncspec_leaks = warn``: the leaky tests pass with one
    ``AsyncspecLeakWarning`` each, naming the pending task and the line that
    created it, and the never-awaited coroutine with its origin line; the
    tidy test has no warning."""
    make_project(pytester, "asyncspec_leaks = warn")
    path = pytester.makepyfile(test_leaky=LEAKY_TESTS)
    result = pytester.runpytest(*SHOW_LEAK_WARNINGS)
    result.assert_outcomes(passed=3, warnings=2)
    task_line = line_of(path, "# task made here")
    coroutine_line = line_of(path, "# coroutine made here")
    result.stdout.fnmatch_lines(
        [
            "test_leaky.py::test_leaks_a_task",
            "*AsyncspecLeakWarning: 1 task(s) still pending after the test's teardown*",
            "*task 'leaker' (forever) [[]label 2] is still pending; it awaits asyncio sleep()*",
            f"*created at */test_leaky.py:{task_line} (loop time *) during the test",
            "test_leaky.py::test_forgets_an_await",
            "*AsyncspecLeakWarning: 1 coroutine(s) created but never awaited*",
            "*coroutine 'forgotten' was never awaited; "
            f"created at */test_leaky.py:{coroutine_line}",
        ]
    )
    assert "'tidy'" not in output_of(result)


def test_leaks_error_fails_the_leaky_tests_naming_task_and_coroutine(
    pytester: pytest.Pytester,
) -> None:
    """``--asyncspec-leaks=error``: each leaky test has an error at teardown
    (leaks are judged once its fixtures are torn down) with a message naming
    what leaked and where it was created; the tidy test passes clean."""
    make_project(pytester)
    path = pytester.makepyfile(test_leaky=LEAKY_TESTS)
    result = pytester.runpytest("--asyncspec-leaks=error", "-rA")
    result.assert_outcomes(passed=3, errors=2)
    task_line = line_of(path, "# task made here")
    coroutine_line = line_of(path, "# coroutine made here")
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at teardown of test_leaks_a_task _*",
            "1 task(s) still pending after the test's teardown (await them, cancel them, "
            "or use a TaskGroup):",
            "task 'leaker' (forever) [[]label 2] is still pending*",
            f"  created at */test_leaky.py:{task_line} (loop time *",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at teardown of test_forgets_an_await _*",
            "1 coroutine(s) created but never awaited*",
            f"coroutine 'forgotten' was never awaited; created at */test_leaky.py:{coroutine_line}",
        ]
    )
    result.stdout.fnmatch_lines(["PASSED test_leaky.py::test_tidy"])
    assert "ERROR test_leaky.py::test_tidy" not in output_of(result)


def test_leaks_marker_overrides_the_ini(pytester: pytest.Pytester) -> None:
    """``@pytest.mark.asyncspec(leaks='error')`` gives a leaking test an error
    in a suite whose ini says ``off``; the unmarked test is not checked."""
    make_project(pytester, "asyncspec_leaks = off")
    pytester.makepyfile(
        test_marked="""
        import asyncio

        import pytest


        async def forever() -> None:
            await asyncio.sleep(3600)


        @pytest.mark.asyncspec(leaks="error")
        async def test_strict() -> None:
            asyncio.create_task(forever(), name="strict-leak")
            await asyncio.sleep(0)


        async def test_lenient() -> None:
            asyncio.create_task(forever(), name="lenient-leak")
            await asyncio.sleep(0)
        """
    )
    result = pytester.runpytest("-rA")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["ERROR test_marked.py::test_strict - Failed: 1 task(s)*"])
    assert "lenient-leak" not in output_of(result)


def test_leaks_off_reports_nothing(pytester: pytest.Pytester) -> None:
    """``asyncspec_leaks = off`` (and the default): a leaked task is not
    reported at all -- no warning even under ``filterwarnings = error``."""
    for ini_lines in ((), ("asyncspec_leaks = off",)):
        make_project(pytester, *ini_lines)
        pytester.makepyfile(
            test_leaky="""
            import asyncio


            async def forever() -> None:
                await asyncio.sleep(3600)


            async def test_leaks_a_task() -> None:
                asyncio.create_task(forever(), name="leaker")
                await asyncio.sleep(0)
            """
        )
        result = pytester.runpytest("-rA")
        result.assert_outcomes(passed=1)
        assert "leaker" not in output_of(result)
        assert "AsyncspecLeakWarning" not in output_of(result)


# -- async fixtures: traced from their setup to their teardown -------------------

FIXTURE_PHASES = """\
from __future__ import annotations

import asyncio

import pytest


async def tick() -> None:
    await asyncio.sleep(0.5)


@pytest.fixture
async def service(asyncspec_trace):
    worker = asyncio.create_task(tick(), name="worker")
    yield
    await worker
    await asyncio.create_task(tick(), name="closer")
    assert asyncspec_trace.phase_of("worker") == "setup"
    assert asyncspec_trace.phase_of("closer") == "teardown"
    print("teardown checked")


async def test_body(service, asyncspec_trace) -> None:
    await asyncio.create_task(tick(), name="helper")
    assert asyncspec_trace.phase_of("worker") == "setup"
    assert asyncspec_trace.phase_of("helper") == "call"
    assert asyncspec_trace.finish_of("worker") == 0.5
    assert {1} == {2}, "the test's own failure"
"""


def test_fixture_tasks_are_traced_with_their_phase(pytester: pytest.Pytester) -> None:
    """The worker an async fixture starts is in the trace with phase
    ``setup``, a task the body starts with ``call`` and one the fixture's
    teardown starts with ``teardown``; the failure's timeline tags the
    fixture's tasks, and the trace file holds all three.  (The trace used to
    start at the test's call: the worker was missing from it.)"""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makepyfile(test_phases=FIXTURE_PHASES)
    result = pytester.runpytest("-rA", "-s", "--asyncspec-trace-dir=traces")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: the test's own failure"])
    timeline = "\n".join(section(result, TIMELINE))
    assert re.search(r"\d worker \[setup\] +\|", timeline), timeline
    assert re.search(r"\d helper +\|", timeline), timeline
    result.stdout.fnmatch_lines(["*teardown checked*"])
    assert "ERROR" not in output_of(result)
    (trace_file,) = (pytester.path / "traces").iterdir()
    names = {
        event["args"]["name"]
        for event in json.loads(trace_file.read_text())["traceEvents"]
        if event.get("name") == "thread_name"
    }
    assert {"worker", "helper", "closer"} <= {name.split(" ")[-1] for name in names}, names


WIDER_FIXTURE = """\
from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def serve() -> None:
    await asyncio.sleep(3600)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server():
    task = asyncio.create_task(serve(), name="server")
    yield task
    task.cancel()


async def test_first(server, asyncspec_trace) -> None:
    assert asyncspec_trace.phase_of("server") == "setup"


async def test_second(server, asyncspec_trace) -> None:
    assert "server" not in {task.name for task in asyncspec_trace.tasks.values()}


async def test_leaks_its_own(server) -> None:
    asyncio.create_task(serve(), name="own-leak")
    await asyncio.sleep(0)
"""


def test_module_scoped_fixture_tasks_are_traced_where_they_start_and_not_leaks(
    pytester: pytest.Pytester,
) -> None:
    """A module-scoped async fixture's task is traced in the test whose setup
    started it (phase ``setup``), is not in later tests' traces, and is never
    a test's leak although it outlives each test; a test's own leak on the
    shared loop is still an error at its teardown."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makepyfile(test_wider=WIDER_FIXTURE)
    result = pytester.runpytest("-rA", "--asyncspec-leaks=error")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at teardown of test_leaks_its_own _*",
            "1 task(s) still pending after the test's teardown*",
            "task 'own-leak' (serve) * is still pending*",
        ]
    )
    assert "'server'" not in output_of(result)


# -- leaks of an aiohttp app: judged once the fixtures are torn down -------------

AIOHTTP_APP = """\
from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


@pytest.fixture
async def client():
    app = web.Application()
    app.router.add_get("/", hello)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


@pytest.mark.parametrize("attempt", range(3))
async def test_clean(client, attempt: int) -> None:
    response = await client.get("/")
    assert await response.text() == "hello"


async def forever() -> None:
    await asyncio.sleep(3600)


async def test_leaks_a_task(client) -> None:
    asyncio.create_task(forever(), name="real-leak")  # the real leak
    response = await client.get("/")
    assert response.status == 200
"""


def test_aiohttp_keep_alive_handlers_are_not_leaks_and_a_real_leak_is(
    pytester: pytest.Pytester,
) -> None:
    """With ``asyncspec_leaks = error`` suite-wide, the clean tests of an
    aiohttp app (a real server on 127.0.0.1, aiohttp's own test client) pass:
    the keep-alive handler task (``RequestHandler.start``) ends when the
    client fixture closes the server, which is torn down before leaks are
    judged.  The one real leak is an error at teardown naming its line.
    (Leaks used to be judged when the test body returned: every clean test
    failed on the handler task.)"""
    make_project(pytester, "asyncspec_leaks = error")
    path = pytester.makepyfile(test_app=AIOHTTP_APP)
    result = pytester.runpytest("-rA")
    result.assert_outcomes(passed=4, errors=1)
    line = line_of(path, "# the real leak")
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at teardown of test_leaks_a_task _*",
            "1 task(s) still pending after the test's teardown*",
            "task 'real-leak' (forever) * is still pending*",
            f"  created at */test_app.py:{line} (loop time *) during the test",
        ]
    )
    assert "RequestHandler" not in output_of(result)


# -- the leak allow-list ---------------------------------------------------------

# A "framework" that leaves a task and a coroutine behind on purpose.
FRAMEWORK = """\
from __future__ import annotations

import asyncio


class Pool:
    async def _keepalive(self) -> None:
        await asyncio.sleep(3600)

    def open(self) -> None:
        self.task = asyncio.create_task(self._keepalive(), name="keepalive")


async def _flush() -> None:
    pass


def forget() -> None:
    _flush()
"""

ALLOWED_LEAKS = """\
from __future__ import annotations

import asyncio

import pytest

import framework


async def forever() -> None:
    await asyncio.sleep(3600)


async def test_pool() -> None:
    framework.Pool().open()
    await asyncio.sleep(0)


async def test_forgets() -> None:
    framework.forget()
    await asyncio.sleep(0)


@pytest.mark.allow_leaks("test_allowed.forever", "test_allowed.never_used")
async def test_marked() -> None:
    asyncio.create_task(forever(), name="marked")
    await asyncio.sleep(0)


async def test_real_leak() -> None:
    asyncio.create_task(forever(), name="real-leak")
    await asyncio.sleep(0)
"""


@pytest.mark.parametrize(
    ("ini_lines", "args"),
    [
        pytest.param(
            ("asyncspec_allow_leaks =\n    framework.Pool._keepalive\n    framework._flush",),
            (),
            id="ini-qualnames",
        ),
        pytest.param((), ("--asyncspec-allow-leaks=framework.*",), id="flag-module-pattern"),
        pytest.param((), ("--asyncspec-allow-leaks=framework.py",), id="flag-file-pattern"),
    ],
)
def test_allowed_leaks_pass_and_the_others_are_still_errors(
    pytester: pytest.Pytester, ini_lines: tuple[str, ...], args: tuple[str, ...]
) -> None:
    """Tasks and coroutines named by the leak allow-list (by coroutine
    qualname from the ini, by module or file pattern from the command line,
    by the test's ``allow_leaks`` marker) are not leaks; the real leak still
    is; rules that never matched are listed at the end of the run, as the
    blocking allow-list's are."""
    make_project(pytester, "asyncspec_leaks = error", *ini_lines)
    pytester.makepyfile(framework=FRAMEWORK, test_allowed=ALLOWED_LEAKS)
    result = pytester.runpytest(
        "-rA", "-W", "ignore::RuntimeWarning", "--asyncspec-allow-leaks=nothing.matches.*", *args
    )
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        ["ERROR test_allowed.py::test_real_leak - Failed: 1 task(s) still pending*"]
    )
    result.stdout.fnmatch_lines(
        [
            "*= asyncspec: leak allow-list rules that never fired =*",
            "nothing.matches.*  (no leaked task or coroutine matched it; remove it?)",
            "test_allowed.py::test_marked: @pytest.mark.allow_leaks('test_allowed.never_used')"
            "  (no leaked task or coroutine matched it; remove it?)",
        ]
    )
    text = output_of(result)
    assert "keepalive" not in text
    assert "_flush" not in text
    assert "'marked'" not in text
    assert "test_allowed.forever'" not in text.split("never fired")[1]


def test_leak_allow_list_summary_is_the_same_under_xdist(pytester: pytest.Pytester) -> None:
    """With ``-n 2`` the leak rules match in the workers; the controller
    lists only the rules that matched nothing, as a serial run does."""
    make_project(pytester, "asyncspec_leaks = error")
    pytester.makepyfile(framework=FRAMEWORK, test_allowed=ALLOWED_LEAKS)
    summaries = []
    for extra in ([], ["-n", "2", *NO_BENCHMARK]):
        result = pytester.runpytest_subprocess(
            "-W",
            "ignore::RuntimeWarning",
            "--asyncspec-allow-leaks=framework.*",
            "--asyncspec-allow-leaks=nothing.matches.*",
            *extra,
        )
        result.assert_outcomes(passed=4, errors=1)
        lines = result.outlines
        start = next(i for i, line in enumerate(lines) if "rules that never fired" in line)
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("="))
        summaries.append([line.split("  (")[0] for line in lines[start + 1 : end] if line.strip()])
    assert summaries[0] == summaries[1]
    assert summaries[0] == [
        "nothing.matches.*",
        "test_allowed.py::test_marked: @pytest.mark.allow_leaks('test_allowed.never_used')",
    ]


def test_without_the_allow_list_the_framework_leaks_are_errors(
    pytester: pytest.Pytester,
) -> None:
    """The control of the test above: the same framework leaks fail."""
    make_project(pytester, "asyncspec_leaks = error")
    pytester.makepyfile(framework=FRAMEWORK, test_allowed=ALLOWED_LEAKS)
    result = pytester.runpytest("-rA", "-W", "ignore::RuntimeWarning")
    result.assert_outcomes(passed=4, errors=3)
    result.stdout.fnmatch_lines(["*task 'keepalive' (Pool._keepalive)*"])
    result.stdout.fnmatch_lines(["*coroutine '_flush' was never awaited*"])


@pytest.mark.parametrize(
    ("where", "patterns"),
    [
        pytest.param(
            ("--asyncspec-allow-leaks=a:b",),
            (
                "ERROR: --asyncspec-allow-leaks / asyncspec_allow_leaks: invalid leak allow "
                "rule 'a:b': the line after ':' must be a positive whole number*",
            ),
            id="flag",
        ),
        pytest.param(
            ("-k", "marked"),
            (
                "ERROR: test_bad.py::test_marked: @pytest.mark.allow_leaks: invalid leak "
                "allow rule 'no-dots': neither a file path*",
            ),
            id="marker",
        ),
    ],
)
def test_invalid_leak_allow_rule_is_a_usage_error(
    pytester: pytest.Pytester, where: tuple[str, ...], patterns: tuple[str, ...]
) -> None:
    make_project(pytester)
    pytester.makepyfile(
        test_bad="""
        import pytest


        @pytest.mark.allow_leaks("no-dots")
        async def test_marked() -> None:
            pass
        """
    )
    result = pytester.runpytest(*where)
    assert_usage_error(result, *patterns)


# -- the asyncspec_trace fixture --------------------------------------------------


def test_trace_fixture_queries_and_output_inside_an_async_test(
    pytester: pytest.Pytester,
) -> None:
    """Inside an async test on the virtual clock the fixture answers the
    documented queries with exact loop times, and ``.output.lines`` holds the
    printed lines with their loop times (0, 0, 0, then 1, 2, 3 s) and tasks.
    The inner tests assert; they pass only if every answer is right."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makepyfile(
        test_fixture="""
        from __future__ import annotations

        import asyncio
        import time


        async def job(name: str, delay: float) -> None:
            print(f"start {name}")
            await asyncio.sleep(delay)
            print(f"end {name}")


        async def test_gathered(asyncspec_trace) -> None:
            await asyncio.gather(
                *(asyncio.create_task(job(n, d), name=n) for n, d in (("a", 1), ("b", 2), ("c", 3)))
            )
            trace = asyncspec_trace
            assert trace.start_of("a") == trace.start_of("c") == 0.0
            assert [trace.finish_of(n) for n in "abc"] == [1.0, 2.0, 3.0]
            assert trace.every_start_before_any_finish("a", "b", "c")
            assert len(trace.steps_of("b")) == 2
            assert trace.longest_step().duration == 0.0
            assert trace.blocked_total() == 0.0
            assert trace.running_at(0.5) is None
            lines = [
                (line.time, trace.task(line.task).name, line.text) for line in trace.output.lines
            ]
            assert lines == [
                (0.0, "a", "start a"),
                (0.0, "b", "start b"),
                (0.0, "c", "start c"),
                (1.0, "a", "end a"),
                (2.0, "b", "end b"),
                (3.0, "c", "end c"),
            ]


        async def hog() -> None:
            await asyncio.sleep(1)
            time.sleep(2)


        async def test_sequential_with_a_blocking_step(asyncspec_trace) -> None:
            await asyncio.create_task(job("first", 1), name="first")
            await asyncio.create_task(hog(), name="hog")
            trace = asyncspec_trace
            assert not trace.every_start_before_any_finish("first", "hog")
            assert trace.start_of("hog") == 1.0
            assert trace.finish_of("hog") == 4.0
            longest = trace.longest_step()
            assert trace.task(longest.task).name == "hog"
            assert (longest.start, longest.end, longest.duration) == (2.0, 4.0, 2.0)
            assert trace.blocked_total() == 2.0
            assert trace.running_at(3.0).name == "hog"
            assert trace.running_at(4.0) is None
            assert trace.output.times() == [0.0, 1.0]
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)


def test_trace_fixture_in_a_sync_test_explains_itself(pytester: pytest.Pytester) -> None:
    """Reading ``asyncspec_trace`` in a sync test fails with a clear message
    saying to read it inside the async test body or an async fixture."""
    make_project(pytester)
    pytester.makepyfile(
        test_sync="""
        def test_sync(asyncspec_trace):
            asyncspec_trace.start_of("anything")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E   *RuntimeError: asyncspec_trace records the tasks of the test's loop, from "
            "its async fixtures' setup to their teardown: read it inside the async test "
            "body or an async fixture, not in a synchronous test or fixture",
        ]
    )


# -- a crash in the tracer never decides the outcome --------------------------------

CRASHING_CONFTEST = """\
from __future__ import annotations

import pytest

import pytest_asyncspec.plugin.observation


def explode(*args: object, **kwargs: object) -> None:
    raise RuntimeError("{message}")


# For the whole inner run, not in a fixture: a fixture's patch is undone in
# the teardown, before the trace file is written.  Undone when the inner run
# ends, since it shares the outer run's process.
_patch = pytest.MonkeyPatch()
_patch.setattr(pytest_asyncspec.plugin.observation, "{name}", explode)


def pytest_unconfigure(config: pytest.Config) -> None:
    _patch.undo()
"""

OUTCOME_TESTS = """\
import asyncio


async def worker() -> None:
    await asyncio.sleep(0.01)


async def test_passes() -> None:
    await asyncio.create_task(worker(), name="worker")


async def test_fails() -> None:
    await asyncio.create_task(worker(), name="worker")
    assert 1 == 2, "its own failure"
"""


@pytest.mark.parametrize(
    ("name", "args", "crashed_in", "title"),
    [
        # The timeline is drawn for failures only.
        pytest.param(
            "render_timeline", ("--asyncspec-trace=on",), ("fails",), INTERNAL, id="timeline"
        ),
        # The trace file is written once the fixtures' teardown is recorded too.
        pytest.param(
            "write_trace_events",
            ("--asyncspec-trace-dir=traces",),
            ("fails", "passes"),
            INTERNAL_TEARDOWN,
            id="trace-file",
        ),
        pytest.param(
            "Tracer", ("--asyncspec-trace=on",), ("fails", "passes"), INTERNAL, id="tracer"
        ),
        pytest.param(
            "capture_output",
            ("--asyncspec-trace=on",),
            ("fails", "passes"),
            INTERNAL,
            id="output-capture",
        ),
        # Leaks are looked for at the teardown of a test that passed, once its
        # fixtures are torn down.
        pytest.param(
            "pending_tasks",
            ("--asyncspec-leaks=error",),
            ("passes",),
            INTERNAL_TEARDOWN,
            id="leak-check",
        ),
    ],
)
def test_tracer_crash_keeps_each_test_outcome_and_adds_a_section(
    pytester: pytest.Pytester,
    name: str,
    args: tuple[str, ...],
    crashed_in: tuple[str, ...],
    title: str,
) -> None:
    """When a piece of the tracer raises (the timeline renderer, the trace
    file writer, the tracer itself, output capture, the leak check), the
    passing test still passes, the failing test still fails with its own
    assertion message, and the report of each test where the piece ran gains
    an ``asyncspec internal error`` section quoting the crash (titled "at
    teardown" for what runs then, so pytest shows it with passing tests too)."""
    make_project(pytester)
    message = f"{name} exploded"
    pytester.makeconftest(CRASHING_CONFTEST.format(name=name, message=message))
    pytester.makepyfile(test_outcomes=OUTCOME_TESTS)
    result = pytester.runpytest("-rA", *args)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E   *AssertionError: its own failure",
            "PASSED test_outcomes.py::test_passes",
            "FAILED test_outcomes.py::test_fails - AssertionError: its own failure*",
        ]
    )
    sections = [
        line for line in result.outlines if re.fullmatch(rf"-+ {re.escape(title)} -+", line)
    ]
    assert len(sections) == len(crashed_in), result.outlines
    if title == INTERNAL_TEARDOWN:
        # pytest prints a teardown section after the test's own report,
        # without a heading of its own when the test passed.
        crash = "\n".join(section(result, title, 0))
        assert f"RuntimeError: {message}" in crash
        return
    # Failures are shown first, then (-rA) the passes with their sections.
    headings = [
        line.strip("_ ")
        for line in result.outlines
        if re.fullmatch(r"_+ test_\w+ _+", line) or re.fullmatch(rf"-+ {re.escape(title)} -+", line)
    ]
    marked = [
        test for test, after in zip(headings, [*headings[1:], ""], strict=True) if title in after
    ]
    assert marked == [f"test_{test}" for test in crashed_in], headings
    for occurrence in range(len(crashed_in)):
        crash = "\n".join(section(result, title, occurrence))
        assert f"RuntimeError: {message}" in crash
    assert not (pytester.path / "traces").exists() or not any((pytester.path / "traces").iterdir())
    if name == "render_timeline":
        assert TIMELINE not in output_of(result)


def test_crash_inside_the_step_recorder_is_reported_not_lost(pytester: pytest.Pytester) -> None:
    """When working out what a task awaits raises (inside the per-step
    recorder), both tests keep their own outcome and each report gains an
    ``asyncspec internal error`` section quoting the crash."""
    make_project(pytester)
    pytester.makeconftest(
        """
        from __future__ import annotations

        import pytest

        import pytest_asyncspec.tracing.trace


        def explode(*args: object) -> None:
            raise RuntimeError("classifier exploded")


        @pytest.fixture(autouse=True)
        def crash_the_classifier(monkeypatch: pytest.MonkeyPatch) -> None:
            monkeypatch.setattr(pytest_asyncspec.tracing.trace, "_awaited_kind", explode)
        """
    )
    pytester.makepyfile(test_outcomes=OUTCOME_TESTS)
    result = pytester.runpytest("-rA", "--asyncspec-trace=on")
    result.assert_outcomes(passed=1, failed=1)
    for occurrence in range(2):
        crash = "\n".join(section(result, INTERNAL, occurrence))
        assert "while classifying what a task awaits" in crash
        assert "RuntimeError: classifier exploded" in crash


def test_crash_while_describing_blocking_keeps_the_failing_test_message(
    pytester: pytest.Pytester,
) -> None:
    """A test that blocks the loop and fails its own assertion, where writing
    the blocking report crashes, is still reported with its own assertion
    message, and the crash goes to an ``asyncspec internal error`` section."""
    make_project(pytester)
    pytester.makeconftest(
        """
        from __future__ import annotations

        import pytest

        import pytest_asyncspec.checks.blocking


        def explode(*args: object, **kwargs: object) -> str:
            raise RuntimeError("describe exploded")


        @pytest.fixture(autouse=True)
        def crash_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
            monkeypatch.setattr(pytest_asyncspec.checks.blocking.BlockingEvent, "describe", explode)
        """
    )
    pytester.makepyfile(
        test_blocks="""
        import time


        async def test_fails() -> None:
            time.sleep(0.3)
            assert 1 == 2, "its own failure"
        """
    )
    result = pytester.runpytest("--asyncspec-max-blocking=0.1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["FAILED test_blocks.py::test_fails - AssertionError: its own*"])
    assert "RuntimeError: describe exploded" in "\n".join(section(result, INTERNAL))


# -- opted out: nothing changes -----------------------------------------------------


def test_without_settings_async_tests_are_not_traced(pytester: pytest.Pytester) -> None:
    """With none of the tracing settings, async tests run on an untouched
    loop (no task factory installed): a failing test gets no asyncspec
    section, a leak and a blocking call go unreported, and no trace file is
    written anywhere."""
    make_project(pytester)
    pytester.makepyfile(
        test_plain="""
        import asyncio
        import time


        async def forever() -> None:
            await asyncio.sleep(3600)


        async def test_untouched() -> None:
            assert asyncio.get_running_loop().get_task_factory() is None
            asyncio.create_task(forever(), name="leaker")
            time.sleep(0.05)
            await asyncio.sleep(0)


        async def test_fails() -> None:
            await asyncio.create_task(asyncio.sleep(0))
            assert 1 == 2
        """
    )
    result = pytester.runpytest("-rA")
    result.assert_outcomes(passed=1, failed=1)
    text = output_of(result)
    for word in (TIMELINE, PENDING, "asyncspec internal error", "leaker", "blocked the event"):
        assert word not in text
    assert not list(pytester.path.rglob("*.trace.json"))


# -- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ini_lines", "args", "message"),
    [
        pytest.param(
            (),
            ("--asyncspec-leaks=loud",),
            "ERROR: --asyncspec-leaks: invalid leaks 'loud'; "
            "expected one of 'off', 'warn', 'error'",
            id="leaks-flag",
        ),
        pytest.param(
            ("asyncspec_leaks = Warn",),
            (),
            "ERROR: ini key asyncspec_leaks: invalid leaks 'Warn'; "
            "expected one of 'off', 'warn', 'error'",
            id="leaks-ini",
        ),
        pytest.param(
            (),
            ("--asyncspec-trace=maybe",),
            "ERROR: --asyncspec-trace: invalid trace 'maybe'; expected on or off*",
            id="trace-flag",
        ),
        pytest.param(
            ("asyncspec_trace = sometimes",),
            (),
            "ERROR: ini key asyncspec_trace: invalid trace 'sometimes'; expected on or off*",
            id="trace-ini",
        ),
    ],
)
def test_invalid_leaks_or_trace_value_is_a_usage_error(
    pytester: pytest.Pytester, ini_lines: tuple[str, ...], args: tuple[str, ...], message: str
) -> None:
    """A bad leaks or trace value from the flag or the ini stops the run
    before any test, naming where it came from and what is accepted."""
    make_project(pytester, *ini_lines)
    pytester.makepyfile(test_a="async def test_a():\n    pass\n")
    assert_usage_error(pytester.runpytest(*args), message)


@pytest.mark.parametrize(
    ("keyword", "message"),
    [
        pytest.param(
            "leaks='loud'",
            "*test_marked.py::test_it: @pytest.mark.asyncspec: invalid leaks 'loud'; "
            "expected one of 'off', 'warn', 'error'*",
            id="leaks",
        ),
        pytest.param(
            "trace='maybe'",
            "*test_marked.py::test_it: @pytest.mark.asyncspec: invalid trace 'maybe'; "
            "expected on or off*",
            id="trace",
        ),
        pytest.param(
            "trace_dir='x'",
            "*test_marked.py::test_it: @pytest.mark.asyncspec: unknown keyword 'trace_dir'*",
            id="trace-dir-is-not-per-test",
        ),
        pytest.param(
            "leak='warn'",
            "*test_marked.py::test_it: @pytest.mark.asyncspec: unknown keyword 'leak'; "
            "did you mean 'leaks'? accepted keywords are clock, loop, max_blocking, "
            "hang_after, leaks, trace, stall_budget, time_budget, schedules*",
            id="misspelt",
        ),
    ],
)
def test_invalid_tracing_marker_is_a_clean_error_naming_the_test(
    pytester: pytest.Pytester, keyword: str, message: str
) -> None:
    """A bad tracing keyword in the marker stops the run before any test,
    naming the test, without a traceback."""
    make_project(pytester)
    pytester.makepyfile(
        test_marked=(
            f"import pytest\n\n\n@pytest.mark.asyncspec({keyword})\n"
            "async def test_it():\n    pass\n"
        )
    )
    result = pytester.runpytest()
    assert result.ret in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERRUPTED)
    pytest.LineMatcher(result.outlines + result.errlines).fnmatch_lines([message])
    text = output_of(result)
    assert "Traceback" not in text
    assert not re.search(r"\d+ (passed|failed)", text), text


def test_trace_dir_under_a_regular_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """A trace directory that cannot be created (its parent is a regular
    file) stops the run before any test, naming the directory."""
    make_project(pytester)
    pytester.makepyfile(test_a="async def test_a():\n    pass\n")
    (pytester.path / "afile").write_text("not a directory")
    target = pytester.path / "afile" / "traces"
    result = pytester.runpytest(f"--asyncspec-trace-dir={target}")
    assert_usage_error(
        result,
        f"ERROR: --asyncspec-trace-dir: '{pytester.path / 'afile'}' is a file, not a directory; "
        "give a path in a directory you can write to",
    )


def test_trace_dir_that_is_a_regular_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """A trace directory path that names an existing regular file is refused
    before any test, naming it."""
    make_project(pytester)
    pytester.makepyfile(test_a="async def test_a():\n    pass\n")
    target = pytester.path / "afile"
    target.write_text("not a directory")
    result = pytester.runpytest(f"--asyncspec-trace-dir={target}")
    assert_usage_error(
        result, f"ERROR: --asyncspec-trace-dir: '{target}' is a file, not a directory*"
    )
    assert target.read_text() == "not a directory"


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="permission bits do not stop root from writing",
)
def test_read_only_trace_dir_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """An existing directory without write permission is refused before any
    test, naming it."""
    make_project(pytester)
    pytester.makepyfile(test_a="async def test_a():\n    pass\n")
    target = pytester.path / "readonly"
    target.mkdir()
    target.chmod(0o500)
    try:
        result = pytester.runpytest(f"--asyncspec-trace-dir={target}")
    finally:
        target.chmod(0o700)
    assert_usage_error(
        result,
        f"ERROR: --asyncspec-trace-dir: cannot write in '{target}' (Permission denied); "
        "give a path in a directory you can write to",
    )


def test_trace_dir_from_the_ini_is_checked_too(pytester: pytest.Pytester) -> None:
    """An unusable ``asyncspec_trace_dir`` from the ini file is refused the
    same way, naming the directory."""
    make_project(pytester, "asyncspec_trace_dir = afile/traces")
    pytester.makepyfile(test_a="async def test_a():\n    pass\n")
    (pytester.path / "afile").write_text("not a directory")
    result = pytester.runpytest()
    assert_usage_error(result, f"ERROR: *'{pytester.path / 'afile'}' is a file, not a directory*")


def test_trace_dir_error_names_the_ini_key_it_came_from(pytester: pytest.Pytester) -> None:
    """A bad trace directory set in the ini file is reported against the ini
    key (as every other bad ini value is), not against a flag the user never
    passed."""
    make_project(pytester, "asyncspec_trace_dir = afile/traces")
    pytester.makepyfile(test_a="async def test_a():\n    pass\n")
    (pytester.path / "afile").write_text("not a directory")
    result = pytester.runpytest()
    assert_usage_error(result, "ERROR: ini key asyncspec_trace_dir: *")
