"""How the plugin chooses a test's clock and loop: flags, ini keys, markers.

Every test here runs a small pytest session inside ``pytester`` and observes
the effective choice from *inside* the inner test: the type of the running
loop, how far its clock moved during a sleep, how much real time that sleep
took, and what the ``asyncspec_settings`` fixture reports.  The precedence
under test is command line > marker > ini > default.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from pytester_helpers import NO_BENCHMARK, STRICT_INI

# Inner runs are as strict as this project's own configuration.
BASE_INI = """\
[pytest]
addopts = --strict-markers
filterwarnings = error
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

# Records what an inner test sees into ``<test name>.json`` in the rootdir.
# The real elapsed time is read from CLOCK_MONOTONIC, which the virtual clock
# does not patch, so it shows whether a sleep really waited.
PROBE_MODULE = """\
from __future__ import annotations

import asyncio
import json
import time

import pytest

from pytest_asyncspec import VirtualClockLoop


def real_now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


async def observe(request: pytest.FixtureRequest, settings, sleep: float = 0.1) -> None:
    loop = asyncio.get_running_loop()
    real_start, loop_start, mono_start = real_now(), loop.time(), time.monotonic()
    await asyncio.sleep(sleep)
    record = {
        "virtual": isinstance(loop, VirtualClockLoop),
        "mro": [f"{c.__module__}.{c.__qualname__}" for c in type(loop).__mro__],
        "clock": settings.clock,
        "loop": settings.loop,
        "sources": {name: settings.sources[name] for name in ("clock", "loop")},
        "loop_elapsed": loop.time() - loop_start,
        "monotonic_elapsed": time.monotonic() - mono_start,
        "real_elapsed": real_now() - real_start,
    }
    path = request.config.rootpath / f"{request.node.name}.json"
    path.write_text(json.dumps(record))
"""


# Long enough that a real wait cannot be mistaken for a virtual jump on a
# loaded machine, short enough to keep real-clock runs quick.
PROBE_SLEEP = 0.1

needs_clock_gettime = pytest.mark.skipif(
    not hasattr(time, "clock_gettime"), reason="the probe reads CLOCK_MONOTONIC"
)
pytestmark = needs_clock_gettime


def make_project(pytester: pytest.Pytester, *ini_lines: str) -> None:
    """An inner project with the strict base ini plus ``ini_lines``."""
    pytester.makeini(BASE_INI + "".join(f"{line}\n" for line in ini_lines))
    pytester.makepyfile(probe=PROBE_MODULE)


def probe_test(name: str, marker: str = "", sleep: float = PROBE_SLEEP) -> str:
    """Source of one inner async test that records what it sees."""
    decorator = f"@pytest.mark.asyncspec({marker})\n" if marker else ""
    return (
        f"{decorator}async def {name}(request, asyncspec_settings):\n"
        f"    await observe(request, asyncspec_settings, {sleep!r})\n\n\n"
    )


def probe_module(*tests: str) -> str:
    header = (
        "from __future__ import annotations\n\nimport pytest\n\nfrom probe import observe\n\n\n"
    )
    return header + "".join(tests)


def observed(pytester: pytest.Pytester, name: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((pytester.path / f"{name}.json").read_text())
    return record


def run_one(
    pytester: pytest.Pytester, *args: str, marker: str = "", sleep: float = PROBE_SLEEP
) -> dict[str, Any]:
    """Run one probing test with ``args`` and return what it saw."""
    pytester.makepyfile(test_probe=probe_module(probe_test("test_it", marker, sleep)))
    result = pytester.runpytest("test_probe.py", *args)
    result.assert_outcomes(passed=1)
    return observed(pytester, "test_it")


def assert_virtual(record: dict[str, Any], sleep: float = PROBE_SLEEP) -> None:
    """The test ran on the virtual clock: exact loop time, no real waiting."""
    assert record["virtual"], record["mro"]
    assert record["clock"] == "virtual"
    assert record["loop_elapsed"] == sleep
    assert record["monotonic_elapsed"] == sleep
    assert record["real_elapsed"] < sleep / 2


def assert_real(record: dict[str, Any], sleep: float = PROBE_SLEEP) -> None:
    """The test ran on the real clock: the sleep really waited."""
    assert not record["virtual"], record["mro"]
    assert not any("VirtualClockLoop" in name for name in record["mro"])
    assert record["clock"] == "real"
    assert record["real_elapsed"] >= sleep * 0.9
    assert record["loop_elapsed"] >= sleep * 0.9


# -- defaults ----------------------------------------------------------------


def test_default_is_the_real_clock_on_the_policy_loop(pytester: pytest.Pytester) -> None:
    """Without any opt-in a test runs on the loop the event loop policy builds
    (not a VirtualClockLoop), the ``time`` functions are the builtins, and a
    0.1 s sleep takes real time.
    """
    make_project(pytester)
    pytester.makepyfile(
        test_stock="""
        from __future__ import annotations

        import asyncio
        import time
        import types


        async def test_stock():
            loop = asyncio.get_running_loop()
            fresh = asyncio.new_event_loop()  # what the active policy builds
            try:
                stock_type = type(fresh)
            finally:
                fresh.close()
            assert type(loop) is stock_type, (type(loop), stock_type)
            assert isinstance(time.monotonic, types.BuiltinFunctionType)
            assert isinstance(time.sleep, types.BuiltinFunctionType)
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)

    record = run_one(pytester)
    assert_real(record)
    assert record["sources"] == {"clock": "default", "loop": "default"}
    assert record["loop"] == "asyncio"


def test_default_loop_type_matches_a_run_without_the_plugin(pytester: pytest.Pytester) -> None:
    """The loop an unconfigured suite gets is the very type it gets when the
    plugin is disabled (``-p no:asyncspec``)."""
    make_project(pytester)
    pytester.makepyfile(
        test_loop_type="""
        from __future__ import annotations

        import asyncio


        async def test_record(request):
            loop = asyncio.get_running_loop()
            path = request.config.rootpath / "loop_type.txt"
            with path.open("a") as file:
                file.write(f"{type(loop).__module__}.{type(loop).__qualname__}\\n")
            await asyncio.sleep(0)
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    pytester.runpytest("-p", "no:asyncspec").assert_outcomes(passed=1)
    with_plugin, without_plugin = (pytester.path / "loop_type.txt").read_text().splitlines()
    assert with_plugin == without_plugin


# -- each source on its own ---------------------------------------------------


def test_ini_virtual_beats_default(pytester: pytest.Pytester) -> None:
    """``asyncspec_clock = virtual`` in the ini puts tests on the virtual clock."""
    make_project(pytester, "asyncspec_clock = virtual")
    record = run_one(pytester)
    assert_virtual(record)
    assert record["sources"] == {"clock": "ini", "loop": "default"}


def test_ini_real_is_reported_as_coming_from_the_ini(pytester: pytest.Pytester) -> None:
    """An ini that spells out ``asyncspec_clock = real`` is the source of the
    choice, even though the value equals the default: the settings fixture and
    the report header must not claim ``default`` for something the user wrote."""
    make_project(pytester, "asyncspec_clock = real")
    record = run_one(pytester)
    assert_real(record)
    assert record["sources"]["clock"] == "ini"


def test_cli_virtual_beats_default(pytester: pytest.Pytester) -> None:
    """``--asyncspec-clock=virtual`` alone selects the virtual clock."""
    make_project(pytester)
    record = run_one(pytester, "--asyncspec-clock=virtual")
    assert_virtual(record)
    assert record["sources"]["clock"] == "command line"


def test_marker_virtual_beats_default(pytester: pytest.Pytester) -> None:
    """``@pytest.mark.asyncspec(clock="virtual")`` opts one test in."""
    make_project(pytester)
    record = run_one(pytester, marker="clock='virtual'")
    assert_virtual(record)
    assert record["sources"] == {"clock": "marker", "loop": "default"}


def test_virtual_sleep_of_1000_seconds_is_instant_and_exact(pytester: pytest.Pytester) -> None:
    """Under the virtual clock ``asyncio.sleep(1000)`` moves loop.time() and
    time.monotonic() by exactly 1000 and takes (almost) no real time."""
    make_project(pytester, "asyncspec_clock = virtual")
    started = time.perf_counter()
    record = run_one(pytester, sleep=1000.0)
    assert time.perf_counter() - started < 30
    assert_virtual(record, sleep=1000.0)


# -- pairings ----------------------------------------------------------------


def test_marker_beats_ini(pytester: pytest.Pytester) -> None:
    """A marker wins over the ini key in both directions, test by test."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makepyfile(
        test_probe=probe_module(
            probe_test("test_marked_real", "clock='real'"),
            probe_test("test_unmarked"),
        )
    )
    pytester.runpytest().assert_outcomes(passed=2)
    marked, unmarked = observed(pytester, "test_marked_real"), observed(pytester, "test_unmarked")
    assert_real(marked)
    assert marked["sources"]["clock"] == "marker"
    assert_virtual(unmarked)
    assert unmarked["sources"]["clock"] == "ini"


def test_marker_virtual_beats_ini_real(pytester: pytest.Pytester) -> None:
    """``clock='virtual'`` in a marker wins over ``asyncspec_clock = real``."""
    make_project(pytester, "asyncspec_clock = real")
    record = run_one(pytester, marker="clock='virtual'")
    assert_virtual(record)
    assert record["sources"]["clock"] == "marker"


@pytest.mark.parametrize(
    ("flag", "marker", "check"),
    [
        pytest.param("real", "virtual", assert_real, id="cli-real-over-marker-virtual"),
        pytest.param("virtual", "real", assert_virtual, id="cli-virtual-over-marker-real"),
    ],
)
def test_cli_beats_marker(
    pytester: pytest.Pytester, flag: str, marker: str, check: Callable[[dict[str, Any]], None]
) -> None:
    """The command-line flag overrides a test's marker, in both directions."""
    make_project(pytester)
    record = run_one(pytester, f"--asyncspec-clock={flag}", marker=f"clock={marker!r}")
    check(record)
    assert record["sources"]["clock"] == "command line"


def test_cli_beats_ini_and_marker_together(pytester: pytest.Pytester) -> None:
    """``--asyncspec-clock=virtual`` wins over ini real and marker real at once."""
    make_project(pytester, "asyncspec_clock = real")
    record = run_one(pytester, "--asyncspec-clock=virtual", marker="clock='real'")
    assert_virtual(record)
    assert record["sources"]["clock"] == "command line"


def test_cli_real_reruns_a_virtual_suite_on_the_real_clock(pytester: pytest.Pytester) -> None:
    """A suite configured for the virtual clock (ini and module marker) runs
    entirely on the real clock with ``--asyncspec-clock=real``; without the flag
    the same suite is virtual."""
    make_project(pytester, "asyncspec_clock = virtual")
    source = probe_module(
        probe_test("test_plain"),
        probe_test("test_marked", "clock='virtual'"),
    )
    pytester.makepyfile(test_suite=source)
    pytester.runpytest().assert_outcomes(passed=2)
    assert_virtual(observed(pytester, "test_plain"))
    assert_virtual(observed(pytester, "test_marked"))

    pytester.runpytest("--asyncspec-clock=real").assert_outcomes(passed=2)
    for name in ("test_plain", "test_marked"):
        record = observed(pytester, name)
        assert_real(record)
        assert record["sources"]["clock"] == "command line"


def test_closest_marker_wins_over_module_marker(pytester: pytest.Pytester) -> None:
    """A function's own marker beats a module-level ``pytestmark``; other tests
    in the module follow the module marker."""
    make_project(pytester)
    source = probe_module(
        probe_test("test_module_marker"),
        probe_test("test_own_marker", "clock='real'"),
    ).replace(
        "from probe import observe\n",
        "from probe import observe\n\npytestmark = pytest.mark.asyncspec(clock='virtual')\n",
    )
    pytester.makepyfile(test_probe=source)
    pytester.runpytest().assert_outcomes(passed=2)
    assert_virtual(observed(pytester, "test_module_marker"))
    assert_real(observed(pytester, "test_own_marker"))


def test_markers_anywhere_in_a_real_clock_suite_get_their_loop(
    pytester: pytest.Pytester,
) -> None:
    """In a suite that never opts in globally, the plugin hands pytest-asyncio
    its loop factories only once a marker appears (so unmarked suites are not
    parametrized); tests collected before the first marker keep the stock loop,
    and a marked test after them, a marked class and a later module each get
    the virtual clock."""
    make_project(pytester)
    first = probe_module(
        probe_test("test_plain_first"), probe_test("test_marked", "clock='virtual'")
    )
    pytester.makepyfile(test_a_first=first)
    marked_class = probe_module().replace(
        "from probe import observe\n",
        "from probe import observe\n\n\n@pytest.mark.asyncspec(clock='virtual')\n"
        "class TestMarked:\n"
        "    async def test_in_class(self, request, asyncspec_settings):\n"
        "        await observe(request, asyncspec_settings, 0.1)\n",
    )
    pytester.makepyfile(test_b_class=marked_class)
    pytester.makepyfile(test_c_plain=probe_module(probe_test("test_plain_later")))
    pytester.runpytest().assert_outcomes(passed=4)
    assert_real(observed(pytester, "test_plain_first"))
    assert_virtual(observed(pytester, "test_marked"))
    assert_virtual(observed(pytester, "test_in_class"))
    assert_real(observed(pytester, "test_plain_later"))


def test_an_unmarked_suite_is_not_parametrized_by_loop(pytester: pytest.Pytester) -> None:
    """With nothing asking for another loop, pytest-asyncio sees no loop-factory
    hook: its tests are not parametrized by loop factory."""
    make_project(pytester)
    pytester.makepyfile(
        test_plain="""
        async def test_plain(request):
            assert not hasattr(request.node, "callspec")
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_ini_override_option_counts_as_ini(pytester: pytest.Pytester) -> None:
    """``-o asyncspec_clock=virtual`` behaves like the ini key."""
    make_project(pytester)
    record = run_one(pytester, "-o", "asyncspec_clock=virtual")
    assert_virtual(record)


def test_clock_fixture_reports_the_effective_mode(pytester: pytest.Pytester) -> None:
    """``asyncspec_clock.mode`` follows the effective clock of each test."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makepyfile(
        test_mode="""
        from __future__ import annotations

        import pytest


        async def test_virtual(asyncspec_clock):
            assert asyncspec_clock.mode == "virtual"


        @pytest.mark.asyncspec(clock="real")
        async def test_real(asyncspec_clock):
            assert asyncspec_clock.mode == "real"
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


# -- uvloop on the real clock -------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop does not support Windows")
@pytest.mark.parametrize(
    ("ini_lines", "args", "marker"),
    [
        pytest.param((), ("--asyncspec-loop=uvloop",), "", id="cli"),
        pytest.param(("asyncspec_loop = uvloop",), (), "", id="ini"),
        pytest.param((), (), "loop='uvloop'", id="marker"),
        pytest.param(
            ("asyncspec_clock = virtual",),
            (),
            "clock='real', loop='uvloop'",
            id="marker-on-virtual-suite",
        ),
        pytest.param(
            ("asyncspec_clock = virtual",),
            ("--asyncspec-clock=real", "--asyncspec-loop=uvloop"),
            "",
            id="cli-on-virtual-suite",
        ),
    ],
)
def test_uvloop_on_the_real_clock(
    pytester: pytest.Pytester, ini_lines: tuple[str, ...], args: tuple[str, ...], marker: str
) -> None:
    """uvloop chosen by flag, ini or marker (with the real clock) runs the test
    on a uvloop loop."""
    pytest.importorskip("uvloop")
    make_project(pytester, *ini_lines)
    pytester.makepyfile(
        test_uv=f"""
        from __future__ import annotations

        import asyncio

        import pytest
        import uvloop


        {"@pytest.mark.asyncspec(" + marker + ")" if marker else ""}
        async def test_on_uvloop(asyncspec_settings):
            loop = asyncio.get_running_loop()
            assert isinstance(loop, uvloop.Loop), type(loop).__mro__
            assert asyncspec_settings.loop == "uvloop"
            assert asyncspec_settings.clock == "real"
            await asyncio.sleep(0.01)
        """
    )
    pytester.runpytest(*args).assert_outcomes(passed=1)


# -- report header, markers, help -------------------------------------------


@pytest.mark.parametrize(
    ("ini_lines", "args", "header"),
    [
        pytest.param(
            (), (), "asyncspec: clock=real (default), loop=asyncio (default)", id="default"
        ),
        pytest.param(
            ("asyncspec_clock = virtual",),
            (),
            "asyncspec: clock=virtual (ini), loop=asyncio (default)",
            id="ini",
        ),
        pytest.param(
            ("asyncspec_clock = virtual",),
            ("--asyncspec-clock=real", "--asyncspec-loop=uvloop"),
            "asyncspec: clock=real (command line), loop=uvloop (command line)",
            id="command-line",
        ),
    ],
)
def test_report_header_shows_effective_settings(
    pytester: pytest.Pytester, ini_lines: tuple[str, ...], args: tuple[str, ...], header: str
) -> None:
    """The session header names the effective clock and loop and their sources."""
    make_project(pytester, *ini_lines)
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([header])


def test_marker_is_registered_with_its_signature(pytester: pytest.Pytester) -> None:
    """``pytest --markers`` lists the asyncspec marker and its keywords."""
    make_project(pytester)
    result = pytester.runpytest("--markers")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["@pytest.mark.asyncspec(clock='virtual'|'manual'|'real', loop='asyncio'|'uvloop', *): *"]
    )


def test_marker_passes_strict_markers(pytester: pytest.Pytester) -> None:
    """Using the marker under ``--strict-markers`` is not an error."""
    make_project(pytester)
    record = run_one(pytester, "--strict-markers", marker="clock='real'")
    assert_real(record)


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    """``--help`` shows both flags with their choices, and both ini keys."""
    make_project(pytester)
    result = pytester.runpytest("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "*--asyncspec-clock=virtual|manual|real*",
            "*--asyncspec-loop=asyncio|uvloop*",
        ]
    )
    result.stdout.fnmatch_lines(["*asyncspec_clock (string)*"])
    result.stdout.fnmatch_lines(["*asyncspec_loop (string)*"])


# -- sanity: nothing changes where the plugin has no business -----------------

SYNC_SUITE = """
from __future__ import annotations

import time
import types

import pytest


def test_time_is_real_in_sync_tests():
    assert isinstance(time.monotonic, types.BuiltinFunctionType)
    assert isinstance(time.sleep, types.BuiltinFunctionType)
    started = time.clock_gettime(time.CLOCK_MONOTONIC)
    time.sleep(0.02)
    assert time.clock_gettime(time.CLOCK_MONOTONIC) - started >= 0.018


def test_fails():
    assert 1 == 2


@pytest.mark.skip(reason="skipped on purpose")
def test_skipped():
    pass


@pytest.mark.xfail(reason="fails on purpose", strict=True)
def test_xfail():
    assert False


@pytest.mark.parametrize("n", [1, 2, 3])
def test_param(n):
    assert n > 0
"""


@pytest.mark.parametrize("clock", ["virtual", "real"])
def test_sync_suite_has_the_same_outcome_with_and_without_plugin(
    pytester: pytest.Pytester, clock: str
) -> None:
    """A suite of sync tests that never touches asyncio gets identical outcomes
    (and real time) with the plugin on either clock and with it disabled."""
    pytester.makepyfile(test_sync=SYNC_SUITE)
    make_project(pytester, f"asyncspec_clock = {clock}")
    with_plugin = pytester.runpytest()
    make_project(pytester)  # the ini key would be unknown without the plugin
    without_plugin = pytester.runpytest("-p", "no:asyncspec")
    expected = {"passed": 4, "failed": 1, "skipped": 1, "xfailed": 1}
    with_plugin.assert_outcomes(**expected)
    without_plugin.assert_outcomes(**expected)
    assert with_plugin.ret == without_plugin.ret == pytest.ExitCode.TESTS_FAILED


def test_suite_without_pytest_asyncio_markers_is_unaffected(pytester: pytest.Pytester) -> None:
    """Sync tests next to async ones are untouched by a virtual-clock suite:
    they still see the real ``time`` functions and no running loop."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makepyfile(
        test_mixed="""
        from __future__ import annotations

        import asyncio
        import time
        import types

        import pytest

        from pytest_asyncspec import VirtualClockLoop


        async def test_async_first():
            assert isinstance(asyncio.get_running_loop(), VirtualClockLoop)
            await asyncio.sleep(5)


        def test_sync_after():
            with pytest.raises(RuntimeError):
                asyncio.get_running_loop()
            assert isinstance(time.monotonic, types.BuiltinFunctionType)
            assert isinstance(time.time, types.BuiltinFunctionType)
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_xdist_workers_get_the_same_settings(pytester: pytest.Pytester) -> None:
    """With pytest-xdist, every worker resolves the same settings (flag and
    marker) as a single process would."""
    pytest.importorskip("xdist")
    make_project(pytester)
    source = probe_module(
        *(probe_test(f"test_cli_{i}") for i in range(3)),
        probe_test("test_marker_loses", "clock='real'"),
    )
    pytester.makepyfile(test_probe=source)
    result = pytester.runpytest_subprocess("-n", "2", *NO_BENCHMARK, "--asyncspec-clock=virtual")
    result.assert_outcomes(passed=4)
    for name in ("test_cli_0", "test_cli_1", "test_cli_2", "test_marker_loses"):
        assert_virtual(observed(pytester, name))


def test_a_marker_added_after_collection_is_a_clear_error(pytester: pytest.Pytester) -> None:
    """A conftest hook that adds ``asyncspec(clock='virtual')`` once the tests
    are collected is too late for pytest-asyncio's choice of loop: a usage
    error says so and where to put the marker instead, rather than running the
    test on the stock loop while it believes it has the virtual clock."""
    make_project(pytester)
    pytester.makeconftest(
        """
        import pytest

        def pytest_collection_modifyitems(items):
            for item in items:
                item.add_marker(pytest.mark.asyncspec(clock="virtual"))
        """
    )
    pytester.makepyfile(test_late="async def test_late():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*test_late.py::test_late: asks for clock=virtual, loop=asyncio, but its asyncspec "
            "marker arrived after the test was collected*pytestmark*"
        ]
    )


def test_markers_merge_keyword_by_keyword_the_nearest_winning(pytester: pytest.Pytester) -> None:
    """A test's own marker setting one keyword keeps the module marker's others
    (it used to replace the module marker whole: exploration and the leak
    check silently went away for that test)."""
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        test_merge="""
        import pytest

        pytestmark = pytest.mark.asyncspec(clock="virtual", leaks="error", max_blocking=1.0)


        @pytest.mark.asyncspec(max_blocking=0.1)
        async def test_own(asyncspec_settings):
            s = asyncspec_settings
            assert (s.clock, s.leaks, s.max_blocking) == ("virtual", "error", 0.1)
            assert s.sources["leaks"] == s.sources["max_blocking"] == "marker"


        async def test_module_only(asyncspec_settings):
            assert asyncspec_settings.max_blocking == 1.0
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)
