"""The hang watch as a user meets it: a hung async test fails with the
pending-task report, without pytest-timeout, and the run goes on.

Inner runs that hang run in a subprocess with a limit (``timeout=``): without
the watch they would hang, and a segmentation fault shows as the exit code.
"""

from __future__ import annotations

import threading

import pytest
from pytester_helpers import STRICT_INI, assert_usage_error, failure_sections, line_of, output_of

HUNG = "asyncspec: the test hung: its event loop waited"
PENDING = "asyncspec pending tasks"
#: Real seconds an inner run may take before the outer test gives up on it.
LIMIT = 120

HUNG_TESTS = """\
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest


@pytest.fixture
async def server():
    served = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    yield served
    served.close()
    await served.wait_closed()
    Path("teardown-ran").write_text("yes")


async def waiter(event: asyncio.Event) -> None:
    await event.wait()  # waiter waits


@pytest.mark.asyncspec(clock="virtual")
async def test_beside_a_server(server) -> None:
    event = asyncio.Event()
    await asyncio.create_task(waiter(event), name="waiter")  # test waits


async def test_on_the_real_clock() -> None:
    await asyncio.Event().wait()  # real waits


def test_the_run_goes_on() -> None:
    pass
"""


def test_a_hung_test_fails_with_the_pending_tasks_without_pytest_timeout(
    pytester: pytest.Pytester,
) -> None:
    """A deadlock beside a listening server (virtual clock) and a bare one on
    the real clock each fail with every pending task, the line it waits at
    and what it waits for; the server fixture is torn down; the next test
    runs.  pytest-timeout is not loaded."""
    pytester.makeini(STRICT_INI + "asyncspec_hang_after = 0.2\n")
    path = pytester.makepyfile(test_hung=HUNG_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:timeout", timeout=LIMIT)

    result.assert_outcomes(failed=2, passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = failure_sections(result)
    assert text.count(HUNG) == 2, text
    assert f"{HUNG} 0.2 s of real time in its selector" in text
    beside, real = text.split("___ test_on_the_real_clock ___")
    assert "2 pending task(s):" in beside
    assert f"test_hung.py:{line_of(path, '# waiter waits')} in waiter" in beside
    assert f"test_hung.py:{line_of(path, '# test waits')} in test_beside_a_server" in beside
    assert "task 'waiter' (waiter) awaits asyncio Event.wait()" in beside
    assert "1 pending task(s):" in real
    assert f"test_hung.py:{line_of(path, '# real waits')} in test_on_the_real_clock" in real
    assert (pytester.path / "teardown-ran").read_text() == "yes"
    assert "Traceback" not in text


CORRECT_TESTS = """\
from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest

WAIT = 0.6


async def test_real_timer() -> None:
    await asyncio.sleep(WAIT)


async def test_executor_job() -> None:
    await asyncio.get_running_loop().run_in_executor(None, time.sleep, WAIT)


async def test_subprocess() -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", f"import time; time.sleep({WAIT})"
    )
    assert await child.wait() == 0


async def test_thread_calls_back() -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def work() -> None:
        time.sleep(WAIT)
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=work).start()
    await done.wait()


@pytest.mark.asyncspec(clock="virtual")
async def test_virtual_executor_job() -> None:
    await asyncio.get_running_loop().run_in_executor(None, time.sleep, WAIT)
"""


def test_tests_waiting_for_real_work_pass(pytester: pytest.Pytester) -> None:
    """Timers, executor jobs, subprocesses and threads that call back take
    longer than the span, and are never called hangs."""
    pytester.makeini(STRICT_INI + "asyncspec_hang_after = 0.1\n")
    pytester.makepyfile(test_correct=CORRECT_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:timeout", timeout=LIMIT)

    result.assert_outcomes(passed=5)
    assert HUNG not in output_of(result)


WITH_PYTEST_TIMEOUT = """\
from __future__ import annotations

import asyncio

import pytest


@pytest.mark.timeout(30, method="signal")
async def test_watch_first() -> None:
    await asyncio.Event().wait()  # watch first


@pytest.mark.timeout(1, method="signal")
@pytest.mark.asyncspec(hang_after="off")
async def test_watch_off() -> None:
    await asyncio.Event().wait()  # watch off


@pytest.mark.timeout(1, method="signal")
@pytest.mark.asyncspec(hang_after=60)
async def test_timeout_first() -> None:
    await asyncio.Event().wait()  # timeout first
"""


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGALRM"), reason="needs SIGALRM")
def test_with_pytest_timeout_whichever_fires_first_reports_once(
    pytester: pytest.Pytester,
) -> None:
    """With pytest-timeout too, the first to fire ends the test and the
    pending tasks are reported once: in the watch's failure, or in the
    ``asyncspec pending tasks`` section of pytest-timeout's (traced test)."""
    pytester.makeini(STRICT_INI + "asyncspec_hang_after = 0.2\n")
    path = pytester.makepyfile(test_both=WITH_PYTEST_TIMEOUT)
    result = pytester.runpytest_subprocess("--asyncspec-trace=on", timeout=LIMIT)

    result.assert_outcomes(failed=3)
    text = failure_sections(result)
    first, off = text.split("___ test_watch_off ___")
    off, timed = off.split("___ test_timeout_first ___")
    assert first.count(HUNG) == 1
    assert f"test_both.py:{line_of(path, '# watch first')} in test_watch_first" in first
    assert PENDING not in first
    assert "Timeout" not in first
    for part, marker in ((off, "# watch off"), (timed, "# timeout first")):
        assert HUNG not in part
        assert "Failed: Timeout (>1.0s) from pytest-timeout" in part
        assert part.count(PENDING) == 1
        assert f"test_both.py:{line_of(path, marker)} in test_" in part


@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf"])
def test_a_bad_span_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    """From the command line, the ini file or a marker: one clear line, no test run."""
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_one="async def test_one():\n    pass\n")
    expected = (
        f"invalid hang_after '{value}'; expected a positive number of seconds (e.g. 20) or 'off'"
    )
    assert_usage_error(
        pytester.runpytest(f"--asyncspec-hang-after={value}"),
        f"ERROR: --asyncspec-hang-after: {expected}",
    )
    pytester.makeini(STRICT_INI + f"asyncspec_hang_after = {value}\n")
    assert_usage_error(pytester.runpytest(), f"ERROR: ini key asyncspec_hang_after: {expected}")
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        test_one=f"import pytest\n\n\n@pytest.mark.asyncspec(hang_after={value!r})\n"
        "async def test_one():\n    pass\n"
    )
    assert_usage_error(
        pytester.runpytest(),
        f"ERROR: test_one.py::test_one: @pytest.mark.asyncspec: {expected}",
    )


# -- item 12: a hundred hangs diagnosed, no crash --------------------------------

STRESS_TESTS = """\
from __future__ import annotations

import asyncio
import os

import pytest

from pytest_asyncspec.tracing import step_log

HANGS = 50


async def waiter(event: asyncio.Event) -> None:
    await event.wait()


@pytest.fixture
async def server():
    served = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    yield served
    served.close()
    await served.wait_closed()


@pytest.mark.asyncspec(clock="virtual")
@pytest.mark.parametrize("n", range(HANGS))
async def test_virtual_hang(server, n: int) -> None:
    tasks = [asyncio.create_task(waiter(asyncio.Event())) for _ in range(n % 5 + 1)]
    await asyncio.gather(*tasks)


@pytest.mark.parametrize("n", range(HANGS))
async def test_real_hang(n: int) -> None:
    tasks = [asyncio.create_task(waiter(asyncio.Event())) for _ in range(n % 5 + 1)]
    await asyncio.gather(*tasks)


def test_recorder() -> None:
    assert step_log.ACCELERATED == (not os.environ.get("PYTEST_ASYNCSPEC_PURE_PYTHON"))
"""


@pytest.mark.parametrize("recorder", ["c", "python"])
def test_a_hundred_hangs_are_diagnosed_without_a_crash(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, recorder: str
) -> None:
    """100 hung tests, traced (the step recorder wraps every task), on both
    clocks: each is diagnosed from the watch's thread while the loop thread
    idles, and the process ends with pytest's failure code, not a signal."""
    from pytest_asyncspec.tracing import step_log

    if recorder == "c" and not step_log.ACCELERATED:
        pytest.skip("the C step recorder is not built here")
    if recorder == "python":
        monkeypatch.setenv("PYTEST_ASYNCSPEC_PURE_PYTHON", "1")
    else:
        monkeypatch.delenv("PYTEST_ASYNCSPEC_PURE_PYTHON", raising=False)
    pytester.makeini(STRICT_INI + "asyncspec_hang_after = 0.02\nasyncspec_trace = on\n")
    pytester.makepyfile(test_stress=STRESS_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:timeout", "-q", timeout=LIMIT)

    assert result.ret == pytest.ExitCode.TESTS_FAILED, output_of(result)[-3000:]
    result.assert_outcomes(failed=100, passed=1)
    assert failure_sections(result).count(HUNG) == 100
    assert "Fatal Python error" not in output_of(result)


def test_the_watch_thread_ends_with_the_run(pytester: pytest.Pytester) -> None:
    """One thread watches a run's tests, and it is gone when the run ends."""
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        test_one="""
import threading


async def test_async():
    pass


def test_the_watch_runs():
    names = [thread.name for thread in threading.enumerate()]
    assert names.count("asyncspec-hang-watch") >= 1, names
"""
    )
    before = set(threading.enumerate())
    result = pytester.runpytest("-p", "no:timeout")

    result.assert_outcomes(passed=2)
    left = [thread.name for thread in set(threading.enumerate()) - before]
    assert "asyncspec-hang-watch" not in left
