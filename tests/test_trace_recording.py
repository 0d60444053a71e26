"""The tracer core records every task step, faithfully, on every supported loop.

Each test runs a small, known program under a :class:`Tracer` and checks what
was recorded against what the program must have done: the exact sequence of
steps, what each step awaited, who created which task where, how each task
ended, and the loop times of the steps (exact on the virtual clock, ordered and
on the loop's own clock on the stock loop).  Tracing must not change the
program: its results and exceptions are compared with an untraced run.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pytest
from tracing_helpers import close_loop

from pytest_asyncspec import VirtualClockLoop
from pytest_asyncspec.tracing.trace import Awaits, Outcome, Trace, Tracer

_T = TypeVar("_T")

Main = Callable[[], Coroutine[Any, Any, _T]]
TaskFactory = Callable[..., "asyncio.Future[Any]"]

try:
    import uvloop
except ImportError:  # not on Windows, say: only the parity tests need it
    uvloop = None  # type: ignore[assignment]

needs_uvloop = pytest.mark.skipif(uvloop is None, reason="uvloop is not installed")

#: Loops every loop-independent behaviour is checked on.
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "virtual": VirtualClockLoop,
    "stock": asyncio.new_event_loop,
}

needs_taskgroup = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="asyncio.TaskGroup and asyncio.timeout are 3.11+"
)
needs_eager = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="asyncio.eager_task_factory is 3.12+"
)


# -- running a program -----------------------------------------------------------


@dataclass
class Run(Generic[_T]):
    """What a program did: its result or exception, and (if traced) its trace."""

    value: _T | None
    error: BaseException | None
    trace: Trace | None

    @property
    def traced(self) -> Trace:
        assert self.trace is not None, "this run was not traced"
        return self.trace

    def outcome(self) -> tuple[str, object]:
        """The program's own result, comparable across runs."""
        if self.error is not None:
            return ("raised", describe_error(self.error))
        return ("returned", self.value)


def describe_error(error: BaseException) -> object:
    """An exception as comparable data (exception groups: their members too)."""
    members = getattr(error, "exceptions", None)
    if members is not None:
        return (type(error).__name__, sorted(str(describe_error(m)) for m in members))
    return (type(error).__name__, str(error))


def execute(
    main: Main[_T],
    make_loop: Callable[[], asyncio.AbstractEventLoop] = VirtualClockLoop,
    *,
    traced: bool = True,
    factory: TaskFactory | None = None,
    on_stop: Callable[[], None] | None = None,
) -> Run[_T]:
    """Run ``main()`` on a fresh loop, traced or not, after setting ``factory``.

    The tracer is stopped (then ``on_stop`` called) before the loop is torn
    down, so the trace holds exactly what the program did.
    """
    loop = make_loop()
    try:
        if factory is not None:
            loop.set_task_factory(factory)
        tracer = Tracer(loop) if traced else None
        if tracer is not None:
            tracer.install()
        value: _T | None = None
        error: BaseException | None = None
        try:
            value = loop.run_until_complete(main())
        except Exception as caught:  # the program's own failure, kept for comparison
            error = caught
        trace = tracer.stop() if tracer is not None else None
        if on_stop is not None:
            on_stop()
        return Run(value, error, trace)
    finally:
        close_loop(loop)


def name_of(trace: Trace, label: int | None) -> str | None:
    """A task's name; the main task (label 1, left unnamed) is called "main".

    An unnamed task's name is ``Task-N``, from a counter shared by every loop
    in the process, so it differs between two runs of one program.
    """
    if label is None:
        return None
    return "main" if label == 1 else trace.tasks[label].name


def timeline(trace: Trace) -> list[tuple[str | None, Awaits, float, float]]:
    """Every step as (task, what it awaits next, start, end), in recorded order."""
    return [(name_of(trace, s.task), s.awaits, s.start, s.end) for s in trace.steps()]


def line_after() -> int:
    """The line number just after the caller's line (where a task is created)."""
    return sys._getframe(1).f_lineno + 1


def check_well_formed(trace: Trace) -> None:
    """Each task: steps end with exactly one DONE, and it ended iff DONE was recorded."""
    for label, record in trace.tasks.items():
        steps = trace.steps_of(label)
        done = [step for step in steps if step.awaits is Awaits.DONE]
        if record.outcome is Outcome.PENDING:
            assert done == [], f"{record.name} is pending but has a DONE step"
        else:
            assert len(done) == 1, f"{record.name}: {len(done)} DONE steps"
            assert steps[-1].awaits is Awaits.DONE, record.name


# -- every step, in order ----------------------------------------------------------


async def sleep_twice() -> None:
    await asyncio.sleep(1)
    await asyncio.sleep(1)


async def three_sleepers() -> None:
    tasks = [asyncio.create_task(sleep_twice(), name=name) for name in ("a", "b", "c")]
    await asyncio.gather(*tasks)


def test_every_step_of_three_sleeping_tasks_is_recorded_in_order() -> None:
    """3 tasks x 2 sleeps: 3 steps each, round-robin, at exact virtual times; all RETURNED."""
    run = execute(three_sleepers)
    trace = run.traced
    assert run.error is None

    assert trace.tasks[1].coroutine == "three_sleepers"
    assert timeline(trace) == [
        ("main", Awaits.FUTURE, 0.0, 0.0),  # created a, b, c; awaits the gather
        ("a", Awaits.SLEEP, 0.0, 0.0),
        ("b", Awaits.SLEEP, 0.0, 0.0),
        ("c", Awaits.SLEEP, 0.0, 0.0),
        ("a", Awaits.SLEEP, 1.0, 1.0),
        ("b", Awaits.SLEEP, 1.0, 1.0),
        ("c", Awaits.SLEEP, 1.0, 1.0),
        ("a", Awaits.DONE, 2.0, 2.0),
        ("b", Awaits.DONE, 2.0, 2.0),
        ("c", Awaits.DONE, 2.0, 2.0),
        ("main", Awaits.DONE, 2.0, 2.0),
    ]
    assert len(trace) == 11
    assert [step.index for step in trace.steps()] == list(range(11))
    assert {record.outcome for record in trace.tasks.values()} == {Outcome.RETURNED}
    assert all(record.error is None for record in trace.tasks.values())
    check_well_formed(trace)


@pytest.mark.parametrize("loop_kind", sorted(LOOPS))
def test_raising_task_is_recorded_as_raised_with_its_error_text(loop_kind: str) -> None:
    """A task whose coroutine raises ends RAISED, its error text is kept, its last step DONE."""

    async def fail() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("boom: 42")

    async def main() -> str:
        task = asyncio.create_task(fail(), name="failing")
        try:
            await task
        except ValueError as error:
            return f"caught {error}"
        return "not raised"

    run = execute(main, LOOPS[loop_kind])
    assert run.value == "caught boom: 42"
    trace = run.traced
    failing = trace.task("failing")
    assert failing.outcome is Outcome.RAISED
    assert failing.error == "ValueError: boom: 42"
    assert [step.awaits for step in trace.steps_of("failing")] == [Awaits.SLEEP, Awaits.DONE]
    assert trace.tasks[1].outcome is Outcome.RETURNED
    check_well_formed(trace)


@pytest.mark.parametrize("loop_kind", sorted(LOOPS))
def test_cancelled_tasks_are_recorded_as_cancelled(loop_kind: str) -> None:
    """Cancelled while waiting, or before its first step: CANCELLED; a task that
    swallows the cancellation and returns: RETURNED.  Each has one DONE step."""

    async def wait_long() -> None:
        await asyncio.sleep(60)

    async def swallow() -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    async def main() -> list[object]:
        waiting = asyncio.create_task(wait_long(), name="waiting")
        swallowing = asyncio.create_task(swallow(), name="swallowing")
        unstarted = asyncio.create_task(wait_long(), name="unstarted")
        unstarted.cancel()
        await asyncio.sleep(0.01)
        waiting.cancel()
        swallowing.cancel()
        results = await asyncio.gather(waiting, swallowing, unstarted, return_exceptions=True)
        return [type(r).__name__ if isinstance(r, BaseException) else r for r in results]

    run = execute(main, LOOPS[loop_kind])
    assert run.value == ["CancelledError", "swallowed", "CancelledError"]
    trace = run.traced
    assert trace.task("waiting").outcome is Outcome.CANCELLED
    assert trace.task("unstarted").outcome is Outcome.CANCELLED
    assert trace.task("swallowing").outcome is Outcome.RETURNED
    assert all(trace.task(n).error is None for n in ("waiting", "unstarted", "swallowing"))
    assert [s.awaits for s in trace.steps_of("waiting")] == [Awaits.SLEEP, Awaits.DONE]
    assert [s.awaits for s in trace.steps_of("swallowing")] == [Awaits.SLEEP, Awaits.DONE]
    # Cancelled before it ever ran: asyncio still throws into it once.
    assert [s.awaits for s in trace.steps_of("unstarted")] == [Awaits.DONE]
    check_well_formed(trace)


# -- who each task is ----------------------------------------------------------------


def test_names_qualnames_parents_and_creation_sites_are_recorded() -> None:
    """create_task(name=...) names, coroutine qualnames, the creating task as parent
    (none outside any step), and the user's file:line of create_task / gather."""
    where: dict[str, int] = {}

    async def grandchild() -> None:
        await asyncio.sleep(0)

    async def child() -> None:
        where["grandchild"] = line_after()
        await asyncio.create_task(grandchild(), name="grandchild")

    async def gathered() -> None:
        await asyncio.sleep(1)

    async def from_callback() -> None:
        await asyncio.sleep(0)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        where["child"] = line_after()
        first = asyncio.create_task(child(), name="child")
        where["gather"] = line_after()
        await asyncio.gather(gathered(), gathered())
        done = loop.create_future()
        where["callback"] = line_after()
        loop.call_soon(lambda: done.set_result(loop.create_task(from_callback(), name="cb")))
        await first
        await (await done)

    run = execute(main)
    assert run.error is None
    trace = run.traced
    here = __file__
    main_record = trace.tasks[1]
    assert main_record.coroutine.endswith("main")
    assert main_record.parent is None
    # run_until_complete is asyncio's: the site is the helper that called it.
    assert main_record.created_where.startswith(f"{here}:")

    child_record = trace.task("child")
    assert child_record.coroutine == child.__qualname__
    assert child_record.parent == main_record.label
    assert child_record.created_where == f"{here}:{where['child']}"

    grand = trace.task("grandchild")
    assert grand.coroutine.endswith("<locals>.grandchild")
    assert grand.parent == child_record.label
    assert grand.created_where == f"{here}:{where['grandchild']}"

    gathered_records = [r for r in trace.tasks.values() if r.coroutine.endswith(".gathered")]
    assert len(gathered_records) == 2
    for record in gathered_records:
        assert record.parent == main_record.label
        assert record.created_where == f"{here}:{where['gather']}"
        assert record.created_at == 0.0

    callback_record = trace.task("cb")
    assert callback_record.parent is None  # created by a plain callback, not a task's step
    assert callback_record.created_where == f"{here}:{where['callback']}"
    assert callback_record.created_at == 1.0
    assert [r.label for r in trace.tasks.values()] == list(range(1, len(trace.tasks) + 1))


def test_a_task_asyncio_makes_in_a_loop_callback_names_that_callback() -> None:
    """start_server's handler task is made by asyncio's protocol callback; the
    frames further out only run the loop (pytest-asyncio's runner in a test),
    so the creation site names the callback instead of pointing there."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hi")
        await writer.drain()
        writer.close()
        await asyncio.sleep(0.1)
        server.close()
        await server.wait_closed()

    run = execute(main)
    assert run.error is None
    (handler,) = [r for r in run.traced.tasks.values() if r.coroutine.endswith("handle")]
    assert handler.created_where.startswith("<asyncio's ")
    assert handler.created_where.endswith("connection_made, a loop callback>")


# -- what a step awaits --------------------------------------------------------------


async def probe_sleep() -> Awaits:
    async def probe() -> None:
        await asyncio.sleep(0.01)

    await asyncio.create_task(probe(), name="probe")
    return Awaits.SLEEP


async def probe_yield() -> Awaits:
    async def probe() -> None:
        await asyncio.sleep(0)

    await asyncio.create_task(probe(), name="probe")
    return Awaits.YIELD


async def probe_queue_get() -> Awaits:
    queue: asyncio.Queue[int] = asyncio.Queue()

    async def probe() -> None:
        await queue.get()

    task = asyncio.create_task(probe(), name="probe")
    await asyncio.sleep(0.01)
    queue.put_nowait(1)
    await task
    return Awaits.QUEUE


async def probe_queue_put() -> Awaits:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    queue.put_nowait(1)

    async def probe() -> None:
        await queue.put(2)

    task = asyncio.create_task(probe(), name="probe")
    await asyncio.sleep(0.01)
    queue.get_nowait()
    await task
    return Awaits.QUEUE


async def probe_queue_join() -> Awaits:
    queue: asyncio.Queue[int] = asyncio.Queue()
    queue.put_nowait(1)

    async def probe() -> None:
        await queue.join()

    task = asyncio.create_task(probe(), name="probe")
    await asyncio.sleep(0.01)
    queue.get_nowait()
    queue.task_done()
    await task
    return Awaits.QUEUE


async def probe_lock() -> Awaits:
    lock = asyncio.Lock()
    await lock.acquire()

    async def probe() -> None:
        async with lock:
            pass

    task = asyncio.create_task(probe(), name="probe")
    await asyncio.sleep(0.01)
    lock.release()
    await task
    return Awaits.LOCK


async def probe_event() -> Awaits:
    event = asyncio.Event()

    async def probe() -> None:
        await event.wait()

    task = asyncio.create_task(probe(), name="probe")
    await asyncio.sleep(0.01)
    event.set()
    await task
    return Awaits.LOCK


async def probe_condition() -> Awaits:
    condition = asyncio.Condition()

    async def probe() -> None:
        async with condition:
            await condition.wait()

    task = asyncio.create_task(probe(), name="probe")
    await asyncio.sleep(0.01)
    async with condition:
        condition.notify_all()
    await task
    return Awaits.LOCK


async def probe_semaphore() -> Awaits:
    semaphore = asyncio.Semaphore(1)
    await semaphore.acquire()

    async def probe() -> None:
        async with semaphore:
            pass

    task = asyncio.create_task(probe(), name="probe")
    await asyncio.sleep(0.01)
    semaphore.release()
    await task
    return Awaits.LOCK


async def probe_future() -> Awaits:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def probe() -> None:
        await future

    task = asyncio.create_task(probe(), name="probe")
    await asyncio.sleep(0.01)
    future.set_result(1)
    await task
    return Awaits.FUTURE


async def probe_stream_read() -> Awaits:
    """A stream read from a loopback server on the same loop.

    The server writes only once the probe is waiting in its read, so the read
    suspends whatever the machine's load.
    """
    go = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await go.wait()
        writer.write(b"hello")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:

            async def probe() -> None:
                assert await reader.read(100) == b"hello"

            task = asyncio.create_task(probe(), name="probe")
            await asyncio.sleep(0)  # the probe runs its first step: the read waits
            go.set()
            await task
        finally:
            writer.close()
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    return Awaits.IO


#: Each program starts a task named "probe" that suspends exactly once, on one
#: kind of awaitable, and then returns; the program returns the kind expected.
KIND_PROBES: dict[str, Callable[[], Coroutine[Any, Any, Awaits]]] = {
    "sleep": probe_sleep,
    "sleep0": probe_yield,
    "queue.get": probe_queue_get,
    "queue.put": probe_queue_put,
    "queue.join": probe_queue_join,
    "lock": probe_lock,
    "event": probe_event,
    "condition": probe_condition,
    "semaphore": probe_semaphore,
    "future": probe_future,
    "stream.read": probe_stream_read,
}


def _kind_cases() -> list[Any]:
    """Every probe on every loop."""
    cases = []
    for loop_kind in sorted(LOOPS):
        for kind in KIND_PROBES:
            cases.append(pytest.param(loop_kind, kind, id=f"{loop_kind}-{kind}"))
    return cases


@pytest.mark.parametrize(("loop_kind", "kind"), _kind_cases())
def test_what_a_step_awaits_is_classified(loop_kind: str, kind: str) -> None:
    """The task "probe" suspends once on one kind of awaitable, then finishes."""
    run = execute(KIND_PROBES[kind], LOOPS[loop_kind])
    assert run.error is None, run.error
    expected = run.value
    trace = run.traced
    steps = trace.steps_of("probe")
    assert [step.awaits for step in steps] == [expected, Awaits.DONE]
    assert steps[0].awaited_task is None
    assert trace.task("probe").outcome is Outcome.RETURNED


@pytest.mark.parametrize("loop_kind", sorted(LOOPS))
def test_awaiting_another_task_is_classified_task_with_its_label(loop_kind: str) -> None:
    """Awaiting a task records TASK and the awaited task's label (not a bare FUTURE)."""

    async def target() -> int:
        await asyncio.sleep(0.01)
        return 7

    async def awaiter(task: asyncio.Task[int]) -> int:
        return await task

    async def main() -> int:
        first = asyncio.create_task(target(), name="target")
        return await asyncio.create_task(awaiter(first), name="awaiter")

    run = execute(main, LOOPS[loop_kind])
    assert run.value == 7
    trace = run.traced
    awaiter_steps = trace.steps_of("awaiter")
    assert [s.awaits for s in awaiter_steps] == [Awaits.TASK, Awaits.DONE]
    assert awaiter_steps[0].awaited_task == trace.task("target").label
    main_steps = trace.steps_of(1)
    assert [s.awaits for s in main_steps] == [Awaits.TASK, Awaits.DONE]
    assert main_steps[0].awaited_task == trace.task("awaiter").label


# -- loop times ----------------------------------------------------------------------


def test_virtual_loop_steps_carry_exact_virtual_times() -> None:
    """A step that blocks with time.sleep(2.5) spans exactly 2.5 virtual seconds."""

    async def blocker() -> None:
        await asyncio.sleep(1)
        time.sleep(2.5)
        await asyncio.sleep(0.25)
        time.sleep(0.5)

    async def main() -> None:
        await asyncio.create_task(blocker(), name="blocker")

    trace = execute(main).traced
    spans = [(s.start, s.end, s.duration) for s in trace.steps_of("blocker")]
    assert spans == [(0.0, 0.0, 0.0), (1.0, 3.5, 2.5), (3.75, 4.25, 0.5)]
    assert trace.steps_of("blocker")[1].duration == 2.5
    # Real time spent is tiny: the blocking sleep did not really sleep.
    assert all(0 <= s.real_ns < 500_000_000 for s in trace.steps_of("blocker"))


def test_stock_loop_steps_carry_ordered_times_on_the_loop_clock() -> None:
    """Real loop: start <= end, steps never overlap in recorded order, each step
    contains the loop.time() read inside it, and sleeps show as gaps."""
    inside: list[float] = []

    async def worker() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(3):
            inside.append(loop.time())
            await asyncio.sleep(0.02)
        inside.append(loop.time())

    async def main() -> None:
        await asyncio.gather(
            asyncio.create_task(worker(), name="w1"), asyncio.create_task(worker(), name="w2")
        )

    trace = execute(main, asyncio.new_event_loop).traced
    steps = list(trace.steps())
    for step in steps:
        assert step.start <= step.end
        assert step.real_start_ns <= step.real_end_ns
    for before, after in itertools.pairwise(steps):
        assert before.end <= after.start, (before, after)
    # The offset between perf_counter and the loop's clock is taken once, from
    # two reads in a row: allow for a thread switch between them.
    slack = 0.005
    worker_steps = sorted(trace.steps_of("w1") + trace.steps_of("w2"), key=lambda s: s.index)
    assert len(worker_steps) == len(inside) == 8
    ordered = sorted(worker_steps, key=lambda s: s.start)
    for step, seen in zip(ordered, sorted(inside), strict=True):
        assert step.start - slack <= seen <= step.end + slack
    for name in ("w1", "w2"):
        own = trace.steps_of(name)
        for before, after in itertools.pairwise(own):
            # The sleep began inside the earlier step, so after its start.
            assert after.start - before.start >= 0.0195


# -- structured concurrency, timeouts, cancellation -------------------------------


class CountingCoroutine:
    """Counts how often asyncio resumes a coroutine: the ground truth for steps."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.resumes = 0

    def send(self, value: Any) -> Any:
        self.resumes += 1
        return self.inner.send(value)

    def throw(self, *exc_info: Any) -> Any:
        self.resumes += 1
        return self.inner.throw(*exc_info)

    def close(self) -> None:
        self.inner.close()

    def __await__(self) -> CountingCoroutine:
        return self

    def __iter__(self) -> CountingCoroutine:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


Coroutine.register(CountingCoroutine)


class CountingFactory:
    """A pre-existing task factory that counts each task's resumptions."""

    def __init__(self) -> None:
        self.made: list[tuple[asyncio.Task[Any], CountingCoroutine]] = []
        self.made_while_traced = 0

    def tracer_stopped(self) -> None:
        """Tasks made from now on (the loop's teardown) were never traced."""
        self.made_while_traced = len(self.made)

    def __call__(
        self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
    ) -> asyncio.Task[Any]:
        counting = CountingCoroutine(coro)
        task: asyncio.Task[Any] = asyncio.Task(counting, loop=loop, **kwargs)
        self.made.append((task, counting))
        return task

    def resumes_by_label(self) -> dict[int, int]:
        """Resumptions per task, keyed as the tracer labels them (creation order)."""
        traced = self.made[: self.made_while_traced]
        return {n: counting.resumes for n, (_, counting) in enumerate(traced, start=1)}


def check_against_ground_truth(main: Main[Any], loop_kind: str) -> Trace:
    """Traced run: same outcome as untraced, one step per resumption, one DONE per task."""
    make_loop = LOOPS[loop_kind]
    plain = execute(main, make_loop, traced=False)
    counting = CountingFactory()
    traced = execute(main, make_loop, factory=counting, on_stop=counting.tracer_stopped)
    assert traced.outcome() == plain.outcome()
    trace = traced.traced
    counted = counting.resumes_by_label()
    recorded = {label: len(trace.steps_of(label)) for label in trace.tasks}
    assert recorded == counted
    names = [task.get_name() for task, _ in counting.made[: counting.made_while_traced]]
    assert [record.name for record in trace.tasks.values()] == names
    assert len(trace) == sum(counted.values())
    check_well_formed(trace)
    return trace


@needs_taskgroup
@pytest.mark.parametrize("loop_kind", sorted(LOOPS))
def test_task_group_with_a_failure_is_recorded_faithfully(loop_kind: str) -> None:
    """TaskGroup: the failing task RAISED, its siblings CANCELLED, the program's
    ExceptionGroup unchanged, and exactly one recorded step per resumption."""

    async def fails_later() -> None:
        await asyncio.sleep(0.02)
        raise KeyError("lost")

    async def sleeps_long() -> None:
        await asyncio.sleep(10)

    async def quick() -> str:
        await asyncio.sleep(0)
        return "quick"

    async def main() -> None:
        async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
            group.create_task(fails_later(), name="fails")
            group.create_task(sleeps_long(), name="long")
            group.create_task(quick(), name="quick")

    trace = check_against_ground_truth(main, loop_kind)
    assert trace.task("fails").outcome is Outcome.RAISED
    assert trace.task("fails").error == "KeyError: 'lost'"
    assert trace.task("long").outcome is Outcome.CANCELLED
    assert trace.task("quick").outcome is Outcome.RETURNED
    main_record = trace.tasks[1]
    assert main_record.outcome is Outcome.RAISED
    assert main_record.error is not None
    assert main_record.error.startswith("ExceptionGroup: unhandled errors in a TaskGroup")


@needs_taskgroup
@pytest.mark.parametrize("loop_kind", sorted(LOOPS))
def test_task_group_success_returns_results_unchanged(loop_kind: str) -> None:
    """TaskGroup whose tasks all succeed: results unchanged, all RETURNED."""

    async def value(n: int) -> int:
        await asyncio.sleep(0.01 * n)
        return n * n

    async def main() -> list[int]:
        async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
            tasks = [group.create_task(value(n), name=f"v{n}") for n in range(1, 4)]
        return [task.result() for task in tasks]

    trace = check_against_ground_truth(main, loop_kind)
    assert {record.outcome for record in trace.tasks.values()} == {Outcome.RETURNED}


@pytest.mark.parametrize("loop_kind", sorted(LOOPS))
def test_wait_for_timeout_and_cancellation_are_recorded_faithfully(loop_kind: str) -> None:
    """asyncio.wait_for timing out, a cancelled task, a swallowed cancellation and a
    shielded task: outcomes and results unchanged, no step lost or duplicated."""

    async def slow() -> str:
        await asyncio.sleep(10)
        return "slow"

    async def fast() -> str:
        await asyncio.sleep(0.01)
        return "fast"

    async def main() -> list[str]:
        seen = []
        try:
            await asyncio.wait_for(slow(), 0.01)
        except asyncio.TimeoutError:
            seen.append("timed out")
        seen.append(await asyncio.wait_for(fast(), 1))
        victim = asyncio.create_task(slow(), name="victim")
        shielded = asyncio.create_task(fast(), name="shielded")
        outer = asyncio.ensure_future(asyncio.shield(shielded))
        await asyncio.sleep(0)
        victim.cancel()
        outer.cancel()
        for awaitable in (victim, outer):
            try:
                await awaitable
            except asyncio.CancelledError:
                seen.append("cancelled")
        seen.append(await shielded)
        return seen

    trace = check_against_ground_truth(main, loop_kind)
    assert trace.task("victim").outcome is Outcome.CANCELLED
    assert trace.task("shielded").outcome is Outcome.RETURNED
    assert trace.tasks[1].outcome is Outcome.RETURNED


@needs_taskgroup
@pytest.mark.parametrize("loop_kind", sorted(LOOPS))
def test_asyncio_timeout_is_recorded_faithfully(loop_kind: str) -> None:
    """asyncio.timeout expiring inside a task: the task catches TimeoutError and
    returns; the cancellation shows as a step, nothing lost or duplicated."""

    async def bounded() -> str:
        try:
            async with asyncio.timeout(0.02):  # type: ignore[attr-defined]
                await asyncio.sleep(10)
        except TimeoutError:
            return "timed out"
        return "finished"

    async def main() -> str:
        return await asyncio.create_task(bounded(), name="bounded")

    trace = check_against_ground_truth(main, loop_kind)
    assert [s.awaits for s in trace.steps_of("bounded")] == [Awaits.SLEEP, Awaits.DONE]
    assert trace.task("bounded").outcome is Outcome.RETURNED
    if loop_kind == "virtual":
        assert trace.finish_of("bounded") == 0.02


# -- eager tasks ---------------------------------------------------------------------


@needs_eager
def test_eager_first_step_is_recorded_once_inside_its_creator() -> None:
    """An eager child's first step runs inside its parent's step: recorded once,
    ``inside`` = the parent's label, and blocked time counted once (3 s, not 5 s)."""

    async def grandchild() -> None:
        time.sleep(0.5)
        await asyncio.sleep(0)

    kept: list[asyncio.Task[None]] = []

    async def child() -> None:
        time.sleep(1.5)
        kept.append(asyncio.create_task(grandchild(), name="grandchild"))
        await asyncio.sleep(1)

    async def parent() -> None:
        task = asyncio.create_task(child(), name="child")
        time.sleep(1)
        await task

    async def main() -> None:
        await asyncio.create_task(parent(), name="parent")

    run = execute(main, factory=asyncio.eager_task_factory)  # type: ignore[attr-defined]
    assert run.error is None
    trace = run.traced
    parent_label = trace.task("parent").label
    child_label = trace.task("child").label
    child_steps = trace.steps_of("child")
    assert [(s.awaits, s.start, s.end, s.inside) for s in child_steps] == [
        (Awaits.SLEEP, 0.0, 2.0, parent_label),
        (Awaits.DONE, 3.0, 3.0, None),
    ]
    assert [(s.awaits, s.inside) for s in trace.steps_of("grandchild")] == [
        (Awaits.YIELD, child_label),
        (Awaits.DONE, None),
    ]
    parent_steps = trace.steps_of("parent")
    assert parent_steps[0].inside == trace.tasks[1].label  # parent itself is eager
    assert (parent_steps[0].start, parent_steps[0].end) == (0.0, 3.0)
    assert parent_steps[0].awaits is Awaits.TASK
    assert parent_steps[0].awaited_task == child_label
    assert trace.task("child").parent == parent_label
    assert trace.task("grandchild").parent == child_label
    assert trace.blocked_total() == 3.0
    assert trace.longest_step().duration == 3.0
    check_well_formed(trace)


@needs_eager
@pytest.mark.parametrize("child_ends", ["suspended", "finished", "raised"])
def test_running_step_is_identified_again_after_an_eager_child_returns(child_ends: str) -> None:
    """While a step runs, (current, step_started_ns) identify it: after an eager
    child's nested step (which suspends, finishes or raises), they are the
    parent's label and start again."""
    seen: dict[str, tuple[int, int]] = {}
    tracers: list[Tracer] = []
    kept: list[asyncio.Task[None]] = []

    def running() -> tuple[int, int]:
        return tracers[0].current, tracers[0].step_started_ns

    async def child() -> None:
        seen["child"] = running()
        if child_ends == "suspended":
            await asyncio.sleep(0)
        elif child_ends == "raised":
            raise LookupError("eager child failed")

    async def parent() -> None:
        seen["parent before"] = running()
        kept.append(asyncio.create_task(child(), name="child"))
        seen["parent after"] = running()
        await asyncio.gather(*kept, return_exceptions=True)

    async def main() -> Trace:
        tracers.append(Tracer.start())
        kept_parent = asyncio.create_task(parent(), name="parent")
        await kept_parent
        return tracers[0].stop()

    run = execute(main, traced=False, factory=asyncio.eager_task_factory)  # type: ignore[attr-defined]
    assert run.value is not None
    trace = run.value
    parent_step, child_step = trace.steps_of("parent")[0], trace.steps_of("child")[0]
    assert child_step.inside == trace.task("parent").label
    assert seen["parent before"] == (trace.task("parent").label, parent_step.real_start_ns)
    assert seen["child"] == (trace.task("child").label, child_step.real_start_ns)
    assert seen["parent after"] == seen["parent before"]


@needs_eager
def test_eager_factory_is_chained_and_restored() -> None:
    """The tracer chains eager_task_factory (the child runs before create_task
    returns) and puts it back on stop()."""
    order: list[str] = []
    factory = asyncio.eager_task_factory  # type: ignore[attr-defined]

    async def child() -> None:
        order.append("child ran")
        await asyncio.sleep(0)

    async def main() -> bool:
        task = asyncio.create_task(child(), name="child")
        order.append("create_task returned")
        await task
        return asyncio.get_running_loop().get_task_factory() is factory

    loop = VirtualClockLoop()
    try:
        loop.set_task_factory(factory)
        tracer = Tracer(loop)
        tracer.install()
        assert loop.get_task_factory() is not factory
        loop.run_until_complete(main())
        trace = tracer.stop()
        assert loop.get_task_factory() is factory
    finally:
        close_loop(loop)
    assert order == ["child ran", "create_task returned"]
    assert [s.awaits for s in trace.steps_of("child")] == [Awaits.YIELD, Awaits.DONE]


@needs_eager
def test_eager_task_finishing_at_once_keeps_its_given_name() -> None:
    """A named eager task that returns without suspending is traced under its name."""

    async def immediate() -> int:
        return 1

    async def main() -> asyncio.Task[int]:
        task = asyncio.create_task(immediate(), name="immediate")
        assert task.done()
        return task

    run = execute(main, factory=asyncio.eager_task_factory)  # type: ignore[attr-defined]
    assert run.value is not None
    assert run.value.get_name() == "immediate"  # the task is still referenced here
    trace = run.traced
    assert [r.name for r in trace.tasks.values()][1:] == ["immediate"]
    assert trace.task("immediate").outcome is Outcome.RETURNED


@needs_eager
def test_eager_task_awaited_in_place_keeps_its_given_name() -> None:
    """``await asyncio.create_task(coro, name="immediate")`` with an eager factory:
    the task finishes inside create_task and is dropped after the await; the
    trace still knows it by its name."""

    async def immediate() -> int:
        return 1

    async def main() -> int:
        return await asyncio.create_task(immediate(), name="immediate")

    run = execute(main, factory=asyncio.eager_task_factory)  # type: ignore[attr-defined]
    assert run.value == 1
    assert run.traced.task(2).coroutine.endswith("immediate")
    assert run.traced.task(2).name == "immediate"


# -- uvloop parity -------------------------------------------------------------------


async def parity_program() -> list[str]:
    """A queue, a lock, an event, yields, task awaits, a sleep, a failure, a cancellation.

    The order must not depend on how late a timer fires (a loaded machine):
    everything but one sleep is driven by call_soon wake-ups, and that sleep
    runs while every other task is blocked.
    """
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    lock = asyncio.Lock()
    event = asyncio.Event()

    async def producer() -> None:
        for n in range(3):
            await queue.put(n)  # blocks while the one slot is full

    async def consumer() -> int:
        total = 0
        for _ in range(3):
            total += await queue.get()
        return total

    async def holder() -> None:
        async with lock:
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    async def contender() -> None:
        async with lock:
            pass

    async def waiter() -> str:
        await event.wait()
        return "woken"

    async def failing() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("parity")

    async def forever() -> None:
        await asyncio.sleep(3600)

    first = [
        asyncio.create_task(producer(), name="producer"),
        asyncio.create_task(consumer(), name="consumer"),
        asyncio.create_task(holder(), name="holder"),
        asyncio.create_task(contender(), name="contender"),
        asyncio.create_task(failing(), name="failing"),
    ]
    later = [
        asyncio.create_task(waiter(), name="waiter"),
        asyncio.create_task(forever(), name="doomed"),
    ]
    results: list[object] = list(await asyncio.gather(*first, return_exceptions=True))
    await asyncio.sleep(0.01)  # only "waiter" and "doomed" are left, both blocked
    event.set()
    later[1].cancel()
    results += await asyncio.gather(*later, return_exceptions=True)
    return [
        f"{type(r).__name__}({r})" if isinstance(r, BaseException) else repr(r) for r in results
    ]


@needs_uvloop
def test_uvloop_and_stock_loop_record_the_same_steps() -> None:
    """The same program on the stock loop and on uvloop: the same (task, awaits,
    awaited task) steps, the same task records and outcomes, the same result."""

    def steps(run: Run[Any]) -> list[tuple[object, ...]]:
        trace = run.traced
        return [
            (name_of(trace, s.task), s.awaits, name_of(trace, s.awaited_task), s.inside)
            for s in trace.steps()
        ]

    def tasks(run: Run[Any]) -> list[tuple[object, ...]]:
        trace = run.traced
        return [
            (name_of(trace, r.label), r.coroutine, r.parent, r.outcome, r.error)
            for r in trace.tasks.values()
        ]

    stock = execute(parity_program, asyncio.new_event_loop)
    fast = execute(parity_program, uvloop.new_event_loop)
    assert stock.outcome() == (
        "returned",
        ["None", "3", "None", "None", "RuntimeError(parity)", "'woken'", "CancelledError()"],
    )
    assert fast.outcome() == stock.outcome()
    assert steps(fast) == steps(stock)
    assert tasks(fast) == tasks(stock)
    trace = stock.traced
    per_task = {
        name_of(trace, label): [s.awaits for s in trace.steps_of(label)] for label in trace.tasks
    }
    yield_, sleep, queue, lock, done = (
        Awaits.YIELD,
        Awaits.SLEEP,
        Awaits.QUEUE,
        Awaits.LOCK,
        Awaits.DONE,
    )
    assert per_task == {
        "main": [Awaits.FUTURE, sleep, Awaits.FUTURE, done],
        "producer": [queue, queue, done],  # put(1) and put(2) find the slot full
        "consumer": [queue, queue, done],  # gets 0 at once, then waits for 1 and 2
        "holder": [yield_, yield_, done],
        "contender": [lock, done],
        "failing": [yield_, done],
        "waiter": [lock, done],
        "doomed": [sleep, done],
    }
    assert [(t[0], t[3]) for t in tasks(stock)] == [
        ("main", Outcome.RETURNED),
        ("producer", Outcome.RETURNED),
        ("consumer", Outcome.RETURNED),
        ("holder", Outcome.RETURNED),
        ("contender", Outcome.RETURNED),
        ("failing", Outcome.RAISED),
        ("waiter", Outcome.RETURNED),
        ("doomed", Outcome.CANCELLED),
    ]
    check_well_formed(stock.traced)
    check_well_formed(fast.traced)


@needs_uvloop
def test_uvloop_steps_have_ordered_real_times() -> None:
    """On uvloop the loop times of steps are real and ordered (start <= end, no overlap)."""
    steps = list(execute(three_sleepers_short, uvloop.new_event_loop).traced.steps())
    assert len(steps) == 11
    for step in steps:
        assert step.start <= step.end
    for before, after in itertools.pairwise(steps):
        assert before.end <= after.start


async def three_sleepers_short() -> None:
    async def sleeper() -> None:
        await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)

    await asyncio.gather(*(asyncio.create_task(sleeper(), name=n) for n in "abc"))


# -- installing, chaining, stopping ----------------------------------------------------


def test_pre_existing_factory_is_chained_and_restored_on_stop() -> None:
    """The user's factory still makes every task (given the wrapped coroutine,
    which asyncio accepts), comes back on stop(), and later tasks are not traced."""
    made: list[object] = []

    def user_factory(
        loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
    ) -> asyncio.Task[Any]:
        made.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def leaf() -> None:
        await asyncio.sleep(0)

    loop = VirtualClockLoop()
    try:
        loop.set_task_factory(user_factory)
        tracer = Tracer(loop)
        tracer.install()
        assert loop.get_task_factory() is not user_factory
        loop.run_until_complete(leaf())
        trace = tracer.stop()
        assert loop.get_task_factory() is user_factory
        loop.run_until_complete(leaf())  # after stop(): made by the user's factory only
        assert len(made) == 2
    finally:
        close_loop(loop)
    assert asyncio.iscoroutine(made[0])
    assert len(trace.tasks) == 1
    assert len(trace) == 2


def test_stop_without_a_previous_factory_restores_none_and_stops_recording() -> None:
    """With no factory before, stop() leaves none and returns the steps so far,
    fixed; tasks made afterwards are not recorded, while the tasks it did record
    go on recording (in the tracer's live trace) to their end."""

    async def main() -> tuple[Trace, Trace]:
        loop = asyncio.get_running_loop()
        tracer = Tracer.start()
        before = asyncio.create_task(sleep_twice(), name="before")
        await asyncio.sleep(0)
        stopped = tracer.stop()
        assert loop.get_task_factory() is None
        await asyncio.create_task(asyncio.sleep(0), name="after")
        await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))
        await before
        return stopped, tracer.trace()

    run = execute(main, traced=False)
    assert run.value is not None
    stopped, live = run.value
    assert [r.name for r in live.tasks.values()] == ["before"]
    assert [s.awaits for s in stopped.steps()] == [Awaits.SLEEP]
    assert [s.awaits for s in live.steps()] == [Awaits.SLEEP, Awaits.SLEEP, Awaits.DONE]
    assert live.task("before").outcome is Outcome.RETURNED
    assert live.finish_of("before") == 2.0


def test_stopped_trace_keeps_tasks_as_they_were_at_the_stop() -> None:
    """A task still waiting at stop() is PENDING in the stopped trace even after the
    loop's teardown cancels it, and the queries stay consistent with its steps."""

    async def wait_long() -> None:
        await asyncio.sleep(60)

    async def main() -> None:
        asyncio.create_task(wait_long(), name="pending")  # noqa: RUF006 - the timer holds it
        await asyncio.sleep(1)

    run = execute(main)  # stops the tracer, then cancels "pending" in teardown
    trace = run.traced
    assert [s.awaits for s in trace.steps_of("pending")] == [Awaits.SLEEP]
    assert trace.task("pending").outcome is Outcome.PENDING
    check_well_formed(trace)
    assert trace.every_start_before_any_finish() is True


def test_installing_a_tracer_twice_is_refused() -> None:
    """install() on an installed tracer raises instead of chaining itself."""
    loop = asyncio.new_event_loop()
    try:
        tracer = Tracer(loop)
        tracer.install()
        with pytest.raises(RuntimeError, match="already installed"):
            tracer.install()
        tracer.stop()
        assert loop.get_task_factory() is None
    finally:
        loop.close()


def test_stopped_tracer_under_another_records_no_new_tasks() -> None:
    """A tracer stopped while a second tracer is installed over it records no new task."""

    async def main() -> tuple[Trace, Trace]:
        outer = Tracer.start()
        inner = Tracer.start()
        await asyncio.create_task(asyncio.sleep(0), name="both")
        outer_trace = outer.stop()
        await asyncio.create_task(asyncio.sleep(0), name="late")
        return outer_trace, inner.stop()

    run = execute(main, traced=False)
    assert run.value is not None
    outer_trace, inner_trace = run.value
    assert [r.name for r in inner_trace.tasks.values()] == ["both", "late"]
    assert [r.name for r in outer_trace.tasks.values()] == ["both"]


@pytest.mark.parametrize("stacked", ["second tracer", "wrapping factory"])
def test_awaited_task_label_survives_stacked_factories(stacked: str) -> None:
    """TASK steps name the awaited task by *this* tracer's label, whatever else
    wraps the coroutine (another tracer installed first, a wrapping factory)."""

    async def target() -> None:
        await asyncio.sleep(0.01)

    async def main() -> Trace:
        if stacked == "second tracer":
            Tracer.start()
            # The first tracer sees one more task, so its labels differ from ours.
            await asyncio.create_task(asyncio.sleep(0))
        else:
            asyncio.get_running_loop().set_task_factory(CountingFactory())
        tracer = Tracer.start()
        first = asyncio.create_task(target(), name="target")
        await asyncio.create_task(_await(first), name="awaiter")
        return tracer.stop()

    run = execute(main, traced=False)
    assert run.value is not None
    trace = run.value
    awaiter_first = trace.steps_of("awaiter")[0]
    assert awaiter_first.awaits is Awaits.TASK
    assert awaiter_first.awaited_task == trace.task("target").label


async def _await(task: asyncio.Future[Any]) -> None:
    await task


# -- the wrapper stays a good coroutine citizen --------------------------------------


def test_traced_task_keeps_its_coroutine_identity_and_stack() -> None:
    """get_coro() is accepted by asyncio.iscoroutine and shows the coroutine's
    qualname and repr; get_stack()/print_stack() show the coroutine's frame."""
    seen: dict[str, object] = {}

    async def sleepy_worker() -> None:
        await asyncio.sleep(1)

    async def main() -> None:
        task = asyncio.create_task(sleepy_worker(), name="worker")
        await asyncio.sleep(0.5)
        coro = task.get_coro()
        seen["iscoroutine"] = asyncio.iscoroutine(coro)
        seen["qualname"] = getattr(coro, "__qualname__", None)
        seen["name"] = getattr(coro, "__name__", None)
        seen["repr"] = repr(coro)
        seen["task repr"] = repr(task)
        seen["stack"] = [frame.f_code.co_name for frame in task.get_stack()]
        out = io.StringIO()
        task.print_stack(file=out)
        seen["printed"] = out.getvalue()
        await task

    run = execute(main)
    assert run.error is None
    assert seen["iscoroutine"] is True
    assert seen["qualname"] == sleepy_worker.__qualname__
    assert seen["name"] == "sleepy_worker"
    assert "sleepy_worker" in str(seen["repr"])
    assert "coroutine object" in str(seen["repr"])
    assert sleepy_worker.__qualname__ in str(seen["task repr"])
    assert seen["stack"] == ["sleepy_worker"]
    printed = str(seen["printed"])
    assert "Stack for <" in printed
    assert "pending name='worker'" in printed
    assert "in sleepy_worker" in printed
    assert __file__ in printed
    assert run.traced.task("worker").outcome is Outcome.RETURNED


def test_traced_task_repr_reads_like_an_untraced_one() -> None:
    """Tracing leaves a task's repr alone: ``<Task pending name='worker' coro=<...>>``."""

    async def sleepy_worker() -> None:
        await asyncio.sleep(1)

    async def main() -> str:
        task = asyncio.create_task(sleepy_worker(), name="worker")
        await asyncio.sleep(0)
        text = repr(task)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return text

    traced, plain = execute(main).value, execute(main, traced=False).value
    assert plain is not None
    assert plain.startswith("<Task pending name='worker' coro=<")
    assert traced == plain
