"""The manual clock and ``asyncspec_clock.advance`` through the plugin:
chosen by ini, marker and command line like the other clocks, reported
in the header, refused on uvloop, explained when a test waits for an
advance that never comes, and explored like any virtual-clock test."""

from __future__ import annotations

import pytest
from pytester_helpers import STRICT_INI, assert_usage_error, failure_sections, output_of

STEPPED = """\
import asyncio

import pytest


async def test_stepped(asyncspec_clock, asyncspec_settings):
    assert asyncspec_settings.clock == "manual"
    assert asyncspec_clock.mode == "manual"
    beats = []

    async def beat():
        while True:
            await asyncio.sleep(2)
            beats.append(asyncspec_clock.now())

    task = asyncio.create_task(beat())
    await asyncio.sleep(0)
    await asyncspec_clock.advance(1)
    assert beats == []
    await asyncspec_clock.advance(4)
    assert beats == [2.0, 4.0]
    assert asyncspec_clock.now() == 5.0
    task.cancel()
"""


def test_the_manual_clock_from_the_ini_file_steps_a_periodic_task(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI + "asyncspec_clock = manual\n")
    pytester.makepyfile(test_stepped_beats=STEPPED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*asyncspec: clock=manual*"])


def test_a_marker_asks_for_the_manual_clock_and_the_command_line_overrides_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        test_marked_manual=STEPPED.replace(
            "async def test_stepped",
            '@pytest.mark.asyncspec(clock="manual")\nasync def test_stepped',
        )
        + """

@pytest.mark.asyncspec(clock="virtual")
async def test_virtual_made_manual(asyncspec_settings):
    assert asyncspec_settings.clock == "manual"
    assert asyncspec_settings.sources["clock"] == "command line"
"""
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1, failed=1)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--asyncspec-clock=manual")
    result.assert_outcomes(passed=2)


def test_the_manual_clock_on_uvloop_is_a_usage_error_naming_it(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("uvloop")
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_on_uvloop="async def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--asyncspec-clock=manual", "--asyncspec-loop=uvloop"
    )
    assert_usage_error(
        result,
        "*the manual clock (from command line) cannot run on uvloop (from command line)*",
    )


def test_a_test_that_waits_for_an_advance_that_never_comes_fails_saying_so(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI + "asyncspec_clock = manual\n")
    pytester.makepyfile(
        test_forgot_to_advance="""\
import asyncio


async def test_forgot():
    await asyncio.sleep(30)
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    sections = failure_sections(result)
    assert "DeadlockError" in sections, output_of(result)
    assert "waiting for advance(): time is manual, and 1 timer is set, the next due at 30 s" in (
        sections
    )
    assert "a timer due at 30 s, waiting for advance()" in sections
    assert "test_forgot_to_advance.py:5" in sections


def test_an_advance_on_the_real_clock_fails_with_the_way_to_a_virtual_one(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        test_real_advance="""\
async def test_advance(asyncspec_clock):
    await asyncspec_clock.advance(1)
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    sections = failure_sections(result)
    assert "ClockControlError: advance() moves a virtual clock" in sections, output_of(result)
    assert "--asyncspec-clock=manual" in sections


def test_a_manual_clock_test_is_explored_and_its_race_found(pytester: pytest.Pytester) -> None:
    pytester.makeini(STRICT_INI + "asyncspec_clock = manual\n")
    pytester.makepyfile(
        test_manual_race="""\
import asyncio

import pytest


@pytest.mark.asyncspec(schedules=50, seed=3)
async def test_race(asyncspec_clock, asyncspec_settings):
    assert asyncspec_settings.clock == "manual"
    counter = {"n": 0}

    async def bump(late):
        await asyncio.sleep(1)
        for _ in range(late):
            await asyncio.sleep(0)
        seen = counter["n"]
        await asyncio.sleep(0)
        counter["n"] = seen + 1

    # In stock order the first bump writes before the second reads.
    tasks = [asyncio.create_task(bump(late)) for late in (0, 2)]
    await asyncspec_clock.advance(1)
    await asyncio.gather(*tasks)
    assert asyncspec_clock.now() == 1.0
    assert counter["n"] == 2
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    text = output_of(result)
    assert "assert 1 == 2" in text
    assert "--asyncspec-replay=" in text
