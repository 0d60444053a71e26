"""The blocking-call gate as a user meets it: ``max_blocking`` in a real run.

Every test runs a small pytest session inside ``pytester`` on the real clock
(unless it says otherwise) and reads what the user reads: which tests failed,
the failure message naming the task, how long it held the loop and the
``file:line`` that blocked, the allow-list summary at the end of the run, and
the usage error for a bad value.  Real-time blocking is kept short: 0.3 s
against a threshold of 0.1 s.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pytester_helpers import (
    NO_BENCHMARK,
    STRICT_INI,
    assert_usage_error,
    failure_sections,
    line_of,
    output_of,
)

#: Seconds a blocking call holds the loop in these tests, and the threshold.
BLOCK = 0.3
THRESHOLD = 0.1

# A blocking call three calls deep: the report must point inside f3.
HELPERS = """\
from __future__ import annotations

import time


def f1() -> None:
    f2()


def f2() -> None:
    f3()


def f3() -> None:
    time.sleep(0.3)  # blocks here
"""

# One test whose own task blocks, and a named task that blocks.
SLEEPING_TEST = """\
from __future__ import annotations

import asyncio
import time


async def blocker() -> None:
    await asyncio.sleep(0)
    time.sleep(0.3)  # blocks here


async def test_it() -> None:
    await asyncio.create_task(blocker(), name="blocker")
"""

CLEAN_TEST = """\
from __future__ import annotations

import asyncio


async def test_clean() -> None:
    await asyncio.gather(*(asyncio.sleep(0.01) for _ in range(5)))
"""


def make_project(pytester: pytest.Pytester, *ini_lines: str) -> None:
    pytester.makeini(STRICT_INI + "".join(f"{line}\n" for line in ini_lines))


def real_durations(result: pytest.RunResult, task: str) -> list[float]:
    """Every real-time blocking duration reported for tasks named like the
    regular expression ``task``, read from the failure sections only: with the
    ``CI`` environment variable set, pytest repeats whole failure messages in
    the short test summary, which would count each report twice."""
    pattern = re.compile(
        rf"Task '{task}' \(\S+\) blocked the event loop for (\d+\.\d{{3}}) s "
        r"\(real time; threshold [0-9.]+ s\)\."
    )
    return [float(match) for match in pattern.findall(failure_sections(result))]


def assert_clean_test_error(result: pytest.RunResult, *patterns: str) -> None:
    """A marker error stops the run before any test executes: usage error or
    interrupted collection, ``patterns`` in the output, no traceback."""
    assert result.ret in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERRUPTED), output_of(
        result
    )
    pytest.LineMatcher(result.outlines + result.errlines).fnmatch_lines(list(patterns))
    text = output_of(result)
    assert not re.search(r"\d+ (passed|failed)", text), text
    assert "Traceback" not in text
    assert "pytest_asyncspec/" not in text


# -- what a blocking failure says -----------------------------------------------


def test_sleep_in_a_task_fails_naming_task_duration_and_line(pytester: pytest.Pytester) -> None:
    """``--asyncspec-max-blocking=0.1``: a task step that runs ``time.sleep(0.3)``
    on the real clock fails the test; the message names the task, its
    coroutine, the real duration (about 0.3 s), the threshold and the exact
    ``file:line`` of the sleep."""
    make_project(pytester)
    path = pytester.makepyfile(test_sleeping=SLEEPING_TEST)
    line = line_of(path, "# blocks here")
    result = pytester.runpytest(f"--asyncspec-max-blocking={THRESHOLD}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "1 task step(s) held the event loop longer than max_blocking=0.1 s during the test:",
            "Task 'blocker' (blocker) blocked the event loop for 0.* s "
            "(real time; threshold 0.1 s).",
            f"Blocking call: *test_sleeping.py:{line} in blocker",
            "Fix: run the blocking work in a thread*",
        ]
    )
    (duration,) = real_durations(result, "blocker")
    assert BLOCK * 0.95 <= duration < BLOCK + 2.0
    # The test's own task only waited for the blocker: it is not blamed.
    assert "(test_it) blocked" not in output_of(result)


def test_blocking_three_calls_deep_is_reported_inside_the_helper(
    pytester: pytest.Pytester,
) -> None:
    """A ``time.sleep`` hidden in a helper module (test -> f1 -> f2 -> f3) is
    reported at the line inside f3, with the call chain listing the test,
    f1, f2 and f3 in order, each at its calling line."""
    make_project(pytester)
    helpers = pytester.makepyfile(helpers=HELPERS)
    test = pytester.makepyfile(
        test_deep="""
        from __future__ import annotations

        import helpers


        async def test_it() -> None:
            helpers.f1()  # the call
        """
    )
    result = pytester.runpytest(f"--asyncspec-max-blocking={THRESHOLD}")
    result.assert_outcomes(failed=1)
    f1, f2, f3 = (line_of(helpers, call) for call in ("    f2()", "    f3()", "time.sleep"))
    call = line_of(test, "# the call")
    result.stdout.fnmatch_lines(
        [
            f"Blocking call: */helpers.py:{f3} in f3",
            "Call chain (outermost first):",
            f"    */test_deep.py:{call} in test_it",
            f"    */helpers.py:{f1} in f1",
            f"    */helpers.py:{f2} in f2",
            f"  > */helpers.py:{f3} in f3",
        ],
        consecutive=True,
    )
    (duration,) = real_durations(result, r"Task-\d+")
    assert duration >= BLOCK * 0.95


def test_cpu_bound_step_is_caught_with_a_site_inside_the_loop(
    pytester: pytest.Pytester,
) -> None:
    """A busy loop of about 0.3 s (no sleep at all) is caught too, and the
    blocking call it names is one of the loop's own lines."""
    make_project(pytester)
    path = pytester.makepyfile(
        test_busy="""
        from __future__ import annotations

        import asyncio
        import time


        async def crunch() -> int:
            await asyncio.sleep(0)
            deadline = time.perf_counter() + 0.3
            spins = 0
            while time.perf_counter() < deadline:  # loop head
                spins += 1  # loop body
            return spins


        async def test_it() -> None:
            assert await asyncio.create_task(crunch(), name="cruncher") > 0
        """
    )
    result = pytester.runpytest(f"--asyncspec-max-blocking={THRESHOLD}")
    result.assert_outcomes(failed=1)
    loop_lines = {line_of(path, "# loop head"), line_of(path, "# loop body")}
    site = re.search(r"Blocking call: \S*test_busy\.py:(\d+) in crunch", output_of(result))
    assert site is not None, output_of(result)
    assert int(site.group(1)) in loop_lines
    (duration,) = real_durations(result, "cruncher")
    assert duration >= BLOCK * 0.95


def test_virtual_clock_sleep_is_reported_with_its_virtual_duration(
    pytester: pytest.Pytester,
) -> None:
    """On the virtual clock a ``time.sleep(2.5)`` takes no real time, yet with
    ``max_blocking=1`` it is reported as 2.5 s of virtual time at its line; a
    0.5 s sleep under the same threshold passes."""
    make_project(pytester, "asyncspec_clock = virtual")
    path = pytester.makepyfile(
        test_virtual="""
        from __future__ import annotations

        import time

        import pytest


        @pytest.mark.asyncspec(max_blocking=1)
        async def test_long() -> None:
            time.sleep(2.5)  # long sleep


        @pytest.mark.asyncspec(max_blocking=1)
        async def test_short() -> None:
            time.sleep(0.5)
        """
    )
    result = pytester.runpytest("-rA")
    result.assert_outcomes(failed=1, passed=1)
    line = line_of(path, "# long sleep")
    result.stdout.fnmatch_lines(
        [
            "*_ test_long _*",
            "1 task step(s) held the event loop longer than max_blocking=1 s during the test:",
            "Task 'Task-*' (test_long) blocked the event loop for 2.5 s "
            "(virtual time, in 1 blocking time.sleep() call; threshold 1 s).",
            f"Blocking call: *test_virtual.py:{line} in test_long",
            "Fix: await asyncio.sleep(...) instead of time.sleep(...)*",
        ]
    )
    result.stdout.fnmatch_lines(["PASSED test_virtual.py::test_short"])
    assert "test_short) blocked" not in output_of(result)


def test_virtual_clock_report_is_the_full_traces_with_the_threshold_alone(
    pytester: pytest.Pytester,
) -> None:
    """With only ``max_blocking`` set the plugin records only long steps,
    stamped with the coarse clock: on the virtual clock a worker's steps
    then often share a start stamp, and its sleeps were merged into one
    event ("0.2 s ... in 2 blocking time.sleep() calls"), differently from
    run to run.  The report must be exactly the full trace's: three steps
    per worker, each 0.1 s (one entry per worker, as they block at one place)."""
    make_project(pytester, "asyncspec_clock = virtual", "asyncspec_max_blocking = 0.05")
    pytester.makepyfile(
        test_workers="""
        from __future__ import annotations

        import asyncio
        import time


        async def work() -> None:
            for _ in range(3):
                time.sleep(0.1)  # the audit write
                await asyncio.sleep(0.1)


        async def test_workers() -> None:
            await asyncio.gather(
                *(asyncio.create_task(work(), name=f"worker-{i}") for i in range(3))
            )
        """
    )

    def failure(*args: str) -> str:
        result = pytester.runpytest(*args)
        result.assert_outcomes(failed=1)
        text = output_of(result)
        return text[text.index("9 task step(s)") : text.index("asyncspec: blocking places")]

    threshold_only = failure()
    tally = "Blocked here 3 steps, worst 0.1 s, total 0.3 s (virtual time); the worst step:"
    assert threshold_only.count(tally) == 3
    assert threshold_only.count("blocked the event loop for 0.1 s (virtual time, in 1 ") == 3
    assert "0.2 s" not in threshold_only
    full = failure("--asyncspec-trace=on")
    full = full[: full.index("asyncspec timeline")]
    assert threshold_only.rstrip(" -=\n") == full.rstrip(" -=\n")


@pytest.mark.parametrize(
    ("ini_lines", "args", "marker"),
    [
        pytest.param((), (f"--asyncspec-max-blocking={THRESHOLD}",), "", id="flag"),
        pytest.param((f"asyncspec_max_blocking = {THRESHOLD}",), (), "", id="ini"),
        pytest.param((), (), f"max_blocking={THRESHOLD}", id="marker"),
    ],
)
def test_each_source_gates_and_a_clean_test_passes(
    pytester: pytest.Pytester, ini_lines: tuple[str, ...], args: tuple[str, ...], marker: str
) -> None:
    """The flag, the ini key and the marker each switch the gate on: the
    blocking test fails and the test that only awaits passes."""
    make_project(pytester, *ini_lines)
    decorator = f"@pytest.mark.asyncspec({marker})\n" if marker else ""
    pytester.makepyfile(
        test_mixed=f"""\
from __future__ import annotations

import asyncio
import time

import pytest


{decorator}async def test_blocks() -> None:
    time.sleep(0.3)


{decorator}async def test_awaits() -> None:
    await asyncio.sleep(0.3)
"""
    )
    result = pytester.runpytest("-rA", *args)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "PASSED test_mixed.py::test_awaits",
            "FAILED test_mixed.py::test_blocks - Failed: 1 task step(s) held*",
        ]
    )


def test_without_any_setting_blocking_is_not_checked(pytester: pytest.Pytester) -> None:
    """Control: with no flag, ini key or marker the same blocking test passes."""
    make_project(pytester)
    pytester.makepyfile(test_sleeping=SLEEPING_TEST)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "blocked the event loop" not in output_of(result)


# -- precedence: command line > marker > ini ------------------------------------

PRECEDENCE_CASES = [
    # (ini value, marker keyword value, flag value, threshold in force or None)
    pytest.param("1", "0.1", None, 0.1, id="marker-beats-ini"),
    pytest.param("0.1", "1", None, None, id="marker-1-beats-ini-0.1"),
    pytest.param("0.1", "None", None, None, id="marker-None-disables-ini"),
    pytest.param("0.1", "'off'", None, None, id="marker-off-disables-ini"),
    pytest.param(None, "1", "0.1", 0.1, id="flag-beats-marker"),
    pytest.param(None, "0.1", "1", None, id="flag-1-beats-marker-0.1"),
    pytest.param(None, "0.1", "off", None, id="flag-off-disables-marker"),
    pytest.param("0.1", None, "off", None, id="flag-off-disables-ini"),
    pytest.param("1", "1", "0.2", 0.2, id="flag-beats-marker-and-ini"),
    pytest.param("0.2", None, None, 0.2, id="ini-alone"),
]


@pytest.mark.parametrize(("ini", "marker", "flag", "threshold"), PRECEDENCE_CASES)
def test_precedence_flag_over_marker_over_ini(
    pytester: pytest.Pytester,
    ini: str | None,
    marker: str | None,
    flag: str | None,
    threshold: float | None,
) -> None:
    """The threshold in force is the flag's, else the marker's, else the
    ini's; ``off`` and ``None`` disable the gate.  A 0.3 s block fails under
    0.1 or 0.2 (and the message shows which one) and passes under 1 or off."""
    make_project(pytester, *([f"asyncspec_max_blocking = {ini}"] if ini is not None else []))
    decorator = f"@pytest.mark.asyncspec(max_blocking={marker})\n" if marker is not None else ""
    pytester.makepyfile(
        test_precedence=(
            "import time\n\nimport pytest\n\n\n"
            f"{decorator}async def test_it():\n    time.sleep({BLOCK})\n"
        )
    )
    args = [f"--asyncspec-max-blocking={flag}"] if flag is not None else []
    result = pytester.runpytest(*args)
    if threshold is None:
        result.assert_outcomes(passed=1)
        assert "blocked the event loop" not in output_of(result)
    else:
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "1 task step(s) held the event loop longer than "
                f"max_blocking={threshold:g} s during the test:"
            ]
        )


# -- a whole suite gated from the ini file --------------------------------------

GATED_SUITE = {
    "test_api": """
        from __future__ import annotations

        import helpers


        async def test_api() -> None:
            helpers.f1()
        """,
    "test_db": CLEAN_TEST,
    "test_jobs": """
        from __future__ import annotations

        import asyncio
        import time


        async def job() -> None:
            time.sleep(0.3)  # job blocks


        async def test_jobs() -> None:
            await asyncio.create_task(job(), name="job")
        """,
    "test_sync": """
        from __future__ import annotations

        import time


        def test_sync_code_may_sleep() -> None:
            time.sleep(0.3)
        """,
}


def make_gated_suite(pytester: pytest.Pytester, *ini_lines: str) -> dict[str, Path]:
    make_project(pytester, f"asyncspec_max_blocking = {THRESHOLD}", *ini_lines)
    paths = {"helpers": pytester.makepyfile(helpers=HELPERS)}
    for name, source in GATED_SUITE.items():
        paths[name] = pytester.makepyfile(**{name: source})
    return paths


def test_ini_threshold_gates_every_async_test_of_a_suite(pytester: pytest.Pytester) -> None:
    """``asyncspec_max_blocking`` in the ini file is a CI gate: every async
    test in every file is checked, the run fails, each blocking test names its
    own line; clean async tests and sync tests pass."""
    paths = make_gated_suite(pytester)
    result = pytester.runpytest("-rA")
    result.assert_outcomes(failed=2, passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "PASSED test_db.py::test_clean",
            "PASSED test_sync.py::test_sync_code_may_sleep",
            "FAILED test_api.py::test_api - Failed: 1 task step(s) held*",
            "FAILED test_jobs.py::test_jobs - Failed: 1 task step(s) held*",
        ]
    )
    f3 = line_of(paths["helpers"], "time.sleep")
    job = line_of(paths["test_jobs"], "# job blocks")
    text = output_of(result)
    assert f"helpers.py:{f3} in f3" in text
    assert f"test_jobs.py:{job} in job" in text
    # Nothing was allowed, so there is no allow-list summary.
    assert "allow-list rules that never fired" not in text


def test_allow_list_from_ini_and_flag_lets_the_suite_pass(pytester: pytest.Pytester) -> None:
    """Rules from the ini line list and from ``--asyncspec-allow-blocking``
    allow the named places; the run passes, and only the rule that matched
    nothing is listed at the end under the never-fired heading."""
    paths = make_gated_suite(
        pytester,
        "asyncspec_allow_blocking =",
        "    helpers.py",
        "    legacy/*.py",
    )
    job = line_of(paths["test_jobs"], "# job blocks")
    result = pytester.runpytest(f"--asyncspec-allow-blocking=test_jobs.py:{job}")
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "*= asyncspec: allow-list rules that never fired =*",
            "legacy/*.py  (no blocking step matched it; remove it?)",
        ]
    )
    summary = output_of(result).split("allow-list rules that never fired", 1)[1]
    assert "helpers.py" not in summary
    assert f"test_jobs.py:{job}" not in summary


def test_no_never_fired_list_when_no_test_ran(pytester: pytest.Pytester) -> None:
    """A run stopped by a usage error, or that selected no test, says nothing
    about rules never firing: no step had a chance to match them."""
    make_gated_suite(pytester, "asyncspec_allow_blocking =", "    legacy/*.py")
    stopped = pytester.runpytest("--asyncspec-leaks=sometimes")
    assert stopped.ret == pytest.ExitCode.USAGE_ERROR
    nothing = pytester.runpytest("-k", "no_such_test")
    assert nothing.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    for result in (stopped, nothing):
        assert "never fired" not in output_of(result)


def test_allow_list_summary_is_the_same_under_xdist(pytester: pytest.Pytester) -> None:
    """With ``-n 2`` the rules fire in the workers; the controller still lists
    only the rule that matched nothing, as a serial run does."""
    pytest.importorskip("xdist")
    paths = make_gated_suite(
        pytester,
        "asyncspec_allow_blocking =",
        "    helpers.py",
        "    legacy/*.py",
    )
    job = line_of(paths["test_jobs"], "# job blocks")
    summaries = []
    for extra in ([], ["-n", "2", *NO_BENCHMARK]):
        result = pytester.runpytest_subprocess(
            f"--asyncspec-allow-blocking=test_jobs.py:{job}", *extra
        )
        result.assert_outcomes(passed=4)
        lines = result.outlines
        start = next(i for i, line in enumerate(lines) if "rules that never fired" in line)
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("="))
        summaries.append([line for line in lines[start + 1 : end] if line.strip()])
    assert (
        summaries[0] == summaries[1] == ["legacy/*.py  (no blocking step matched it; remove it?)"]
    )


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param("helpers.py", id="file"),
        pytest.param("*/helpers.py", id="file-glob"),
        pytest.param("helpers.py:{f3}", id="file-line"),
        pytest.param("helpers.f3", id="function"),
        pytest.param("helpers.f*", id="function-glob"),
    ],
)
def test_each_rule_form_allows_the_helper(pytester: pytest.Pytester, rule: str) -> None:
    """Each accepted rule form (file, file glob, file:line, module.function,
    a function glob) allows the blocking call in the helper; a used rule is
    not reported as never fired."""
    paths = make_gated_suite(pytester)
    rule = rule.format(f3=line_of(paths["helpers"], "time.sleep"))
    result = pytester.runpytest("test_api.py", f"--asyncspec-allow-blocking={rule}")
    result.assert_outcomes(passed=1)
    assert "allow-list rules that never fired" not in output_of(result)


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param("helpers.py:{def_f3}", id="another-line"),
        pytest.param("helpers.f2", id="function-up-the-chain"),
        pytest.param("helpers.f1", id="outermost-helper"),
        pytest.param("test_api.py", id="the-test-file"),
    ],
)
def test_a_rule_away_from_the_blocking_frame_does_not_allow(
    pytester: pytest.Pytester, rule: str
) -> None:
    """``f3`` (the user's code) calls ``time.sleep``.  A rule for a line no
    frame of the step is on, or for a frame further out than ``f3`` (its
    callers, the test) does not allow the call: the test fails, and the rule
    is listed as never fired."""
    paths = make_gated_suite(pytester)
    rule = rule.format(def_f3=line_of(paths["helpers"], "def f3"))
    result = pytester.runpytest("test_api.py", f"--asyncspec-allow-blocking={rule}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*= asyncspec: allow-list rules that never fired =*",
            f"{rule}  (no blocking step matched it; remove it?)",
        ]
    )


@pytest.mark.parametrize(
    ("ini_rule", "flag_rule", "message"),
    [
        pytest.param(
            None,
            "justaword",
            "*invalid blocking allow rule 'justaword': neither a file path*",
            id="flag-bare-word",
        ),
        pytest.param(
            "helpers.py:abc",
            None,
            "*invalid blocking allow rule 'helpers.py:abc': the line after ':' must be*",
            id="ini-bad-line",
        ),
        pytest.param(
            "helpers.py:0",
            None,
            "*invalid blocking allow rule 'helpers.py:0'*positive whole number*",
            id="ini-line-zero",
        ),
        pytest.param(
            None,
            "helpers.f3:12",
            "*invalid blocking allow rule 'helpers.f3:12': a ':LINE' needs a file path*",
            id="flag-line-after-function",
        ),
    ],
)
def test_invalid_allow_rule_is_a_usage_error_before_tests_run(
    pytester: pytest.Pytester, ini_rule: str | None, flag_rule: str | None, message: str
) -> None:
    """A malformed allow rule (from the ini list or the flag) stops the run
    with a usage error naming the rule and the accepted forms; no test runs."""
    ini_lines = ["asyncspec_allow_blocking =", f"    {ini_rule}"] if ini_rule else []
    make_project(pytester, f"asyncspec_max_blocking = {THRESHOLD}", *ini_lines)
    pytester.makepyfile(
        test_ran="""
        from pathlib import Path


        async def test_it() -> None:
            Path("ran").write_text("yes")
        """
    )
    args = [f"--asyncspec-allow-blocking={flag_rule}"] if flag_rule else []
    result = pytester.runpytest(*args)
    assert_usage_error(
        result,
        "ERROR: --asyncspec-allow-blocking / asyncspec_allow_blocking: " + message.lstrip("*"),
    )
    result.stderr.fnmatch_lines(["*accepted forms: 'path/glob.py'*"])
    assert not (pytester.path / "ran").exists()


# -- bad thresholds -------------------------------------------------------------

# "0" is a bad number of seconds, not a synonym for "off": a user who writes
# max_blocking=0 means "no blocking at all", never "do not check".
BAD_THRESHOLDS = ["abc", "-1", "0", "0.0", "nan", "inf", "-inf", "1e999"]


@pytest.mark.parametrize("value", BAD_THRESHOLDS)
def test_invalid_threshold_flag_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    """A threshold that is not a positive finite number of seconds, given on
    the command line, stops the run before any test with one clear line."""
    make_project(pytester)
    pytester.makepyfile(test_sleeping=SLEEPING_TEST)
    result = pytester.runpytest(f"--asyncspec-max-blocking={value}")
    assert_usage_error(
        result,
        f"ERROR: --asyncspec-max-blocking: invalid max_blocking '{value}'; "
        "expected a positive number of seconds (e.g. 0.1) or 'off'",
    )


@pytest.mark.parametrize("value", BAD_THRESHOLDS)
def test_invalid_threshold_ini_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    """The same values in ``asyncspec_max_blocking`` are a usage error naming
    the ini key."""
    make_project(pytester, f"asyncspec_max_blocking = {value}")
    pytester.makepyfile(test_sleeping=SLEEPING_TEST)
    result = pytester.runpytest()
    assert_usage_error(
        result,
        f"ERROR: ini key asyncspec_max_blocking: invalid max_blocking '{value}'; "
        "expected a positive number of seconds (e.g. 0.1) or 'off'",
    )


@pytest.mark.parametrize(
    ("keyword", "shown"),
    [
        pytest.param("'abc'", "'abc'", id="abc"),
        pytest.param("-1", "-1", id="-1"),
        pytest.param("0", "0", id="0"),
        pytest.param("0.0", "0.0", id="0.0"),
        pytest.param("float('nan')", "nan", id="nan"),
        pytest.param("float('inf')", "inf", id="inf"),
        pytest.param("True", "True", id="True"),
        pytest.param("[0.1]", "?0.1?", id="list"),
        pytest.param("'0'", "'0'", id="string-0"),
    ],
)
def test_invalid_threshold_marker_is_a_clean_error_naming_the_test(
    pytester: pytest.Pytester, keyword: str, shown: str
) -> None:
    """A bad ``max_blocking`` in the marker stops the run with one line that
    names the test and the value, without a traceback."""
    make_project(pytester)
    pytester.makepyfile(
        test_marked=(
            "import time\n\nimport pytest\n\n\n"
            f"@pytest.mark.asyncspec(max_blocking={keyword})\n"
            "async def test_it():\n    time.sleep(0.3)\n"
        )
    )
    result = pytester.runpytest()
    assert_clean_test_error(
        result,
        f"*test_marked.py::test_it: @pytest.mark.asyncspec: invalid max_blocking {shown}; "
        "expected a positive number of seconds*",
    )


def test_misspelt_marker_keyword_is_a_clean_error(pytester: pytest.Pytester) -> None:
    """``max_blockng=0.1`` is not silently ignored (the test would go
    unguarded): the run stops naming the test, the keyword and the accepted
    keywords."""
    make_project(pytester)
    pytester.makepyfile(
        test_marked=(
            "import time\n\nimport pytest\n\n\n"
            "@pytest.mark.asyncspec(max_blockng=0.1)\n"
            "async def test_it():\n    time.sleep(0.3)\n"
        )
    )
    result = pytester.runpytest()
    assert_clean_test_error(
        result,
        "*test_marked.py::test_it: @pytest.mark.asyncspec: unknown keyword 'max_blockng'; "
        "did you mean 'max_blocking'? accepted keywords are clock, loop, max_blocking, "
        "hang_after, leaks, trace, stall_budget, time_budget, schedules*",
    )


# -- a failing test keeps its blocking report -----------------------------------


def test_blocking_report_survives_a_test_that_fails_for_another_reason(
    pytester: pytest.Pytester,
) -> None:
    """A test that blocks the loop and then fails on its own assertion (here a
    wake-up that came late *because* the loop was blocked) keeps its own
    failure, and its report still has an ``asyncspec blocking calls`` section
    showing which line blocked the loop: the explanation the user needs."""
    make_project(pytester)
    path = pytester.makepyfile(
        test_both="""
        from __future__ import annotations

        import asyncio
        import time


        async def hog() -> None:
            time.sleep(0.3)  # the hog


        async def test_it() -> None:
            asyncio.create_task(hog(), name="hog")
            started = asyncio.get_running_loop().time()
            await asyncio.sleep(0.05)
            assert asyncio.get_running_loop().time() - started < 0.2, "woke up late"
        """
    )
    result = pytester.runpytest(f"--asyncspec-max-blocking={THRESHOLD}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: woke up late*"])
    line = line_of(path, "# the hog")
    result.stdout.fnmatch_lines(
        [
            "FAILED test_both.py::test_it - AssertionError: woke up late*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E   *AssertionError: woke up late",
            "*- asyncspec blocking calls -*",
            "1 task step(s) held the event loop longer than max_blocking=0.1 s during the test:",
            "Task 'hog' (hog) blocked the event loop for 0.* s (real time; threshold 0.1 s).",
            f"Blocking call: *test_both.py:{line} in hog",
        ]
    )


# -- async fixtures: setup, call and teardown are gated --------------------------

# A service started by an async fixture, as a user runs the code under test:
# its worker blocks while the test runs; other fixtures block in their own
# setup or teardown.  On the virtual clock the 1.5 s sleeps take no real time.
FIXTURE_BLOCKING = """\
from __future__ import annotations

import asyncio
import time

import pytest


async def work() -> None:
    await asyncio.sleep(0.1)
    time.sleep(1.5)  # the worker blocks


@pytest.fixture
async def service():
    task = asyncio.create_task(work(), name="worker")
    yield task
    await task


@pytest.fixture
async def slow_start():
    time.sleep(1.5)  # setup blocks
    yield


@pytest.fixture
async def slow_stop():
    yield
    time.sleep(1.5)  # teardown blocks


async def test_service(service) -> None:
    await asyncio.sleep(1)


async def test_slow_start(slow_start) -> None:
    await asyncio.sleep(0)


async def test_slow_stop(slow_stop) -> None:
    await asyncio.sleep(0)
"""


def test_fixture_worker_blocking_fails_the_test_naming_line_and_phase(
    pytester: pytest.Pytester,
) -> None:
    """A worker task that an async fixture started and that blocks the loop
    for 1.5 s while the test runs fails a 0.05 s gate: the report names the
    blocking line, the phase it blocked in, and the fixture that made the
    task.  (The observation used to start at the test's call, so the worker
    was not traced and the test passed.)"""
    make_project(pytester, "asyncspec_clock = virtual")
    path = pytester.makepyfile(test_fixtures=FIXTURE_BLOCKING)
    result = pytester.runpytest("--asyncspec-max-blocking=0.05", "-k", "test_service")
    result.assert_outcomes(failed=1)
    line = line_of(path, "# the worker blocks")
    result.stdout.fnmatch_lines(
        [
            "*_ test_service _*",
            "1 task step(s) held the event loop longer than max_blocking=0.05 s during the test:",
            "Task 'worker' (work) blocked the event loop for 1.5 s "
            "(virtual time, in 1 blocking time.sleep() call; threshold 0.05 s).",
            f"Blocking call: *test_fixtures.py:{line} in work",
            "*",
            "The task was created during setup (fixture 'service').",
        ]
    )


def test_blocking_in_a_fixture_setup_is_an_error_at_setup(pytester: pytest.Pytester) -> None:
    """An async fixture that blocks the loop in its own setup is reported as
    an error at setup ("during setup"), like any other fixture failure: the
    test body does not run."""
    make_project(pytester, "asyncspec_clock = virtual")
    path = pytester.makepyfile(test_fixtures=FIXTURE_BLOCKING)
    result = pytester.runpytest("--asyncspec-max-blocking=0.05", "-k", "test_slow_start")
    result.assert_outcomes(errors=1)
    line = line_of(path, "# setup blocks")
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at setup of test_slow_start _*",
            "1 task step(s) held the event loop longer than max_blocking=0.05 s during setup:",
            "Task * (*setup) blocked the event loop for 1.5 s *",
            f"Blocking call: *test_fixtures.py:{line} in slow_start",
            "*",
            "The task was created during setup (fixture 'slow_start').",
        ]
    )


def test_blocking_in_a_fixture_teardown_is_an_error_at_teardown(
    pytester: pytest.Pytester,
) -> None:
    """An async fixture that blocks the loop in its teardown gives the
    (passing) test an error at teardown, "during teardown"."""
    make_project(pytester, "asyncspec_clock = virtual")
    path = pytester.makepyfile(test_fixtures=FIXTURE_BLOCKING)
    result = pytester.runpytest("--asyncspec-max-blocking=0.05", "-k", "test_slow_stop")
    result.assert_outcomes(passed=1, errors=1)
    line = line_of(path, "# teardown blocks")
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at teardown of test_slow_stop _*",
            "1 task step(s) held the event loop longer than max_blocking=0.05 s during teardown:",
            "Task * (*async_finalizer) blocked the event loop for 1.5 s *",
            f"Blocking call: *test_fixtures.py:{line} in slow_stop",
            "*",
            "The task was created during teardown.",
        ]
    )


def test_fixture_blocking_on_the_real_clock_is_gated_too(pytester: pytest.Pytester) -> None:
    """On the real clock the watchdog samples the fixture worker's step, so
    the gate names its line there too."""
    make_project(pytester)
    path = pytester.makepyfile(
        test_real="""
        from __future__ import annotations

        import asyncio
        import time

        import pytest


        async def work() -> None:
            await asyncio.sleep(0)
            time.sleep(0.3)  # the worker blocks


        @pytest.fixture
        async def service():
            task = asyncio.create_task(work(), name="worker")
            yield
            await task


        async def test_it(service) -> None:
            await asyncio.sleep(0.01)
        """
    )
    result = pytester.runpytest(f"--asyncspec-max-blocking={THRESHOLD}")
    assert result.parseoutcomes().get("failed", 0) + result.parseoutcomes().get("errors", 0) == 1
    line = line_of(path, "# the worker blocks")
    result.stdout.fnmatch_lines(
        [
            "1 task step(s) held the event loop longer than max_blocking=0.1 s during *:",
            "Task 'worker' (work) blocked the event loop for 0.* s (real time; threshold 0.1 s).",
            f"Blocking call: *test_real.py:{line} in work",
        ]
    )


# -- allow rules near the blocking call, and the report of what they allowed ----

# An installed web framework and HTTP client, as far as the gate can tell:
# both live under a directory named site-packages.
FAKE_FRAMEWORK = """\
def dispatch(handler, request):
    return handler(request)  # the framework calls the user's handler
"""

FAKE_CLIENT = """\
import time


def get(url):
    time.sleep(0.2)  # the client blocks
    return url
"""

FAKE_APP = """\
from __future__ import annotations

import asyncio
import time

import fakeclient
import fakeframework


def cached(request: str) -> str:
    time.sleep(0.2)  # the handler blocks
    return request


def proxied(request: str) -> str:
    return fakeclient.get(request)  # the handler calls the client


async def test_cached() -> None:
    assert fakeframework.dispatch(cached, "a") == "a"


async def test_proxied() -> None:
    for _ in range(3):
        assert fakeframework.dispatch(proxied, "b") == "b"
        await asyncio.sleep(0)  # each request in its own step
"""


def make_web_project(pytester: pytest.Pytester, *rules: str) -> Path:
    packages = pytester.mkdir("site-packages")
    (packages / "fakeframework.py").write_text(FAKE_FRAMEWORK, encoding="utf-8")
    (packages / "fakeclient.py").write_text(FAKE_CLIENT, encoding="utf-8")
    make_project(
        pytester,
        "asyncspec_clock = virtual",
        "asyncspec_max_blocking = 0.1",
        f"pythonpath = {packages}",
        "asyncspec_allow_blocking =",
        *(f"    {rule}" for rule in rules),
    )
    return pytester.makepyfile(test_app=FAKE_APP)


def test_a_framework_rule_does_not_silence_the_users_handler_below_it(
    pytester: pytest.Pytester,
) -> None:
    """A path rule naming the framework's dispatcher (a frame above the
    user's handler) used to allow every blocking call the handler made; now
    the handler's own time.sleep fails its test, and the client's blocking
    call is reported at the user's line that called into the client."""
    path = make_web_project(pytester, "*/site-packages/fakeframework.py")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    text = output_of(result)
    assert f"Blocking call: {path}:{line_of(path, '# the handler blocks')} in cached" in text
    assert f"Blocking call: {path}:{line_of(path, '# the handler calls')} in proxied" in text
    result.stdout.fnmatch_lines(
        [
            "*= asyncspec: allow-list rules that never fired =*",
            "*/site-packages/fakeframework.py  (no blocking step matched it; remove it?)",
        ]
    )


def test_a_library_frame_between_the_call_and_the_users_code_is_allowed(
    pytester: pytest.Pytester,
) -> None:
    """A rule naming the client (a library frame between the blocking call
    and the user's handler) allows the client's blocking, and only that: the
    handler that sleeps itself still fails.  The run's summary lists which
    rule allowed which steps, and where."""
    path = make_web_project(pytester, "fakeclient.get")
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "PASSED test_app.py::test_proxied",
            "FAILED test_app.py::test_cached - Failed: 1 task step(s) held*",
        ]
    )
    client = line_of(path, "# the handler calls")
    result.stdout.fnmatch_lines(
        [
            "*= asyncspec: blocking steps allowed by rules =*",
            "fakeclient.get -> 3 steps at 1 place:",
            f"  task 'test_proxied' at test_app.py:{client} in proxied: 3 steps, worst 0.2 s, "
            "total 0.6 s (virtual time)",
        ]
    )
    assert "never fired" not in output_of(result)


def test_the_report_fields_carry_blocking_places_and_what_each_rule_allowed(
    pytester: pytest.Pytester,
) -> None:
    """The test's report carries its blocking places (one entry per place)
    and the places each rule allowed, as plain data a controller or another
    tool reads."""
    path = make_web_project(pytester, "fakeclient.get")
    recorder = pytester.inline_run("-p", "no:cacheprovider")
    reports = {
        report.nodeid.rsplit("::", 1)[1]: report
        for report in recorder.getreports("pytest_runtest_logreport")
        if report.when == "call"
    }
    (blocked,) = reports["test_cached"].asyncspec_blocking
    assert blocked["place"] == f"{path}:{line_of(path, '# the handler blocks')} in cached"
    assert (blocked["steps"], blocked["rule"], blocked["clock"]) == (1, None, "virtual")
    (allowed,) = reports["test_proxied"].asyncspec_allowed_blocking
    assert allowed["rule"] == "fakeclient.get"
    assert allowed["place"] == f"{path}:{line_of(path, '# the handler calls')} in proxied"
    assert (allowed["steps"], allowed["worst"], allowed["total"]) == (3, 0.2, pytest.approx(0.6))
    assert not hasattr(reports["test_proxied"], "asyncspec_blocking")


# -- one entry per place under exploration --------------------------------------

EXPLORED_BLOCKING = """\
from __future__ import annotations

import asyncio
import time


async def worker(audits: int) -> None:
    await asyncio.sleep(0)
    time.sleep(0.1)  # the first audit write
    if audits == 2:
        await asyncio.sleep(0)
        time.sleep(0.2)  # the second audit write


async def test_workers() -> None:
    await asyncio.gather(worker({first}), worker({second}))
"""


@pytest.mark.parametrize(
    ("audits", "places"),
    [pytest.param((1, 1), 1, id="one-line"), pytest.param((1, 2), 2, id="two-lines")],
)
def test_exploration_reports_each_blocking_place_once(
    pytester: pytest.Pytester, audits: tuple[int, int], places: int
) -> None:
    """Twenty schedules of a test that blocks at one line used to print
    twenty near-identical entries; now one entry per line says how many steps
    in how many schedules, the worst and total time, and how to replay the
    first schedule, and the run's summary has one line per place."""
    make_project(pytester, "asyncspec_clock = virtual", "asyncspec_max_blocking = 0.05")
    path = pytester.makepyfile(
        test_explored=EXPLORED_BLOCKING.format(first=audits[0], second=audits[1])
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--asyncspec-schedules=20")
    result.assert_outcomes(failed=1)
    text = output_of(result)
    failure = text[: text.index("asyncspec: blocking places")]
    assert failure.count("Blocking call:") == places
    first = line_of(path, "# the first audit write")
    steps = 40 if places == 1 else 60
    head = (
        f"{steps} task step(s) held the event loop longer than max_blocking=0.05 s "
        "during the test, at "
    )
    assert f"{head}{places} place(s):" in failure
    assert "Blocked here 40 steps in 20 schedules, worst 0.1 s, total 4 s (virtual time)" in failure
    assert failure.count("First in schedule 1; replay it with: pytest ") == places
    summary = text[text.index("asyncspec: blocking places") :]
    summary = summary[: summary.index("asyncspec exploration")]
    entries = [line for line in summary.splitlines() if line.startswith("test_explored.py::")]
    assert len(entries) == places
    assert entries[0] == (
        f"test_explored.py::test_workers: task 'worker' at test_explored.py:{first} in worker: "
        "40 steps in 20 schedules, worst 0.1 s, total 4 s (virtual time)"
    )
    if places == 2:
        second = line_of(path, "# the second audit write")
        assert entries[1] == (
            f"test_explored.py::test_workers: task 'worker' at test_explored.py:{second} in "
            "worker: 20 steps in 20 schedules, worst 0.2 s, total 4 s (virtual time)"
        )


def test_the_replay_command_of_a_blocking_place_replays_its_schedule(
    pytester: pytest.Pytester,
) -> None:
    """The command printed for a place's first schedule runs that schedule
    alone: the same place, one run."""
    make_project(pytester, "asyncspec_clock = virtual", "asyncspec_max_blocking = 0.05")
    pytester.makepyfile(test_explored=EXPLORED_BLOCKING.format(first=1, second=1))
    explored = pytester.runpytest("-p", "no:cacheprovider", "--asyncspec-schedules=5")
    (token,) = set(re.findall(r"--asyncspec-replay=(\S+)", output_of(explored)))
    replayed = pytester.runpytest("-p", "no:cacheprovider", f"--asyncspec-replay={token}")
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(
        [
            "2 task step(s) held the event loop longer than max_blocking=0.05 s "
            "during the test, at 1 place(s):",
            "Blocked here 2 steps in 1 schedule, worst 0.1 s, total 0.2 s (virtual time); *",
            "First in the replayed schedule (fifo, seed *); replay it with: pytest *",
        ]
    )


# -- per phase and per place together ---------------------------------------------

PHASED_BLOCKING = """\
from __future__ import annotations

import asyncio
import time

import pytest


@pytest.fixture
async def warm_cache():
    time.sleep(0.2)  # the cache warms up
    yield
    time.sleep(0.2)  # the cache is flushed


async def test_uses_cache(warm_cache) -> None:
    time.sleep(0.2)  # the test blocks
    await asyncio.sleep(0)
"""


def test_each_phase_reports_its_own_places_and_the_summary_counts_each_once(
    pytester: pytest.Pytester,
) -> None:
    """An async fixture allowed to block in its setup and teardown by a rule,
    and a test body that blocks: the setup's and teardown's reports carry
    the allowed places (phase ``setup`` / ``teardown``), the call's the
    failing one, and the run's summary lists each once, marking the
    fixture's places with their phase; the rule has fired."""
    make_project(pytester, "asyncspec_clock = virtual", "asyncspec_max_blocking = 0.1")
    path = pytester.makepyfile(test_phased=PHASED_BLOCKING)
    rule = "test_phased.warm_cache"
    recorder = pytester.inline_run("-p", "no:cacheprovider", f"--asyncspec-allow-blocking={rule}")
    reports = {
        report.when: report
        for report in recorder.getreports("pytest_runtest_logreport")
        if report.nodeid.endswith("test_uses_cache")
    }
    (setup,) = reports["setup"].asyncspec_allowed_blocking
    (teardown,) = reports["teardown"].asyncspec_allowed_blocking
    assert (setup["phase"], setup["rule"], setup["steps"]) == ("setup", rule, 1)
    assert (teardown["phase"], teardown["rule"], teardown["steps"]) == ("teardown", rule, 1)
    (failing,) = reports["call"].asyncspec_blocking
    assert failing["phase"] == "call"
    assert failing["place"].endswith(
        f"test_phased.py:{line_of(path, '# the test blocks')} in test_uses_cache"
    )
    assert not hasattr(reports["call"], "asyncspec_allowed_blocking")
    assert not hasattr(reports["setup"], "asyncspec_blocking")

    result = pytester.runpytest("-p", "no:cacheprovider", f"--asyncspec-allow-blocking={rule}")
    result.assert_outcomes(failed=1)
    warm = line_of(path, "# the cache warms up")
    flush = line_of(path, "# the cache is flushed")
    result.stdout.fnmatch_lines(
        [
            "1 task step(s) held the event loop longer than max_blocking=0.1 s during the test:",
            "*= asyncspec: blocking places =*",
            "test_phased.py::test_uses_cache: task 'test_uses_cache' at test_phased.py:* "
            "in test_uses_cache: 1 step, worst 0.2 s (virtual time)",
            "*= asyncspec: blocking steps allowed by rules =*",
            f"{rule} -> 2 steps at 2 places:",
            f"  task * at test_phased.py:{warm} in warm_cache (at setup): 1 step, *",
            f"  task * at test_phased.py:{flush} in warm_cache (at teardown): 1 step, *",
        ]
    )
    text = output_of(result)
    assert "never fired" not in text
    summary = text[text.index("asyncspec: blocking places") :]
    assert summary.count("in test_uses_cache: 1 step") == 1


def test_a_rule_firing_only_in_a_fixture_setup_has_fired_under_xdist(
    pytester: pytest.Pytester,
) -> None:
    """The never-fired list is computed from the reports' allowed places:
    a rule that only a fixture's setup needed has fired, serially and under
    ``-n 2`` alike."""
    pytest.importorskip("xdist")
    make_project(pytester, "asyncspec_clock = virtual", "asyncspec_max_blocking = 0.1")
    pytester.makepyfile(
        test_setup_only="""
        import time

        import pytest


        @pytest.fixture
        async def slow_start():
            time.sleep(0.2)
            yield


        async def test_a(slow_start) -> None:
            pass


        async def test_b() -> None:
            pass
        """
    )
    for extra in ([], ["-n", "2", *NO_BENCHMARK]):
        result = pytester.runpytest_subprocess(
            "--asyncspec-allow-blocking=test_setup_only.slow_start",
            "--asyncspec-allow-blocking=legacy/*.py",
            *extra,
        )
        result.assert_outcomes(passed=2)
        text = output_of(result)
        never = text.split("allow-list rules that never fired", 1)[1]
        assert "legacy/*.py" in never
        assert "test_setup_only.slow_start" not in never
        assert "test_setup_only.slow_start -> 1 step at 1 place:" in text
