"""What the plugin adds to pytest's start-up: ``pytest --co`` with and without it.

Run on request only::

    pytest benchmarks/test_bench_startup.py --benchmark-group-by=group \
        --benchmark-columns=min,median,mean,stddev,rounds -q -p no:cacheprovider

A throw-away project of 20 test modules (async and sync tests, pytest-asyncio
in auto mode, no asyncspec settings: a user who has just installed the
plugin) is collected with ``python -m pytest --co -q`` in a subprocess, once
with the plugin and once with ``-p no:asyncspec``; pytest-asyncio is loaded
both times.  Rounds alternate between the two, and each pair's ratio is
printed, so both sides of a ratio share the machine's load.  Bytecode is
written and reused (``PYTHONDONTWRITEBYTECODE`` is cleared for the
subprocess), as in an installed environment.

Each round is checked: both runs exit 0 and list the same 100 tests.
"""

from __future__ import annotations

import os
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

PAIRS: list[tuple[float, float]] = []
PAIR_ROUNDS = 30


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
        [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", *extra],
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


def test_paired_ratio(project: Path) -> None:
    """Alternating pairs, each ratio with/without; the median is printed."""
    collect(project)
    ratios = []
    for _ in range(PAIR_ROUNDS):
        without, tests_without = collect(project, "-p", "no:asyncspec")
        with_plugin, tests_with = collect(project)
        assert tests_with == tests_without
        ratios.append(with_plugin / without)
        PAIRS.append((with_plugin, without))
    median = statistics.median(ratios)
    extra_ms = statistics.median(w - wo for w, wo in PAIRS) * 1000
    print(
        f"\n[startup] pytest --co, {MODULES * TESTS_PER_MODULE} tests: with/without the plugin "
        f"median {median:.3f}x (min {min(ratios):.3f}x, max {max(ratios):.3f}x), "
        f"median extra {extra_ms:.1f} ms over {len(ratios)} pairs"
    )
