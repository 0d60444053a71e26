"""How fast the virtual clock loop runs, next to the loops it competes with.

Run on request only (the root configuration collects ``spec_tests`` and
``tests``)::

    pytest benchmarks/ --benchmark-columns=min,median,mean,stddev,rounds \
        --benchmark-group-by=group -q -p no:cacheprovider

Two groups, each comparing loops on the same workload in the same run:

``sleep0``
    1,000 tasks each awaiting ``asyncio.sleep(0)`` 100 times: pure scheduling
    cost, no timer.  The stock ``asyncio.SelectorEventLoop`` against
    :class:`~pytest_asyncspec.clock.virtual_loop.VirtualClockLoop`.

``timers100k``
    100,000 concurrent ``asyncio.sleep(d)`` with distinct, shuffled durations
    from 1 ms to 100 s, gathered: timer cost with time compaction.
    :class:`~pytest_asyncspec.clock.virtual_loop.VirtualClockLoop` against a ``looptime``
    loop (``looptime.make_event_loop_class`` over the same selector loop, with
    compaction on and its default settings).

In both groups the loop is created (and garbage collected) before the timed
region and closed after it, so each figure is ``run_until_complete`` alone.
Every round is checked afterwards: all sleeps finished, the clock ended at the
expected instant and, for the timers, the run took less real time than the
virtual time it covered (which a loop sleeping for real could not do).
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from pytest_asyncspec.clock.virtual_loop import VirtualClockLoop, time_patch

looptime: ModuleType | None
try:
    import looptime
except ImportError:  # looptime supports Python 3.11 and newer only
    looptime = None

LoopFactory = Callable[[], asyncio.AbstractEventLoop]
Workload = Callable[[], Coroutine[Any, Any, object]]

# -- workload sizes ------------------------------------------------------------

SLEEP0_TASKS = 1_000
SLEEP0_STEPS = 100

TIMERS = 100_000
TIMER_STEP = 0.001  # durations are TIMER_STEP * 1 .. TIMER_STEP * TIMERS
TIMERS_LONGEST = TIMERS * TIMER_STEP

# -- rounds --------------------------------------------------------------------
# Kept small so that ``pytest benchmarks/`` stays around a minute and a half on
# a 2-core machine.  A sleep0 round is a fraction of a second, so it gets a few
# more rounds to steady its median on a shared machine.  looptime needs about
# 0.4 s of real time per 1,000 compacted timers (it spins 42 idle iterations
# before each jump), so its timers100k case gets a single round: one is plenty
# to show the ratio.

SLEEP0_ROUNDS = 11
SLEEP0_WARMUP = 2
TIMERS_ROUNDS = {"virtual": 3, "looptime": 1}


@dataclass
class Round:
    """One timed run: its loop, and what the run left behind for the checks."""

    loop: asyncio.AbstractEventLoop
    workload: Workload
    started_at: float = 0.0  # loop.time() just before the run
    ended_at: float = 0.0  # loop.time() just after it
    real_seconds: float = 0.0
    result: object = None


@dataclass
class Recorder:
    """Builds a fresh loop per round (untimed) and keeps every finished round."""

    factory: LoopFactory
    workload: Workload
    rounds: list[Round] = field(default_factory=list)

    def setup(self) -> tuple[tuple[Round], dict[str, Any]]:
        loop = self.factory()
        gc.collect()  # do not bill one loop for the garbage of the previous one
        return (Round(loop, self.workload),), {}

    def teardown(self, run: Round) -> None:
        run.loop.close()
        self.rounds.append(run)


def run_round(run: Round) -> None:
    """The timed region: drive the workload to completion on the round's loop."""
    run.started_at = run.loop.time()
    began = time_patch.real_perf_counter()
    run.result = run.loop.run_until_complete(run.workload())
    run.real_seconds = time_patch.real_perf_counter() - began
    run.ended_at = run.loop.time()


def measure(
    benchmark: BenchmarkFixture,
    factory: LoopFactory,
    workload: Workload,
    *,
    rounds: int,
    warmup_rounds: int = 0,
) -> list[Round]:
    recorder = Recorder(factory, workload)
    benchmark.pedantic(  # type: ignore[no-untyped-call]  # pytest-benchmark is untyped
        run_round,
        setup=recorder.setup,
        teardown=recorder.teardown,
        rounds=rounds,
        warmup_rounds=warmup_rounds,
        iterations=1,
    )
    assert len(recorder.rounds) == rounds + warmup_rounds
    return recorder.rounds


# -- loops ---------------------------------------------------------------------


def stock_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop()


def virtual_loop() -> asyncio.AbstractEventLoop:
    return VirtualClockLoop()


def looptime_loop() -> asyncio.AbstractEventLoop:
    assert looptime is not None
    cls = looptime.make_event_loop_class(asyncio.SelectorEventLoop)
    loop = cls()  # a fresh looptime loop starts at 0 with compaction on
    assert loop.looptime_on, "looptime must compact time, or the sleeps would take 100 s"
    assert isinstance(loop, asyncio.AbstractEventLoop)
    return loop


needs_looptime = pytest.mark.skipif(
    looptime is None, reason="looptime is not installed (it supports Python 3.11+ only)"
)

# -- sleep0 --------------------------------------------------------------------


async def _yielder() -> int:
    for _ in range(SLEEP0_STEPS):
        await asyncio.sleep(0)
    return SLEEP0_STEPS


async def sleep0_workload() -> list[int]:
    return await asyncio.gather(*(_yielder() for _ in range(SLEEP0_TASKS)))


@pytest.mark.benchmark(group="sleep0")
@pytest.mark.parametrize(
    "factory", [pytest.param(stock_loop, id="stock"), pytest.param(virtual_loop, id="virtual")]
)
def test_sleep0(benchmark: BenchmarkFixture, factory: LoopFactory) -> None:
    runs = measure(
        benchmark, factory, sleep0_workload, rounds=SLEEP0_ROUNDS, warmup_rounds=SLEEP0_WARMUP
    )
    for run in runs:
        assert run.result == [SLEEP0_STEPS] * SLEEP0_TASKS
    if factory is virtual_loop:
        # sleep(0) sets no timer, so virtual time must not have moved at all.
        assert all(run.ended_at == 0.0 for run in runs)


# -- timers100k ----------------------------------------------------------------


def _shuffled_durations() -> list[tuple[int, float]]:
    durations = [(i, i * TIMER_STEP) for i in range(1, TIMERS + 1)]
    random.Random(20240601).shuffle(durations)
    return durations


DURATIONS = _shuffled_durations()


async def timers_workload() -> list[int]:
    # sleep(d, result=i) hands back i only once that sleep has completed.
    return await asyncio.gather(*(asyncio.sleep(d, i) for i, d in DURATIONS))


@pytest.mark.benchmark(group="timers100k")
@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("name", "factory"),
    [
        pytest.param("virtual", virtual_loop, id="virtual"),
        pytest.param("looptime", looptime_loop, id="looptime", marks=needs_looptime),
    ],
)
def test_timers100k(benchmark: BenchmarkFixture, name: str, factory: LoopFactory) -> None:
    runs = measure(benchmark, factory, timers_workload, rounds=TIMERS_ROUNDS[name])
    expected = [i for i, _ in DURATIONS]
    for run in runs:
        assert run.result == expected, "not every sleep completed"
        covered = run.ended_at - run.started_at
        assert math.isclose(covered, TIMERS_LONGEST, abs_tol=1e-6), (
            f"the clock covered {covered} s, expected the longest sleep, {TIMERS_LONGEST} s"
        )
        assert run.real_seconds < TIMERS_LONGEST, (
            f"{run.real_seconds:.1f} real seconds for {covered:g} virtual ones: "
            "the sleeps were not compacted"
        )
    benchmark.extra_info["virtual_seconds"] = TIMERS_LONGEST
    benchmark.extra_info["timers"] = TIMERS


# -- exactness (not timed) -----------------------------------------------------


@pytest.mark.parametrize(
    "factory",
    [
        pytest.param(virtual_loop, id="virtual"),
        pytest.param(looptime_loop, id="looptime", marks=needs_looptime),
    ],
)
def test_timers_wake_at_their_own_instant(factory: LoopFactory) -> None:
    """A smaller copy of timers100k checking each wake-up, which the timed
    workload leaves out to keep its figure about the loop alone."""
    durations = [i * TIMER_STEP for i in range(1, 2_001)]
    random.Random(7).shuffle(durations)
    woke: list[tuple[float, float]] = []

    async def sleeper(duration: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(duration)
        woke.append((duration, loop.time()))

    async def main() -> None:
        await asyncio.gather(*(sleeper(d) for d in durations))

    loop = factory()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()

    assert [d for d, _ in woke] == sorted(durations)
    off = [(d, at) for d, at in woke if not math.isclose(at, d, abs_tol=1e-6)]
    assert off == []
