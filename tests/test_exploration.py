"""Exploring a body: strategies, replay tokens, shrinking and the self-check."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pytest_asyncspec import explore, replay
from pytest_asyncspec.clock import time_patch
from pytest_asyncspec.exploration import Deviation, ExploringLoop, ReplayToken, TokenError
from pytest_asyncspec.exploration.explorer import Explorer, ReplayMismatchError
from pytest_asyncspec.exploration.generator import PySplitMix
from pytest_asyncspec.exploration.options import (
    parse_depth,
    parse_schedules,
    parse_seed,
    parse_strategy,
)
from pytest_asyncspec.exploration.replay_token import plugin_version
from pytest_asyncspec.exploration.strategies import (
    PctChooser,
    Plan,
    RandomChooser,
    ScheduleSpec,
    pct_bound,
    schedule_seed,
)

Body = Callable[[], Coroutine[Any, Any, None]]


def lost_update(parse_steps: tuple[int, ...] = (0, 1)) -> Body:
    """Check-then-act across an await; stock order passes (see spec X0.1)."""

    async def run() -> None:
        state = {"left": 1, "sold": 0}

        async def buy(steps: int) -> None:
            await asyncio.sleep(0.01)
            for _ in range(steps):
                await asyncio.sleep(0)
            if state["left"] > 0:
                await asyncio.sleep(0)
                state["left"] -= 1
                state["sold"] += 1

        await asyncio.gather(*(buy(steps) for steps in parse_steps))
        assert state["sold"] <= 1, f"sold {state['sold']}"

    return run


# -- plans and strategies --------------------------------------------------------


def test_plan_starts_with_stock_order_then_mixes() -> None:
    plan = Plan("mix", 3, seed=5)
    names = [plan.spec(n).name for n in range(7)]
    assert names == ["fifo", "random", "pct2", "pct3", "random", "pct2", "pct3"]
    assert [Plan("pct", 4, 5).spec(n).name for n in range(3)] == ["fifo", "pct4", "pct4"]
    assert {Plan("fifo", 3, 5).spec(n).name for n in range(5)} == {"fifo"}


@pytest.mark.parametrize("strategy", ["mix", "random", "pct", "fifo"])
def test_a_plans_specs_are_those_the_constructor_makes(strategy: str) -> None:
    """Plan.spec fills a spec's fields without the frozen __init__: the spec
    must be the one ScheduleSpec(...) makes, field for field."""
    plan = Plan(strategy, 3, seed=9)
    for number in range(7):
        spec = plan.spec(number)
        made = ScheduleSpec(spec.number, spec.strategy, spec.seed, spec.depth)
        assert (spec, hash(spec), repr(spec)) == (made, hash(made), repr(made))
        assert list(vars(spec).items()) == list(vars(made).items())
        assert spec.seed == schedule_seed(9, number)


def test_schedule_seeds_are_stable_and_distinct() -> None:
    assert schedule_seed(1, 2) == schedule_seed(1, 2)
    seeds = {schedule_seed(run, number) for run in range(5) for number in range(50)}
    assert len(seeds) == 250
    # Fixed across processes and Python versions: a token's seed means the
    # same thing everywhere (pinned to this version's SplitMix64 keys).
    assert schedule_seed(0, 0) == 5146348890257833185
    assert schedule_seed(20261123, 7) == 4759010797643169319
    assert schedule_seed(-5, 3) == 4897227203942199890
    assert schedule_seed(2**200, 1) == 4011522148076643953
    assert all(0 <= seed < 2**63 for seed in seeds)


def test_pct_lowers_priorities_at_its_change_points() -> None:
    chooser = PctChooser(seed=3, depth=3, length=40)
    points = sorted(chooser._lowered_to)
    assert len(points) == 2
    assert all(1 <= point <= 40 for point in points)
    assert [chooser._lowered_to[p] for p in points] == [2, 1]
    assert PctChooser(seed=3, depth=1, length=40)._lowered_to == {}


@pytest.mark.parametrize("seed", [0, 1, 7, 2**63 - 1, -5])
def test_the_random_chooser_draws_what_its_generator_draws(seed: int) -> None:
    """Its choice is SplitMix64's below(eligible), seeded with the schedule's
    seed: what a seed explores depends on generator.py alone."""
    chooser = RandomChooser(seed)
    reference = PySplitMix(seed)
    eligible = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 100, 1, 1, 2] * 20
    drawn = [chooser.choose([], n, pick, {}) for pick, n in enumerate(eligible)]
    assert drawn == [reference.below(n) for n in eligible]


def test_pct_bound_is_one_over_n_k_to_the_d_minus_one() -> None:
    assert pct_bound(4, 10, 1) == pytest.approx(1 / 4)
    assert pct_bound(4, 10, 3) == pytest.approx(1 / 400)


@pytest.mark.parametrize(
    ("parse", "value", "message"),
    [
        (parse_strategy, "dfs", "expected one of 'mix', 'fifo', 'random', 'pct'"),
        (parse_depth, 0, "expected a whole number from 1 to 10"),
        (parse_depth, "11", "expected a whole number from 1 to 10"),
        (parse_depth, 2.5, "expected a whole number"),
        (parse_schedules, -1, "expected a whole number 0 or more"),
        (parse_schedules, "many", "expected a whole number 0 or more"),
        (parse_schedules, True, "expected a whole number"),
        (parse_seed, "abc", "or 'random'"),
    ],
)
def test_bad_exploration_values_name_what_is_accepted(
    parse: Callable[[object], object], value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(value)


def test_good_exploration_values_parse() -> None:
    assert parse_schedules("2000") == 2000
    assert parse_depth(" 2 ") == 2
    assert parse_seed("random") is None
    assert parse_seed("17") == 17
    assert parse_strategy("pct") == "pct"


# -- tokens ------------------------------------------------------------------------


def test_token_round_trips_awkward_labels_as_one_shell_word() -> None:
    token = ReplayToken(
        "test_x[a/b: c]",
        "pct2",
        123,
        (Deviation("worker-1", 3, "odd name:t1"), Deviation("a@b=c,d", 0, "loop")),
    )
    text = token.encode()
    assert all(ch.isalnum() or ch in ":%,@=-._~" for ch in text), text
    decoded = ReplayToken.decode(text)
    assert decoded.test == token.test
    assert decoded.deviations == token.deviations
    assert (decoded.strategy, decoded.seed, decoded.version) == ("pct2", 123, plugin_version())
    empty = ReplayToken("t", "fifo", 0, ()).encode()
    assert empty.endswith(":-")
    assert ReplayToken.decode(empty).deviations == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hello", "not an asyncspec replay token"),
        ("asyncspec1:x", "expected 6 ':'-separated fields"),
        (f"asyncspec1:{plugin_version()}:t:zigzag:1:-", "should be fifo/random/pctN"),
        (f"asyncspec1:{plugin_version()}:t:random:seed:-", "should be fifo/random/pctN"),
        (f"asyncspec1:{plugin_version()}:t:random:1:a@b", "is not '<label>@<step>=<label>'"),
        ("asyncspec1:0.0.1:t:random:1:-", "made by pytest-asyncspec 0.0.1"),
    ],
)
def test_bad_tokens_are_refused_with_what_to_do(text: str, message: str) -> None:
    with pytest.raises(TokenError, match=message):
        ReplayToken.decode(text)


def test_a_token_from_another_version_says_how_to_replay_it() -> None:
    with pytest.raises(TokenError, match=r"Install pytest-asyncspec==0\.0\.1"):
        ReplayToken.decode("asyncspec1:0.0.1:t:random:1:-")


# -- exploring -----------------------------------------------------------------------


def test_exploration_finds_shrinks_and_replays_a_race() -> None:
    outcome = explore(lost_update(), schedules=500, seed=11, name="race")
    failure = outcome.failure
    assert failure is not None
    assert failure.spec.number > 0
    assert outcome.schedules == failure.spec.number + 1
    assert len(failure.deviations) == 1
    assert failure.found_with >= 1
    assert failure.token is not None
    assert failure.token.test == "race"
    assert failure.sites
    assert "ran ahead of" in failure.sites[0]
    assert "suspended at" in failure.sites[0]
    assert __file__.rsplit("/", 1)[-1] in failure.sites[0]
    assert "buy-" in failure.timeline

    loop = ExploringLoop()
    try:
        explorer = Explorer(loop, lambda: loop.run_until_complete(lost_update()()), test="race")
        again = explorer.replay(ReplayToken.decode(failure.token.encode()))
        assert again is not None
        assert isinstance(again.error, AssertionError)
        assert again.deviations == failure.deviations
    finally:
        loop.close()


def replay_on_a_fresh_loop(body: Body, token: ReplayToken) -> Any:
    loop = ExploringLoop()
    try:
        return Explorer(loop, lambda: loop.run_until_complete(body()), test=token.test).replay(
            token
        )
    finally:
        loop.close()


def test_a_token_whose_deviations_never_apply_does_not_pass_its_replay() -> None:
    failure = explore(lost_update(), schedules=500, seed=11, name="race").failure
    assert failure is not None
    assert failure.token is not None
    (real,) = failure.token.deviations
    ghost = Deviation("nobody-1", 0, "ghost-9")  # no such task: a mistyped token
    not_ready = Deviation(real.instead_of, real.step, "ghost-9")  # its step does come up
    for deviation, why in [
        (ghost, "nobody-1's step 0 never came up as the oldest ready callback"),
        (not_ready, "came up as the oldest ready callback, but ghost-9 was not ready"),
    ]:
        token = ReplayToken("race", "random", 1, (deviation,))
        with pytest.raises(ReplayMismatchError) as raised:
            replay_on_a_fresh_loop(lost_update(), token)
        assert isinstance(raised.value, TokenError)
        assert raised.value.unapplied == (deviation,)
        assert raised.value.passed
        message = str(raised.value)
        assert "its one deviation from stock order never applied" in message
        assert why in message
        assert "the test's tasks or code changed since then" in message
        assert "copied whole" in message

    # A token whose real deviation applies fails as it should; the one that did
    # not apply is named on the failure.
    mixed = ReplayToken("race", "random", 1, (ghost, real))
    again = replay_on_a_fresh_loop(lost_update(), mixed)
    assert again is not None
    assert isinstance(again.error, AssertionError)
    assert again.deviations == (real,)
    assert again.mismatch is not None
    assert again.mismatch.unapplied == (ghost,)
    assert not again.mismatch.passed
    assert "1 of its 2 deviations from stock order never applied" in str(again.mismatch)


def test_a_stored_token_that_no_longer_applies_is_passed_over_by_explore() -> None:
    # The failure store replays tokens first; a stale one is dropped, not an error.
    loop = ExploringLoop()
    try:
        explorer = Explorer(loop, lambda: loop.run_until_complete(lost_update()()), test="race")
        stale = ReplayToken("race", "random", 1, (Deviation("nobody-1", 0, "ghost-9"),))
        outcome = explorer.explore(Plan("fifo", 3, 1), 3, first=[stale])
    finally:
        loop.close()
    assert outcome.replayed == 1
    assert outcome.failure is None
    assert outcome.schedules == 3


def test_exploration_of_correct_code_runs_every_schedule() -> None:
    async def correct() -> None:
        lock = asyncio.Lock()
        state = {"n": 0}

        async def bump() -> None:
            async with lock:
                value = state["n"]
                await asyncio.sleep(0)
                state["n"] = value + 1

        await asyncio.gather(*(bump() for _ in range(4)))
        assert state["n"] == 4

    outcome = explore(correct, schedules=300, seed=1)
    assert outcome.failure is None
    assert outcome.schedules == 300
    assert outcome.distinct > 10
    assert outcome.length > 0
    assert outcome.labels > 4
    assert [d for d, _ in outcome.bounds()] == [2, 3]


def test_fifo_strategy_never_finds_the_stock_passing_race() -> None:
    outcome = explore(lost_update(), schedules=100, strategy="fifo", seed=1)
    assert outcome.failure is None
    assert outcome.distinct == 1


@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_each_strategy_finds_the_race(strategy: str) -> None:
    outcome = explore(lost_update(), schedules=2000, strategy=strategy, depth=2, seed=3)
    assert outcome.failure is not None
    assert outcome.failure.spec.strategy == strategy


def test_a_failure_in_stock_order_is_reported_with_no_deviation() -> None:
    outcome = explore(lost_update((0, 0)), schedules=50, seed=1)
    failure = outcome.failure
    assert failure is not None
    assert failure.spec.number == 0
    assert failure.deviations == ()
    assert failure.token is not None
    assert not failure.carried_over


def test_state_carried_across_schedules_is_not_blamed_on_stock_order() -> None:
    runs: list[int] = []  # outlives every schedule, like a module global or a file

    async def accumulates() -> None:
        runs.append(1)
        await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))
        assert len(runs) == 1, f"{len(runs)} runs recorded"

    outcome = explore(accumulates, schedules=50, seed=1)
    failure = outcome.failure
    assert failure is not None
    assert failure.spec.number == 1  # schedule 0, stock order, passed
    assert failure.deviations == ()  # every schedule fails from then on
    assert failure.carried_over
    assert failure.token is None  # replayed alone, stock order passes
    assert failure.nondeterminism is None


def test_a_body_that_does_not_repeat_itself_gets_no_token() -> None:
    runs = itertools.count()

    async def flaky() -> None:
        # Steps taken depend on how many runs came before: not on the schedule.
        for _ in range(next(runs) % 3):
            await asyncio.sleep(0)
        raise AssertionError("always fails")

    outcome = explore(flaky, schedules=10, seed=1)
    failure = outcome.failure
    assert failure is not None
    assert failure.token is None
    assert failure.nondeterminism is not None
    assert "the same seed" in failure.nondeterminism


def test_tasks_left_running_are_cancelled_between_schedules() -> None:
    started: list[int] = []
    cancelled: list[int] = []
    left_behind: list[asyncio.Future[None]] = []

    async def leaky() -> None:
        async def forever(number: int) -> None:
            started.append(number)
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append(number)
                raise

        left_behind.append(asyncio.ensure_future(forever(len(started))))
        await asyncio.sleep(0)

    outcome = explore(leaky, schedules=20, seed=1)
    assert outcome.failure is None
    # In some orders the body ends before its task's first step: that task
    # is cancelled before it starts.  Every task that started was cancelled.
    assert 0 < len(started) <= 20
    assert sorted(cancelled) == sorted(started)
    assert all(task.cancelled() for task in left_behind)


async def _pinned_body() -> None:
    """Timers due together, tasks, loop callbacks and a cancelled callback."""
    loop = asyncio.get_running_loop()
    trail: list[str] = []

    async def worker(name: str, naps: int) -> None:
        await asyncio.sleep(0.01)
        for step in range(naps):
            loop.call_soon(trail.append, f"{name}{step}")
            await asyncio.sleep(0)
        trail.append(name)

    loop.call_soon(trail.append, "never").cancel()
    workers = (worker(name, naps) for name, naps in (("a", 1), ("b", 3), ("c", 2), ("d", 0)))
    await asyncio.gather(*workers, asyncio.sleep(0.01))


def _explored_digest(strategy: str, seed: int, schedules: int) -> str:
    """A digest of every schedule's picks and deviations, in order."""
    loop = ExploringLoop()
    seen: list[str] = []

    def body() -> None:
        loop.run_until_complete(_pinned_body())
        seen.append(repr((loop.picks, loop.deviations)))

    try:
        outcome = Explorer(loop, body, test="pinned").explore(Plan(strategy, 3, seed), schedules)
    finally:
        loop.close()
    assert outcome.failure is None
    assert len(seen) == schedules
    return hashlib.sha256("\n".join(seen).encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    ("strategy", "digest"),
    [("random", "5c18077c7db7c10c"), ("pct", "e7a391180ee56750"), ("mix", "713a212ab85c2d36")],
)
def test_a_seed_explores_the_schedules_it_always_explored(strategy: str, digest: str) -> None:
    """Pinned to the schedules of this version's generator (SplitMix64, in
    generator.py): a seed printed by an earlier run (``--asyncspec-seed``)
    must explore the same schedules after the explorer is made faster (the
    pool and its labels, the clean-up between schedules, the pick loop in C
    or in Python).  The pins change only with the generator or the seeds'
    derivation, which the changelog then says."""
    assert _explored_digest(strategy, seed=7, schedules=60) == digest


def test_callbacks_a_schedule_leaves_queued_run_before_the_next_schedule() -> None:
    """The clean-up between schedules runs what the body left queued (here a
    callback its last step scheduled) before the next schedule begins, and
    skips the run only when nothing is left."""
    loop = ExploringLoop()
    trail: list[int] = []
    seen_at_start: list[list[int]] = []
    first_picks: list[str] = []

    async def run() -> None:
        seen_at_start.append(list(trail))
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        # Runs before the loop stops, and queues a callback that runs after.
        loop.call_soon(loop.call_soon, trail.append, len(seen_at_start))

    def body() -> None:
        loop.run_until_complete(run())
        first_picks.append(loop.picks[0])

    try:
        outcome = Explorer(loop, body, test="left").explore(Plan("random", 3, 1), 4)
        assert outcome.failure is None
        assert not loop.has_ready()
    finally:
        loop.close()
    assert seen_at_start == [[], [1], [1, 2], [1, 2, 3]]
    # Not picked at the start of the next schedule, as part of it.
    assert first_picks == ["run-1"] * 4


def test_a_task_the_clean_up_between_schedules_started_is_not_a_later_schedules_leftover() -> None:
    """The tasks from before a run are looked up once per exploration and
    kept, except after a clean-up that ran the loop: a task started there
    (by a callback the body left queued) was there before the next run, and
    is not cancelled as what that run left running."""
    loop = ExploringLoop()
    background: list[asyncio.Task[None]] = []
    cancelled: list[str] = []
    left: list[list[asyncio.Task[Any]]] = []

    async def idle() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append("background")
            raise

    def start_background() -> None:
        background.append(loop.create_task(idle()))

    async def run() -> None:
        await asyncio.sleep(0)
        if not background:
            # Runs before the loop stops, and queues what runs after it.
            asyncio.get_running_loop().call_soon(loop.call_soon, start_background)

    explorer = Explorer(loop, lambda: loop.run_until_complete(run()), test="between")
    explorer.on_leftovers = left.append
    try:
        outcome = explorer.explore(Plan("random", 3, 1), 5)
        assert outcome.failure is None
        assert len(background) == 1
        assert not background[0].done()
        assert cancelled == []
        assert left == []
    finally:
        for task in background:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*background, return_exceptions=True))
        loop.close()


def test_the_loop_would_idle_only_with_nothing_ready_due_or_watched() -> None:
    loop = ExploringLoop()
    try:
        assert loop.would_idle()
        handle = loop.call_soon(lambda: None)
        assert not loop.would_idle()
        handle.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        assert loop.would_idle()
        timer = loop.call_later(0, lambda: None)
        assert not loop.would_idle(), "a timer due now would run"
        timer.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        later = loop.call_later(5, lambda: None)
        assert loop.would_idle(), "a timer due later does not run now"
        later.cancel()
        reader, writer = socket.socketpair()
        try:
            loop.add_reader(reader, lambda: None)
            assert not loop.would_idle(), "a watched socket may queue its callback"
            loop.remove_reader(reader)
        finally:
            reader.close()
            writer.close()
        assert loop.would_idle()
    finally:
        loop.close()


def test_exploring_leaves_the_time_and_thread_functions_as_it_found_them() -> None:
    """The explorer keeps the time and thread patches in place from one
    schedule to the next: the body sees virtual time in every schedule, and
    the real functions are back when the exploration ends."""
    real = (time.monotonic, time.sleep, threading.Thread.start, ThreadPoolExecutor.submit)
    seen: list[float] = []

    async def run() -> None:
        began = time.monotonic()
        await asyncio.sleep(3)
        seen.append(time.monotonic() - began)

    assert explore(run, schedules=5, seed=1).failure is None
    assert seen == [3.0] * 5
    assert (time.monotonic, time.sleep, threading.Thread.start, ThreadPoolExecutor.submit) == real


def test_held_time_patches_give_real_time_where_no_loop_runs() -> None:
    time_patch.hold()
    try:
        assert time.monotonic is not time_patch.real_monotonic
        before = time_patch.real_monotonic()
        now = time.monotonic()
        assert before <= now <= time_patch.real_monotonic()
    finally:
        time_patch.release()
    assert time.monotonic is time_patch.real_monotonic


def test_keyboard_interrupt_ends_exploration_instead_of_counting_as_failure() -> None:
    async def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        explore(interrupted, schedules=5, seed=1)


def test_pct_changes_one_priority_per_change_point_even_over_a_cancelled_callback() -> None:
    async def worker(steps: int) -> None:
        for _ in range(steps):
            await asyncio.sleep(0)

    async def main() -> None:
        tasks = [asyncio.ensure_future(worker(3)) for _ in range(3)]
        asyncio.get_running_loop().call_soon(print, "never runs").cancel()
        await asyncio.gather(*tasks)

    loop = ExploringLoop()
    chooser = PctChooser(seed=2, depth=2, length=20)  # one change point, at choice 2
    try:
        loop.begin_schedule(chooser)
        loop.run_until_complete(main())
        loop.end_schedule()
    finally:
        loop.close()
    lowered = [label for label, value in chooser._priority.items() if value <= chooser.depth]
    assert len(lowered) == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"strategy": "banana"}, "invalid strategy 'banana'; expected one of 'mix'"),
        ({"depth": 99}, "invalid depth 99; expected a whole number from 1 to 10"),
        ({"schedules": -3}, "invalid schedules -3; expected a whole number 0 or more"),
        ({"seed": -1}, "invalid seed -1; expected a whole number from 0"),
    ],
)
def test_explore_checks_its_arguments_as_the_marker_does(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        explore(lost_update(), **arguments)


def test_explore_wants_an_async_function_not_a_coroutine_or_a_plain_function() -> None:
    async def main() -> None:
        await asyncio.sleep(0)

    coroutine = main()
    with pytest.raises(TypeError, match=r"got a coroutine object: pass main, not main\(\)"):
        explore(coroutine)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="returned NoneType"):
        explore(lambda: None)  # type: ignore[arg-type,return-value]


def test_replay_takes_the_printed_token_text() -> None:
    """``replay(function, text)`` reruns the failing schedule ``explore`` found,
    from the token's text alone; ``Explorer.replay`` takes the text too."""
    body = lost_update()
    found = explore(body, schedules=200, seed=7)
    assert found.failure is not None
    assert found.failure.token is not None
    text = found.failure.token.encode()
    again = replay(body, text)
    assert again is not None
    assert type(again.error) is type(found.failure.error)
    loop = ExploringLoop()
    try:
        explorer = Explorer(loop, lambda: loop.run_until_complete(body()), test="main")
        failure = explorer.replay(text)
        assert failure is not None
    finally:
        loop.close()
    with pytest.raises(TokenError):
        replay(body, "asyncspec1:nonsense")


def race_leaving_workers(started: bool) -> Body:
    """The lost update, by a test that leaves eight workers behind: waiting on
    a queue (``started``), or not yet stepped once when the body ends."""

    race = lost_update()

    async def run() -> None:
        jobs: asyncio.Queue[int] = asyncio.Queue()

        async def worker() -> None:
            while True:
                await jobs.get()

        workers = [asyncio.ensure_future(worker()) for _ in range(8)]
        if started:
            await asyncio.sleep(0)
        await race()
        del workers  # left running: the explorer cancels them

    return run


@pytest.mark.parametrize("started", [True, False], ids=["waiting", "never-stepped"])
def test_leftover_tasks_do_not_make_a_failing_schedule_nondeterministic(started: bool) -> None:
    """Leftovers were cancelled in set order, which follows memory addresses:
    the self-check then saw the same seed run differently and gave no token
    for plain in-memory code.  Every seed's failure gets a token that
    replays it."""
    body = race_leaving_workers(started)
    for seed in range(12):
        outcome = explore(body, schedules=300, seed=seed)
        failure = outcome.failure
        assert failure is not None, seed
        assert failure.nondeterminism is None, (seed, failure.nondeterminism)
        assert failure.token is not None, seed
        again = replay(body, failure.token)
        assert again is not None, seed
        assert type(again.error) is type(failure.error), seed


# -- slices of the schedules (pytest-xdist shards) -------------------------------------


def _gathered() -> Body:
    async def body() -> None:
        async def worker() -> None:
            for _ in range(3):
                await asyncio.sleep(0)

        await asyncio.gather(worker(), worker(), worker())

    return body


def _explore_slices(plan: Plan, schedules: int, slices: list[range]) -> list[Any]:
    loop = ExploringLoop()
    try:
        explorer = Explorer(loop, lambda: loop.run_until_complete(_gathered()()), test="t")
        return [explorer.explore(plan, schedules, numbers=part) for part in slices]
    finally:
        loop.close()


def test_slices_of_the_schedules_together_are_the_whole_exploration() -> None:
    plan = Plan("mix", 3, 5)
    (whole,) = _explore_slices(plan, 300, [range(300)])
    parts = _explore_slices(plan, 300, [range(0, 100), range(100, 200), range(200, 300)])
    assert sum(part.schedules for part in parts) == whole.schedules == 300
    union = set().union(*(part.orders for part in parts))
    assert len(union) == whole.distinct == len(whole.orders)
    # A slice without schedule 0 still knows the stock order's length and labels.
    assert {(part.length, part.labels) for part in parts} == {(whole.length, whole.labels)}


def test_an_exploration_without_slices_counts_distinct_orders_as_before() -> None:
    loop = ExploringLoop()
    try:
        explorer = Explorer(loop, lambda: loop.run_until_complete(_gathered()()), test="t")
        outcome = explorer.explore(Plan("mix", 3, 5), 300)
    finally:
        loop.close()
    (sliced,) = _explore_slices(Plan("mix", 3, 5), 300, [range(300)])
    assert outcome.distinct == sliced.distinct
    assert outcome.orders == set()  # digests are made for slices only


def test_a_slice_stops_when_told_and_says_so() -> None:
    looks: list[int] = []

    def stop() -> bool:
        looks.append(1)
        return len(looks) > 2

    loop = ExploringLoop()
    try:
        explorer = Explorer(loop, lambda: loop.run_until_complete(_gathered()()), test="t")
        outcome = explorer.explore(Plan("mix", 3, 5), 1000, numbers=range(0, 1000), stop=stop)
    finally:
        loop.close()
    assert outcome.stopped
    # Asked every 8 schedules: the third look, at schedule 16, stops it.
    assert outcome.schedules == 16
