"""An explored test's fixtures: each schedule is a full run of the test.

Function-scoped fixtures (sync and async, plain and generator) are set up
before each schedule and torn down after its body, through pytest's own
machinery; the body runs in a fresh copy of the context; a fixture's error
is its schedule's failure; nothing of ours reaches pytest's setup state.

Every test runs a small pytest session inside ``pytester``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pytester_helpers import STRICT_INI, output_of

import pytest_asyncspec
from pytest_asyncspec.exploration.replay_token import ReplayToken

TOKEN_FLAG = "--asyncspec-replay="


def token_of(result: pytest.RunResult) -> str:
    lines = [line for line in result.outlines if line.startswith("replay: pytest ")]
    assert len(lines) == 1, output_of(result)
    # The token is one shell word; the run's own options may follow it.
    return lines[0].split(TOKEN_FLAG, 1)[1].split()[0]


# -- set up and torn down per schedule ------------------------------------------

EVERY_KIND = """
import asyncio

import pytest

LOG = []


@pytest.fixture
def plain():
    LOG.append("plain up")
    return "plain"


@pytest.fixture
def generator():
    LOG.append("generator up")
    yield "generator"
    LOG.append("generator down")


@pytest.fixture
async def coroutine():
    LOG.append("coroutine up")
    await asyncio.sleep(0)
    return "coroutine"


@pytest.fixture
async def async_generator(generator):
    LOG.append("async_generator up")
    await asyncio.sleep(0)
    yield generator
    await asyncio.sleep(0)
    LOG.append("async_generator down")


@pytest.fixture(params=["a", "b"])
def letter(request):
    request.addfinalizer(lambda: LOG.append(f"letter {request.param} down"))
    return request.param


@pytest.mark.asyncspec(schedules=5)
async def test_body(plain, generator, coroutine, async_generator, letter, request):
    assert (plain, generator, coroutine, async_generator) == (
        "plain", "generator", "coroutine", "generator"
    )
    request.addfinalizer(lambda: LOG.append("body's finalizer"))
    LOG.append(f"body {letter}")
    await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))


def test_every_schedule_was_a_full_run():
    one_run = [
        "plain up", "generator up", "coroutine up", "async_generator up", "body {letter}",
        "body's finalizer", "letter {letter} down", "async_generator down", "generator down",
    ]
    expected = []
    for letter in "ab":
        for _ in range(5):
            expected += [line.format(letter=letter) for line in one_run]
    assert LOG == expected
"""


def test_function_fixtures_of_every_kind_are_set_up_and_torn_down_per_schedule(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_kinds=EVERY_KIND)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=3)


WIDER_SCOPES = """
import asyncio

import pytest

SETUPS = {"module": 0, "function": 0}


@pytest.fixture(scope="module")
def shared():
    SETUPS["module"] += 1
    return []


@pytest.fixture
def own(shared):
    SETUPS["function"] += 1
    return []


@pytest.mark.asyncspec(schedules=12)
async def test_body(shared, own, tmp_path):
    shared.append(1)
    own.append(1)
    assert own == [1]
    assert not any(tmp_path.iterdir())  # a fresh directory per schedule
    (tmp_path / "mine").write_text("x")
    await asyncio.sleep(0)


def test_after(shared):
    assert SETUPS == {"module": 1, "function": 12}
    assert shared == [1] * 12
"""


def test_wider_scoped_fixtures_are_set_up_once_function_ones_per_schedule(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_scopes=WIDER_SCOPES)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=2)


# -- a fixture's object that starts a task in the body ---------------------------

SCHEDULER = """
import asyncio

import pytest


class Scheduler:
    \"\"\"Runs spawned jobs on a helper task that the first spawn() starts.\"\"\"

    def __init__(self):
        self.jobs = asyncio.Queue()
        self.helper = None
        self.done = []

    def spawn(self, job):
        if self.helper is None:
            self.helper = asyncio.get_running_loop().create_task(self._run())
        self.jobs.put_nowait(job)

    async def _run(self):
        while True:
            job = await self.jobs.get()
            if job is None:
                return
            self.done.append(await job())

    async def close(self):
        if self.helper is not None:
            self.jobs.put_nowait(None)
            await self.helper


@pytest.fixture
async def scheduler():
    sched = Scheduler()
    yield sched
    await sched.close()
    assert sched.done == [1, 1]


async def job():
    await asyncio.sleep(0)
    return 1


@pytest.mark.asyncspec(schedules=30)
async def test_spawn(scheduler):
    scheduler.spawn(job)
    scheduler.spawn(job)
    await asyncio.sleep(0)


@pytest.mark.asyncspec(schedules=30)
async def test_closed_in_the_body(scheduler):
    scheduler.spawn(job)
    scheduler.spawn(job)
    await scheduler.close()
"""

NEXT_MODULE = """
def test_first_of_the_next_module():
    pass
"""


def test_a_task_a_fixture_object_starts_in_the_body_is_its_teardowns_to_end(
    pytester: pytest.Pytester,
) -> None:
    """The explorer cancelled the scheduler's helper before the fixture's
    teardown awaited it: the teardown got CancelledError, a BaseException,
    which left pytest's setup state half torn down, and the next module's
    first test errored with "previous item was not torn down properly"."""
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_a_scheduler=SCHEDULER, test_b_next=NEXT_MODULE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert "not torn down properly" not in output_of(result)


# -- errors of fixtures ----------------------------------------------------------

RACY_TEARDOWN = """
import asyncio

import pytest


@pytest.fixture
async def ledger():
    book = {"balance": 0}
    yield book
    # The body's two deposits must both have landed.
    assert book["balance"] == 2, book


async def deposit(book, steps):
    await asyncio.sleep(0.01)
    for _ in range(steps):
        await asyncio.sleep(0)
    seen = book["balance"]
    await asyncio.sleep(0)
    book["balance"] = seen + 1


@pytest.mark.asyncspec(schedules=200)
async def test_deposits(ledger):
    await asyncio.gather(deposit(ledger, 0), deposit(ledger, 2))
"""


def test_a_fixture_teardown_error_is_its_schedules_failure_with_a_token(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_racy=RACY_TEARDOWN, test_z_next=NEXT_MODULE)
    found = pytester.runpytest("-p", "no:cacheprovider", "--asyncspec-seed=1")
    found.assert_outcomes(failed=1, passed=1)
    found.stdout.fnmatch_lines(["*AssertionError: {'balance': 1}*", "schedule * of 200 failed (*)"])
    token = token_of(found)
    assert ReplayToken.decode(token).deviations
    replayed = pytester.runpytest("-p", "no:cacheprovider", f"{TOKEN_FLAG}{token}")
    replayed.assert_outcomes(failed=1, passed=1)
    replayed.stdout.fnmatch_lines(["*{'balance': 1}*", "replayed schedule (*) failed"])


SETUP_FAILS_LATER = """
import asyncio

import pytest

RUNS = []


@pytest.fixture
async def connection():
    RUNS.append(1)
    if len(RUNS) == 3:
        raise ConnectionError("the third connection is refused")
    await asyncio.sleep(0)
    return object()


@pytest.mark.asyncspec(schedules=10)
async def test_uses_it(connection):
    await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))
"""


def test_a_fixture_setup_error_in_a_later_schedule_is_that_schedules_failure(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_setup=SETUP_FAILS_LATER, test_z_next=NEXT_MODULE)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        ["*ConnectionError: the third connection is refused*", "schedule 3 of 10 failed (*)"]
    )
    assert "not torn down properly" not in output_of(result)


CANCELLED_TEARDOWN = """
import asyncio

import pytest


@pytest.fixture
async def stubborn():
    yield
    raise asyncio.CancelledError()


@pytest.mark.asyncspec(schedules=4)
async def test_body(stubborn):
    await asyncio.sleep(0)
"""


def test_a_teardown_raising_cancelled_error_fails_its_test_and_no_other(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_a_cancelled=CANCELLED_TEARDOWN, test_b_next=NEXT_MODULE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*CancelledError*", "schedule 1 of 4 failed (*)"])
    assert "not torn down properly" not in output_of(result)


# -- what each run starts from ---------------------------------------------------

FRESH_STATE = """
import asyncio
import contextvars
import logging

import pytest

USER = contextvars.ContextVar("user", default="nobody")
REQUEST = contextvars.ContextVar("request_id", default=0)
COUNTER = iter(range(1, 100))


@pytest.fixture
async def request_id():
    REQUEST.set(next(COUNTER))
    return REQUEST.get()


@pytest.mark.asyncspec(schedules=10)
async def test_body(request_id, caplog, capsys):
    assert USER.get() == "nobody"  # the last schedule's set() is gone
    assert REQUEST.get() == request_id  # the fixture's own, this schedule
    USER.set("alice")
    assert caplog.records == []
    logging.getLogger("app").warning("once per run")
    assert len(caplog.records) == 1
    print("hello")
    assert capsys.readouterr().out == "hello\\n"
    await asyncio.sleep(0)
"""


def test_each_schedule_starts_from_a_fresh_context_and_fresh_capture_fixtures(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_fresh=FRESH_STATE)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


SKIPPED_MID_WAY = """
import asyncio

import pytest

DOWN = []


@pytest.fixture
async def resource():
    yield
    DOWN.append(1)


@pytest.mark.asyncspec(schedules=10)
async def test_skips(resource):
    await asyncio.sleep(0)
    pytest.skip("not today")


def test_torn_down_once():
    assert DOWN == [1]
"""


def test_a_skip_in_the_body_tears_the_fixtures_down_once(pytester: pytest.Pytester) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_skip=SKIPPED_MID_WAY, test_z_next=NEXT_MODULE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(skipped=1, passed=2)


# -- pytest-aiohttp's usual patterns ----------------------------------------------

AIOHTTP_APP = """
import asyncio

import aiohttp
import pytest
from aiohttp import web

STOP = web.AppKey("stop", asyncio.Event)


async def watcher(app):
    await app[STOP].wait()


async def background(app):
    # Started with the app, ended by its cleanup: the cleanup awaits it.
    app[STOP] = asyncio.Event()
    task = asyncio.create_task(watcher(app))
    yield
    app[STOP].set()
    await task


async def hello(request):
    await asyncio.sleep(0.01)
    return web.Response(text="hi")


def make_app():
    app = web.Application()
    app.cleanup_ctx.append(background)
    app.router.add_get("/", hello)
    return app


@pytest.mark.asyncspec(schedules=10)
async def test_client_made_in_the_body(aiohttp_client):
    client = await aiohttp_client(make_app())
    response = await client.get("/")
    assert await response.text() == "hi"


@pytest.fixture
async def client(aiohttp_client):
    return await aiohttp_client(make_app(), timeout=aiohttp.ClientTimeout(total=2))


@pytest.mark.asyncspec(schedules=10)
async def test_client_from_a_fixture(client):
    # A real server on 127.0.0.1, on the test's loop.
    for _ in range(3):
        response = await client.get("/")
        assert await response.text() == "hi"
"""


def test_pytest_aiohttp_clients_and_their_apps_cleanups_explore(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The explorer cancelled the app's background task and the server's
    tasks after each schedule: the client made in the body was closed at the
    end, and the app's cleanup awaiting its task got CancelledError; a client
    from a fixture, set up once, timed out on schedule 2 against a server
    whose tasks were gone."""
    # The subprocess imports this very plugin (a worktree's, when run from one).
    plugin_root = str(Path(pytest_asyncspec.__file__).resolve().parents[1])
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([plugin_root, os.environ.get("PYTHONPATH", "")])
    )
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_a_app=AIOHTTP_APP, test_b_next=NEXT_MODULE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    text = output_of(result)
    assert "TimeoutError" not in text
    assert "waited on real work" not in text  # the server is on the test's own loop


SLOPPY_FIXTURE = """
import asyncio

import pytest


async def forever():
    await asyncio.Event().wait()


@pytest.fixture
async def poller():
    # Started here, never stopped: a normal run's loop cancels it at its end.
    return asyncio.get_running_loop().create_task(forever())


@pytest.mark.asyncspec(schedules=10, leaks="off")
async def test_body(poller):
    assert len(asyncio.all_tasks()) == 2  # this run's body and poller, no other
    await asyncio.sleep(0)
"""


def test_a_task_a_fixture_leaves_running_ends_with_its_schedule(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_sloppy=SLOPPY_FIXTURE)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


SHARED_LOOP = """
import asyncio

import pytest
import pytest_asyncio

pytestmark = pytest.mark.asyncio(loop_scope="module")
TICKS = []


async def ticker():
    while True:
        TICKS.append(1)
        await asyncio.sleep(1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service():
    task = asyncio.get_running_loop().create_task(ticker(), name="service")
    yield task
    task.cancel()


@pytest_asyncio.fixture(loop_scope="module")
async def session(service):
    yield {"service": service}


@pytest.mark.asyncspec(schedules=8)
async def test_uses_both(session):
    assert not session["service"].done()  # a module fixture's task outlives schedules
    await asyncio.sleep(0)


async def test_after():
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "service" and t.done()]
"""


def test_on_a_shared_loop_only_the_runs_own_tasks_are_cancelled(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_shared=SHARED_LOOP)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=2)


BOTH_FAIL = """
import asyncio

import pytest


@pytest.fixture
async def strict():
    yield
    raise RuntimeError("teardown found a mess")


@pytest.mark.asyncspec(schedules=3)
async def test_body(strict):
    await asyncio.sleep(0)
    assert False, "the body's own failure"
"""


def test_a_teardown_error_after_a_failing_body_is_not_lost(pytester: pytest.Pytester) -> None:
    """The body's failure is the schedule's; its teardown's error used to be
    dropped without a word (pytest reports both in a normal run)."""
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_both=BOTH_FAIL, test_z_next=NEXT_MODULE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*the body's own failure*",
            "E * the tear-down after it raised too: RuntimeError: teardown found a mess",
        ]
    )


# -- what a schedule's fixtures start: attributed to the call ---------------------

SERVICE_PER_SCHEDULE = """
import asyncio
import time

import pytest


async def work() -> None:
    await asyncio.sleep(0)
    time.sleep(0.1)  # the worker blocks


async def forever() -> None:
    await asyncio.sleep(3600)


@pytest.fixture
async def service():
    task = asyncio.create_task(work(), name="worker")
    yield task
    await task


@pytest.fixture
async def forgetful():
    asyncio.create_task(forever(), name="forgotten")
    yield


async def test_blocks(service) -> None:
    await asyncio.sleep(0.01)


@pytest.mark.allow_leaks("{rule}")
async def test_leaks(forgetful) -> None:
    await asyncio.sleep(0.01)
"""


def test_a_schedules_fixture_tasks_are_the_calls_and_named_by_their_fixture(
    pytester: pytest.Pytester,
) -> None:
    """The first schedule's fixtures are set up by pytest's setup, the later
    ones' inside the call: the worker a fixture starts each schedule blocks
    at one place, reported once for the call with the schedules and where
    each run's task came from; a task a schedule's fixture leaves running is
    a leak told with its fixture, unless an allow_leaks marker names it."""
    pytester.makeini(
        STRICT_INI + "asyncspec_clock = virtual\nasyncspec_max_blocking = 0.05\n"
        "asyncspec_leaks = error\nasyncspec_schedules = 3\n"
    )
    pytester.makepyfile(test_service=SERVICE_PER_SCHEDULE.format(rule="nothing.here"))
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(failed=1, passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "3 task step(s) held the event loop longer than max_blocking=0.05 s during the test, "
            "at 1 place(s):",
            "Blocked here 3 steps in 3 schedules, *",
            "Task 'worker' (work) blocked the event loop for 0.1 s *",
            "First in schedule 1; replay it with: pytest *",
            "The task, one per run, was created during setup (fixture 'service') or during "
            "the test (fixture 'service').",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "1 task(s) still pending when a schedule's run of the test ended (in 3 schedule(s)*",
            "task 'forgotten' (forever) *",
            "  created at *test_service.py:* during setup (fixture 'forgetful')",
        ]
    )
    pytester.makepyfile(test_service=SERVICE_PER_SCHEDULE.format(rule="test_service.forever"))
    allowed = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly", "-k", "leaks")
    allowed.assert_outcomes(passed=1)
    assert "never fired" not in output_of(allowed)
