"""Tests that anyio's pytest plugin runs get the modes on its asyncio backend.

Each test runs an inner pytest session in pytest-asyncio's strict mode (the
mode anyio users keep: anyio's plugin, not pytest-asyncio, runs their tests),
with trio installed, so that anyio's own ``anyio_backend`` fixture runs each
test on both backends: the asyncio variant gets the modes, the trio variant
is named as outside them.
"""

from __future__ import annotations

import json

import pytest
from pytester_helpers import failure_sections, line_of, output_of

pytest.importorskip("trio")

ANYIO_INI = """\
[pytest]
addopts = --strict-markers
filterwarnings = error
asyncio_default_fixture_loop_scope = function
"""


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


VIRTUAL_TESTS = """\
import asyncio
import time

import json

import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture
async def warmed_up():
    await asyncio.sleep(10)
    yield asyncio.get_running_loop()
    await asyncio.sleep(5)


async def test_an_hour_passes_at_once(warmed_up, asyncspec_clock, asyncspec_settings):
    assert asyncspec_settings.clock == "virtual"
    loop = asyncio.get_running_loop()
    # The async fixture ran on the same loop, on its clock.
    assert loop is warmed_up
    assert loop.time() == 10.0
    real = time.perf_counter_ns()
    with asyncspec_clock.measure() as span:
        await asyncio.sleep(3600)
    asyncspec_clock.assert_time(span.elapsed, 3600)
    assert type(loop).__name__ == "ExploringLoop"
"""


def test_an_anyio_test_and_its_async_fixture_run_on_the_virtual_clock(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(ANYIO_INI + "asyncspec_clock = virtual\n")
    pytester.makepyfile(test_virtual_anyio=VIRTUAL_TESTS)
    result = _run(pytester, "-W", "ignore::pytest.PytestUnraisableExceptionWarning")
    # The trio variant fails on asyncio.get_running_loop(): the test is asyncio's.
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*test_an_hour_passes_at_once*trio*"])
    text = output_of(result)
    assert "test_an_hour_passes_at_once[asyncio]" not in failure_sections(result), text


def test_the_marker_and_the_command_line_choose_an_anyio_test_s_clock(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(ANYIO_INI)
    pytester.makepyfile(
        test_chosen="""\
import asyncio

import json

import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.asyncspec(clock="manual")
async def test_manual(asyncspec_clock):
    ticks = []

    async def tick():
        while True:
            await asyncio.sleep(1)
            ticks.append(asyncspec_clock.now())

    task = asyncio.create_task(tick())
    await asyncspec_clock.advance(2.5)
    assert ticks == [1.0, 2.0]
    task.cancel()


@pytest.mark.anyio
async def test_default(asyncspec_settings):
    loop = asyncio.get_running_loop()
    expected = {"real": "_UnixSelectorEventLoop", "virtual": "ExploringLoop"}
    assert type(loop).__name__ == expected[asyncspec_settings.clock]
"""
    )
    _run(pytester).assert_outcomes(passed=2)
    _run(pytester, "--asyncspec-clock=virtual", "-k", "default").assert_outcomes(
        passed=1, deselected=1
    )


def test_a_blocking_call_in_an_anyio_test_fails_it_naming_the_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(ANYIO_INI + "asyncspec_clock = virtual\nasyncspec_max_blocking = 0.05\n")
    pytester.makepyfile(
        test_gated="""\
import time

import json

import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_blocks():
    time.sleep(0.2)
"""
    )
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    line = line_of(pytester.path / "test_gated.py", "time.sleep(0.2)")
    sections = failure_sections(result)
    assert "blocked the event loop for 0.2 s (virtual time" in sections, output_of(result)
    assert f"test_gated.py:{line} in test_blocks" in sections


def test_a_task_an_anyio_test_leaves_is_a_leak_and_anyio_s_runner_task_is_not(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(ANYIO_INI + "asyncspec_leaks = error\n")
    pytester.makepyfile(
        test_leaky="""\
import asyncio

import json

import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
async def server():
    yield "up"


@pytest.mark.anyio
async def test_leaves_a_task(server):
    asyncio.get_running_loop().create_task(asyncio.sleep(1000), name="forgotten")


@pytest.mark.anyio
async def test_clean(server):
    await asyncio.sleep(0)
"""
    )
    result = _run(pytester)
    result.assert_outcomes(passed=2, errors=1)
    sections = failure_sections(result)
    assert "task 'forgotten' (sleep)" in sections, output_of(result)
    assert "_run_tests_and_fixtures" not in sections


def test_an_anyio_test_is_explored_and_its_failure_replays(pytester: pytest.Pytester) -> None:
    pytester.makeini(ANYIO_INI)
    pytester.makepyfile(
        test_raced="""\
import anyio
import json

import pytest

pytestmark = pytest.mark.anyio


@pytest.mark.asyncspec(schedules=40, seed=3)
async def test_race():
    counter = {"n": 0}

    async def bump(late):
        for _ in range(late):
            await anyio.sleep(0)
        seen = counter["n"]
        await anyio.sleep(0)
        counter["n"] = seen + 1

    async with anyio.create_task_group() as group:
        group.start_soon(bump, 0)
        group.start_soon(bump, 2)
    assert counter["n"] == 2
"""
    )
    result = _run(pytester)
    # The asyncio variant is explored and fails; the trio one runs once.
    result.assert_outcomes(passed=1, failed=1)
    text = output_of(result)
    assert "assert 1 == 2" in text
    token = next(
        word.split("=", 1)[1] for word in text.split() if word.startswith("--asyncspec-replay=")
    )
    result.stdout.fnmatch_lines(
        ["test_raced.py::test_race[[]asyncio[]]: * schedules, * (mix, run seed 3)*FAILED"]
    )
    result.stdout.fnmatch_lines(
        ["*1: anyio runs it on the trio backend*test_raced.py::test_race[[]trio[]]"]
    )
    replayed = _run(pytester, "test_raced.py::test_race[asyncio]", f"--asyncspec-replay={token}")
    replayed.assert_outcomes(failed=1)
    assert "assert 1 == 2" in output_of(replayed)


def test_a_module_mixing_pytest_asyncio_and_anyio_tests_runs_both_on_the_virtual_clock(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(ANYIO_INI + "asyncspec_clock = virtual\n")
    pytester.makepyfile(
        test_both_runners="""\
import asyncio

import json

import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def hour():
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.sleep(3600)
    return type(loop).__name__, loop.time() - start


@pytest.mark.asyncio
async def test_on_pytest_asyncio():
    assert await hour() == ("ExploringLoop", 3600.0)


@pytest.mark.anyio
async def test_on_anyio():
    assert await hour() == ("ExploringLoop", 3600.0)
"""
    )
    _run(pytester).assert_outcomes(passed=2)


def test_a_project_loop_in_the_backend_options_is_refused_on_the_virtual_clock(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("uvloop")
    pytester.makeini(ANYIO_INI)
    pytester.makepyfile(
        test_own_loop="""\
import asyncio

import json

import pytest


@pytest.fixture
def anyio_backend():
    return ("asyncio", {"use_uvloop": True})


@pytest.mark.anyio
@pytest.mark.asyncspec(clock="virtual")
async def test_virtual():
    pass


@pytest.mark.anyio
async def test_their_uvloop():
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
"""
    )
    result = _run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    sections = failure_sections(result)
    assert "asyncspec runs this test on clock=virtual, loop=asyncio (clock from marker)" in (
        sections
    ), output_of(result)
    assert "drop loop_factory / use_uvloop from the fixture's options" in sections


def test_tests_sharing_anyio_s_runner_on_two_clocks_are_told_why_one_cannot_run(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(ANYIO_INI)
    pytester.makepyfile(
        test_shared_runner="""\
import asyncio

import json

import pytest


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
async def connection():
    yield "open"


@pytest.mark.anyio
@pytest.mark.asyncspec(clock="virtual")
async def test_first(connection):
    await asyncio.sleep(1)


@pytest.mark.anyio
async def test_second(connection):
    await asyncio.sleep(0)
"""
    )
    result = _run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    sections = failure_sections(result)
    assert "anyio's test runner is already up on another loop" in sections, output_of(result)
    assert "pytest_asyncspec.exploration.exploring_loop.ExploringLoop" in sections


def test_with_no_setting_an_anyio_test_runs_on_anyio_s_own_loop(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(ANYIO_INI)
    pytester.makepyfile(
        test_untouched="""\
import asyncio

import json

import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_stock():
    assert type(asyncio.get_running_loop()).__name__ == "_UnixSelectorEventLoop"
"""
    )
    result = _run(pytester)
    result.assert_outcomes(passed=1)
    assert "outside the modes" not in output_of(result)


def test_a_project_fixture_choosing_trio_is_found_at_setup_and_named(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(ANYIO_INI + "asyncspec_clock = virtual\n")
    pytester.makepyfile(
        test_trio_only="""\
import anyio
import json

import pytest


@pytest.fixture
def anyio_backend():
    return "trio"


@pytest.mark.anyio
@pytest.mark.asyncspec(schedules=5)
async def test_on_trio():
    await anyio.sleep(0)
"""
    )
    result = _run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "1 async test ran without clock=virtual, schedules=5: *",
            "  1: anyio runs it on the trio backend, *: test_trio_only.py::test_on_trio",
        ]
    )
    assert "asyncspec exploration" not in output_of(result)


def test_a_hung_anyio_test_fails_with_its_pending_tasks(pytester: pytest.Pytester) -> None:
    pytester.makeini(ANYIO_INI + "asyncspec_hang_after = 0.3\n")
    path = pytester.makepyfile(
        test_hangs="""\
import asyncio

import json

import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_waits_on_the_real_clock():
    await asyncio.Event().wait()  # waits here
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:timeout", timeout=60)
    result.assert_outcomes(failed=1)
    sections = failure_sections(result)
    assert "0.3 s of real time" in sections, output_of(result)
    assert f"test_hangs.py:{line_of(path, '# waits here')} in test_waits_on_the_real_clock" in (
        sections
    )


def test_an_anyio_claim_test_s_timings_reach_the_claims_report(pytester: pytest.Pytester) -> None:
    pytester.makeini(ANYIO_INI + "asyncspec_clock = virtual\n")
    pytester.makepyfile(
        test_claimed="""\
import anyio
import json

import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.claim("A1.1", source="anyio's documentation", kind="T")
async def test_sleeps_overlap(asyncspec_clock):
    asyncspec_clock.reset()
    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(anyio.sleep, 2)
    asyncspec_clock.assert_time(asyncspec_clock.now(), 2.0, what="three 2 s sleeps", documented=2)
"""
    )
    result = _run(pytester, "--asyncspec-report=report.json")
    result.assert_outcomes(passed=1)
    document = json.loads((pytester.path / "report.json").read_text())
    (claim,) = [entry for entry in document["claims"] if entry["id"] == "A1.1"]
    assert claim["outcome"] == "passed", claim
    assert claim["clock"] == "virtual"
    (figure,) = claim["figures"]
    assert figure["measured"] == 2.0
    assert figure["documented"] == 2
    assert figure["test"] == "test_claimed.py::test_sleeps_overlap"


def test_under_xdist_an_explored_anyio_test_is_sharded_on_asyncio_only(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("xdist")
    pytester.makeini(ANYIO_INI)
    pytester.makepyfile(
        test_sharded_anyio="""\
import anyio
import pytest


@pytest.mark.anyio
@pytest.mark.asyncspec(schedules=200, seed=5)
async def test_steps():
    async def worker():
        for _ in range(3):
            await anyio.sleep(0)

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(worker)
"""
    )
    serial = _run(pytester, "-p", "no:benchmark")
    serial.assert_outcomes(passed=2)
    sharded = _run(pytester, "-p", "no:benchmark", "-n", "2", "-v")
    sharded.assert_outcomes(passed=3)
    sharded.stdout.fnmatch_lines_random(
        [
            "*PASSED test_sharded_anyio.py::test_steps[[]asyncio-asyncspec-shard-1-of-2[]]*",
            "*PASSED test_sharded_anyio.py::test_steps[[]asyncio-asyncspec-shard-2-of-2[]]*",
            "*PASSED test_sharded_anyio.py::test_steps[[]trio[]]*",
        ]
    )
    line = next(
        text for text in serial.outlines if text.startswith("test_sharded_anyio.py::test_steps")
    )
    assert f"{line}; over 2 xdist workers" in sharded.outlines, output_of(sharded)
