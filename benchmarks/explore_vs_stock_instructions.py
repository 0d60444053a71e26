"""Run one body of ``test_bench_explore_vs_stock.py`` many times, for an
instruction counter.

Wall-clock ratios on a shared machine move with the neighbours' load; an
instruction count does not.  Count a mode, and ``none`` (interpreter start,
imports and the loop's creation only) to subtract::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python benchmarks/explore_vs_stock_instructions.py rmw5 random
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python benchmarks/explore_vs_stock_instructions.py rmw5 none

Modes: ``none``, ``stock`` (the stock loop runs the body ``--runs`` times)
and ``random``, ``pct``, ``mix`` (``Explorer.explore`` runs ``--runs``
schedules).  The ratio of a strategy to ``stock``, each minus ``none``, is
the instruction-count twin of the benchmark's paired ratio (inverted: here
smaller is faster).  The run is checked afterwards, as in the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_bench_explore_vs_stock as bench

from pytest_asyncspec.exploration.explorer import Explorer
from pytest_asyncspec.exploration.exploring_loop import ExploringLoop
from pytest_asyncspec.exploration.strategies import Plan


def main(argv: Sequence[str] | None = None) -> int:
    bodies = {body.name: body for body in bench.BODIES}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("body", choices=tuple(bodies))
    parser.add_argument("mode", choices=("none", *bench.MODES))
    parser.add_argument("--runs", type=int, default=None, help="default: the benchmark's")
    args = parser.parse_args(argv)
    body = bodies[args.body]
    runs = body.runs if args.runs is None else args.runs
    outcomes: list[int] = []
    make = body.make(outcomes)
    if args.mode in ("none", "stock"):
        loop: asyncio.AbstractEventLoop = asyncio.SelectorEventLoop()
        try:
            for _ in range(runs if args.mode == "stock" else 0):
                loop.run_until_complete(make())
        finally:
            loop.close()
        assert Counter(outcomes) == ({body.stock_outcome: runs} if args.mode == "stock" else {})
    else:
        exploring = ExploringLoop()
        try:
            explorer = Explorer(
                exploring, lambda: exploring.run_until_complete(make()), test=body.name
            )
            outcome = explorer.explore(Plan(args.mode, bench.DEPTH, bench.SEED), runs)
        finally:
            exploring.close()
        assert outcome.failure is None, repr(outcome.failure)
        assert len(outcomes) == runs
        assert outcomes[0] == body.stock_outcome  # schedule 0 is FIFO
    print(f"{args.body} {args.mode}: {runs} runs, outcomes {dict(Counter(outcomes))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
