"""What the idle hang watch adds to passing tests: a run with and without it.

Run on request only::

    pytest benchmarks/test_bench_hang_watch.py --benchmark-group-by=group \
        --benchmark-columns=min,median,mean,stddev,rounds -q -p no:cacheprovider -s

A throw-away project of 300 passing async tests on the real clock (the
user's suite right after installing the plugin: the watch is on by default)
runs in a subprocess, with the default ``asyncspec_hang_after`` (20 s: each
test is armed and disarmed, the watch thread sleeps) and with
``--asyncspec-hang-after=off`` (no test is armed, no thread starts).  Neither
loads pytest-timeout or pytest-benchmark.

``test_paired_ratio`` runs rounds of three: with the watch once and without
it twice, in an order shuffled anew each round; its figures are the median
of with/without and, as the control, of without/without, each with a
bootstrap 95 % interval, in wall-clock time and in the CPU time of the pytest
process, and the median extra CPU per test.  Each run is checked: it exits 0
with 300 passed.
"""

from __future__ import annotations

import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest

MODULES = 10
TESTS_PER_MODULE = 30
TESTS = MODULES * TESTS_PER_MODULE
INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""
MODULE = """\
import asyncio

import pytest


@pytest.mark.parametrize("n", range({count}))
async def test_passes(n):
    await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))
"""
PAIR_ROUNDS = 20
QUIET = ("-q", "-p", "no:cacheprovider", "-p", "no:benchmark", "-p", "no:timeout")
OFF = ("--asyncspec-hang-after=off",)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hang_watch")
    (root / "pytest.ini").write_text(INI)
    for number in range(MODULES):
        (root / f"test_module_{number:02}.py").write_text(MODULE.format(count=TESTS_PER_MODULE))
    return root


class Run(NamedTuple):
    wall: float
    #: User + system CPU seconds of the pytest process.
    cpu: float


def run_suite(root: Path, *extra: str) -> Run:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *QUIET, *extra],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{TESTS} passed" in done.stdout, done.stdout
    return Run(took, cpu)


@pytest.mark.benchmark(group="hang-watch")
@pytest.mark.parametrize("watch", ["off", "on"])
def test_passing_suite(benchmark: object, project: Path, watch: str) -> None:
    run_suite(project)  # warm the bytecode caches
    extra = OFF if watch == "off" else ()
    benchmark.pedantic(run_suite, args=(project, *extra), rounds=5, iterations=1)  # type: ignore[attr-defined]


def median_interval(values: list[float], draws: int = 2000) -> tuple[float, float, float]:
    """The median and a bootstrap 95 % interval of it (seeded: reruns agree)."""
    picker = random.Random(0)
    medians = sorted(statistics.median(picker.choices(values, k=len(values))) for _ in range(draws))
    return statistics.median(values), medians[int(0.025 * draws)], medians[int(0.975 * draws)]


@pytest.mark.timeout(1800)  # 60 runs of the suite, beyond the suite's 120 s per test
def test_paired_ratio(project: Path) -> None:
    """Rounds of on / off / off in shuffled order; on/off against off/off."""
    run_suite(project)
    shuffler = random.Random(1)
    ratios: dict[str, list[float]] = {"wall": [], "cpu": [], "wall control": [], "cpu control": []}
    extra = []
    for _ in range(PAIR_ROUNDS):
        order: list[tuple[str, tuple[str, ...]]] = [("on", ()), ("off", OFF), ("again", OFF)]
        shuffler.shuffle(order)
        runs = {role: run_suite(project, *flags) for role, flags in order}
        for measure in ("wall", "cpu"):
            took = {role: float(getattr(run, measure)) for role, run in runs.items()}
            ratios[measure].append(took["on"] / took["off"])
            ratios[f"{measure} control"].append(took["again"] / took["off"])
        extra.append(runs["on"].cpu - (runs["off"].cpu + runs["again"].cpu) / 2)
    shown = []
    for name, values in ratios.items():
        median, low, high = median_interval(values)
        measure, _, control = name.partition(" ")
        label = f"{measure} control off/off" if control else f"{measure} on/off"
        shown.append(f"{label} {median:.3f}x (95% {low:.3f}-{high:.3f})")
    print(
        f"\n[hang watch] {TESTS} passing async tests, {PAIR_ROUNDS} rounds: "
        + "; ".join(shown)
        + f"; median extra CPU per test {statistics.median(extra) / TESTS * 1e6:.1f} us"
    )
