"""The step log's contract, held by the Python types and the C accelerator alike."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import time
import types
import weakref
from collections.abc import Generator
from typing import Any

import pytest

from pytest_asyncspec.clock.virtual_loop import VirtualClockLoop
from pytest_asyncspec.tracing import step_log
from pytest_asyncspec.tracing.step_log import KIND_DONE, WORDS, PyRecorderBase, PyStepLog

try:
    from pytest_asyncspec.tracing import _step_log_c  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - not built here
    _step_log_c = None

IMPLEMENTATIONS = [pytest.param((PyStepLog, PyRecorderBase), id="python")]
if _step_log_c is not None:
    IMPLEMENTATIONS.append(pytest.param((_step_log_c.StepLog, _step_log_c.RecorderBase), id="c"))


@pytest.fixture(params=IMPLEMENTATIONS)
def types_(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    return request.param  # type: ignore[no-any-return]


class Calls:
    """What the recorder's rare path was called with."""

    def __init__(self) -> None:
        self.yielded: list[Any] = []


def recorder_class(base: Any, calls: Calls, code: int = 2) -> Any:
    class Recorder(base):  # type: ignore[misc, valid-type]
        __slots__ = ()

        def _yielded(self, result: Any) -> int:
            calls.yielded.append(result)
            return code

    return Recorder


def words(log: Any) -> list[list[int]]:
    records = list(log.records)
    return [records[i : i + WORDS] for i in range(0, len(records), WORDS)]


@types.coroutine
def _suspend(value: Any = None) -> Generator[Any, Any, Any]:
    return (yield value)


async def two_steps(result: Any) -> Any:
    received = await _suspend()
    await _suspend("a future")
    return (result, received)


def test_send_records_each_step_and_passes_values_through(types_: tuple[Any, Any]) -> None:
    log_type, base = types_
    calls = Calls()
    log = log_type(None, -1)
    recorder = recorder_class(base, calls, code=3 << 8 | 2)(two_steps((1, 2)), log, 5)
    assert recorder.send(None) is None
    assert recorder.send("sent in") == "a future"
    with pytest.raises(StopIteration) as stop:
        recorder.send(None)
    # A tuple value comes back whole, not taken for arguments.
    assert stop.value.value == ((1, 2), "sent in")
    steps = words(log)
    assert [key for key, *_ in steps] == [5 << 8, 5 << 8 | 2, 5 << 8 | KIND_DONE]
    assert [last >> 32 for *_, last in steps] == [0, 3, 0]
    assert all(start <= end for _, start, end, *_ in steps)
    assert [step[3:5] for step in steps] == [[0, 0]] * 3  # a real loop: no ticks
    assert calls.yielded == ["a future"]
    assert log.endings == [(5, None)]
    assert log.steps == 3
    assert (log.current, log.step_started_ns, log.step_serial) == (0, 0, 0)


def test_next_is_a_step_with_none(types_: tuple[Any, Any]) -> None:
    log_type, base = types_
    log = log_type(None, -1)
    recorder = recorder_class(base, Calls())(two_steps(None), log, 1)
    assert next(recorder) is None
    assert iter(recorder) is recorder
    assert recorder.__await__() is recorder
    assert len(words(log)) == 1


def test_an_exception_ends_the_task_and_propagates(types_: tuple[Any, Any]) -> None:
    log_type, base = types_
    calls = Calls()

    async def fails() -> None:
        await _suspend()
        raise KeyError("lost")

    log = log_type(None, -1)
    recorder = recorder_class(base, calls)(fails(), log, 2)
    recorder.send(None)
    with pytest.raises(KeyError, match="lost") as raised:
        recorder.send(None)
    assert log.endings == [(2, ("raised", "KeyError: 'lost'"))]
    assert raised.value.__traceback__ is not None
    assert words(log)[-1][0] == 2 << 8 | KIND_DONE


def test_throw_is_a_step_and_a_caught_throw_returns(types_: tuple[Any, Any]) -> None:
    log_type, base = types_
    calls = Calls()

    async def catches() -> str:
        try:
            await _suspend()
        except asyncio.CancelledError:
            await _suspend()
            return "cleaned up"
        return "not reached"

    log = log_type(None, -1)
    recorder = recorder_class(base, calls)(catches(), log, 4)
    recorder.send(None)
    assert recorder.throw(asyncio.CancelledError()) is None
    with pytest.raises(StopIteration) as stop:
        recorder.send(None)
    assert stop.value.value == "cleaned up"
    assert log.steps == 3
    assert len(words(log)) == 3

    recorder = recorder_class(base, calls)(catches(), log, 5)
    recorder.send(None)
    with pytest.raises(ValueError, match="thrown"):
        recorder.throw(ValueError("thrown"))
    assert log.endings == [(4, None), (5, ("raised", "ValueError: thrown"))]


def test_keep_over_keeps_only_long_steps(types_: tuple[Any, Any]) -> None:
    log_type, base = types_
    calls = Calls()

    async def short_then_long() -> None:
        await _suspend("short")
        time.sleep(0.02)
        await _suspend("long")

    log = log_type(None, 10_000_000)  # 10 ms
    recorder = recorder_class(base, calls)(short_then_long(), log, 1)
    recorder.send(None)
    recorder.send(None)
    with pytest.raises(StopIteration):
        recorder.send(None)
    (kept,) = words(log)
    assert kept[2] - kept[1] > 10_000_000
    # Only a kept step asks what it waits for; every ending is noted.
    assert calls.yielded == ["long"]
    assert len(log.endings) == 1
    assert log.steps == 3
    assert log.keep_over_ns == 10_000_000


def test_nested_steps_restore_the_outer_step(types_: tuple[Any, Any]) -> None:
    """An eager task's first step runs inside its creator's: the log shows the
    inner step while it runs and the outer one again after it.  Each step has
    its own serial number, the outer one's back after the inner step."""
    log_type, base = types_
    log = log_type(None, -1)
    seen: list[tuple[int, int, int]] = []
    cls = recorder_class(base, Calls())

    async def inner() -> None:
        seen.append((log.current, log.step_started_ns, log.step_serial))

    async def outer() -> None:
        before = (log.current, log.step_started_ns, log.step_serial)
        with pytest.raises(StopIteration):
            cls(inner(), log, 2).send(None)
        seen.append(before)
        seen.append((log.current, log.step_started_ns, log.step_serial))

    with pytest.raises(StopIteration):
        cls(outer(), log, 1).send(None)
    (inner_now, outer_before, outer_after) = seen
    assert inner_now[0] == 2
    assert outer_before == outer_after
    assert outer_before[0] == 1
    assert (outer_before[2], inner_now[2]) == (1, 2)
    assert log.step_serial == 0
    inner_step, outer_step = words(log)
    assert inner_step[5] & 0xFFFFFFFF == 1  # ran inside task 1's step
    assert outer_step[5] & 0xFFFFFFFF == 0


def test_virtual_loop_ticks_are_read_around_each_step(types_: tuple[Any, Any]) -> None:
    log_type, base = types_
    loop = VirtualClockLoop()
    try:
        log = log_type(loop, -1)

        async def blocks() -> None:
            time.sleep(1.5)  # moves the virtual clock while the loop runs

        async def main() -> None:
            coro = recorder_class(base, Calls())(blocks(), log, 1)
            await asyncio.get_running_loop().create_task(coro)

        loop.run_until_complete(main())
    finally:
        loop.close()
    ((_, _, _, loop_start, loop_end, _),) = words(log)
    assert loop_end - loop_start == 1_500_000_000


def test_a_task_runs_through_the_recorder(types_: tuple[Any, Any]) -> None:
    """asyncio's task steps the recorder (PyIter_Send on the C task)."""
    log_type, base = types_
    calls = Calls()
    log = log_type(None, -1)

    async def work() -> int:
        await asyncio.sleep(0)
        await asyncio.sleep(0.001)
        return 7

    async def main() -> int:
        recorder = recorder_class(base, calls)(work(), log, 1)
        return await asyncio.get_running_loop().create_task(recorder)

    assert asyncio.run(main()) == 7
    keys = [key for key, *_ in words(log)]
    assert keys == [1 << 8, 1 << 8 | 2, 1 << 8 | KIND_DONE]
    assert len(calls.yielded) == 1
    assert isinstance(calls.yielded[0], asyncio.Future)


def test_close_closes_the_coroutine(types_: tuple[Any, Any]) -> None:
    log_type, base = types_
    coro = two_steps(None)
    recorder = recorder_class(base, Calls())(coro, log_type(None, -1), 1)
    recorder.send(None)
    recorder.close()
    assert coro.cr_frame is None


def test_many_steps_survive_the_c_buffering(types_: tuple[Any, Any]) -> None:
    log_type, base = types_
    log = log_type(None, -1)

    async def many() -> None:
        for _ in range(5_000):
            await _suspend()

    recorder = recorder_class(base, Calls())(many(), log, 1)
    for _ in range(5_000):
        recorder.send(None)
    with pytest.raises(StopIteration):
        recorder.send(None)
    assert len(log.records) == 5_001 * WORDS
    log.append(1, 2, 3, 4, 5, 6)
    assert list(log.records[-WORDS:]) == [1, 2, 3, 4, 5, 6]


def test_bad_labels_are_refused(types_: tuple[Any, Any]) -> None:
    log_type, base = types_
    cls = recorder_class(base, Calls())
    for label in (0, -1, 2**31):
        coro = two_steps(None)
        with pytest.raises(ValueError, match="label must be in"):
            cls(coro, log_type(None, -1), label)
        coro.close()


@pytest.mark.skipif(_step_log_c is None, reason="the C accelerator is not built here")
def test_c_clock_is_perf_counter() -> None:
    """Stamps taken in C and in Python are comparable: one clock."""
    for _ in range(100):
        before = time.perf_counter_ns()
        now = _step_log_c.now_ns()
        after = time.perf_counter_ns()
        assert before <= now <= after


@pytest.mark.skipif(
    sys.platform != "linux" or sys.implementation.name != "cpython",
    reason="the accelerator is built for Linux CPython only",
)
def test_the_accelerator_is_in_use_where_it_is_built() -> None:
    """A silently failed build would only show as slow tracing: fail here."""
    if os.environ.get("PYTEST_ASYNCSPEC_PURE_PYTHON"):
        assert not step_log.ACCELERATED
    else:
        assert step_log.ACCELERATED, "pytest_asyncspec.tracing._step_log_c did not build or import"


def test_endings_by_exception_fill_and_flush_the_buffer(types_: tuple[Any, Any]) -> None:
    """A task that raises ends with its exception set: noting its last step
    must not touch the C API before the exception is set aside (a full
    buffer is flushed right then), nor lose the exception."""
    log_type, base = types_
    log = log_type(None, -1)
    cls = recorder_class(base, Calls())

    async def fails(number: int) -> None:
        raise ValueError(number)

    for number in range(3_000):  # more than the C buffer's 2,048 steps
        with pytest.raises(ValueError, match=f"^{number}$"):
            cls(fails(number), log, 1).send(None)
    assert len(log.records) == 3_000 * WORDS
    assert [detail for _, detail in log.endings] == [
        ("raised", f"ValueError: {n}") for n in range(3_000)
    ]


def test_endings_keep_no_exception_result_or_frame(types_: tuple[Any, Any]) -> None:
    """Stock asyncio frees a finished task's exception, with the frames on
    its traceback and their locals, once the task is dropped: the log must
    keep plain data only (and no returned value, nor a StopIteration holding
    one)."""
    log_type, base = types_
    log = log_type(None, -1)
    cls = recorder_class(base, Calls())

    class Big:
        pass

    refs: list[weakref.ref[Big]] = []

    async def fails() -> None:
        big = Big()
        refs.append(weakref.ref(big))
        await _suspend()
        raise ValueError("boom")

    async def returns() -> Big:
        big = Big()
        refs.append(weakref.ref(big))
        await _suspend()
        return big

    async def returns_when_thrown_at() -> Big:
        big = Big()
        refs.append(weakref.ref(big))
        try:
            await _suspend()
        except KeyError:
            return big
        return Big()

    async def cancelled() -> None:
        big = Big()
        refs.append(weakref.ref(big))
        await _suspend()

    recorder = cls(fails(), log, 1)
    recorder.send(None)
    with pytest.raises(ValueError, match="boom"):
        recorder.send(None)
    recorder = cls(returns(), log, 2)
    recorder.send(None)
    with pytest.raises(StopIteration):  # the Python iterator protocol's return
        recorder.send(None)
    recorder = cls(returns_when_thrown_at(), log, 3)
    recorder.send(None)
    with pytest.raises(StopIteration):  # a return from a throw
        recorder.throw(KeyError("wake"))
    recorder = cls(cancelled(), log, 4)
    recorder.send(None)
    with pytest.raises(asyncio.CancelledError):
        recorder.throw(asyncio.CancelledError("stop"))
    del recorder
    gc.collect()
    assert [ref() for ref in refs] == [None] * 4
    assert log.endings == [
        (1, ("raised", "ValueError: boom")),
        (2, None),
        (3, None),
        (4, ("cancelled", None)),
    ]


def test_an_unprintable_exception_is_noted_by_its_type(types_: tuple[Any, Any]) -> None:
    log_type, base = types_
    log = log_type(None, -1)

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    async def fails() -> None:
        raise Unprintable

    with pytest.raises(Unprintable):
        recorder_class(base, Calls())(fails(), log, 1).send(None)
    assert log.endings == [(1, ("raised", "Unprintable: <unprintable Unprintable object>"))]


@pytest.mark.skipif(step_log.coarse_resolution_ns() is None, reason="no coarse clock here")
def test_coarse_stamps_keep_long_steps_to_the_tick(types_: tuple[Any, Any]) -> None:
    """With coarse stamps a long step is kept with its duration good to one
    kernel tick, and the log's clock is the one its stamps come from."""
    log_type, base = types_
    resolution = step_log.coarse_resolution_ns()
    assert resolution is not None
    log = log_type(None, 10 * resolution, True)
    assert log.coarse

    slept: list[int] = []

    async def blocks() -> None:
        await _suspend()
        began = time.perf_counter_ns()
        time.sleep(20 * resolution / 1e9)
        slept.append(time.perf_counter_ns() - began)

    recorder = recorder_class(base, Calls())(blocks(), log, 1)
    recorder.send(None)
    before = log.clock()
    with pytest.raises(StopIteration):
        recorder.send(None)
    after = log.clock()
    ((_, start, end, *_),) = words(log)  # the short first step is not kept
    assert before <= start <= end <= after
    # Each coarse stamp trails the precise clock by less than a tick, so the
    # step's coarse duration is the precise one to within a tick either way
    # (the step is a hair longer than the sleep inside it).
    assert abs((end - start) - slept[0]) <= 2 * resolution


def test_coarse_stamps_need_a_threshold(types_: tuple[Any, Any]) -> None:
    log_type, _ = types_
    with pytest.raises(ValueError, match="coarse stamps are for keeping long steps only"):
        log_type(None, -1, True)


def test_send_and_throw_hold_no_extra_references(types_: tuple[Any, Any]) -> None:
    """Values sent, yielded and thrown through the recorder are not leaked."""
    log_type, base = types_
    log = log_type(None, -1)
    sent = object()

    class Thrown(ValueError):
        """Weakly referenceable, unlike ValueError itself."""

    async def resilient() -> None:
        while True:
            with contextlib.suppress(Thrown):
                await _suspend(sent)

    class Recorder(base):  # type: ignore[misc, valid-type]
        __slots__ = ()

        def _yielded(self, result: Any) -> int:
            return 2  # keeps nothing, unlike Calls

    recorder = Recorder(resilient(), log, 1)
    recorder.send(None)
    before = sys.getrefcount(sent)
    thrown = []
    for _ in range(1_000):
        assert recorder.send(sent) is sent
        error = Thrown("thrown")
        assert recorder.throw(error) is sent
        # A fresh exception each time: re-raising one object would grow its
        # traceback, which keeps the frames (and their values) alive.
        thrown.append(weakref.ref(error))
        del error
    assert sys.getrefcount(sent) == before
    assert not any(reference() is not None for reference in thrown)
    recorder.close()
