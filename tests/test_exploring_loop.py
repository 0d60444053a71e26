"""The exploring loop: FIFO is stock order, choosers reorder, labels are stable."""

from __future__ import annotations

import asyncio
import gc
import random
import re
import weakref
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest

from pytest_asyncspec import VirtualClockLoop
from pytest_asyncspec.exploration import ExploringLoop, exploring_loop
from pytest_asyncspec.exploration.deviation import Deviation
from pytest_asyncspec.exploration.exploring_loop import FAIRNESS_BOUND, LANE, Candidate, Chooser
from pytest_asyncspec.exploration.strategies import (
    FifoChooser,
    PctChooser,
    RandomChooser,
    ReplayChooser,
)
from pytest_asyncspec.tracing.task_table import shown_task_name

Program = Callable[[list[str]], Coroutine[Any, Any, None]]


# -- programs whose event order is logged ---------------------------------------


async def ping_pong(log: list[str]) -> None:
    async def player(name: str) -> None:
        for turn in range(4):
            log.append(f"{name}{turn}")
            await asyncio.sleep(0)

    await asyncio.gather(player("a"), player("b"), player("c"))


async def same_instant_timers(log: list[str]) -> None:
    loop = asyncio.get_running_loop()
    for name in "pqrs":
        loop.call_later(1.0, log.append, name)
    await asyncio.gather(*(sleeper(log, name, 1.0) for name in "xyz"))
    await asyncio.sleep(1.0)  # the timers have all fired by then, in any order


async def sleeper(log: list[str], name: str, delay: float) -> None:
    await asyncio.sleep(delay)
    log.append(name)


async def callbacks_and_futures(log: list[str]) -> None:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()
    for name in ("cb1", "cb2", "cb3"):
        loop.call_soon(log.append, name)
    future.add_done_callback(lambda f: log.append(f"done:{f.result()}"))

    async def waiter(name: str) -> None:
        log.append(f"{name} got {await future}")

    tasks = [asyncio.ensure_future(waiter(n)) for n in ("w1", "w2")]
    await asyncio.sleep(0)
    future.set_result("v")
    await asyncio.gather(*tasks)


async def queue_pipeline(log: list[str]) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=2)

    async def producer() -> None:
        for item in range(5):
            await queue.put(item)
            log.append(f"put{item}")
        await queue.join()
        log.append("joined")

    async def consumer(name: str) -> None:
        while True:
            item = await queue.get()
            log.append(f"{name} took {item}")
            queue.task_done()

    consumers = [asyncio.ensure_future(consumer(n)) for n in ("c1", "c2")]
    await producer()
    for task in consumers:
        task.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)


async def loopback_streams(log: list[str]) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readline()
        log.append(f"server read {data!r}")
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def client(name: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"{name}\n".encode())
        await writer.drain()
        log.append(f"{name} got {await reader.readline()!r}")
        writer.close()
        await writer.wait_closed()

    await asyncio.gather(client("one"), client("two"))
    server.close()
    await server.wait_closed()


PROGRAMS: list[Program] = [
    ping_pong,
    same_instant_timers,
    callbacks_and_futures,
    queue_pipeline,
    loopback_streams,
]


def run_logged(
    program: Program, make_loop: Callable[[], asyncio.AbstractEventLoop], chooser: Chooser | None
) -> tuple[list[str], list[str]]:
    """The program's event log, and the loop's picks when exploring."""
    loop = make_loop()
    log: list[str] = []
    try:
        if isinstance(loop, ExploringLoop) and chooser is not None:
            loop.begin_schedule(chooser)
            loop.run_until_complete(program(log))
            picks = list(loop.picks)
            loop.end_schedule()
            return log, picks
        loop.run_until_complete(program(log))
        return log, []
    finally:
        loop.close()


# -- FIFO is stock order --------------------------------------------------------


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_fifo_schedule_runs_exactly_stock_order(program: Program) -> None:
    stock, _ = run_logged(program, VirtualClockLoop, None)
    fifo, fifo_picks = run_logged(program, ExploringLoop, FifoChooser())
    # A replay with no deviation takes the general path, not FIFO's fast one.
    never = ReplayChooser([])
    never.fifo = False
    replay, replay_picks = run_logged(program, ExploringLoop, never)
    assert stock
    assert fifo == stock
    assert replay == stock
    assert replay_picks == fifo_picks


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_without_a_schedule_the_loop_is_its_base_class(program: Program) -> None:
    stock, _ = run_logged(program, VirtualClockLoop, None)
    idle, _ = run_logged(program, ExploringLoop, None)
    assert idle == stock


# -- other orders ---------------------------------------------------------------


def test_random_schedules_reorder_tasks_but_keep_each_tasks_steps_in_order() -> None:
    logs = set()
    for seed in range(60):
        log, _ = run_logged(ping_pong, ExploringLoop, RandomChooser(seed))
        for name in "abc":
            assert [e for e in log if e[0] == name] == [f"{name}{t}" for t in range(4)]
        logs.add(tuple(log))
    assert len(logs) > 30


def test_same_instant_timers_fire_in_other_orders() -> None:
    # A sleeper needs two picks (its timer, then its wake-up) to log first,
    # so it leads less often than a bare timer callback; 200 fixed seeds see all.
    firsts = set()
    for seed in range(200):
        log, _ = run_logged(same_instant_timers, ExploringLoop, RandomChooser(seed))
        assert sorted(log) == sorted("pqrsxyz")
        firsts.add(log[0])
    assert firsts == set("pqrsxyz")


def test_loop_callbacks_keep_their_order_under_any_schedule() -> None:
    # call_soon callbacks share the loop's lane: never reordered among themselves.
    for seed in range(60):
        log, _ = run_logged(callbacks_and_futures, ExploringLoop, RandomChooser(seed))
        lane = [e for e in log if e.startswith(("cb", "done"))]
        assert lane == ["cb1", "cb2", "cb3", "done:v"]
        assert sorted(e for e in log if e.startswith("w")) == ["w1 got v", "w2 got v"]


def test_io_streams_stay_in_order_under_random_schedules() -> None:
    # Any impossible order (data before connection, a reply before its
    # request) would break the protocol or hang; every schedule completes.
    outcomes = set()
    for seed in range(40):
        log, _ = run_logged(loopback_streams, ExploringLoop, RandomChooser(seed))
        assert sorted(log) == sorted(
            [
                "server read b'one\\n'",
                "server read b'two\\n'",
                "one got b'ONE\\n'",
                "two got b'TWO\\n'",
            ]
        )
        outcomes.add(tuple(log))
    assert len(outcomes) > 1


def test_queue_pipeline_is_correct_under_every_schedule_tried() -> None:
    for seed in range(60):
        log, _ = run_logged(queue_pipeline, ExploringLoop, RandomChooser(seed))
        taken = sorted(int(e.rsplit(" ", 1)[1]) for e in log if " took " in e)
        assert taken == [0, 1, 2, 3, 4]
        assert log[-1] == "joined"


# -- labels ---------------------------------------------------------------------


def test_labels_are_per_schedule_names_not_global_task_numbers() -> None:
    async def worker() -> None:
        await asyncio.sleep(0.5)

    async def main() -> None:
        await asyncio.gather(worker(), worker(), asyncio.ensure_future(worker()), named("billing"))

    async def named(name: str) -> None:
        await asyncio.create_task(worker(), name=name)

    loop = ExploringLoop()
    try:
        seen = []
        for _ in range(2):
            loop.begin_schedule(FifoChooser())
            loop.run_until_complete(main())
            seen.append(list(loop.picks))
            loop.end_schedule()
    finally:
        loop.close()
    assert seen[0] == seen[1]
    labels = set(seen[0])
    assert {"main-1", "worker-1", "worker-2", "worker-3", "named-1", "billing-1"} <= labels
    assert {"worker-1:t1", "worker-2:t1"} <= labels  # the timers of their sleeps
    assert not any(label.startswith("Task-") for label in labels)


def test_chooser_sees_the_oldest_candidate_first() -> None:
    orders: list[list[int]] = []
    arrivals: list[int] = []

    class Recording:
        fifo = False

        def arrive(self, candidate: Candidate) -> None:
            arrivals.append(candidate.seq)

        def choose(
            self, candidates: Sequence[Candidate], eligible: int, pick: int, steps: dict[str, int]
        ) -> int:
            orders.append([c.seq for c in candidates])
            return eligible - 1  # always the newest eligible

    log, picks = run_logged(ping_pong, ExploringLoop, Recording())
    assert all(order == sorted(order) for order in orders)
    assert len(arrivals) == len(set(arrivals))
    assert any(len(order) > 1 for order in orders)
    assert sorted(log) == sorted(f"{n}{t}" for n in "abc" for t in range(4))
    assert LANE in picks  # gather's callbacks run in the loop's lane


def test_deviations_are_logged_with_the_step_they_preempted() -> None:
    _, picks = run_logged(ping_pong, ExploringLoop, FifoChooser())
    loop = ExploringLoop()
    log: list[str] = []
    try:
        loop.begin_schedule(RandomChooser(7))
        loop.run_until_complete(ping_pong(log))
        deviations = list(loop.deviations)
        random_picks = list(loop.picks)
        loop.end_schedule()
        assert deviations
        # Replaying the deviations on FIFO gives the same picks again.
        loop.begin_schedule(ReplayChooser(deviations))
        loop.run_until_complete(ping_pong([]))
        assert loop.picks == random_picks
        assert loop.deviations == deviations
        loop.end_schedule()
    finally:
        loop.close()
    assert random_picks != picks


def test_a_schedule_cannot_begin_inside_another() -> None:
    loop = ExploringLoop()
    try:
        loop.begin_schedule(FifoChooser())
        with pytest.raises(RuntimeError, match="already running"):
            loop.begin_schedule(FifoChooser())
        loop.end_schedule()
    finally:
        loop.close()


def test_end_schedule_hands_pending_callbacks_back_in_arrival_order() -> None:
    loop = ExploringLoop()
    log: list[str] = []
    try:
        loop.begin_schedule(RandomChooser(1))
        for name in "abcdef":
            loop.call_soon(log.append, name)
        loop.end_schedule()
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert log == list("abcdef")


def test_random_order_is_reproducible_from_its_seed() -> None:
    first, first_picks = run_logged(ping_pong, ExploringLoop, RandomChooser(42))
    second, second_picks = run_logged(ping_pong, ExploringLoop, RandomChooser(42))
    assert (first, first_picks) == (second, second_picks)
    others = {tuple(run_logged(ping_pong, ExploringLoop, RandomChooser(s))[0]) for s in range(5)}
    assert len(others) > 1
    random.seed(0)  # the chooser never touches the global generator
    assert run_logged(ping_pong, ExploringLoop, RandomChooser(42))[0] == first


@pytest.mark.skipif(not hasattr(asyncio, "eager_task_factory"), reason="eager tasks are 3.12+")
def test_eager_tasks_are_explored_from_their_first_suspension() -> None:
    def eager_loop(make: Callable[[], asyncio.AbstractEventLoop]) -> asyncio.AbstractEventLoop:
        loop = make()
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        return loop

    async def spawned(log: list[str]) -> None:
        async def child(name: str) -> None:
            log.append(f"{name} eager")
            await asyncio.sleep(0)
            log.append(f"{name} resumed")

        await asyncio.gather(*(asyncio.create_task(child(n)) for n in "ab"))

    stock, _ = run_logged(spawned, lambda: eager_loop(VirtualClockLoop), None)
    fifo, picks = run_logged(spawned, lambda: eager_loop(ExploringLoop), FifoChooser())
    assert fifo == stock == ["a eager", "b eager", "a resumed", "b resumed"]
    assert "child-1" in picks
    resumed_first = {
        run_logged(spawned, lambda: eager_loop(ExploringLoop), RandomChooser(seed))[0][2]
        for seed in range(30)
    }
    assert resumed_first == {"a resumed", "b resumed"}


async def cancelled_callbacks(log: list[str]) -> None:
    loop = asyncio.get_running_loop()

    async def worker(name: str) -> None:
        for step in range(3):
            log.append(f"{name}{step}")
            await asyncio.sleep(0)

    tasks = [asyncio.ensure_future(worker(n)) for n in "ab"]
    for number in range(6):
        handle = loop.call_soon(log.append, f"cb{number}")
        if number % 2:
            handle.cancel()  # stays in the pool until picked, then skipped
    timer = loop.call_later(0, log.append, "timer")
    timer.cancel()
    await asyncio.gather(*tasks)


@pytest.mark.parametrize("program", [*PROGRAMS, cancelled_callbacks], ids=lambda p: p.__name__)
@pytest.mark.parametrize("make_chooser", [RandomChooser, lambda seed: PctChooser(seed, 3, 40)])
def test_recorded_deviations_replay_every_schedule_exactly(
    program: Program, make_chooser: Callable[[int], Chooser]
) -> None:
    """The deviations a schedule records are all a replay needs: over many
    random and PCT schedules (cancelled callbacks included), replaying them
    gives the same picks and the same events."""
    for seed in range(25):
        loop = ExploringLoop()
        try:
            first: list[str] = []
            loop.begin_schedule(make_chooser(seed))
            loop.run_until_complete(program(first))
            picks, deviations = list(loop.picks), list(loop.deviations)
            loop.end_schedule()
        finally:
            loop.close()
        again, again_picks = run_logged(program, ExploringLoop, ReplayChooser(deviations))
        assert (again, again_picks) == (first, picks), seed


# -- what the loop holds --------------------------------------------------------


async def drop_a_failed_task(log: list[str]) -> None:
    """Make a task that fails, drop it unretrieved, and collect it: stock asyncio
    then reports "Task exception was never retrieved" through the handler."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: log.append(str(context["message"])))

    async def fails() -> None:
        raise ValueError("nobody looks at this")

    task = asyncio.ensure_future(fails())
    while not task.done():  # any schedule runs it in the end
        await asyncio.sleep(0)
    dropped = weakref.ref(task)
    del task
    gc.collect()
    log.append("collected" if dropped() is None else "still held")


@pytest.mark.parametrize(
    "make_chooser", [FifoChooser, lambda: RandomChooser(3)], ids=["fifo", "random"]
)
def test_a_dropped_task_is_collected_and_its_exception_reported_as_on_stock(
    make_chooser: Callable[[], Chooser],
) -> None:
    """Task labels hold tasks weakly: an exception nobody retrieved is logged
    when the task is collected, mid-schedule, exactly as on the stock loop."""
    stock, _ = run_logged(drop_a_failed_task, asyncio.new_event_loop, None)
    explored, _ = run_logged(drop_a_failed_task, ExploringLoop, make_chooser())
    assert stock == ["Task exception was never retrieved", "collected"]
    assert explored == stock


def test_cancelled_timers_leave_no_label_behind() -> None:
    """A timer cancelled before it fired kept its label, keyed by its address,
    until the schedule ended: wait_for in a loop grew the table without
    bound (and an address reused could be given a dead timer's label)."""

    async def timeouts() -> None:
        for _ in range(500):
            await asyncio.wait_for(asyncio.sleep(0), timeout=10)

    loop = ExploringLoop()
    try:
        loop.begin_schedule(RandomChooser(5))
        loop.run_until_complete(timeouts())
        left = len(loop._timer_labels)
        loop.end_schedule()
    finally:
        loop.close()
    assert left == 0


def test_the_task_label_table_stays_the_size_of_the_live_tasks() -> None:
    """Labels hold their tasks weakly, without a callback per task: the
    entries of collected tasks are pruned in bulk, so a schedule that runs
    thousands of short tasks one after another keeps a small table."""
    sizes: list[int] = []
    # A filler task (of another loop, never labelled) takes each dead task's
    # memory, so that no id() comes back: a reused id() replaces its dead
    # entry, which would hide the growth.
    elsewhere = asyncio.new_event_loop()
    fillers: list[asyncio.Task[None]] = []

    async def short_tasks() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, ExploringLoop)
        for _ in range(3_000):
            task = asyncio.create_task(asyncio.sleep(0))
            await task
            del task
            fillers.append(elsewhere.create_task(asyncio.sleep(3600)))
            sizes.append(len(loop._task_labels))

    loop = ExploringLoop()
    try:
        loop.begin_schedule(RandomChooser(5))
        loop.run_until_complete(short_tasks())
        loop.end_schedule()
    finally:
        loop.close()
        for filler in fillers:
            filler.cancel()
        elsewhere.run_until_complete(asyncio.gather(*fillers, return_exceptions=True))
        elsewhere.close()
    assert len(sizes) == 3_000
    assert max(sizes) <= 2 * exploring_loop._FIRST_LABEL_PRUNE


def test_a_task_labelled_under_a_dead_tasks_id_comes_last_in_label_order() -> None:
    """id() of a collected task comes back for a new one: its entry is made
    anew (at the end of the table), not written over the dead one in place,
    which would put the new task first in label order."""

    async def body() -> list[str]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, ExploringLoop)
        first = asyncio.create_task(asyncio.sleep(1), name="first")
        second = asyncio.create_task(asyncio.sleep(1), name="second")
        await asyncio.sleep(0)  # both are labelled on their first step
        gone: asyncio.Future[None] = loop.create_future()
        dead = weakref.ref(gone)
        del gone
        gc.collect()
        assert dead() is None
        # What a reused id() looks like: a dead entry under the key of a
        # task about to be labelled (made ahead of the other two).
        late = asyncio.create_task(asyncio.sleep(1), name="late")
        labels = loop._task_labels
        del labels[id(first)], labels[id(second)]
        labels[id(late)] = (dead, "gone-1")  # type: ignore[assignment]
        loop.label_of_task(first)
        loop.label_of_task(second)
        loop.label_of_task(late)
        ordered = loop.in_label_order([late, second, first])
        for task in (first, second, late):
            task.cancel()
        await asyncio.gather(first, second, late, return_exceptions=True)
        return [task.get_name() for task in ordered]  # type: ignore[attr-defined]

    loop = ExploringLoop()
    try:
        loop.begin_schedule(RandomChooser(1))
        names = loop.run_until_complete(body())
        loop.end_schedule()
    finally:
        loop.close()
    assert names == ["first", "second", "late"]


@pytest.mark.parametrize(
    "name",
    [
        "Task-1",
        "Task-1234567",
        "Task-",
        "Task-12a",
        "Task-\u0663",
        "Task-\u00b2",
        "task-1",
        "x",
        "",
    ],
)
def test_a_default_task_name_is_told_apart_as_asyncio_names_them(name: str) -> None:
    """shown_task_name tests "Task-" and decimal digits without a regular
    expression; it must agree with the one it replaced, Task-\\d+ in full."""
    default = bool(name) and re.fullmatch(r"Task-\d+", name) is not None
    assert shown_task_name(name, "mod.Outer.work") == ("work" if default or not name else name)


# -- the C pick loop against its Python twin ---------------------------------------


class _Bookkeeper:
    """A callback owner the loop runs as it arrives, never picked (as the tracer's)."""

    _asyncspec_bookkeeping = True

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def note(self) -> None:
        self.log.append("bookkeeping")


async def _busy_program(log: list[str]) -> None:
    """Tasks, timers due together, lane callbacks queued behind one another, a
    callback cancelled while ready, bookkeeping, and one task spinning long
    enough for the fairness bound to force a pick."""
    loop = asyncio.get_running_loop()

    async def worker(name: str, naps: int) -> None:
        await asyncio.sleep(0.01)
        # Fired with the workers' timers: often still in the pool when this
        # cancels it, so that a cancelled callback is picked.
        doomed.cancel()
        for step in range(naps):
            loop.call_soon(log.append, f"{name}{step}")
            loop.call_soon(log.append, f"{name}{step}+")
            await asyncio.sleep(0)
        log.append(name)

    async def spinner() -> None:
        for _ in range(FAIRNESS_BOUND + 10):
            await asyncio.sleep(0)
        log.append("spun")

    doomed = loop.call_later(0.01, log.append, "late")
    loop.call_soon(_Bookkeeper(log).note)
    workers = [worker(name, naps) for name, naps in (("a", 1), ("b", 3), ("c", 2))]
    await asyncio.gather(*workers, spinner(), asyncio.sleep(0.01))


class _NewestFirst:
    """A Python chooser (the C loop calls its methods) that always runs the
    newest eligible candidate: the oldest starves until the fairness bound
    forces it."""

    fifo = False

    def __init__(self) -> None:
        self.arrived: list[int] = []

    def arrive(self, candidate: Candidate) -> None:
        self.arrived.append(candidate.seq)

    def choose(
        self, candidates: Sequence[Candidate], eligible: int, pick: int, steps: dict[str, int]
    ) -> int:
        return -1 if eligible == len(candidates) else eligible - 1


def _run_with(pick_loop: Any, make: Callable[[], Chooser]) -> tuple[Any, ...]:
    log: list[str] = []
    heard: list[tuple[str, str]] = []
    loop = ExploringLoop()
    saved = exploring_loop._run_chosen
    exploring_loop._run_chosen = pick_loop
    try:
        chooser = make()
        loop.begin_schedule(chooser)
        loop.on_deviation = lambda oldest, ran: heard.append((oldest.label, ran.label))
        loop.run_until_complete(_busy_program(log))
        loop.end_schedule()
        # PCT's heaps are not compared: the C loop keeps them in its own
        # per-schedule state (the chooser's lists are the Python loop's);
        # the priorities they order are compared, and so is every pick.
        state = (getattr(chooser, "arrived", None), getattr(chooser, "_priority", None))
        return (log, loop.picks, loop.deviations, loop.steps_taken(), heard, state)
    finally:
        exploring_loop._run_chosen = saved
        loop.close()


def _pct_with_entries(chooser: PctChooser) -> PctChooser:
    """A PCT chooser whose heaps hold entries before the schedule starts (the
    C loop starts its own heaps from them): one of an arrival that never
    comes, one that takes the highest priority, and one held back."""
    chooser._heap.extend([(-99.0, 10_000), (-50.0, 4)])
    chooser._held_back.append((7, -60.0))
    return chooser


def _random_deviations() -> list[Deviation]:
    """Deviations a random schedule of the busy program made (in Python)."""
    deviations: list[Deviation] = _run_with(
        ExploringLoop._run_ready_chosen_py, lambda: RandomChooser(5)
    )[2]
    return deviations


@pytest.mark.skipif(not exploring_loop.PICKS_ACCELERATED, reason="the C pick loop is not in use")
@pytest.mark.parametrize(
    "make",
    [
        lambda: RandomChooser(3),
        lambda: PctChooser(3, 3, 200),
        lambda: PctChooser(8, 2, 40),
        lambda: _pct_with_entries(PctChooser(5, 3, 200)),
        _NewestFirst,
        lambda: ReplayChooser(_random_deviations()[:6]),
    ],
    ids=["random", "pct3", "pct2", "pct-with-entries", "newest-first", "replay"],
)
def test_the_c_pick_loop_picks_as_its_python_twin(make: Callable[[], Chooser]) -> None:
    """Same picks, deviations, steps, listener calls and chooser state, with
    the chooser's methods in Python (newest-first, replay) or done in C
    (random, pct)."""
    in_c = _run_with(exploring_loop._run_chosen, make)
    in_python = _run_with(ExploringLoop._run_ready_chosen_py, make)
    assert in_c == in_python
    log, picks, deviations = in_c[:3]
    assert "bookkeeping" in log
    assert "bookkeeping" not in picks
    assert deviations, "every chooser here deviates somewhere"


class _Worker:
    """Gives its tasks a coroutine with a dotted qualified name."""

    async def step(self) -> None:
        await asyncio.sleep(0)


_TASK_NAMES = [
    None,
    "Task-1234567",
    "Task-",
    "Task-12a",
    "Task-\u0663",
    "Task-\u00b2",
    "x",
    "",
    "None",
]


async def _named_tasks(log: list[str]) -> None:
    async def nested() -> None:
        await asyncio.sleep(0)

    worker = _Worker()
    for name in _TASK_NAMES:
        await asyncio.gather(
            asyncio.create_task(nested(), name=name),
            asyncio.create_task(worker.step(), name=name),
        )
    # Enough short tasks, one after another, for the label table's pruning.
    for _ in range(2 * exploring_loop._FIRST_LABEL_PRUNE):
        await asyncio.create_task(asyncio.sleep(0))
    log.append("done")


@pytest.mark.skipif(not exploring_loop.PICKS_ACCELERATED, reason="the C pick loop is not in use")
def test_the_c_pick_loop_labels_tasks_as_its_python_twin() -> None:
    """The C pick loop labels a task it sees first as _new_task_label does:
    default names (asyncio's, 3.13's "None", the empty name) give way to the
    coroutine's short name, other names stay, counts go on across the
    table's pruning, and on_label hears the same."""

    def run(pick_loop: Any) -> tuple[list[str], list[str]]:
        heard: list[str] = []
        loop = ExploringLoop()
        saved = exploring_loop._run_chosen
        exploring_loop._run_chosen = pick_loop
        try:
            loop.begin_schedule(RandomChooser(4))
            loop.on_label = lambda task, label: heard.append(label)
            loop.run_until_complete(_named_tasks([]))
            picks = list(loop.picks)
            loop.end_schedule()
            return picks, heard
        finally:
            exploring_loop._run_chosen = saved
            loop.close()

    in_c = run(exploring_loop._run_chosen)
    in_python = run(ExploringLoop._run_ready_chosen_py)
    assert in_c == in_python
    labels = set(in_c[1])
    assert {"nested-1", "step-1", "Task--1", "Task-12a-1", "Task-\u00b2-1", "x-1"} <= labels
    # Five of the names are defaults: asyncio's twice, "", "None" and none.
    assert {"nested-5", "step-5"} <= labels
    assert "nested-6" not in labels
    assert f"sleep-{2 * exploring_loop._FIRST_LABEL_PRUNE}" in labels


class _Unanswerable(Exception):
    pass


class _NoBool:
    def __bool__(self) -> bool:
        raise _Unanswerable("done() gave something that is neither true nor false")


class _TaskThatCannotSayIfDone(asyncio.Task):  # type: ignore[type-arg]
    def done(self) -> Any:
        return _NoBool()


@pytest.mark.parametrize(
    "pick_loop",
    [
        pytest.param(
            "c",
            marks=pytest.mark.skipif(
                not exploring_loop.PICKS_ACCELERATED, reason="the C pick loop is not in use"
            ),
        ),
        "python",
    ],
)
@pytest.mark.parametrize("name", [None, "worker"])
def test_an_error_while_labelling_a_task_comes_out_of_either_pick_loop(
    pick_loop: str, name: str | None
) -> None:
    """A Task subclass whose done() cannot be answered: the error reaches the
    caller of the loop, whether the task has a name of its own or not (the
    C labeller once went on as if the task were done, and did not ask a
    named task at all; a subclass is now labelled by _new_task_label)."""
    loop = ExploringLoop()
    saved = exploring_loop._run_chosen
    if pick_loop == "python":
        exploring_loop._run_chosen = ExploringLoop._run_ready_chosen_py
    task = None
    never_started = asyncio.sleep(0)

    async def body() -> None:
        nonlocal task
        task = _TaskThatCannotSayIfDone(never_started, loop=loop, name=name)
        await asyncio.sleep(0)

    try:
        loop.begin_schedule(RandomChooser(2))
        with pytest.raises(_Unanswerable):
            loop.run_until_complete(body())
    finally:
        exploring_loop._run_chosen = saved
        loop.end_schedule()
        if task is not None:
            task._log_destroy_pending = False  # type: ignore[attr-defined]
        never_started.close()
        loop.close()


def test_the_fairness_bound_forces_the_oldest_in_either_pick_loop() -> None:
    _, picks, deviations, *_ = _run_with(exploring_loop._run_chosen, _NewestFirst)
    # The spinner is always the newest: it would run to its end before the
    # others took a step, but the bound lets each starved callback run
    # after FAIRNESS_BOUND picks that passed it over.
    first_worker = picks.index("worker-1")
    assert first_worker <= FAIRNESS_BOUND + 5
    assert len(deviations) < len(picks)
