"""pytest entry point: options, markers, fixtures and the loop-factory hook.

Thin by design: settings live in :mod:`.settings`, loops in
:mod:`~pytest_asyncspec.clock.loops`, the clock in
:mod:`~pytest_asyncspec.clock.virtual_loop`, timing checks in
:mod:`~pytest_asyncspec.checks.timing`, what is watched during a test in
:mod:`.observation`, claims and their report in :mod:`.claims`, exploration
in :mod:`.explored_tests`, and what the reporting process gathers from
reports in :mod:`.run_summary`.  Everything but the
settings table, the loop choices and the report plumbing is imported when a
test or an option needs it, so that pytest starts as fast with the plugin
installed as without it (``tests/test_startup_imports.py``).
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

import pytest
from pytest_asyncio import is_async_test

from ..clock.loops import LoopFactory, UnsupportedLoopError, loop_factory, virtual_on_uvloop_message
from . import report_fields
from .run_summary import RunSummary
from .settings import (
    ALLOW_LEAKS_HELP,
    ALLOW_LEAKS_MARKER,
    CLAIM_HELP,
    CLAIM_MARKER,
    MARKER,
    MARKER_HELP,
    Effective,
    add_options,
    allow_blocking_rules,
    allow_leak_rules,
    effective_for,
    effective_global,
    enabled_modes,
    html_path,
    replay_token,
    replays_function,
    report_path,
    trace_dir,
    trace_max_steps,
    validate_config,
)

if TYPE_CHECKING:
    # Loaded when a run or a test needs them (claims when a test is tagged
    # with one, exploration when one explores, tracing when one is traced):
    # pytest starts as fast with the plugin installed as without it.
    from ..checks.allow_rules import AllowRule
    from ..checks.hang_watch import Armed, HangWatch
    from ..checks.timing import LoopClock
    from .claims import ClaimRecorder, ClaimTag
    from .explored_tests import ExploreRequest
    from .failure_store import FailureStore
    from .observation import Observation, TraceView

# Annotated, not subscripted (pytest.StashKey[T]()): annotations are not
# evaluated, and a subscripted generic costs tens of microseconds to create.
SETTINGS_KEY: pytest.StashKey[Effective] = pytest.StashKey()
OBSERVATION_KEY: pytest.StashKey[Observation] = pytest.StashKey()
TRACE_VIEW_KEY: pytest.StashKey[TraceView] = pytest.StashKey()
ALLOW_RULES_KEY: pytest.StashKey[list[AllowRule]] = pytest.StashKey()
#: The run's leak allow-list (ini and command line).
LEAK_RULES_KEY: pytest.StashKey[list[AllowRule]] = pytest.StashKey()
#: A test's allow_leaks marker rules, each under the name the run summary
#: gives it ("test_file.py: @pytest.mark.allow_leaks('rule')").
MARKED_LEAK_RULES_KEY: pytest.StashKey[list[tuple[str, AllowRule]]] = pytest.StashKey()
#: One rule object per marker and rule text, shared by the tests the marker
#: reaches, so a rule used by any of them counts as used.
MARKER_RULE_CACHE_KEY: pytest.StashKey[dict[str, AllowRule]] = pytest.StashKey()
CLAIM_KEY: pytest.StashKey[ClaimTag] = pytest.StashKey()
CLAIM_POSITION_KEY: pytest.StashKey[int] = pytest.StashKey()
CLOCK_KEY: pytest.StashKey[LoopClock] = pytest.StashKey()
RECORDER_KEY: pytest.StashKey[ClaimRecorder] = pytest.StashKey()
EXPLORE_KEY: pytest.StashKey[ExploreRequest] = pytest.StashKey()
SEED_KEY: pytest.StashKey[int] = pytest.StashKey()
STORE_KEY: pytest.StashKey[FailureStore] = pytest.StashKey()
#: Whether traced tests carry their timeline on their reports (--asyncspec-html).
HTML_KEY: pytest.StashKey[bool] = pytest.StashKey()
#: The run's hang watchdog (started by the first async test it watches).
HANG_WATCH_KEY: pytest.StashKey[HangWatch] = pytest.StashKey()
#: The threads alive when pytest started (pytest-xdist's): the hang watchdog
#: never asks whether they are busy.
START_THREADS_KEY: pytest.StashKey[set[int | None]] = pytest.StashKey()
#: A test under the hang watchdog, from its setup to its last report.
HANG_KEY: pytest.StashKey[Armed] = pytest.StashKey()
#: Why an async test runs outside the modes it asked for, and those modes.
OUTSIDE_MODES_KEY: pytest.StashKey[tuple[str, str]] = pytest.StashKey()
TRACE_FIXTURE = "asyncspec_trace"


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.addinivalue_line("markers", CLAIM_HELP)
    config.addinivalue_line("markers", ALLOW_LEAKS_HELP)
    config.stash[START_THREADS_KEY] = {thread.ident for thread in threading.enumerate()}
    validate_config(config)
    # One list each for the whole run, so a rule used by any test counts as used.
    config.stash[ALLOW_RULES_KEY] = _run_rules(config, "blocking")
    config.stash[LEAK_RULES_KEY] = _run_rules(config, "leaks")
    global_settings = effective_global(config)
    _check_exploration_flags(global_settings)
    if global_settings.clock != "real" or global_settings.loop != "asyncio":
        try:
            loop_factory(global_settings.clock, global_settings.loop)
        except UnsupportedLoopError as error:
            chosen = f"loop={global_settings.loop} (from {global_settings.sources['loop']})"
            raise pytest.UsageError(f"{chosen}: {error}") from None
        _need_loop_factories(config)
    if replay_token(config) is not None:  # decoded now: a bad token stops the run here
        _need_loop_factories(config)
    config.stash[HTML_KEY] = html_path(config) is not None
    if not hasattr(config, "workerinput"):
        # Claims, explored tests' summaries and fired allow-list rules are
        # gathered where reports arrive: here, or on the xdist controller; a
        # worker only attaches each test's data to its reports.
        summary = RunSummary(
            report_path(config),
            config.stash[ALLOW_RULES_KEY],
            trace_dir(config),
            leak_rules=config.stash[LEAK_RULES_KEY],
        )
        config.pluginmanager.register(summary, "asyncspec-summary")
        page = html_path(config)
        if page is not None:
            from .html_report import HtmlReport

            config.pluginmanager.register(HtmlReport(page, summary.claims()), "asyncspec-html")


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
    seed = config.stash.get(SEED_KEY, None)
    if seed is None:
        from .explored_tests import session_seed

        workerinput = getattr(config, "workerinput", {})
        seed = config.stash[SEED_KEY] = workerinput.get("asyncspec_seed", None) or session_seed()
    return seed


def failure_store(config: pytest.Config) -> FailureStore:
    """Where failing schedules are kept between runs (pytest's cache)."""
    store = config.stash.get(STORE_KEY, None)
    if store is None:
        from .failure_store import FailureStore

        store = config.stash[STORE_KEY] = FailureStore(getattr(config, "cache", None))
    return store


def pytest_unconfigure(config: pytest.Config) -> None:
    watch = config.stash.get(HANG_WATCH_KEY, None)
    if watch is not None:
        watch.stop()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: hand the run's exploration seed to each worker."""
    node.workerinput["asyncspec_seed"] = run_seed(node.config)


def _run_rules(config: pytest.Config, kind: str) -> list[AllowRule]:
    """Read and parse the run's allow list of ``kind`` (``blocking`` or
    ``leaks``); a bad rule is a usage error naming the flag and the ini key."""
    try:
        texts = allow_blocking_rules(config) if kind == "blocking" else allow_leak_rules(config)
        if not texts:
            return []  # the rules' module loads only when a run has rules
        from ..checks.allow_rules import parse_allow_rules, parse_leak_rules

        return (parse_allow_rules if kind == "blocking" else parse_leak_rules)(texts)
    except ValueError as error:
        raise pytest.UsageError(
            f"--asyncspec-allow-{kind} / asyncspec_allow_{kind}: {error}"
        ) from None


def pytest_report_header(config: pytest.Config) -> str:
    effective = effective_global(config)
    header = (
        f"asyncspec: clock={effective.clock} ({effective.sources['clock']}), "
        f"loop={effective.loop} ({effective.sources['loop']})"
    )
    if effective.schedules:
        seed = effective.seed if effective.seed is not None else run_seed(config)
        header += (
            f", schedules={effective.schedules} ({effective.sources['schedules']}), "
            f"strategy={effective.strategy}, seed={seed} "
            f"(--asyncspec-seed={seed} explores the same schedules again)"
        )
    return header


class LoopFactories:
    """pytest-asyncio's loop-factory hook, registered only once some test may
    need a loop other than pytest-asyncio's own (see _need_loop_factories):
    while any implementation of the hook exists, pytest-asyncio parametrizes
    every async test with a loop factory, a cost a suite that has not opted
    in should not pay."""

    @pytest.hookimpl(wrapper=True, optionalhook=True)
    def pytest_asyncio_loop_factories(
        self, config: pytest.Config, item: pytest.Item
    ) -> Generator[None, Mapping[str, LoopFactory] | None, Mapping[str, LoopFactory]]:
        """Give pytest-asyncio the loop this test asked for.

        A wrapper, so that a project's own implementation of the hook (the
        first to answer wins) is seen: when it answers for a test that asks
        for asyncspec's clock, its stock asyncio factories become ours, and
        any other factory is reported at collection (see
        :func:`_check_loop_was_chosen`) rather than silently winning.
        """
        theirs = yield
        try:
            effective = effective_for(config, item)
            ours = loop_factory(effective.clock, effective.loop)
        except (pytest.UsageError, UnsupportedLoopError):
            # pytest-asyncio calls this hook mid-collection, where an exception
            # becomes a collection traceback.  The same check runs again in
            # pytest_collection_modifyitems and reports a clean usage error there.
            effective = effective_global(config)
            ours = loop_factory(effective.clock, effective.loop)
        if theirs is None:
            return {f"{effective.loop}-{effective.clock}": ours}
        if (effective.clock, effective.loop) == ("real", "asyncio"):
            return theirs
        return {
            name: ours if _is_stock_asyncio_factory(factory) else factory
            for name, factory in theirs.items()
        }


def _is_stock_asyncio_factory(factory: object) -> bool:
    """Whether ``factory`` makes asyncio's own default loop, the loop our
    virtual-clock loop is faithful to (3.13 names it asyncio.EventLoop)."""
    import asyncio

    stock = {asyncio.new_event_loop, asyncio.SelectorEventLoop, getattr(asyncio, "EventLoop", None)}
    return factory in stock or factory is loop_factory("real", "asyncio")


LOOP_FACTORIES = "asyncspec-loop-factories"


def _need_loop_factories(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(LOOP_FACTORIES):
        config.pluginmanager.register(LoopFactories(), LOOP_FACTORIES)


@pytest.hookimpl(wrapper=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> Generator[None, None, None]:
    # A test (or its class or module) with an asyncspec marker may ask for
    # the virtual clock or uvloop: the loop-factory hook must exist before
    # pytest-asyncio parametrizes the test, which it does in its own
    # pytest_generate_tests (a wrapper runs before every plain implementation).
    marked = metafunc.definition.get_closest_marker(MARKER) is not None
    if marked and not metafunc.config.pluginmanager.has_plugin(LOOP_FACTORIES):
        _need_loop_factories(metafunc.config)
    return (yield)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # trylast: after other plugins and conftests have added their markers.
    try:
        _prepare_items(config, items)
    except pytest.UsageError as error:
        if not hasattr(config, "workerinput"):
            raise
        # In a pytest-xdist worker a usage error becomes the controller's
        # INTERNALERROR, which hides the message: report it as the error of
        # one test instead (every worker keeps the same one, as xdist needs).
        config.stash[WORKER_USAGE_ERROR_KEY] = str(error)
        config.hook.pytest_deselected(items=items[1:])
        del items[1:]


#: A usage error found while an xdist worker collected (see above).
WORKER_USAGE_ERROR_KEY: pytest.StashKey[str] = pytest.StashKey()


def _prepare_items(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Validate every marker, sync tests included, before anything runs, and
    note on each test the settings, claim and exploration it runs with."""
    unmarked = effective_global(config)
    opted_in = (unmarked.clock, unmarked.loop) != ("real", "asyncio")
    replay = replay_token(config)
    replayed = replay.test if replay is not None else None
    modes_on = bool(enabled_modes(unmarked))
    for item in items:
        # One walk over the markers of the test, its class and module: most
        # tests have neither an asyncspec nor a claim marker.
        marks = {mark.name for mark in item.iter_markers()}
        effective = unmarked
        if MARKER in marks or (replayed is not None and replays_function(replayed, item)):
            effective = effective_for(config, item)
        run_by_pytest_asyncio = is_async_test(item)
        if (MARKER in marks or _uses_loop_fixtures(item)) and not run_by_pytest_asyncio:
            _check_marked_test_is_run_by_pytest_asyncio(item)
        if not run_by_pytest_asyncio and (
            modes_on if effective is unmarked else enabled_modes(effective)
        ):
            from .outside_modes import why_outside

            reason = why_outside(item)
            if reason is not None:
                item.stash[OUTSIDE_MODES_KEY] = (reason, ", ".join(enabled_modes(effective)))
        if opted_in or effective is not unmarked:
            _check_loop(item, effective)
        item.stash[SETTINGS_KEY] = effective
        if ALLOW_LEAKS_MARKER in marks:
            item.stash[MARKED_LEAK_RULES_KEY] = _marked_leak_rules(item)
        if CLAIM_MARKER in marks:
            from .claims import claim_tag

            tag = claim_tag(item)
            if tag is not None:
                item.stash[CLAIM_KEY] = tag
        if effective.schedules or replay is not None:
            from .explored_tests import request_for

            request = request_for(
                item,
                effective,
                is_async=is_async_test(item),
                run_seed=run_seed(config),
                replay=replay,
            )
            if request is not None:
                item.stash[EXPLORE_KEY] = request
    if replay is not None and items and not any(item.name == replay.test for item in items):
        raise pytest.UsageError(
            f"--asyncspec-replay: the token replays a schedule of the test {replay.test!r}, "
            "and no selected test has that name: select it, e.g. "
            f"pytest 'path/to/test_file.py::{replay.test}' --asyncspec-replay=..."
        )
    tagged = [(item.nodeid, item.stash[CLAIM_KEY]) for item in items if CLAIM_KEY in item.stash]
    if tagged:
        from .claims import check_consistent

        check_consistent(tagged)


def _marked_leak_rules(item: pytest.Item) -> list[tuple[str, AllowRule]]:
    """The rules of the allow_leaks markers that reach ``item`` (its own,
    its class's, its module's), validated."""
    from ..checks.allow_rules import parse_leak_rules

    cache = item.config.stash.setdefault(MARKER_RULE_CACHE_KEY, {})
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
    return rules


#: Fixtures that read the running loop of an async test.
LOOP_FIXTURES = ("asyncspec_clock", TRACE_FIXTURE)


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
    if (effective.clock, effective.loop) == ("virtual", "uvloop"):
        # Said as for the whole run, with where each value came from.
        raise pytest.UsageError(f"{item.nodeid}: {virtual_on_uvloop_message(effective.sources)}")
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


def pytest_collection_finish(session: pytest.Session) -> None:
    # The final order (after every plugin's reordering and deselection) is the
    # same in every xdist worker, so it orders a claim's tests identically.
    for position, item in enumerate(session.items):
        item.stash[CLAIM_POSITION_KEY] = position


@pytest.fixture
def asyncspec_settings(request: pytest.FixtureRequest) -> Effective:
    """The clock and loop this test runs with, and where each choice came from."""
    node: pytest.Item = request.node
    if SETTINGS_KEY in node.stash:
        return node.stash[SETTINGS_KEY]
    return effective_for(request.config, node)


@pytest.fixture
def asyncspec_clock(request: pytest.FixtureRequest) -> LoopClock:
    """The running loop's clock, t = 0 at its first reading in the test.

    Exact to the tick under the virtual clock; under the real clock its
    assertions accept :data:`~pytest_asyncspec.checks.timing.REAL_CLOCK_TOLERANCE`.
    In a claim test, its checks given ``documented=`` are the claim's figures.
    """
    from ..checks.timing import LoopClock

    clock = LoopClock()
    request.node.stash[CLOCK_KEY] = clock
    return clock


@pytest.fixture
def asyncspec_claim(request: pytest.FixtureRequest) -> ClaimRecorder:
    """Records figures of this test's claim for the report: ``record(what, documented=,
    measured=, unit=)``.  Only for tests tagged ``@pytest.mark.claim``."""
    node: pytest.Item = request.node
    tag = node.stash.get(CLAIM_KEY, None)
    if tag is None:
        pytest.fail(
            f"{node.nodeid}: the asyncspec_claim fixture records figures of a claim, and "
            "this test has no @pytest.mark.claim marker; tag it with "
            "@pytest.mark.claim('<ID>', ...) or drop the fixture",
            pytrace=False,
        )
    from .claims import ClaimRecorder

    recorder = ClaimRecorder(claim_id=tag.id, control=tag.control)
    node.stash[RECORDER_KEY] = recorder
    return recorder


@pytest.fixture
def asyncspec_trace(request: pytest.FixtureRequest) -> TraceView:
    """The task steps of this test and its async fixtures, recorded as they run
    (queries, timed output, the phase of each task)."""
    from .observation import TraceView

    view = TraceView()
    request.node.stash[TRACE_VIEW_KEY] = view
    observation = request.node.stash.get(OBSERVATION_KEY, None)
    if observation is not None:
        # The runner came first: the observation already watches the setup.
        view._attach(observation)
    return view


# -- exploring schedules -------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    request = pyfuncitem.stash.get(EXPLORE_KEY, None)
    if request is None or (request.plan is None and request.replay is None):
        return None
    from .explored_tests import run_explored

    observation = pyfuncitem.stash.get(OBSERVATION_KEY, None)

    def trace_view() -> TraceView | None:
        # Each schedule sets the fixture up anew: its view joins the recording.
        view = pyfuncitem.stash.get(TRACE_VIEW_KEY, None)
        if view is not None and observation is not None:
            view._attach(observation)
        return view

    run_explored(
        pyfuncitem,
        request,
        failure_store(pyfuncitem.config),
        lambda: pyfuncitem.stash.get(CLOCK_KEY, None),
        trace_view,
        observation,
    )
    return True


# -- observing async tests -----------------------------------------------------
#
# An async test's observation spans its setup, call and teardown: it starts
# when pytest-asyncio's runner for the test's loop scope has made the loop
# (the runner fixture's setup, or at the test's setup when a wider-scoped
# runner is already up), so the tasks of the test's async fixtures are traced
# and gated too; and it stops after the async fixtures' teardown, before the
# runner closes the loop (a finalizer on the runner's fixture, which
# pytest-asyncio's async fixtures finalize before it; or the end of the
# test's teardown when the runner outlives the test).  Leaks are judged then.

#: pytest-asyncio's runner fixtures, one per loop scope ("_module_scoped_runner").
_RUNNER_PREFIX, _RUNNER_SUFFIX = "_", "_scoped_runner"
#: The loops of pytest-asyncio's runners that are up, by loop scope.
LIVE_LOOPS_KEY: pytest.StashKey[dict[str, Any]] = pytest.StashKey()
#: The async test being set up, run or torn down, when it is observed.
WATCHED_KEY: pytest.StashKey[Watched] = pytest.StashKey()


class Watched:
    """An async test that wants an observation, from its setup to its teardown."""

    __slots__ = ("failed", "finished", "fixtures", "item", "loop_scope", "observation")

    def __init__(self, item: pytest.Item, loop_scope: str) -> None:
        self.item = item
        self.loop_scope = loop_scope
        self.observation: Observation | None = None
        #: Fixtures whose setup is running (name, scope if wider than the
        #: test's): an async fixture's setup asks for the runner, so the
        #: observation may start inside it.
        self.fixtures: list[tuple[str, str | None]] = []
        self.finished = False
        #: The setup or the call failed.
        self.failed = False


def _loop_scope(item: pytest.Item) -> str:
    """The scope of the loop the test runs in, read as pytest-asyncio reads it."""
    marker = item.get_closest_marker("asyncio")
    scope = None
    if marker is not None:
        scope = marker.kwargs.get("loop_scope") or marker.kwargs.get("scope")
    return str(scope or item.config.getini("asyncio_default_test_loop_scope") or "function")


def _watch(item: pytest.Item) -> Watched | None:
    if not is_async_test(item) or SETTINGS_KEY not in item.stash:
        return None
    from .observation import wants_observation

    uses_fixture = TRACE_FIXTURE in getattr(item, "fixturenames", ())
    if not wants_observation(item.stash[SETTINGS_KEY], uses_fixture, trace_dir(item.config)):
        return None
    return Watched(item, _loop_scope(item))


def _start_observation(watched: Watched, loop: Any) -> None:
    item = watched.item
    effective = item.stash[SETTINGS_KEY]
    directory = trace_dir(item.config)
    uses_fixture = TRACE_FIXTURE in getattr(item, "fixturenames", ())
    from .observation import Observation

    observation = Observation(
        nodeid=item.nodeid,
        effective=effective,
        loop=loop,
        allow=item.config.stash.get(ALLOW_RULES_KEY, []),
        trace_dir=directory,
        replay_config=item.config,
        full_trace=effective.trace or uses_fixture or directory is not None,
        # The run's rules, then the test's markers': an explored test's
        # schedules are judged by them too, before the test's end.
        allow_leaks=[
            *item.config.stash.get(LEAK_RULES_KEY, []),
            *(rule for _, rule in item.stash.get(MARKED_LEAK_RULES_KEY, [])),
        ],
    )
    observation.start("setup")
    for name, scope in watched.fixtures:
        observation.fixture_setup_began(name, scope)
    watched.observation = observation
    item.stash[OBSERVATION_KEY] = observation
    view = item.stash.get(TRACE_VIEW_KEY, None)
    if view is not None:
        view._attach(observation)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """Start the observation once the test's runner is up, and note which
    fixture's setup makes each task.  tryfirst: outside pytest-asyncio's own
    wrapper, whose setup of an async fixture first sets up the runner."""
    name = fixturedef.argname
    config = request.config
    watched = config.stash.get(WATCHED_KEY, None)
    if name.startswith(_RUNNER_PREFIX) and name.endswith(_RUNNER_SUFFIX):
        runner = yield
        scope = name[len(_RUNNER_PREFIX) : -len(_RUNNER_SUFFIX)]
        _runner_is_up(config, fixturedef, scope, runner, watched)
        return runner
    if watched is None:
        return (yield)
    observation = watched.observation
    shared = None if fixturedef.scope == "function" else fixturedef.scope
    watched.fixtures.append((name, shared))
    if observation is not None:
        observation.fixture_setup_began(name, shared)
    try:
        return (yield)
    finally:
        watched.fixtures.pop()
        if watched.observation is not None:
            watched.observation.fixture_setup_ended()


def _runner_is_up(
    config: pytest.Config,
    fixturedef: pytest.FixtureDef[Any],
    scope: str,
    runner: object,
    watched: Watched | None,
) -> None:
    get_loop = getattr(runner, "get_loop", None)
    if get_loop is None:
        return
    loop = get_loop()
    live = config.stash.setdefault(LIVE_LOOPS_KEY, {})
    live[scope] = loop

    def runner_goes_down() -> None:
        if live.get(scope) is loop:
            del live[scope]
        _loop_closing(config, loop)

    # Registered now, so it runs after the finalizers that pytest-asyncio
    # adds for each async fixture set up on this runner (last in, first out),
    # and before the runner's own teardown closes the loop.
    fixturedef.addfinalizer(runner_goes_down)
    budgeted = config.stash.get(BUDGETED_KEY, None)
    if budgeted is not None and _loop_scope(budgeted) == scope:
        _restart_stall_budget(loop, budgeted)
    if watched is not None and watched.observation is None and watched.loop_scope == scope:
        _start_observation(watched, loop)


def _loop_closing(config: pytest.Config, loop: object) -> None:
    """The runner of ``loop`` is about to close it: the observation on it ends here."""
    watched = config.stash.get(WATCHED_KEY, None)
    observation = None if watched is None else watched.observation
    if watched is None or observation is None or observation.loop is not loop:
        return
    if observation.phase == "setup":
        # The runner is replaced while the test is being set up (another
        # loop factory): what it watched never reached the test.
        observation.stop()
        watched.observation = None
        del watched.item.stash[OBSERVATION_KEY]
        return
    problems = _finish_observation(watched)
    if problems:
        pytest.fail(problems, pytrace=False)


def _finish_observation(watched: Watched) -> str:
    """Stop the observation and judge the teardown: its blocking steps, and
    the leaks of the whole test (an error under leaks=error, else a warning)."""
    observation = watched.observation
    if observation is None or watched.finished:
        return ""
    watched.finished = True
    item = watched.item
    observation.stop()
    problems = [observation.blocking_failures("teardown")]
    # A test that failed was cut short before its own clean-up: what it left
    # running says nothing more than its failure does.
    leaks = "" if watched.failed else observation.leaks()
    if leaks and observation.effective.leaks == "error":
        problems.append(leaks)
    elif leaks:
        item.warn(AsyncspecLeakWarning(leaks))
    return "\n\n".join(problem for problem in problems if problem)


# A plain implementation, not a wrapper: failing inside every plugin's
# setup wrapper leaves their teardown the state it expects.
@pytest.hookimpl(tryfirst=True, specname="pytest_runtest_setup")
def pytest_runtest_setup_checks(item: pytest.Item) -> None:
    error = item.config.stash.get(WORKER_USAGE_ERROR_KEY, None)
    if error is not None:
        pytest.fail(f"usage error, no test was run: {error}", pytrace=False)
    # Before any fixture is set up: an async fixture may hang too.
    _arm_hang_watch(item)


def _arm_hang_watch(item: pytest.Item) -> None:
    """Watch the loop of an async test for a hang
    (see :mod:`~pytest_asyncspec.checks.hang_watch`)."""
    effective = item.stash.get(SETTINGS_KEY, None)
    if effective is None or effective.hang_after is None or effective.loop != "asyncio":
        return
    if not is_async_test(item):
        return
    from ..checks.hang_watch import Armed, HangWatch

    config = item.config
    watch = config.stash.get(HANG_WATCH_KEY, None)
    if watch is None:
        watch = config.stash[HANG_WATCH_KEY] = HangWatch()
    scope = _loop_scope(item)
    stash = item.stash

    def get_loop() -> Any:
        return config.stash.get(LIVE_LOOPS_KEY, {}).get(scope)

    def get_tracer() -> Any:
        return getattr(stash.get(OBSERVATION_KEY, None), "tracer", None)

    known = config.stash.get(START_THREADS_KEY, None)
    stash[HANG_KEY] = watch.arm(Armed(effective.hang_after, get_loop, get_tracer, known))


@pytest.hookimpl(wrapper=True, tryfirst=True, specname="pytest_runtest_teardown")
def pytest_runtest_teardown_hang_watch(item: pytest.Item) -> Generator[None, None, None]:
    """The test is over once its fixtures are torn down: stop watching it."""
    try:
        return (yield)
    finally:
        armed = item.stash.get(HANG_KEY, None)
        watch = item.config.stash.get(HANG_WATCH_KEY, None)
        if armed is not None and watch is not None:
            watch.disarm(armed)


def _hang_failure(item: pytest.Item, report: pytest.TestReport) -> bool:
    """Make ``report`` the failure of a hang diagnosed in its phase (or
    before it, and not yet reported); True when the test hung."""
    armed = item.stash.get(HANG_KEY, None)
    if armed is None:
        return False
    if report.when == "teardown":
        del item.stash[HANG_KEY]
    if armed.fired and not armed.reported:
        armed.reported = True
        report.outcome = "failed"
        report.longrepr = armed.message
    return armed.fired


# -- the stall budget -----------------------------------------------------------
#
# Each async test restarts its loop's stall budget (see .stall): when a
# wider-scoped loop is already up, at the test's setup; else when the
# test's own runner makes the loop (_runner_is_up).

#: The async test being set up, run or torn down on the virtual clock.
BUDGETED_KEY: pytest.StashKey[pytest.Item] = pytest.StashKey()


@pytest.hookimpl(wrapper=True, tryfirst=True, specname="pytest_runtest_setup")
def pytest_runtest_setup_budget(item: pytest.Item) -> Generator[None, None, None]:
    if is_async_test(item) and SETTINGS_KEY in item.stash:
        item.config.stash[BUDGETED_KEY] = item
        loop = item.config.stash.get(LIVE_LOOPS_KEY, {}).get(_loop_scope(item))
        if loop is not None:
            _restart_stall_budget(loop, item)
    return (yield)


@pytest.hookimpl(wrapper=True, specname="pytest_runtest_teardown")
def pytest_runtest_teardown_budget(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    finally:
        if item.config.stash.get(BUDGETED_KEY, None) is item:
            del item.config.stash[BUDGETED_KEY]


def _restart_stall_budget(loop: object, item: pytest.Item) -> None:
    """The test begins on ``loop``: its stall and time budgets count from now."""
    restart_stall = getattr(loop, "restart_stall_budget", None)
    restart_time = getattr(loop, "restart_time_budget", None)
    if restart_stall is None or restart_time is None:
        return  # not the virtual clock's loop
    if not getattr(loop, "is_closed", lambda: True)():
        settings = item.stash[SETTINGS_KEY]
        restart_stall(settings.stall_budget)
        restart_time(settings.time_budget)


# trylast: inside pytest's own capture of the phase, so the output and
# warning capture entered for the phase are left before pytest's.
@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    watched = _watch(item)
    if watched is None:
        return (yield)
    item.config.stash[WATCHED_KEY] = watched
    loop = item.config.stash.get(LIVE_LOOPS_KEY, {}).get(watched.loop_scope)
    if loop is not None and not loop.is_closed():
        # A wider-scoped runner is already up: its fixtures' setup is watched
        # from the start.
        _start_observation(watched, loop)
    yield from _watch_phase(item, "setup")


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _watch_phase(item, "call"))


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    watched = item.config.stash.get(WATCHED_KEY, None)
    if watched is None or watched.item is not item:
        return (yield)
    observation = watched.observation
    if observation is not None:
        observation.begin_phase("teardown")
    try:
        yield
    except BaseException:
        # pytest's teardown failed first; ours goes beside it as a section.
        if observation is not None:
            observation.blocking_report = _finish_observation(watched)
        raise
    finally:
        del item.config.stash[WATCHED_KEY]
    # The runner outlives the test (a wider loop scope): the test's own
    # fixtures are torn down by now, and the loop is still open.
    problems = _finish_observation(watched)
    if problems:
        pytest.fail(problems, pytrace=False)


def _watch_phase(item: pytest.Item, phase: str) -> Generator[None, object, object]:
    """Run pytest's ``phase`` of the test with the observation watching it, and
    fail the phase on its blocking steps (an error at setup, a failure of
    the test in the call)."""
    # The test's own error is shown from the test down; our own pytest.fail
    # is shown without a traceback, and hiding its only frame would add
    # pytest's "All traceback entries are hidden" line.
    __tracebackhide__ = _unless_our_failure
    watched = item.config.stash.get(WATCHED_KEY, None)
    if watched is None or watched.item is not item:
        return (yield)
    # The setup's observation begins inside the setup, with the runner.
    if phase != "setup" and watched.observation is not None:
        watched.observation.begin_phase(phase)
    try:
        outcome = yield
    except BaseException:
        watched.failed = True
        observation = watched.observation
        if observation is None:
            raise
        # The phase failed on its own; its blocking steps still belong in
        # the report, as a section beside its own error.
        observation.end_phase()
        try:
            observation.blocking_report = observation.blocking_failures(phase)
        except Exception:
            # Our report must never replace the test's own error.
            observation.internal_errors.append(traceback.format_exc())
        raise
    observation = watched.observation
    if observation is None:
        return outcome
    observation.end_phase()
    problems = observation.blocking_failures(phase)
    if problems:
        watched.failed = True
        pytest.fail(problems, pytrace=False)
    return outcome


def _unless_our_failure(excinfo: pytest.ExceptionInfo[BaseException]) -> bool:
    return not excinfo.errisinstance(pytest.fail.Exception)


class AsyncspecLeakWarning(pytest.PytestWarning):
    """Tasks or coroutines a test left behind (asyncspec_leaks = warn)."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    hung = _hang_failure(item, report)
    if not hung and call.excinfo is not None and report.failed:
        _present_deadlock(item, report, call.excinfo)
    _attach_claim(item, report)
    if item.config.stash.get(HTML_KEY, False):
        setattr(report, report_fields.POSITION, item.stash.get(CLAIM_POSITION_KEY, 0))
    outside = item.stash.get(OUTSIDE_MODES_KEY, None)
    if outside is not None and call.when == "call":
        setattr(report, report_fields.OUTSIDE_MODES, list(outside))
    request = item.stash.get(EXPLORE_KEY, None)
    if request is not None and call.when == "call":
        if request.summary:
            setattr(report, report_fields.EXPLORATION_SUMMARY, request.summary)
        if request.report:
            from .explored_tests import SECTION

            report.sections.append((SECTION, request.report))
    observation = item.stash.get(OBSERVATION_KEY, None)
    if observation is None:
        if call.when == "teardown":
            _release_observation(item)
        return report
    try:
        _attach_observation(item, report, call, observation, hung)
    except Exception:
        observation.internal_errors.append(traceback.format_exc())
    # Shown with the call (or the failed setup); what goes wrong later is
    # shown with the teardown, whose sections pytest prints when their title
    # says "teardown".
    if observation.internal_errors and (call.when != "setup" or report.failed):
        at = " at teardown" if call.when == "teardown" else ""
        report.sections.append(
            (
                f"asyncspec internal error{at} (the test's own outcome stands)",
                "\n".join(observation.internal_errors),
            )
        )
        observation.internal_errors.clear()
    if call.when == "teardown":
        # The teardown's report is the test's last: it has what it needs.
        _release_observation(item)
    return report


def _present_deadlock(
    item: pytest.Item, report: pytest.TestReport, excinfo: pytest.ExceptionInfo[BaseException]
) -> None:
    """A deadlock is shown by its report alone; a timeout that ended one says so."""
    clock = sys.modules.get("pytest_asyncspec.clock.virtual_loop")
    if clock is None:
        return  # no virtual loop ran: no deadlock of ours
    if excinfo.errisinstance(clock.DeadlockError) and not item.config.option.fulltrace:
        # Raised by the loop, not by the test's code: the frames above it
        # (pytest-asyncio's runner, run_until_complete) say nothing, and the
        # report already names every waiting task's place.
        report.longrepr = (
            f"{excinfo.value}\n\n{excinfo.typename} (--full-trace shows where the loop raised it)"
        )
        return

    if _ended_by_timeout(excinfo.value) and item.config.stash.get(BUDGETED_KEY, None) is item:
        loop = item.config.stash.get(LIVE_LOOPS_KEY, {}).get(_loop_scope(item))
        hidden = getattr(loop, "hidden_deadlock", None)
        if hidden is not None:
            from ..clock.stall import describe_hidden_deadlock

            report.sections.append(
                ("asyncspec deadlock ended by a timeout", describe_hidden_deadlock(hidden))
            )


def _ended_by_timeout(error: BaseException) -> bool:
    """Whether ``error`` is a timeout or a cancellation, alone or as the
    only kind of error in an exception group (a TaskGroup whose child's
    ``wait_for`` timed out, and its siblings cancelled)."""
    import asyncio  # loaded by now: pytest-asyncio runs the test

    # asyncio.TimeoutError is not the built-in one on Python 3.10.
    ended = (TimeoutError, asyncio.TimeoutError, asyncio.CancelledError)
    if isinstance(error, ended):
        return True
    # BaseExceptionGroup, or its backport (exceptiongroup) on Python 3.10.
    exceptions = getattr(error, "exceptions", None)
    if "ExceptionGroup" not in type(error).__name__ or not isinstance(exceptions, tuple):
        return False
    return all(_ended_by_timeout(inner) for inner in exceptions)


def _attach_observation(
    item: pytest.Item,
    report: pytest.TestReport,
    call: pytest.CallInfo[None],
    observation: Observation,
    hung: bool = False,
) -> None:
    # Every phase carries its own blocking places and collector pauses: a
    # fixture's setup or teardown may block too.
    _attach_blocking(report, observation, call.when)
    collector = observation.collector_report(call.when)
    if collector:
        # pytest shows a teardown's sections beside a failure when their title says so.
        at = " at teardown" if call.when == "teardown" else ""
        report.sections.append((f"asyncspec garbage collector{at}", collector))
    if observation.blocking_report:
        report.sections.append(("asyncspec blocking calls", observation.blocking_report))
        observation.blocking_report = ""
    if call.when == "teardown":
        _attach_leak_rules(item, report, observation)
        # The whole test is recorded by now, fixtures' teardown included.
        observation.write_trace_file(trace_max_steps(item.config))
        if observation.trace_file is not None:
            report.user_properties.append((report_fields.TRACE_FILE, str(observation.trace_file)))
        if observation.trace_clipped is not None:
            kept, recorded = observation.trace_clipped
            clipped = [str(observation.trace_file), kept, recorded]
            report.user_properties.append((report_fields.TRACE_CLIPPED, clipped))
        return
    if call.when != "call":
        return
    request = item.stash.get(EXPLORE_KEY, None)
    _attach_timeline(item, report, observation)
    if report.failed:
        # pytest-timeout's failure; the hang watch's own already is the report.
        if not hung and call.excinfo is not None and "Timeout" in str(call.excinfo.value):
            report.sections.append(("asyncspec pending tasks", observation.hang()))
        # An explored test's report has the failing schedule's timeline;
        # the whole trace would draw every schedule.
        timeline = "" if request is not None and request.report else observation.timeline()
        if timeline:
            report.sections.append(("asyncspec timeline", timeline))


def _failing_run(request: ExploreRequest | None) -> tuple[str, str | None] | None:
    """An explored test's failing run, as its schedule report names it: its
    first line, and the replay command."""
    if request is None or not request.report:
        return None
    lines = request.report.splitlines()
    replay = next((line[len("replay: ") :] for line in lines if line.startswith("replay: ")), None)
    return lines[0], replay


def _attach_leak_rules(
    item: pytest.Item, report: pytest.TestReport, observation: Observation
) -> None:
    """Which leak allow rules took part in the test's leak check, and which
    matched (the run summary reports the ones that never did)."""
    if observation.effective.leaks == "off":
        return
    used = [rule.text for rule in item.config.stash.get(LEAK_RULES_KEY, []) if rule.used]
    marked = [[key, rule.used] for key, rule in item.stash.get(MARKED_LEAK_RULES_KEY, [])]
    if used or marked:
        setattr(report, report_fields.LEAK_RULES, {"used": used, "marked": marked})


def _release_observation(item: pytest.Item) -> None:
    """Drop what watched the test once its last report is made.

    pytest keeps every item, and so its stash, until the session ends: an
    observation left there would keep the test's loop, step log, task table
    and captured output alive for the rest of the run (about 100 KB a test).
    What the end-of-run reports need is already on the test's reports (the
    teardown's, made just before: leaks, leak rules, trace file).
    """
    if OBSERVATION_KEY in item.stash:
        del item.stash[OBSERVATION_KEY]
    view = item.stash.get(TRACE_VIEW_KEY, None)
    if view is not None:
        view._attach(None)
        del item.stash[TRACE_VIEW_KEY]


def _attach_blocking(report: pytest.TestReport, observation: Observation, phase: str) -> None:
    """Carry the blocking places of the report's phase on it, for the run's
    summary (each phase's report its own: none is counted twice)."""
    if observation.effective.max_blocking is None:
        return
    for name, allowed in (
        (report_fields.BLOCKING, False),
        (report_fields.ALLOWED_BLOCKING, True),
    ):
        groups = observation.blocking_groups(phase, allowed=allowed)
        if groups:
            setattr(report, name, [{**group.payload(), "phase": phase} for group in groups])


def _attach_claim(item: pytest.Item, report: pytest.TestReport) -> None:
    """Carry the test's claim data on its report (xdist serialises report attributes)."""
    tag = item.stash.get(CLAIM_KEY, None)
    if tag is None:
        return
    from .claims import item_payload, timing_figures

    recorder = item.stash.get(RECORDER_KEY, None)
    figures = [] if tag.control else timing_figures(item.stash.get(CLOCK_KEY, None))
    if recorder is not None and not tag.control:
        figures.extend(recorder.figures)
    payload = item_payload(
        item,
        tag,
        report,
        effective=item.stash[SETTINGS_KEY],
        position=item.stash.get(CLAIM_POSITION_KEY, 0),
        figures=figures,
    )
    setattr(report, report_fields.CLAIM, payload)


def _attach_timeline(
    item: pytest.Item, report: pytest.TestReport, observation: Observation
) -> None:
    """Carry a traced test's timeline on its report, for the HTML page (only
    when one is asked for: building it decodes up to MAX_STEPS steps)."""
    trace = observation.trace
    if not item.config.stash.get(HTML_KEY, False) or not observation.full_trace or trace is None:
        return
    from ..checks.blocking_groups import place_of
    from .html_report import pack_timeline, timeline_payload

    # The steps the blocking gate judged, for the page to draw them apart.
    gate: dict[int, tuple[str, str]] = {}
    for phase in ("setup", "call"):
        for allowed in (False, True):
            for group in observation.blocking_groups(phase, allowed=allowed):
                for event in group.events:
                    if event.step_index is None:
                        continue
                    held = f"{event.duration:.3f} s of {event.clock} time at {place_of(event)}"
                    gate[event.step_index] = (
                        ("allowed", f"blocking allowed by {group.rule}: {held}")
                        if allowed
                        else ("offending", f"blocking over max_blocking: {held}")
                    )
    request = item.stash.get(EXPLORE_KEY, None)
    payload = timeline_payload(
        trace,
        test=item.nodeid,
        outcome=report.outcome,
        position=item.stash.get(CLAIM_POSITION_KEY, 0),
        virtual=trace.virtual,
        phases=observation.task_phases(trace),
        runs=observation.runs,
        failing_run=_failing_run(request) if report.failed else None,
        gate=gate,
        threshold=observation.effective.max_blocking,
    )
    setattr(report, report_fields.TIMELINE, pack_timeline(payload))
