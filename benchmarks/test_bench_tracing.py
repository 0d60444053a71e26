"""What tracing and blocking detection cost, next to the loop running untraced.

Run on request only (the root configuration collects ``spec_tests`` and
``tests``)::

    pytest benchmarks/test_bench_tracing.py --benchmark-group-by=group \
        --benchmark-columns=min,median,mean,stddev,rounds -q -p no:cacheprovider

The workload is the ``sleep0`` one of ``test_bench_virtual_loop``: 1,000 tasks
each awaiting ``asyncio.sleep(0)`` 100 times, gathered, so 100,000 task steps
with no timer -- the case where a per-step cost shows most.  One group per
loop (``tracing-stock``: ``asyncio.SelectorEventLoop``; ``tracing-uvloop``),
each with four modes side by side:

``untraced``
    the loop alone;
``traced``
    a :class:`~pytest_asyncspec.tracing.trace.Tracer` installed (every step recorded);
``threshold``
    what the plugin runs for ``max_blocking``: a Tracer plus a
    :class:`~pytest_asyncspec.checks.blocking.BlockingWatchdog` (threshold 0.5 s);
``debug``
    asyncio's debug mode (``loop.set_debug(True)``), untraced: the
    alternative a user would otherwise reach for.

The loop is created (and garbage collected) before the timed region and
closed after it.  In the traced modes the timed region also builds, installs
and stops the tracer and starts and stops the watchdog, as the plugin does
around a test.  Every round is checked afterwards, outside the figure: all
1,000 tasks returned after their 100 awaits, and in the traced modes the
trace holds exactly the expected 101,002 steps.

The memory tests at the end are not timed; they print their figures.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from checked_rounds import run_checked_rounds
from pytest_benchmark.fixture import BenchmarkFixture

from pytest_asyncspec.checks.blocking import BlockingWatchdog
from pytest_asyncspec.clock.virtual_loop import VirtualClockLoop, time_patch
from pytest_asyncspec.tracing.trace import Awaits, Outcome, Trace, Tracer

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is not available on Windows
    uvloop = None  # type: ignore[assignment]

Mode = Literal["untraced", "traced", "threshold", "debug"]
LoopName = Literal["stock", "uvloop", "virtual"]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]

MODES: tuple[Mode, ...] = ("untraced", "traced", "threshold", "debug")
TRACED_MODES: frozenset[Mode] = frozenset({"traced", "threshold"})

# -- workload ------------------------------------------------------------------

TASKS = 1_000
AWAITS = 100  # per task


def expected_steps(tasks: int, awaits: int) -> int:
    """Steps a traced run records: each task steps once per await and once
    more to return; the main task steps twice (start the tasks and await the
    gather, then return the results)."""
    return tasks * (awaits + 1) + 2


#: Every figure about a traced round is checked against this.
STEPS = expected_steps(TASKS, AWAITS)  # 101,002

#: The threshold the plugin would be given; no step of this workload comes near.
WATCHDOG_THRESHOLD = 0.5


async def _yielder(awaits: int) -> int:
    for _ in range(awaits):
        await asyncio.sleep(0)
    return awaits


async def yield_workload(tasks: int = TASKS, awaits: int = AWAITS) -> list[int]:
    return await asyncio.gather(*(_yielder(awaits) for _ in range(tasks)))


# -- loops ---------------------------------------------------------------------


def stock_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop()


def uv_loop() -> asyncio.AbstractEventLoop:
    assert uvloop is not None
    return uvloop.new_event_loop()


def virtual_loop() -> asyncio.AbstractEventLoop:
    return VirtualClockLoop()


LOOPS: dict[LoopName, LoopFactory] = {
    "stock": stock_loop,
    "uvloop": uv_loop,
    "virtual": virtual_loop,
}

needs_uvloop = pytest.mark.skipif(uvloop is None, reason="uvloop is not installed")

# -- one round -----------------------------------------------------------------


@dataclass
class Round:
    """One timed run and what it left behind for the checks."""

    loop: asyncio.AbstractEventLoop
    mode: Mode
    tasks: int = TASKS
    awaits: int = AWAITS
    threshold: float = WATCHDOG_THRESHOLD
    tracer: Tracer | None = None
    watchdog: BlockingWatchdog | None = None
    result: list[int] | None = None
    real_seconds: float = 0.0


def new_round(factory: LoopFactory, mode: Mode, tasks: int = TASKS, awaits: int = AWAITS) -> Round:
    """A fresh loop for one round (untimed)."""
    loop = factory()
    if mode == "debug":
        loop.set_debug(True)
    gc.collect()  # do not bill one round for the garbage of the one before
    return Round(loop, mode, tasks, awaits)


def run_round(run: Round) -> None:
    """The timed region: what the mode adds around one test, and the run itself."""
    began = time_patch.real_perf_counter()
    loop = run.loop
    workload = yield_workload(run.tasks, run.awaits)
    if run.mode in TRACED_MODES:
        # Threshold-only keeps just the steps over the threshold and no task
        # details, as the plugin does for max_blocking alone.
        threshold_only = run.mode == "threshold"
        tracer = run.tracer = Tracer(
            loop,
            keep_over=run.threshold if threshold_only else None,
            task_details=not threshold_only,
        )
        tracer.install()
        watchdog = None
        if run.mode == "threshold":
            watchdog = run.watchdog = BlockingWatchdog(tracer, run.threshold)
            watchdog.start()
        try:
            run.result = loop.run_until_complete(workload)
        finally:
            if watchdog is not None:
                watchdog.stop()
            tracer.stop()
    else:
        run.result = loop.run_until_complete(workload)
    run.real_seconds = time_patch.real_perf_counter() - began


@dataclass
class Checked:
    """What a round is reduced to once checked (the loop and trace are dropped)."""

    real_seconds: float
    steps_recorded: int
    #: The watchdog thought it may have missed a step (a wake came late) and
    #: so decoded the whole trace when it stopped: part of the figure.
    full_scan: bool = False


def check_round(run: Round) -> Checked:
    """Untimed: every await ran, and a traced round recorded every step."""
    assert run.result == [run.awaits] * run.tasks, "not every task ran all its awaits"
    if run.mode == "debug":
        assert run.loop.get_debug()
    if run.mode not in TRACED_MODES:
        assert run.tracer is None
        return Checked(run.real_seconds, 0)
    tracer = run.tracer
    assert tracer is not None
    trace = Trace(tracer)
    steps = expected_steps(run.tasks, run.awaits)
    assert tracer.log.steps == steps, f"{tracer.log.steps} steps ran, expected {steps}"
    assert len(trace.tasks) == run.tasks + 1
    assert all(record.outcome is Outcome.RETURNED for record in trace.tasks.values())
    if run.mode == "threshold":
        assert len(trace) == 0, "no step of this workload is over the threshold"
        watchdog = run.watchdog
        assert watchdog is not None
        assert not watchdog.running
        assert watchdog.watchdog_errors == []
        assert watchdog.events() == [], "no step of this workload may count as blocking"
        return Checked(run.real_seconds, steps, full_scan=watchdog.may_have_missed)
    assert len(trace) == steps, f"the trace holds {len(trace)} steps, expected {steps}"
    assert len(tracer.records) == steps * 6
    kinds = [key & 0xFF for key in tracer.records[0::6]]
    assert kinds.count(Awaits.YIELD) == run.tasks * run.awaits
    assert kinds.count(Awaits.DONE) == run.tasks + 1
    return Checked(run.real_seconds, steps)


@dataclass
class Rounds:
    """Builds a fresh loop per round (untimed) and checks every finished round."""

    factory: LoopFactory
    mode: Mode
    checked: list[Checked] = field(default_factory=list)
    #: Seconds of an untraced round run just before each timed round (modes
    #: other than untraced), for a ratio that load drift cannot skew.
    baselines: list[float] = field(default_factory=list)

    def setup(self) -> tuple[tuple[Round], dict[str, Any]]:
        if self.mode != "untraced":
            baseline = new_round(self.factory, "untraced")
            try:
                run_round(baseline)
            finally:
                baseline.loop.close()
            self.baselines.append(baseline.real_seconds)
        return (new_round(self.factory, self.mode),), {}

    def teardown(self, run: Round) -> None:
        run.loop.close()
        self.checked.append(check_round(run))

    def paired_ratios(self) -> list[float]:
        """Each timed round over the untraced round run right before it."""
        return [
            checked.real_seconds / baseline
            for checked, baseline in zip(self.checked, self.baselines, strict=True)
        ]


# -- rounds --------------------------------------------------------------------
# A cheap round is 0.1-0.6 s here, so those get enough rounds for a steady
# minimum on a shared machine; a debug round takes about 7 s under pytest and
# three are plenty to show a ratio of thirty or more.  The whole file runs in
# about a minute and a half.

ROUNDS: dict[Mode, int] = {"untraced": 11, "traced": 11, "threshold": 11, "debug": 3}
WARMUP_ROUNDS: dict[Mode, int] = {"untraced": 2, "traced": 2, "threshold": 2, "debug": 0}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "loop_name",
    [pytest.param("stock"), pytest.param("uvloop", marks=needs_uvloop)],
)
def test_tracing(
    benchmark: BenchmarkFixture,
    loop_name: LoopName,
    mode: Mode,
    capsys: pytest.CaptureFixture[str],
) -> None:
    benchmark.group = f"tracing-{loop_name}"
    rounds = Rounds(LOOPS[loop_name], mode)
    if not run_checked_rounds(
        benchmark,
        run_round,
        rounds.setup,
        rounds.teardown,
        rounds=ROUNDS[mode],
        warmup=WARMUP_ROUNDS[mode],
    ):
        assert len(rounds.checked) == 1
        return
    assert len(rounds.checked) == ROUNDS[mode] + WARMUP_ROUNDS[mode]
    benchmark.extra_info["awaits"] = TASKS * AWAITS
    benchmark.extra_info["steps_recorded"] = rounds.checked[-1].steps_recorded
    if mode == "threshold":
        benchmark.extra_info["watchdog_full_scans"] = sum(c.full_scan for c in rounds.checked)
    if mode != "untraced":
        # The groups' ratios compare minima taken minutes apart on a shared
        # machine; these compare each round with an untraced one run just
        # before it (the timed rounds only, not the warm-up).
        ratios = sorted(rounds.paired_ratios()[WARMUP_ROUNDS[mode] :])
        benchmark.extra_info["paired_ratio_min"] = ratios[0]
        benchmark.extra_info["paired_ratio_median"] = statistics.median(ratios)
        with capsys.disabled():
            print(
                f"\n[tracing overhead] {loop_name} {mode}: each round over an untraced round "
                f"run just before it: min {ratios[0]:.3f}x, median "
                f"{statistics.median(ratios):.3f}x ({len(ratios)} rounds)"
            )


# -- memory (not timed) --------------------------------------------------------

#: Bytes per recorded step the tracer's memory should stay under.
BYTES_PER_STEP_GOAL = 150


def _report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n[tracing memory] {line}")


def test_record_storage_per_step(capsys: pytest.CaptureFixture[str]) -> None:
    """The packed records themselves: six int64 a step plus the array's slack."""
    run = new_round(virtual_loop, "traced")
    try:
        run_round(run)
    finally:
        run.loop.close()
    check_round(run)
    assert run.tracer is not None
    records = run.tracer.records
    # buffer_info() counts the items in use; sys.getsizeof adds the array's
    # spare capacity and its header.
    used = records.buffer_info()[1] * records.itemsize
    allocated = sys.getsizeof(records)
    per_step = allocated / STEPS
    _report(
        capsys,
        f"record storage for {STEPS:,} steps: used {used:,} B = {used / STEPS:.1f} B/step, "
        f"allocated {allocated:,} B = {per_step:.1f} B/step (goal <= {BYTES_PER_STEP_GOAL})",
    )
    assert per_step <= BYTES_PER_STEP_GOAL


#: 1,000 tasks x 200 awaits: 201,002 steps, twice the timed workload's.
GROWTH_AWAITS = 200


def _peak_growth(mode: Mode) -> int:
    """Peak minus baseline of the Python heap over one run (tracemalloc)."""
    run = new_round(virtual_loop, mode, TASKS, GROWTH_AWAITS)
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        run_round(run)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        run.loop.close()
    check_round(run)
    return peak - baseline


def test_process_growth_per_step(capsys: pytest.CaptureFixture[str]) -> None:
    """Everything tracing keeps while a run goes on: records, task records,
    recorders, weak references, names -- against the same run untraced."""
    steps = expected_steps(TASKS, GROWTH_AWAITS)
    untraced = _peak_growth("untraced")
    traced = _peak_growth("traced")
    _report(
        capsys,
        f"tracemalloc peak growth over {steps:,} steps on VirtualClockLoop: "
        f"traced {traced:,} B = {traced / steps:.1f} B/step, untraced {untraced:,} B = "
        f"{untraced / steps:.1f} B/step; due to tracing {(traced - untraced) / steps:.1f} "
        f"B/step (goal <= {BYTES_PER_STEP_GOAL})",
    )
    assert traced > untraced


MILLION_AWAITS = 1_000  # 1,000 tasks x 1,000 awaits: 1,001,002 steps
RUNNER = Path(__file__).with_name("tracing_instructions.py")


@pytest.mark.timeout(300)
def test_million_steps_virtual(capsys: pytest.CaptureFixture[str]) -> None:
    """A million traced steps on the virtual loop complete, in a fresh process
    so that its peak resident size is the run's own."""
    completed = subprocess.run(
        [sys.executable, str(RUNNER), "million", "--awaits", str(MILLION_AWAITS)],
        capture_output=True,
        text=True,
        check=True,
        timeout=280,
    )
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    steps = expected_steps(TASKS, MILLION_AWAITS)
    assert figures["steps"] == steps
    _report(
        capsys,
        f"{steps:,} traced steps on VirtualClockLoop: {figures['seconds']:.2f} s, "
        f"records {figures['record_bytes'] / 2**20:.1f} MiB "
        f"({figures['record_bytes'] / steps:.1f} B/step), peak RSS "
        f"{figures['peak_rss_before'] / 2**20:.0f} -> {figures['peak_rss_after'] / 2**20:.0f} "
        f"MiB (+{figures['peak_rss_growth'] / steps:.1f} B/step), "
        f"untraced run of the same: {figures['untraced_seconds']:.2f} s",
    )
    assert figures["record_bytes"] / steps <= BYTES_PER_STEP_GOAL
