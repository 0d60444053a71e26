"""What the plugin adds to pytest's start-up: ``pytest --co`` with and without it.

Run on request only::

    pytest benchmarks/test_bench_startup.py --benchmark-group-by=group \
        --benchmark-columns=min,median,mean,stddev,rounds -q -p no:cacheprovider

A throw-away project of 20 test modules (async and sync tests, pytest-asyncio
in auto mode, no asyncspec settings: a user who has just installed the
plugin) is collected with ``python -m pytest --co -q`` in a subprocess, once
with the plugin and once with ``-p no:asyncspec``; pytest-asyncio is loaded
both times, pytest-benchmark (a tool of this repository, not of the user's
project; it starts ``git`` in a subprocess) neither time.  Bytecode is
written and reused (``PYTHONDONTWRITEBYTECODE`` is cleared for the
subprocess), as in an installed environment.

``test_paired_ratio`` runs rounds of three: the plugin once, and without it
twice, in an order shuffled anew each round (a fixed order showed a position
effect: the third run of a round was ~5 % faster than the first).  Its
figures are the median of with/without and, as the control, the median of
without/without, each with a bootstrap 95 % interval, in wall-clock time and
in the CPU time (user + system) of the pytest process: the plugin is not
measurably slower when its interval contains 1.0 as the control's does.

Each round is checked: every run exits 0 and lists the same 100 tests.
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

MODULES = 20
TESTS_PER_MODULE = 5
INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""
MODULE = """\
import asyncio


async def test_gather():
    await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))


async def test_wait_for():
    await asyncio.wait_for(asyncio.sleep(0), 1)


def test_sync():
    assert 1 + 1 == 2


class TestGroup:
    async def test_method(self):
        await asyncio.sleep(0)

    def test_plain(self):
        assert True
"""

PAIR_ROUNDS = 40
#: Both sides: no cache writes, and no pytest-benchmark plugin (see above).
QUIET = ("-p", "no:cacheprovider", "-p", "no:benchmark")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("startup")
    (root / "pytest.ini").write_text(INI)
    for number in range(MODULES):
        (root / f"test_module_{number:02}.py").write_text(MODULE)
    return root


class Run(NamedTuple):
    wall: float
    #: User + system CPU seconds of the pytest process: steadier than the
    #: wall clock on a shared machine, where a run also waits for a core.
    cpu: float
    tests: list[str]


def collect(root: Path, *extra: str) -> Run:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-q", *QUIET, *extra],
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
    tests = [line for line in done.stdout.splitlines() if "::" in line]
    return Run(took, cpu, tests)


@pytest.mark.benchmark(group="collect")
@pytest.mark.parametrize("plugin", ["without", "with"])
def test_collect_only(benchmark: object, project: Path, plugin: str) -> None:
    collect(project)  # warm the bytecode caches
    collect(project, "-p", "no:asyncspec")
    extra = ("-p", "no:asyncspec") if plugin == "without" else ()

    def run() -> list[str]:
        return collect(project, *extra).tests

    tests = benchmark.pedantic(run, rounds=15, iterations=1)  # type: ignore[attr-defined]
    assert len(tests) == MODULES * TESTS_PER_MODULE


def median_interval(values: list[float], draws: int = 2000) -> tuple[float, float, float]:
    """The median and a bootstrap 95 % interval of it (seeded: reruns agree)."""
    picker = random.Random(0)
    medians = sorted(statistics.median(picker.choices(values, k=len(values))) for _ in range(draws))
    return statistics.median(values), medians[int(0.025 * draws)], medians[int(0.975 * draws)]


def test_paired_ratio(project: Path) -> None:
    """Rounds of with / without / without in shuffled order; with/without
    against without/without, in wall-clock and in CPU time."""
    collect(project)
    shuffler = random.Random(1)
    ratios: dict[str, list[float]] = {"wall": [], "cpu": [], "wall control": [], "cpu control": []}
    extra = []
    for _ in range(PAIR_ROUNDS):
        off = ("-p", "no:asyncspec")
        order: list[tuple[str, tuple[str, ...]]] = [("with", ()), ("without", off), ("again", off)]
        shuffler.shuffle(order)
        runs = {role: collect(project, *flags) for role, flags in order}
        assert runs["with"].tests == runs["without"].tests == runs["again"].tests
        assert len(runs["with"].tests) == MODULES * TESTS_PER_MODULE
        for measure in ("wall", "cpu"):
            took = {role: float(getattr(run, measure)) for role, run in runs.items()}
            ratios[measure].append(took["with"] / took["without"])
            ratios[f"{measure} control"].append(took["again"] / took["without"])
        extra.append(runs["with"].cpu - (runs["without"].cpu + runs["again"].cpu) / 2)
    shown = []
    for name, values in ratios.items():
        median, low, high = median_interval(values)
        measure, _, control = name.partition(" ")
        label = f"{measure} control without/without" if control else f"{measure} with/without"
        shown.append(f"{label} {median:.3f}x (95% {low:.3f}-{high:.3f})")
    print(
        f"\n[startup] pytest --co, {MODULES * TESTS_PER_MODULE} tests, {PAIR_ROUNDS} rounds: "
        + "; ".join(shown)
        + f"; median extra CPU {statistics.median(extra) * 1000:.1f} ms"
    )
