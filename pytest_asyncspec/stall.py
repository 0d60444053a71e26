"""Virtual time that runs on while nothing progresses: livelocks, and the
deadlocks a timeout hides.

A deadlock beside a periodic task (a heartbeat's ``while True: await
asyncio.sleep(1)``) never looks like a deadlock to the loop: a timer is always
pending, so the clock jumps from beat to beat forever.  Two rules here see
through it; both are judged only where the loop jumps (it is idle, nothing
real is in flight), so a test that never stalls pays one comparison a jump.

* **The stall budget** (:class:`StallWatch`): a task is *blocked* when it
  awaits a future that no pending timer completes or cancels (an Event nobody
  sets, a Queue nobody feeds).  When the same tasks stay blocked on the same
  futures, no task starting or finishing, for ``budget`` virtual seconds while
  only timers fire, the loop raises :class:`LivelockError`: every task with
  its await chain, and which timers kept firing.  Virtual time alone is no
  measure: ``for _ in range(1000): await asyncio.sleep(3600)`` runs 41.7
  virtual days and is a fine test, with nothing blocked.
* **A deadlock a timeout hides** (:func:`timeout_ends_deadlock`): when the
  only timers left are timeouts (``wait_for``, ``asyncio.timeout()``,
  async-timeout's) and every task is blocked, the timeout that fires next is
  all that ends the wait.  The loop keeps that moment's listing, which the
  plugin adds to the test's ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any

from .clock import TIMEOUT_CALLBACKS, DeadlockError
from .ticks import TICKS_PER_SECOND, ticks_to_seconds
from .waiting import WaitingTask, await_chain, place, waiting_task

#: How many signature checks a budget spans: a stall is seen at most
#: budget / CHECKS_PER_BUDGET late.
CHECKS_PER_BUDGET = 8

_ASYNCIO_DIR = os.path.dirname(asyncio.__file__)
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


def _timer_targets(loop: Any) -> set[int]:
    """id() of every task and future a pending timer completes or cancels."""
    targets: set[int] = set()
    for entry in loop._timer_heap:
        handle = entry[2]
        if handle._cancelled:
            continue
        targets.add(id(_timer_wakes(handle)))
        for arg in handle._args:
            targets.add(id(arg))
    return targets


def blocked_signature(loop: Any) -> frozenset[tuple[asyncio.Task[Any], Any]]:
    """Each blocked task of ``loop`` with the future it awaits (see module doc),
    and every other pending task with None: a changed set is progress."""
    targets = _timer_targets(loop)
    tasks = asyncio.all_tasks(loop)
    waiters = {task: getattr(task, "_fut_waiter", None) for task in tasks}
    blocked = {
        task
        for task, waiter in waiters.items()
        if waiter is not None and id(task) not in targets and id(waiter) not in targets
    }
    # A task awaiting a task (or a gather of tasks) that still runs on timers
    # is not blocked: ``await gather(*workers)`` beside workers that sleep
    # for days is a long test, not a livelock.
    changed = True
    while changed:
        changed = False
        for task in list(blocked):
            awaited = _awaited_tasks(waiters[task])
            if any(other in tasks and other not in blocked for other in awaited):
                blocked.discard(task)
                changed = True
    return frozenset((task, waiters[task] if task in blocked else None) for task in tasks)


def _awaited_tasks(waiter: Any) -> list[Any]:
    """The tasks whose end completes ``waiter``: itself if it is a task, the
    children of a ``gather``."""
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
        user = [f for f in frames if not f.f_code.co_filename.startswith(_ASYNCIO_DIR)]
        where = place(user[-1] if user else frames[-1]) if frames else "?"
        return f"the timer of task {target.get_name()!r} at {where}"
    name = getattr(target, "__qualname__", None) or type(target).__name__
    return f"the timer calling {name}"


class LivelockError(DeadlockError):
    """Tasks stay blocked while only timers fire, for the whole stall budget.

    A :class:`~pytest_asyncspec.clock.DeadlockError` beside periodic tasks:
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
        self.at_seconds = at_seconds
        self.stalled_seconds = stalled_seconds
        self.tasks = tasks
        self.threads = []
        self.timers = timers
        firing = "\n".join(
            f"{what} fired {count} time(s) in the last {watched_seconds:g} s"
            for what, count in timers
        )
        listing = "\n".join(task.describe() for task in tasks)
        # Not DeadlockError's own message: the cause differs, the listing is alike.
        RuntimeError.__init__(
            self,
            f"livelock at virtual time {at_seconds:g} s: for {stalled_seconds:g} s of "
            "virtual time (the stall budget) the same tasks waited on the same "
            "futures, which no timer completes, while only timers fired:\n"
            f"{firing}\n"
            f"{listing}\n"
            "Look for an Event/Future/Queue that is never set or fed; periodic tasks "
            "(heartbeats) kept the clock running. Raise or switch off the budget with "
            "asyncspec_stall_budget if the wait is meant.",
        )


class StallWatch:
    """The stall budget of one loop (see the module doc).

    The loop calls :meth:`check` when a jump reaches the tick the last call
    returned: the blocked tasks are compared every budget/CHECKS_PER_BUDGET,
    and in the last such stretch of a stall every jump counts which timers
    fire, for the report.
    """

    __slots__ = (
        "_budget",
        "_interval",
        "_next_signature",
        "_signature",
        "_since",
        "_witness",
        "_witness_from",
    )

    def __init__(self, budget_seconds: float | None) -> None:
        self._budget = 0
        self._interval = 0
        self._signature: frozenset[tuple[asyncio.Task[Any], Any]] = frozenset()
        self._since = 0
        self._witness: Counter[Any] | None = None
        self._witness_from = 0
        self._next_signature = 0
        self.restart(budget_seconds, 0)

    @property
    def budget_seconds(self) -> float | None:
        return None if self._budget == 0 else self._budget / TICKS_PER_SECOND

    def restart(self, budget_seconds: float | None, now: int) -> int:
        """A new test (or schedule) begins at tick ``now``: forget the last
        one's stall; returns the tick of the first check (None: never)."""
        self._budget = 0 if budget_seconds is None else int(budget_seconds * TICKS_PER_SECOND)
        self._interval = max(1, self._budget // CHECKS_PER_BUDGET)
        self._signature = frozenset()
        self._since = now
        self._witness = None
        self._next_signature = now + self._interval
        return self._next_signature

    def check(self, loop: Any, due: int) -> int:
        """The loop jumps to ``due``: raise LivelockError on a stall past the
        budget; returns the tick of the next check."""
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


def timeout_ends_deadlock(loop: Any) -> list[WaitingTask] | None:
    """At a jump whose first timer is a timeout: every task of ``loop`` with
    its await chain if all of them are blocked and every pending timer is a
    timeout (the deadlock the timeout is about to end), else None."""
    heap = loop._timer_heap
    if any(not entry[2]._cancelled and not is_timeout(entry[2]) for entry in heap):
        return None
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return None
    for task in tasks:
        waiter = getattr(task, "_fut_waiter", None)
        if waiter is None or waiter.done():
            return None
    return _tasks_and_timers(loop)


def describe_hidden_deadlock(at_seconds: float, tasks: list[WaitingTask]) -> str:
    """The section the plugin adds to a TimeoutError that ended a deadlock."""
    listing = "\n".join(task.describe() for task in tasks)
    return (
        f"at virtual time {at_seconds:g} s a timeout ended a deadlock: {len(tasks)} "
        "task(s) waited, and no timer but the timeout(s), no I/O and no executor job "
        "could wake them.\n"
        f"{listing}\n"
        "Look for an Event/Future/Queue that is never set or fed, or a task awaiting "
        "itself through another task."
    )
