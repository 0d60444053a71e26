"""What a user sees of a deadlock, a livelock, and a deadlock a timeout ended.

Inner runs go through pytest-asyncio's runner, as the user's tests do.  They
run in a subprocess with a real-time limit only so that a run that spins
(as a deadlock beside a heartbeat did before the stall budget) fails here
instead of hanging the suite; no assertion is about real time.
"""

from __future__ import annotations

import re
import sys

import pytest
from pytester_helpers import VIRTUAL_INI, assert_usage_error, failure_sections, output_of

#: Real seconds after which an inner run is taken for a hang.
HANG_LIMIT = 120

HEARTBEAT_BESIDE_DEADLOCK = """\
import asyncio

async def heartbeat():
    while True:
        await asyncio.sleep(1)

async def test_broker():
    asyncio.create_task(heartbeat(), name="heartbeat")
    await asyncio.Event().wait()
"""

#: Source lines of the frames above a loop's error: pytest-asyncio's
#: runner, asyncio's runners and run_until_complete.
RUNNER_SOURCE = re.compile(r"pytest_asyncio|base_events\.py|runners\.py|run_until_complete")


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=HANG_LIMIT)


def _failure_of(result: pytest.RunResult, test: str) -> str:
    """The failure section of ``test``, from its title on."""
    sections = failure_sections(result)
    start = sections.index(f" {test} ")
    return sections[start:]


@pytest.mark.parametrize("schedules", [0, 3], ids=["plain", "explored"])
def test_a_deadlock_beside_a_heartbeat_fails_with_a_livelock_report_first(
    pytester: pytest.Pytester, schedules: int
) -> None:
    """The test fails with the livelock report as the first thing under its title:
    the Event's waiter at its line, the heartbeat's timer at its line and how
    often it fired; no runner source above it.  Explored, the budget counts
    from the schedule's start, so the report says the same."""
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(test_broker=HEARTBEAT_BESIDE_DEADLOCK)

    result = _run(pytester, f"--asyncspec-schedules={schedules}")

    result.assert_outcomes(failed=1)
    failure = _failure_of(result, "test_broker")
    lines = failure.splitlines()
    assert re.match(r"livelock at virtual time \d+ s: for 3600 s of virtual time", lines[1])
    path = str(pytester.path / "test_broker.py")
    assert (
        f"the timer of task 'heartbeat' at {path}:5 in heartbeat fired 450 time(s) "
        "in the last 450 s" in failure
    )
    assert f"    at {path}:9 in test_broker" in failure
    assert "awaits asyncio Event.wait()" in failure
    assert not RUNNER_SOURCE.search(failure.split("LivelockError")[0]), failure


@pytest.mark.parametrize("schedules", [0, 3], ids=["plain", "explored"])
def test_a_deadlock_report_is_the_first_thing_the_failure_shows(
    pytester: pytest.Pytester, schedules: int
) -> None:
    """Nothing of pytest-asyncio's or asyncio's source above the deadlock report,
    under pytest-asyncio's runner and under exploration alike."""
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(
        test_stuck="""\
        import asyncio

        async def test_stuck():
            await asyncio.Event().wait()
        """
    )

    result = _run(pytester, f"--asyncspec-schedules={schedules}")

    result.assert_outcomes(failed=1)
    failure = _failure_of(result, "test_stuck")
    assert failure.splitlines()[1].startswith("deadlock at virtual time 0 s: 1 task(s) wait")
    assert not RUNNER_SOURCE.search(failure), failure


def test_full_trace_still_shows_where_the_loop_raised_a_deadlock(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(
        test_stuck="""\
        import asyncio

        async def test_stuck():
            await asyncio.Event().wait()
        """
    )

    result = _run(pytester, "--full-trace")

    result.assert_outcomes(failed=1)
    assert "run_until_complete" in _failure_of(result, "test_stuck")


TIMEOUTS = """\
import asyncio
import sys

import pytest

async def consumer(event):
    await event.wait()

async def test_wait_for():
    task = asyncio.create_task(consumer(asyncio.Event()), name="consumer")
    await asyncio.wait_for(task, 30)

@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is 3.11+")
async def test_timeout_block():
    async with asyncio.timeout(30):
        await asyncio.Event().wait()

async def test_legit_timeout():
    async def slow():
        await asyncio.sleep(60)

    await asyncio.wait_for(asyncio.create_task(slow(), name="slow"), 30)
"""


def test_a_timeout_that_ends_a_deadlock_says_so(pytester: pytest.Pytester) -> None:
    """wait_for and asyncio.timeout() ending a deadlock: the original TimeoutError,
    then a section naming the deadlock at the timeout's virtual instant.  A
    timeout beside a task sleeping toward its end (negative control) gets none."""
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(test_timeouts=TIMEOUTS)

    result = _run(pytester)

    timed_out = 2 if sys.version_info >= (3, 11) else 1
    result.assert_outcomes(failed=timed_out + 1, skipped=2 - timed_out)
    title = "asyncspec deadlock ended by a timeout"
    path = str(pytester.path / "test_timeouts.py")
    wait_for = _failure_of(result, "test_wait_for").split(" test_legit_timeout ")[0]
    assert "TimeoutError" in wait_for.split(title)[0]
    report = wait_for.split(title)[1]
    assert "at virtual time 30 s a timeout ended a deadlock: 2 task(s) waited" in report
    assert "task 'consumer' (consumer) awaits asyncio Event.wait()" in report
    assert f"    at {path}:7 in consumer" in report
    assert "a timer due at virtual time 30 s" in report
    if timed_out == 2:
        block = _failure_of(result, "test_timeout_block").split(" test_wait_for ")[0]
        assert title in block
        assert f"    at {path}:16 in test_timeout_block" in block.split(title)[1]
    legit = _failure_of(result, "test_legit_timeout").split(" test_timeout_block ")[0]
    assert "TimeoutError" in legit
    assert title not in legit
    assert failure_sections(result).count(title) == timed_out


def test_the_stall_budget_is_set_by_marker_ini_and_command_line(
    pytester: pytest.Pytester,
) -> None:
    """A stall of 1.5 virtual hours (a heartbeat that sets the Event after 5,400
    beats) fails under the default budget, passes under a 2 h one from the
    marker or the ini key, and the command line (off) wins over all."""
    pytester.makepyfile(
        test_long_wait="""\
        import asyncio
        import pytest

        async def slow_set(event):
            for _ in range(5400):
                await asyncio.sleep(1)
            event.set()

        async def test_default():
            event = asyncio.Event()
            asyncio.create_task(slow_set(event))
            await event.wait()

        @pytest.mark.asyncspec(stall_budget="2h")
        async def test_marked():
            event = asyncio.Event()
            asyncio.create_task(slow_set(event))
            await event.wait()
        """
    )
    pytester.makeini(VIRTUAL_INI)
    by_default = _run(pytester)
    by_default.assert_outcomes(passed=1, failed=1)
    assert "test_default - " in output_of(by_default)

    pytester.makeini(VIRTUAL_INI + "asyncspec_stall_budget = 7200\n")
    _run(pytester).assert_outcomes(passed=2)

    pytester.makeini(VIRTUAL_INI + "asyncspec_stall_budget = 30m\n")
    _run(pytester, "--asyncspec-stall-budget=off").assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("setting", "where", "value"),
    [
        ("stall_budget", "flag", "soon"),
        ("stall_budget", "ini", "-1h"),
        ("stall_budget", "flag", "0"),
        ("time_budget", "flag", "forever"),
        ("time_budget", "ini", "0"),
    ],
)
def test_a_bad_budget_is_a_usage_error(
    pytester: pytest.Pytester, setting: str, where: str, value: str
) -> None:
    ini = VIRTUAL_INI + (f"asyncspec_{setting} = {value}\n" if where == "ini" else "")
    pytester.makeini(ini)
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    flag = "--asyncspec-" + setting.replace("_", "-")
    args = [f"{flag}={value}"] if where == "flag" else []

    result = pytester.runpytest("-p", "no:cacheprovider", *args)

    assert_usage_error(
        result,
        f"*invalid {setting} '{value}'; expected a positive time in seconds, "
        "optionally with a unit (e.g. 3600, 90s, 30m, 1h, 2d) or 'off'*",
    )


def test_each_test_on_a_shared_loop_gets_its_own_budget(pytester: pytest.Pytester) -> None:
    """On a module-scoped loop, a test's marker budget does not outlive it: the
    next test, with the default budget, fails on the same 1.5 h stall."""
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(
        test_shared="""\
        import asyncio
        import pytest

        pytestmark = pytest.mark.asyncio(loop_scope="module")

        async def slow_set(event):
            for _ in range(5400):
                await asyncio.sleep(1)
            event.set()

        async def stall_for_an_hour_and_a_half():
            event = asyncio.Event()
            setter = asyncio.create_task(slow_set(event))
            await event.wait()
            await setter

        @pytest.mark.asyncspec(stall_budget="2h")
        async def test_first_with_two_hours():
            await stall_for_an_hour_and_a_half()

        async def test_second_with_the_default():
            await stall_for_an_hour_and_a_half()
        """
    )

    result = _run(pytester)

    result.assert_outcomes(passed=1, failed=1)
    failure = _failure_of(result, "test_second_with_the_default")
    assert re.match(r"livelock at virtual time \d+ s: for 3600 s", failure.splitlines()[1])


POLLS = """\
import asyncio
import pytest

async def poll_until(hours):
    loop = asyncio.get_running_loop()
    while loop.time() < hours * 3600:
        await asyncio.sleep(1)

async def test_forever():
    await poll_until(float("inf"))

async def test_thirty_hours():
    await poll_until(30)

@pytest.mark.asyncspec(time_budget="2d")
async def test_thirty_hours_marked():
    await poll_until(30)

async def test_a_thousand_hours_of_sleep():
    for _ in range(1000):
        await asyncio.sleep(3600)
"""


def test_a_poll_that_never_ends_fails_with_a_runaway_report_first(
    pytester: pytest.Pytester,
) -> None:
    """A poll with nothing blocked fails once a day of virtual time has run over
    more than 10,000 jumps, the runaway report first under its title; the
    marker's budget lets a 30-hour poll end; 1,000 one-hour sleeps (few long
    jumps) pass under the default."""
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(test_polls=POLLS)

    result = _run(pytester)

    result.assert_outcomes(passed=2, failed=2)
    path = str(pytester.path / "test_polls.py")
    forever = _failure_of(result, "test_forever").split(" test_thirty_hours ")[0]
    for failure in (forever, _failure_of(result, "test_thirty_hours")):
        lines = failure.splitlines()
        assert lines[1].startswith("virtual time ran away: the test has run 24.3 h"), failure
        assert f"at {path}:7 in poll_until fired 1000 time(s) in the last 1,000 jumps" in failure
        assert f"    at {path}:7 in poll_until" in failure
        assert not RUNNER_SOURCE.search(failure.split("RunawayTimeError")[0]), failure


def test_the_time_budget_is_set_by_ini_and_command_line(pytester: pytest.Pytester) -> None:
    """The ini key raises the budget for every test; the command line wins (off)."""
    pytester.makepyfile(test_polls=POLLS)
    pytester.makeini(VIRTUAL_INI + "asyncspec_time_budget = 31h\n")
    _run(pytester, "-k", "not forever").assert_outcomes(passed=3)

    pytester.makeini(VIRTUAL_INI + "asyncspec_time_budget = 1h\n")
    _run(pytester, "-k", "thirty_hours", "--asyncspec-time-budget=off").assert_outcomes(passed=2)


HEARTBEAT_TIMEOUTS = """\
import asyncio
import sys

import pytest

async def heartbeat():
    while True:
        await asyncio.sleep(1)

async def test_wait_for_beside_a_heartbeat():
    asyncio.create_task(heartbeat(), name="heartbeat")
    await asyncio.wait_for(asyncio.Event().wait(), 30)

@pytest.mark.skipif(sys.version_info < (3, 11), reason="TaskGroup is 3.11+")
async def test_task_group_child_times_out():
    asyncio.create_task(heartbeat(), name="heartbeat")

    async def child():
        await asyncio.wait_for(asyncio.Event().wait(), 30)

    async with asyncio.TaskGroup() as group:
        group.create_task(child(), name="child")
"""


def test_a_timeout_beside_a_heartbeat_says_which_wait_it_ended(
    pytester: pytest.Pytester,
) -> None:
    """The broker's case: a deadlock beside a heartbeat, ended by a timeout (and
    by a TaskGroup child's timeout, which reaches the test as an exception
    group).  Each failure gets the section, naming the heartbeat as the task
    on timers and the Event's waiter at its line."""
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(test_heartbeat_timeouts=HEARTBEAT_TIMEOUTS)

    result = _run(pytester)

    grouped = 1 if sys.version_info >= (3, 11) else 0
    result.assert_outcomes(failed=1 + grouped, skipped=1 - grouped)
    title = "asyncspec deadlock ended by a timeout"
    assert failure_sections(result).count(title) == 1 + grouped
    report = _failure_of(result, "test_wait_for_beside_a_heartbeat").split(title)[1]
    assert "at virtual time 30 s a timeout ended a wait that no timer could end" in report
    assert "while only timers woke the other task(s) ('heartbeat')" in report
    assert "awaits asyncio Event.wait()" in report
