"""The time module on and off the loop thread of a virtual-clock loop.

On the thread running a virtual loop, ``time.monotonic``/``perf_counter``/
``time`` (and their ``_ns`` forms) read the virtual clock and ``time.sleep``
moves it; every other thread keeps real time, and the module's own functions
are back once no virtual loop runs.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import TYPE_CHECKING

import pytest
from real_work_helpers import REAL_TIME_FUNCTIONS

from pytest_asyncspec import VirtualClockLoop
from pytest_asyncspec.clock import time_patch

if TYPE_CHECKING:
    from conftest import RunVirtual


def _replaced_functions() -> list[str]:
    return [name for name, real in REAL_TIME_FUNCTIONS.items() if getattr(time, name) is not real]


def _running_loop() -> VirtualClockLoop:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualClockLoop)
    return loop


def test_time_functions_read_the_virtual_clock_on_the_loop_thread(
    run_virtual: RunVirtual,
) -> None:
    """On the loop thread every time function shows the loop's clock, before and
    after a 100 s sleep: monotonic and perf_counter equal ``loop.time()``, their
    ``_ns`` forms the tick count, and ``time.time()`` the loop's wall-clock epoch
    plus the ticks."""

    def readings(loop: VirtualClockLoop) -> dict[str, object]:
        return {
            "loop": loop.time(),
            "monotonic": time.monotonic(),
            "perf_counter": time.perf_counter(),
            "monotonic_ns": time.monotonic_ns(),
            "perf_counter_ns": time.perf_counter_ns(),
            "time_ns - epoch": time.time_ns() - loop.epoch_ns(),
            "time": time.time(),
        }

    async def main() -> tuple[int, dict[str, object], dict[str, object]]:
        loop = _running_loop()
        before = readings(loop)
        await asyncio.sleep(100)
        return loop.epoch_ns(), before, readings(loop)

    epoch_ns, before, after = run_virtual(main)

    assert before == {
        "loop": 0.0,
        "monotonic": 0.0,
        "perf_counter": 0.0,
        "monotonic_ns": 0,
        "perf_counter_ns": 0,
        "time_ns - epoch": 0,
        "time": epoch_ns / 1_000_000_000,
    }
    assert after == {
        "loop": 100.0,
        "monotonic": 100.0,
        "perf_counter": 100.0,
        "monotonic_ns": 100_000_000_000,
        "perf_counter_ns": 100_000_000_000,
        "time_ns - epoch": 100_000_000_000,
        "time": (epoch_ns + 100_000_000_000) / 1_000_000_000,
    }


def test_wall_clock_starts_at_the_real_time_the_loop_was_created() -> None:
    """``time.time()`` on a virtual loop starts from the real wall-clock time at
    which the loop was created."""
    before = time_patch.real_time_ns()
    loop = VirtualClockLoop()
    after = time_patch.real_time_ns()
    try:
        assert before <= loop.epoch_ns() <= after
    finally:
        loop.close()


def test_blocking_sleep_on_the_loop_thread_moves_the_clock_at_once(
    run_virtual: RunVirtual,
) -> None:
    """``time.sleep(d)`` on the loop thread moves the clock by exactly ``d`` (an hour
    here, which the test's timeout would never allow for real), one tick for 1 ns,
    nothing for 0; a callback already scheduled runs only after the block."""

    async def main() -> list[tuple[str, float]]:
        loop = _running_loop()
        seen: list[tuple[str, float]] = []
        loop.call_soon(lambda: seen.append(("callback", loop.time())))
        time.sleep(3600)
        seen.append(("after an hour", loop.time()))
        time.sleep(0)
        seen.append(("after 0", loop.time()))
        start = loop.virtual_ticks()
        time.sleep(1e-9)
        seen.append(("ticks for 1 ns", loop.virtual_ticks() - start))
        await asyncio.sleep(0)
        return seen

    assert run_virtual(main) == [
        ("after an hour", 3600.0),
        ("after 0", 3600.0),
        ("ticks for 1 ns", 1),
        ("callback", 3600.000000001),
    ]


@pytest.mark.parametrize(
    ("seconds", "complaint"),
    [(-1.0, "non-negative"), (-1e-9, "non-negative"), (math.nan, "NaN")],
)
def test_invalid_sleep_on_the_loop_thread_raises_like_the_real_one(
    run_virtual: RunVirtual, seconds: float, complaint: str
) -> None:
    """A negative or NaN ``time.sleep`` on the loop thread raises ValueError, as the
    real function does, and leaves the clock where it was."""
    with pytest.raises(ValueError, match=complaint):
        time_patch.real_sleep(seconds)

    async def main() -> float:
        await asyncio.sleep(2)
        with pytest.raises(ValueError, match=complaint):
            time.sleep(seconds)
        return asyncio.get_running_loop().time()

    assert run_virtual(main) == 2.0


def test_a_thread_started_from_the_loop_sees_real_time(run_virtual: RunVirtual) -> None:
    """A thread started inside a coroutine reads the real clocks (its readings fall
    between real readings taken around them) and its ``time.sleep`` really waits,
    while the loop's virtual clock does not move at all."""
    seen: dict[str, object] = {}

    def in_thread() -> None:
        seen["patched module"] = _replaced_functions()
        real_before = time_patch.real_monotonic()
        monotonic = time.monotonic()
        perf_before = time_patch.real_perf_counter()
        perf = time.perf_counter()
        perf_after = time_patch.real_perf_counter()
        wall_before = time_patch.real_time()
        wall = time.time()
        wall_after = time_patch.real_time()
        real_after = time_patch.real_monotonic()
        seen["monotonic is real"] = real_before <= monotonic <= real_after
        seen["perf_counter is real"] = perf_before <= perf <= perf_after
        seen["time is real"] = wall_before <= wall <= wall_after
        slept_from = time.monotonic()
        time.sleep(0.05)
        # A lower bound only: a real sleep never returns early.
        seen["slept for real"] = time.monotonic() - slept_from >= 0.05

    async def main() -> tuple[float, float]:
        loop = _running_loop()
        await asyncio.sleep(500)
        before = loop.time()
        thread = threading.Thread(target=in_thread, name="started-from-the-loop")
        thread.start()
        thread.join(timeout=10)  # blocks the loop thread: no virtual time passes
        assert not thread.is_alive()
        return before, loop.time()

    before, after = run_virtual(main)

    assert (before, after) == (500.0, 500.0)
    assert seen == {
        # The module is patched while the loop runs, for every thread ...
        "patched module": list(REAL_TIME_FUNCTIONS),
        # ... but threads without a virtual loop are routed to the real clocks.
        "monotonic is real": True,
        "perf_counter is real": True,
        "time is real": True,
        "slept for real": True,
    }


def test_time_functions_are_restored_when_the_loop_stops(run_virtual: RunVirtual) -> None:
    """While the loop runs every time function is replaced; once it stops each one
    is the module's original again (``time.sleep`` included)."""
    assert _replaced_functions() == []

    async def main() -> list[str]:
        return _replaced_functions()

    assert run_virtual(main) == list(REAL_TIME_FUNCTIONS)
    assert _replaced_functions() == []
    assert time.sleep is time_patch.real_sleep


def test_each_thread_follows_its_own_virtual_loop() -> None:
    """Two virtual loops on two threads at once: each thread reads its own loop's
    clock; when one loop stops the module stays patched for the other, and the
    stopped loop's thread reads real time again; the originals come back only when
    the last loop stops."""
    other_running = threading.Event()
    release_other = threading.Event()
    other_saw: list[float] = []
    other_failed: list[BaseException] = []

    async def other_main() -> None:
        await asyncio.sleep(100)
        other_saw.append(time.monotonic())
        other_running.set()
        # Blocks this loop's thread in a real wait; the loop still counts as running.
        release_other.wait(timeout=10)
        other_saw.append(time.monotonic())

    def run_other() -> None:
        loop = VirtualClockLoop()
        try:
            loop.run_until_complete(other_main())
        except BaseException as error:  # reported by the main thread
            other_failed.append(error)
        finally:
            loop.close()

    async def this_main() -> float:
        await asyncio.sleep(7)
        return time.monotonic()

    other = threading.Thread(target=run_other, name="other-virtual-loop")
    other.start()
    try:
        assert other_running.wait(timeout=10)
        this_loop = VirtualClockLoop()
        try:
            assert this_loop.run_until_complete(this_main()) == 7.0
        finally:
            this_loop.close()
        # This loop stopped, the other one still runs.
        assert _replaced_functions() == list(REAL_TIME_FUNCTIONS)
        real_before = time_patch.real_monotonic()
        here = time.monotonic()
        real_after = time_patch.real_monotonic()
        assert real_before <= here <= real_after
    finally:
        release_other.set()
        other.join(timeout=10)

    assert not other.is_alive()
    assert other_failed == []
    assert other_saw == [100.0, 100.0]
    assert _replaced_functions() == []
