"""LoopClock's timing assertions: exact on the virtual clock, a tolerance window on
the real one, and clear messages either way."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pytest_asyncspec import (
    REAL_CLOCK_TOLERANCE,
    LoopClock,
    NoRunningLoopError,
    TimingAssertionError,
    Tolerance,
)
from pytest_asyncspec.checks.timing import Elapsed, cpu_wait, cpu_wait_since

if TYPE_CHECKING:
    from conftest import RunVirtual

_T = TypeVar("_T")


def _run_on_stock_loop(main: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run ``main()`` on asyncio's own loop (the real clock), whatever the run's settings."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


async def _value_after(delay: float, value: str) -> str:
    await asyncio.sleep(delay)
    return value


# -- the virtual clock: exact ----------------------------------------------------


def test_assert_time_is_exact_to_the_tick_on_the_virtual_clock(run_virtual: RunVirtual) -> None:
    """On the virtual clock a measured 2.5 s passes against 2.5 and fails against
    2.5 s plus one nanosecond, and against 2.4 or 2.6."""

    async def main() -> list[bool]:
        clock = LoopClock()
        assert clock.mode == "virtual"
        with clock.measure() as span:
            await asyncio.sleep(2.5)
        assert span.elapsed == 2.5
        clock.assert_time(span.elapsed, 2.5, what="one sleep")
        for wrong in (2.5 + 1e-9, 2.4, 2.6):
            with pytest.raises(TimingAssertionError):
                clock.assert_time(span.elapsed, wrong)
        return [check.passed for check in clock.checks]

    assert run_virtual(main) == [True, False, False, False]


def test_failure_message_shows_expected_measured_and_the_virtual_rule(
    run_virtual: RunVirtual,
) -> None:
    """A virtual-clock mismatch raises a TimingAssertionError (an AssertionError)
    whose message gives what was timed, the expected and measured figures and
    that the comparison was exact on the virtual clock."""

    async def main() -> TimingAssertionError:
        clock = LoopClock()
        with pytest.raises(TimingAssertionError) as excinfo:
            clock.assert_time(25.0, 5.0, what="five sleeps")
        return excinfo.value

    error = run_virtual(main)

    assert isinstance(error, AssertionError)
    assert (
        str(error) == "five sleeps: expected 5.0 s, measured 25.0 s (virtual clock, exact to 1 ns)"
    )


def test_a_tolerance_given_on_the_virtual_clock_is_named_as_unused(
    run_virtual: RunVirtual,
) -> None:
    """The virtual clock compares exactly even when a tolerance is passed (the
    same assertion then holds on the real clock); the message says the
    tolerance was not used, so nobody wonders why it did not help."""

    async def main() -> str:
        clock = LoopClock()
        with pytest.raises(TimingAssertionError) as excinfo:
            clock.assert_time(0.200001, 0.2, what="refill", tolerance=Tolerance(late=0.01))
        return str(excinfo.value)

    assert run_virtual(main) == (
        "refill: expected 0.2 s, measured 0.200001 s "
        "(virtual clock, exact to 1 ns; tolerance= is for the real clock)"
    )


def test_documented_figure_is_shown_next_to_the_expected_one(run_virtual: RunVirtual) -> None:
    """``check`` compares without raising, keeps the record, and the message quotes
    the figure the source documents."""

    async def main() -> tuple[bool, str, int]:
        clock = LoopClock()
        record = clock.check(15.0, 15.0, what="pipeline", documented=15.02)
        return record.passed, record.message(), len(clock.checks)

    passed, message, kept = run_virtual(main)

    assert passed
    assert message == (
        "pipeline: expected 15.0 s, measured 15.0 s (virtual clock, exact to 1 ns); "
        "the source documents 15.02 s"
    )
    assert kept == 1


def test_now_and_reset_count_from_the_chosen_origin(run_virtual: RunVirtual) -> None:
    """``now`` counts from the clock's first reading, ``reset`` moves the origin, and
    a span cannot report its length before its block ends."""

    async def main() -> list[float]:
        await asyncio.sleep(1)  # before the first reading: not counted
        clock = LoopClock()
        readings = [clock.now()]
        await asyncio.sleep(3)
        readings.append(clock.now())
        clock.reset()
        await asyncio.sleep(2)
        readings.append(clock.now())
        with clock.measure() as span:
            with pytest.raises(RuntimeError, match="not finished"):
                _ = span.elapsed
            await asyncio.sleep(0.5)
        readings.append(span.elapsed)
        return readings

    assert run_virtual(main) == [0.0, 3.0, 2.0, 0.5]


def test_assert_times_lists_every_mismatch(run_virtual: RunVirtual) -> None:
    """``assert_times`` passes on equal sequences; otherwise its message shows both
    sequences and one line per mismatching figure (and none for matching ones);
    sequences of different lengths are reported as such."""

    async def main() -> tuple[str, str]:
        clock = LoopClock()
        clock.assert_times([1.0, 2.5, 3.0], [1.0, 2.5, 3.0], what="finish times")
        with pytest.raises(TimingAssertionError) as mismatch:
            clock.assert_times([1.0, 2.0, 3.5], [1.0, 2.5, 3.0], what="finish times")
        with pytest.raises(TimingAssertionError) as lengths:
            clock.assert_times([1.0, 2.0], [1.0, 2.0, 3.0], what="finish times")
        return str(mismatch.value), str(lengths.value)

    mismatch, lengths = run_virtual(main)

    assert mismatch.splitlines() == [
        "finish times: expected [1.0, 2.5, 3.0] s, measured [1.0, 2.0, 3.5] s",
        "  finish times[1]: expected 2.5 s, measured 2.0 s (virtual clock, exact to 1 ns)",
        "  finish times[2]: expected 3.0 s, measured 3.5 s (virtual clock, exact to 1 ns)",
    ]
    assert lengths == (
        "finish times: expected 3 figures [1.0, 2.0, 3.0], measured 2 figures [1.0, 2.0]"
    )


def test_finish_times_keeps_argument_order_and_notes_when_each_ended(
    run_virtual: RunVirtual,
) -> None:
    """``finish_times`` runs its awaitables together: results come back in argument
    order, with the instant each one finished."""

    async def main() -> tuple[list[Any], list[float], float]:
        clock = LoopClock()
        finished = await clock.finish_times(
            _value_after(3, "slow"), _value_after(1, "fast"), _value_after(2, "middle")
        )
        return finished.results, finished.times, clock.now()

    results, times, ended_at = run_virtual(main)

    assert results == ["slow", "fast", "middle"]
    assert times == [3.0, 1.0, 2.0]
    assert ended_at == 3.0


# -- the real clock: a tolerance window -------------------------------------------


def test_tolerance_window_on_the_real_clock() -> None:
    """On asyncio's own loop a real 0.2 s sleep passes against 0.2 within the default
    window and fails against 1.0, with a message that shows the accepted window."""

    async def main() -> tuple[str, float, str]:
        clock = LoopClock()
        with clock.measure() as span:
            await asyncio.sleep(0.2)
        clock.assert_time(span.elapsed, 0.2, what="a 0.2 s sleep")
        with pytest.raises(TimingAssertionError) as excinfo:
            clock.assert_time(float(span.elapsed), 1.0, what="a 0.2 s sleep")
        return clock.mode, span.elapsed, str(excinfo.value)

    mode, elapsed, message = _run_on_stock_loop(main)

    assert mode == "real"
    assert elapsed >= 0.2 - REAL_CLOCK_TOLERANCE.early
    assert message.startswith("a 0.2 s sleep: expected 1.0 s, measured ")
    # (A plain float carries no wait for a CPU: the window is the default one.)
    assert "(real clock, accepted 0.98 s to 1.2 s" in message


def test_a_tolerance_passed_to_one_assertion_replaces_the_default() -> None:
    """A per-assertion Tolerance is used instead of the clock's: 1.3 s against 1.0
    fails by default and passes with 0.5 s of lateness allowed."""

    async def main() -> list[bool]:
        clock = LoopClock()
        with pytest.raises(TimingAssertionError):
            clock.assert_time(1.3, 1.0)
        clock.assert_time(1.3, 1.0, tolerance=Tolerance(late=0.5))
        return [check.passed for check in clock.checks]

    assert _run_on_stock_loop(main) == [False, True]


def test_tolerance_window_follows_its_documented_formula() -> None:
    """The window is expected - early - early_fraction x expected to expected + late
    + late_fraction x expected: 4.94 s to 5.6 s for 5 s by default."""
    assert Tolerance().window(5.0) == pytest.approx((4.94, 5.6))
    assert Tolerance(early=0, early_fraction=0, late=0.5, late_fraction=0.5).window(
        2.0
    ) == pytest.approx((2.0, 3.5))
    assert Tolerance() == REAL_CLOCK_TOLERANCE


def test_real_clock_failure_message_matches_the_documented_one() -> None:
    """A real-clock failure reads as docs/timing-assertions.md shows it: both
    figures, the accepted window and the tolerance rule that produced it."""

    async def main() -> str:
        with pytest.raises(TimingAssertionError) as excinfo:
            LoopClock().assert_time(5.9, 5.0, what="five sleeps")
        return str(excinfo.value)

    assert _run_on_stock_loop(main) == (
        "five sleeps: expected 5.0 s, measured 5.9 s (real clock, accepted 4.94 s to "
        "5.6 s with tolerance -0.01 s-1% / +0.1 s+10%)"
    )


# -- misuse ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "use",
    [
        pytest.param(lambda clock: clock.now(), id="now"),
        pytest.param(lambda clock: clock.mode, id="mode"),
        pytest.param(lambda clock: clock.reset(), id="reset"),
        pytest.param(lambda clock: clock.assert_time(1.0, 1.0), id="assert_time"),
    ],
)
def test_reading_the_clock_outside_a_running_loop_says_to_use_a_coroutine(
    use: Callable[[LoopClock], object],
) -> None:
    """A LoopClock read with no running loop (a synchronous test) raises
    NoRunningLoopError, a RuntimeError telling to read it inside a coroutine."""
    with pytest.raises(NoRunningLoopError, match="inside a coroutine") as excinfo:
        use(LoopClock())
    assert isinstance(excinfo.value, RuntimeError)


@pytest.mark.parametrize("field", ["early", "early_fraction", "late", "late_fraction"])
def test_tolerance_rejects_negative_values(field: str) -> None:
    """Each Tolerance field refuses a negative value with a ValueError naming it."""
    with pytest.raises(ValueError, match=rf"Tolerance\.{field} must be a non-negative"):
        Tolerance(**{field: -0.01})


def test_tolerance_rejects_nan() -> None:
    """NaN is not a non-negative number of seconds: Tolerance refuses it."""
    with pytest.raises(ValueError, match="non-negative"):
        Tolerance(late=math.nan)


def test_misuses_of_measure_and_finish_times_say_what_to_do(run_virtual: RunVirtual) -> None:
    async def job() -> int:
        return 1

    async def main() -> tuple[str, str]:
        clock = LoopClock()
        with clock.measure() as span, pytest.raises(RuntimeError) as early:
            span.elapsed  # noqa: B018  (read inside the block)
        with pytest.raises(TypeError) as uncalled:
            await clock.finish_times(job)  # type: ignore[arg-type]
        return str(early.value), str(uncalled.value)

    early, uncalled = run_virtual(main)
    assert early.endswith("read span.elapsed after the `with clock.measure() as span:` block")
    assert uncalled.startswith("finish_times() takes awaitables, got <function")
    assert uncalled.endswith("(call it: job(), not job)")


# -- spans that contain real work --------------------------------------------------


def _sleep_for_real(seconds: float) -> None:
    # Runs on an executor thread, where time.sleep is a real sleep.
    time.sleep(seconds)


def test_a_span_with_real_work_is_exact_up_to_the_real_time_in_it(
    run_virtual: RunVirtual,
) -> None:
    """A span of 1.5 s of virtual sleep and one real executor job (a database
    call, say) passes against 1.5 s: the figure is exact up to the real time
    that flowed while the job was in flight, and no further."""

    async def main() -> tuple[float, float, bool]:
        clock = LoopClock()
        loop = asyncio.get_running_loop()
        with clock.measure() as span:
            # Long enough that the loop is idle, waiting, before the job ends
            # even on a loaded machine (a job that ends while the loop still
            # computes takes no virtual time, and the span would be exact).
            await loop.run_in_executor(None, _sleep_for_real, 0.05)
            await asyncio.sleep(1.5)
        clock.assert_time(span.elapsed, 1.5, what="query and wait")
        beyond = clock.check(span.elapsed, 1.5 - span.real_work - 1e-6).passed
        return span.elapsed, span.real_work, beyond

    elapsed, real_work, beyond = run_virtual(main)
    assert real_work > 0
    assert elapsed > 1.5
    assert not beyond


def test_a_failing_span_with_real_work_names_it(run_virtual: RunVirtual) -> None:
    """The message says how much of the span was real work in flight."""

    async def main() -> tuple[str, float]:
        clock = LoopClock()
        loop = asyncio.get_running_loop()
        with clock.measure() as span:
            await loop.run_in_executor(None, _sleep_for_real, 0.02)
            await asyncio.sleep(1.5)
        with pytest.raises(TimingAssertionError) as excinfo:
            clock.assert_time(span.elapsed, 1.0, what="query and wait")
        return str(excinfo.value), span.real_work

    message, real_work = run_virtual(main)
    assert message.startswith("query and wait: expected 1.0 s, measured 1.5")
    if real_work:
        assert f"1.5 s virtual + {real_work:.9f}".rstrip("0") in message
        assert "s of real work in flight" in message
    else:
        # The loop was kept off its CPU for the whole job (a loaded machine):
        # it never waited for the job, which then takes no virtual time
        # (virtual time, rule 5), and the message says the span was exact.
        assert "(virtual clock, exact to 1 ns)" in message


def test_a_tolerance_applies_on_the_virtual_clock_to_spans_with_real_work(
    run_virtual: RunVirtual,
) -> None:
    """A span around one real call of about 0.05 s passes against 0.05 s with a
    tolerance, as it would on the real clock."""

    async def main() -> bool:
        clock = LoopClock()
        loop = asyncio.get_running_loop()
        with clock.measure() as span:
            await loop.run_in_executor(None, _sleep_for_real, 0.05)
        return clock.check(span.elapsed, 0.05, tolerance=Tolerance(late=1.0)).passed

    assert run_virtual(main)


def test_a_span_without_real_work_stays_exact(run_virtual: RunVirtual) -> None:
    """Real work before a span does not loosen it: a span of virtual sleeps only
    reports no real work and compares exactly."""

    async def main() -> tuple[float, bool]:
        clock = LoopClock()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, _sleep_for_real, 0.01)
        with clock.measure() as span:
            await asyncio.sleep(2.0)
        return span.real_work, clock.check(span.elapsed, 2.0 + 1e-9).passed

    assert run_virtual(main) == (0.0, False)


# -- the real clock on a loaded machine: the loop's wait for a CPU ------------------


def test_delayed_tolerance_moves_only_the_upper_end() -> None:
    """Tolerance.delayed(w) accepts w seconds more lateness and nothing else: for
    1 s, 0.98 s to 1.2 s becomes 0.98 s to 1.7 s with w = 0.5; a negative w is 0."""
    assert Tolerance().delayed(0.5).window(1.0) == pytest.approx((0.98, 1.7))
    assert Tolerance().delayed(-1.0) == Tolerance()


def test_a_real_span_is_allowed_the_time_the_loop_waited_for_a_cpu() -> None:
    """On the real clock a figure from a span carries the loop's wait for a CPU in
    it, and the window's upper end moves up by exactly that: 1.35 s against 1.0 s
    (accepted up to 1.2 s) passes with 0.3 s of waiting and fails with 0.1 s.
    Waiting never excuses a figure that is early, nor one that is late by more
    than the wait (four 1 s steps in turn against one), and the message says how
    long the loop waited."""

    async def main() -> tuple[list[bool], str]:
        clock = LoopClock()
        passed = [
            clock.check(Elapsed(1.35, cpu_wait=0.3), 1.0).passed,
            clock.check(Elapsed(1.35, cpu_wait=0.1), 1.0).passed,
            clock.check(Elapsed(4.0, cpu_wait=0.3), 1.0).passed,
            clock.check(Elapsed(0.5, cpu_wait=0.3), 1.0).passed,
        ]
        with pytest.raises(TimingAssertionError) as excinfo:
            clock.assert_time(Elapsed(4.0, cpu_wait=0.3), 1.0, what="four steps")
        return passed, str(excinfo.value)

    passed, message = _run_on_stock_loop(main)
    assert passed == [True, False, False, False]
    assert message == (
        "four steps: expected 1.0 s, measured 4.0 s (real clock, accepted 0.98 s to "
        "1.5 s with tolerance -0.01 s-1% / +0.1 s+10% + 0.3 s the loop waited for a CPU)"
    )


def test_the_virtual_clock_ignores_a_wait_for_a_cpu(run_virtual: RunVirtual) -> None:
    """On the virtual clock the comparison stays exact: a figure carrying a wait
    for a CPU is not loosened by it, and a span there records none."""

    async def main() -> tuple[bool, float]:
        clock = LoopClock()
        with clock.measure() as span:
            await asyncio.sleep(1.0)
        return clock.check(Elapsed(1.3, cpu_wait=0.3), 1.0).passed, span.elapsed.cpu_wait

    assert run_virtual(main) == (False, 0.0)


def _spin_until(deadline: float) -> None:
    while time.monotonic() < deadline:
        pass


@pytest.mark.skipif(cpu_wait() is None, reason="the kernel does not report CPU waits")
def test_cpu_wait_counts_the_time_a_ready_thread_waits_for_a_cpu() -> None:
    """A thread that computes on one CPU shared with a process that also computes
    there waits for that CPU for a good part of the time; a span measured on the
    real clock around it records the same wait as cpu_wait() does."""
    cpu = min(os.sched_getaffinity(0))
    rival = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import os, time; os.sched_setaffinity(0, {{{cpu}}}); "
            "end = time.monotonic() + 5\nwhile time.monotonic() < end: pass",
        ]
    )
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        time.sleep(0.2)  # the rival is computing

        async def main() -> tuple[float, float, float]:
            clock = LoopClock()
            before = cpu_wait()
            with clock.measure() as span:
                _spin_until(time.monotonic() + 0.4)
            return span.cpu_wait, span.elapsed.cpu_wait, cpu_wait_since(before)

        in_span, carried, around = _run_on_stock_loop(main)
    finally:
        os.sched_setaffinity(0, previous)
        rival.kill()
        rival.wait()
    # Two computing tasks on one CPU: about half of the 0.4 s is spent waiting.
    assert 0.05 < in_span == carried <= around < 0.4 + 5
