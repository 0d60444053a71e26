"""One explored test's schedules over pytest-xdist's workers, against one process.

Run on request only::

    pytest benchmarks/test_bench_exploration_shards.py -q -p no:cacheprovider -s

One test explores ``SCHEDULES`` schedules of a body of three tasks taking
three steps each.  Each round runs it three ways, in a fresh pytest process
each, the order rotating from round to round: without xdist, with ``-n 1``
and with ``-n 2``.  A way's figure is schedules per second of real time,
from the first shard's call starting to the last one's ending (the inner
conftest notes each call's start and end; worker start-up is left out, as
it is paid once per run, not per schedule).  The goals, on this 2-core
machine: ``-n 2`` at least 1.8 times the schedules per second of one
process, ``-n 1`` within 5 % of it (its time at most 1.05 times).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SCHEDULES = 24_000
ROUNDS = 5
WAYS: dict[str, tuple[str, ...]] = {
    "serial": ("-p", "no:xdist"),
    "n1": ("-n", "1"),
    "n2": ("-n", "2"),
}

MODULE = f"""
import asyncio

import pytest


async def worker():
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.mark.asyncspec(schedules={SCHEDULES}, seed=7)
async def test_explored():
    await asyncio.gather(worker(), worker(), worker())
"""

# Each call's real start and end, one file per call (shards run in other
# processes): time.time is never patched off the loop's thread.
CONFTEST = """
import json
import os
import time
from pathlib import Path

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    began = time.time()
    try:
        return (yield)
    finally:
        out = Path(os.environ["SHARD_TIMES"]) / f"{os.getpid()}-{began}.json"
        out.write_text(json.dumps([began, time.time()]))
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
    monkeypatch: pytest.MonkeyPatch
    rates: dict[str, list[float]] = field(default_factory=lambda: {way: [] for way in WAYS})

    def write(self) -> None:
        self.pytester.makeini(INI)
        self.pytester.makeconftest(CONFTEST)
        self.pytester.makepyfile(test_sharded=MODULE)

    def one(self, way: str) -> float:
        times = self.pytester.mkdir(f"times-{way}-{len(self.rates[way])}")
        self.monkeypatch.setenv("SHARD_TIMES", str(times))
        result = self.pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-p", "no:benchmark", *WAYS[way]
        )
        outcomes = result.parseoutcomes()
        # One item, or its two shards under -n 2.
        assert outcomes.get("passed") == (2 if way == "n2" else 1), outcomes
        assert not outcomes.get("failed"), outcomes
        result.stdout.fnmatch_lines([f"test_sharded.py::test_explored: {SCHEDULES} schedules, *"])
        spans = [json.loads(path.read_text()) for path in Path(times).iterdir()]
        wall = max(end for _, end in spans) - min(start for start, _ in spans)
        return SCHEDULES / wall

    def run(self) -> None:
        ways = list(WAYS)
        shift = len(self.rates["serial"]) % len(ways)
        for way in ways[shift:] + ways[:shift]:
            self.rates[way].append(self.one(way))


def test_one_test_s_schedules_spread_over_workers(
    benchmark: Any,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    benchmark.group = "exploration shards"
    rounds = Rounds(pytester, monkeypatch)
    rounds.write()
    benchmark.pedantic(rounds.run, rounds=ROUNDS, warmup_rounds=0, iterations=1)
    serial = rounds.rates["serial"]
    two = [n2 / s for n2, s in zip(rounds.rates["n2"], serial, strict=True)]
    one = [s / n1 for n1, s in zip(rounds.rates["n1"], serial, strict=True)]
    benchmark.extra_info["n2_over_serial_median"] = round(statistics.median(two), 3)
    benchmark.extra_info["n1_time_over_serial_median"] = round(statistics.median(one), 3)
    benchmark.extra_info["rates"] = {
        way: [round(rate) for rate in rates] for way, rates in rounds.rates.items()
    }
    with capsys.disabled():
        print(
            f"\n[exploration shards] {SCHEDULES:,} schedules, {ROUNDS} rounds: serial "
            f"{statistics.median(serial):,.0f}/s, -n 1 {statistics.median(rounds.rates['n1']):,.0f}"
            f"/s, -n 2 {statistics.median(rounds.rates['n2']):,.0f}/s by the median; -n 2 over "
            f"serial {statistics.median(two):.2f}x (goal >= 1.8; per round "
            f"{', '.join(f'{r:.2f}' for r in two)}); -n 1 time over serial "
            f"{statistics.median(one):.3f} (goal <= 1.05; per round "
            f"{', '.join(f'{r:.3f}' for r in one)})"
        )
