"""The printed replay command carries the run's own command-line options (a
conftest's ``--variant=buggy``), so that running it as printed replays the
failure; what it cannot carry (PYTEST_ADDOPTS) it names."""

from __future__ import annotations

import shlex

import pytest
from pytester_helpers import STRICT_INI, failure_sections, output_of

from pytest_asyncspec.plugin.replay_command import carried_options

CONFTEST = """
import pytest


def pytest_addoption(parser):
    parser.addoption("--variant", default="fixed", choices=["fixed", "buggy"])
    parser.addoption("--note", default="")


@pytest.fixture
def variant(request):
    return request.config.getoption("--variant")
"""

# The race exists only in the buggy variant: it checks, awaits, then sells.
# Stock order passes (the slower buyer checks after the sale); others fail.
SHOP = """
import asyncio


async def buy(office, variant, parse_steps):
    for _ in range(parse_steps):
        await asyncio.sleep(0)
    if office["seats"] > 0:
        if variant == "buggy":
            await asyncio.sleep(0)  # record the sale
        office["seats"] -= 1
        office["sold"] += 1


async def test_one_seat_sold_once(variant):
    office = {"seats": 1, "sold": 0}
    await asyncio.gather(buy(office, variant, 0), buy(office, variant, 1))
    assert office["sold"] == 1
"""
NODEID = "test_shop.py::test_one_seat_sold_once"


@pytest.fixture
def shop(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(STRICT_INI)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_shop=SHOP)
    return pytester


def printed_commands(result: pytest.RunResult) -> list[str]:
    """The replay commands of the failure sections: the report's and the
    note's under the error."""
    commands = []
    for line in failure_sections(result).splitlines():
        for marker in ("replay: ", "replay it with: "):
            if marker in line:
                commands.append(line.split(marker, 1)[1])
    return commands


def test_the_printed_command_carries_the_projects_options_and_reproduces(
    shop: pytest.Pytester,
) -> None:
    found = shop.runpytest(
        "-p", "no:cacheprovider", "--variant=buggy", "--note", "two words",
        "--asyncspec-schedules=50", "-q", "--tb=short", "-k", "seat", NODEID,
    )  # fmt: skip
    found.assert_outcomes(failed=1)
    commands = printed_commands(found)
    assert len(commands) == 2, output_of(found)
    assert len(set(commands)) == 1, commands
    argv = shlex.split(commands[0])
    token = next(arg for arg in argv if arg.startswith("--asyncspec-replay="))
    # The options that select, that the replay replaces, or that only shape
    # output are left out; the project's own are carried, quoted.
    assert argv == [
        "pytest", NODEID, token, "-p", "no:cacheprovider", "--variant=buggy", "--note",
        "two words",
    ]  # fmt: skip
    assert "'two words'" in commands[0]
    replayed = shop.runpytest(*argv[1:])
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(["*assert 2 == 1*", "replayed schedule (*) failed"])


def test_options_from_pytest_addopts_are_named_not_repeated(
    shop: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_ADDOPTS", "--variant=buggy")
    found = shop.runpytest("-p", "no:cacheprovider", "--asyncspec-schedules=50")
    found.assert_outcomes(failed=1)
    sections = failure_sections(found)
    assert (
        "(with PYTEST_ADDOPTS=--variant=buggy set as in this run: options given there are "
        "not repeated in the command)"
    ) in sections.splitlines()
    note = next(line for line in sections.splitlines() if "replay it with: " in line)
    assert note.endswith(
        "-p no:cacheprovider (with PYTEST_ADDOPTS=--variant=buggy set as in this run: "
        "options given there are not repeated in the command)"
    )
    (report_line,) = [line for line in sections.splitlines() if line.startswith("replay: ")]
    argv = shlex.split(report_line.removeprefix("replay: "))
    assert "--variant=buggy" not in argv
    # Run as it says: with PYTEST_ADDOPTS still set, it reproduces.
    replayed = shop.runpytest(*argv[1:])
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(["replayed schedule (*) failed"])


BLOCKING = """
import asyncio
import time


async def test_blocks(variant):
    async def worker():
        await asyncio.sleep(0)
        time.sleep(0.1)

    await asyncio.gather(worker(), worker())
"""


def test_a_blocking_places_replay_command_carries_them_too(shop: pytest.Pytester) -> None:
    shop.makepyfile(test_blocks_twice=BLOCKING)
    found = shop.runpytest(
        "-p", "no:cacheprovider", "--variant=buggy", "--asyncspec-max-blocking=0.05",
        "--asyncspec-schedules=3", "test_blocks_twice.py",
    )  # fmt: skip
    found.assert_outcomes(failed=1)
    lines = [line for line in failure_sections(found).splitlines() if "replay it with: " in line]
    assert lines, output_of(found)
    for line in lines:
        argv = shlex.split(line.split("replay it with: ", 1)[1])
        assert argv[1] == "test_blocks_twice.py::test_blocks"
        assert argv[3:] == [
            "-p",
            "no:cacheprovider",
            "--variant=buggy",
            "--asyncspec-max-blocking=0.05",
        ]


@pytest.mark.parametrize(
    ("args", "positional", "carried"),
    [
        (
            ["-k", "x", "--variant", "buggy", "t.py::a", "-p", "no:cacheprovider", "-vv"],
            ["t.py::a"],
            ["--variant", "buggy", "-p", "no:cacheprovider"],
        ),
        (
            ["--asyncspec-schedules=5", "--asyncspec-seed", "3", "-n", "2", "--tb=short"],
            [],
            [],
        ),
        (
            ["-W", "error", "-x", "--lf", "-rA", "--junitxml", "out.xml", "tests"],
            ["tests"],
            ["-W", "error"],
        ),
        (
            ["--asyncspec-clock=virtual", "--asyncspec-replay", "tok", "--basetemp=/tmp/b"],
            [],
            ["--asyncspec-clock=virtual"],
        ),
    ],
)
def test_which_options_are_carried(
    args: list[str], positional: list[str], carried: list[str]
) -> None:
    assert carried_options(args, positional) == carried
