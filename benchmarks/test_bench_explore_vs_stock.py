"""Schedule exploration against the stock loop running the same body.

Run on request only (the root configuration collects ``spec_tests`` and
``tests``)::

    pytest benchmarks/test_bench_explore_vs_stock.py --benchmark-group-by=group \
        --benchmark-columns=min,median,rounds -q -p no:cacheprovider -s

The question is what a schedule costs next to a run of the body itself: an
explorer that costs three runs of the body per schedule explores a third as
many schedules as a loop could run the body in the same time.  The goal is
at least 0.5: ``Explorer.explore`` schedules/s at least half the stock
loop's runs/s of the same body.

Three bodies of different size, each a read-modify-write race (every task
reads a shared counter, yields with ``asyncio.sleep(0)``, writes back what it
read plus one), so that other orders give other outcomes:

``pair``
    2 tasks, 1 read-modify-write each (9 picks a schedule).
``rmw5``
    5 tasks, 1 read-modify-write each (18 picks): the issue's race.
``crowd20``
    20 tasks, 5 read-modify-writes each (143 picks).

A round of a strategy (``random``, ``pct`` at depth 3, ``mix``) is a pair:

1. the stock loop (``asyncio.SelectorEventLoop``, made before the timed
   region) runs the body ``N`` times with ``run_until_complete``, timed;
2. ``Explorer.explore`` runs ``N`` schedules of the same body on an
   :class:`ExploringLoop` made before the timed region, timed.

The two runs of a pair are a fraction of a second apart, so they share the
load of this shared machine; the ratio of each pair, explored runs/s over
stock runs/s, is printed.  ``stock`` alone is timed as its own parameter too,
so that pytest-benchmark's table shows it beside the explored modes.

Every round is checked afterwards, outside the figure: the stock loop saw
only the stock outcome, the explorer ran all ``N`` schedules without a
failure, its schedule 0 (FIFO) gave the stock outcome and the other
schedules gave more than one outcome.  No check is about wall-clock time.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from checked_rounds import run_checked_rounds
from pytest_benchmark.fixture import BenchmarkFixture

from pytest_asyncspec.clock import time_patch
from pytest_asyncspec.exploration.explorer import Exploration, Explorer
from pytest_asyncspec.exploration.exploring_loop import ExploringLoop
from pytest_asyncspec.exploration.strategies import Plan


class Counter1:
    """The shared counter of one run."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


async def read_modify_write(counter: Counter1, times: int) -> None:
    for _ in range(times):
        seen = counter.value
        await asyncio.sleep(0)  # another task may write in between: a lost update
        counter.value = seen + 1


@dataclass(frozen=True)
class Body:
    """A body: ``tasks`` gathered tasks, each ``times`` read-modify-writes."""

    name: str
    tasks: int
    times: int
    #: Runs (and schedules) per round: about a tenth of a second of stock runs.
    runs: int

    #: Picks of the FIFO schedule: each task's times + 1 steps, gather's
    #: callback per task, the main task's 2 steps, run_until_complete's callback.
    @property
    def picks(self) -> int:
        return self.tasks * (self.times + 1) + self.tasks + 2 + 1

    #: What the stock loop (and FIFO) ends with: every task reads before any
    #: writes, in every round of writes.
    @property
    def stock_outcome(self) -> int:
        return self.times

    def make(self, outcomes: list[int]) -> Callable[[], Coroutine[Any, Any, None]]:
        tasks, times = self.tasks, self.times

        async def body() -> None:
            counter = Counter1()
            await asyncio.gather(*(read_modify_write(counter, times) for _ in range(tasks)))
            outcomes.append(counter.value)

        return body


BODIES = (
    Body("pair", tasks=2, times=1, runs=4_000),
    Body("rmw5", tasks=5, times=1, runs=2_000),
    Body("crowd20", tasks=20, times=5, runs=400),
)

Mode = Literal["stock", "random", "pct", "mix"]
MODES: tuple[Mode, ...] = ("stock", "random", "pct", "mix")
DEPTH = 3  # pct's depth (the default); mix uses 2 and 3
SEED = 2_026  # round r explores with seed SEED + r: every round is new
ROUNDS = 7
WARMUP = 1
#: The goal: explored schedules/s over stock runs/s of the same body.
GOAL = 0.5


@dataclass
class Pair:
    """One round: the stock runs, then the explored schedules."""

    body: Body
    mode: Mode
    number: int
    #: The counter's final value in each run, in run order.
    stock_outcomes: list[int] = field(default_factory=list)
    explored_outcomes: list[int] = field(default_factory=list)
    stock_seconds: float = 0.0
    explored_seconds: float = 0.0
    outcome: Exploration | None = None


def run_stock(body: Body, outcomes: list[int]) -> float:
    """Real seconds the stock loop takes to run ``body`` ``body.runs`` times."""
    loop = asyncio.SelectorEventLoop()
    make = body.make(outcomes)
    try:
        gc.collect()
        began = time_patch.real_perf_counter()
        for _ in range(body.runs):
            loop.run_until_complete(make())
        return time_patch.real_perf_counter() - began
    finally:
        loop.close()


def run_explored(run: Pair) -> None:
    """The timed region of an explored round: ``body.runs`` schedules."""
    assert run.mode != "stock"
    loop = ExploringLoop()
    make = run.body.make(run.explored_outcomes)
    explorer = Explorer(loop, lambda: loop.run_until_complete(make()), test=run.body.name)
    plan = Plan(run.mode, DEPTH, SEED + run.number)
    try:
        gc.collect()
        began = time_patch.real_perf_counter()
        run.outcome = explorer.explore(plan, run.body.runs)
        run.explored_seconds = time_patch.real_perf_counter() - began
    finally:
        loop.close()


def check_pair(run: Pair) -> None:
    body = run.body
    assert Counter(run.stock_outcomes) == {body.stock_outcome: body.runs}
    if run.mode == "stock":
        return
    outcome = run.outcome
    assert outcome is not None
    assert outcome.failure is None, repr(outcome.failure)
    assert outcome.schedules == body.runs
    assert outcome.length == body.picks
    assert len(run.explored_outcomes) == body.runs
    assert run.explored_outcomes[0] == body.stock_outcome, "schedule 0 is FIFO: stock's outcome"
    seen = Counter(run.explored_outcomes)
    assert len(seen) > 1, f"every schedule ended as stock order does: {seen}"


@dataclass
class Rounds:
    body: Body
    mode: Mode
    pairs: list[Pair] = field(default_factory=list)

    def setup(self) -> tuple[tuple[Pair], dict[str, Any]]:
        run = Pair(self.body, self.mode, len(self.pairs))
        if self.mode != "stock":
            # The stock half of the pair, just before the explored half.
            run.stock_seconds = run_stock(self.body, run.stock_outcomes)
        return (run,), {}

    def teardown(self, run: Pair) -> None:
        check_pair(run)
        self.pairs.append(run)


def run_round(run: Pair) -> None:
    if run.mode == "stock":
        run.stock_seconds = run_stock(run.body, run.stock_outcomes)
    else:
        run_explored(run)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("body", BODIES, ids=lambda body: body.name)
def test_explore_vs_stock(
    benchmark: BenchmarkFixture, body: Body, mode: Mode, capsys: pytest.CaptureFixture[str]
) -> None:
    benchmark.group = f"explore_vs_stock[{body.name}]"
    rounds = Rounds(body, mode)
    if not run_checked_rounds(
        benchmark, run_round, rounds.setup, rounds.teardown, rounds=ROUNDS, warmup=WARMUP
    ):
        assert len(rounds.pairs) == 1
        return
    assert len(rounds.pairs) == ROUNDS + WARMUP
    timed = rounds.pairs[WARMUP:]
    stock_rate = statistics.median(body.runs / p.stock_seconds for p in timed)
    benchmark.extra_info["runs_per_round"] = body.runs
    benchmark.extra_info["stock_runs_per_second_median"] = round(stock_rate)
    with capsys.disabled():
        if mode == "stock":
            print(f"\n[explore vs stock] {body.name}: stock {stock_rate:,.0f} runs/s (median)")
            return
        rate = statistics.median(body.runs / p.explored_seconds for p in timed)
        ratios = sorted(p.stock_seconds / p.explored_seconds for p in timed)
        benchmark.extra_info["schedules_per_second_median"] = round(rate)
        benchmark.extra_info["paired_ratio_median"] = statistics.median(ratios)
        benchmark.extra_info["paired_ratio_min"] = ratios[0]
        print(
            f"\n[explore vs stock] {body.name} {mode}: {rate:,.0f} schedules/s, stock "
            f"{stock_rate:,.0f} runs/s; paired ratio median {statistics.median(ratios):.3f}, "
            f"min {ratios[0]:.3f}, max {ratios[-1]:.3f} (goal >= {GOAL}; {len(ratios)} rounds)"
        )
