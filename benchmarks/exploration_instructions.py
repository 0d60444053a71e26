"""Run the ``fifo_vs_stock`` workload once, for an instruction counter.

Wall-clock ratios on a shared machine move with the neighbours' load; an
instruction count does not.  Count one mode, and ``none`` (interpreter start
and imports only) to subtract::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python benchmarks/exploration_instructions.py fifo
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python benchmarks/exploration_instructions.py none

Modes: ``none``, ``stock``, ``bare``, ``fifo``, ``random`` (see
``test_bench_exploration.py``).  The round is checked after the run, as in
the benchmark, unless ``--no-checks``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_bench_exploration as bench


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("none", *bench.MODES))
    parser.add_argument("--no-checks", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "none":
        asyncio.SelectorEventLoop().close()
        return 0
    run = bench.new_loop_round(args.mode)
    try:
        bench.run_loop_round(run)
    finally:
        run.loop.close()
    if not args.no_checks:
        bench.check_loop_round(run)
    print(f"{args.mode}: {run.real_seconds:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
