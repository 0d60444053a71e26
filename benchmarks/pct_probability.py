"""How often a schedule hits a depth-2 bug, measured, next to PCT's lower bound.

A measurement, not a timing: run it as a script to print the table, or let
``test_bench_exploration.py::test_pct_meets_its_bound`` run the same cases
and check them::

    python benchmarks/pct_probability.py --schedules 5000 --seed 2024

The program is a lost update.  A *reader* takes some ``asyncio.sleep(0)``
steps, reads a shared counter, yields once, and writes back what it read plus
one.  An *incrementer* takes some steps of its own and then adds one to the
counter in a single step.  A few *distractors* only yield.  The counter ends
at 1 instead of 2 exactly when the increment falls after the reader's read
and before its write: two ordering constraints, a bug of depth 2.  Each case
places the two critical steps so that stock asyncio's round-robin order
(FIFO) does not show the bug; the script checks that it does not.

Each case runs under schedules 1..N of an exploration plan, exactly as
``--asyncspec-strategy=pct --asyncspec-depth=2`` (or ``random``) would choose
them, with PCT calibrated on the FIFO run's pick count ``k``; ``n`` is the
number of labels that run picked (tasks, and the loop's own lane).  PCT
promises at least ``1 / (n k)`` per schedule for a depth-2 bug.

For this program the chance can be worked out.  The bug shows when the
reader's priority is above the incrementer's and PCT's single priority change
point falls on the reader's read (one pick in ``k``): ``1 / (2 k)``, were it
not for one ordering rule of the exploring loop.  No task step may run before
an older callback of the loop's lane, and a distractor that finishes puts one
there (gather's done callback).  Until that callback runs, every task that was
ready before it may take one step and no more; the incrementer takes its step
if its priority is above the lane's.  In these cases each distractor whose
priority is above the reader's finishes before the reader reads, so the
incrementer gets one early step per such distractor when its priority is
above the lane's, and enough of them bring its increment ahead of the read.
The table prints the chance with that rule counted (:func:`predicted`); it
ignores the fairness bound, which can force a pick only when ``k`` exceeds it
(``crowd``).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from pytest_asyncspec.exploration.explorer import Explorer
from pytest_asyncspec.exploration.exploring_loop import ExploringLoop
from pytest_asyncspec.exploration.strategies import FifoChooser, Plan, pct_bound

DEPTH = 2
SCHEDULES = 5_000
SEED = 2024
#: z for a two-sided 95 % interval.
Z95 = 1.959964


class LostUpdate(AssertionError):
    """The counter ended below the number of increments."""


@dataclass
class Counter:
    value: int = 0


async def reader(counter: Counter, steps_before: int) -> None:
    for _ in range(steps_before):
        await asyncio.sleep(0)
    seen = counter.value
    # The window: anyone who writes the counter now is overwritten below.
    await asyncio.sleep(0)
    counter.value = seen + 1


async def incrementer(counter: Counter, steps_before: int) -> None:
    for _ in range(steps_before):
        await asyncio.sleep(0)
    counter.value += 1  # one step: no await between the read and the write


async def distractor(steps: int) -> None:
    for _ in range(steps):
        await asyncio.sleep(0)


@dataclass(frozen=True)
class Case:
    """One shape of the lost-update program."""

    name: str
    reader_steps: int  # sleep(0) steps before the read
    incrementer_steps: int  # sleep(0) steps before the increment
    distractors: int
    distractor_steps: int

    async def program(self) -> None:
        counter = Counter()
        await asyncio.gather(
            reader(counter, self.reader_steps),
            incrementer(counter, self.incrementer_steps),
            *(distractor(self.distractor_steps) for _ in range(self.distractors)),
        )
        if counter.value != 2:
            raise LostUpdate(f"two increments, counter ended at {counter.value}")


CASES = (
    # The increment comes three steps after the reader's window closes; a
    # random walk often lands it inside.
    Case("near", reader_steps=2, incrementer_steps=5, distractors=2, distractor_steps=4),
    # The increment is the incrementer's first step, the read the reader's
    # 21st: a random walk almost never lets the reader run 20 steps ahead.
    # PCT does not care how far apart the two are.
    Case("far", reader_steps=20, incrementer_steps=0, distractors=2, distractor_steps=10),
    # More tasks and steps: n and k grow, the bound shrinks.
    Case("crowd", reader_steps=10, incrementer_steps=3, distractors=6, distractor_steps=15),
)


@dataclass(frozen=True)
class Rate:
    hits: int
    schedules: int

    @property
    def value(self) -> float:
        return self.hits / self.schedules

    def interval(self, z: float = Z95) -> tuple[float, float]:
        """Wilson score interval: sound near 0, where most of these rates are."""
        n = self.schedules
        p = self.value
        denominator = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denominator
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
        return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Measurement:
    case: Case
    labels: int  # n
    length: int  # k
    fifo_shows_bug: bool
    pct: Rate
    random: Rate

    @property
    def bound(self) -> float:
        return pct_bound(self.labels, self.length, DEPTH)

    @property
    def predicted(self) -> float:
        """This program's chance under PCT depth 2 (see the module docstring)."""
        return float(predicted(self.case) / self.length)


def predicted(case: Case) -> Fraction:
    """The chance, over PCT's random priorities, that a change point on the
    reader's read shows the bug (multiply by ``1 / k``).

    It shows when the reader's priority R is above the incrementer's I, unless
    more than ``incrementer_steps`` distractors are above R (each finishes
    before the read, and gather's callback for it lets every older task take
    one step) and I is above the lane's priority L (so the incrementer takes
    each of those steps, the last of them its increment).  The labels'
    priorities are independent and uniform, so every order of R, I, L and the
    distractors' priorities is equally likely: count them by the ranks of R,
    I and L.
    """
    ranks = case.distractors + 3
    hits = orders = 0
    for r in range(ranks):
        for i in range(ranks):
            for lane in range(ranks):
                if len({r, i, lane}) < 3:
                    continue
                orders += 1
                above_reader = ranks - 1 - r - (i > r) - (lane > r)
                early = above_reader > case.incrementer_steps and i > lane
                hits += r > i and not early
    return Fraction(hits, orders)


def _hits(explorer: Explorer, plan: Plan, length: int, schedules: int) -> Rate:
    hits = 0
    for number in range(1, schedules + 1):
        run = explorer.run(plan.spec(number).chooser(length))
        if run.error is not None:
            if not isinstance(run.error, LostUpdate):
                raise run.error  # anything else is a fault of this script
            hits += 1
        # Every schedule runs the same callbacks; only their order changes.
        if len(run.picks) != length:
            raise AssertionError(f"schedule {number} made {len(run.picks)} picks, not {length}")
    return Rate(hits, schedules)


def measure(case: Case, schedules: int = SCHEDULES, seed: int = SEED) -> Measurement:
    loop = ExploringLoop()
    try:
        explorer = Explorer(loop, lambda: loop.run_until_complete(case.program()), test=case.name)
        fifo = explorer.run(FifoChooser())
        length = len(fifo.picks)
        labels = len(set(fifo.picks))
        pct = _hits(explorer, Plan("pct", DEPTH, seed), length, schedules)
        randomly = _hits(explorer, Plan("random", DEPTH, seed), length, schedules)
    finally:
        loop.close()
    return Measurement(case, labels, length, fifo.error is not None, pct, randomly)


def _rate(rate: Rate) -> str:
    low, high = rate.interval()
    return f"{rate.value:.5f} ({rate.hits}) [{low:.5f}, {high:.5f}]"


def table(measurements: Sequence[Measurement]) -> str:
    rows = [
        "| case | n | k | FIFO shows it | PCT bound 1/(nk) | predicted "
        "| PCT d=2: rate (hits) [95 % Wilson] | random: rate (hits) [95 % Wilson] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in measurements:
        rows.append(
            f"| {m.case.name} | {m.labels} | {m.length} | {'yes' if m.fifo_shows_bug else 'no'} "
            f"| {m.bound:.5f} | {m.predicted:.5f} | {_rate(m.pct)} | {_rate(m.random)} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=SCHEDULES)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    measurements = [measure(case, args.schedules, args.seed) for case in CASES]
    print(f"depth-2 lost update, {args.schedules:,} schedules per strategy, seed {args.seed}")
    print(table(measurements))
    below = [m.case.name for m in measurements if m.pct.value < m.bound or m.fifo_shows_bug]
    if below:
        print(f"PCT below its bound, or FIFO shows the bug, in: {', '.join(below)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
