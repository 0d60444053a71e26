"""Peak memory and false gate failures of a large suite, per plugin mode.

Run on request only (minutes per mode)::

    pytest benchmarks/test_bench_suite_memory.py --benchmark-columns=min,rounds \
        -q -p no:cacheprovider -s

The suite is :mod:`large_suite`'s: ``ASYNCSPEC_SUITE_COUNT`` small async
tests (default 3,000), each a queue, a worker task and 20 sleeps of 1 ms.
Each mode runs it once in a fresh pytest process (:data:`large_suite.MODES`:
the plugin off, the virtual clock alone, the blocking gate at 0.05 s, a full
trace, a full trace with the HTML page), and the figure kept is the
process's peak resident set size; the same suite with a third of the tests
shows whether memory grows with the count.  Goals (issue 12):

* every test passes in every mode: no false gate failures, also over
  ``ASYNCSPEC_GATE_RUNS`` (default 5) runs of the gate;
* the gate and the trace peak within 1.2x of the plugin-off run;
* no mode grows by more than :data:`MAX_GROWTH_KB_PER_TEST` a test between
  the small and the full suite (before the fix: ~110 KB a test).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from large_suite import DEFAULT_COUNT, MODES, SuiteRun, run_suite, write_suite
from pytest_benchmark.fixture import BenchmarkFixture

COUNT = int(os.environ.get("ASYNCSPEC_SUITE_COUNT", DEFAULT_COUNT))
SMALL_COUNT = COUNT // 3
GATE_RUNS = int(os.environ.get("ASYNCSPEC_GATE_RUNS", "5"))
MAX_RATIO = 1.2
#: Growth a test allowed between the small and the full suite: pytest's own
#: per-test data (items, reports) is a few KB.
MAX_GROWTH_KB_PER_TEST = 10

_RUNS: dict[tuple[str, int], SuiteRun] = {}


@pytest.fixture(scope="module")
def suites(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    made = {}
    for count in (SMALL_COUNT, COUNT):
        directory = tmp_path_factory.mktemp(f"suite-{count}")
        write_suite(directory, count)
        made[count] = directory
    return made


def _run(suites: dict[int, Path], mode: str, count: int) -> SuiteRun:
    run = run_suite(suites[count], mode, count)
    _RUNS[(mode, count)] = run
    print(f"\n{mode} x {count}: peak RSS {run.peak_rss_kb / 1024:.1f} MB; {run.summary}")
    assert (run.passed, run.failed) == (count, 0), run.summary
    return run


@pytest.mark.parametrize("mode", list(MODES))
def test_peak_rss(benchmark: BenchmarkFixture, suites: dict[int, Path], mode: str) -> None:
    benchmark.group = "suite-memory"
    run = benchmark.pedantic(_run, args=(suites, mode, COUNT), rounds=1, iterations=1)
    small = _run(suites, mode, SMALL_COUNT)
    growth = (run.peak_rss_kb - small.peak_rss_kb) / (COUNT - SMALL_COUNT)
    benchmark.extra_info.update(
        tests=COUNT,
        peak_rss_mb=round(run.peak_rss_kb / 1024, 1),
        peak_rss_mb_small=round(small.peak_rss_kb / 1024, 1),
        tests_small=SMALL_COUNT,
        growth_kb_per_test=round(growth, 2),
        failed=run.failed,
    )
    assert growth <= MAX_GROWTH_KB_PER_TEST, f"{growth:.1f} KB a test"


@pytest.mark.parametrize("mode", ["gate", "trace"])
def test_recording_stays_near_the_plugin_off(suites: dict[int, Path], mode: str) -> None:
    off = _RUNS.get(("off", COUNT)) or _run(suites, "off", COUNT)
    run = _RUNS.get((mode, COUNT)) or _run(suites, mode, COUNT)
    ratio = run.peak_rss_kb / off.peak_rss_kb
    print(f"\n{mode}/off peak RSS at {COUNT} tests: {ratio:.2f}")
    assert ratio <= MAX_RATIO


def test_no_false_gate_failures(suites: dict[int, Path]) -> None:
    failed = [_run(suites, "gate", COUNT).failed for _ in range(GATE_RUNS)]
    assert failed == [0] * GATE_RUNS
