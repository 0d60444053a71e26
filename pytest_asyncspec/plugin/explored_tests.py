"""Exploration inside pytest: which tests explore, running them, and their report.

Each schedule is a full run of an explored test on the same loop
(pytest-asyncio's): its function-scoped fixtures set up before the schedule,
the body in a fresh copy of the context, the fixtures torn down after it,
under the schedule (:mod:`.fixture_cycle`).  Wider-scoped fixtures are set
up once, as for any test.  Tasks a run leaves behind are cancelled before
the next one starts, and ``asyncspec_clock`` starts again at t = 0 in every
schedule.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from ..exploration.replay_token import ReplayToken, TokenError
from ..exploration.strategies import Plan, ScheduleSpec
from ..notes import add_note
from .failure_store import FailureStore

if TYPE_CHECKING:
    # Running an exploration loads these (run_explored); collection does not.
    from ..checks.timing import LoopClock
    from ..exploration.explorer import Exploration, Explorer, Failure
    from .observation import TraceView

SECTION = "asyncspec schedule"


@dataclass(frozen=True)
class ExploreRequest:
    """What to do with one test, decided at collection: explore a plan,
    replay one token, or run once and say why it could not explore."""

    plan: Plan | None
    schedules: int
    replay: ReplayToken | None = None
    #: Why a test asked to explore runs once instead (for the run summary).
    unexplored: str = ""
    #: A shard of the test's schedules under pytest-xdist (its index, of how
    #: many: see .shards), and the node id and name of the test it is part of.
    shard: tuple[int, int] | None = None
    base: tuple[str, str] | None = None
    #: The workers a test with fewer schedules than workers was not split over.
    unsplit: int = 0


@dataclass
class ExplorationResult:
    """What an explored test's run leaves for its report: the failing
    schedule's section, and the figures for the run's summary."""

    report: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


class RunWatcher(Protocol):
    """What watches an explored test's runs of its body (the plugin's
    observation of the test)."""

    def note_schedule_leftovers(self, tasks: list[asyncio.Task[Any]]) -> None:
        """A run of the body ended with these tasks still running."""

    def begin_schedule_run(self, spec: ScheduleSpec | None) -> None:
        """A run of the body under ``spec`` (None: a shrinking trial) begins."""

    def end_schedule_run(self, token: ReplayToken | None) -> None:
        """The run that began last ended; ``token`` replays it."""


def session_seed() -> int:
    return random.SystemRandom().randrange(2**32)


def _is_test_failure(error: BaseException) -> bool:
    # pytest.fail() raises a BaseException, and so does a CancelledError out
    # of the body or a fixture's teardown: in a normal run both fail the
    # test.  Skip and xfail end the test as they would without exploration;
    # KeyboardInterrupt and pytest.exit() end the run.
    if isinstance(error, (pytest.skip.Exception, pytest.xfail.Exception)):
        return False
    return isinstance(error, (Exception, pytest.fail.Exception, asyncio.CancelledError))


def run_explored(
    item: pytest.Function,
    request: ExploreRequest,
    result: ExplorationResult,
    store: FailureStore,
    clock: Callable[[], LoopClock | None],
    trace_view: Callable[[], TraceView | None] = lambda: None,
    watcher: RunWatcher | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> None:
    """Run ``item``'s body under its schedules; raise the failing run's error.

    Each run sets the test's function-scoped fixtures up before its schedule
    and tears them down after the body (:mod:`.fixture_cycle`).  Before each
    run of the body, the test's clock restarts and its ``asyncspec_trace``
    view moves to the new schedule.  ``loop`` is the test's loop when the
    plugin knows it (anyio's runner does not make it the thread's current
    loop); else the one pytest-asyncio made current."""
    from ..exploration.explorer import Explorer
    from ..exploration.exploring_loop import ExploringLoop
    from .fixture_cycle import FixtureCycle
    from .observation import current_loop, show_from_here

    if loop is None:
        loop = current_loop()
    if not isinstance(loop, ExploringLoop):
        pytest.fail(
            f"{item.nodeid}: exploration needs the asyncspec virtual-clock loop, and this "
            f"test runs on {type(loop).__name__}: a loop_factories hook or an "
            "event_loop_policy of your own replaced it; let pytest-asyncspec provide the loop",
            pytrace=False,
        )
    cycle = FixtureCycle(item, loop)

    def body() -> None:
        test_clock = clock()
        if test_clock is not None:
            test_clock.restart()
        view = trace_view()
        if view is not None:
            show_from_here(view)
        # Looked up each run: the wrapper is patched in, and the fixtures are new.
        item.obj(**cycle.begin_body())

    nodeid, name = request.base or (item.nodeid, item.name)
    explorer = Explorer(loop, body, test=name, is_failure=_is_test_failure, cycle=cycle)
    if watcher is not None:
        explorer.on_leftovers = watcher.note_schedule_leftovers
        explorer.on_run_start = watcher.begin_schedule_run
        explorer.on_run_end = watcher.end_schedule_run
    with cycle.fresh_context_per_run():
        try:
            outcome = _explore(item, request, result, store, explorer)
        finally:
            cycle.close()
    result.summary = _summary(request, outcome)
    failure = outcome.failure
    if failure is None:
        return
    if failure.token is not None and request.replay is None:
        store.add(nodeid, failure.token.encode())
    result.report = describe_failure(
        nodeid,
        request,
        failure,
        real_work=result.summary["real_work"],
        stored=store.enabled,
        config=item.config,
    )
    error = failure.error
    note = _note(nodeid, failure, item.config)
    if note:
        add_note(error, note)
    raise error


def _explore(
    item: pytest.Function,
    request: ExploreRequest,
    result: ExplorationResult,
    store: FailureStore,
    explorer: Explorer,
) -> Exploration:
    """Replay the asked-for token, or stored failures then new schedules."""
    from ..exploration.explorer import Exploration, ReplayMismatchError

    if request.replay is not None:
        outcome = Exploration(replayed=1)
        mismatch: ReplayMismatchError | None = None
        try:
            outcome.failure = explorer.replay(request.replay)
        except ReplayMismatchError as stale:
            mismatch = stale
        if mismatch is not None:
            # It passed, but not under the token's schedule: no green from it.
            result.summary = {**_summary(request, outcome), "failed": True, "mismatch": True}
            pytest.fail(f"--asyncspec-replay: {mismatch.describe(EXPLORE_AGAIN)}", pytrace=False)
        return outcome
    assert request.plan is not None
    from . import shards

    nodeid, name = request.base or (item.nodeid, item.name)
    # A sharded test's stored failures are replayed by its first shard only.
    first_shard = request.shard is None or request.shard[0] == 0
    stored = _stored_tokens(store, nodeid, name) if first_shard else []
    stop = shards.stop_file(item.config, nodeid) if request.shard is not None else None
    outcome = explorer.explore(
        request.plan,
        request.schedules,
        first=stored,
        numbers=shards.numbers(request),
        stop=shards.stop_check(stop),
        found=None if stop is None else lambda: shards.announce_failure(stop),
    )
    for token in stored:
        found = outcome.failure.token if outcome.failure is not None else None
        if found is None or found.encode() != token.encode():
            store.discard(nodeid, token.encode())
    return outcome


#: What to do about a token that did not apply, under pytest.
EXPLORE_AGAIN = (
    "explore the test again without --asyncspec-replay (its marker's schedules, or "
    "--asyncspec-schedules=N) to find the failure afresh"
)


def _note(nodeid: str, failure: Failure, config: pytest.Config) -> str:
    """The line added under the failing test's error, if any."""
    if failure.carried_over:
        return (
            "asyncspec: this failure does not come from the task order: stock order passed "
            f"on the first schedule and failed on schedule {failure.spec.number + 1}, with "
            "state carried over from the schedules before it (see the asyncspec schedule "
            "section)"
        )
    if failure.token is None:
        return ""
    if failure.deviations:
        from .replay_command import replay_line

        return (
            "asyncspec: this failure needs a task order stock asyncio did not run; replay it "
            f"with: {replay_line(config, nodeid, failure.token.encode())}"
        )
    return "asyncspec: this failure happens in stock asyncio's own order (schedule 0)"


def _stored_tokens(store: FailureStore, nodeid: str, name: str) -> list[ReplayToken]:
    tokens = []
    for text in store.tokens(nodeid):
        try:
            token = ReplayToken.decode(text)
        except TokenError:
            store.discard(nodeid, text)  # another version's: it cannot replay
            continue
        if token.test == name:
            tokens.append(token)
    return tokens


def _summary(request: ExploreRequest, outcome: Exploration) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "schedules": outcome.schedules,
        "distinct": outcome.distinct,
        "replayed": outcome.replayed,
        "failed": outcome.failure is not None,
        "real_work": outcome.waited_on_real_work,
    }
    if request.plan is not None:
        summary.update(
            strategy=request.plan.strategy,
            seed=request.plan.seed,
            length=outcome.length,
            labels=outcome.labels,
            bounds=[[depth, bound] for depth, bound in outcome.bounds()],
        )
    if request.shard is not None and request.base is not None:
        summary.update(
            shard=list(request.shard),
            base=request.base[0],
            orders=sorted(digest.hex() for digest in outcome.orders),
            stopped=outcome.stopped,
        )
    if request.unsplit:
        summary["unsplit"] = request.unsplit
    return summary


def describe_failure(
    nodeid: str,
    request: ExploreRequest,
    failure: Failure,
    *,
    real_work: int = 0,
    stored: bool = False,
    config: pytest.Config | None = None,
) -> str:
    """The report section of a failing explored test."""
    from ..exploration.exploring_loop import is_timer_label

    spec = failure.spec
    lines: list[str] = []
    if request.replay is not None:
        lines.append(f"replayed schedule ({spec.name}, schedule seed {spec.seed}) failed")
    elif spec.number < 0:
        lines.append(
            f"a stored failing schedule ({spec.name}, schedule seed {spec.seed}) failed again, "
            "before any new schedule ran"
        )
    else:
        lines.append(
            f"schedule {spec.number + 1} of {request.schedules} failed "
            f"({spec.name}, schedule seed {spec.seed})"
        )
    if real_work:
        lines.append(real_work_note(real_work))  # up front: it qualifies all that follows
    if failure.mismatch is not None:
        lines.append(failure.mismatch.describe(EXPLORE_AGAIN))
    if failure.nondeterminism is not None:
        lines.append(
            f"no replay token: this test does not run the same way twice under one "
            f"schedule ({failure.nondeterminism}). Something besides the task order decides "
            "what it does: threads, real I/O, time read from the wall clock, or unseeded "
            "randomness. Make the body depend on the schedule alone to get a token."
        )
        return "\n".join(lines)
    if failure.carried_over:
        lines.append(
            "this failure does not come from the task order: it shrank to stock asyncio's "
            "own order (FIFO), with no deviation, and that same order passed as the first "
            "schedule of this exploration. What differs is state carried over from earlier "
            "schedules: function-scoped fixtures are set up afresh for each schedule, but "
            "fixtures of a wider scope (class, module, session), module globals and files "
            "outside tmp_path keep what earlier schedules left. Build that state in the test "
            "or a function-scoped fixture (a fresh object, file or directory per run), or "
            "reset it at the start of the body. (No replay token: replayed alone, stock order "
            "passes.)"
        )
        if failure.timeline:
            lines.extend(["", failure.timeline])
        return "\n".join(lines)
    if not failure.deviations:
        lines.append(
            "it fails in stock asyncio's own order (FIFO), with no deviation: this is not a "
            "scheduling race, the plain test fails"
        )
    else:
        if failure.shrink_runs:
            lines.append(
                f"shrunk from {failure.found_with} deviations from stock order to "
                f"{len(failure.deviations)} in {failure.shrink_runs} runs"
            )
        if all(is_timer_label(d.ran) and is_timer_label(d.instead_of) for d in failure.deviations):
            lines.append(
                "only timers due at the same instant run in another order: stock asyncio "
                "fires them in the order they were set, and on the real clock, where their "
                "due times differ by a hair, in any order"
            )
        elif failure.real_waits:
            lines.append(
                "this schedule waited on real work (threads or sockets outside the loop); "
                "stock asyncio produces such orders when that work's timing differs"
            )
        else:
            lines.append(
                "stock asyncio never runs this in-memory code in this order (it always picks "
                "the oldest ready callback); other latencies of real I/O, or another event "
                "loop, can produce it"
            )
        lines.append("the deviations from stock order that make it fail:")
        for number, site in enumerate(failure.sites, 1):
            lines.append(f"  {number}. " + site.replace("\n", "\n     "))
    assert failure.token is not None
    from .replay_command import replay_command

    command, caveat = replay_command(config, nodeid, failure.token.encode())
    lines.append(f"replay: {command}")
    if caveat:
        lines.append(f"({caveat})")
    if request.replay is None and stored:
        lines.append("(kept in .pytest_cache: the next run replays it first)")
    if failure.timeline:
        lines.extend(["", failure.timeline])
    return "\n".join(lines)


def summary_line(nodeid: str, summary: dict[str, Any]) -> str:
    """One line of the terminal summary for an explored test."""
    if "unexplored" in summary:
        return f"{nodeid}: ran once, not explored: {summary['unexplored']}"
    if summary.get("mismatch"):
        return f"{nodeid}: replayed schedule FAILED: the token's deviations did not all apply"
    if not summary.get("schedules"):
        state = "failed" if summary.get("failed") else "passed"
        return f"{nodeid}: replayed schedule {state}"
    schedules, distinct = summary["schedules"], summary["distinct"]
    text = (
        f"{nodeid}: {schedules} schedule{'s' if schedules != 1 else ''}, "
        f"{distinct} distinct order{'s' if distinct != 1 else ''}"
        f" ({summary.get('strategy', '?')}, run seed {summary.get('seed', '?')})"
    )
    bounds = summary.get("bounds") or []
    if bounds:
        parts = ", ".join(
            f"depth {depth} >= 1/{round(1 / bound):,}" for depth, bound in bounds if bound
        )
        text += (
            f"; PCT bound per schedule for {summary.get('labels')} labels and "
            f"{summary.get('length')} steps: {parts}"
        )
    if summary.get("failed"):
        text += "; FAILED"
    if summary.get("shards"):
        from .shards import shard_sources

        text += "".join(f"; {part}" for part in shard_sources(summary))
    unsplit = summary.get("unsplit")
    if unsplit:
        text += (
            f"; not split over the {unsplit} xdist workers: {schedules} schedule"
            f"{'s are' if schedules != 1 else ' is'} fewer than workers"
        )
    real_work = summary.get("real_work", 0)
    if real_work:
        # Said once per test, as a note: not a failure, a limit of the method.
        text += f"\n  {real_work_note(real_work)}"
    return text


def real_work_note(schedules: int) -> str:
    """What to know about a test whose schedules waited on real work."""
    return (
        f"note: {schedules} of these schedules waited on real work (threads, or sockets to "
        "peers outside the loop); when that work's timing decides an order, the schedule "
        "does not, so exploration is not faithful there and a failure found may not replay"
    )
