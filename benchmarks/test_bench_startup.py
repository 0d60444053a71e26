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
without/without, each with a bootstrap 95 % interval: the plugin is not
measurably slower when its interval contains 1.0 as the control's does.

Each round is checked: every run exits 0 and lists the same 100 tests.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


def collect(root: Path, *extra: str) -> tuple[float, list[str]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
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
    assert done.returncode == 0, done.stdout + done.stderr
    tests = [line for line in done.stdout.splitlines() if "::" in line]
    return took, tests


@pytest.mark.benchmark(group="collect")
@pytest.mark.parametrize("plugin", ["without", "with"])
def test_collect_only(benchmark: object, project: Path, plugin: str) -> None:
    collect(project)  # warm the bytecode caches
    collect(project, "-p", "no:asyncspec")
    extra = ("-p", "no:asyncspec") if plugin == "without" else ()

    def run() -> list[str]:
        return collect(project, *extra)[1]

    tests = benchmark.pedantic(run, rounds=15, iterations=1)  # type: ignore[attr-defined]
    assert len(tests) == MODULES * TESTS_PER_MODULE


def median_interval(values: list[float], draws: int = 2000) -> tuple[float, float, float]:
    """The median and a bootstrap 95 % interval of it (seeded: reruns agree)."""
    picker = random.Random(0)
    medians = sorted(statistics.median(picker.choices(values, k=len(values))) for _ in range(draws))
    return statistics.median(values), medians[int(0.025 * draws)], medians[int(0.975 * draws)]


def test_paired_ratio(project: Path) -> None:
    """Rounds of with / without / without in shuffled order; with/without
    against without/without."""
    collect(project)
    shuffler = random.Random(1)
    plugin_ratios, control_ratios, extra = [], [], []
    for _ in range(PAIR_ROUNDS):
        runs = [
            ("with", ()),
            ("without", ("-p", "no:asyncspec")),
            ("again", ("-p", "no:asyncspec")),
        ]
        shuffler.shuffle(runs)
        took, listed = {}, []
        for role, flags in runs:
            took[role], tests = collect(project, *flags)
            listed.append(tests)
        assert listed[0] == listed[1] == listed[2]
        assert len(listed[0]) == MODULES * TESTS_PER_MODULE
        plugin_ratios.append(took["with"] / took["without"])
        control_ratios.append(took["again"] / took["without"])
        extra.append(took["with"] - (took["without"] + took["again"]) / 2)
    plugin = median_interval(plugin_ratios)
    control = median_interval(control_ratios)
    print(
        f"\n[startup] pytest --co, {MODULES * TESTS_PER_MODULE} tests, {PAIR_ROUNDS} rounds: "
        f"with/without median {plugin[0]:.3f}x (95% {plugin[1]:.3f}-{plugin[2]:.3f}); "
        f"control without/without {control[0]:.3f}x (95% {control[1]:.3f}-{control[2]:.3f}); "
        f"median extra {statistics.median(extra) * 1000:.1f} ms"
    )
