"""Tests that anyio's plugin runs, against the same tests run by pytest-asyncio.

Run on request only::

    pytest benchmarks/test_bench_anyio.py -q -p no:cacheprovider -s

The same module of ``TESTS`` async tests is run twice per round in an
in-process pytester session on the virtual clock: once marked for
pytest-asyncio (``@pytest.mark.asyncio``, its fixture decorator), once for
anyio (``@pytest.mark.anyio``, asyncio backend).  Each test takes an async
generator fixture that sleeps on its way up and down, and its body gathers
ten sleeps and yields to the loop twenty times.  A round's figure is the
ratio of the two sessions' CPU time (anyio over pytest-asyncio), measured
back to back in alternating order; the goal is at most 1.1, for the
ratio of the two runners' total CPU time over all rounds (each goes first
in half of them, so the warmer second session cancels out).  Each
session is checked: every test passed, on the virtual clock.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

TESTS = 150
ROUNDS = 10  # even: each runner goes first in half of them
GOAL = 1.1

Runner = Literal["pytest-asyncio", "anyio"]

MODULE = """
import asyncio

import pytest
{imports}

{backend}

{fixture_decorator}
async def resource():
    await asyncio.sleep(1)
    yield "up"
    await asyncio.sleep(1)


async def body():
    await asyncio.gather(*(asyncio.sleep(0.5) for _ in range(10)))
    for _ in range(20):
        await asyncio.sleep(0)
    assert type(asyncio.get_running_loop()).__name__ == "ExploringLoop"


{tests}
"""

TEST = """
{mark}
async def test_{n}(resource):
    await body()
"""

SHAPES: dict[Runner, dict[str, str]] = {
    "pytest-asyncio": {
        "imports": "import pytest_asyncio",
        "backend": "",
        "fixture_decorator": "@pytest_asyncio.fixture",
        "mark": "@pytest.mark.asyncio",
    },
    "anyio": {
        "imports": "",
        "backend": '@pytest.fixture\ndef anyio_backend():\n    return "asyncio"\n',
        "fixture_decorator": "@pytest.fixture",
        "mark": "@pytest.mark.anyio",
    },
}

INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
asyncspec_clock = virtual
addopts = -p no:looptime_plugin -p no:looptime_timeproxies -p no:looptime_chronometers
"""


def module_for(runner: Runner) -> str:
    shape = SHAPES[runner]
    tests = "\n".join(TEST.format(mark=shape["mark"], n=n) for n in range(TESTS))
    return MODULE.format(
        imports=shape["imports"],
        backend=shape["backend"],
        fixture_decorator=shape["fixture_decorator"],
        tests=tests,
    )


@dataclass
class PairedRounds:
    pytester: pytest.Pytester
    #: CPU seconds of each session, by runner, in round order.
    seconds: dict[Runner, list[float]] = field(
        default_factory=lambda: {"pytest-asyncio": [], "anyio": []}
    )

    def write(self) -> None:
        self.pytester.makeini(INI)
        for runner in SHAPES:
            name = "test_" + runner.replace("-", "_")
            self.pytester.makepyfile(**{name: module_for(runner)})

    def session(self, runner: Runner) -> float:
        name = "test_" + runner.replace("-", "_") + ".py"
        began = time.process_time()
        result = self.pytester.runpytest_inprocess(
            name, "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:benchmark"
        )
        spent = time.process_time() - began
        result.assert_outcomes(passed=TESTS)
        return spent

    def run(self) -> None:
        count = len(self.seconds["anyio"])
        order: list[Runner] = ["pytest-asyncio", "anyio"]
        if count % 2:
            order.reverse()
        for runner in order:
            self.seconds[runner].append(self.session(runner))

    def ratios(self) -> list[float]:
        return [
            mine / theirs
            for mine, theirs in zip(
                self.seconds["anyio"], self.seconds["pytest-asyncio"], strict=True
            )
        ]


def test_anyio_tests_cost_what_pytest_asyncio_tests_cost(
    benchmark: Any, pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    benchmark.group = "anyio"
    rounds = PairedRounds(pytester)
    rounds.write()
    benchmark.pedantic(rounds.run, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    ratios = rounds.ratios()[-ROUNDS:]
    median = statistics.median(ratios)
    # The second session of a round runs warmer; over rounds that alternate
    # the order, the ratio of the totals cancels that out.
    totals = sum(rounds.seconds["anyio"][-ROUNDS:]) / sum(
        rounds.seconds["pytest-asyncio"][-ROUNDS:]
    )
    benchmark.extra_info["anyio_over_pytest_asyncio_total"] = round(totals, 3)
    benchmark.extra_info["anyio_over_pytest_asyncio_median"] = round(median, 3)
    benchmark.extra_info["ratios"] = [round(ratio, 3) for ratio in ratios]
    per_test = {
        runner: 1000 * statistics.median(seconds[-ROUNDS:]) / TESTS
        for runner, seconds in rounds.seconds.items()
    }
    with capsys.disabled():
        print(
            f"\n[anyio] {TESTS} tests on the virtual clock, {ROUNDS} paired rounds: anyio / "
            f"pytest-asyncio CPU time, {totals:.3f} over all rounds, median round {median:.3f} "
            f"(goal <= {GOAL}); per test "
            f"{per_test['anyio']:.2f} ms on anyio, {per_test['pytest-asyncio']:.2f} ms on "
            f"pytest-asyncio; ratios {', '.join(f'{r:.3f}' for r in ratios)}"
        )
