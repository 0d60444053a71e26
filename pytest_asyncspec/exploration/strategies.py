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
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .deviation import Deviation

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


def seeded_random(seed: int) -> random.Random:
    """``random.Random(seed)``, in the same state, for half the cost.

    ``random.Random(seed)`` seeds its generator in Python's ``seed`` method,
    which checks the seed's type before it calls the C generator's own
    ``seed``; for an int it does nothing else.  Called here directly, the C
    seeding is all that is left: a new seed per schedule costs about 2 us
    instead of 4 (measured in docs/benchmarks-exploration.md).
    """
    if type(seed) is not int:
        return random.Random(seed)  # what Random's own seed accepts, as it treats it
    generator = random.Random.__new__(random.Random)
    super(random.Random, generator).seed(seed)
    generator.gauss_next = None  # type: ignore[attr-defined]  # as Random.seed leaves it
    return generator


class RandomChooser:
    """Any eligible candidate, uniformly, at every pick."""

    fifo = False
    #: arrive does nothing: the loop need not call it.
    ignores_arrivals = True

    def __init__(self, seed: int) -> None:
        self._random = seeded_random(seed)
        self._bits = self._random.getrandbits

    def arrive(self, candidate: Candidate) -> None:
        pass

    def choose(
        self, candidates: Sequence[Candidate], eligible: int, pick: int, steps: dict[str, int]
    ) -> int:
        # random.randrange(eligible), inlined: it draws getrandbits(k) with k
        # the bit length of eligible until the draw is below it (CPython
        # 3.10 to 3.13), so the same seed gives the same picks, at a third
        # of the cost of its three Python-level calls.
        bits = self._bits
        width = eligible.bit_length()
        drawn = bits(width)
        while drawn >= eligible:
            drawn = bits(width)
        return drawn


class PctChooser:
    """PCT: random priorities per label, ``depth - 1`` priority-change points
    spread over the first ``length`` picks.

    Candidates wait in a heap by priority, so a pick costs O(log n) however
    many callbacks are ready (ten thousand gathered tasks, say).
    """

    fifo = False

    def __init__(self, seed: int, depth: int, length: int) -> None:
        self._random = seeded_random(seed)
        self.depth = depth
        span = max(length, depth)
        points = self._random.sample(range(1, span + 1), depth - 1)
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
    """The seed of schedule ``number`` of a run seeded ``run_seed`` (stable
    across processes and Python versions)."""
    global _blake2b
    if _blake2b is None:
        import hashlib  # here: hashlib costs milliseconds at pytest start-up

        _blake2b = hashlib.blake2b
    digest = _blake2b(f"{run_seed}/{number}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


#: hashlib.blake2b, once schedule_seed first needed it.
_blake2b: Any = None


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
