"""The virtual loop of two source trees, timed in paired rounds.

    python benchmarks/revision_ratio.py OLD_TREE NEW_TREE [--rounds 15]

Each round runs every workload once per tree, each in a fresh process, in an
order shuffled per round, so that the machine's load falls on both trees
alike; the figure is the median of the per-round ratios new / old, with the
spread of those ratios.  The workloads are the ones of
``test_bench_virtual_loop.py`` (``sleep0``, ``timers100k``), written out here
so that both trees run the same code around their own ``VirtualClockLoop``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import asyncio, gc, random, sys, time
from pytest_asyncspec import VirtualClockLoop  # both trees: the top level holds it

def sleep0():
    async def task():
        for _ in range(100):
            await asyncio.sleep(0)
    async def main():
        await asyncio.gather(*(task() for _ in range(1000)))
    return main

def timers100k():
    delays = [0.001 * (i + 1) for i in range(100_000)]
    random.Random(7).shuffle(delays)
    async def main():
        await asyncio.gather(*(asyncio.sleep(d) for d in delays))
    return main

main = {"sleep0": sleep0, "timers100k": timers100k}[sys.argv[1]]()
loop = VirtualClockLoop()
gc.collect()
start = time.perf_counter()
loop.run_until_complete(main())
took = time.perf_counter() - start
loop.close()
print(took)
"""

WORKLOADS = ("sleep0", "timers100k")


def _time(tree: Path, workload: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, workload], env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"{tree} {workload} failed:\n{out.stderr[-2000:]}")
    return float(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    ratios: dict[str, list[float]] = {workload: [] for workload in WORKLOADS}
    rng = random.Random(0)
    for _ in range(args.rounds):
        runs = [(workload, tree) for workload in WORKLOADS for tree in ("old", "new")]
        rng.shuffle(runs)
        taken = {(w, t): _time(getattr(args, t), w) for w, t in runs}
        for workload in WORKLOADS:
            ratios[workload].append(taken[(workload, "new")] / taken[(workload, "old")])
    for workload, values in ratios.items():
        values.sort()
        quartiles = statistics.quantiles(values, n=4)
        print(
            f"{workload:11} new/old median {statistics.median(values):.3f} "
            f"(quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}, {len(values)} paired rounds)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
