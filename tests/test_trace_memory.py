"""The plugin keeps nothing alive that stock asyncio frees.

A task that raised is freed by stock asyncio once the exception has been
retrieved and the task dropped; with it go the exception's traceback, its
frames and their locals.  Every mode that records tasks (the blocking gate
alone, a full trace, leak tracking, exploration) must free them as early,
and an exception nobody retrieved must still be logged as stock logs it.
"""

from __future__ import annotations

import pytest
from pytester_helpers import STRICT_INI, output_of

#: Each mode's ini lines; "off" is the control (the plugin installed, nothing
#: recording).
MODES = {
    "off": "",
    "gate": "asyncspec_max_blocking = 0.5\n",
    "trace": "asyncspec_trace = on\n",
    "leaks": "asyncspec_leaks = warn\n",
    "gate_virtual": "asyncspec_clock = virtual\nasyncspec_max_blocking = 0.5\n",
    "explore": "asyncspec_clock = virtual\nasyncspec_schedules = 3\n",
}
#: Modes whose recorder also runs in pure Python (the step log's reference
#: implementation), beside the C accelerator where it is built.
PURE_PYTHON_MODES = ("gate", "trace")
FREED_MODES = [
    *(pytest.param(mode, False, id=mode) for mode in sorted(MODES)),
    *(pytest.param(mode, True, id=f"{mode}-pure-python") for mode in PURE_PYTHON_MODES),
]

FREED = """
import asyncio
import gc
import weakref


class Big:
    def __init__(self):
        self.payload = bytearray(1 << 20)


async def fails(box):
    big = Big()
    box.append(weakref.ref(big))
    await asyncio.sleep(0)
    raise ValueError("boom")


async def returns(box):
    big = Big()
    box.append(weakref.ref(big))
    await asyncio.sleep(0)
    return big


async def test_raised_task_is_freed():
    box = []
    task = asyncio.create_task(fails(box))
    try:
        await task
    except ValueError:
        pass
    task_ref = weakref.ref(task)
    del task
    await asyncio.sleep(0)
    gc.collect()
    assert task_ref() is None, "the task is still alive"
    assert box[0]() is None, "a local of the failed coroutine's frame is still alive"


async def test_result_is_freed():
    box = []
    task = asyncio.create_task(returns(box))
    assert isinstance(await task, Big)
    del task
    await asyncio.sleep(0)
    gc.collect()
    assert box[0]() is None, "the task's result is still alive"


async def test_cancelled_task_is_freed():
    box = []

    started = asyncio.Event()

    async def waits(box):
        big = Big()
        box.append(weakref.ref(big))
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(waits(box))
    await started.wait()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    del task
    await asyncio.sleep(0)
    gc.collect()
    assert box[0]() is None, "a local of the cancelled coroutine's frame is still alive"

"""

NEVER_RETRIEVED = """
import asyncio
import gc


async def fails():
    raise ValueError("nobody asked")


async def test_exception_never_retrieved():
    asyncio.create_task(fails())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    gc.collect()
"""


@pytest.mark.parametrize(("mode", "pure_python"), FREED_MODES)
def test_recording_keeps_no_task_objects_alive(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mode: str, pure_python: bool
) -> None:
    if pure_python:
        monkeypatch.setenv("PYTEST_ASYNCSPEC_PURE_PYTHON", "1")
    pytester.makeini(STRICT_INI + MODES[mode])
    pytester.makepyfile(test_freed=FREED)
    # In a process of its own, as a user runs it: nothing of this run holds on.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 0, output_of(result)
    result.assert_outcomes(passed=3)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_unretrieved_exception_is_still_logged(pytester: pytest.Pytester, mode: str) -> None:
    # Not filterwarnings = error: the log record is what is checked, and the
    # explorer's schedules each leave one.
    pytester.makeini(STRICT_INI.replace("filterwarnings = error\n", "") + MODES[mode])
    pytester.makepyfile(test_unretrieved=NEVER_RETRIEVED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "--log-level=ERROR")
    assert result.ret == 0, output_of(result)
    result.stdout.fnmatch_lines(["*Task exception was never retrieved*"])
    assert "ValueError: nobody asked" in output_of(result)


ENDED_TESTS = """
import asyncio
import gc
import weakref

from pytest_asyncspec.tracing.trace import Tracer

loops = []


async def worker(queue):
    while (item := await queue.get()) is not None:
        pass


async def test_one():
    queue = asyncio.Queue()
    task = asyncio.create_task(worker(queue))
    for item in range(20):
        await queue.put(item)
        await asyncio.sleep(0)
    await queue.put(None)
    await task
    loops.append(weakref.ref(asyncio.get_running_loop()))


test_two = test_three = test_one


def test_nothing_of_the_ended_tests_is_kept():
    gc.collect()
    # An explored test runs its body once per schedule, each on its own loop.
    assert len(loops) >= 3
    alive = [ref() for ref in loops if ref() is not None]
    assert alive == [], "an ended test's loop is still alive"
    tracers = [obj for obj in gc.get_objects() if isinstance(obj, Tracer)]
    assert tracers == [], f"{len(tracers)} tracers of ended tests are still alive"
"""


@pytest.mark.parametrize("mode", sorted(MODES))
def test_an_ended_test_leaves_nothing_behind(pytester: pytest.Pytester, mode: str) -> None:
    """pytest keeps every test item to the end of the run: what watched a
    test must not stay on it (its loop, tracer, step log, task table)."""
    pytester.makeini(STRICT_INI + MODES[mode])
    pytester.makepyfile(test_ended=ENDED_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    assert result.ret == 0, output_of(result)
    result.assert_outcomes(passed=4)


NEVER_AWAITED = """
import gc
import weakref


class Big:
    pass


async def takes(big):
    pass


async def test_dropped_coroutine_is_freed():
    big = Big()
    ref = weakref.ref(big)
    takes(big)  # never awaited: stock frees it, and its argument, at once
    del big
    gc.collect()
    assert ref() is None, "the never-awaited coroutine's argument is still alive"
"""


@pytest.mark.parametrize("mode", ["off", "leaks"])
def test_a_never_awaited_coroutine_is_not_kept(pytester: pytest.Pytester, mode: str) -> None:
    # pytest's own capture of a test's warnings keeps each warning's source
    # (here the coroutine) to the test's end; a suite that ignores the
    # RuntimeWarning has stock Python free it at once, and leak tracking,
    # which still reports it, must too.
    pytester.makeini(STRICT_INI.replace("filterwarnings = error\n", "") + MODES[mode])
    pytester.makepyfile(test_never_awaited=NEVER_AWAITED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "ignore::RuntimeWarning")
    assert result.ret == 0, output_of(result)
    result.assert_outcomes(passed=1, warnings=0 if mode == "off" else 1)
    if mode == "leaks":
        assert "coroutine 'takes' was never awaited" in output_of(result)
