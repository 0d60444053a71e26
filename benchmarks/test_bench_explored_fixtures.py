"""What a schedule of an explored pytest test costs, with its fixtures set up per schedule.

Run on request only::

    pytest benchmarks/test_bench_explored_fixtures.py -q -p no:cacheprovider -s

Each schedule of an explored test is a full run of it: its function-scoped
fixtures are set up before the schedule and torn down after the body
(``pytest_asyncspec/plugin/fixture_cycle.py``).  This measures schedules per second
of one explored test in an in-process pytester session, three ways:

* ``none``: the test takes no fixture of its own;
* ``sync``: it takes a plain (sync, generator) fixture;
* ``async_generator``: it takes an async generator fixture, whose set-up and
  teardown each run on the loop through pytest-asyncio's runner.

The body is the same each time: two tasks taking three steps each, gathered.
A round is one pytest session exploring ``SCHEDULES`` schedules; its figure
is ``SCHEDULES`` over the duration pytest reports for the test's call phase
(real time: the plugin's virtual clock never reaches pytest's own timer),
and over the CPU time the call phase took (steadier on a shared machine).
Each round is checked: the test passed, and the fixture was set up and torn
down once per schedule.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

SCHEDULES = 1_000
ROUNDS = 7
WARMUP = 1

Case = Literal["none", "sync", "async_generator"]
CASES: tuple[Case, ...] = ("none", "sync", "async_generator")

FIXTURES: dict[Case, str] = {
    "none": "",
    "sync": """
@pytest.fixture
def resource():
    CYCLES["up"] += 1
    yield {}
    CYCLES["down"] += 1
""",
    "async_generator": """
@pytest.fixture
async def resource():
    CYCLES["up"] += 1
    yield {}
    CYCLES["down"] += 1
""",
}

MODULE = """
import asyncio

import pytest

CYCLES = {{"up": 0, "down": 0}}
{fixture}

async def worker():
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.mark.asyncspec(schedules={schedules})
async def test_explored({argument}):
    await asyncio.gather(worker(), worker())


def test_cycles():
    expected = {expected}
    assert CYCLES == {{"up": expected, "down": expected}}
"""

# The call phase's CPU time, beside pytest's wall-clock duration: on a
# machine shared with other jobs the wall clock also counts their turns.
CONFTEST = """
import time

import pytest

process_time = time.process_time  # the plugin patches clocks, never this one


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    began = process_time()
    try:
        return (yield)
    finally:
        item.user_properties.append(("cpu_seconds", process_time() - began))
"""

INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
addopts = -p no:looptime_plugin -p no:looptime_timeproxies -p no:looptime_chronometers
"""


@dataclass
class Rounds:
    pytester: pytest.Pytester
    case: Case
    #: Schedules per second of every round (warm-up included), by the wall
    #: clock and by CPU time.
    rates: list[float] = field(default_factory=list)
    cpu_rates: list[float] = field(default_factory=list)

    def write(self) -> None:
        self.pytester.makeini(INI)
        self.pytester.makeconftest(CONFTEST)
        self.pytester.makepyfile(
            test_explored=MODULE.format(
                fixture=FIXTURES[self.case],
                schedules=SCHEDULES,
                argument="" if self.case == "none" else "resource",
                expected=0 if self.case == "none" else SCHEDULES,
            )
        )

    def run(self) -> None:
        result = self.pytester.runpytest_inprocess(
            "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:benchmark"
        )
        result.assert_outcomes(passed=2)
        calls = [
            report
            for report in result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
            if report.when == "call" and report.nodeid.endswith("::test_explored")
        ]
        assert len(calls) == 1
        self.rates.append(SCHEDULES / calls[0].duration)
        cpu = dict(calls[0].user_properties)["cpu_seconds"]
        self.cpu_rates.append(SCHEDULES / cpu)


@pytest.mark.parametrize("case", CASES)
def test_explored_schedules_per_second(
    benchmark: Any, pytester: pytest.Pytester, case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    benchmark.group = "explored fixtures"
    rounds = Rounds(pytester, case)
    rounds.write()
    benchmark.pedantic(rounds.run, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    timed = rounds.rates[-ROUNDS:]
    median = statistics.median(timed)
    cpu_median = statistics.median(rounds.cpu_rates[-ROUNDS:])
    benchmark.extra_info["schedules_per_second_median"] = round(median)
    benchmark.extra_info["schedules_per_second_best"] = round(max(timed))
    benchmark.extra_info["schedules_per_cpu_second_median"] = round(cpu_median)
    with capsys.disabled():
        print(
            f"\n[explored fixtures] {case}: {median:,.0f} schedules/s by the median round, "
            f"{max(timed):,.0f}/s by the fastest, {cpu_median:,.0f} per CPU second by the "
            f"median ({len(timed)} rounds of {SCHEDULES:,})"
        )
