"""Run one benchmark workload once, on one loop, for an instruction counter.

Wall-clock figures on a shared machine drift by tens of percent from one
minute to the next; an instruction count does not.  Run this under
``valgrind --tool=callgrind`` (or ``perf stat -e instructions`` where the CPU
counters are exposed) and subtract the ``none`` run, which pays for the
interpreter start and the imports only::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python benchmarks/instructions.py sleep0 stock

Workloads: ``sleep0``, ``timers`` (the full 100,000) and ``timers10k`` (the
10,000 shortest of the same sleeps, in the same shuffled order, for a quicker
count).
Loops: ``stock``, ``virtual``, ``looptime`` and ``none``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_bench_virtual_loop as bench


async def timers10k_workload() -> list[int]:
    subset = [(i, d) for i, d in bench.DURATIONS if i <= bench.TIMERS // 10]
    return await asyncio.gather(*(asyncio.sleep(d, i) for i, d in subset))


WORKLOADS = {
    "sleep0": bench.sleep0_workload,
    "timers": bench.timers_workload,
    "timers10k": timers10k_workload,
}
LOOPS = {
    "stock": bench.stock_loop,
    "virtual": bench.virtual_loop,
    "looptime": bench.looptime_loop,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("loop", choices=[*sorted(LOOPS), "none"])
    args = parser.parse_args()
    if args.loop == "none":
        return
    loop = LOOPS[args.loop]()
    try:
        loop.run_until_complete(WORKLOADS[args.workload]())
    finally:
        loop.close()


if __name__ == "__main__":
    main()
