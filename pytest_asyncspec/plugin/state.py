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

from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class TestPlan:
    """What a test runs with, decided at collection (usage errors raised then)."""

    __test__ = False  # not a test class, whatever pytest's naming rules say

    settings: Effective
    #: Whether and how the test explores schedules (None: it runs once).
    explore: ExploreRequest | None = None
    claim: ClaimTag | None = None
    #: The rules of the allow_leaks markers that reach the test, each under
    #: the name the run summary gives it.
    marked_leak_rules: tuple[tuple[str, AllowRule], ...] = ()
    #: Why an async test runs outside the modes it asked for, and those modes.
    outside_modes: tuple[str, str] | None = None


@dataclass
class TestState:
    """A test's plan and what its run adds, from collection to its last report."""

    __test__ = False

    plan: TestPlan
    #: The test's place in the run's final order (claims and the HTML page).
    position: int = 0
    clock: LoopClock | None = None
    recorder: ClaimRecorder | None = None
    trace_view: TraceView | None = None
    #: What watches the test's loop, from its setup to its last report.
    observation: Observation | None = None
    #: The hang watch's arming, from the test's setup to its last report.
    hang: Armed | None = None
    #: An explored test's schedule report and its summary for the run's end.
    exploration_report: str = ""
    exploration_summary: dict[str, Any] = field(default_factory=dict)


_UNREAD: Any = object()


@dataclass
class RunState:
    """What every test of the run shares."""

    #: The settings of a test with no marker (resolved on first use).
    settings: Effective | None = None
    #: The replay token given for this run (decoded on first use).
    replay: ReplayToken | None = _UNREAD
    #: The replay command's options and caveat (built on first use).
    replay_command: tuple[str, str] | None = None
    #: The run's allow lists (ini and command line): one list each, so a
    #: rule used by any test counts as used.
    allow_rules: list[AllowRule] = field(default_factory=list)
    leak_rules: list[AllowRule] = field(default_factory=list)
    #: One rule object per marker and rule text, shared by the tests the
    #: marker reaches, so a rule used by any of them counts as used.
    marker_rules: dict[str, AllowRule] = field(default_factory=dict)
    #: The run's exploration seed (drawn on first use; a worker's is its
    #: controller's).
    seed: int | None = None
    store: FailureStore | None = None
    #: Whether traced tests carry their timeline on their reports.
    html: bool = False
    #: The hang watch (started by the first async test it watches), and the
    #: threads alive when pytest started (pytest-xdist's): it never asks
    #: whether they are busy.
    hang_watch: HangWatch | None = None
    start_threads: set[int | None] | None = None
    #: A usage error found while an xdist worker collected.
    worker_usage_error: str | None = None
    #: The loops of pytest-asyncio's runners that are up, by loop scope.
    live_loops: dict[str, Any] = field(default_factory=dict)
    #: The async test being set up, run or torn down, when it is observed.
    watched: Watched | None = None
    #: The async test being set up, run or torn down, whose budgets count.
    budgeted: pytest.Item | None = None

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
