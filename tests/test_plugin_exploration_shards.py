"""One explored test's schedules spread over pytest-xdist's workers.

Each test runs an inner session under ``-n 2`` and, where it compares, the
same session without xdist: the shards' merged summary must be the serial
run's line, word for word, plus where the schedules ran.
"""

from __future__ import annotations

import re

import pytest
from pytester_helpers import NO_BENCHMARK, STRICT_INI, output_of

pytest.importorskip("xdist")

PASSING = """\
import asyncio

import pytest


async def worker():
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.mark.asyncspec(schedules=300, seed=7)
async def test_gathered():
    await asyncio.gather(worker(), worker(), worker())


@pytest.mark.parametrize("width", [2, 3])
@pytest.mark.asyncspec(schedules=120, seed=7)
async def test_wide(width):
    await asyncio.gather(*(worker() for _ in range(width)))
"""

RACE = """\
import asyncio

import pytest


@pytest.mark.asyncspec(schedules=4000, seed=7)
async def test_race():
    counter = {"n": 0}

    async def bump(late):
        for _ in range(late):
            await asyncio.sleep(0)
        seen = counter["n"]
        await asyncio.sleep(0)
        counter["n"] = seen + 1

    await asyncio.gather(bump(0), bump(5), bump(9))
    assert counter["n"] == 3
"""


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *NO_BENCHMARK, *args)


def _summary_lines(result: pytest.RunResult) -> dict[str, str]:
    """The exploration summary's line of each test, by node id."""
    text = output_of(result).split("asyncspec exploration")[-1]
    return {
        match.group(1): match.group(2)
        for match in re.finditer(r"^(\S+::\S+): (\d+ schedules.*)$", text, re.M)
    }


def test_the_shards_merge_into_the_line_a_serial_run_prints(pytester: pytest.Pytester) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_shared_out=PASSING)
    serial = _run(pytester)
    serial.assert_outcomes(passed=3)
    sharded = _run(pytester, "-n", "2", "-v")
    # Each explored test runs as two shards, one per worker.
    sharded.assert_outcomes(passed=6)
    sharded.stdout.fnmatch_lines_random(
        [
            "*PASSED test_shared_out.py::test_gathered[[]asyncspec-shard-1-of-2[]]*",
            "*PASSED test_shared_out.py::test_gathered[[]asyncspec-shard-2-of-2[]]*",
            "*PASSED test_shared_out.py::test_wide[[]2-asyncspec-shard-1-of-2[]]*",
            "*PASSED test_shared_out.py::test_wide[[]3-asyncspec-shard-2-of-2[]]*",
        ]
    )
    expected = _summary_lines(serial)
    assert set(expected) == {
        "test_shared_out.py::test_gathered",
        "test_shared_out.py::test_wide[2]",
        "test_shared_out.py::test_wide[3]",
    }
    merged = _summary_lines(sharded)
    assert merged == {
        nodeid: f"{line}; over 2 xdist workers" for nodeid, line in expected.items()
    }, output_of(sharded)


def test_a_failing_shard_prints_a_token_that_replays_without_xdist(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_counted=RACE)
    result = _run(pytester, "-n", "2")
    # The first shard to fail tells the other, which stops at its next look;
    # a shard that failed meanwhile reports its own failure too.
    failed = result.parseoutcomes().get("failed", 0)
    assert failed in (1, 2), output_of(result)
    text = output_of(result)
    assert "assert 2 == 3" in text
    tokens = set(re.findall(r"--asyncspec-replay=(asyncspec1:\S+)", text))
    assert len(tokens) == failed
    result.stdout.fnmatch_lines(
        ["test_counted.py::test_race: * schedules, *; FAILED; over 2 xdist workers; failed in *"]
    )
    for token in tokens:
        # The token names the test, not its shard: it replays in a plain run.
        assert token.split(":")[2] == "test_race"
        replayed = _run(pytester, "test_counted.py::test_race", f"--asyncspec-replay={token}")
        replayed.assert_outcomes(failed=1)
        assert "assert 2 == 3" in output_of(replayed)


def test_too_few_schedules_to_split_run_whole_and_say_so(pytester: pytest.Pytester) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_tiny=PASSING.replace("schedules=300", "schedules=1"))
    result = _run(pytester, "-n", "2", "-k", "gathered")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "test_tiny.py::test_gathered: 1 schedule, 1 distinct order (*); not split over the "
            "2 xdist workers: 1 schedule is fewer than workers"
        ]
    )


def test_one_worker_runs_the_test_whole(pytester: pytest.Pytester) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_single=PASSING)
    result = _run(pytester, "-n", "1", "-k", "gathered")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_single.py::test_gathered: 300 schedules, *"])
    assert "xdist workers" not in output_of(result)
