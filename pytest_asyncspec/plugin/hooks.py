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

from ..clock.loops import (
    LoopFactory,
    UnsupportedLoopError,
    is_stock_asyncio_factory,
    loop_factory,
)
from . import report_fields
from .planning import (
    LOOP_FACTORIES,
    TRACE_FIXTURE,
    on_anyio_runner,
    on_watched_loop,
    prepare_items,
    run_seed,
    run_settings,
    settings_for,
)
from .run_summary import RunSummary
from .settings import (
    ALLOW_LEAKS_HELP,
    CLAIM_HELP,
    MARKER,
    MARKER_HELP,
    Effective,
    add_options,
    allow_blocking_rules,
    allow_leak_rules,
    enabled_modes,
    html_path,
    replay_token,
    report_path,
    trace_dir,
    trace_max_steps,
    validate_config,
)
from .state import RunState, run_state, state_of

if TYPE_CHECKING:
    # Loaded when a run or a test needs them (claims when a test is tagged
    # with one, exploration when one explores, tracing when one is traced):
    # pytest starts as fast with the plugin installed as without it.
    from ..checks.allow_rules import AllowRule
    from ..checks.timing import LoopClock
    from .claims import ClaimRecorder
    from .failure_store import FailureStore
    from .observation import Observation, TraceView
    from .state import TestState


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.addinivalue_line("markers", CLAIM_HELP)
    config.addinivalue_line("markers", ALLOW_LEAKS_HELP)
    run = run_state(config)
    run.start_threads = {thread.ident for thread in threading.enumerate()}
    validate_config(config)
    run.allow_rules = _run_rules(config, "blocking")
    run.leak_rules = _run_rules(config, "leaks")
    global_settings = run_settings(config)  # a contradiction of the run stops it here
    if global_settings.clock != "real" or global_settings.loop != "asyncio":
        try:
            loop_factory(global_settings.clock, global_settings.loop)
        except UnsupportedLoopError as error:
            chosen = f"loop={global_settings.loop} (from {global_settings.sources['loop']})"
            raise pytest.UsageError(f"{chosen}: {error}") from None
        _need_loop_factories(config)
    if replay_token(config) is not None:  # decoded now: a bad token stops the run here
        _need_loop_factories(config)
    run.html = html_path(config) is not None
    if not hasattr(config, "workerinput"):
        # Claims, explored tests' summaries and fired allow-list rules are
        # gathered where reports arrive: here, or on the xdist controller; a
        # worker only attaches each test's data to its reports.
        summary = RunSummary(
            report_path(config),
            run.allow_rules,
            trace_dir(config),
            leak_rules=run.leak_rules,
        )
        config.pluginmanager.register(summary, "asyncspec-summary")
        page = html_path(config)
        if page is not None:
            from .html_report import HtmlReport

            config.pluginmanager.register(HtmlReport(page, summary.claims()), "asyncspec-html")


def failure_store(config: pytest.Config) -> FailureStore:
    """Where failing schedules are kept between runs (pytest's cache)."""
    run = run_state(config)
    if run.store is None:
        from .failure_store import FailureStore

        run.store = FailureStore(getattr(config, "cache", None))
    return run.store


def pytest_unconfigure(config: pytest.Config) -> None:
    watch = run_state(config).hang_watch
    if watch is not None:
        watch.stop()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: hand the run's exploration seed to each worker, and the
    directory where the shards of an explored test tell each other of a
    failure (see .shards)."""
    node.workerinput["asyncspec_seed"] = run_seed(node.config)
    run = run_state(node.config)
    if run.shard_stop_dir is None:
        from .shards import stop_dir_for_workers

        run.shard_stop_dir = stop_dir_for_workers()
    node.workerinput["asyncspec_shard_stop_dir"] = run.shard_stop_dir


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
    effective = run_settings(config)
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
            effective = settings_for(config, item)
            ours = loop_factory(effective.clock, effective.loop)
        except (pytest.UsageError, UnsupportedLoopError):
            # pytest-asyncio calls this hook mid-collection, where an exception
            # becomes a collection traceback.  The same check runs again in
            # pytest_collection_modifyitems and reports a clean usage error there.
            effective = run_settings(config)
            ours = loop_factory(effective.clock, effective.loop)
        if theirs is None:
            return {f"{effective.loop}-{effective.clock}": ours}
        if (effective.clock, effective.loop) == ("real", "asyncio"):
            return theirs
        return {
            name: ours if is_stock_asyncio_factory(factory) else factory
            for name, factory in theirs.items()
        }


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
        prepare_items(config, items)
        if hasattr(config, "workerinput"):
            from .shards import split_explored

            split_explored(config, items)
    except pytest.UsageError as error:
        if not hasattr(config, "workerinput"):
            raise
        # In a pytest-xdist worker a usage error becomes the controller's
        # INTERNALERROR, which hides the message: report it as the error of
        # one test instead (every worker keeps the same one, as xdist needs).
        run_state(config).worker_usage_error = str(error)
        config.hook.pytest_deselected(items=items[1:])
        del items[1:]


def pytest_collection_finish(session: pytest.Session) -> None:
    # The final order (after every plugin's reordering and deselection) is the
    # same in every xdist worker, so it orders a claim's tests identically.
    for position, item in enumerate(session.items):
        state = state_of(item)
        if state is not None:
            state.position = position


@pytest.fixture
def asyncspec_settings(request: pytest.FixtureRequest) -> Effective:
    """The clock and loop this test runs with, and where each choice came from."""
    node: pytest.Item = request.node
    state = state_of(node)
    return state.plan.settings if state is not None else settings_for(request.config, node)


@pytest.fixture
def asyncspec_clock(request: pytest.FixtureRequest) -> LoopClock:
    """The running loop's clock, t = 0 at its first reading in the test.

    Exact to the tick under the virtual clock; under the real clock its
    assertions accept :data:`~pytest_asyncspec.checks.timing.REAL_CLOCK_TOLERANCE`.
    In a claim test, its checks given ``documented=`` are the claim's figures.
    """
    from ..checks.timing import LoopClock

    clock = LoopClock()
    state = state_of(request.node)
    if state is not None:
        state.clock = clock
    return clock


@pytest.fixture
def asyncspec_claim(request: pytest.FixtureRequest) -> ClaimRecorder:
    """Records figures of this test's claim for the report: ``record(what, documented=,
    measured=, unit=)``.  Only for tests tagged ``@pytest.mark.claim``."""
    node: pytest.Item = request.node
    state = state_of(node)
    tag = None if state is None else state.plan.claim
    if state is None or tag is None:
        pytest.fail(
            f"{node.nodeid}: the asyncspec_claim fixture records figures of a claim, and "
            "this test has no @pytest.mark.claim marker; tag it with "
            "@pytest.mark.claim('<ID>', ...) or drop the fixture",
            pytrace=False,
        )
    from .claims import ClaimRecorder

    recorder = state.recorder = ClaimRecorder(claim_id=tag.id, control=tag.control)
    return recorder


@pytest.fixture
def asyncspec_trace(request: pytest.FixtureRequest) -> TraceView:
    """The task steps of this test and its async fixtures, recorded as they run
    (queries, timed output, the phase of each task)."""
    from .observation import TraceView, show_observation

    view = TraceView()
    state = state_of(request.node)
    if state is not None:
        state.trace_view = view
        if state.observation is not None:
            # The runner came first: the observation already watches the setup.
            show_observation(view, state.observation)
    return view


@pytest.fixture
def _asyncspec_anyio_runner(request: pytest.FixtureRequest) -> Generator[None, None, None]:
    """Holds anyio's test runner for a test anyio runs, on the loop the
    test's settings ask for, and watches it (see :mod:`.anyio_tests`)."""
    from .anyio_tests import BACKEND_FIXTURE, held_runner, split_backend

    item: pytest.Item = request.node
    state = state_of(item)
    if state is None:
        yield
        return
    name, options = split_backend(request.getfixturevalue(BACKEND_FIXTURE), item.nodeid)
    if name != "asyncio":
        _outside_on_backend(item, state, name)
        yield
        return
    from .anyio_tests import LOOP_SCOPE, loop_fits, options_for, shared_runner_message

    settings = state.plan.settings
    run = run_state(item.config)
    with held_runner(name, options_for(options, settings, item.nodeid)) as loop:
        if not loop_fits(loop, settings):
            pytest.fail(shared_runner_message(item.nodeid, loop, settings), pytrace=False)
        run.live_loops[LOOP_SCOPE] = loop
        if run.budgeted is item:
            _restart_stall_budget(loop, item)
        watched = run.watched
        if watched is not None and watched.item is item and watched.observation is None:
            _start_observation(watched, loop)
        try:
            yield
        finally:
            # Judged here, after the test's other fixtures are torn down and
            # before the runner may close and cancel what the test left.
            problems = "" if watched is None else _finish_observation(watched)
    if getattr(loop, "is_closed", lambda: True)() and run.live_loops.get(LOOP_SCOPE) is loop:
        del run.live_loops[LOOP_SCOPE]
    if problems:
        pytest.fail(problems, pytrace=False)


def _outside_on_backend(item: pytest.Item, state: TestState, backend: str) -> None:
    """A test anyio runs on a backend other than asyncio (known only now,
    from the project's own anyio_backend fixture): no mode reaches it."""
    from .anyio_tests import outside_reason
    from .settings import enabled_modes

    modes = enabled_modes(state.plan.settings)
    if modes and state.outside_modes is None:
        state.outside_modes = (outside_reason(backend), ", ".join(modes))


# -- exploring schedules -------------------------------------------------------


def _explores(state: TestState | None) -> bool:
    """Whether the test's call explores schedules (or replays one)."""
    request = None if state is None else state.plan.explore
    if state is None or request is None or (request.plan is None and request.replay is None):
        return False
    # A test anyio runs on another backend than asyncio (found at setup) runs once.
    return state.outside_modes is None


@pytest.hookimpl(wrapper=True, specname="pytest_pyfunc_call")
def pytest_pyfunc_call_on_anyio(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """An explored test that anyio runs: its body becomes a synchronous run
    on anyio's runner, which each schedule calls (as pytest-asyncio's
    wrapper of a test is), and anyio's own hook, seeing no coroutine
    function, leaves the call to the explorer."""
    state = state_of(pyfuncitem)
    if not _explores(state) or not on_anyio_runner(pyfuncitem):
        return (yield)
    from .anyio_tests import body_on_runner

    test = pyfuncitem.obj
    pyfuncitem.obj = body_on_runner(pyfuncitem, test)
    try:
        return (yield)
    finally:
        pyfuncitem.obj = test


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    state = state_of(pyfuncitem)
    if state is None or not _explores(state):
        return None
    request = state.plan.explore
    assert request is not None
    from .explored_tests import ExplorationResult, run_explored
    from .observation import show_observation

    observation = state.observation
    result = ExplorationResult()

    def trace_view() -> TraceView | None:
        # Each schedule sets the fixture up anew: its view joins the recording.
        view = state.trace_view
        if view is not None and observation is not None:
            show_observation(view, observation)
        return view

    try:
        run_explored(
            pyfuncitem,
            request,
            result,
            failure_store(pyfuncitem.config),
            lambda: state.clock,
            trace_view,
            observation,
            loop=run_state(pyfuncitem.config).live_loops.get(_loop_scope(pyfuncitem)),
        )
    finally:
        state.exploration_report = result.report
        state.exploration_summary = result.summary
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


class Watched:
    """An async test that wants an observation, from its setup to its teardown."""

    __slots__ = ("failed", "finished", "fixtures", "item", "loop_scope", "state")

    def __init__(self, item: pytest.Item, state: TestState, loop_scope: str) -> None:
        self.item = item
        self.state = state
        self.loop_scope = loop_scope
        #: Fixtures whose setup is running (name, scope if wider than the
        #: test's): an async fixture's setup asks for the runner, so the
        #: observation may start inside it.
        self.fixtures: list[tuple[str, str | None]] = []
        self.finished = False
        #: The setup or the call failed.
        self.failed = False

    @property
    def observation(self) -> Observation | None:
        """The test's observation, once its runner's loop is up (kept on its state)."""
        return self.state.observation


def _loop_scope(item: pytest.Item) -> str:
    """The scope of the loop the test runs in, read as pytest-asyncio reads it
    (a test anyio runs is on anyio's runner's loop, however long it lives)."""
    if on_anyio_runner(item):
        from .anyio_tests import LOOP_SCOPE

        return LOOP_SCOPE
    marker = item.get_closest_marker("asyncio")
    scope = None
    if marker is not None:
        scope = marker.kwargs.get("loop_scope") or marker.kwargs.get("scope")
    return str(scope or item.config.getini("asyncio_default_test_loop_scope") or "function")


def _watch(item: pytest.Item) -> Watched | None:
    state = state_of(item)
    if state is None or not on_watched_loop(item):
        return None
    from .observation import wants_observation

    uses_fixture = TRACE_FIXTURE in getattr(item, "fixturenames", ())
    if not wants_observation(state.plan.settings, uses_fixture, trace_dir(item.config)):
        return None
    return Watched(item, state, _loop_scope(item))


def _start_observation(watched: Watched, loop: Any) -> None:
    _observe(watched.item, watched.state, loop, "setup", watched.fixtures, watched.loop_scope)


def _observe(
    item: pytest.Item,
    state: TestState,
    loop: Any,
    phase: str,
    fixtures: list[tuple[str, str | None]] | None = None,
    loop_scope: str | None = None,
) -> Observation:
    """Start watching ``loop`` for the test, from ``phase`` on (inside
    ``fixtures``' setup, when the loop came up there; ``loop_scope``: the
    runner's, when a runner pytest's fixtures hold made it)."""
    effective = state.plan.settings
    run = run_state(item.config)
    directory = trace_dir(item.config)
    uses_fixture = TRACE_FIXTURE in getattr(item, "fixturenames", ())
    from .observation import Observation, show_observation

    observation = Observation(
        nodeid=item.nodeid,
        effective=effective,
        loop=loop,
        allow=run.allow_rules,
        trace_dir=directory,
        replay_config=item.config,
        full_trace=effective.trace or uses_fixture or directory is not None,
        # The run's rules, then the test's markers': an explored test's
        # schedules are judged by them too, before the test's end.
        allow_leaks=[
            *run.leak_rules,
            *(rule for _, rule in state.plan.marked_leak_rules),
            *(_machinery_rules(loop_scope) if loop_scope is not None else ()),
        ],
    )
    observation.start(phase)
    for name, scope in fixtures or ():
        observation.fixture_setup_began(name, scope)
    state.observation = observation
    if state.trace_view is not None:
        show_observation(state.trace_view, observation)
    return observation


def _machinery_rules(loop_scope: str) -> list[AllowRule]:
    """Tasks of the runner itself that outlive every test on purpose."""
    from .anyio_tests import LOOP_SCOPE, machinery_rules

    return machinery_rules() if loop_scope == LOOP_SCOPE else []


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """Start the observation once the test's runner is up, and note which
    fixture's setup makes each task.  tryfirst: outside pytest-asyncio's own
    wrapper, whose setup of an async fixture first sets up the runner."""
    name = fixturedef.argname
    config = request.config
    watched = run_state(config).watched
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
    run = run_state(config)
    live = run.live_loops
    live[scope] = loop

    def runner_goes_down() -> None:
        if live.get(scope) is loop:
            del live[scope]
        _loop_closing(config, loop)

    # Registered now, so it runs after the finalizers that pytest-asyncio
    # adds for each async fixture set up on this runner (last in, first out),
    # and before the runner's own teardown closes the loop.
    fixturedef.addfinalizer(runner_goes_down)
    budgeted = run.budgeted
    if budgeted is not None and _loop_scope(budgeted) == scope:
        _restart_stall_budget(loop, budgeted)
    if watched is not None and watched.observation is None and watched.loop_scope == scope:
        _start_observation(watched, loop)


def _loop_closing(config: pytest.Config, loop: object) -> None:
    """The runner of ``loop`` is about to close it: the observation on it ends here."""
    watched = run_state(config).watched
    observation = None if watched is None else watched.observation
    if watched is None or observation is None or observation.loop is not loop:
        return
    if observation.phase == "setup":
        # The runner is replaced while the test is being set up (another
        # loop factory): what it watched never reached the test.
        observation.stop()
        watched.state.observation = None
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
    error = run_state(item.config).worker_usage_error
    if error is not None:
        pytest.fail(f"usage error, no test was run: {error}", pytrace=False)
    # Before any fixture is set up: an async fixture may hang too.
    _arm_hang_watch(item)


def _arm_hang_watch(item: pytest.Item) -> None:
    """Watch the loop of an async test for a hang
    (see :mod:`~pytest_asyncspec.checks.hang_watch`)."""
    state = state_of(item)
    if state is None:
        return
    effective = state.plan.settings
    # On 3.10 unittest awaits every part of a test case from one task of its
    # own, behind a plain future: the watch cannot cancel the hung part, and
    # unittest's teardown of its loop would wait on it again.  From 3.11 it
    # runs each part as a task of asyncio.Runner, which the watch cancels.
    # A test case that asks for no mode keeps its loop untouched, unseen by
    # the plugin: there is no loop to watch.
    unittest_case = state.plan.unittest_case
    if unittest_case and (sys.version_info < (3, 11) or not _case_needs_seam(item, state)):
        return
    if (
        effective.hang_after is None
        or effective.loop != "asyncio"
        or not (unittest_case or on_watched_loop(item))
    ):
        return
    from ..checks.hang_watch import Armed, HangWatch

    run = run_state(item.config)
    if run.hang_watch is None:
        run.hang_watch = HangWatch()
    scope = _loop_scope(item)

    def get_loop() -> Any:
        if unittest_case:
            # The loop the test case made, once the seam saw it made.
            case_run = state.case_run
            return None if case_run is None else case_run.loop
        return run.live_loops.get(scope)

    def get_tracer() -> Any:
        return getattr(state.observation, "tracer", None)

    armed = Armed(effective.hang_after, get_loop, get_tracer, run.start_threads)
    state.hang = run.hang_watch.arm(armed)


@pytest.hookimpl(wrapper=True, tryfirst=True, specname="pytest_runtest_teardown")
def pytest_runtest_teardown_hang_watch(item: pytest.Item) -> Generator[None, None, None]:
    """The test is over once its fixtures are torn down: stop watching it."""
    try:
        return (yield)
    finally:
        state = state_of(item)
        watch = run_state(item.config).hang_watch
        if state is not None and state.hang is not None and watch is not None:
            watch.disarm(state.hang)


def _hang_failure(item: pytest.Item, report: pytest.TestReport) -> bool:
    """Make ``report`` the failure of a hang diagnosed in its phase (or
    before it, and not yet reported); True when the test hung."""
    state = state_of(item)
    armed = None if state is None else state.hang
    if state is None or armed is None:
        return False
    if report.when == "teardown":
        state.hang = None
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


@pytest.hookimpl(wrapper=True, tryfirst=True, specname="pytest_runtest_setup")
def pytest_runtest_setup_budget(item: pytest.Item) -> Generator[None, None, None]:
    if state_of(item) is not None and on_watched_loop(item):
        run = run_state(item.config)
        run.budgeted = item
        loop = run.live_loops.get(_loop_scope(item))
        if loop is not None:
            _restart_stall_budget(loop, item)
    return (yield)


@pytest.hookimpl(wrapper=True, specname="pytest_runtest_teardown")
def pytest_runtest_teardown_budget(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    finally:
        run = run_state(item.config)
        if run.budgeted is item:
            run.budgeted = None


def _restart_stall_budget(loop: object, item: pytest.Item) -> None:
    """The test begins on ``loop``: its stall and time budgets count from now."""
    restart_stall = getattr(loop, "restart_stall_budget", None)
    restart_time = getattr(loop, "restart_time_budget", None)
    if restart_stall is None or restart_time is None:
        return  # not the virtual clock's loop
    state = state_of(item)
    if state is not None and not getattr(loop, "is_closed", lambda: True)():
        settings = state.plan.settings
        restart_stall(settings.stall_budget)
        restart_time(settings.time_budget)


# trylast: inside pytest's own capture of the phase, so the output and
# warning capture entered for the phase are left before pytest's.
@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    watched = _watch(item)
    if watched is None:
        return (yield)
    run = run_state(item.config)
    run.watched = watched
    loop = run.live_loops.get(watched.loop_scope)
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
    run = run_state(item.config)
    watched = run.watched
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
        run.watched = None
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
    watched = run_state(item.config).watched
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


# -- unittest's IsolatedAsyncioTestCase ---------------------------------------
#
# The test case makes, runs and closes its loop inside pytest's call of the
# test: the seam that gives it the chosen loop is in place for that call
# only (see .unittest_cases), and the observation spans it.  The blocking
# gate fails the call; leaks are reported at the teardown, as for the tests
# pytest-asyncio runs.


@pytest.hookimpl(wrapper=True, trylast=True, specname="pytest_runtest_call")
def pytest_runtest_call_unittest(item: pytest.Item) -> Generator[None, object, object]:
    __tracebackhide__ = _unless_our_failure
    state = state_of(item)
    if state is None or not state.plan.unittest_case or not _case_needs_seam(item, state):
        return (yield)
    from .observation import wants_observation
    from .unittest_cases import on_chosen_loop

    effective = state.plan.settings
    observed = wants_observation(
        effective, TRACE_FIXTURE in getattr(item, "fixturenames", ()), trace_dir(item.config)
    )

    def start_observation(loop: Any) -> Observation | None:
        return _observe(item, state, loop, "call") if observed else None

    def loop_made(loop: Any) -> None:
        _restart_stall_budget(loop, item)

    with on_chosen_loop(item, state, start_observation, loop_made) as case_run:
        state.case_run = case_run
        outcome = yield
    if case_run.blocking:
        try:
            pytest.fail(case_run.blocking, pytrace=False)
        except pytest.fail.Exception as failure:
            # unittest's own failure of the test replaces this one in the
            # report (see _unittest_call_report): told apart by identity.
            case_run.failure = failure
            raise
    return outcome


def _case_needs_seam(item: pytest.Item, state: TestState) -> bool:
    """Whether a unittest test asks for anything of the plugin: when not,
    its test case runs untouched, on the loop it makes itself (and nothing
    more of the plugin is loaded for it)."""
    return (
        bool(enabled_modes(state.plan.settings))
        or trace_dir(item.config) is not None
        or TRACE_FIXTURE in getattr(item, "fixturenames", ())
    )


def _unittest_call_report(state: TestState, report: pytest.TestReport, call: Any) -> None:
    """unittest's own failure of the test stands; the blocking steps of its
    run go beside it as a section, as for a pytest-asyncio test's failure."""
    case_run = state.case_run
    if case_run is None:
        return
    case_run.call_passed = report.passed
    observation = state.observation
    ours = call.excinfo is not None and call.excinfo.value is case_run.failure
    if report.failed and not ours and case_run.blocking and observation is not None:
        observation.blocking_report = case_run.blocking


@pytest.hookimpl(wrapper=True, trylast=True, specname="pytest_runtest_teardown")
def pytest_runtest_teardown_unittest(item: pytest.Item) -> Generator[None, None, None]:
    """A unittest test's leaks, judged when its cleanups were done, are
    reported with its teardown (an error under leaks=error, else a warning)."""
    result = yield
    state = state_of(item)
    case_run = None if state is None else state.case_run
    if state is None or case_run is None or not case_run.call_passed or not case_run.leaks:
        return result
    if state.plan.settings.leaks == "error":
        pytest.fail(case_run.leaks, pytrace=False)
    item.warn(AsyncspecLeakWarning(case_run.leaks))
    return result


def _unless_our_failure(excinfo: pytest.ExceptionInfo[BaseException]) -> bool:
    return not excinfo.errisinstance(pytest.fail.Exception)


class AsyncspecLeakWarning(pytest.PytestWarning):
    """Tasks or coroutines a test left behind (asyncspec_leaks = warn)."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    state = state_of(item)
    if state is None:
        return report  # an item the plugin never planned (collected elsewhere)
    run = run_state(item.config)
    hung = _hang_failure(item, report)
    if not hung and call.excinfo is not None and report.failed:
        _present_deadlock(item, run, report, call.excinfo)
    _attach_claim(item, state, report)
    if run.html:
        setattr(report, report_fields.POSITION, state.position)
    plan = state.plan
    if plan.unittest_case and call.when == "call":
        _unittest_call_report(state, report, call)
    outside = state.outside_modes
    if outside is not None and call.when == "call":
        setattr(report, report_fields.OUTSIDE_MODES, list(outside))
    if plan.explore is not None and call.when == "call":
        unexplored = plan.explore.unexplored
        summary = state.exploration_summary or ({"unexplored": unexplored} if unexplored else {})
        if summary:
            setattr(report, report_fields.EXPLORATION_SUMMARY, summary)
        if state.exploration_report:
            from .explored_tests import SECTION

            report.sections.append((SECTION, state.exploration_report))
    observation = state.observation
    if observation is None:
        if call.when == "teardown":
            _release_observation(state)
        return report
    try:
        _attach_observation(item, state, run, report, call, observation, hung)
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
        _release_observation(state)
    return report


def _present_deadlock(
    item: pytest.Item,
    run: RunState,
    report: pytest.TestReport,
    excinfo: pytest.ExceptionInfo[BaseException],
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

    state = state_of(item)
    case_run = None if state is None else state.case_run
    if _ended_by_timeout(excinfo.value) and (run.budgeted is item or case_run is not None):
        loop = case_run.loop if case_run is not None else run.live_loops.get(_loop_scope(item))
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
    state: TestState,
    run: RunState,
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
        _attach_leak_rules(state, run, report, observation)
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
    _attach_timeline(item, state, run, report, observation)
    if report.failed:
        # pytest-timeout's failure; the hang watch's own already is the report.
        if not hung and call.excinfo is not None and "Timeout" in str(call.excinfo.value):
            report.sections.append(("asyncspec pending tasks", observation.hang()))
        # An explored test's report has the failing schedule's timeline;
        # the whole trace would draw every schedule.
        timeline = "" if state.exploration_report else observation.timeline()
        if timeline:
            report.sections.append(("asyncspec timeline", timeline))


def _failing_run(state: TestState) -> tuple[str, str | None] | None:
    """An explored test's failing run, as its schedule report names it: its
    first line, and the replay command."""
    if not state.exploration_report:
        return None
    lines = state.exploration_report.splitlines()
    replay = next((line[len("replay: ") :] for line in lines if line.startswith("replay: ")), None)
    return lines[0], replay


def _attach_leak_rules(
    state: TestState, run: RunState, report: pytest.TestReport, observation: Observation
) -> None:
    """Which leak allow rules took part in the test's leak check, and which
    matched (the run summary reports the ones that never did)."""
    if observation.effective.leaks == "off":
        return
    used = [rule.text for rule in run.leak_rules if rule.used]
    marked = [[key, rule.used] for key, rule in state.plan.marked_leak_rules]
    if used or marked:
        setattr(report, report_fields.LEAK_RULES, {"used": used, "marked": marked})


def _release_observation(state: TestState) -> None:
    """Drop what watched the test once its last report is made.

    pytest keeps every item, and so its stash, until the session ends: an
    observation left there would keep the test's loop, step log, task table
    and captured output alive for the rest of the run (about 100 KB a test).
    What the end-of-run reports need is already on the test's reports (the
    teardown's, made just before: leaks, leak rules, trace file).
    """
    state.observation = None
    state.case_run = None
    if state.trace_view is not None:
        from .observation import show_observation

        show_observation(state.trace_view, None)
        state.trace_view = None


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


def _attach_claim(item: pytest.Item, state: TestState, report: pytest.TestReport) -> None:
    """Carry the test's claim data on its report (xdist serialises report attributes)."""
    tag = state.plan.claim
    if tag is None:
        return
    from .claims import item_payload, timing_figures

    recorder = state.recorder
    figures = [] if tag.control else timing_figures(state.clock)
    if recorder is not None and not tag.control:
        figures.extend(recorder.figures)
    payload = item_payload(
        item,
        tag,
        report,
        effective=state.plan.settings,
        position=state.position,
        figures=figures,
    )
    setattr(report, report_fields.CLAIM, payload)


def _attach_timeline(
    item: pytest.Item,
    state: TestState,
    run: RunState,
    report: pytest.TestReport,
    observation: Observation,
) -> None:
    """Carry a traced test's timeline on its report, for the HTML page (only
    when one is asked for: building it decodes up to MAX_STEPS steps)."""
    trace = observation.trace
    if not run.html or not observation.full_trace or trace is None:
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
    payload = timeline_payload(
        trace,
        test=item.nodeid,
        outcome=report.outcome,
        position=state.position,
        virtual=trace.virtual,
        phases=observation.task_phases(trace),
        runs=observation.runs,
        failing_run=_failing_run(state) if report.failed else None,
        gate=gate,
        threshold=observation.effective.max_blocking,
    )
    setattr(report, report_fields.TIMELINE, pack_timeline(payload))
