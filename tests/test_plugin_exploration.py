"""Schedule exploration as a user meets it: markers and flags, the failure
report, replay tokens, the failure store, the summary, xdist and bad input.

Every test runs a small pytest session inside ``pytester``.
"""

from __future__ import annotations

import re

import pytest
from pytester_helpers import (
    NO_BENCHMARK,
    STRICT_INI,
    assert_usage_error,
    failure_sections,
    output_of,
)

from pytest_asyncspec.exploration.replay_token import plugin_version

# A box office with one seat: buyers arrive together, one parses its request
# one step longer.  Stock order sells one ticket; another order sells two.
BOX_OFFICE = """\
import asyncio

import pytest

LOCKED = {locked}


class Office:
    def __init__(self):
        self.seats = 1
        self.sold = 0
        self.lock = asyncio.Lock()

    async def buy(self, parse_steps):
        await asyncio.sleep(0.01)
        for _ in range(parse_steps):
            await asyncio.sleep(0)
        if LOCKED:
            async with self.lock:
                await self.check_then_take()
        else:
            await self.check_then_take()

    async def check_then_take(self):
        if self.seats > 0:
            await asyncio.sleep(0)  # record the sale
            self.seats -= 1
            self.sold += 1


@pytest.mark.asyncspec(schedules=300)
async def test_one_seat_sold_once():
    office = Office()
    await asyncio.gather(office.buy(0), office.buy(1))
    assert office.sold == 1
"""

TOKEN = re.compile(r"--asyncspec-replay=(asyncspec1:\S+)")


# No clock is configured (STRICT_INI): exploring tests get the virtual clock by default.
def write_box_office(pytester: pytest.Pytester, *, locked: bool) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_office=BOX_OFFICE.format(locked=locked))


def token_in(result: pytest.RunResult) -> str:
    found = TOKEN.findall(output_of(result))
    assert found, output_of(result)
    assert len(set(found)) == 1, found
    return str(found[0])


# -- finding a race ---------------------------------------------------------------


def test_a_race_fails_with_the_schedule_that_shows_it(pytester: pytest.Pytester) -> None:
    write_box_office(pytester, locked=False)
    # This seed's failing schedule shrinks to a task deviation (others shrink
    # to two timers swapped, or to two first steps swapped: all one deviation).
    result = pytester.runpytest("-p", "no:cacheprovider", "--asyncspec-seed=2")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*assert 2 == 1*",
            "*- asyncspec schedule -*",
            "schedule * of 300 failed (*, schedule seed *)",
            "stock asyncio never runs this in-memory code in this order*",
            "the deviations from stock order that make it fail:",
            "  1. buy-2 ran ahead of buy-1 (step * of buy-1)",
            "*buy-1 (ready first): suspended at test_office.py:*",
            "*buy-2 (ran instead): suspended at test_office.py:*",
            "replay: pytest 'test_office.py::test_one_seat_sold_once' --asyncspec-replay=*",
            "*asyncspec timeline*",
            "*= asyncspec exploration =*",
            "test_office.py::test_one_seat_sold_once: * schedules, * distinct orders"
            " (mix, run seed 2)*; FAILED",
        ]
    )
    token = token_in(result)
    assert token.startswith(f"asyncspec1:{plugin_version()}:test_one_seat_sold_once:")
    result.stdout.fnmatch_lines(["E * asyncspec: this failure needs a task order*"])


def test_the_token_replays_exactly_that_schedule(pytester: pytest.Pytester) -> None:
    write_box_office(pytester, locked=False)
    found = pytester.runpytest("-p", "no:cacheprovider")
    token = token_in(found)
    deviations = [line for line in found.outlines if "ran ahead of" in line]
    replayed = pytester.runpytest("-p", "no:cacheprovider", f"--asyncspec-replay={token}")
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(
        ["*assert 2 == 1*", "replayed schedule (*) failed", "*: replayed schedule failed"]
    )
    assert [line for line in replayed.outlines if "ran ahead of" in line] == deviations
    assert token_in(replayed) == token
    assert " schedules, " not in output_of(replayed)  # nothing else was explored


PARAMETRIZED_RACE = """
import asyncio

import pytest


async def buy(office, parse_steps):
    for _ in range(parse_steps):
        await asyncio.sleep(0)
    if office["seats"] > 0:
        await asyncio.sleep(0)  # record the sale
        office["seats"] -= 1
        office["sold"] += 1


@pytest.mark.parametrize("parse_steps", [1, 2])
async def test_one_seat_sold_once(parse_steps):
    office = {"seats": 1, "sold": 0}
    await asyncio.gather(buy(office, 0), buy(office, parse_steps))
    assert office["sold"] == 1
"""


def test_the_printed_command_replays_a_parametrized_tests_schedule(
    pytester: pytest.Pytester,
) -> None:
    """Schedules asked for on the command line, and a parametrized test: the
    printed replay command (without that flag) replays the failing schedule,
    on the virtual clock the replay needs, for the one item it names."""
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_params=PARAMETRIZED_RACE)
    found = pytester.runpytest("-p", "no:cacheprovider", "--asyncspec-schedules=50")
    found.assert_outcomes(failed=2)
    commands = re.findall(
        r"replay it with: pytest '(\S+)' (--asyncspec-replay=\S+)", failure_sections(found)
    )
    assert len(commands) == 2, output_of(found)
    for nodeid, flag in commands:
        replayed = pytester.runpytest("-p", "no:cacheprovider", nodeid, flag)
        replayed.assert_outcomes(failed=1)
        replayed.stdout.fnmatch_lines(["*replayed schedule (*) failed*"])
    # A sibling of the replayed item, selected with it, runs once and
    # passes, on the clock the header and its settings name.
    nodeid, flag = commands[0]
    both = pytester.runpytest("-p", "no:cacheprovider", flag)
    both.assert_outcomes(failed=1, passed=1)


def test_a_token_that_does_not_apply_fails_instead_of_passing(pytester: pytest.Pytester) -> None:
    # The locked office passes in every order: a passing replay would be green.
    write_box_office(pytester, locked=True)
    token = f"asyncspec1:{plugin_version()}:test_one_seat_sold_once:random:1:nobody-1@0=ghost-9"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--asyncspec-replay={token}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*--asyncspec-replay: the replay token's schedule did not replay: its one "
            "deviation from stock order never applied, so the run that passed is not the "
            "schedule the token records:",
            "  nobody-1@0=ghost-9: nobody-1's step 0 never came up as the oldest ready callback",
            "the labels this run picked: test_one_seat_sold_once-1, *",
            "*the test's tasks or code changed since then, or the token was not copied whole. "
            "Explore the test again without --asyncspec-replay*",
            "*= asyncspec exploration =*",
            "test_office.py::test_one_seat_sold_once: replayed schedule FAILED: the token's "
            "deviations did not all apply",
        ]
    )
    assert "replayed schedule passed" not in output_of(result)


def test_a_failing_replay_names_the_deviations_that_did_not_apply(
    pytester: pytest.Pytester,
) -> None:
    write_box_office(pytester, locked=False)
    token = token_in(pytester.runpytest("-p", "no:cacheprovider"))
    stale = token + ",nobody-1@0=ghost-9"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--asyncspec-replay={stale}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*assert 2 == 1*",
            "replayed schedule (*) failed",
            "the replay token's schedule did not replay: 1 of its 2 deviations from stock "
            "order never applied, so the run that failed is not the schedule the token records:",
            "  nobody-1@0=ghost-9: nobody-1's step 0 never came up as the oldest ready callback",
        ]
    )
    assert token_in(result) == token  # the schedule that did run


def test_the_same_seed_finds_the_same_schedule(pytester: pytest.Pytester) -> None:
    write_box_office(pytester, locked=False)
    first = pytester.runpytest("-p", "no:cacheprovider", "--asyncspec-seed=77")
    second = pytester.runpytest("-p", "no:cacheprovider", "--asyncspec-seed=77")
    for result in (first, second):
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["*(mix, run seed 77)*"])
    assert token_in(first) == token_in(second)


def test_locked_code_passes_every_schedule(pytester: pytest.Pytester) -> None:
    write_box_office(pytester, locked=True)
    result = pytester.runpytest("-p", "no:cacheprovider", "--asyncspec-seed=5")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*= asyncspec exploration =*",
            "test_office.py::test_one_seat_sold_once: 300 schedules, * distinct orders "
            "(mix, run seed 5); PCT bound per schedule for * labels and * steps: "
            "depth 2 >= 1/*, depth 3 >= 1/*",
        ]
    )


# -- the failure store ------------------------------------------------------------


def test_a_failing_schedule_is_replayed_first_next_time_until_fixed(
    pytester: pytest.Pytester,
) -> None:
    write_box_office(pytester, locked=False)
    found = pytester.runpytest()
    found.assert_outcomes(failed=1)
    found.stdout.fnmatch_lines(["(kept in .pytest_cache: the next run replays it first)"])
    token = token_in(found)

    again = pytester.runpytest()
    again.assert_outcomes(failed=1)
    again.stdout.fnmatch_lines(
        ["a stored failing schedule (*) failed again, before any new schedule ran"]
    )
    assert token_in(again) == token

    write_box_office(pytester, locked=True)  # the fix
    fixed = pytester.runpytest("--asyncspec-seed=1")
    fixed.assert_outcomes(passed=1)
    cache = pytester.path / ".pytest_cache"
    stored = [p.read_text() for p in cache.rglob("*") if p.is_file()]
    assert not any(token in text for text in stored)


# -- which tests explore -----------------------------------------------------------


def test_the_flag_explores_async_tests_and_runs_sync_tests_once(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        test_mixed="""
        import asyncio

        RUNS = {"async": 0, "sync": 0}

        async def test_async():
            RUNS["async"] += 1
            await asyncio.sleep(0)

        def test_sync():
            RUNS["sync"] += 1

        def test_counts():
            assert RUNS == {"async": 25, "sync": 1}
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--asyncspec-schedules=25")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "asyncspec: clock=virtual (default for exploration)*, schedules=25 (command line), "
            "strategy=mix, seed=* (--asyncspec-seed=* explores the same schedules again)",
            "test_mixed.py::test_async: 25 schedules, * distinct order*",
        ]
    )


def test_fixtures_are_set_up_per_schedule_and_the_clock_restarts_each_schedule(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        test_fixtures="""
        import asyncio
        import pytest

        SETUPS = []
        BODIES = []

        @pytest.fixture
        async def resource():
            SETUPS.append(1)
            return {"uses": 0}

        @pytest.mark.asyncspec(schedules=40)
        async def test_body(resource, asyncspec_clock):
            resource["uses"] += 1
            assert resource["uses"] == 1  # a fresh one each schedule
            BODIES.append(asyncspec_clock.now())
            await asyncio.gather(asyncio.sleep(1), asyncio.sleep(2))
            asyncspec_clock.assert_time(asyncspec_clock.now(), 2.0)

        def test_after():
            assert SETUPS == [1] * 40
            assert BODIES == [0.0] * 40
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_skip_and_fail_inside_an_explored_test(pytester: pytest.Pytester) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        test_outcomes="""
        import asyncio
        import pytest

        RUNS = []

        @pytest.mark.asyncspec(schedules=30)
        async def test_skips():
            RUNS.append(1)
            await asyncio.sleep(0)
            pytest.skip("not here")

        @pytest.mark.asyncspec(schedules=30)
        async def test_fails():
            await asyncio.sleep(0)
            pytest.fail("plainly wrong")

        def test_skip_stopped_at_once():
            assert RUNS == [1]
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*plainly wrong*",
            "schedule 1 of 30 failed (fifo, schedule seed *)",
            "it fails in stock asyncio's own order (FIFO), with no deviation*",
        ]
    )


def test_state_carried_across_schedules_is_not_blamed_on_stock_order(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        test_audit="""
        import asyncio

        import pytest


        @pytest.fixture(scope="module")
        def audit_dir(tmp_path_factory):
            return tmp_path_factory.mktemp("audit")


        async def test_audit(audit_dir):
            # A module-scoped fixture is set up once: every schedule appends
            # to the same file.
            log = audit_dir / "audit.log"
            with log.open("a") as out:
                out.write("job\\n")
            await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))
            assert len(log.read_text().splitlines()) == 1
        """
    )
    result = pytester.runpytest("--asyncspec-schedules=50", "--asyncspec-seed=3")
    result.assert_outcomes(failed=1)
    # The explanation is also an exception note (on 3.10 too, via __notes__).
    result.stdout.fnmatch_lines(
        [
            "E * asyncspec: this failure does not come from the task order: stock order passed "
            "on the first schedule and failed on schedule 2*",
            "schedule 2 of 50 failed (*)",
            "this failure does not come from the task order: it shrank to stock asyncio's own "
            "order (FIFO), with no deviation, and that same order passed as the first schedule "
            "of this exploration. What differs is state carried over from earlier schedules: "
            "function-scoped fixtures are set up afresh for each schedule, but fixtures of a "
            "wider scope (class, module, session), module globals and files outside tmp_path "
            "keep what earlier schedules left.*",
        ]
    )
    text = output_of(result)
    assert "the plain test fails" not in text
    assert "stock asyncio's own order (schedule 0)" not in text
    assert "--asyncspec-replay=" not in text  # replayed alone, stock order passes
    cache = pytester.path / ".pytest_cache"
    assert not any("asyncspec1:" in p.read_text() for p in cache.rglob("*") if p.is_file())


# -- the real clock or uvloop from the command line ---------------------------------

REAL_RUN = """
import asyncio

import pytest

LOOPS = []


@pytest.mark.asyncspec(schedules=30)
async def test_marked():
    LOOPS.append(type(asyncio.get_running_loop()).__name__)
    await asyncio.gather(asyncio.sleep(0.01), asyncio.sleep(0))


async def test_run_wide():
    LOOPS.append(type(asyncio.get_running_loop()).__name__)
    await asyncio.sleep(0)


def test_each_ran_once_unexplored():
    assert len(LOOPS) == 2
    assert "ExploringLoop" not in LOOPS
"""


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param(("--asyncspec-clock=real",), id="real"),
        pytest.param(("--asyncspec-loop=uvloop",), id="uvloop"),
        pytest.param(("--asyncspec-clock=real", "--asyncspec-loop=uvloop"), id="real+uvloop"),
    ],
)
def test_the_real_clock_from_the_command_line_runs_explored_tests_once(
    pytester: pytest.Pytester, flags: tuple[str, ...]
) -> None:
    if any("uvloop" in flag for flag in flags):
        pytest.importorskip("uvloop")
    pytester.makeini(STRICT_INI + "asyncspec_schedules = 10\n")
    pytester.makepyfile(test_real=REAL_RUN)
    result = pytester.runpytest("-p", "no:cacheprovider", *flags)
    result.assert_outcomes(passed=3)
    asked = " ".join(flags)
    result.stdout.fnmatch_lines(
        [
            "*= asyncspec exploration =*",
            f"test_real.py::test_marked: ran once, not explored: the command line asks for "
            f"{asked}, over schedules=30 from marker; exploration needs the virtual clock on "
            "the asyncio loop",
            f"test_real.py::test_run_wide: ran once, not explored: the command line asks for "
            f"{asked}, over schedules=10 from ini; exploration needs the virtual clock on "
            "the asyncio loop",
        ]
    )
    # Without the flag, both explore.
    explored = pytester.runpytest("-p", "no:cacheprovider", "-k", "not each_ran_once")
    explored.assert_outcomes(passed=2)
    explored.stdout.fnmatch_lines(
        [
            "test_real.py::test_marked: 30 schedules, *",
            "test_real.py::test_run_wide: 10 schedules, *",
        ]
    )


def test_exploration_under_xdist_reports_on_the_controller(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    write_box_office(pytester, locked=True)
    pytester.makepyfile(
        test_more="""
        import asyncio
        import pytest

        @pytest.mark.asyncspec(schedules=50)
        async def test_other():
            await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", *NO_BENCHMARK, "--asyncspec-seed=9"
    )
    # Each explored test runs as two shards (tests/test_plugin_exploration_shards.py).
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*= asyncspec exploration =*"])
    text = output_of(result)
    assert "test_office.py::test_one_seat_sold_once: 300 schedules" in text
    assert "test_more.py::test_other: 50 schedules" in text
    assert text.count("; over 2 xdist workers") == 2


# -- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--asyncspec-strategy=dfs"],
            "*--asyncspec-strategy: invalid strategy 'dfs'; expected one of 'mix', 'fifo',"
            " 'random', 'pct'",
        ),
        (["--asyncspec-depth=0"], "*--asyncspec-depth: invalid depth '0'*from 1 to 10*"),
        (["--asyncspec-schedules=-3"], "*invalid schedules '-3'; expected a whole number*"),
        (["--asyncspec-seed=x"], "*invalid seed 'x'*"),
        (["--asyncspec-replay=garbage"], "*not an asyncspec replay token*"),
        (
            ["--asyncspec-schedules=5", "--asyncspec-clock=real"],
            "ERROR: --asyncspec-schedules=5 explores schedules on the virtual clock of the "
            "asyncio loop, and --asyncspec-clock=real asks for another: give one of the two*",
        ),
        (
            ["--asyncspec-replay=asyncspec1:0.0.1:test_x:random:1:-"],
            "*made by pytest-asyncspec 0.0.1*Install pytest-asyncspec==0.0.1*",
        ),
        (
            [f"--asyncspec-replay=asyncspec1:{plugin_version()}:test_x:random:1:oops"],
            "*deviation 'oops' is not '<label>@<step>=<label>'*",
        ),
    ],
)
def test_bad_flags_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    write_box_office(pytester, locked=True)
    assert_usage_error(pytester.runpytest("-p", "no:cacheprovider", *args), message)


@pytest.mark.parametrize(
    ("test", "message"),
    [
        (
            "@pytest.mark.asyncspec(strategy='bfs')\nasync def test_x():\n    pass",
            "*test_x: @pytest.mark.asyncspec: invalid strategy 'bfs'*",
        ),
        (
            "@pytest.mark.asyncspec(schedules=10, depth=20)\nasync def test_x():\n    pass",
            "*invalid depth 20*",
        ),
        (
            "@pytest.mark.asyncspec(schedules=10)\ndef test_x():\n    pass",
            "*test_x: @pytest.mark.asyncspec acts on async tests (their loop, clock, trace "
            "and schedules), and this test is not async*",
        ),
        (
            "@pytest.mark.asyncspec(schedules=10, clock='real')\nasync def test_x():\n    pass",
            "*test_x: exploration (*) runs on the virtual clock of the asyncio loop, and this "
            "test asks for clock=real (marker)*",
        ),
    ],
)
def test_bad_markers_are_usage_errors(pytester: pytest.Pytester, test: str, message: str) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_bad="import pytest\n\n" + test + "\n")
    assert_usage_error(pytester.runpytest("-p", "no:cacheprovider"), message)


def test_a_token_for_a_test_not_selected_is_a_usage_error(pytester: pytest.Pytester) -> None:
    write_box_office(pytester, locked=True)
    token = f"asyncspec1:{plugin_version()}:test_elsewhere:random:1:-"
    assert_usage_error(
        pytester.runpytest("-p", "no:cacheprovider", f"--asyncspec-replay={token}"),
        "*the token replays a schedule of the test 'test_elsewhere', and no selected test "
        "has that name*",
    )


def test_a_test_that_does_not_repeat_itself_gets_no_token(pytester: pytest.Pytester) -> None:
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        test_flaky="""
        import asyncio
        import itertools
        import pytest

        RUNS = itertools.count()

        @pytest.mark.asyncspec(schedules=20)
        async def test_flaky():
            # How many steps it takes depends on earlier runs, not on the schedule.
            for _ in range(next(RUNS) % 3):
                await asyncio.sleep(0)
            assert False, "always fails"
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*always fails*",
            "schedule 1 of 20 failed (fifo, schedule seed *)",
            "no replay token: this test does not run the same way twice under one schedule "
            "(the same seed *). Something besides the task order decides what it does: "
            "threads, real I/O, time read from the wall clock, or unseeded randomness.*",
        ]
    )
    assert "--asyncspec-replay=" not in output_of(result)
    cache = pytester.path / ".pytest_cache"
    assert not any("asyncspec1:" in p.read_text() for p in cache.rglob("*") if p.is_file())


def test_tracing_a_test_does_not_change_its_schedules(pytester: pytest.Pytester) -> None:
    write_box_office(pytester, locked=False)
    plain = pytester.runpytest("-p", "no:cacheprovider", "--asyncspec-seed=2")
    traced = pytester.runpytest(
        "-p", "no:cacheprovider", "--asyncspec-seed=2", "--asyncspec-trace=on"
    )
    assert token_in(plain) == token_in(traced)
    # One timeline, the failing schedule's, not a picture of every schedule.
    assert failure_sections(traced).count("asyncspec timeline:") == 1


TRACED_SCHEDULES = """
import asyncio

import pytest

SEEN = []


async def work(name):
    print(f"{name} started")
    await asyncio.sleep(1)


@pytest.mark.asyncspec(schedules=20, seed=1)
async def test_each_schedule_sees_its_own_tasks(asyncspec_trace):
    await asyncio.gather(
        asyncio.create_task(work("a"), name="a"), asyncio.create_task(work("b"), name="b")
    )
    names = sorted(record.shown_name for record in asyncspec_trace.tasks.values())
    SEEN.append(names)
    assert asyncspec_trace.every_start_before_any_finish("a", "b")
    assert asyncspec_trace.finish_of("a") - asyncspec_trace.start_of("a") == 1.0
    assert sorted(line.text for line in asyncspec_trace.output.lines) == [
        "a started",
        "b started",
    ]


def test_every_schedule_saw_the_same_tasks():
    assert len(SEEN) == 20
    assert all(names == ["a", "b", "test_each_schedule_sees_its_own_tasks"] for names in SEEN)
"""


def test_the_trace_fixture_shows_the_current_schedule(pytester: pytest.Pytester) -> None:
    """In an explored test the body runs once per schedule, and each run makes
    its own tasks: ``asyncspec_trace`` shows the current schedule's, so a
    query by name finds one task, not one per schedule, and ``output`` holds
    this schedule's lines."""
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_traced=TRACED_SCHEDULES)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=2)


def test_leaks_are_still_checked_when_a_test_explores(pytester: pytest.Pytester) -> None:
    """The explorer cancels what each schedule's run left running, so the end
    of the test found nothing: leaks=error passed a leaking test as soon as
    it explored.  Now the leftovers of the schedules are the leak."""
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        test_leaky="""
        import asyncio

        import pytest


        async def forever():
            await asyncio.sleep(3600)


        async def helper():
            pass


        @pytest.mark.asyncspec(schedules=5, leaks="error")
        async def test_fire_and_forget():
            asyncio.create_task(forever(), name="orphan")
            helper()  # never awaited
            await asyncio.sleep(0)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "ignore::RuntimeWarning")
    # Leaks are judged once the test's fixtures are torn down: an error at teardown.
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*1 task(s) still pending when a schedule's run of the test ended (in 5 schedule(s)*",
            "*orphan*forever*",
        ]
    )
    # Each schedule made its own coroutine: the failure names it once.
    assert failure_sections(result).count("coroutine 'helper' was never awaited; created at") == 1
    assert "All traceback entries are hidden" not in output_of(result)


def test_a_dropped_task_is_reported_as_on_the_stock_loop(pytester: pytest.Pytester) -> None:
    """The exploring loop's task labels held every task of a schedule until
    it ended, so a failed task the test dropped was never collected in it
    and asyncio never logged that its exception went unretrieved."""
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        test_dropped="""
        import asyncio
        import gc
        import weakref

        import pytest


        async def fails():
            raise ValueError("nobody looks at this")


        def unretrieved(caplog):
            return sum(
                r.getMessage().startswith("Task exception was never retrieved")
                for r in caplog.records
            )


        async def drop_one(caplog):
            before = unretrieved(caplog)
            task = asyncio.ensure_future(fails())
            while not task.done():  # any schedule runs it in the end
                await asyncio.sleep(0)
            dropped = weakref.ref(task)
            del task
            gc.collect()
            assert dropped() is None
            assert unretrieved(caplog) == before + 1


        @pytest.mark.asyncspec(schedules=10)
        async def test_explored(caplog):
            await drop_one(caplog)


        @pytest.mark.asyncspec(clock="real")
        async def test_stock(caplog):
            await drop_one(caplog)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


LEFTOVER_WORKERS = """
import asyncio

import pytest


async def test_race_with_workers_left_behind():
    jobs = asyncio.Queue()
    state = {"left": 1, "sold": 0}

    async def worker():
        while True:
            await jobs.get()

    async def buy(steps):
        await asyncio.sleep(0.01)
        for _ in range(steps):
            await asyncio.sleep(0)
        if state["left"] > 0:
            await asyncio.sleep(0)
            state["left"] -= 1
            state["sold"] += 1

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    await asyncio.gather(buy(0), buy(1))
    assert state["sold"] == 1
    del workers
"""


def test_workers_left_behind_do_not_cost_the_replay_token(pytester: pytest.Pytester) -> None:
    """Eight workers the test leaves behind were cancelled in memory-address
    order: the self-check saw the seed run differently and most seeds got
    "no replay token" for plain in-memory code."""
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_workers=LEFTOVER_WORKERS)
    for seed in range(8):
        result = pytester.runpytest(
            "-p", "no:cacheprovider", "--asyncspec-schedules=300", f"--asyncspec-seed={seed}"
        )
        result.assert_outcomes(failed=1)
        assert "no replay token" not in output_of(result), seed
        token_in(result)


REAL_WORK = """
import asyncio
import time

import pytest


def work():
    # Long enough that the loop looks before the thread is done, even on a
    # loaded machine: each schedule then waits on real work.
    time.sleep(0.1)
    return 1


@pytest.mark.asyncspec(schedules=5)
async def test_threads():
    assert await asyncio.gather(asyncio.to_thread(work), asyncio.to_thread(work)) == [1, 1]


@pytest.mark.asyncspec(schedules=5)
async def test_in_memory():
    await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))


@pytest.mark.asyncspec(schedules=5)
async def test_fails_after_a_thread():
    await asyncio.to_thread(work)
    assert False, "plainly wrong"
"""


def test_schedules_that_waited_on_real_work_are_noted_once_per_test(
    pytester: pytest.Pytester,
) -> None:
    """Where threads' timing, not the schedule, may decide an order, the
    summary says so once for the test, as a note: the test still passes."""
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_real_work=REAL_WORK)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            # The failure's own section says it first.
            "schedule 1 of 5 failed (*)",
            "note: 1 of these schedules waited on real work*",
            "*= asyncspec exploration =*",
            "test_real_work.py::test_threads: 5 schedules, *",
            "  note: 5 of these schedules waited on real work (threads, or sockets to peers "
            "outside the loop)*exploration is not faithful there*",
            "test_real_work.py::test_in_memory: 5 schedules, *",
            "test_real_work.py::test_fails_after_a_thread: 1 schedule, *; FAILED",
            "  note: 1 of these schedules waited on real work*",
        ]
    )
    # Once per test: in its summary line, and in its failure section if it fails.
    assert failure_sections(result).count("note: ") == 3
