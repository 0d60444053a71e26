"""Running one test body under many schedules, and what happens when one fails.

:class:`Explorer` runs a body (a callable that runs the test's coroutine to
completion on an :class:`~pytest_asyncspec.exploration.exploring_loop.ExploringLoop`)
once per schedule.  When a schedule fails it

1. runs the same schedule again from its seed and compares the two runs'
   picks (the determinism self-check): when they differ, something outside
   the schedule decides the order, and no replay token is made;
2. shrinks the schedule toward FIFO: drops deviations, in halves and then
   one by one, keeping each drop after which the body still fails with the
   same kind of error;
3. runs the smallest failing schedule once more under a tracer, noting where
   each task involved in a deviation was suspended, for the report.

Nothing here imports pytest: :func:`explore` runs an async function under
many schedules in a script as well.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import random
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from ..clock import threads, time_patch
from ..notes import add_note
from ..tracing.timeline import render_timeline
from ..tracing.trace import Trace, Tracer
from .deviation import Deviation
from .exploring_loop import Candidate, Chooser, DeviationListener, ExploringLoop
from .options import (
    DEFAULT_DEPTH,
    parse_depth,
    parse_schedules,
    parse_seed,
    parse_strategy,
)
from .replay_token import ReplayToken, TokenError
from .strategies import Plan, ReplayChooser, ScheduleSpec, pct_bound
from .suspension import describe_candidate

#: Shrinking stops after this many runs and reports what it has.
SHRINK_BUDGET = 400
#: Loop iterations a schedule's leftover callbacks get to run out.
SETTLE_ROUNDS = 100


def failure_of_exception(error: BaseException) -> bool:
    """The default: any Exception is a failure; KeyboardInterrupt and the
    like end the exploration instead."""
    return isinstance(error, Exception)


class ReplayMismatchError(TokenError):
    """A replay token some of whose deviations never applied: when the run
    reached them, the label to run was not ready, or their step never came
    up as the oldest ready callback.  The schedule that ran is then not the
    one the token records (the test's tasks or code changed since the token
    was made, or the token was mistyped or cut short)."""

    def __init__(
        self,
        token: ReplayToken,
        unapplied: Sequence[tuple[Deviation, bool]],
        labels: Sequence[str],
        *,
        passed: bool,
    ) -> None:
        self.token = token
        #: The deviations that did not apply, in the token's order.
        self.unapplied = tuple(deviation for deviation, _ in unapplied)
        self._came_up = tuple(came_up for _, came_up in unapplied)
        #: The labels of the tasks and timers the replay ran, in order of first pick.
        self.labels = tuple(labels)
        #: Whether the replay passed (it fails otherwise, on its own).
        self.passed = passed
        super().__init__(self.describe())

    def describe(
        self,
        explore_again: str = "explore the test again, without the token, to find the failure "
        "afresh",
    ) -> str:
        """What went wrong and what to do; ``explore_again`` says how to explore."""
        total = len(self.token.deviations)
        count = len(self.unapplied)
        outcome = "passed" if self.passed else "failed"
        which = f"{count} of its {total} deviations" if total != 1 else "its one deviation"
        lines = [
            f"the replay token's schedule did not replay: {which} from stock order never "
            f"applied, so the run that {outcome} is not the schedule the token records:"
        ]
        for deviation, came_up in zip(self.unapplied, self._came_up, strict=True):
            text = f"{deviation.instead_of}@{deviation.step}={deviation.ran}"
            if came_up:
                why = (
                    f"{deviation.instead_of}'s step {deviation.step} came up as the oldest "
                    f"ready callback, but {deviation.ran} was not ready to run instead"
                )
            else:
                why = (
                    f"{deviation.instead_of}'s step {deviation.step} never came up as the "
                    "oldest ready callback"
                )
            lines.append(f"  {text}: {why}")
        shown = ", ".join(self.labels[:12]) + (", ..." if len(self.labels) > 12 else "")
        lines.append(f"the labels this run picked: {shown or 'none'}")
        lines.append(
            "A token names tasks and timers by label and step as they ran when it was made: "
            "the test's tasks or code changed since then, or the token was not copied whole. "
            f"{explore_again[:1].upper()}{explore_again[1:]}, or check that the token was "
            "copied whole from the failure report."
        )
        return "\n".join(lines)


@dataclass
class ScheduleRun:
    """What one run of the body under one schedule did."""

    error: BaseException | None
    picks: list[str]
    deviations: list[Deviation]
    real_waits: int
    #: The schedule's label of each task the tracer given to Explorer.run
    #: traced, by the tracer's own label (plain data: no task is held).
    labels: dict[int, str] = field(default_factory=dict)
    #: What the tracer given to Explorer.run recorded, if one was.
    trace: Trace | None = None

    def same_failure(self, other: ScheduleRun) -> bool:
        return type(self.error) is type(other.error) and self.error is not None


@dataclass
class Failure:
    """A failing schedule, shrunk, with what the report says about it."""

    spec: ScheduleSpec
    error: BaseException
    deviations: tuple[Deviation, ...]
    found_with: int  # deviations before shrinking
    shrink_runs: int
    token: ReplayToken | None
    #: Why no token was made (the self-check failed), else None.
    nondeterminism: str | None = None
    #: One line per deviation: who ran instead of whom, and where both were.
    sites: list[str] = field(default_factory=list)
    timeline: str = ""
    real_waits: int = 0
    #: The schedule shrank to stock order, which passed as this exploration's
    #: first schedule: what fails is state carried over from earlier
    #: schedules, not the order (no token is made: it would replay a pass).
    carried_over: bool = False
    #: A replayed token whose deviations did not all apply: the run that
    #: failed is not exactly the schedule the token records.
    mismatch: ReplayMismatchError | None = None


#: How often a slice of the schedules asks whether to stop (a file's
#: existence, checked every schedule, would cost more than some schedules).
_STOP_CHECK_EVERY = 8


def order_digest(picks: Sequence[str]) -> bytes:
    """A digest of one order of picks, the same in every process (``hash``
    of strings differs from one interpreter to the next)."""
    return hashlib.blake2b("\x00".join(picks).encode(), digest_size=8).digest()


@dataclass
class Exploration:
    """The outcome of exploring one body."""

    schedules: int = 0
    #: Different orders seen (runs whose sequences of picks differ).
    distinct: int = 0
    #: Picks of the FIFO run and labels it ran: PCT's k and n.
    length: int = 0
    labels: int = 0
    depths: tuple[int, ...] = ()
    failure: Failure | None = None
    #: Replayed before exploring (stored failures, or --asyncspec-replay).
    replayed: int = 0
    #: Schedules that waited on real work (threads, sockets to outside the
    #: loop): their timing, not the chooser, may have decided some orders.
    waited_on_real_work: int = 0
    #: For a slice of the schedules (``explore(numbers=...)``): a digest of
    #: each distinct order, the same in every process, so that slices run
    #: apart merge into the count a single run would give.
    orders: set[bytes] = field(default_factory=set)
    #: The slice stopped before its end because ``stop()`` said so.
    stopped: bool = False

    def bounds(self) -> list[tuple[int, float]]:
        """PCT's per-schedule lower bound for each depth used."""
        return [(d, pct_bound(self.labels, self.length, d)) for d in self.depths]


class RunCycle(Protocol):
    """What each run of a body needs around it (a test's fixtures, under pytest)."""

    def baseline(self) -> set[asyncio.Task[Any]]:
        """The tasks from before this run's set-up: not the run's to cancel."""
        ...

    def set_up(self) -> None:
        """Prepare a run (before its schedule begins: in stock order)."""
        ...

    def tear_down(self) -> None:
        """End what :meth:`set_up` prepared (after the body, under the schedule)."""
        ...


class Explorer:
    """Runs ``body`` on ``loop`` under schedules; see the module docstring."""

    def __init__(
        self,
        loop: ExploringLoop,
        body: Callable[[], object],
        *,
        test: str,
        is_failure: Callable[[BaseException], bool] = failure_of_exception,
        shrink_budget: int = SHRINK_BUDGET,
        trace_failures: bool = True,
        cycle: RunCycle | None = None,
    ) -> None:
        self.loop = loop
        self.body = body
        self.cycle = cycle
        self.test = test
        self.is_failure = is_failure
        self.shrink_budget = shrink_budget
        self.trace_failures = trace_failures
        #: Called with the tasks a schedule's run of the body left running,
        #: before they are cancelled (the plugin's leak check reads them).
        self.on_leftovers: Callable[[list[asyncio.Task[Any]]], None] | None = None
        #: Called before each run of the body with the schedule it runs
        #: (None for a trial run while shrinking a failure), and after it
        #: with the token that replays the run (None for a trial run): the
        #: plugin's blocking report names the schedule a step blocked in.
        self.on_run_start: Callable[[ScheduleSpec | None], None] | None = None
        self.on_run_end: Callable[[ReplayToken | None], None] | None = None
        self._length = 0
        # The tasks that were there before the runs of an exploration, kept
        # from one run to the next (all_tasks is a measurable share of a
        # short schedule: docs/benchmarks-exploration.md).  Between two runs
        # nothing runs that could start a task, unless the clean-up ran the
        # loop or a hook was called, which forget them.  None: look again.
        self._baseline: set[asyncio.Task[Any]] | None = None
        self._keep_baseline = False

    # -- one schedule ----------------------------------------------------------

    def run(
        self,
        chooser: Chooser,
        listener: DeviationListener | None = None,
        *,
        tracer: Tracer | None = None,
        spec: ScheduleSpec | None = None,
    ) -> ScheduleRun:
        """Run the body once under ``chooser``; tasks it leaves are cancelled.

        With a :class:`RunCycle`, its set-up runs first, in stock order, and its
        tear-down after the body, under the schedule, before the leftovers
        are cancelled; an error of either is the run's failure.

        ``tracer`` (installed) is stopped once the body's tasks are done, before
        the explorer's own clean-up runs, so its trace shows the test alone;
        the run's ``labels`` then map its task numbers to this schedule's labels.
        ``spec`` is the schedule the chooser runs, if it is one.
        """
        loop = self.loop
        cycle = self.cycle
        if self.on_run_start is not None:
            self.on_run_start(spec)
        error: BaseException | None = None
        if cycle is None:
            before = self._baseline
            if before is None:
                before = asyncio.all_tasks(loop)
                if self._keep_baseline and self.on_run_start is None and self.on_run_end is None:
                    self._baseline = before
        else:
            before = cycle.baseline()
            try:
                cycle.set_up()
            except BaseException as raised:
                if not self.is_failure(raised):
                    raise
                error = raised
        loop.begin_schedule(chooser)
        loop.on_deviation = listener
        labels: dict[int, str] = {}
        if tracer is not None:

            def note_label(task: asyncio.Future[Any], label: str) -> None:
                record = tracer.record_of(task)
                if record is not None:
                    labels[record.label] = label

            loop.on_label = note_label
        try:
            if error is None:
                try:
                    self.body()
                except BaseException as raised:
                    if not self.is_failure(raised):
                        raise
                    error = raised
            if cycle is not None:
                # What the set-up made is ended by its own tear-down, before
                # anything is cancelled: a fixture's object whose helper task
                # started in the body closes it itself, as in a normal run.
                try:
                    cycle.tear_down()
                except BaseException as raised:
                    if not self.is_failure(raised):
                        raise
                    if error is None:
                        error = raised
                    else:
                        # pytest would report both: the test's failure and
                        # its teardown's error.
                        add_note(
                            error,
                            f"the tear-down after it raised too: {type(raised).__name__}: {raised}",
                        )
            self._cancel_leftovers(before)
            trace = tracer.stop() if tracer is not None else None
            if self.on_run_end is not None:
                self.on_run_end(
                    None
                    if spec is None
                    else ReplayToken(self.test, spec.name, spec.seed, tuple(loop.deviations))
                )
            return ScheduleRun(error, loop.picks, loop.deviations, loop.real_waits, labels, trace)
        finally:
            loop.cancel_schedule_timers()
            loop.end_schedule()
            if self._settle():
                self._baseline = None  # the clean-up may have started tasks

    def _cancel_leftovers(self, before: set[asyncio.Task[Any]]) -> None:
        # Each schedule starts clean, as a fresh asyncio.run would: what the
        # body left running is cancelled inside the schedule, in an order
        # fixed by the schedule (the same seed must run the same picks).
        remaining = asyncio.all_tasks(self.loop) - before
        if not remaining:
            return
        left = cast("list[asyncio.Task[Any]]", self.loop.in_label_order(remaining))
        if self.on_leftovers is not None:
            self.on_leftovers(list(left))
        for task in left:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))

    def _settle(self) -> bool:
        # Nothing of a schedule may spill into the next: its pending timers
        # are cancelled (by run), and the callbacks still queued (a
        # connection's cleanup after its task ended, say) run out now, in
        # stock order and outside the schedule.  Otherwise they would run at
        # the start of the next schedule, which then differs from the same
        # schedule replayed after another one.
        loop = self.loop
        if loop.would_idle():
            # The run below would find nothing to run and stop: skipped, as it
            # costs about as much as a short schedule (one more task and a
            # start and stop of the loop).
            return False

        async def until_quiet() -> None:
            for _ in range(SETTLE_ROUNDS):
                if not loop.has_ready():
                    return
                await asyncio.sleep(0)

        loop.run_until_complete(until_quiet())
        return True

    def run_spec(self, spec: ScheduleSpec) -> ScheduleRun:
        return self.run(spec.chooser(self._length), spec=spec)

    # -- many schedules --------------------------------------------------------

    def explore(
        self,
        plan: Plan,
        schedules: int,
        *,
        first: Sequence[ReplayToken] = (),
        numbers: range | None = None,
        stop: Callable[[], bool] | None = None,
        found: Callable[[], None] | None = None,
    ) -> Exploration:
        """Replay ``first``, then run schedules 0..schedules-1 of ``plan``;
        stop at the first failure.

        ``numbers`` runs a slice of them instead (a shard: each schedule's
        seed comes from its number, so slices run apart are together the
        schedules of one run); a slice without schedule 0 runs it first,
        uncounted, for the stock order's length that PCT's choosers need.
        ``stop`` is asked every few schedules whether to end early (another
        shard failed); ``found`` is told of a failing schedule before it is
        shrunk (so that the other shards may stop meanwhile)."""
        # The time and thread patches stay in place from one schedule to the
        # next instead of being swapped out and in at every stop and start of
        # the loop (that swap cost about a tenth of a short schedule).
        time_patch.hold()
        threads.hold()
        # Only within one exploration is nothing else run between two runs.
        self._keep_baseline = True
        try:
            return self._explore(plan, schedules, first, numbers, stop, found)
        finally:
            self._keep_baseline = False
            self._baseline = None
            threads.release()
            time_patch.release()

    def _explore(
        self,
        plan: Plan,
        schedules: int,
        first: Sequence[ReplayToken],
        numbers: range | None,
        stop: Callable[[], bool] | None,
        found: Callable[[], None] | None,
    ) -> Exploration:
        outcome = Exploration()
        for token in first:
            outcome.replayed += 1
            # A stored token that no longer applies and passes is a schedule
            # that no longer fails: dropped, as the failure store drops it.  One
            # that fails reports the schedule that did run (its token).
            failure, _ = self._replay(token)
            if failure is not None:
                failure.mismatch = None
                outcome.failure = failure
                return outcome
        seen: set[int] = set()
        depths = {plan.spec(n).depth for n in range(1, min(schedules, 4))}
        outcome.depths = tuple(sorted(d for d in depths if d))
        sliced = numbers is not None
        if numbers is None:
            numbers = range(schedules)
        elif numbers and numbers[0] > 0:
            stock = self.run_spec(plan.spec(0))
            self._length = outcome.length = len(stock.picks)
            outcome.labels = len(set(stock.picks))
        for number in numbers:
            if stop is not None and number % _STOP_CHECK_EVERY == 0 and stop():
                outcome.stopped = True
                break
            spec = plan.spec(number)
            run = self.run_spec(spec)
            if number == 0:
                self._length = outcome.length = len(run.picks)
                outcome.labels = len(set(run.picks))
            outcome.schedules += 1
            if run.real_waits:
                outcome.waited_on_real_work += 1
            if sliced:
                digest = order_digest(run.picks)
                if digest not in outcome.orders:
                    outcome.orders.add(digest)
                    outcome.distinct += 1
            else:
                key = hash(tuple(run.picks))
                if key not in seen:
                    seen.add(key)
                    outcome.distinct += 1
            if run.error is not None:
                if found is not None:
                    found()
                failure = outcome.failure = self._on_failure(spec, run)
                if number > 0 and failure.token is not None and not failure.deviations:
                    # Stock order failed here and passed as schedule 0: the
                    # order is not what fails.
                    failure.carried_over = True
                    failure.token = None
                break
        return outcome

    def replay(self, token: ReplayToken | str) -> Failure | None:
        """Run the token's schedule; its failure (shrunk no further), or None.
        ``token`` is a :class:`ReplayToken` or its text (decoded here).

        Raises :class:`ReplayMismatchError` when the run passed and some of the
        token's deviations never applied: it did not replay the schedule the
        token records, so its passing says nothing.  When such a run fails, the
        failure's ``mismatch`` says which did not apply.
        """
        if isinstance(token, str):
            token = ReplayToken.decode(token)
        failure, mismatch = self._replay(token)
        if failure is None and mismatch is not None:
            raise mismatch
        return failure

    def _replay(self, token: ReplayToken) -> tuple[Failure | None, ReplayMismatchError | None]:
        spec = ScheduleSpec.from_name(token.strategy, token.seed)
        chooser = ReplayChooser(token.deviations)
        run = self.run(chooser, spec=spec)
        unapplied = chooser.unapplied()
        mismatch = None
        if unapplied:
            labels = list(dict.fromkeys(run.picks))
            mismatch = ReplayMismatchError(token, unapplied, labels, passed=run.error is None)
        if run.error is None:
            return None, mismatch
        failure = self._report(spec, run, token.deviations, found_with=len(token.deviations))
        failure.mismatch = mismatch
        return failure, mismatch

    # -- a failure -------------------------------------------------------------

    def _on_failure(self, spec: ScheduleSpec, run: ScheduleRun) -> Failure:
        again = self.run_spec(spec)
        divergence = _divergence(run, again)
        if divergence is not None:
            return Failure(
                spec=spec,
                error=run.error,  # type: ignore[arg-type]
                deviations=tuple(run.deviations),
                found_with=len(run.deviations),
                shrink_runs=0,
                token=None,
                nondeterminism=divergence,
                real_waits=run.real_waits,
            )
        deviations, shrink_runs = self._shrink(run)
        return self._report(spec, run, deviations, len(run.deviations), shrink_runs)

    def _shrink(self, failing: ScheduleRun) -> tuple[tuple[Deviation, ...], int]:
        current = list(failing.deviations)
        runs = 0
        chunk = max(len(current) // 2, 1)
        while current and runs < self.shrink_budget:
            start = 0
            dropped = False
            while start < len(current) and runs < self.shrink_budget:
                trial = current[:start] + current[start + chunk :]
                run = self.run(ReplayChooser(trial))
                runs += 1
                if run.same_failure(failing):
                    # What actually deviated: a kept deviation may no longer apply.
                    current = list(run.deviations)
                    dropped = True
                else:
                    start += chunk
            if chunk == 1 and not dropped:
                break  # a whole pass of single drops changed nothing: minimal
            chunk = max(chunk // 2, 1)
        return tuple(current), runs

    def _report(
        self,
        spec: ScheduleSpec,
        failing: ScheduleRun,
        deviations: Sequence[Deviation],
        found_with: int,
        shrink_runs: int = 0,
    ) -> Failure:
        sites: list[str] = []

        def note(oldest: Candidate, ran: Candidate) -> None:
            step = self.loop.steps_taken().get(oldest.label, 0)
            sites.append(describe_candidate(ran, oldest, step))

        tracer = Tracer(self.loop) if self.trace_failures else None
        if tracer is not None:
            tracer.install()
        try:
            final = self.run(ReplayChooser(deviations), note, tracer=tracer)
        finally:
            if tracer is not None:
                tracer.stop()  # when the body raised past the explorer
        trace = final.trace
        if not final.same_failure(failing):
            # The shrunk schedule passed when run again: report the run that failed.
            return Failure(
                spec=spec,
                error=failing.error,  # type: ignore[arg-type]
                deviations=tuple(deviations),
                found_with=found_with,
                shrink_runs=shrink_runs,
                token=None,
                nondeterminism=(
                    "the smallest failing schedule passed when run once more, so the "
                    "order alone does not decide the outcome"
                ),
                real_waits=failing.real_waits,
            )
        timeline = ""
        if trace is not None and tracer is not None and len(trace):
            # Name the rows by this schedule's labels, as the deviations are.
            for number, record in trace.tasks.items():
                label = final.labels.get(number)
                if label is not None:
                    record.name = label
            timeline = render_timeline(trace)
        assert final.error is not None
        return Failure(
            spec=spec,
            error=final.error,
            deviations=tuple(final.deviations),
            found_with=found_with,
            shrink_runs=shrink_runs,
            token=ReplayToken(self.test, spec.name, spec.seed, tuple(final.deviations)),
            sites=sites,
            timeline=timeline,
            real_waits=final.real_waits,
        )


def _divergence(first: ScheduleRun, second: ScheduleRun) -> str | None:
    """How two runs of one seed differ, or None when they agree."""
    for index, (one, two) in enumerate(zip(first.picks, second.picks, strict=False)):
        if one != two:
            return f"the same seed ran {one} at pick {index + 1} once and {two} the next time"
    if len(first.picks) != len(second.picks):
        shorter = min(len(first.picks), len(second.picks))
        return (
            f"the same seed made {len(first.picks)} picks once and {len(second.picks)} the "
            f"next time (they agree on the first {shorter})"
        )
    if type(first.error) is not type(second.error):
        return (
            f"the same schedule ended with {_kind(first.error)} once and "
            f"{_kind(second.error)} the next time"
        )
    return None


def _kind(error: BaseException | None) -> str:
    return "success" if error is None else type(error).__name__


def explore(
    function: Callable[[], Coroutine[Any, Any, object]],
    *,
    schedules: int = 1000,
    strategy: str = "mix",
    depth: int = DEFAULT_DEPTH,
    seed: int | None = None,
    name: str | None = None,
) -> Exploration:
    """Run ``function()`` under ``schedules`` schedules on a fresh
    :class:`ExploringLoop`; the result says whether (and how) one failed.

    For scripts and for tests that want the outcome of every schedule (have
    ``function`` record it).  The pytest plugin does the same for a test
    with ``--asyncspec-schedules=N``.  The arguments are checked as the
    marker's are: a bad one raises ``ValueError`` or ``TypeError`` at once.
    """
    _check_async_function(function, "explore")
    schedules = parse_schedules(schedules)
    strategy = parse_strategy(strategy)
    depth = parse_depth(depth)
    chosen = parse_seed(seed)
    if chosen is None:
        chosen = random.SystemRandom().randrange(2**63)
    with _explorer_of(function, name) as explorer:
        return explorer.explore(Plan(strategy, depth, chosen), schedules)


def replay(
    function: Callable[[], Coroutine[Any, Any, object]],
    token: ReplayToken | str,
) -> Failure | None:
    """Run ``function()`` once under the schedule ``token`` records (the text
    :func:`explore` or the plugin printed, or a decoded :class:`ReplayToken`);
    its failure, or None when it passes.

    Raises :class:`TokenError` for a malformed token or one from another
    version, and :class:`ReplayMismatchError` when the run passed without the
    token's deviations all applying (the code or its tasks changed since).
    """
    _check_async_function(function, "replay")
    with _explorer_of(function, None) as explorer:
        return explorer.replay(token)


@contextmanager
def _explorer_of(
    function: Callable[[], Coroutine[Any, Any, object]], name: str | None
) -> Iterator[Explorer]:
    """An explorer that runs ``function()`` once per schedule on a fresh loop,
    closed afterwards."""
    loop = ExploringLoop()
    try:
        yield Explorer(
            loop,
            lambda: loop.run_until_complete(function()),
            test=name or str(getattr(function, "__qualname__", "explored")),
        )
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


def _check_async_function(function: object, caller: str) -> None:
    """``function`` must make a fresh coroutine each call: it runs once per schedule."""
    if inspect.iscoroutine(function):
        function.close()
        raise TypeError(
            f"{caller}() takes an async function, called once per schedule, and got a "
            "coroutine object: pass main, not main()"
        )
    if not callable(function):
        raise TypeError(f"{caller}() takes an async function, got {function!r}")
    probe = function()
    if not inspect.isawaitable(probe):
        raise TypeError(
            f"{caller}() takes an async function (async def, or a callable returning a "
            f"coroutine), and {getattr(function, '__qualname__', function)!r} returned "
            f"{type(probe).__name__}"
        )
    if inspect.iscoroutine(probe):
        probe.close()  # made to look at, never run
