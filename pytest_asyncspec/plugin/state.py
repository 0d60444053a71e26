"""What the plugin keeps between hooks: one object per test, one per run.

A test's :class:`TestPlan` is decided once, at collection, and never
changes: its settings, whether and how it explores, its claim, its own leak
allow rules, and why the modes cannot reach it.  Its :class:`TestState`
holds the plan and what the test's run adds (the fixtures' objects, the
observation, the hang watch's arming, the exploration's report).  The run's
:class:`RunState` holds what every test shares.  Each lives under one stash
key, so that what the plugin keeps is read here, in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..checks.allow_rules import AllowRule
    from ..checks.hang_watch import Armed, HangWatch
    from ..checks.timing import LoopClock
    from ..exploration.replay_token import ReplayToken
    from .claims import ClaimRecorder, ClaimTag
    from .explored_tests import ExploreRequest
    from .failure_store import FailureStore
    from .hooks import Watched
    from .observation import Observation, TraceView
    from .settings import Effective
    from .unittest_cases import CaseRun


# Plain classes with __slots__, not dataclasses: these load at every run's
# start, where generating a dataclass's methods costs more than the plugin's
# whole import (docs/benchmarks.md, "start-up").


class TestPlan:
    """What a test runs with, decided at collection (usage errors raised
    then); read-only once made."""

    __test__ = False  # not a test class, whatever pytest's naming rules say
    __slots__ = (
        "claim",
        "explore",
        "marked_leak_rules",
        "outside_modes",
        "settings",
        "unittest_case",
    )

    settings: Effective
    #: Whether and how the test explores schedules (None: it runs once).
    explore: ExploreRequest | None
    claim: ClaimTag | None
    #: The rules of the allow_leaks markers that reach the test, each under
    #: the name the run summary gives it.
    marked_leak_rules: tuple[tuple[str, AllowRule], ...]
    #: Why an async test runs outside the modes it asked for, and those modes.
    outside_modes: tuple[str, str] | None
    #: A test of a unittest.IsolatedAsyncioTestCase: the test case makes its
    #: own loop, which the plugin chooses (see .unittest_cases).
    unittest_case: bool

    def __init__(
        self,
        settings: Effective,
        explore: ExploreRequest | None = None,
        claim: ClaimTag | None = None,
        marked_leak_rules: tuple[tuple[str, AllowRule], ...] = (),
        outside_modes: tuple[str, str] | None = None,
        unittest_case: bool = False,
    ) -> None:
        for name, value in (
            ("settings", settings),
            ("explore", explore),
            ("claim", claim),
            ("marked_leak_rules", marked_leak_rules),
            ("outside_modes", outside_modes),
            ("unittest_case", unittest_case),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a test's plan is decided at collection (tried to set {name})")


class TestState:
    """A test's plan and what its run adds, from collection to its last report."""

    __test__ = False
    __slots__ = (
        "case_run",
        "clock",
        "exploration_report",
        "exploration_summary",
        "hang",
        "observation",
        "on_anyio_runner",
        "outside_modes",
        "plan",
        "position",
        "recorder",
        "trace_view",
    )

    def __init__(self, plan: TestPlan) -> None:
        self.plan = plan
        #: The test's place in the run's final order (claims, the HTML page).
        self.position = 0
        self.clock: LoopClock | None = None
        self.recorder: ClaimRecorder | None = None
        self.trace_view: TraceView | None = None
        #: What watches the test's loop, from its setup to its last report.
        self.observation: Observation | None = None
        #: anyio's pytest plugin runs the test, on its asyncio backend as far
        #: as collection knows (see .anyio_tests).
        self.on_anyio_runner = False
        #: Why the test runs outside the modes it asked for, and those modes:
        #: the plan's, or found at setup (anyio's backend, from the project's
        #: own fixture).
        self.outside_modes: tuple[str, str] | None = plan.outside_modes
        #: The hang watch's arming, from the test's setup to its last report.
        self.hang: Armed | None = None
        #: An explored test's schedule report and its summary for the run's end.
        self.exploration_report = ""
        self.exploration_summary: dict[str, Any] = {}
        #: A unittest test's run on its chosen loop, from its call to its
        #: last report.
        self.case_run: CaseRun | None = None


_UNREAD: Any = object()


class RunState:
    """What every test of the run shares."""

    __slots__ = (
        "allow_rules",
        "budgeted",
        "hang_watch",
        "html",
        "leak_rules",
        "live_loops",
        "marker_rules",
        "replay",
        "replay_command",
        "seed",
        "settings",
        "shard_stop_dir",
        "start_threads",
        "store",
        "watched",
        "worker_usage_error",
    )

    def __init__(self) -> None:
        #: The settings of a test with no marker (decided on first use).
        self.settings: Effective | None = None
        #: The replay token given for this run (decoded on first use).
        self.replay: ReplayToken | None = _UNREAD
        #: The replay command's options and caveat (built on first use).
        self.replay_command: tuple[str, str] | None = None
        #: The run's allow lists (ini and command line): one list each, so a
        #: rule used by any test counts as used.
        self.allow_rules: list[AllowRule] = []
        self.leak_rules: list[AllowRule] = []
        #: One rule object per marker and rule text, shared by the tests the
        #: marker reaches, so a rule used by any of them counts as used.
        self.marker_rules: dict[str, AllowRule] = {}
        #: The run's exploration seed (drawn on first use; a worker's is its
        #: controller's).
        self.seed: int | None = None
        self.store: FailureStore | None = None
        #: Whether traced tests carry their timeline on their reports.
        self.html = False
        #: The hang watch (started by the first async test it watches), and
        #: the threads alive when pytest started (pytest-xdist's): it never
        #: asks whether they are busy.
        self.hang_watch: HangWatch | None = None
        self.start_threads: set[int | None] | None = None
        #: The controller's directory for the stop files of sharded tests.
        self.shard_stop_dir: str | None = None
        #: A usage error found while an xdist worker collected.
        self.worker_usage_error: str | None = None
        #: The loops of pytest-asyncio's runners that are up, by loop scope.
        self.live_loops: dict[str, Any] = {}
        #: The async test being set up, run or torn down, when it is observed.
        self.watched: Watched | None = None
        #: The async test being set up, run or torn down, whose budgets count.
        self.budgeted: pytest.Item | None = None

    def replay_is_read(self) -> bool:
        return self.replay is not _UNREAD


# Annotated, not subscripted (pytest.StashKey[T]()): annotations are not
# evaluated, and a subscripted generic costs tens of microseconds to create.
_TEST_KEY: pytest.StashKey[TestState] = pytest.StashKey()
_RUN_KEY: pytest.StashKey[RunState] = pytest.StashKey()


def run_state(config: pytest.Config) -> RunState:
    """The run's state (made on first use)."""
    state = config.stash.get(_RUN_KEY, None)
    if state is None:
        state = config.stash[_RUN_KEY] = RunState()
    return state


def state_of(item: pytest.Item) -> TestState | None:
    """The test's state, once collection planned it (None before, or for an
    item the plugin never saw)."""
    return item.stash.get(_TEST_KEY, None)


def keep_plan(item: pytest.Item, plan: TestPlan) -> TestState:
    """Keep ``plan`` as the test's, with a fresh state around it."""
    state = item.stash[_TEST_KEY] = TestState(plan)
    return state
