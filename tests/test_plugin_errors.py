"""How the plugin reports bad input and failed timing claims.

A user who mistypes a flag, an ini value or a marker keyword must get one
clear line that names what was wrong and what is accepted, never a deep
traceback through pluggy and the plugin's internals, and never silence.
"""

from __future__ import annotations

import fnmatch
import re
import sys

import pytest
from pytester_helpers import output_of

BASE_INI = """\
[pytest]
addopts = --strict-markers
filterwarnings = error
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

# A frame line of pytest's traceback: "path/to/file.py:123: in function".
FRAME_LINE = re.compile(r"^\S+\.py:\d+: in \S+", re.MULTILINE)


def make_project(pytester: pytest.Pytester, *ini_lines: str) -> None:
    pytester.makeini(BASE_INI + "".join(f"{line}\n" for line in ini_lines))


def assert_no_traceback(result: pytest.RunResult) -> None:
    """The output has no Python traceback and no frames of plugin internals."""
    text = output_of(result)
    assert "Traceback" not in text
    assert "During handling of the above exception" not in text
    assert "INTERNALERROR" not in text
    assert "pluggy/" not in text
    assert "pytest_asyncspec/" not in text
    frames = FRAME_LINE.findall(text)
    assert not frames, frames


def assert_usage_error(result: pytest.RunResult, *patterns: str) -> None:
    """A usage error (exit code 4) whose stderr matches ``patterns`` in order."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output_of(result)
    result.stderr.fnmatch_lines(list(patterns))
    assert_no_traceback(result)


def assert_clean_test_error(result: pytest.RunResult, *patterns: str) -> None:
    """A run that stops on a marker error: the message matches ``patterns``,
    no test passed, and no traceback is shown.

    Either a usage error (exit code 4) or a collection error (exit code 2) is
    accepted: both stop the run before any test executes.
    """
    assert result.ret in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERRUPTED), output_of(
        result
    )
    assert result.parseoutcomes().get("passed", 0) == 0
    text = output_of(result)
    lines = text.splitlines()
    for pattern in patterns:
        assert any(fnmatch.fnmatch(line, pattern) for line in lines), (
            f"{pattern!r} not in output:\n{text}"
        )
    assert_no_traceback(result)


ASYNC_TEST = "async def test_it():\n    pass\n"
SYNC_TEST = "def test_it():\n    pass\n"


# -- command line and ini -----------------------------------------------------


def test_invalid_clock_flag_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """``--asyncspec-clock=sometimes`` stops the run and names both choices."""
    make_project(pytester)
    pytester.makepyfile(test_a=ASYNC_TEST)
    result = pytester.runpytest("--asyncspec-clock=sometimes")
    assert_usage_error(
        result, "ERROR: --asyncspec-clock: invalid clock 'sometimes'; expected one of *"
    )
    result.stderr.fnmatch_lines(["*'virtual'*'real'*"])


def test_invalid_loop_flag_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """``--asyncspec-loop=trio`` stops the run and names both loops."""
    make_project(pytester)
    pytester.makepyfile(test_a=ASYNC_TEST)
    result = pytester.runpytest("--asyncspec-loop=trio")
    assert_usage_error(
        result,
        "ERROR: --asyncspec-loop: invalid loop 'trio'; expected one of 'asyncio', 'uvloop'",
    )


def test_invalid_ini_clock_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """A bad ``asyncspec_clock`` ini value names the key and the accepted values."""
    make_project(pytester, "asyncspec_clock = sometimes")
    pytester.makepyfile(test_a=ASYNC_TEST)
    result = pytester.runpytest()
    assert_usage_error(
        result,
        "ERROR: ini key asyncspec_clock: invalid clock 'sometimes'; "
        "expected one of 'virtual', 'manual', 'real'",
    )


def test_invalid_ini_loop_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """A bad ``asyncspec_loop`` ini value names the key and the accepted values."""
    make_project(pytester, "asyncspec_loop = tokio")
    pytester.makepyfile(test_a=SYNC_TEST)
    result = pytester.runpytest()
    assert_usage_error(
        result,
        "ERROR: ini key asyncspec_loop: invalid loop 'tokio'; expected one of 'asyncio', 'uvloop'",
    )


def test_invalid_ini_value_is_rejected_even_when_the_flag_overrides_it(
    pytester: pytest.Pytester,
) -> None:
    """A broken ini is reported even if the command line would override it, so
    the mistake does not lie dormant until someone drops the flag."""
    make_project(pytester, "asyncspec_clock = virtaul")
    pytester.makepyfile(test_a=SYNC_TEST)
    result = pytester.runpytest("--asyncspec-clock=real")
    assert_usage_error(result, "ERROR: ini key asyncspec_clock: invalid clock 'virtaul'*")


@pytest.mark.parametrize(
    ("ini_lines", "args"),
    [
        pytest.param(("asyncspec_clock = virtual",), ("--asyncspec-loop=uvloop",), id="ini+cli"),
        pytest.param(("asyncspec_loop = uvloop",), ("--asyncspec-clock=virtual",), id="cli+ini"),
        pytest.param(("asyncspec_clock = virtual", "asyncspec_loop = uvloop"), (), id="ini+ini"),
        pytest.param((), ("--asyncspec-clock=virtual", "--asyncspec-loop=uvloop"), id="cli+cli"),
    ],
)
def test_virtual_clock_on_uvloop_is_a_usage_error(
    pytester: pytest.Pytester, ini_lines: tuple[str, ...], args: tuple[str, ...]
) -> None:
    """The virtual clock cannot run on uvloop: asking for both from the ini or
    the command line stops the run and names ``--asyncspec-clock=real``."""
    make_project(pytester, *ini_lines)
    pytester.makepyfile(test_a=ASYNC_TEST)
    result = pytester.runpytest(*args)
    assert_usage_error(result, "ERROR: the virtual clock (from *) cannot run on uvloop (from *)*")
    result.stderr.fnmatch_lines(["*--asyncspec-clock=real*"])


# -- markers ------------------------------------------------------------------

MARKER_CASES = [
    pytest.param(
        "clock='sometimes'",
        "*test_marked.py::test_it: @pytest.mark.asyncspec: invalid clock 'sometimes'; "
        "expected one of 'virtual', 'manual', 'real'*",
        id="invalid-clock",
    ),
    pytest.param(
        "loop='tokio'",
        "*test_marked.py::test_it: @pytest.mark.asyncspec: invalid loop 'tokio'; "
        "expected one of 'asyncio', 'uvloop'*",
        id="invalid-loop",
    ),
    pytest.param(
        "clok='virtual'",
        "*test_marked.py::test_it: @pytest.mark.asyncspec: unknown keyword 'clok'; "
        "did you mean 'clock'? accepted keywords are clock, loop*",
        id="unknown-keyword",
    ),
    pytest.param(
        "'virtual'",
        "*test_marked.py::test_it: @pytest.mark.asyncspec takes keywords only*"
        "got positional ('virtual',)*",
        id="positional",
    ),
]


@pytest.mark.parametrize(("marker", "message"), MARKER_CASES)
def test_bad_marker_on_sync_test_is_a_clear_error(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    """A bad asyncspec marker on a sync test is rejected (not ignored) with a
    message naming the test and what is accepted."""
    make_project(pytester)
    pytester.makepyfile(
        test_marked=f"import pytest\n\n\n@pytest.mark.asyncspec({marker})\n{SYNC_TEST}"
    )
    result = pytester.runpytest()
    assert_clean_test_error(result, message)


@pytest.mark.parametrize(("marker", "message"), MARKER_CASES)
def test_bad_marker_on_async_test_is_a_clear_error(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    """A bad asyncspec marker on an async test is rejected with the same short
    message as on a sync test, without a traceback through pluggy,
    pytest-asyncio and the plugin's settings module."""
    make_project(pytester)
    pytester.makepyfile(
        test_marked=f"import pytest\n\n\n@pytest.mark.asyncspec({marker})\n{ASYNC_TEST}"
    )
    result = pytester.runpytest()
    assert_clean_test_error(result, message)


def test_bad_marker_is_not_ignored_among_good_tests(pytester: pytest.Pytester) -> None:
    """One misspelt marker keyword stops the run even when other tests are fine
    (a silently ignored ``clok=`` would leave that test on the wrong clock)."""
    make_project(pytester)
    pytester.makepyfile(
        test_ok=f"{SYNC_TEST}",
        test_marked=f"import pytest\n\n\n@pytest.mark.asyncspec(clok='real')\n{SYNC_TEST}",
    )
    result = pytester.runpytest()
    assert_clean_test_error(result, "*unknown keyword 'clok'*")


def test_uvloop_marker_on_virtual_suite_names_test_and_alternative(
    pytester: pytest.Pytester,
) -> None:
    """``@pytest.mark.asyncspec(loop="uvloop")`` in a virtual-clock suite is an
    error that names the test and the real-clock alternative, with no traceback."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makepyfile(
        test_marked=f"import pytest\n\n\n@pytest.mark.asyncspec(loop='uvloop')\n{ASYNC_TEST}"
    )
    result = pytester.runpytest()
    assert_clean_test_error(
        result,
        "*test_marked.py::test_it: the virtual clock (from ini) cannot run on uvloop "
        "(from marker)*",
    )
    assert "--asyncspec-clock=real" in output_of(result)
    assert "clock='real'" in output_of(result)


# -- the clock fixture outside a loop ----------------------------------------


@pytest.mark.parametrize("use", ["now()", "mode", "reset()", "measure().__enter__()"])
def test_clock_fixture_in_sync_test_explains_itself(pytester: pytest.Pytester, use: str) -> None:
    """Reading ``asyncspec_clock`` in a sync test fails with NoRunningLoopError
    telling the user to read it inside a coroutine / an ``async def`` test."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makepyfile(
        test_sync_clock=f"""
        def test_reads_clock(asyncspec_clock):
            asyncspec_clock.{use}
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E   *NoRunningLoopError: the asyncspec clock reads the running event loop's "
            "time, and no loop is running here.*",
        ]
    )
    text = output_of(result)
    assert "inside a coroutine" in text
    assert "async def" in text


# -- timing assertion messages -------------------------------------------------


def test_virtual_timing_failure_shows_expected_measured_and_mode(
    pytester: pytest.Pytester,
) -> None:
    """Five sequential 5 s sleeps claimed to take 5 s fail with a message
    showing 5.0 expected, 25.0 measured and the virtual clock, pointing at the
    test line rather than at the plugin's internals."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makepyfile(
        test_timing="""
        import asyncio


        async def test_five_sleeps(asyncspec_clock):
            with asyncspec_clock.measure() as span:
                for _ in range(5):
                    await asyncio.sleep(5)
            asyncspec_clock.assert_time(span.elapsed, 5.0, what="five sleeps")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            '>*asyncspec_clock.assert_time(span.elapsed, 5.0, what="five sleeps")',
            "E   *TimingAssertionError: five sleeps: expected 5.0 s, measured 25.0 s "
            "(virtual clock*",
        ]
    )
    assert "pytest_asyncspec/checks/timing.py" not in output_of(result)


def test_virtual_timing_success_when_gathered(pytester: pytest.Pytester) -> None:
    """The same claim holds when the sleeps are gathered (control for the test
    above: the assertion is not simply always failing)."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makepyfile(
        test_timing="""
        import asyncio


        async def test_five_sleeps(asyncspec_clock):
            with asyncspec_clock.measure() as span:
                await asyncio.gather(*(asyncio.sleep(5) for _ in range(5)))
            asyncspec_clock.assert_time(span.elapsed, 5.0, what="five sleeps")
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_real_timing_failure_shows_expected_measured_and_window(
    pytester: pytest.Pytester,
) -> None:
    """On the real clock the failure shows expected, measured (the real figure)
    and the accepted window."""
    make_project(pytester)
    pytester.makepyfile(
        test_timing="""
        import asyncio


        async def test_three_sleeps(asyncspec_clock):
            with asyncspec_clock.measure() as span:
                for _ in range(3):
                    await asyncio.sleep(0.1)
            asyncspec_clock.assert_time(span.elapsed, 0.1, what="three sleeps")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            # The window's top grows by the time the loop waited for a CPU
            # (on a loaded machine, tenths of a second): only its foot is fixed.
            "E   *TimingAssertionError: three sleeps: expected 0.1 s, measured * s "
            "(real clock, accepted 0.089 s to * s with tolerance*",
        ]
    )
    measured = re.search(r"three sleeps: expected 0\.1 s, measured ([0-9.]+) s", output_of(result))
    assert measured is not None
    assert float(measured.group(1)) >= 0.29


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop does not support Windows")
def test_uvloop_with_real_clock_runs_timing_assertions(pytester: pytest.Pytester) -> None:
    """uvloop on the real clock still gets real-clock timing assertions."""
    pytest.importorskip("uvloop")
    make_project(pytester, "asyncspec_loop = uvloop")
    pytester.makepyfile(
        test_timing="""
        import asyncio


        async def test_gathered(asyncspec_clock):
            assert asyncspec_clock.mode == "real"
            with asyncspec_clock.measure() as span:
                await asyncio.gather(*(asyncio.sleep(0.05) for _ in range(5)))
            asyncspec_clock.assert_time(span.elapsed, 0.05, what="gathered")
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


# -- tests the plugin cannot act on --------------------------------------------


def test_missing_uvloop_asked_for_the_whole_run_is_one_usage_error(
    pytester: pytest.Pytester,
) -> None:
    """Without uvloop, --asyncspec-loop=uvloop stops the run at start-up with one
    message naming the cure, not a collection traceback per module."""
    make_project(pytester)
    # The conftest hides the installed uvloop (a subprocess keeps it hidden there only).
    pytester.makeconftest("import sys\n\nsys.modules['uvloop'] = None\n")
    pytester.makepyfile(test_a=ASYNC_TEST, test_b=ASYNC_TEST)
    result = pytester.runpytest_subprocess("--asyncspec-loop=uvloop")
    assert_usage_error(
        result,
        "ERROR: loop=uvloop (from command line): *uvloop is not installed*pip install uvloop*",
    )


def test_an_async_test_pytest_asyncio_does_not_run_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    """In strict mode, an async test without @pytest.mark.asyncio that carries
    the asyncspec marker (or uses a loop fixture) is not run by pytest-asyncio:
    the error says so, not that the test is not async."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_marked="import pytest\n\n\n@pytest.mark.asyncspec(clock='virtual')\n" + ASYNC_TEST,
        test_fixture="async def test_clock(asyncspec_clock):\n    pass\n",
    )
    for path in ("test_marked.py", "test_fixture.py"):
        result = pytester.runpytest(path)
        assert_usage_error(
            result,
            "ERROR: *: pytest-asyncio does not run this async test (strict mode*"
            "add @pytest.mark.asyncio to it, or set asyncio_mode = auto*",
        )


def test_the_marker_on_a_sync_test_is_an_error_but_a_module_marker_is_not(
    pytester: pytest.Pytester,
) -> None:
    """A sync test's own asyncspec marker would be silently ignored, so it is an
    error; a module-wide marker applies to the module's async tests and leaves
    its sync tests alone."""
    make_project(pytester)
    pytester.makepyfile(
        test_own="import pytest\n\n\n@pytest.mark.asyncspec(max_blocking=0.01)\n" + SYNC_TEST,
        test_module=(
            "import pytest\n\npytestmark = pytest.mark.asyncspec(clock='virtual')\n\n\n"
            + SYNC_TEST
            + "\n\n"
            + ASYNC_TEST.replace("test_it", "test_async")
        ),
    )
    result = pytester.runpytest("test_own.py")
    assert_usage_error(result, "ERROR: test_own.py::test_it: *this test is not async*")
    pytester.runpytest("test_module.py").assert_outcomes(passed=2)


def test_a_value_pasted_with_toml_quotes_says_to_remove_them(pytester: pytest.Pytester) -> None:
    make_project(pytester, 'asyncspec_clock = "virtual"')
    pytester.makepyfile(test_a=ASYNC_TEST)
    assert_usage_error(
        pytester.runpytest(),
        "ERROR: ini key asyncspec_clock: invalid clock '\"virtual\"'*"
        "(remove the quotes: pytest.ini takes virtual, unquoted)",
    )


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("", "*an empty rule was given; give a rule, or leave the flag out"),
        ("chat.broker:hash_password", "*did you mean 'chat.broker.hash_password'?*"),
    ],
    ids=["empty", "entry-point-style"],
)
def test_allow_rule_slips_are_explained(pytester: pytest.Pytester, rule: str, message: str) -> None:
    make_project(pytester)
    pytester.makepyfile(test_a=ASYNC_TEST)
    assert_usage_error(pytester.runpytest(f"--asyncspec-allow-blocking={rule}"), message)


def test_a_deadlock_report_shows_no_frames_of_the_plugin(pytester: pytest.Pytester) -> None:
    """The deadlock message is what matters; the loop's and the plugin's own
    frames used to come first, with the source of their functions."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makepyfile(
        test_stuck="""
        import asyncio

        async def test_waits_for_nothing():
            await asyncio.get_running_loop().create_future()
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    text = output_of(result)
    assert "DeadlockError" in text
    assert not [line for line in FRAME_LINE.findall(text) if "pytest_asyncspec" in line]
    assert "pytest_asyncspec/clock/virtual_loop.py" not in text
