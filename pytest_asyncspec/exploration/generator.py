"""The random numbers a schedule draws: SplitMix64, our own.

Every schedule has its own seed (so that one schedule can run again alone),
which means a generator is seeded once per schedule.  ``random.Random``
fills the Mersenne Twister's 624-word state to seed, a large share of a
short schedule (docs/benchmarks-exploration.md).  SplitMix64
(Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
OOPSLA 2014) keeps one 64-bit word: seeding is a store, a draw is a handful
of multiplications and shifts.  Its output passes BigCrush, far beyond what
choosing among a few ready callbacks needs.

It is also ours: what a seed draws depends on this file (and its C twin,
``_pick_c.SplitMix``, which draws the same numbers), not on how a version
of CPython implements ``random``.

:data:`SplitMix` is the C type where ``_pick_c`` was built, else
:class:`PySplitMix`; a test checks that both draw the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol, cast

MASK = (1 << 64) - 1
#: The golden ratio's fractional part in 64 bits: SplitMix64's increment.
GOLDEN = 0x9E3779B97F4A7C15
_TO_UNIT = 1.0 / (1 << 53)


def mix64(value: int) -> int:
    """SplitMix64's output function: a bijection of 64-bit words whose every
    output bit depends on every input bit."""
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & MASK
    return value ^ (value >> 31)


class Generator(Protocol):
    """What a chooser draws from."""

    state: int

    def next64(self) -> int:
        """The next 64-bit word."""
        ...

    def below(self, bound: int) -> int:
        """Uniform in ``range(bound)``; ``bound`` at least 1 (1 draws nothing)."""
        ...

    def random(self) -> float:
        """Uniform in [0, 1), in steps of 2**-53."""
        ...


class PySplitMix:
    """SplitMix64 in Python: the reference the C type follows."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK

    def next64(self) -> int:
        state = self.state = (self.state + GOLDEN) & MASK
        return mix64(state)

    def below(self, bound: int) -> int:
        if bound <= 1:
            if bound < 1:
                raise ValueError(f"below() needs a bound of at least 1, not {bound}")
            return 0
        # The fewest top bits that cover bound - 1, drawn until below bound:
        # uniform, and under two draws on average.
        shift = 64 - (bound - 1).bit_length()
        while True:
            drawn = self.next64() >> shift
            if drawn < bound:
                return drawn

    def random(self) -> float:
        return (self.next64() >> 11) * _TO_UNIT


def distinct_points(generator: Generator, count: int, span: int) -> list[int]:
    """``count`` different numbers of ``1..span``, in the order drawn."""
    if count > span:
        raise ValueError(f"cannot draw {count} different numbers of 1..{span}")
    points: list[int] = []
    while len(points) < count:
        point = 1 + generator.below(span)
        if point not in points:
            points.append(point)
    return points


def _c_type() -> Callable[[int], Generator]:
    """``_pick_c.SplitMix`` where it was built (and not switched off by
    ``PYTEST_ASYNCSPEC_PURE_PYTHON``), else :class:`PySplitMix`."""
    if not os.environ.get("PYTEST_ASYNCSPEC_PURE_PYTHON"):
        try:
            from . import _pick_c  # type: ignore[attr-defined]
        except ImportError:
            pass
        else:
            return cast("Callable[[int], Generator]", _pick_c.SplitMix)
    return PySplitMix


#: The generator a schedule's chooser draws from: ``SplitMix(seed)``.
SplitMix = _c_type()
