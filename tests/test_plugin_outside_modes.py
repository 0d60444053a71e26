"""Async tests that run on no loop the plugin reaches (neither
pytest-asyncio's, nor anyio's asyncio backend's, nor the one unittest's
IsolatedAsyncioTestCase makes) get none of the modes; the run summary says
how many ran that way, and why, instead of staying silent."""

from __future__ import annotations

import pytest
from pytester_helpers import NO_BENCHMARK, assert_usage_error, output_of

# Strict mode, so that aiohttp's own plugin runs its unmarked coroutine tests.
STRICT_MODE_INI = """\
[pytest]
addopts = --strict-markers
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
asyncspec_clock = virtual
asyncspec_max_blocking = 0.5
"""

UNITTEST_CASES = """
import asyncio
import unittest


VIRTUAL = True


class Service(unittest.IsolatedAsyncioTestCase):
    async def test_sleeps(self):
        await asyncio.sleep(0.01)

    async def test_reads_its_loop(self):
        # Within the modes: the loop the run asks for (the stock one when no
        # clock is asked for).
        assert (type(asyncio.get_running_loop()).__name__ == "ExploringLoop") is VIRTUAL

    def test_sync_method(self):
        pass


class WithAsyncSetUp(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        await asyncio.sleep(0)

    def test_sync_after_async_set_up(self):
        pass


class Plain(unittest.TestCase):
    def test_plain(self):
        pass
"""

#: The same cases in a run that asks for no clock.
ON_THE_STOCK_LOOP = UNITTEST_CASES.replace("VIRTUAL = True", "VIRTUAL = False")

ANYIO_TESTS = """
import anyio
import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.mark.anyio
async def test_on_anyio():
    await anyio.sleep(0.01)
"""

PYTEST_ASYNCIO_TESTS = """
import asyncio

import pytest


@pytest.mark.asyncio
async def test_on_the_virtual_clock():
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.sleep(3600)
    assert loop.time() - started == 3600


def test_sync():
    pass
"""


def _summary(pytester: pytest.Pytester, *args: str) -> str:
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    return output_of(result)


def test_the_summary_counts_async_tests_outside_the_modes_by_reason(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_MODE_INI)
    pytester.makeconftest('pytest_plugins = "aiohttp.pytest_plugin"\n')
    pytester.makepyfile(
        test_unittest=UNITTEST_CASES,
        test_anyio=ANYIO_TESTS,
        test_ours=PYTEST_ASYNCIO_TESTS,
        test_aiohttp=(
            "import asyncio\n\nasync def test_with_aiohttp_loop(loop):\n"
            "    await asyncio.sleep(0.01)\n"
        ),
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning")
    # anyio's test runs twice (its asyncio and trio backends).
    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(
        [
            "*asyncspec: async tests outside the modes*",
            "2 async tests ran without clock=virtual, max_blocking=0.5: the modes act on the "
            "asyncio loops of pytest-asyncio, of anyio's asyncio backend and of unittest's "
            "IsolatedAsyncioTestCase, and these ran elsewhere",
            "  1: *",
            "  1: *",
        ]
    )
    output = output_of(result)
    assert (
        "anyio runs it on the trio backend, and asyncspec acts on asyncio loops only (a test "
        "parametrized over backends gets the modes in its asyncio variant): "
        "test_anyio.py::test_on_anyio[trio]" in output
    )
    assert "test_on_anyio[asyncio]" not in output.split("outside the modes")[1]
    # The aiohttp plugin's test is outside too (a marker on it is an error).
    assert (
        "the pytest plugin aiohttp.pytest_plugin runs it: "
        "test_aiohttp.py::test_with_aiohttp_loop[pyloop]" in output
    )
    # Tests pytest-asyncio runs, unittest's IsolatedAsyncioTestCase tests
    # (tests/test_plugin_unittest_cases.py) and sync tests are not counted.
    assert "test_unittest.py" not in output.split("outside the modes")[1]
    for name in ("test_on_the_virtual_clock", "test_sync_method", "test_plain", "test_sync "):
        assert name not in output.split("outside the modes")[1]


def test_nothing_is_said_when_no_mode_is_on(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        STRICT_MODE_INI.replace("asyncspec_clock = virtual\n", "").replace(
            "asyncspec_max_blocking = 0.5\n", ""
        )
    )
    pytester.makepyfile(test_unittest=ON_THE_STOCK_LOOP, test_anyio=ANYIO_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=7)
    assert "outside the modes" not in output_of(result)


def test_nothing_is_said_when_pytest_asyncio_runs_every_async_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_MODE_INI)
    pytester.makepyfile(test_ours=PYTEST_ASYNCIO_TESTS)
    assert "outside the modes" not in _summary(pytester)


def test_a_mode_asked_for_by_the_ini_is_named(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        STRICT_MODE_INI.replace("asyncspec_clock = virtual\n", "asyncspec_trace = on\n")
    )
    pytester.makepyfile(test_unittest=ON_THE_STOCK_LOOP, test_anyio=ANYIO_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(["1 async test ran without max_blocking=0.5, trace=on: *"])


def test_under_xdist_the_controller_counts_the_workers_tests(pytester: pytest.Pytester) -> None:
    pytester.makeini(STRICT_MODE_INI)
    pytester.makepyfile(
        test_unittest=UNITTEST_CASES, test_ours=PYTEST_ASYNCIO_TESTS, test_anyio=ANYIO_TESTS
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", *NO_BENCHMARK)
    result.assert_outcomes(passed=9)
    result.stdout.fnmatch_lines(["1 async test ran without clock=virtual, max_blocking=0.5: *"])


def test_the_marker_on_a_test_another_plugin_runs_names_that_plugin(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_MODE_INI)
    pytester.makeconftest('pytest_plugins = "aiohttp.pytest_plugin"\n')
    pytester.makepyfile(
        test_aiohttp=(
            "import asyncio\n\nimport pytest\n\n@pytest.mark.asyncspec(trace=True)\n"
            "async def test_with_aiohttp_loop(loop):\n    await asyncio.sleep(0.01)\n"
        ),
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning")
    assert_usage_error(
        result,
        "ERROR: test_aiohttp.py::test_with_aiohttp_loop*: pytest-asyncio does not run this "
        "async test (the pytest plugin aiohttp.pytest_plugin runs it), so "
        "@pytest.mark.asyncspec *",
    )


def test_the_marker_on_an_anyio_test_on_trio_is_no_error_and_the_summary_names_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_MODE_INI)
    pytester.makepyfile(
        test_anyio=ANYIO_TESTS.replace(
            "@pytest.mark.anyio\n", "@pytest.mark.anyio\n@pytest.mark.asyncspec(trace=True)\n"
        )
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "1 async test ran without clock=virtual, max_blocking=0.5, trace=on: *",
            "  1: anyio runs it on the trio backend, *: test_anyio.py::test_on_anyio[[]trio[]]",
        ]
    )
