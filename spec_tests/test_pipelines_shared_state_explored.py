"""S0.5-S0.7 under schedule exploration, and two claims the documents imply.

"Async Processing in Python: Make Data Pipelines Scream" shows that what a
call sees of shared state depends on where its await sits, in the one order
stock asyncio runs the calls.  Here the same programs run under many task
orders (pytest-asyncspec's exploring loop): stock asyncio's order (FIFO) is
always the documented one, exploration reaches every other order of the five
calls, and the documented relations between order and what each call sees
hold in all of them -- with other calls failing the `sum > 3` check.

The document's lesson also implies a race it does not spell out: a
check-then-act on shared state with an await in between lets another task act
on the same check (X0.1), and an ``asyncio.Lock`` held across check and act
closes it in every order (X0.2).

Seeds are fixed so each claim runs the same schedules every time; the note
at each count says how likely another seed would be to miss it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from itertools import combinations
from typing import Any

import pytest
from pipelines import CALL_IDS, Report, Shared, Step, update_after_await, update_while_blocking

from pytest_asyncspec import explore
from pytest_asyncspec.exploration.explorer import Explorer
from pytest_asyncspec.exploration.exploring_loop import ExploringLoop
from pytest_asyncspec.exploration.strategies import ReplayChooser

SOURCE = "Async Processing in Python: Make Data Pipelines Scream"
IMPLIED = f"implied by {SOURCE}"
SCHEDULES = 2000
SEED = 20261123
ALL_ORDERS = 120  # 5! orders of five calls


def trail_of(order: tuple[int, ...] | list[int]) -> str:
    return "".join(f"->{call_id}" for call_id in order)


def order_of(trail: str) -> tuple[int, ...]:
    return tuple(int(part) for part in trail.split("->")[1:])


class Runs:
    """Runs one program under schedules and keeps what each run's calls saw."""

    def __init__(self, step: Step) -> None:
        self.step = step
        self.runs: list[tuple[Shared, list[Report]]] = []

    async def __call__(self) -> None:
        shared = Shared()
        reports: list[Report] = []
        await asyncio.gather(*(self.step(shared, call_id, reports) for call_id in CALL_IDS))
        self.runs.append((shared, reports))

    def orders(self) -> set[tuple[int, ...]]:
        return {order_of(shared.trail) for shared, _ in self.runs}

    def first_time_all_seen(self) -> int | None:
        """After how many runs every order had been seen, if it was."""
        seen: set[tuple[int, ...]] = set()
        for number, (shared, _) in enumerate(self.runs, 1):
            seen.add(order_of(shared.trail))
            if len(seen) == ALL_ORDERS:
                return number
        return None


def explored(step: Step, strategy: str = "mix", schedules: int = SCHEDULES) -> Runs:
    runs = Runs(step)
    outcome = explore(runs, schedules=schedules, strategy=strategy, seed=SEED)
    assert outcome.failure is None, outcome.failure
    assert len(runs.runs) == schedules
    return runs


def assert_each_call_saw_its_predecessors(runs: Runs) -> None:
    """S0.5's relation, in any order: the call that updated n-th saw count n and
    the trail of the calls before it and itself."""
    for shared, reports in runs.runs:
        order = order_of(shared.trail)
        for report in reports:
            position = order.index(report.call_id) + 1
            assert (report.count, report.trail) == (position, trail_of(order[:position]))


def assert_reaches_every_order(runs: Runs) -> None:
    assert len(runs.orders()) == ALL_ORDERS


# -- S0.5 ----------------------------------------------------------------------


@pytest.mark.claim("S0.5", source=SOURCE, kind="O")
def test_stock_order_always_gives_the_documented_progress() -> None:
    """Stock asyncio's order (exploration's FIFO schedule), run again and again,
    always gives the documented per-call counts 1..5 and trails ->1 .. ->1->2->3->4->5."""
    runs = explored(update_after_await, strategy="fifo", schedules=50)
    assert runs.orders() == {CALL_IDS}
    for _, reports in runs.runs:
        assert [(r.call_id, r.count, r.trail) for r in reports] == [
            (n, n, trail_of(CALL_IDS[:n])) for n in CALL_IDS
        ]


@pytest.mark.claim("S0.5", source=SOURCE, kind="O")
def test_exploration_reaches_every_order_of_the_five_calls() -> None:
    """Under other orders the calls update in any of the 120 orders of five (all
    reached within 2,000 schedules), and in each the documented relation holds:
    the n-th call to update sees count n and the trail of the first n."""
    runs = explored(update_after_await)
    assert_reaches_every_order(runs)
    assert_each_call_saw_its_predecessors(runs)
    needed = runs.first_time_all_seen()
    assert needed is not None
    assert needed <= SCHEDULES


@pytest.mark.claim("S0.5", source=SOURCE, kind="O", control=True)
def test_control_fifo_alone_never_leaves_the_documented_order() -> None:
    """Negative control: exploring with the FIFO strategy only runs stock order,
    and the every-order assertion rejects it."""
    runs = explored(update_after_await, strategy="fifo", schedules=200)
    with pytest.raises(AssertionError):
        assert_reaches_every_order(runs)


# -- S0.6 ----------------------------------------------------------------------


@pytest.mark.claim("S0.6", source=SOURCE, kind="O")
def test_update_while_blocking_every_order_sees_the_final_state() -> None:
    """Updating while blocking, before the await: in stock order every call sees
    count 5 and ->1->2->3->4->5; under the 120 orders exploration reaches, every
    call still sees count 5 and the whole trail, in the order the calls started."""
    stock = explored(update_while_blocking, strategy="fifo", schedules=20)
    assert stock.orders() == {CALL_IDS}
    runs = explored(update_while_blocking)
    assert_reaches_every_order(runs)
    for shared, reports in runs.runs:
        assert {(r.count, r.trail) for r in reports} == {(5, shared.trail)}


@pytest.mark.claim("S0.6", source=SOURCE, kind="O", control=True)
def test_control_update_after_await_shows_partial_state_in_other_orders() -> None:
    """Negative control: with the update after the await, no explored order gives
    every call the final state, so S0.6's assertion rejects every run."""
    runs = explored(update_after_await, schedules=200)
    for shared, reports in runs.runs:
        with pytest.raises(AssertionError):
            assert {(r.count, r.trail) for r in reports} == {(5, shared.trail)}


# -- S0.7 ----------------------------------------------------------------------


def failing_calls(shared: Shared) -> frozenset[int]:
    return frozenset(call for call, held in shared.over_three_at_update.items() if not held)


@pytest.mark.claim("S0.7", source=SOURCE, kind="O")
def test_sum_over_three_check_fails_for_whichever_calls_update_first() -> None:
    """The `sum > 3` check made right after each update fails for calls 1, 2, 3 in
    stock order; under other orders it fails for the first three calls to update,
    whichever they are: all ten sets of three calls are seen failing it."""
    stock = explored(update_after_await, strategy="fifo", schedules=10)
    assert {failing_calls(shared) for shared, _ in stock.runs} == {frozenset({1, 2, 3})}
    runs = explored(update_after_await)
    for shared, _ in runs.runs:
        assert failing_calls(shared) == frozenset(order_of(shared.trail)[:3])
    seen = {failing_calls(shared) for shared, _ in runs.runs}
    assert seen == {frozenset(three) for three in combinations(CALL_IDS, 3)}


@pytest.mark.claim("S0.7", source=SOURCE, kind="O", control=True)
def test_control_check_at_the_end_of_each_call_holds_in_every_order() -> None:
    """Negative control: the same check made where the second variant reads the
    state (after its await) holds for every call in every explored order, and
    S0.7's explored assertion rejects every run."""
    runs = explored(update_while_blocking, schedules=300)
    for shared, reports in runs.runs:
        failing_at_end = frozenset(r.call_id for r in reports if not r.count > 3)
        assert failing_at_end == frozenset()
        with pytest.raises(AssertionError):
            assert failing_at_end == frozenset(order_of(shared.trail)[:3])


# -- X0.1 / X0.2: check-then-act across an await ---------------------------------


class BoxOffice:
    """One seat left; each buyer checks it is free, records the sale (an await),
    then takes it.  A buyer may first parse its request (one more await)."""

    def __init__(self, lock: asyncio.Lock | None = None, lock_check_only: bool = False) -> None:
        self.seats = 1
        self.sold = 0
        self.lock = lock
        self.lock_check_only = lock_check_only

    async def buy(self, parse_steps: int) -> None:
        await asyncio.sleep(0.01)  # the request arrives
        for _ in range(parse_steps):
            await asyncio.sleep(0)
        if self.lock is None:
            await self._check_then_act()
        elif self.lock_check_only:
            async with self.lock:
                free = self.seats > 0
            if free:
                await self._record_and_take()
        else:
            async with self.lock:
                await self._check_then_act()

    async def _check_then_act(self) -> None:
        if self.seats > 0:
            await self._record_and_take()

    async def _record_and_take(self) -> None:
        await asyncio.sleep(0)  # write the sale to a log
        self.seats -= 1
        self.sold += 1


def box_office_run(make: Callable[[], BoxOffice]) -> Callable[[], Coroutine[Any, Any, None]]:
    async def run() -> None:
        office = make()
        await asyncio.gather(office.buy(0), office.buy(1), office.buy(2))
        assert office.sold <= 1, f"sold {office.sold} tickets for one seat"

    return run


@pytest.mark.claim("X0.1", source=IMPLIED, kind="O")
def test_check_then_act_across_an_await_is_found_and_replays() -> None:
    """A check-then-act on a shared seat count with an await between them passes
    in stock order (the buyers arrive one parse step apart) but oversells under
    another order; exploration finds it, shrinks it to one deviation, and its
    replay token runs that order again with the same failure."""
    run = box_office_run(BoxOffice)
    outcome = explore(run, schedules=SCHEDULES, seed=SEED)
    failure = outcome.failure
    assert failure is not None
    assert failure.spec.number > 0  # stock order (schedule 0) passed
    assert isinstance(failure.error, AssertionError)
    assert "sold 2 tickets" in str(failure.error)
    assert len(failure.deviations) == 1
    assert failure.token is not None

    loop = ExploringLoop()
    try:
        explorer = Explorer(loop, lambda: loop.run_until_complete(run()), test="replay")
        replayed = explorer.run(ReplayChooser(failure.token.deviations))
        assert isinstance(replayed.error, AssertionError)
        assert replayed.deviations == list(failure.deviations)
    finally:
        loop.close()


@pytest.mark.claim("X0.1", source=IMPLIED, kind="O", control=True)
def test_control_stock_order_alone_does_not_show_the_race() -> None:
    """Negative control: only stock order (the FIFO strategy) never oversells, so
    X0.1 is about the orders exploration adds."""
    outcome = explore(box_office_run(BoxOffice), schedules=50, strategy="fifo", seed=SEED)
    assert outcome.failure is None
    assert outcome.distinct == 1


@pytest.mark.claim("X0.2", source=IMPLIED, kind="O")
def test_lock_across_check_and_act_passes_every_schedule() -> None:
    """The same buyers with an asyncio.Lock held from the check to the act never
    oversell in any of 2,000 explored schedules, which did reorder the buyers."""
    outcome = explore(
        box_office_run(lambda: BoxOffice(asyncio.Lock())), schedules=SCHEDULES, seed=SEED
    )
    assert outcome.failure is None
    assert outcome.schedules == SCHEDULES
    assert outcome.distinct > 1


@pytest.mark.claim("X0.2", source=IMPLIED, kind="O", control=True)
def test_control_lock_around_the_check_alone_still_oversells() -> None:
    """Negative control: a lock released between the check and the act does not
    close the race; exploration still finds an oversold seat."""
    outcome = explore(
        box_office_run(lambda: BoxOffice(asyncio.Lock(), lock_check_only=True)),
        schedules=SCHEDULES,
        seed=SEED,
    )
    assert outcome.failure is not None
    assert "sold 2 tickets" in str(outcome.failure.error)
