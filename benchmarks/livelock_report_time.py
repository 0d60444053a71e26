"""Real time from start to the livelock report of a deadlock beside a heartbeat.

    python benchmarks/livelock_report_time.py [--runs 7]

The deadlock of issue 13: a task awaits an Event nobody sets while a heartbeat
awaits ``asyncio.sleep(period)`` forever, on a bare ``VirtualClockLoop`` with
the default stall budget.  Prints, per heartbeat period, the virtual instant
of the report (the same on every run) and the real seconds it took.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from pytest_asyncspec import LivelockError, VirtualClockLoop
from pytest_asyncspec.clock import time_patch


def report_time(period: float) -> tuple[float, float]:
    """(real seconds, virtual seconds) at which the livelock was reported."""

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(period)

    async def main() -> None:
        beating = asyncio.create_task(heartbeat(), name="heartbeat")
        await asyncio.Event().wait()
        await beating

    loop = VirtualClockLoop()
    start = time_patch.real_monotonic()
    try:
        loop.run_until_complete(main())
    except LivelockError as error:
        return time_patch.real_monotonic() - start, error.at_seconds
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    raise AssertionError("no livelock was reported")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    for period in (1.0, 0.1):
        runs = [report_time(period) for _ in range(args.runs)]
        real = [took for took, _ in runs]
        print(
            f"heartbeat sleep({period:g}): reported at virtual time {runs[0][1]:g} s after "
            f"{statistics.median(real):.3f} s of real time (median of {args.runs}; "
            f"min {min(real):.3f}, max {max(real):.3f})"
        )


if __name__ == "__main__":
    main()
