"""Run the tracing benchmark's workload outside pytest: once, interleaved, or big.

``once LOOP MODE`` runs the workload of ``test_bench_tracing`` (1,000 tasks x
100 ``asyncio.sleep(0)``) once, for an instruction counter; ``none`` pays for
the interpreter start and the imports only, to be subtracted::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python benchmarks/tracing_instructions.py once stock traced

Under valgrind the run takes ~50 times longer in real time, so a step of
20 ms (the main task starting 1,000 tasks) lasts a second and crosses the
watchdog's 0.5 s threshold: the watchdog then samples it and scans the trace,
which it never does natively.  Count the ``threshold`` mode with
``--threshold 30`` so that the watchdog sees what it sees natively (no step
over the threshold); the per-step cost does not depend on the threshold.
``--no-checks`` leaves out the checks made after the run (which decode the
trace: some 70 M instructions in a traced mode); count with it, and run
without it, natively, to see the checks pass.

``interleave`` times every mode round-robin, so that the load of a shared
machine falls on all of them alike, and prints minima, medians and their
ratios to the untraced run::

    python benchmarks/tracing_instructions.py interleave --rounds 15

``million`` runs 1,000 tasks x 1,000 awaits (1,001,002 steps) traced on the
virtual loop, then untraced, and prints one JSON line: seconds, recorded
steps, record bytes and the process's peak resident size before and after the
traced run (``test_million_steps_virtual`` runs it in a fresh process).

Loops: ``stock``, ``uvloop``, ``virtual``.  Modes: ``untraced``, ``traced``,
``threshold``, ``debug``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_bench_tracing as bench


def once(
    loop_name: bench.LoopName,
    mode: bench.Mode,
    tasks: int,
    awaits: int,
    threshold: float = bench.WATCHDOG_THRESHOLD,
    *,
    check: bool = True,
) -> bench.Checked:
    run = bench.new_round(bench.LOOPS[loop_name], mode, tasks, awaits)
    run.threshold = threshold
    try:
        bench.run_round(run)
    finally:
        run.loop.close()
    if not check:
        return bench.Checked(run.real_seconds, 0)
    return bench.check_round(run)


def interleave(
    loops: list[bench.LoopName], modes: list[bench.Mode], rounds: int, debug_rounds: int
) -> dict[str, dict[str, list[float]]]:
    seconds: dict[str, dict[str, list[float]]] = {
        loop: {mode: [] for mode in modes} for loop in loops
    }
    for index in range(rounds):
        for loop in loops:
            for mode in modes:
                if mode == "debug" and index >= debug_rounds:
                    continue
                checked = once(loop, mode, bench.TASKS, bench.AWAITS)
                seconds[loop][mode].append(checked.real_seconds)
    return seconds


def print_table(seconds: dict[str, dict[str, list[float]]]) -> None:
    for loop, by_mode in seconds.items():
        base = by_mode.get("untraced")
        print(f"{loop}:")
        for mode, values in by_mode.items():
            low, middle = min(values), statistics.median(values)
            ratios = ""
            if base:
                ratios = (
                    f"  min ratio {low / min(base):5.2f}x"
                    f"  median ratio {middle / statistics.median(base):5.2f}x"
                )
            print(
                f"  {mode:10} min {low * 1e3:8.1f} ms  median {middle * 1e3:8.1f} ms"
                f"  ({len(values)} rounds){ratios}"
            )


def peak_rss() -> int:
    """The process's peak resident size in bytes.

    From /proc (VmHWM) where there is one: ``ru_maxrss`` survives ``exec``, so
    in a child it would start at its parent's peak.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def million(awaits: int) -> dict[str, float]:
    run = bench.new_round(bench.virtual_loop, "traced", bench.TASKS, awaits)
    before = peak_rss()
    try:
        bench.run_round(run)
    finally:
        run.loop.close()
    after = peak_rss()
    checked = bench.check_round(run)
    assert run.tracer is not None
    records = run.tracer.records
    record_bytes = sys.getsizeof(records)  # in use, spare capacity and header
    traced_seconds = run.real_seconds
    del run, records
    untraced = once("virtual", "untraced", bench.TASKS, awaits)
    return {
        "steps": checked.steps_recorded,
        "seconds": traced_seconds,
        "untraced_seconds": untraced.real_seconds,
        "record_bytes": record_bytes,
        "peak_rss_before": before,
        "peak_rss_after": after,
        "peak_rss_growth": after - before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_once = commands.add_parser("once", help="run one loop and mode once")
    run_once.add_argument("loop", choices=sorted(bench.LOOPS))
    run_once.add_argument("mode", choices=bench.MODES)
    run_once.add_argument("--tasks", type=int, default=bench.TASKS)
    run_once.add_argument("--awaits", type=int, default=bench.AWAITS)
    run_once.add_argument(
        "--threshold",
        type=float,
        default=bench.WATCHDOG_THRESHOLD,
        help="the watchdog's threshold (raise it under valgrind, which runs ~50x slower)",
    )
    run_once.add_argument(
        "--no-checks",
        action="store_true",
        help="skip the checks after the run (they decode the trace, and would be counted)",
    )
    commands.add_parser("none", help="imports only (the baseline to subtract)")
    run_interleaved = commands.add_parser("interleave", help="time every mode round-robin")
    run_interleaved.add_argument("--loops", default="stock,uvloop")
    run_interleaved.add_argument("--modes", default="untraced,traced,threshold")
    run_interleaved.add_argument("--rounds", type=int, default=15)
    run_interleaved.add_argument("--debug-rounds", type=int, default=2)
    run_interleaved.add_argument("--json", type=Path, help="also write the rounds here")
    run_million = commands.add_parser("million", help="a million traced steps, virtual loop")
    run_million.add_argument("--awaits", type=int, default=1_000)
    args = parser.parse_args()

    if args.command == "once":
        once(
            args.loop, args.mode, args.tasks, args.awaits, args.threshold, check=not args.no_checks
        )
    elif args.command == "interleave":
        loops = cast("list[bench.LoopName]", args.loops.split(","))
        modes = cast("list[bench.Mode]", args.modes.split(","))
        seconds = interleave(loops, modes, args.rounds, args.debug_rounds)
        print_table(seconds)
        if args.json is not None:
            args.json.write_text(json.dumps(seconds, indent=1))
    elif args.command == "million":
        print(json.dumps(million(args.awaits)))


if __name__ == "__main__":
    main()
