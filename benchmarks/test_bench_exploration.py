"""What schedule exploration costs, and how often it finds what it looks for.

Run on request only (the root configuration collects ``spec_tests`` and
``tests``)::

    pytest benchmarks/test_bench_exploration.py --benchmark-group-by=group \
        --benchmark-columns=min,median,mean,stddev,rounds -q -p no:cacheprovider

Three timed groups and one measurement:

``schedules``
    Schedules per second on a race modelled on claim S0.5 of the spec suite:
    five gathered calls each wait 2.5 s (``asyncio.sleep``), append their id
    to a shared trail and bump a shared count, block 2.5 s (``time.sleep``,
    which moves the virtual clock), then note what they saw.  Which call
    appends first is a race between five timers due at the same instant, so
    every one of the 120 orders of the calls is a possible final trail.  One
    round is one :meth:`Explorer.explore` of 2,000 schedules on a loop made
    before the timed region.  ``mix`` (the default strategy) is the figure
    for the goal; ``random`` and ``pct`` (depth 3) are shown beside it.

``fifo_vs_stock``
    1,000 tasks each awaiting ``asyncio.sleep(0)`` 100 times, gathered, on
    the stock ``asyncio.SelectorEventLoop`` and on :class:`ExploringLoop`:
    with a FIFO schedule running (``fifo``: the exploring machinery on,
    stock order; the case the goal is about), with no schedule (``bare``)
    and with a random schedule (``random``).  Each round of the three
    exploring modes is preceded by a stock round, timed too, and the ratio
    of each pair is printed: two runs a fraction of a second apart share the
    load of this shared machine, which rounds minutes apart do not.

``many_ready``
    Seconds per schedule of 10,000 gathered ``asyncio.sleep(1)``, where up
    to 10,000 callbacks are ready at once: ``fifo``, ``random`` and ``pct``
    schedules run by :meth:`Explorer.run`, and the exploring loop with no
    schedule (``bare``) for reference.  A chooser that scans the pool at
    every pick shows here.

``test_pct_meets_its_bound``
    Not timed: the hit rate of PCT at depth 2 on the depth-2 lost update of
    ``pct_probability.py``, against PCT's lower bound ``1 / (n k)``.

Every round is checked afterwards, outside the figure.  No check is about
wall-clock time: the ratios and rates are reported, not asserted.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import permutations
from typing import Any, Literal

import pct_probability
import pytest
from checked_rounds import run_checked_rounds
from pytest_benchmark.fixture import BenchmarkFixture

from pytest_asyncspec.clock.virtual_loop import time_patch
from pytest_asyncspec.exploration.explorer import Exploration, Explorer, ScheduleRun
from pytest_asyncspec.exploration.exploring_loop import Chooser, ExploringLoop
from pytest_asyncspec.exploration.strategies import FifoChooser, Plan, RandomChooser


def _report(capsys: pytest.CaptureFixture[str], tag: str, line: str) -> None:
    with capsys.disabled():
        print(f"\n[{tag}] {line}")


# == schedules per second on the S0.5 race ======================================

CALL_IDS = (1, 2, 3, 4, 5)
WAIT = 2.5  # each call waits this long, then blocks as long
#: Every order of the calls ends the job at the same instant: all five waits
#: end together, then the five blocking stretches follow one another.
JOB_SECONDS = WAIT + len(CALL_IDS) * WAIT
ALL_TRAILS = frozenset("".join(f"->{i}" for i in order) for order in permutations(CALL_IDS))
FIFO_TRAIL = "".join(f"->{i}" for i in CALL_IDS)

#: Per round.  In a trial of 3,000 schedules per strategy the rarest of the
#: 120 trails came up about half as often as the average one, 1 in 240; at
#: that rate 2,000 schedules miss it with a chance of about e^-8, and 1,000
#: with about e^-4 (one round in fifty, for that trail alone).  The seeds
#: are fixed, so a round's outcome is the same every run.
RACE_SCHEDULES = 2_000
RACE_SEED = 55  # round r explores with seed RACE_SEED + r: every round is new
RACE_DEPTH = 3  # the default depth; used by ``pct`` (``mix`` uses 2 and 3)

Strategy = Literal["mix", "random", "pct"]
STRATEGIES: tuple[Strategy, ...] = ("mix", "random", "pct")


@dataclass
class Ledger:
    """The shared state of one run of the race."""

    count: int = 0
    trail: str = ""


class RaceError(AssertionError):
    """A call saw something no order of the calls can produce."""


async def pipeline_call(ledger: Ledger, call_id: int, seen: list[tuple[int, int, str]]) -> None:
    await asyncio.sleep(WAIT)
    ledger.trail += f"->{call_id}"
    ledger.count += 1
    # Blocks the loop; on the virtual clock it moves time by WAIT instead.
    time.sleep(WAIT)
    seen.append((call_id, ledger.count, ledger.trail))


async def race(trails: list[str]) -> None:
    """One run of the race; raises :class:`RaceError` on an impossible outcome."""
    ledger = Ledger()
    seen: list[tuple[int, int, str]] = []
    began = time.monotonic()
    await asyncio.gather(*(pipeline_call(ledger, call_id, seen) for call_id in CALL_IDS))
    elapsed = time.monotonic() - began
    # Between its update and its note a call does not yield, so whatever the
    # order, the n-th call to finish saw n updates, the last its own.
    for position, (call_id, count, trail) in enumerate(seen, start=1):
        if count != position or not trail.endswith(f"->{call_id}"):
            raise RaceError(f"call {call_id}, number {position} to finish, saw {count}: {trail}")
        if not ledger.trail.startswith(trail):
            raise RaceError(f"call {call_id} saw {trail}, not a prefix of {ledger.trail}")
    if sorted(call_id for call_id, _, _ in seen) != list(CALL_IDS):
        raise RaceError(f"the calls that finished: {seen}")
    if elapsed != JOB_SECONDS:
        raise RaceError(f"the job took {elapsed} virtual seconds, not {JOB_SECONDS}")
    trails.append(ledger.trail)


@dataclass
class RaceRound:
    loop: ExploringLoop
    explorer: Explorer
    plan: Plan
    trails: list[str] = field(default_factory=list)
    outcome: Exploration | None = None
    real_seconds: float = 0.0


@dataclass
class RaceRounds:
    strategy: Strategy
    #: Real seconds of every finished round (warm-up included).
    seconds: list[float] = field(default_factory=list)
    #: Distinct final trails of every finished round.
    reached: list[int] = field(default_factory=list)

    def setup(self) -> tuple[tuple[RaceRound], dict[str, Any]]:
        loop = ExploringLoop()
        trails: list[str] = []
        explorer = Explorer(loop, lambda: loop.run_until_complete(race(trails)), test="race")
        plan = Plan(self.strategy, RACE_DEPTH, RACE_SEED + len(self.seconds))
        gc.collect()  # do not bill one round for the garbage of the one before
        return (RaceRound(loop, explorer, plan, trails),), {}

    def teardown(self, run: RaceRound) -> None:
        run.loop.close()
        check_race_round(run)
        self.seconds.append(run.real_seconds)
        self.reached.append(len(set(run.trails)))


def run_race_round(run: RaceRound) -> None:
    began = time_patch.real_perf_counter()
    run.outcome = run.explorer.explore(run.plan, RACE_SCHEDULES)
    run.real_seconds = time_patch.real_perf_counter() - began


def check_race_round(run: RaceRound) -> None:
    outcome = run.outcome
    assert outcome is not None
    failure = outcome.failure
    assert failure is None, f"schedule {failure.spec.number} failed: {failure.error!r}"
    assert outcome.schedules == RACE_SCHEDULES
    assert len(run.trails) == RACE_SCHEDULES, "every schedule runs the race to its end"
    # Schedule 0 is FIFO: stock asyncio's order, the calls in argument order.
    assert run.trails[0] == FIFO_TRAIL
    missing = ALL_TRAILS - set(run.trails)
    assert not missing, f"{len(missing)} of the 120 orders never ran, e.g. {min(missing)}"
    # 5 call starts, 5 timers, 5 wakes, 5 gather callbacks, the main task's
    # 2 steps and run_until_complete's callback.
    assert outcome.length == 23
    assert outcome.labels == 12  # main, 5 calls, 5 timers, the loop's lane


RACE_ROUNDS = 9
RACE_WARMUP = 1
#: The goal for ``mix``.
SCHEDULES_PER_SECOND_GOAL = 3_000


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_schedules(
    benchmark: BenchmarkFixture, strategy: Strategy, capsys: pytest.CaptureFixture[str]
) -> None:
    benchmark.group = "schedules"
    rounds = RaceRounds(strategy)
    if not run_checked_rounds(
        benchmark,
        run_race_round,
        rounds.setup,
        rounds.teardown,
        rounds=RACE_ROUNDS,
        warmup=RACE_WARMUP,
    ):
        assert len(rounds.seconds) == 1
        return
    assert len(rounds.seconds) == RACE_ROUNDS + RACE_WARMUP
    timed = rounds.seconds[RACE_WARMUP:]
    best = RACE_SCHEDULES / min(timed)
    typical = RACE_SCHEDULES / statistics.median(timed)
    benchmark.extra_info["schedules_per_round"] = RACE_SCHEDULES
    benchmark.extra_info["schedules_per_second_best"] = round(best)
    benchmark.extra_info["schedules_per_second_median"] = round(typical)
    benchmark.extra_info["distinct_trails_min"] = min(rounds.reached)
    goal = f" (goal >= {SCHEDULES_PER_SECOND_GOAL:,}/s)" if strategy == "mix" else ""
    _report(
        capsys,
        "exploration speed",
        f"S0.5 race, {strategy}: {typical:,.0f} schedules/s by the median round, "
        f"{best:,.0f}/s by the fastest{goal}; each round of {RACE_SCHEDULES:,} reached "
        f"all {len(ALL_TRAILS)} orders of the calls ({len(timed)} rounds)",
    )


# == the exploring loop in FIFO mode against the stock loop =====================

TASKS = 1_000
AWAITS = 100  # per task
#: Callbacks one run makes: each task steps once per await and once to
#: return; the main task steps twice; gather's callback runs once per task;
#: run_until_complete's callback once.  ``test_callback_census`` checks the
#: figure against a count taken on the stock loop.
CALLBACKS = TASKS * (AWAITS + 1) + 2 + TASKS + 1  # 102,003
RANDOM_SEED = 7

Mode = Literal["stock", "fifo", "bare", "random"]
MODES: tuple[Mode, ...] = ("stock", "fifo", "bare", "random")
CHOOSERS: dict[Mode, Callable[[], Chooser]] = {
    "fifo": FifoChooser,
    "random": lambda: RandomChooser(RANDOM_SEED),
}


async def _yielder(awaits: int) -> int:
    for _ in range(awaits):
        await asyncio.sleep(0)
    return awaits


async def yield_workload(tasks: int = TASKS, awaits: int = AWAITS) -> list[int]:
    return await asyncio.gather(*(_yielder(awaits) for _ in range(tasks)))


@dataclass
class LoopRound:
    loop: asyncio.AbstractEventLoop
    mode: Mode
    result: list[int] | None = None
    real_seconds: float = 0.0


def new_loop_round(mode: Mode) -> LoopRound:
    loop = asyncio.SelectorEventLoop() if mode == "stock" else ExploringLoop()
    gc.collect()
    return LoopRound(loop, mode)


def run_loop_round(run: LoopRound) -> None:
    """The timed region; a schedule begins and ends in it, as in :meth:`Explorer.run`."""
    began = time_patch.real_perf_counter()
    loop = run.loop
    make_chooser = CHOOSERS.get(run.mode)
    if make_chooser is None:
        run.result = loop.run_until_complete(yield_workload())
    else:
        assert isinstance(loop, ExploringLoop)
        loop.begin_schedule(make_chooser())
        try:
            run.result = loop.run_until_complete(yield_workload())
        finally:
            loop.end_schedule()
    run.real_seconds = time_patch.real_perf_counter() - began


def check_loop_round(run: LoopRound) -> None:
    assert run.result == [AWAITS] * TASKS, "not every task ran all its awaits"
    loop = run.loop
    if run.mode not in CHOOSERS:
        return
    assert isinstance(loop, ExploringLoop)
    # Every callback that ran was picked, and logged, once.
    assert len(loop.picks) == CALLBACKS, f"{len(loop.picks)} picks, {CALLBACKS} callbacks"
    steps = Counter(loop.steps_taken().values())
    assert steps == {AWAITS + 1: TASKS, 2: 1, TASKS + 1: 1}, steps  # tasks, main, lane
    if run.mode == "fifo":
        assert loop.deviations == []
    else:
        assert loop.deviations, "a random schedule of 1,000 ready tasks kept FIFO order"


@dataclass
class LoopRounds:
    mode: Mode
    seconds: list[float] = field(default_factory=list)
    #: A stock round run just before each round of an exploring mode.
    baselines: list[float] = field(default_factory=list)

    def setup(self) -> tuple[tuple[LoopRound], dict[str, Any]]:
        if self.mode != "stock":
            baseline = new_loop_round("stock")
            try:
                run_loop_round(baseline)
            finally:
                baseline.loop.close()
            check_loop_round(baseline)
            self.baselines.append(baseline.real_seconds)
        return (new_loop_round(self.mode),), {}

    def teardown(self, run: LoopRound) -> None:
        run.loop.close()
        check_loop_round(run)
        self.seconds.append(run.real_seconds)

    def paired_ratios(self) -> list[float]:
        return [mine / stock for mine, stock in zip(self.seconds, self.baselines, strict=True)]


LOOP_ROUNDS: dict[Mode, int] = {"stock": 11, "fifo": 11, "bare": 11, "random": 5}
LOOP_WARMUP: dict[Mode, int] = {"stock": 2, "fifo": 2, "bare": 2, "random": 1}
FIFO_GOAL = 1.5


@pytest.mark.parametrize("mode", MODES)
def test_fifo_vs_stock(
    benchmark: BenchmarkFixture, mode: Mode, capsys: pytest.CaptureFixture[str]
) -> None:
    benchmark.group = "fifo_vs_stock"
    rounds = LoopRounds(mode)
    if not run_checked_rounds(
        benchmark,
        run_loop_round,
        rounds.setup,
        rounds.teardown,
        rounds=LOOP_ROUNDS[mode],
        warmup=LOOP_WARMUP[mode],
    ):
        assert len(rounds.seconds) == 1
        return
    assert len(rounds.seconds) == LOOP_ROUNDS[mode] + LOOP_WARMUP[mode]
    benchmark.extra_info["callbacks"] = CALLBACKS
    if mode == "stock":
        return
    ratios = sorted(rounds.paired_ratios()[LOOP_WARMUP[mode] :])
    benchmark.extra_info["paired_ratio_min"] = ratios[0]
    benchmark.extra_info["paired_ratio_median"] = statistics.median(ratios)
    goal = f" (goal <= {FIFO_GOAL}x)" if mode == "fifo" else ""
    _report(
        capsys,
        "exploring loop overhead",
        f"{mode}: each round over a stock round run just before it: min {ratios[0]:.3f}x, "
        f"median {statistics.median(ratios):.3f}x{goal} ({len(ratios)} rounds)",
    )


class CountingLoop(asyncio.SelectorEventLoop):
    """The stock loop, counting what is scheduled to run soon.

    The C task and future call ``loop.call_soon`` for every step and done
    callback, and this workload sets no timer and cancels nothing, so the
    count is the number of callbacks the loop runs.
    """

    scheduled = 0

    # The stubs type *args with a TypeVarTuple, which Python 3.10's typing
    # lacks (as in clock.py); the runtime signature is asyncio's own.
    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        self.scheduled += 1
        return super().call_soon(callback, *args, context=context)


def test_callback_census() -> None:
    """Not timed: CALLBACKS is what the stock loop runs, and what FIFO picks."""
    stock = CountingLoop()
    try:
        assert stock.run_until_complete(yield_workload()) == [AWAITS] * TASKS
    finally:
        stock.close()
    assert stock.scheduled == CALLBACKS
    run = new_loop_round("fifo")
    try:
        run_loop_round(run)
    finally:
        run.loop.close()
    check_loop_round(run)


# == one schedule with many ready callbacks =====================================

#: 10,000 gathered ``asyncio.sleep(1)``: the pool holds up to 10,000
#: callbacks at once, so a chooser that scans the pool pays per pick for
#: every ready callback.
MANY = 10_000
#: A schedule's picks: each task's first step, its timer, its second step and
#: gather's callback for it; the main task's 2 steps; run_until_complete's
#: callback.  Labels: a task and a timer each, the main task, the loop's lane.
MANY_CALLBACKS = 4 * MANY + 3  # 40,003
MANY_LABELS = 2 * MANY + 2  # 20,002
MANY_SEED = 11  # round r runs schedule r of the plan seeded MANY_SEED

ManyMode = Literal["bare", "fifo", "random", "pct"]
MANY_MODES: tuple[ManyMode, ...] = ("bare", "fifo", "random", "pct")


async def many_sleepers(elapsed: list[float]) -> None:
    began = time.monotonic()
    await asyncio.gather(*(asyncio.sleep(1) for _ in range(MANY)))
    elapsed.append(time.monotonic() - began)


@dataclass
class ManyRound:
    loop: ExploringLoop
    explorer: Explorer
    chooser: Chooser | None  # None: no schedule (``bare``)
    elapsed: list[float] = field(default_factory=list)
    run: ScheduleRun | None = None
    real_seconds: float = 0.0


@dataclass
class ManyRounds:
    mode: ManyMode
    seconds: list[float] = field(default_factory=list)

    def setup(self) -> tuple[tuple[ManyRound], dict[str, Any]]:
        loop = ExploringLoop()
        elapsed: list[float] = []
        explorer = Explorer(
            loop, lambda: loop.run_until_complete(many_sleepers(elapsed)), test="many"
        )
        chooser: Chooser | None = None
        if self.mode != "bare":
            plan = Plan(self.mode, RACE_DEPTH, MANY_SEED)
            # Schedule 0 of every plan is FIFO: number the rounds from 1.
            number = 0 if self.mode == "fifo" else len(self.seconds) + 1
            chooser = plan.spec(number).chooser(MANY_CALLBACKS)
        gc.collect()
        return (ManyRound(loop, explorer, chooser, elapsed),), {}

    def teardown(self, run: ManyRound) -> None:
        run.loop.close()
        check_many_round(run)
        self.seconds.append(run.real_seconds)


def run_many_round(run: ManyRound) -> None:
    began = time_patch.real_perf_counter()
    if run.chooser is None:
        run.loop.run_until_complete(many_sleepers(run.elapsed))
    else:
        run.run = run.explorer.run(run.chooser)
    run.real_seconds = time_patch.real_perf_counter() - began


def check_many_round(run: ManyRound) -> None:
    assert run.elapsed == [1.0], f"the sleepers took {run.elapsed} virtual seconds, not 1"
    if run.chooser is None:
        return
    outcome = run.run
    assert outcome is not None
    assert outcome.error is None, repr(outcome.error)
    assert len(outcome.picks) == MANY_CALLBACKS
    assert len(set(outcome.picks)) == MANY_LABELS
    if isinstance(run.chooser, FifoChooser):
        assert outcome.deviations == []
    else:
        assert outcome.deviations, "a schedule of 10,000 ready tasks kept FIFO order"


MANY_ROUNDS = 5
MANY_WARMUP = 1


@pytest.mark.parametrize("mode", MANY_MODES)
def test_many_ready(
    benchmark: BenchmarkFixture, mode: ManyMode, capsys: pytest.CaptureFixture[str]
) -> None:
    benchmark.group = "many_ready"
    rounds = ManyRounds(mode)
    if not run_checked_rounds(
        benchmark,
        run_many_round,
        rounds.setup,
        rounds.teardown,
        rounds=MANY_ROUNDS,
        warmup=MANY_WARMUP,
    ):
        assert len(rounds.seconds) == 1
        return
    assert len(rounds.seconds) == MANY_ROUNDS + MANY_WARMUP
    timed = rounds.seconds[MANY_WARMUP:]
    typical = statistics.median(timed)
    benchmark.extra_info["picks"] = MANY_CALLBACKS
    benchmark.extra_info["microseconds_per_pick_median"] = typical / MANY_CALLBACKS * 1e6
    _report(
        capsys,
        "many ready",
        f"{MANY:,} gathered sleep(1), {mode}: {typical:.3f} s per schedule by the median "
        f"round, {min(timed):.3f} s by the fastest, {typical / MANY_CALLBACKS * 1e6:.2f} us "
        f"per pick ({len(timed)} rounds)",
    )


# == PCT's hit rate on a depth-2 bug (not timed) ================================


@pytest.mark.parametrize("case", pct_probability.CASES, ids=lambda case: case.name)
def test_pct_meets_its_bound(
    case: pct_probability.Case, capsys: pytest.CaptureFixture[str]
) -> None:
    """PCT guarantees at least 1/(n k) per schedule for a depth-2 bug; with
    fixed seeds the measured rate is a fixed number, checked against it.  A
    failure here is a finding about the strategy, not noise to retry."""
    measured = pct_probability.measure(case)
    assert not measured.fifo_shows_bug, "the case must not fail in stock order"
    low, high = measured.pct.interval()
    _report(
        capsys,
        "pct depth 2",
        f"{case.name}: n={measured.labels} k={measured.length} bound {measured.bound:.5f}, "
        f"measured {measured.pct.value:.5f} [{low:.5f}, {high:.5f}] "
        f"({measured.pct.hits}/{measured.pct.schedules}), predicted {measured.predicted:.5f}; "
        f"random {measured.random.value:.5f} ({measured.random.hits})",
    )
    assert measured.pct.value >= measured.bound
