"""Run one stall-budget workload once, budgets on or off, for an instruction
counter (see :mod:`instructions` for why counts, not seconds)::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python benchmarks/budget_instructions.py sequential on

Workloads are those of ``test_bench_stall_budget.py``; ``on`` runs with the
default stall and time budgets, ``off`` with both switched off, ``none``
imports and builds the workload without running it (subtract it from both).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_bench_stall_budget as bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=sorted(bench.WORKLOADS))
    parser.add_argument("budgets", choices=["on", "off", "none"])
    args = parser.parse_args()
    run = bench.new_round(args.workload, args.budgets == "on")
    try:
        if args.budgets != "none":
            bench.run_round(run)
            assert run.ended_at == bench._ends_at(args.workload)
    finally:
        run.loop.close()


if __name__ == "__main__":
    main()
