"""Virtual time that runs on while nothing progresses: livelocks, runaways,
and the deadlocks a timeout hides.

A deadlock beside a periodic task (a heartbeat's ``while True: await
asyncio.sleep(1)``) never looks like a deadlock to the loop: a timer is always
pending, so the clock jumps from beat to beat forever.  The rules here see
through it; all are judged only where the loop jumps (it is idle, nothing
real is in flight), so a test that never stalls pays a comparison a jump.

* **The stall budget** (:class:`StallWatch`): a task is *blocked* when it
  awaits a future that no pending timer completes or cancels (an Event nobody
  sets, a Queue nobody feeds; :func:`_timer_completes` reads what a timer
  completes, and a timer running code it cannot read might complete
  anything).  When the same tasks stay blocked on the same futures, no task
  starting or finishing, for ``budget`` virtual seconds while only timers
  fire, the loop raises :class:`LivelockError`: every task with its await
  chain, and which timers kept firing.
* **The time budget** (also :class:`StallWatch`): a poll that never ends
  blocks nothing.  Once a test has run past the time budget and its clock
  has jumped RUNAWAY_MIN_JUMPS times, the loop raises
  :class:`RunawayTimeError`.  Virtual time alone is no measure: ``for _ in
  range(1000): await asyncio.sleep(3600)`` runs 41.7 virtual days in 1,000
  jumps and is a fine test.
* **A deadlock a timeout hides** (:func:`timeout_ends_wait`): when the timer
  that fires next is a timeout (``wait_for``, ``asyncio.timeout()``,
  async-timeout's) and the wait it ends is blocked, only the timeout ends
  it.  The loop keeps that moment's listing, which the plugin adds to the
  test's ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import functools
import types
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

from ..introspection import ASYNCIO_DIR
from .ticks import NEVER, TICKS_PER_SECOND, ticks_to_seconds
from .virtual_loop import TIMEOUT_CALLBACKS, DeadlockError
from .waiting import WaitingTask, await_chain, place, waiting_task

#: How many signature checks a budget spans: a stall is seen at most
#: budget / CHECKS_PER_BUDGET late.
CHECKS_PER_BUDGET = 8
#: The time budget is judged only once the clock has jumped this many times
#: in the test: a simulation that crosses days in a few long sleeps (1,000
#: sleeps of an hour) is no runaway; a poll that never ends jumps on and on.
RUNAWAY_MIN_JUMPS = 10_000
#: The jumps over which a runaway's report counts the timers that fire.
RUNAWAY_WITNESS_JUMPS = 1_000

#: asyncio's C Task and its pure-Python twin, which is no subclass of it (a
#: task factory or an older pytest-asyncio may make the latter).
_TASK_TYPES: tuple[type, ...] = (asyncio.Task, getattr(asyncio.tasks, "_PyTask", asyncio.Task))


def _is_task(candidate: Any) -> bool:
    return isinstance(candidate, _TASK_TYPES)


def _timer_wakes(handle: asyncio.TimerHandle) -> Any:
    """The task a timer wakes (a sleep's future, a timeout's task), else the
    callback itself: what the report names for a timer that kept firing."""
    callback = handle._callback  # type: ignore[attr-defined]
    args = handle._args
    owner = getattr(callback, "__self__", None)
    target = getattr(owner, "_task", None)  # a Timeout object: the task it cancels
    if _is_task(target):
        return target
    if args and isinstance(args[0], asyncio.Future):
        future = args[0]
        for wakeup, _ in getattr(future, "_callbacks", None) or ():
            # A task awaiting the future is woken by its bound wakeup method.
            task = getattr(wakeup, "__self__", None)
            if _is_task(task):
                return task
        return future
    return callback


def is_timeout(handle: asyncio.TimerHandle) -> bool:
    """Whether a timer is a timeout (it cancels a wait rather than ends one)."""
    callback = handle._callback  # type: ignore[attr-defined]
    name = getattr(callback, "__name__", None)
    return name in TIMEOUT_CALLBACKS


#: What a timer whose callback the rules cannot read may complete: anything.
ANYTHING = None

#: The collections of waiting futures that asyncio's primitives keep: an
#: Event's, a Lock's, a Condition's and a Semaphore's ``_waiters``, a
#: Queue's ``_getters`` and ``_putters``.
_WAITER_COLLECTIONS = ("_waiters", "_getters", "_putters")


def _timer_completes(handle: asyncio.TimerHandle) -> set[int] | None:
    """id() of every task and future ``handle`` may complete or cancel, or
    ANYTHING when its callback is code the rules cannot read.

    Read are: asyncio's own functions (a sleep's ``_set_result_unless_cancelled``
    completes the future it is given), timeouts (they cancel their task), and
    bound methods of a future (``call_later(d, fut.set_result, x)``) or of an
    asyncio primitive (``call_later(d, event.set)``, ``queue.put_nowait``),
    through ``functools.partial`` too.  Anything else, a lambda, a library's
    ``self._cleanup``, might set any Event: no wait is blocked while it is
    pending, so no stall is claimed (the time budget still ends a runaway).
    """
    callback: Any = handle._callback  # type: ignore[attr-defined]
    args: Sequence[Any] = handle._args
    while isinstance(callback, functools.partial):
        args = (*callback.args, *args)
        callback = callback.func
    targets = {id(arg) for arg in args}
    owner = getattr(callback, "__self__", None)
    if owner is not None and not isinstance(owner, types.ModuleType):
        if isinstance(owner, asyncio.Future):
            targets.add(id(owner))
            return targets
        task = getattr(owner, "_task", None)
        if task is not None and getattr(callback, "__name__", None) in TIMEOUT_CALLBACKS:
            targets.add(id(task))  # a Timeout object (asyncio's, async-timeout's)
            return targets
        if not _in_asyncio(type(owner).__module__):
            return ANYTHING
        for name in _WAITER_COLLECTIONS:
            for waiter in getattr(owner, name, None) or ():
                targets.add(id(waiter))
        return targets
    if _in_asyncio(getattr(callback, "__module__", None)):
        return targets
    return ANYTHING


def _in_asyncio(module: str | None) -> bool:
    return module is not None and (module == "asyncio" or module.startswith("asyncio."))


def _timer_targets(loop: Any, *, timeouts: bool = True) -> set[int] | None:
    """id() of every task and future a pending timer may complete or cancel,
    or ANYTHING if one may complete anything (``timeouts=False``: leave out
    timeouts, which end a wait by cancelling it, completing nothing)."""
    targets: set[int] = set()
    for entry in loop._timer_heap:
        handle = entry[2]
        if handle._cancelled or (not timeouts and is_timeout(handle)):
            continue
        completes = _timer_completes(handle)
        if completes is ANYTHING:
            return ANYTHING
        targets |= completes
    return targets


def blocked_signature(loop: Any) -> frozenset[tuple[asyncio.Task[Any], Any]]:
    """Each blocked task of ``loop`` with the future it awaits (see module doc),
    and every other pending task with None: a changed set is progress."""
    waiters, blocked = _blocked_tasks(loop, _timer_targets(loop))
    return frozenset(
        (task, waiter if task in blocked else None) for task, waiter in waiters.items()
    )


def _blocked_tasks(
    loop: Any, targets: set[int] | None
) -> tuple[dict[asyncio.Task[Any], Any], set[asyncio.Task[Any]]]:
    """Every pending task of ``loop`` with the future it awaits, and those
    blocked: awaiting a future that none of ``targets`` (timer targets) is,
    nor a task (or a gather of tasks, or ``wait_for``'s waiter of one) that
    is not blocked itself.  With ``targets`` ANYTHING, none is blocked."""
    tasks = asyncio.all_tasks(loop)
    waiters = {task: getattr(task, "_fut_waiter", None) for task in tasks}
    if targets is ANYTHING:
        return waiters, set()
    blocked = {
        task
        for task, waiter in waiters.items()
        if waiter is not None and id(task) not in targets and id(waiter) not in targets
    }
    # A task awaiting a task (or a gather of tasks) that still runs on timers
    # is not blocked: ``await gather(*workers)`` beside workers that sleep
    # for days is a long test, not a livelock.
    releasers: dict[int, list[asyncio.Task[Any]]] | None = None  # built when first needed
    changed = True
    while changed:
        changed = False
        for task in list(blocked):
            waiter = waiters[task]
            awaited = _awaited_tasks(waiter)
            if not awaited:
                if releasers is None:
                    releasers = _waiter_releasers(tasks)
                awaited = releasers.get(id(waiter), [])
            if any(other in tasks and other not in blocked for other in awaited):
                blocked.discard(task)
                changed = True
    return waiters, blocked


def _waiter_releasers(tasks: set[asyncio.Task[Any]]) -> dict[int, list[asyncio.Task[Any]]]:
    """id() of a plain future -> the tasks whose end completes it through a
    ``functools.partial`` done-callback (``wait_for``'s waiter before Python
    3.12: the caller awaits the waiter, which the inner task's end releases)."""
    releasers: dict[int, list[asyncio.Task[Any]]] = {}
    for task in tasks:
        for callback, _ in getattr(task, "_callbacks", None) or ():
            if isinstance(callback, functools.partial) and callback.args:
                target = callback.args[0]
                if isinstance(target, asyncio.Future) and not _is_task(target):
                    releasers.setdefault(id(target), []).append(task)
    return releasers


def _awaited_tasks(waiter: Any) -> list[Any]:
    """The tasks whose end completes ``waiter``: itself if it is a task, the
    children of a ``gather`` (for ``wait_for``'s waiter, see
    :func:`_waiter_releasers`)."""
    if _is_task(waiter):
        return [waiter]
    return list(getattr(waiter, "_children", None) or ())


def _tasks_and_timers(loop: Any) -> list[WaitingTask]:
    """Every pending task, as the deadlock report lists them; a task a timer
    will wake (or a timeout cancel) says so, with the timer's due time, rather
    than "a future that nothing will complete"."""
    due: dict[int, int] = {}
    for tick, _, handle in loop._timer_heap:
        if not handle._cancelled:
            target = id(_timer_wakes(handle))
            due[target] = min(tick, due.get(target, tick))
    described = []
    for task in sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()):
        tick = due.get(id(task))
        awaiting = (
            None if tick is None else f"a timer due at virtual time {ticks_to_seconds(tick):g} s"
        )
        described.append(waiting_task(task, awaiting))
    return described


def _describe_wake(target: Any) -> str:
    if _is_task(target):
        frames = await_chain(target)
        user = [f for f in frames if not f.f_code.co_filename.startswith(ASYNCIO_DIR)]
        where = place(user[-1] if user else frames[-1]) if frames else "?"
        return f"the timer of task {target.get_name()!r} at {where}"
    name = getattr(target, "__qualname__", None) or type(target).__name__
    return f"the timer calling {name}"


class _TimersKeptFiring(DeadlockError):
    """A DeadlockError beside timers that kept firing: every pending task
    (``tasks``) and the timers that fired with how often (``timers``)."""

    def __init__(
        self,
        at_seconds: float,
        tasks: list[WaitingTask],
        timers: list[tuple[str, int]],
        *,
        watched: str,
        cause: str,
        advice: str,
    ) -> None:
        self.at_seconds = at_seconds
        self.tasks = tasks
        self.threads = []
        self.timers = timers
        firing = "\n".join(
            f"{what} fired {count} time(s) in the last {watched}" for what, count in timers
        )
        listing = "\n".join(task.describe() for task in tasks)
        # Not DeadlockError's own message: the cause differs, the listing is alike.
        RuntimeError.__init__(self, f"{cause}\n{firing}\n{listing}\n{advice}")


class LivelockError(_TimersKeptFiring):
    """Tasks stay blocked while only timers fire, for the whole stall budget.

    A :class:`~pytest_asyncspec.clock.virtual_loop.DeadlockError` beside periodic tasks:
    ``tasks`` lists every pending task with its await chain, ``timers`` the
    timers that kept firing and how often.
    """

    def __init__(
        self,
        at_seconds: float,
        stalled_seconds: float,
        tasks: list[WaitingTask],
        timers: list[tuple[str, int]],
        watched_seconds: float,
    ) -> None:
        self.stalled_seconds = stalled_seconds
        super().__init__(
            at_seconds,
            tasks,
            timers,
            watched=f"{watched_seconds:g} s",
            cause=f"livelock at virtual time {at_seconds:g} s: for {stalled_seconds:g} s of "
            "virtual time (the stall budget) the same tasks waited on the same "
            "futures, which no timer completes, while only timers fired:",
            advice="Look for an Event/Future/Queue that is never set or fed; periodic tasks "
            "(heartbeats) kept the clock running. Raise or switch off the budget with "
            "asyncspec_stall_budget if the wait is meant.",
        )


class RunawayTimeError(_TimersKeptFiring):
    """The test's virtual time passed the time budget over many jumps.

    ``tasks`` lists every pending task with its await chain, ``timers`` the
    timers that kept firing and how often, ``jumps`` how many times the clock
    jumped since the test began.
    """

    def __init__(
        self,
        at_seconds: float,
        budget_seconds: float,
        jumps: int,
        tasks: list[WaitingTask],
        timers: list[tuple[str, int]],
        watched_jumps: int,
    ) -> None:
        self.budget_seconds = budget_seconds
        self.jumps = jumps
        super().__init__(
            at_seconds,
            tasks,
            timers,
            watched=f"{watched_jumps:,} jumps",
            cause=f"virtual time ran away: the test has run {_duration(at_seconds)} of "
            f"virtual time, past its time budget of {_duration(budget_seconds)}, and the "
            f"clock jumped {jumps:,} times from timer to timer to get there:",
            advice="Look for a loop that polls for a condition nothing makes true (`while "
            "not done: await asyncio.sleep(...)`) or a periodic task the test never stops. "
            "A test meant to run this long in virtual time raises the budget or switches "
            "it off with asyncspec_time_budget.",
        )


def _duration(seconds: float) -> str:
    """Virtual seconds as a reader takes them in: 86400 s is "24 h"."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= 2 * size:
            return f"{seconds / size:.3g} {unit} ({seconds:g} s)"
    return f"{seconds:g} s"


class StallWatch:
    """The stall budget and the time budget of one loop (see the module doc).

    The loop calls :meth:`check` when a jump reaches :attr:`next_check`.  For
    the stall budget the blocked tasks are compared every
    budget/CHECKS_PER_BUDGET, and in the last such stretch of a stall every
    jump counts which timers fire, for the report.  The time budget is
    looked at every budget/CHECKS_PER_BUDGET from the moment it is spent;
    once the jumps are enough too, the next RUNAWAY_WITNESS_JUMPS jumps
    count the timers that fire, and then the test fails.
    """

    __slots__ = (
        "_budget",
        "_interval",
        "_next_signature",
        "_next_stall",
        "_next_time",
        "_signature",
        "_since",
        "_started",
        "_started_jumps",
        "_time_budget",
        "_time_interval",
        "_time_witness",
        "_time_witness_until",
        "_witness",
        "_witness_from",
    )

    def __init__(
        self, budget_seconds: float | None, time_budget_seconds: float | None = None
    ) -> None:
        self._budget = 0
        self._interval = 0
        self._signature: frozenset[tuple[asyncio.Task[Any], Any]] = frozenset()
        self._since = 0
        self._witness: Counter[Any] | None = None
        self._witness_from = 0
        self._next_signature = 0
        self._next_stall = NEVER
        self._time_budget = 0
        self._time_interval = 0
        self._started = 0
        self._started_jumps = 0
        self._time_witness: Counter[Any] | None = None
        self._time_witness_until = 0
        self._next_time = NEVER
        self.restart(budget_seconds, 0)
        self.restart_time(time_budget_seconds, 0, 0)

    @property
    def budget_seconds(self) -> float | None:
        return None if self._budget == 0 else self._budget / TICKS_PER_SECOND

    @property
    def time_budget_seconds(self) -> float | None:
        return None if self._time_budget == 0 else self._time_budget / TICKS_PER_SECOND

    @property
    def next_check(self) -> int:
        """The tick of the next jump :meth:`check` must see (NEVER: none)."""
        return min(self._next_stall, self._next_time)

    def restart(self, budget_seconds: float | None, now: int) -> int:
        """A new test (or schedule) begins at tick ``now``: forget the last
        one's stall; returns the tick of the next check."""
        self._budget = 0 if budget_seconds is None else int(budget_seconds * TICKS_PER_SECOND)
        self._interval = max(1, self._budget // CHECKS_PER_BUDGET)
        self._count_stall_from(now)
        return self.next_check

    def _count_stall_from(self, now: int) -> None:
        self._signature = frozenset()
        self._since = now
        self._witness = None
        self._next_signature = now + self._interval
        self._next_stall = NEVER if self._budget == 0 else self._next_signature

    def restart_time(self, budget_seconds: float | None, now: int, jumps: int) -> int:
        """A new test (or schedule) begins at tick ``now``, after the loop's
        ``jumps``-th jump: its time budget counts from here; returns the
        tick of the next check."""
        self._time_budget = 0 if budget_seconds is None else int(budget_seconds * TICKS_PER_SECOND)
        self._time_interval = max(1, self._time_budget // CHECKS_PER_BUDGET)
        self._count_time_from(now, jumps)
        return self.next_check

    def _count_time_from(self, now: int, jumps: int) -> None:
        self._started = now
        self._started_jumps = jumps
        self._time_witness = None
        self._next_time = NEVER if self._time_budget == 0 else now + self._time_budget

    def restart_both(self, now: int, jumps: int) -> int:
        """A new schedule begins at tick ``now``, after the loop's
        ``jumps``-th jump: both budgets, as they are, count from here (one
        call, with no conversion of the budgets to seconds and back);
        returns the tick of the next check."""
        self._count_stall_from(now)
        self._count_time_from(now, jumps)
        return self.next_check

    def check(self, loop: Any, due: int) -> int:
        """The loop jumps to ``due``: raise LivelockError on a stall past the
        stall budget, RunawayTimeError on a runaway past the time budget;
        returns the tick of the next check."""
        if due >= self._next_stall:
            self._next_stall = self._check_stall(loop, due)
        if due >= self._next_time:
            self._next_time = self._check_time(loop, due)
        return self.next_check

    def _check_time(self, loop: Any, due: int) -> int:
        jumps = loop._jumps - self._started_jumps
        witness = self._time_witness
        if witness is not None:
            self._count_firings(loop, due, witness)
            if jumps < self._time_witness_until:
                return due + 1
            error = RunawayTimeError(
                ticks_to_seconds(due - self._started),
                ticks_to_seconds(self._time_budget),
                jumps,
                _tasks_and_timers(loop),
                [(_describe_wake(target), n) for target, n in witness.most_common()],
                RUNAWAY_WITNESS_JUMPS,
            )
            # Reported once: the clean-up that follows (cancelling) runs on.
            self._time_witness = None
            self._next_time = NEVER
            raise error
        if jumps < RUNAWAY_MIN_JUMPS:
            return due + self._time_interval
        # Spent, and in many jumps: count the timers that keep it running.
        self._time_witness = Counter()
        self._time_witness_until = jumps + RUNAWAY_WITNESS_JUMPS
        return due + 1

    def _check_stall(self, loop: Any, due: int) -> int:
        witness = self._witness
        if witness is not None:
            self._count_firings(loop, due, witness)
        if due < self._next_signature:
            return due + 1  # only while witnessing: no other check is due
        self._next_signature = due + self._interval
        signature = blocked_signature(loop)
        if signature != self._signature or all(waiter is None for _, waiter in signature):
            self._signature = signature
            self._since = due
            self._witness = None
            return self._next_signature
        stalled = due - self._since
        if stalled >= self._budget:
            counts = witness or Counter()
            error = LivelockError(
                ticks_to_seconds(due),
                ticks_to_seconds(stalled),
                _tasks_and_timers(loop),
                [(_describe_wake(target), n) for target, n in counts.most_common()],
                ticks_to_seconds(due - self._witness_from) if witness is not None else 0.0,
            )
            # Reported once: the clean-up that follows (cancelling) starts afresh.
            self._signature = frozenset()
            self._witness = None
            self._since = due
            raise error
        if witness is None and stalled + self._interval >= self._budget:
            # The last stretch of the stall: count which timers fire (at every
            # jump, so only now, not through the whole budget).
            # (Those firing now belong to the stretch before.)
            self._witness = Counter()
            self._witness_from = due
        return due + 1 if self._witness is not None else self._next_signature

    @staticmethod
    def _count_firings(loop: Any, due: int, counts: Counter[Any]) -> None:
        heap = loop._timer_heap
        # Walk only the heap's entries due by then (a heap's children are
        # never due earlier than their parent).
        stack = [0] if heap else []
        while stack:
            index = stack.pop()
            entry = heap[index]
            if entry[0] > due:
                continue
            if not entry[2]._cancelled:
                counts[_timer_wakes(entry[2])] += 1
            stack.extend(child for child in (2 * index + 1, 2 * index + 2) if child < len(heap))


class HiddenDeadlock(NamedTuple):
    """What a timeout ended (see :func:`timeout_ends_wait`)."""

    #: The virtual time at which the timeout fired.
    at_seconds: float
    #: Every pending task then, with its await chain.
    tasks: list[WaitingTask]
    #: The names of the tasks only timers woke (periodic tasks such as a
    #: heartbeat); empty when every task waited on what only the timeout ends.
    on_timers: list[str]


def timeout_ends_wait(loop: Any, handle: asyncio.TimerHandle, due: int) -> HiddenDeadlock | None:
    """The timeout ``handle`` is about to fire at ``due``: if the wait it ends
    is blocked (it awaits, directly or through tasks, a future that no timer
    but a timeout completes, see :func:`blocked_signature`) and every other
    task is blocked too or runs on timers alone, what the loop looked like.
    """
    targets = _timer_targets(loop, timeouts=False)
    if targets is ANYTHING:
        return None  # a timer that may complete anything: no wait is blocked
    waiters, blocked = _blocked_tasks(loop, targets)
    victim = _timer_wakes(handle)
    if victim not in blocked:
        return None
    return HiddenDeadlock(
        ticks_to_seconds(due),
        _tasks_and_timers(loop),
        sorted(task.get_name() for task in waiters if task not in blocked),
    )


def describe_hidden_deadlock(hidden: HiddenDeadlock) -> str:
    """The section the plugin adds to a TimeoutError that ended a blocked wait."""
    listing = "\n".join(task.describe() for task in hidden.tasks)
    blocked = len(hidden.tasks) - len(hidden.on_timers)
    if not hidden.on_timers:
        return (
            f"at virtual time {hidden.at_seconds:g} s a timeout ended a deadlock: "
            f"{blocked} task(s) waited, and no timer but the timeout(s), no I/O and no "
            "executor job could wake them.\n"
            f"{listing}\n"
            "Look for an Event/Future/Queue that is never set or fed, or a task awaiting "
            "itself through another task."
        )
    periodic = ", ".join(repr(name) for name in hidden.on_timers)
    return (
        f"at virtual time {hidden.at_seconds:g} s a timeout ended a wait that no timer "
        f"could end: {blocked} task(s) waited on futures that no timer completes, "
        f"while only timers woke the other task(s) ({periodic}). Unless those set "
        "or feed what the waiting tasks await, the timeout ended a deadlock beside a "
        "periodic task.\n"
        f"{listing}\n"
        "Look for an Event/Future/Queue that is never set or fed; a heartbeat's timer "
        "keeps the clock running but completes nothing."
    )
