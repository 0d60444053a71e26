"""Run the ``fifo_vs_stock`` workload once, for an instruction counter.

Wall-clock ratios on a shared machine move with the neighbours' load; an
instruction count does not.  Count one mode, and ``none`` (interpreter start
and imports only) to subtract::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python benchmarks/exploration_instructions.py fifo
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python benchmarks/exploration_instructions.py none

Modes: ``none``, ``stock``, ``bare``, ``fifo``, ``random`` (see
``test_bench_exploration.py``).  ``--slotted`` runs the exploring modes on a
subclass that moves the attributes :class:`ExploringLoop` adds to its
instances into ``__slots__``, an experiment about the size of the loop's
instance dictionary (``docs/benchmarks-exploration.md``).  The round is
checked after the run, as in the benchmark, unless ``--no-checks``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_bench_exploration as bench

from pytest_asyncspec.exploring_loop import ExploringLoop


def slotted_class() -> type[ExploringLoop]:
    """ExploringLoop with its own instance attributes in ``__slots__``.

    Found by looking rather than listed, so that it follows the package.
    """
    stock = asyncio.SelectorEventLoop()
    exploring = ExploringLoop()
    try:
        own = sorted(set(vars(exploring)) - set(vars(stock)))
    finally:
        stock.close()
        exploring.close()
    return type("SlottedExploringLoop", (ExploringLoop,), {"__slots__": tuple(own)})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("none", *bench.MODES))
    parser.add_argument("--slotted", action="store_true")
    parser.add_argument("--no-checks", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "none":
        asyncio.SelectorEventLoop().close()
        return 0
    run = bench.new_loop_round(args.mode)
    if args.slotted and args.mode != "stock":
        run.loop.close()
        run.loop = slotted_class()()
    try:
        bench.run_loop_round(run)
    finally:
        run.loop.close()
    if not args.no_checks:
        bench.check_loop_round(run)
    print(f"{args.mode}{' (slotted)' if args.slotted else ''}: {run.real_seconds:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
