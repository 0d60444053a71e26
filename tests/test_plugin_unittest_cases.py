"""unittest's IsolatedAsyncioTestCase tests get the modes with the same
settings as the tests pytest-asyncio runs: the loop the settings choose for
asyncSetUp, the test, asyncTearDown and the async cleanups; the trace, the
blocking gate and leak checks, reported as for any async test; exploration
refused clearly.  The seam (an event loop policy for the test case's run,
or the class's loop_factory on 3.13) is tested on every Python version the
suite runs on (nox -s tests-3.10 ... tests-3.13)."""

from __future__ import annotations

import sys

import pytest
from pytester_helpers import (
    STRICT_INI,
    VIRTUAL_INI,
    assert_usage_error,
    failure_sections,
    line_of,
    output_of,
)

SHOW_LEAK_WARNINGS = ("-W", "default::pytest_asyncspec.plugin.hooks.AsyncspecLeakWarning")

#: Every part of a test case records the loop it ran on and the loop's time.
EVERY_PART = """
import asyncio
import contextlib
import unittest

SEEN = []


def seen(part):
    loop = asyncio.get_running_loop()
    SEEN.append((part, loop, loop.time()))


@contextlib.asynccontextmanager
async def resource():
    seen("enter")
    yield
    seen("exit")


class EveryPart(unittest.IsolatedAsyncioTestCase):
    def setUp(self):
        # Added first, so unittest runs it after every async cleanup.
        self.addCleanup(self.check)
        # unittest sets its loop as the current one before setUp.
        self.current = asyncio.get_event_loop()

    async def asyncSetUp(self):
        seen("asyncSetUp")
        await asyncio.sleep(10 * SCALE)
        self.addAsyncCleanup(self.async_cleanup)
        if hasattr(self, "enterAsyncContext"):  # 3.11+
            await self.enterAsyncContext(resource())

    async def async_cleanup(self):
        seen("cleanup")
        await asyncio.sleep(1 * SCALE)

    async def test_method(self):
        seen("test")
        await asyncio.sleep(3600 * SCALE)

    async def asyncTearDown(self):
        seen("asyncTearDown")
        await asyncio.sleep(5 * SCALE)

    def check(self):
        loops = {loop for _, loop, _ in SEEN}
        assert loops == {self.current}, SEEN
        (loop,) = loops
        assert type(loop).__name__ == LOOP_TYPE, type(loop)
        times = {part: time - SEEN[0][2] for part, _, time in SEEN}
        if VIRTUAL:
            expected = {"asyncSetUp": 0, "test": 10, "asyncTearDown": 3610, "cleanup": 3615}
            if "enter" in times:
                expected.update(enter=10, exit=3615)  # cleanups run last in, first out
            assert times == expected, times
"""


def _every_part(loop_type: str, virtual: bool) -> str:
    # The stock run sleeps for no time: it would take an hour.
    scale = 1 if virtual else 0
    return EVERY_PART + f"\nLOOP_TYPE = {loop_type!r}\nVIRTUAL = {virtual}\nSCALE = {scale}\n"


def test_every_part_of_a_test_case_runs_on_the_virtual_clock(pytester: pytest.Pytester) -> None:
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(test_every_part=_every_part("ExploringLoop", virtual=True))
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_without_a_setting_the_test_case_keeps_its_own_loop_and_policy(
    pytester: pytest.Pytester,
) -> None:
    """The stock run of the same suite: nothing of the plugin is in the way."""
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        test_every_part=_every_part("_UnixSelectorEventLoop", virtual=False)
        + """

class Untouched(unittest.IsolatedAsyncioTestCase):
    async def test_policy(self):
        assert type(asyncio.get_event_loop_policy()) is asyncio.DefaultEventLoopPolicy
"""
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


SETTINGS_FROM_EVERYWHERE = """
import asyncio
import unittest

import pytest


async def virtual():
    # By the loop's type: on the stock loop an hour's sleep takes an hour.
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__name__ == "ExploringLoop"


@pytest.mark.asyncspec(clock="virtual")
class MarkedClass(unittest.IsolatedAsyncioTestCase):
    async def test_class_marker(self):
        assert await virtual()

    @pytest.mark.asyncspec(clock="real")
    async def test_method_marker_wins(self):
        assert type(asyncio.get_running_loop()).__name__ == "_UnixSelectorEventLoop"


class Unmarked(unittest.IsolatedAsyncioTestCase):
    async def test_from_the_run(self):
        assert await virtual() is RUN_IS_VIRTUAL

    @pytest.mark.asyncspec(clock="virtual")
    async def test_method_marker(self):
        assert await virtual()
"""


@pytest.mark.parametrize(
    ("ini", "args", "run_is_virtual"),
    [
        (STRICT_INI, (), False),
        (VIRTUAL_INI, (), True),
        (STRICT_INI, ("--asyncspec-clock=virtual",), True),
    ],
    ids=["default", "ini", "command-line"],
)
def test_settings_come_from_markers_ini_and_command_line_as_for_any_async_test(
    pytester: pytest.Pytester, ini: str, args: tuple[str, ...], run_is_virtual: bool
) -> None:
    pytester.makeini(ini)
    pytester.makepyfile(
        test_settings_reach=SETTINGS_FROM_EVERYWHERE + f"\nRUN_IS_VIRTUAL = {run_is_virtual}\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    if args:
        # The command line wins over every marker, as for pytest-asyncio's tests.
        result.assert_outcomes(passed=3, failed=1)
        result.stdout.fnmatch_lines(["FAILED *::MarkedClass::test_method_marker_wins*"])
    else:
        result.assert_outcomes(passed=4)


def test_the_manual_clock_is_advanced_by_a_loop_clock_the_test_case_makes(
    pytester: pytest.Pytester,
) -> None:
    """unittest's methods take no fixtures: the test case makes the
    ``LoopClock`` that ``asyncspec_clock`` would give, and advances it."""
    pytester.makeini(STRICT_INI + "asyncspec_clock = manual\n")
    pytester.makepyfile(
        test_manual_case="""
        import asyncio
        import unittest

        from pytest_asyncspec import LoopClock


        class Manual(unittest.IsolatedAsyncioTestCase):
            async def test_ticks(self):
                loop = asyncio.get_running_loop()
                ticks = []

                async def tick():
                    while True:
                        await asyncio.sleep(60)
                        ticks.append(loop.time())

                task = loop.create_task(tick())
                await asyncio.sleep(0)
                started = loop.time()
                await LoopClock().advance(150)
                assert ticks == [started + 60, started + 120]
                assert loop.time() == started + 150
                task.cancel()
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


BLOCKING = """
import asyncio
import time
import unittest


class Blocking(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        await asyncio.sleep(1)

    async def test_blocks(self):
        time.sleep(0.5)  # blocks the loop

    async def test_blocks_and_fails(self):
        time.sleep(0.5)  # blocks before failing
        assert 1 == 2

    async def test_sleeps(self):
        await asyncio.sleep(0.5)
"""


def test_the_blocking_gate_fails_a_test_case_naming_the_blocking_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(VIRTUAL_INI + "asyncspec_max_blocking = 0.1\n")
    path = pytester.makepyfile(test_blocking_case=BLOCKING)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    blocks = line_of(path, "blocks the loop")
    result.stdout.fnmatch_lines(
        [
            "*_ Blocking.test_blocks _*",
            "1 task step(s) held the event loop longer than max_blocking=0.1 s during the test:",
            "",
            "Task * blocked the event loop for 0.5 s (virtual time, in 1 blocking time.sleep() "
            "call; threshold 0.1 s).",
            f"Blocking call: */test_blocking_case.py:{blocks} in *test_blocks",
        ]
    )
    sections = failure_sections(result)
    # The test's own failure stands; its blocking step is a section beside it.
    failing = sections.split("_ Blocking.test_blocks_and_fails _", 1)[1]
    assert "E       assert 1 == 2" in failing
    assert "asyncspec blocking calls" in failing
    assert f":{line_of(path, 'blocks before failing')} in " in failing
    # The run summary lists both, as for any async test.
    result.stdout.fnmatch_lines(
        [
            "*asyncspec: blocking places*",
            f"test_blocking_case.py::Blocking::test_blocks: task * at "
            f"test_blocking_case.py:{blocks} in *: 1 step, worst 0.5 s (virtual time)",
        ]
    )


LEAKING = """
import asyncio
import unittest


class Leaking(unittest.IsolatedAsyncioTestCase):
    async def test_leaks(self):
        asyncio.get_running_loop().create_task(asyncio.sleep(100))  # left running

    async def test_leaks_and_fails(self):
        asyncio.get_running_loop().create_task(asyncio.sleep(100))
        assert 1 == 2

    async def test_cleans_up(self):
        task = asyncio.get_running_loop().create_task(asyncio.sleep(100))
        self.addAsyncCleanup(self.cancel, task)

    async def cancel(self, task):
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
"""


def test_leaks_are_an_error_at_teardown_and_not_judged_for_a_failed_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(VIRTUAL_INI + "asyncspec_leaks = error\n")
    path = pytester.makepyfile(test_leaking_case=LEAKING)
    result = pytester.runpytest("-p", "no:cacheprovider")
    # On 3.10 unittest's own long-lived task runs the whole test case: not a leak.
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at teardown of Leaking.test_leaks _*",
            "1 task(s) still pending after the test's teardown *",
            "task * (sleep) * is still pending; *",
            f"  created at */test_leaking_case.py:{line_of(path, 'left running')} "
            "* during the test",
        ]
    )
    assert "teardown of Leaking.test_leaks_and_fails" not in output_of(result)


def test_leaks_are_a_warning_under_leaks_warn(pytester: pytest.Pytester) -> None:
    pytester.makeini(VIRTUAL_INI + "asyncspec_leaks = warn\n")
    pytester.makepyfile(test_leaking_case=LEAKING)
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "not fails", *SHOW_LEAK_WARNINGS)
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        ["*AsyncspecLeakWarning: 1 task(s) still pending after the test's teardown*"]
    )


def test_a_traced_test_case_shows_its_timeline_and_writes_its_trace_file(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(VIRTUAL_INI + "asyncspec_trace = on\n")
    pytester.makepyfile(
        test_traced_case="""
        import asyncio
        import unittest


        class Traced(unittest.IsolatedAsyncioTestCase):
            async def test_fails(self):
                await asyncio.gather(asyncio.sleep(1), asyncio.sleep(2))
                assert 1 == 2
        """
    )
    traces = pytester.path / "traces"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--asyncspec-trace-dir={traces}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- asyncspec timeline -*"])
    assert len(list(traces.glob("*.json"))) == 1


def test_a_deadlock_is_reported_as_for_any_async_test(pytester: pytest.Pytester) -> None:
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(
        test_deadlocked_case="""
        import asyncio
        import unittest


        class Deadlocked(unittest.IsolatedAsyncioTestCase):
            async def test_waits_for_ever(self):
                await asyncio.get_running_loop().create_future()

            async def test_next(self):
                await asyncio.sleep(1)

            async def test_times_out(self):
                fut = asyncio.get_running_loop().create_future()
                await asyncio.wait_for(fut, 10)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    # On 3.10 unittest's teardown of its loop waits for the deadlocked test
    # too, and is reported as a second error of the same test.
    outcomes = result.parseoutcomes()
    assert (outcomes["passed"], outcomes["failed"]) == (1, 2), output_of(result)
    result.stdout.fnmatch_lines(
        [
            "*- asyncspec deadlock ended by a timeout -*",
            "at virtual time 10 s a timeout ended a deadlock: 1 task(s) waited, *",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ Deadlocked.test_waits_for_ever _*",
            "deadlock at virtual time 0 s: 1 task(s) wait, no timer is scheduled, *",
            "task * awaits a future that nothing will complete (Future)",
            "DeadlockError (--full-trace shows where the loop raised it)",
        ]
    )
    # The loop is shut down either way: nothing of the test outlives it.
    assert "unclosed" not in output_of(result)


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="3.10's unittest awaits every part from one task of its own: not watched",
)
def test_a_hung_test_case_is_ended_by_the_hang_watch(pytester: pytest.Pytester) -> None:
    pytester.makeini(VIRTUAL_INI + "asyncspec_hang_after = 0.5\n")
    pytester.makepyfile(
        test_hung_case="""
        import asyncio
        import unittest


        class Hung(unittest.IsolatedAsyncioTestCase):
            async def test_waits_beside_a_server(self):
                server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
                self.addAsyncCleanup(self.close, server)
                await asyncio.Event().wait()  # nothing will ever connect

            async def close(self, server):
                server.close()
                await server.wait_closed()

            async def test_next(self):
                await asyncio.sleep(1)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ Hung.test_waits_beside_a_server _*",
            "asyncspec: the test hung: its event loop waited 0.5 s of real time in its selector*",
            "  task * (Hung.test_waits_beside_a_server) awaits asyncio Event.wait(): a Future",
        ]
    )


EXPLORED = """
import asyncio
import unittest

import pytest


class Explored(unittest.IsolatedAsyncioTestCase):
    async def test_twice(self):
        await asyncio.sleep(1)


async def test_explored():
    await asyncio.sleep(1)
"""


def test_exploration_asked_in_a_marker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        test_explored_case=EXPLORED.replace(
            "class Explored", "@pytest.mark.asyncspec(schedules=5)\nclass Explored"
        )
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert_usage_error(
        result,
        "ERROR: test_explored_case.py::Explored::test_twice: exploration (schedules=5 from "
        "marker) reorders the tasks of tests that pytest-asyncio runs, and "
        "unittest.IsolatedAsyncioTestCase runs this one on a loop of its own *",
    )


def test_exploration_of_the_whole_run_names_the_test_cases_it_skips(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI + "asyncspec_schedules = 5\n")
    pytester.makepyfile(test_explored_case=EXPLORED)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "test_explored_case.py::Explored::test_twice: ran once, not explored: "
            "unittest.IsolatedAsyncioTestCase runs it*"
        ]
    )


THE_SEAM = """
import asyncio
import threading
import unittest

BEFORE = asyncio.get_event_loop_policy()


class Seam(unittest.IsolatedAsyncioTestCase):
    async def test_the_test_case_s_own_loop_is_the_chosen_one(self):
        assert type(asyncio.get_running_loop()).__name__ == "ExploringLoop"

    async def test_another_thread_s_loop_is_the_stock_one(self):
        made = []
        thread = threading.Thread(target=lambda: made.append(asyncio.new_event_loop()))
        thread.start()
        thread.join()
        assert type(made[0]).__name__ == "_UnixSelectorEventLoop"
        made[0].close()

    def test_asyncio_run_in_a_sync_method_is_the_stock_loop(self):
        async def which():
            return type(asyncio.get_running_loop()).__name__

        assert asyncio.run(which()) == "_UnixSelectorEventLoop"


def test_the_policy_is_put_back_after_each_test_case():
    assert asyncio.get_event_loop_policy() is BEFORE
"""


def test_the_seam_is_the_test_case_s_loop_only_and_only_during_its_run(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(test_seam_scope=THE_SEAM)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=4)


OWN_POLICY = """
import asyncio
import unittest


class OwnLoop(asyncio.SelectorEventLoop):
    pass


class OwnPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self):
        return OwnLoop()


asyncio.set_event_loop_policy(OwnPolicy())


class WithOwnPolicy(unittest.IsolatedAsyncioTestCase):
    async def test_on_own_loop(self):
        assert type(asyncio.get_running_loop()) is OwnLoop
        await asyncio.sleep(0)
"""


def test_a_project_s_own_policy_is_kept_on_the_real_clock_and_refused_on_the_virtual(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI + "asyncspec_trace = on\n")
    pytester.makepyfile(test_own_policy=OWN_POLICY)
    # In a process of its own: the module sets the policy of the process.
    # Real clock: the project's loop, traced.
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--asyncspec-clock=virtual")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_own_policy.py::WithOwnPolicy::test_on_own_loop: asks for clock=virtual "
            "(command line), but the event loop policy in force, test_own_policy.OwnPolicy, "
            "makes this test case's loop, and asyncspec cannot put its clock on it*"
        ]
    )


OWN_FACTORY = """
import asyncio
import unittest

import pytest


class OwnLoop(asyncio.SelectorEventLoop):
    pass


class StockFactory(unittest.IsolatedAsyncioTestCase):
    loop_factory = asyncio.EventLoop

    async def test_on_the_virtual_clock(self):
        assert type(asyncio.get_running_loop()).__name__ == "ExploringLoop"


@pytest.mark.asyncspec(clock="real", trace=True)
class KeptFactory(unittest.IsolatedAsyncioTestCase):
    loop_factory = OwnLoop

    async def test_on_own_loop(self):
        assert type(asyncio.get_running_loop()) is OwnLoop
"""


@pytest.mark.skipif(sys.version_info < (3, 13), reason="loop_factory on the class is 3.13's")
def test_a_class_s_loop_factory_is_replaced_only_when_stock(pytester: pytest.Pytester) -> None:
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(test_own_factory=OWN_FACTORY)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    pytester.makepyfile(
        test_own_factory=OWN_FACTORY.replace('clock="real", trace=True', "trace=True")
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert_usage_error(
        result,
        "ERROR: test_own_factory.py::KeptFactory::test_on_own_loop: asks for clock=virtual "
        "(ini), but its class sets loop_factory = test_own_factory.OwnLoop, which asyncspec "
        "cannot put its clock on *",
    )


def test_under_xdist_the_gate_s_report_reaches_the_controller(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(VIRTUAL_INI + "asyncspec_max_blocking = 0.1\n")
    pytester.makepyfile(test_blocking_case=BLOCKING)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:benchmark", "-n", "2"
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        ["*asyncspec: blocking places*", "test_blocking_case.py::Blocking::test_blocks: *"]
    )
