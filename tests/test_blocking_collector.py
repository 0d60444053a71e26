"""The garbage collector's pauses inside a step are the collector's, not the task's.

A collection runs wherever the program allocates; a slow one is forced here
with objects in a reference cycle whose finalizers sleep (finalizers run
inside the collection).  The durations checked are lower bounds of those
sleeps, never upper bounds of wall-clock time.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator

import pytest
from pytester_helpers import STRICT_INI, output_of

from pytest_asyncspec.checks.blocking import BlockingWatchdog
from pytest_asyncspec.tracing.trace import Tracer

THRESHOLD = 0.05
#: Three finalizers of this many seconds: a 0.09 s collection.
FINALIZER_SLEEP = 0.03
FINALIZERS = 3


class SlowToFinalize:
    def __init__(self) -> None:
        self.cycle = self

    def __del__(self) -> None:
        time.sleep(FINALIZER_SLEEP)


def collect_slowly() -> None:
    for _ in range(FINALIZERS):
        SlowToFinalize()
    gc.collect()  # collect_slowly: the line that triggers the collection


@pytest.fixture(autouse=True)
def _collector_quiet() -> Iterator[None]:
    # Leftover garbage of earlier tests must not slow these collections, and
    # no automatic collection may start in the middle of the timed steps.
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def run_watched(main_step: float, threshold_only: bool) -> BlockingWatchdog:
    """One task whose step collects slowly, then blocks ``main_step`` s itself."""

    async def collects() -> None:
        collect_slowly()
        time.sleep(main_step)

    async def main() -> None:
        await asyncio.create_task(collects(), name="allocator")

    loop = asyncio.new_event_loop()
    tracer = Tracer(loop, keep_over=THRESHOLD if threshold_only else None)
    tracer.install()
    try:
        with BlockingWatchdog(tracer, THRESHOLD) as watchdog:
            loop.run_until_complete(main())
    finally:
        tracer.stop()
        loop.close()
    return watchdog


@pytest.mark.parametrize("threshold_only", [False, True], ids=["full-trace", "threshold-only"])
def test_a_slow_collection_inside_a_step_is_the_collectors(threshold_only: bool) -> None:
    watchdog = run_watched(0.0, threshold_only)
    assert watchdog.violations() == []
    (pause,) = watchdog.collector_pauses()
    assert pause.task_name == "allocator"
    assert pause.collector >= FINALIZERS * FINALIZER_SLEEP
    assert pause.own_duration <= THRESHOLD
    text = pause.describe()
    assert text.startswith("The garbage collector held the event loop for")
    assert "collect_slowly" not in text
    assert "Blocking call" not in text
    assert watchdog.watchdog_errors == []


def test_a_step_over_the_threshold_without_the_collector_is_still_a_violation() -> None:
    watchdog = run_watched(0.2, threshold_only=True)
    (event,) = watchdog.violations()
    assert event.collector >= FINALIZERS * FINALIZER_SLEEP
    assert event.own_duration > THRESHOLD
    assert watchdog.collector_pauses() == []
    assert "was the garbage collector's (not counted)" in event.describe()


GATED_SUITE = """
import asyncio
import gc
import time


class SlowToFinalize:
    def __init__(self):
        self.cycle = self

    def __del__(self):
        time.sleep(0.03)


async def allocates():
    for _ in range(3):
        SlowToFinalize()
    gc.collect()


async def test_collection_in_a_step():
    gc.collect()
    await asyncio.create_task(allocates())
"""


def test_the_gate_does_not_fail_a_test_for_the_collectors_pause(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI + f"asyncspec_max_blocking = {THRESHOLD}\n")
    pytester.makepyfile(test_gated=GATED_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rP")
    assert result.ret == 0, output_of(result)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*asyncspec garbage collector*", "The garbage collector held the event loop for *"]
    )
