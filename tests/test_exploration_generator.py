"""The schedules' random numbers: SplitMix64 in Python and its C twin."""

from __future__ import annotations

import collections
import os
from collections.abc import Callable

import pytest

from pytest_asyncspec.exploration import generator
from pytest_asyncspec.exploration.generator import Generator, PySplitMix, distinct_points
from pytest_asyncspec.exploration.strategies import PctChooser

try:
    from pytest_asyncspec.exploration._pick_c import (  # type: ignore[attr-defined]
        SplitMix as CSplitMix,
    )
except ImportError:  # not built here (no compiler, or not Linux)
    CSplitMix = None

KINDS: list[Callable[[int], Generator]] = [PySplitMix]
if CSplitMix is not None:
    KINDS.append(CSplitMix)
both = pytest.mark.parametrize("make", KINDS, ids=lambda kind: kind.__module__.rsplit(".")[-1])


@both
def test_the_first_words_are_splitmix64s_published_ones(make: Callable[[int], Generator]) -> None:
    # The reference implementation (Vigna's splitmix64.c) seeded with 0 and
    # with 1234567.
    zero = make(0)
    assert [zero.next64() for _ in range(3)] == [
        0xE220A8397B1DCDAF,
        0x6E789E6AA1B965F4,
        0x06C45D188009454F,
    ]
    other = make(1234567)
    assert [other.next64() for _ in range(2)] == [6457827717110365317, 3203168211198807973]


def test_the_c_generator_draws_what_the_python_one_draws() -> None:
    if CSplitMix is None:
        pytest.skip("_pick_c is not built here: the Python generator is the only one")
    # The plugin draws with the C type unless told to stay in Python.
    pure = bool(os.environ.get("PYTEST_ASYNCSPEC_PURE_PYTHON"))
    assert generator.SplitMix is (PySplitMix if pure else CSplitMix)
    for seed in (0, 1, -1, 2**64 + 5, 2**63 - 1, 123456789):
        c, py = CSplitMix(seed), PySplitMix(seed)
        assert c.state == py.state == seed % 2**64
        for bound in (1, 2, 3, 5, 8, 9, 100, 2**31 + 1, 2**40 + 3, 2**62, 2**63 - 1):
            assert [c.below(bound) for _ in range(40)] == [py.below(bound) for _ in range(40)]
        assert [c.random() for _ in range(40)] == [py.random() for _ in range(40)]
        assert [c.next64() for _ in range(5)] == [py.next64() for _ in range(5)]
        assert c.state == py.state
        c.state = py.state = 99
        assert c.next64() == py.next64()


@both
def test_below_is_in_range_and_even(make: Callable[[int], Generator]) -> None:
    drawn = make(11)
    for bound in (1, 2, 3, 6, 7, 1000):
        assert all(0 <= drawn.below(bound) < bound for _ in range(300))
    # 60,000 draws of 6: each face within 5 % of 10,000 (a fixed seed, so
    # this is a check of the rejection step, not a chance event).
    counts = collections.Counter(drawn.below(6) for _ in range(60_000))
    assert sorted(counts) == [0, 1, 2, 3, 4, 5]
    assert all(9_500 < count < 10_500 for count in counts.values()), counts
    units = [drawn.random() for _ in range(10_000)]
    assert all(0.0 <= unit < 1.0 for unit in units)
    assert 0.48 < sum(units) / len(units) < 0.52


@both
def test_a_bound_of_one_draws_nothing(make: Callable[[int], Generator]) -> None:
    drawn = make(5)
    before = drawn.state
    assert drawn.below(1) == 0
    assert drawn.state == before


@both
def test_bad_bounds_are_refused_with_the_bound_named(make: Callable[[int], Generator]) -> None:
    drawn = make(5)
    for bound in (0, -3):
        with pytest.raises(ValueError, match=f"at least 1, not {bound}"):
            drawn.below(bound)


def test_distinct_points_are_different_and_in_span() -> None:
    for seed in range(50):
        points = distinct_points(PySplitMix(seed), 3, 4)
        assert len(set(points)) == 3
        assert all(1 <= point <= 4 for point in points)
    with pytest.raises(ValueError, match=r"cannot draw 3 different numbers of 1\.\.2"):
        distinct_points(PySplitMix(1), 3, 2)


def test_pcts_change_points_and_priorities_come_from_its_seed() -> None:
    chooser = PctChooser(seed=21, depth=4, length=30)
    reference = PySplitMix(21)
    points = distinct_points(reference, 3, 30)
    assert chooser._lowered_to == {point: 4 - rank for rank, point in enumerate(sorted(points), 1)}
    # The next draw is the first label's priority.
    assert chooser._random.state == reference.state
