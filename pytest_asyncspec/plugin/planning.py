"""Each test's plan, decided once at collection, with every usage error.

The settings table (:mod:`.settings`) says what each value is and where it
came from; here is what follows from them: the run's settings and each
test's (exploring defaults the clock to virtual), whether and how a test
explores (or why it cannot), the loop checks, the markers' validity, claims
and leak rules.  Every contradiction is a usage error raised here, before
any test runs; what is decided is kept as the test's frozen
:class:`~.state.TestPlan`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest
from pytest_asyncio import is_async_test

from ..clock.loops import (
    VIRTUAL_CLOCKS,
    UnsupportedLoopError,
    is_stock_asyncio_factory,
    loop_factory,
    virtual_on_uvloop_message,
)
from .settings import (
    ALLOW_LEAKS_MARKER,
    CLAIM_MARKER,
    MARKER,
    Effective,
    enabled_modes,
    marker_settings,
    replay_token,
    replays_function,
    resolve,
)
from .state import RunState, TestPlan, keep_plan, run_state, state_of

if TYPE_CHECKING:
    from ..checks.allow_rules import AllowRule
    from ..exploration.replay_token import ReplayToken
    from .explored_tests import ExploreRequest

#: The name under which the loop-factory hook is registered.
LOOP_FACTORIES = "asyncspec-loop-factories"
TRACE_FIXTURE = "asyncspec_trace"


def run_settings(config: pytest.Config) -> Effective:
    """Settings that apply to a test with no marker (decided once per run); a
    contradiction of the whole run is a usage error."""
    run = run_state(config)
    if run.settings is None:
        effective = _explore_on_virtual(resolve(config, {}))
        if effective.clock in VIRTUAL_CLOCKS and effective.loop == "uvloop":
            raise pytest.UsageError(virtual_on_uvloop_message(effective.sources, effective.clock))
        _check_exploration_flags(effective)
        run.settings = effective
    return run.settings


def settings_for(config: pytest.Config, item: pytest.Item) -> Effective:
    """Settings for one test: command line > marker > ini > default.

    A test that explores schedules (or replays one) runs on the virtual
    clock unless a clock was chosen explicitly: each schedule then costs
    milliseconds, not the test's real duration.  A test with no marker
    gets the very object :func:`run_settings` returns.
    """
    marked = marker_settings(item)
    token = replay_token(config)
    replaying = token is not None and replays_function(token.test, item)
    if marked or replaying:
        return _explore_on_virtual(resolve(config, marked), replaying)
    return run_settings(config)


def _explore_on_virtual(effective: Effective, replaying: bool = False) -> Effective:
    if effective.loop != "asyncio" and effective.sources["loop"] == "command line":
        # uvloop asked for on the command line wins over exploration, which
        # then does not run (see request_for).
        return effective
    if effective.sources["clock"] == "default" and (effective.schedules or replaying):
        sources = {**effective.sources, "clock": "default for exploration"}
        return effective.replace(clock="virtual", sources=sources)
    return effective


def _check_exploration_flags(settings: Effective) -> None:
    """Exploring on another clock or loop, both asked on the command line, is
    a contradiction of the whole run (a marker or ini asking for schedules
    gives way to the command line's clock instead: the test runs once)."""
    flagged = {name for name, source in settings.sources.items() if source == "command line"}
    if not settings.schedules or "schedules" not in flagged:
        return
    other = []
    if settings.clock == "real" and "clock" in flagged:
        other.append("--asyncspec-clock=real")
    if settings.loop == "uvloop" and "loop" in flagged:
        other.append("--asyncspec-loop=uvloop")
    if other:
        raise pytest.UsageError(
            f"--asyncspec-schedules={settings.schedules} explores schedules on the virtual "
            f"clock of the asyncio loop, and {' '.join(other)} asks for another: give one "
            "of the two (a real-clock run of an explored suite: --asyncspec-schedules=0)"
        )


def run_seed(config: pytest.Config) -> int:
    """The run's exploration seed, drawn on first use; an xdist worker takes
    its controller's, so every worker explores alike."""
    run = run_state(config)
    if run.seed is None:
        from .explored_tests import session_seed

        workerinput = getattr(config, "workerinput", {})
        run.seed = workerinput.get("asyncspec_seed", None) or session_seed()
    return run.seed


def request_for(
    item: pytest.Item,
    effective: Effective,
    *,
    is_async: bool,
    run_seed: int,
    replay: ReplayToken | None,
) -> ExploreRequest | None:
    """Whether and how ``item`` explores; a usage error for impossible asks.

    A run-wide request skips what cannot be explored -- sync tests, and tests
    whose own marker asks for the real clock or uvloop (reported in the
    summary); the same ask in a test's marker is an error.  The real clock or
    uvloop asked for on the command line wins over schedules from a marker or
    the ini file: the test runs once on that loop (reported in the summary);
    the command line asking for both is an error.
    """
    replaying = replay is not None and replay.test == item.name
    if effective.schedules == 0 and not replaying:
        return None
    asked = "--asyncspec-replay" if replaying else _where(effective, "schedules")
    if not is_async:
        if not replaying and effective.sources.get("schedules") != "marker":
            return None  # a run-wide setting applies to async tests only
        raise pytest.UsageError(
            f"{item.nodeid}: exploration ({asked}) reorders the tasks of an async test, "
            "and this test is not async: make it `async def`, or drop the request"
        )
    if effective.clock not in VIRTUAL_CLOCKS or effective.loop != "asyncio":
        asked_from = effective.sources.get("schedules")
        # Where the choices exploration cannot run on come from.
        against = {
            effective.sources[name]
            for name, fits in (
                ("clock", effective.clock in VIRTUAL_CLOCKS),
                ("loop", effective.loop == "asyncio"),
            )
            if not fits
        } - {"default"}
        if not replaying and asked_from != "marker" and "marker" in against:
            # The test itself insists on another loop: run it once, and say so.
            return _unexplored(
                f"it asks for clock={effective.clock}, loop={effective.loop} in its marker; "
                "exploration needs the virtual clock on the asyncio loop"
            )
        if not replaying and asked_from != "command line" and against == {"command line"}:
            # This run asks for another loop (--asyncspec-clock=real re-runs a
            # suite on the real clock): the test runs once on it, and says so.
            flags = " ".join(
                f"--asyncspec-{name}={value}"
                for name, value in (("clock", effective.clock), ("loop", effective.loop))
                if effective.sources[name] == "command line"
            )
            return _unexplored(
                f"the command line asks for {flags}, over {_where(effective, 'schedules')}; "
                "exploration needs the virtual clock on the asyncio loop"
            )
        raise pytest.UsageError(
            f"{item.nodeid}: exploration ({asked}) runs on the virtual clock of the "
            f"asyncio loop, and this test asks for clock={effective.clock} "
            f"({effective.sources['clock']}), loop={effective.loop} "
            f"({effective.sources['loop']}): drop that choice for this test, or "
            "explore it with --asyncspec-clock=virtual"
        )
    from ..exploration.strategies import Plan
    from .explored_tests import ExploreRequest

    if replaying:
        return ExploreRequest(plan=None, schedules=0, replay=replay)
    seed = effective.seed if effective.seed is not None else run_seed
    plan = Plan(effective.strategy, effective.depth, seed)
    return ExploreRequest(plan=plan, schedules=effective.schedules)


def _unexplored(reason: str) -> ExploreRequest:
    from .explored_tests import ExploreRequest

    return ExploreRequest(plan=None, schedules=0, unexplored=reason)


def _where(effective: Effective, name: str) -> str:
    return f"schedules={effective.schedules} from {effective.sources.get(name, 'default')}"


def prepare_items(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Validate every marker, sync tests included, before anything runs, and
    decide each test's plan: the settings, claim and exploration it runs with."""
    run = run_state(config)
    unmarked = run_settings(config)
    opted_in = (unmarked.clock, unmarked.loop) != ("real", "asyncio")
    replay = replay_token(config)
    replayed = replay.test if replay is not None else None
    modes_on = bool(enabled_modes(unmarked))
    # Most tests ask for nothing of their own: they share one plan.
    plain = TestPlan(unmarked)
    for item in items:
        # One walk over the markers of the test, its class and module: most
        # tests have neither an asyncspec nor a claim marker.
        marks = {mark.name for mark in item.iter_markers()}
        effective = unmarked
        if MARKER in marks or (replayed is not None and replays_function(replayed, item)):
            effective = settings_for(config, item)
        run_by_pytest_asyncio = is_async_test(item)
        anyio_backend = None
        if not run_by_pytest_asyncio and run_by_anyio(item):
            from .anyio_tests import backend_at_collection, take_the_runner_first

            anyio_backend = backend_at_collection(item) or "asyncio"
            if anyio_backend == "asyncio":
                take_the_runner_first(item)
        unittest_case = (
            not run_by_pytest_asyncio and anyio_backend is None and is_unittest_case(item)
        )
        on_our_loop = run_by_pytest_asyncio or anyio_backend == "asyncio" or unittest_case
        if (
            (MARKER in marks or _uses_loop_fixtures(item))
            and anyio_backend is None
            and not run_by_pytest_asyncio
            and not unittest_case
        ):
            _check_marked_test_is_run_by_pytest_asyncio(item)
        outside = None
        if not on_our_loop and (modes_on if effective is unmarked else enabled_modes(effective)):
            from .outside_modes import why_outside

            reason = why_outside(item)
            if reason is not None:
                outside = (reason, ", ".join(enabled_modes(effective)))
        if opted_in or effective is not unmarked:
            _check_loop(item, effective)
            if unittest_case:
                _check_case_loop_factory(item, effective)
        leak_rules = _marked_leak_rules(item, run) if ALLOW_LEAKS_MARKER in marks else ()
        claim = None
        if CLAIM_MARKER in marks:
            from .claims import claim_tag

            claim = claim_tag(item)
        explore = None
        if unittest_case:
            explore = _unittest_exploration(item, effective, replay)
        elif effective.schedules or replay is not None:
            explore = request_for(
                item,
                effective,
                is_async=run_by_pytest_asyncio or anyio_backend is not None,
                run_seed=run_seed(config),
                replay=replay,
            )
        asks = outside or leak_rules or claim or explore or unittest_case
        state = keep_plan(
            item,
            TestPlan(effective, explore, claim, leak_rules, outside, unittest_case)
            if asks or effective is not unmarked
            else plain,
        )
        state.on_anyio_runner = anyio_backend == "asyncio"
    if replay is not None and items and not any(item.name == replay.test for item in items):
        raise pytest.UsageError(
            f"--asyncspec-replay: the token replays a schedule of the test {replay.test!r}, "
            "and no selected test has that name: select it, e.g. "
            f"pytest 'path/to/test_file.py::{replay.test}' --asyncspec-replay=..."
        )
    tagged = [
        (item.nodeid, planned.plan.claim)
        for item in items
        if (planned := state_of(item)) is not None and planned.plan.claim is not None
    ]
    if tagged:
        from .claims import check_consistent

        check_consistent(tagged)


def is_unittest_case(item: pytest.Item) -> bool:
    """Whether ``item`` is a test of a ``unittest.IsolatedAsyncioTestCase``
    (which makes its own loop: see :mod:`.unittest_cases`).  Read without
    loading unittest's async module: no such class exists before it loads."""
    async_case = sys.modules.get("unittest.async_case")
    if async_case is None:
        return False
    case_class = getattr(item, "cls", None)
    return isinstance(case_class, type) and issubclass(
        case_class, async_case.IsolatedAsyncioTestCase
    )


def _check_case_loop_factory(item: pytest.Item, effective: Effective) -> None:
    """A test case's own loop_factory (Python 3.13) that is not asyncio's
    stock loop is kept, never silently replaced: asking for a loop of
    asyncspec's on it is a usage error, as with a project's own
    pytest-asyncio loop factories."""
    if (effective.clock, effective.loop) == ("real", "asyncio"):
        return
    from .unittest_cases import foreign_loop_factory_message, own_loop_factory

    theirs = own_loop_factory(getattr(item, "cls", object))
    if theirs is not None and not is_stock_asyncio_factory(theirs):
        raise pytest.UsageError(foreign_loop_factory_message(item.nodeid, effective, theirs))


def _unittest_exploration(
    item: pytest.Item, effective: Effective, replay: ReplayToken | None
) -> ExploreRequest | None:
    """Exploration does not reach unittest's tests: a run-wide request runs
    them once (the summary says so); the test's own marker, or a replay of
    it, is a usage error rather than a request silently dropped."""
    replaying = replay is not None and replay.test == item.name
    if not effective.schedules and not replaying:
        return None
    if replaying or effective.sources.get("schedules") == "marker":
        asked = "--asyncspec-replay" if replaying else _where(effective, "schedules")
        raise pytest.UsageError(
            f"{item.nodeid}: exploration ({asked}) reorders the tasks of tests that "
            "pytest-asyncio runs, and unittest.IsolatedAsyncioTestCase runs this one on a "
            "loop of its own (the virtual clock, tracing, the blocking gate and leak checks "
            "do apply to it): drop schedules from its asyncspec marker, or explore the same "
            "code from a pytest-asyncio test"
        )
    from .unittest_cases import NOT_EXPLORED

    return _unexplored(NOT_EXPLORED)


def _marked_leak_rules(item: pytest.Item, run: RunState) -> tuple[tuple[str, AllowRule], ...]:
    """The rules of the allow_leaks markers that reach ``item`` (its own,
    its class's, its module's), validated."""
    from ..checks.allow_rules import parse_leak_rules

    cache = run.marker_rules
    rules = []
    for node, mark in item.iter_markers_with_node(ALLOW_LEAKS_MARKER):
        where = f"{item.nodeid}: @pytest.mark.{ALLOW_LEAKS_MARKER}"
        if mark.kwargs or not mark.args:
            raise pytest.UsageError(
                f"{where} takes one or more rules as positional strings, e.g. "
                f"@pytest.mark.{ALLOW_LEAKS_MARKER}('aiohttp.*', 'tests/helpers.py:12'); "
                f"got args={mark.args!r}, kwargs={mark.kwargs!r}"
            )
        for text in mark.args:
            if not isinstance(text, str) or not text.strip():
                raise pytest.UsageError(
                    f"{where}: every rule must be a non-empty string, got {text!r}"
                )
            key = f"{node.nodeid or '.'}: @pytest.mark.{ALLOW_LEAKS_MARKER}({text!r})"
            rule = cache.get(key)
            if rule is None:
                try:
                    (rule,) = parse_leak_rules([text])
                except ValueError as error:
                    raise pytest.UsageError(f"{where}: {error}") from None
                cache[key] = rule
            rules.append((key, rule))
    return tuple(rules)


#: Fixtures that read the running loop of an async test.
LOOP_FIXTURES = ("asyncspec_clock", TRACE_FIXTURE)
#: anyio's fixture naming a test's backend: a test that uses it may be
#: anyio's to run (see .anyio_tests, imported only for such a test).
ANYIO_BACKEND = "anyio_backend"


def run_by_anyio(item: pytest.Item) -> bool:
    """Whether anyio's pytest plugin runs ``item`` (see :mod:`.anyio_tests`)."""
    if ANYIO_BACKEND not in getattr(item, "fixturenames", ()):
        return False
    from .anyio_tests import is_anyio_test

    return is_anyio_test(item) and not is_async_test(item)


def on_anyio_runner(item: pytest.Item) -> bool:
    """Whether collection found ``item`` to be run by anyio on its asyncio
    backend (or on a backend the project's fixture names at setup)."""
    state = state_of(item)
    return state is not None and state.on_anyio_runner


def on_watched_loop(item: pytest.Item) -> bool:
    """Whether ``item`` runs on an asyncio loop the plugin can reach:
    pytest-asyncio's, or anyio's runner's (asyncio backend; a test on trio
    finds out at setup)."""
    return is_async_test(item) or on_anyio_runner(item)


def _uses_loop_fixtures(item: pytest.Item) -> bool:
    names = getattr(item, "fixturenames", ())
    return any(name in names for name in LOOP_FIXTURES)


def _check_marked_test_is_run_by_pytest_asyncio(item: pytest.Item) -> None:
    """The asyncspec marker and loop fixtures act on async tests that
    pytest-asyncio runs; on any other test they would be silently ignored, or
    fail with pytest's own "async def functions are not natively supported"."""
    from .outside_modes import STRICT_MODE, why_outside

    reason = why_outside(item)
    if reason is not None:
        way_out = (
            "add @pytest.mark.asyncio to it, or set asyncio_mode = auto in the ini file"
            if reason == STRICT_MODE
            else "let pytest-asyncio run it instead, or leave the asyncspec marker and "
            "fixtures off it"
        )
        raise pytest.UsageError(
            f"{item.nodeid}: pytest-asyncio does not run this async test ({reason}), so "
            f"@pytest.mark.{MARKER} and the asyncspec fixtures cannot act on it: {way_out}"
        )
    # A sync test under a class or module marker is simply not affected; its
    # own marker asks for something that cannot happen.  (A sync test may use
    # the fixtures: they explain themselves when read outside a loop.)
    if any(mark.name == MARKER for mark in item.own_markers):
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.{MARKER} acts on async tests (their loop, clock, "
            "trace and schedules), and this test is not async: make it `async def`, or "
            "drop the marker"
        )


def _check_loop(item: pytest.Item, effective: Effective) -> None:
    if effective.clock in VIRTUAL_CLOCKS and effective.loop == "uvloop":
        # Said as for the whole run, with where each value came from.
        message = virtual_on_uvloop_message(effective.sources, effective.clock)
        raise pytest.UsageError(f"{item.nodeid}: {message}")
    try:
        loop_factory(effective.clock, effective.loop)
    except UnsupportedLoopError as error:
        raise pytest.UsageError(f"{item.nodeid}: {error}") from None
    if (effective.clock, effective.loop) != ("real", "asyncio") and is_async_test(item):
        _check_loop_was_chosen(item, effective)


def _check_loop_was_chosen(item: pytest.Item, effective: Effective) -> None:
    """pytest-asyncio picks a test's loop while the test is collected; a
    marker added later (by a hook) cannot change it any more, and a project's
    own loop-factory hook may have chosen a loop we cannot put a clock on."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "_asyncio_loop_factory" in callspec.params:
        chosen = callspec.params["_asyncio_loop_factory"]
        # None: the asyncio marker named a factory nobody offers, and
        # pytest-asyncio skips the test saying so.
        if chosen is not None and chosen is not loop_factory(effective.clock, effective.loop):
            raise pytest.UsageError(_foreign_factory_message(item, effective, chosen))
        return
    raise pytest.UsageError(
        f"{item.nodeid}: asks for clock={effective.clock}, loop={effective.loop}, but its "
        "asyncspec marker arrived after the test was collected (added by a hook or "
        "plugin), when pytest-asyncio had already chosen the stock loop. Put the marker "
        "on the test, its class or its module (pytestmark), or set asyncspec_clock / "
        "asyncspec_loop in the ini file."
    )


def _foreign_factory_message(item: pytest.Item, effective: Effective, chosen: object) -> str:
    """A project's pytest_asyncio_loop_factories hook gave this test a loop
    other than the one its asyncspec settings ask for: say whose hook, which
    factory, and the ways out."""
    hooks = item.config.pluginmanager.hook.pytest_asyncio_loop_factories.get_hookimpls()
    owners = [
        getattr(impl.plugin, "__file__", None) or impl.plugin_name
        for impl in hooks
        if impl.plugin_name != LOOP_FACTORIES
    ]
    where = ", ".join(str(owner) for owner in owners) or "another plugin"
    factory = getattr(chosen, "__qualname__", None) or repr(chosen)
    module = getattr(chosen, "__module__", None)
    if module:
        factory = f"{module}.{factory}"
    asked = f"clock={effective.clock} ({effective.sources['clock']})"
    if effective.loop != "asyncio":
        asked += f", loop={effective.loop} ({effective.sources['loop']})"
    return (
        f"{item.nodeid}: asks for {asked}, but the pytest_asyncio_loop_factories hook in "
        f"{where} gives it the loop factory {factory}, which asyncspec cannot put its "
        "clock on (only asyncio's own loop, asyncio.new_event_loop or "
        "asyncio.SelectorEventLoop, is replaced by the virtual-clock loop). Choose one: "
        "return None from your hook for the tests that should run on asyncspec's loop; or "
        "keep your loop for this test with @pytest.mark.asyncspec(clock='real') (or "
        "asyncspec_clock = real in the ini file)."
    )
