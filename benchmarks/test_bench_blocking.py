"""What the blocking watchdog costs a blocking ``time.sleep`` on the virtual clock.

Run on request only (the root configuration collects ``spec_tests`` and
``tests``)::

    pytest benchmarks/test_bench_blocking.py --benchmark-columns=min,median,rounds \
        --benchmark-group-by=group -q -p no:cacheprovider

One group, ``blocking-sleeps``: one task makes 20,000 blocking
``time.sleep(0.0001)`` calls (an ``await asyncio.sleep(0)`` after every 100)
on a :class:`~pytest_asyncspec.clock.virtual_loop.VirtualClockLoop` recorded as the plugin
records for ``max_blocking`` alone (threshold 0.05 s), under a
:class:`~pytest_asyncspec.checks.blocking.BlockingWatchdog` with

* ``no-rules`` -- no allow rule: a sleep is tallied, no rule is read;
* ``rules`` -- two rules that match nothing: each sleep is judged by the
  rules, from the user's line that called it (remembered per line);
* ``rules-library`` -- the same, with each sleep called by a stdlib frame
  (an ``ExitStack`` callback): the rules read the frames from there up to
  the user's, every time.

Each round is checked afterwards: the clock moved by exactly the sleeps'
total and the watchdog reports every step's sleeps, none allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from pytest_asyncspec.checks.blocking import BlockingWatchdog
from pytest_asyncspec.clock.virtual_loop import VirtualClockLoop
from pytest_asyncspec.tracing.trace import Tracer

SLEEPS_PER_STEP = 100
STEPS = 200
SLEEP = 0.0001
THRESHOLD = 0.005
RULES = ["no/such/place.py", "no_such_module.function"]


def direct(seconds: float) -> None:
    # Looked up at call time: the virtual clock patches time.sleep.
    time.sleep(seconds)


def through_stdlib(seconds: float) -> None:
    # contextlib calls the sleep from its own (Python) frames.
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: time.sleep(seconds))


def run_once(sleep: Callable[[float], None], rules: list[str]) -> tuple[float, int]:
    loop = VirtualClockLoop()
    tracer = Tracer(loop, keep_over=THRESHOLD, task_details=False)
    tracer.install()

    async def main() -> None:
        for _ in range(STEPS):
            for _ in range(SLEEPS_PER_STEP):
                sleep(SLEEP)
            await asyncio.sleep(0)

    try:
        with BlockingWatchdog(tracer, THRESHOLD, allow=rules) as watchdog:
            start = loop.time()
            loop.run_until_complete(main())
            moved = loop.time() - start
    finally:
        tracer.stop()
        loop.close()
    # Only the sleeps' virtual events: a step may also run past the
    # threshold in real time on a busy machine.
    return moved, sum(event.clock == "virtual" for event in watchdog.violations())


@pytest.mark.benchmark(group="blocking-sleeps")
@pytest.mark.parametrize(
    ("sleep", "rules"),
    [
        pytest.param(direct, [], id="no-rules"),
        pytest.param(direct, RULES, id="rules"),
        pytest.param(through_stdlib, RULES, id="rules-library"),
    ],
)
def test_blocking_sleeps(
    benchmark: BenchmarkFixture, sleep: Callable[[float], None], rules: list[str]
) -> None:
    gc.collect()
    moved, violations = benchmark.pedantic(
        run_once, args=(sleep, rules), rounds=5, iterations=1, warmup_rounds=1
    )
    assert moved == pytest.approx(STEPS * SLEEPS_PER_STEP * SLEEP)
    assert violations == STEPS
