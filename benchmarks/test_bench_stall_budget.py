"""What the stall and time budgets cost a passing test: nothing measurable,
is the goal.

Run on request only (the root configuration collects ``spec_tests`` and
``tests``)::

    pytest benchmarks/test_bench_stall_budget.py --benchmark-group-by=group \
        --benchmark-columns=min,median,mean,stddev,rounds -q -p no:cacheprovider

Both budgets are judged where the loop jumps (see
:mod:`pytest_asyncspec.clock.stall`), so the workloads are made of jumps, the case
where their cost shows most:

``sequential``
    one task awaiting ``asyncio.sleep(1)`` 20,000 times: every iteration is a
    jump (and a check of whether the next timer is a timeout);
``gathered``
    a test awaiting ``gather`` of 50 workers, each awaiting 400 sleeps of
    0.5-60 s (seeded): the test's task waits all along, so every budget check
    looks at 51 tasks and 50 timers.

Each timed round (the default budgets: a stall budget of 1 h, a time budget of
24 h) is paired with a round of the same workload with both off
(``stall_budget=None, time_budget=None``) run right before or right
after it (alternately); the figure is the median of the per-round ratios
on / off, which load drift on a shared machine cannot skew.  Every round is
checked afterwards: the clock ended at the expected instant and no livelock
was reported.
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
from checked_rounds import run_checked_rounds
from pytest_benchmark.fixture import BenchmarkFixture

from pytest_asyncspec.clock import DEFAULT_STALL_BUDGET, DEFAULT_TIME_BUDGET, time_patch
from pytest_asyncspec.clock.virtual_loop import VirtualClockLoop

SEQUENTIAL_SLEEPS = 20_000
WORKERS = 50
WORKER_SLEEPS = 400


def sequential() -> Callable[[], Coroutine[Any, Any, None]]:
    async def main() -> None:
        for _ in range(SEQUENTIAL_SLEEPS):
            await asyncio.sleep(1)

    return main


def _delays() -> list[list[float]]:
    rng = random.Random(13)
    return [[rng.uniform(0.5, 60.0) for _ in range(WORKER_SLEEPS)] for _ in range(WORKERS)]


def gathered() -> Callable[[], Coroutine[Any, Any, None]]:
    delays = _delays()

    async def worker(mine: list[float]) -> None:
        for delay in mine:
            await asyncio.sleep(delay)

    async def main() -> None:
        await asyncio.gather(*(worker(mine) for mine in delays))

    return main


WORKLOADS: dict[str, Callable[[], Callable[[], Coroutine[Any, Any, None]]]] = {
    "sequential": sequential,
    "gathered": gathered,
}


def _ends_at(workload: str) -> float:
    if workload == "sequential":
        return float(SEQUENTIAL_SLEEPS)
    return max(sum(mine) for mine in _delays())


@dataclass
class Round:
    loop: VirtualClockLoop
    main: Callable[[], Coroutine[Any, Any, None]]
    real_seconds: float = 0.0
    ended_at: float = 0.0


def new_round(workload: str, budgets: bool) -> Round:
    """A round with the default stall and time budgets, or with both off."""
    main = WORKLOADS[workload]()
    if budgets:
        loop = VirtualClockLoop(stall_budget=DEFAULT_STALL_BUDGET, time_budget=DEFAULT_TIME_BUDGET)
    else:
        loop = VirtualClockLoop(stall_budget=None, time_budget=None)
    gc.collect()
    return Round(loop, main)


def run_round(run: Round) -> None:
    start = time_patch.real_monotonic()
    run.loop.run_until_complete(run.main())
    run.real_seconds = time_patch.real_monotonic() - start
    run.ended_at = run.loop.time()


@dataclass
class PairedRounds:
    """Each timed round (budget on) paired with a round with the budget off,
    run just before it in even rounds and just after it in odd ones, so that
    neither side always runs first."""

    workload: str
    expected_end: float
    on: list[float] = field(default_factory=list)
    off: list[float] = field(default_factory=list)

    def _run_off(self) -> None:
        baseline = new_round(self.workload, False)
        try:
            run_round(baseline)
        finally:
            baseline.loop.close()
        self.check(baseline)
        self.off.append(baseline.real_seconds)

    def setup(self) -> tuple[tuple[Round], dict[str, Any]]:
        if len(self.on) % 2 == 0:
            self._run_off()
        return (new_round(self.workload, True),), {}

    def teardown(self, run: Round) -> None:
        run.loop.close()
        self.check(run)
        self.on.append(run.real_seconds)
        if len(self.on) % 2 == 0:
            self._run_off()

    def check(self, run: Round) -> None:
        assert run.ended_at == pytest.approx(self.expected_end, abs=1e-6)

    def ratios(self) -> list[float]:
        """Each timed round over its baseline, warm-up rounds left out, sorted."""
        pairs = list(zip(self.on, self.off, strict=True))[WARMUP:]
        return sorted(on / off for on, off in pairs)


ROUNDS = 20
WARMUP = 2


@pytest.mark.timeout(600)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_stall_budget_overhead(
    benchmark: BenchmarkFixture, workload: str, capsys: pytest.CaptureFixture[str]
) -> None:
    benchmark.group = f"stall-budget-{workload}"
    rounds = PairedRounds(workload, _ends_at(workload))
    if not run_checked_rounds(
        benchmark, run_round, rounds.setup, rounds.teardown, rounds=ROUNDS, warmup=WARMUP
    ):
        return
    timed = rounds.ratios()
    median = statistics.median(timed)
    benchmark.extra_info["paired_ratio_median"] = median
    benchmark.extra_info["paired_ratio_min"] = timed[0]
    with capsys.disabled():
        print(
            f"\n[stall budget] {workload}: each round with the default budget over a round "
            f"with it off run next to it: median {median:.3f}x, min {timed[0]:.3f}x "
            f"({len(timed)} rounds)"
        )
