"""How schedules are chosen: FIFO, random, PCT, a mix of them, and replays.

Every schedule has its own seed, derived from the run's seed and the
schedule's number, so one schedule can be run again alone.  Schedule 0 of
every exploration is FIFO: stock asyncio's own order, checked first, and the
length of that run calibrates PCT.

PCT (probabilistic concurrency testing; Burckhardt, Kothari, Musuvathi and
Nagarakatte, ASPLOS 2010) gives every task a random priority, always runs
the ready task with the highest, and at ``depth - 1`` randomly chosen steps
drops the running task's priority below all others.  For a program of ``n``
tasks and ``k`` steps it finds any bug of depth ``d`` (one that needs ``d``
ordering constraints to show) with probability at least ``1 / (n k^(d-1))``
per schedule.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .deviation import Deviation
from .generator import GOLDEN, MASK, SplitMix, distinct_points, mix64

if TYPE_CHECKING:
    from .exploring_loop import Candidate, Chooser

# The mix: after FIFO, random and PCT at depths 2 and 3 in turn.
_MIX_CYCLE = (("random", 0), ("pct", 2), ("pct", 3))


class FifoChooser:
    """Always the oldest: stock asyncio's order."""

    fifo = True
    #: arrive does nothing: the loop need not call it.
    ignores_arrivals = True

    def arrive(self, candidate: Candidate) -> None:
        pass

    def choose(
        self, candidates: Sequence[Candidate], eligible: int, pick: int, steps: dict[str, int]
    ) -> int:
        return 0


class RandomChooser:
    """Any eligible candidate, uniformly, at every pick."""

    fifo = False
    #: arrive does nothing: the loop need not call it.
    ignores_arrivals = True

    def __init__(self, seed: int) -> None:
        self._random = SplitMix(seed)
        self._below = self._random.below

    def arrive(self, candidate: Candidate) -> None:
        pass

    def choose(
        self, candidates: Sequence[Candidate], eligible: int, pick: int, steps: dict[str, int]
    ) -> int:
        return self._below(eligible)


class PctChooser:
    """PCT: random priorities per label, ``depth - 1`` priority-change points
    spread over the first ``length`` picks.

    Candidates wait in a heap by priority, so a pick costs O(log n) however
    many callbacks are ready (ten thousand gathered tasks, say).  The C pick
    loop does ``arrive`` and ``choose`` itself, on ``_priority`` and on heaps
    of its own that start from ``_heap`` and ``_held_back`` (which only the
    Python pick loop then moves).
    """

    fifo = False

    def __init__(self, seed: int, depth: int, length: int) -> None:
        self._random = SplitMix(seed)
        self.depth = depth
        points = distinct_points(self._random, depth - 1, max(length, depth))
        # The i-th change point (in time order) lowers to depth - i: below
        # every initial priority (> depth) and below earlier changes.
        self._lowered_to = {point: depth - rank for rank, point in enumerate(sorted(points), 1)}
        self._priority: dict[str, float] = {}
        # (-priority, arrival number): entries of candidates that have run
        # since are dropped when they reach the top.
        self._heap: list[tuple[float, int]] = []
        # (arrival number, -priority) of candidates held back behind an older
        # loop callback; the lane only moves forward, so each is released once.
        self._held_back: list[tuple[int, float]] = []

    def arrive(self, candidate: Candidate) -> None:
        value = self._priority.get(candidate.label)
        if value is None:
            value = self._priority[candidate.label] = self.depth + 1 + self._random.random()
        heapq.heappush(self._heap, (-value, candidate.seq))

    def choose(
        self, candidates: Sequence[Candidate], eligible: int, pick: int, steps: dict[str, int]
    ) -> int:
        heap = self._heap
        held_back = self._held_back
        last_eligible = candidates[eligible - 1].seq
        while held_back and held_back[0][0] <= last_eligible:
            seq, negative = heapq.heappop(held_back)
            heapq.heappush(heap, (negative, seq))
        while True:
            negative, seq = heap[0]
            # (seq,) sorts just before the candidate of that arrival, if any.
            index = bisect.bisect_left(candidates, (seq,))
            if index == len(candidates) or candidates[index].seq != seq:
                heapq.heappop(heap)  # it ran already
            elif seq > last_eligible:
                heapq.heappop(heap)
                heapq.heappush(held_back, (seq, negative))
            else:
                break
        lowered = self._lowered_to.get(pick + 1)
        if lowered is not None:
            # The step runs, then its task yields to everyone else.
            self._priority[candidates[index].label] = lowered
        return index


class ReplayChooser:
    """FIFO except where a recorded deviation says otherwise.

    A deviation applies when its label's step comes up as the oldest ready
    callback while the label it names is ready to run instead;
    :meth:`unapplied` lists the ones that never did (a stale or mistyped
    token: the schedule run was not the one it records).
    """

    #: arrive does nothing: the loop need not call it.
    ignores_arrivals = True

    def __init__(self, deviations: Sequence[Deviation]) -> None:
        self.fifo = not deviations
        self._deviations = tuple(deviations)
        self._pending: dict[tuple[str, int], deque[str]] = {}
        for deviation in deviations:
            key = (deviation.instead_of, deviation.step)
            self._pending.setdefault(key, deque()).append(deviation.ran)
        self._given = {key: len(waiting) for key, waiting in self._pending.items()}
        # Keys of pending deviations whose step came up as the oldest.
        self._came_up: set[tuple[str, int]] = set()

    def arrive(self, candidate: Candidate) -> None:
        pass

    def choose(
        self, candidates: Sequence[Candidate], eligible: int, pick: int, steps: dict[str, int]
    ) -> int:
        oldest = candidates[0].label
        key = (oldest, steps.get(oldest, 0))
        wanted = self._pending.get(key)
        if wanted:
            self._came_up.add(key)
            for index in range(eligible):
                if candidates[index].label == wanted[0]:
                    wanted.popleft()
                    return index
        return 0

    def unapplied(self) -> list[tuple[Deviation, bool]]:
        """The deviations that never applied, each with whether its step came
        up as the oldest (then the label to run instead was not ready)."""
        # A key's deviations apply in token order: the last len(waiting) did not.
        skip = {key: self._given[key] - len(waiting) for key, waiting in self._pending.items()}
        result = []
        for deviation in self._deviations:
            key = (deviation.instead_of, deviation.step)
            if skip[key]:
                skip[key] -= 1
            else:
                result.append((deviation, key in self._came_up))
        return result


def schedule_seed(run_seed: int, number: int) -> int:
    """The seed of schedule ``number`` of a run seeded ``run_seed``: 63 bits,
    the same in every process and on every Python version.

    The run seed (any int) is hashed once into a 64-bit key; schedule ``n``
    is SplitMix64's output for the key plus ``n`` increments, so that
    neighbouring numbers give unrelated seeds at the cost of a few
    multiplications, where a hash per schedule cost more.
    """
    global _last_key
    run, key = _last_key
    if run != run_seed:
        key = _run_key(run_seed)
        _last_key = (run_seed, key)
    return mix64((key + number * GOLDEN) & MASK) >> 1


def _run_key(run_seed: int) -> int:
    import hashlib  # here: hashlib costs milliseconds at pytest start-up

    digest = hashlib.blake2b(str(run_seed).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


#: The last run seed schedule_seed saw, and its key (at first, a seed that
#: equals no run seed).
_last_key: tuple[object, int] = (object(), 0)


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule: how its chooser is made, enough to make it again."""

    number: int
    strategy: str  # fifo, random or pct
    seed: int
    depth: int = 0

    @property
    def name(self) -> str:
        """``fifo``, ``random`` or ``pct<depth>``, as replay tokens carry it."""
        return f"pct{self.depth}" if self.strategy == "pct" else self.strategy

    @classmethod
    def from_name(cls, name: str, seed: int, number: int = -1) -> ScheduleSpec:
        """The spec a token's strategy name and seed stand for."""
        if name.startswith("pct"):
            return cls(number, "pct", seed, int(name[3:]))
        return cls(number, name, seed)

    def chooser(self, length: int) -> Chooser:
        """A fresh chooser; ``length`` is the FIFO run's pick count (for PCT)."""
        if self.strategy == "fifo":
            return FifoChooser()
        if self.strategy == "random":
            return RandomChooser(self.seed)
        return PctChooser(self.seed, self.depth, length)


@dataclass(frozen=True)
class Plan:
    """Which strategy each schedule of an exploration uses."""

    strategy: str
    depth: int
    seed: int

    def spec(self, number: int) -> ScheduleSpec:
        seed = schedule_seed(self.seed, number)
        if number == 0 or self.strategy == "fifo":
            return _new_spec(number, "fifo", seed, 0)
        if self.strategy == "random":
            return _new_spec(number, "random", seed, 0)
        if self.strategy == "pct":
            return _new_spec(number, "pct", seed, self.depth)
        strategy, depth = _MIX_CYCLE[(number - 1) % len(_MIX_CYCLE)]
        return _new_spec(number, strategy, seed, depth)


def _new_spec(number: int, strategy: str, seed: int, depth: int) -> ScheduleSpec:
    """``ScheduleSpec(number, strategy, seed, depth)``, made once per schedule:
    the frozen ``__init__`` sets each field through ``object.__setattr__``, and
    filling the instance's dictionary in the same order makes the same object
    in a third of the time."""
    made: ScheduleSpec = object.__new__(ScheduleSpec)
    fields = made.__dict__
    fields["number"] = number
    fields["strategy"] = strategy
    fields["seed"] = seed
    fields["depth"] = depth
    return made


def pct_bound(tasks: int, length: int, depth: int) -> float:
    """PCT's guaranteed chance per schedule of hitting a given depth-``depth``
    bug in a run of ``tasks`` tasks and ``length`` steps."""
    return 1.0 / (max(tasks, 1) * float(max(length, 1)) ** (depth - 1))
