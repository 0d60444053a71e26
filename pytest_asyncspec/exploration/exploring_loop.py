"""A virtual-clock loop that lets a strategy choose which ready callback runs next.

Stock asyncio runs ready callbacks in the order they became ready (FIFO).
Here every ready callback waits in a *pool*, and at each pick a
:class:`Chooser` picks one of the *candidates*:

* a task's next step (each task is its own lane, so a task's steps keep
  their order -- there is only ever one ready step per task anyway);
* a timer that fired (timers due at the same instant are independent: they
  may run in any order);
* the head of the loop's own lane: every other callback (I/O callbacks,
  future callbacks, ``call_soon`` from user code or from other threads) keeps
  its FIFO order relative to the rest of that lane.  That keeps each I/O
  stream in order (no data before its connection is made), at the price of
  never reordering two such callbacks against each other.

A callback passed over :data:`FAIRNESS_BOUND` times in a row while it is the
oldest runs next, whatever the chooser says: every schedule ends.

A task step or a timer may run before older task steps and timers, but never
before an older callback of the loop's lane: asyncio's internals rely on a
future's earlier done callbacks running before the task it wakes resumes
(``sock_connect`` removes its writer in one; a task that resumed first would
already have built a transport on that socket).  The lane's head itself may
run before older task steps.

Per loop iteration as many picks are made as the pool held when the
iteration began, then I/O is polled, as in asyncio's own loop; a callback
made ready during the iteration may be picked in it.  With the FIFO chooser
the picks are exactly stock asyncio's order (a test checks it).

Each pick is logged under a *label* that does not depend on ``id()`` or on
asyncio's global ``Task-N`` counter: a task is ``<name>-<k>`` (its name if
the user gave one, else its coroutine's name; k counts tasks of that name in
this schedule), a timer is ``<label of the task that set it>:t<k>``, and the
loop's lane is ``loop``.  A deviation from FIFO is logged as "when X's step s
was next, Y ran", which is what a replay needs and what shrinking removes.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import re
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Protocol, cast

from ..clock import time_patch
from ..clock.ticks import seconds_to_ticks
from ..clock.virtual_loop import DEFAULT_BUSY_GRACE, DEFAULT_DEADLOCK_GRACE, VirtualClockLoop
from ..introspection import live_coro
from ..tracing.task_table import SHORT_NAMES, shown_task_name
from .deviation import Deviation

LANE = "loop"
#: Picks in a row that may pass over the oldest ready callback before it runs
#: regardless of the chooser.  Without a bound, a strategy that favours a
#: task or I/O callback that is always ready (an I/O callback re-armed by
#: every poll, a task spinning on ``sleep(0)``) starves the rest forever and
#: the schedule never ends; stock asyncio is fair.  64 keeps deviations that
#: delay a callback by dozens of steps.
FAIRNESS_BOUND = 64
#: The label of the plugin's own bookkeeping callbacks (a tracer reading task
#: names): run as they arrive, never picked, logged or counted, so that
#: observing a test does not change the schedules it is explored under.
BOOKKEEPING = "asyncspec"
_TIMER_LABEL = re.compile(r":t\d+$")
#: What one pick costs a busy streak during a schedule, in ns: the clock of a
#: loop that never idles follows its picks, not real time, so a schedule
#: replays exactly.  A microsecond is under what a callback costs asyncio's
#: own loop (two to three here), so a burst of work is never made to look
#: slower than it runs there, and a busy poll still times out.
PICK_NS = 1_000


def is_timer_label(label: str) -> bool:
    """Whether ``label`` names a timer (``<creator>:t<k>``, as ExploringLoop
    labels them)."""
    return _TIMER_LABEL.search(label) is not None


# The C task and the pure-Python one (used when the C accelerator is not).
_TASK_TYPES: tuple[type, ...] = tuple(
    {asyncio.Task, getattr(asyncio.tasks, "_PyTask", asyncio.Task)}
)


class Candidate(NamedTuple):
    """A ready callback a chooser may pick: its arrival number and its label."""

    seq: int
    label: str
    handle: asyncio.Handle


class Chooser(Protocol):
    """Picks the next callback to run; one instance drives one schedule."""

    #: True when it always picks the oldest candidate (the loop then takes a
    #: fast path that logs the same picks without building candidates).
    fifo: bool

    def arrive(self, candidate: Candidate) -> None:
        """``candidate`` joined the pool (called once for each candidate),
        unless the chooser has a true ``ignores_arrivals`` attribute."""
        ...

    def choose(
        self, candidates: Sequence[Candidate], eligible: int, pick: int, steps: dict[str, int]
    ) -> int:
        """Index of the one to run among the first ``eligible`` of ``candidates``
        (the pool, oldest first; ``eligible`` is at least 1).

        ``pick`` counts this schedule's earlier calls of ``choose``; ``steps``
        counts how many steps each label has taken.
        """
        ...


#: Called for each deviation while a schedule runs: (oldest, picked).
DeviationListener = Callable[[Candidate, Candidate], None]


class ExploringLoop(VirtualClockLoop):
    """A :class:`VirtualClockLoop` whose ready callbacks are picked by a chooser.

    Outside :meth:`begin_schedule` / :meth:`end_schedule` it behaves exactly
    like its base class.
    """

    # Slots, as in the base class: asyncio's loop already keeps its many
    # attributes in its instance dict, and more there slow every attribute
    # read of the loop, with or without a schedule running (measured in
    # docs/benchmarks.md, "Figures behind choices in the code").
    __slots__ = (
        "_arrivals",
        "_candidates",
        "_choices",
        "_chooser",
        "_lane_seq",
        "_name_counts",
        "_passed_over",
        "_pick_state",
        "_prune_labels_at",
        "_queued",
        "_schedule_timers",
        "_starving",
        "_steps",
        "_task_labels",
        "_timer_counts",
        "_timer_labels",
        "deviations",
        "on_deviation",
        "on_label",
        "picks",
        "real_waits",
    )

    def __init__(
        self,
        *args: Any,
        deadlock_grace: float = DEFAULT_DEADLOCK_GRACE,
        busy_grace: float | None = DEFAULT_BUSY_GRACE,
        manual: bool = False,
    ) -> None:
        super().__init__(*args, deadlock_grace=deadlock_grace, busy_grace=busy_grace, manual=manual)
        self._chooser: Chooser | None = None
        self._reset_schedule_state()

    def _reset_schedule_state(self) -> None:
        #: The label of every pick of the current schedule, in order.
        self.picks: list[str] = []
        #: The picks that were not the oldest candidate.
        self.deviations: list[Deviation] = []
        self.on_deviation: DeviationListener | None = None
        #: Called with each task and its label when the schedule first sees it
        #: (a report names trace rows by label without holding the tasks).
        self.on_label: Callable[[asyncio.Future[Any], str], None] | None = None
        #: Times the schedule waited for real work (threads, outside sockets),
        #: whose timing, not the chooser, may then decide an order.
        self.real_waits = 0
        self._steps: dict[str, int] = {}
        # Tasks are held weakly: one the user dropped must be collected when
        # asyncio's own references go, so that its "exception was never
        # retrieved" is logged as on the stock loop.  Picks and deviations
        # keep plain labels.  Keyed by id() for a fast lookup on every pick
        # (a WeakKeyDictionary is measurably slower: docs/benchmarks.md,
        # "Figures behind choices in the code"); a hit counts only when
        # its weak reference still gives that very task; dead entries are
        # pruned in bulk (_prune_task_labels) or replaced when their id()
        # comes back.  Insertion order is the order labels were given.
        self._task_labels: dict[int, tuple[weakref.ref[asyncio.Future[Any]], str]] = {}
        self._prune_labels_at = _FIRST_LABEL_PRUNE
        self._name_counts: dict[str, int] = {}
        self._timer_counts: dict[str, int] = {}
        # id() of a pending timer -> its label (timers define __eq__ on their
        # contents, so two identical call_later's would share a dict key).
        self._timer_labels: dict[int, str] = {}
        # Timers set during the schedule (cancelled if pending at its end),
        # weakly: a pending one is held by the loop, a fired one may hold
        # what its callback was given (a task's bound method, say).
        self._schedule_timers: list[weakref.ref[asyncio.TimerHandle]] = []
        # The pool: candidates sorted by arrival, and per label the callbacks
        # queued behind its candidate.
        self._candidates: list[Candidate] = []
        self._queued: dict[str, deque[Candidate] | None] = {}
        self._arrivals = 0
        # Arrival number of the loop lane's candidate, if it has one.
        self._lane_seq: int | None = None
        # How many picks in a row passed over the oldest candidate (arrival
        # number _starving); see FAIRNESS_BOUND.
        self._starving = -1
        self._passed_over = 0
        # Calls of the chooser: each gets its own number, even when the
        # callback it picked turns out to be cancelled (PCT's change points
        # count choices).
        self._choices = 0
        # The C pick loop's own hold on the above (containers and counters),
        # made at its first call of a schedule; None for the Python twin.
        self._pick_state: object | None = None

    # -- schedules -----------------------------------------------------------

    def begin_schedule(self, chooser: Chooser) -> None:
        """Let ``chooser`` pick every callback from now on, with fresh labels."""
        if self._chooser is not None:
            raise RuntimeError("a schedule is already running on this loop; end it first")
        self._reset_schedule_state()
        self._chooser = chooser
        # The stall and time budgets count per schedule, from its start: a
        # livelock or runaway is reported at the same virtual instant
        # whenever the schedule replays.
        self.restart_budgets()
        # A busy streak is measured in picks from now on (see PICK_NS).
        picks = self.picks
        self._busy_clock = lambda: len(picks) * PICK_NS
        self._restart_busy_streak()

    def end_schedule(self) -> None:
        """Back to stock order; callbacks still in the pool return to it, oldest first."""
        self._chooser = None
        self._busy_clock = time_patch.real_monotonic_ns
        self._restart_busy_streak()
        if self._candidates:
            pending = list(self._candidates)
            for queue in self._queued.values():
                if queue:
                    pending.extend(queue)
            pending.sort()
            self._ready.extendleft(reversed([c.handle for c in pending]))  # type: ignore[attr-defined]
            self._candidates.clear()
            self._queued.clear()
        self._lane_seq = None
        self._held = 0
        self._pick_state = None
        self._task_labels.clear()
        self._timer_labels.clear()

    def steps_taken(self) -> dict[str, int]:
        """Picks per label in the current (or last) schedule."""
        return dict(self._steps)

    # -- labels --------------------------------------------------------------

    def label_of_task(self, task: asyncio.Future[Any]) -> str:
        """This schedule's label for ``task`` (given on first sight)."""
        entry = self._task_labels.get(id(task))
        if entry is not None and entry[0]() is task:
            return entry[1]
        return self._new_task_label(task)

    def _new_task_label(self, task: asyncio.Future[Any]) -> str:
        name = task.get_name() if isinstance(task, _TASK_TYPES) else ""  # type: ignore[attr-defined]
        coro = live_coro(task)
        name = shown_task_name(name, getattr(coro, "__qualname__", None) or type(coro).__name__)
        count = self._name_counts.get(name, 0) + 1
        self._name_counts[name] = count
        label = f"{name}-{count}"
        key = id(task)
        labels = self._task_labels
        if key in labels:
            # A dead task's entry under a reused id(): removed, not
            # overwritten, so that the new entry comes last in label order.
            del labels[key]
        elif len(labels) >= self._prune_labels_at:
            self._prune_task_labels()
        # A plain weak reference (a callback per task cost a measurable share
        # of a short schedule: docs/benchmarks-exploration.md); dead entries
        # are pruned in bulk.
        labels[key] = (weakref.ref(task), label)
        if self.on_label is not None:
            self.on_label(task, label)
        return label

    def _prune_task_labels(self) -> None:
        # Entries of collected tasks go, and the next pruning waits until the
        # table has doubled: a schedule of many short-lived tasks keeps a
        # table the size of its live tasks, at a constant cost per task.
        labels = self._task_labels
        for key, (held, _) in list(labels.items()):
            if held() is None:
                del labels[key]
        self._prune_labels_at = max(_FIRST_LABEL_PRUNE, 2 * len(labels))

    def in_label_order(self, tasks: Iterable[asyncio.Future[Any]]) -> list[asyncio.Future[Any]]:
        """``tasks`` in an order that depends on the schedule alone, never on
        ``id()`` (``all_tasks`` is a set, whose order follows memory addresses).

        Tasks with a label come in the order they got it.  The others are
        labelled now, in the order their first step waits to run (the pool,
        then asyncio's queue), as they would have been on arrival.  What is
        left -- an eager task suspended in its first step never waited in
        either -- comes by name, numbers compared as numbers (``Task-9``
        before ``Task-10``: asyncio numbers tasks in creation order).
        """
        wanted = set(tasks)
        if not wanted:
            return []
        if self._chooser is not None:
            pooled = [
                *self._candidates,
                *(c for queue in self._queued.values() if queue for c in queue),
            ]
            pooled.sort()
            waiting = [c.handle for c in pooled]
            waiting.extend(self._ready)  # type: ignore[attr-defined]
            for handle in waiting:
                owner = getattr(handle._callback, "__self__", None)  # type: ignore[attr-defined]
                if isinstance(owner, _TASK_TYPES) and owner in wanted:
                    self.label_of_task(owner)
        ordered = []
        for held, _ in list(self._task_labels.values()):
            task = held()
            if task is not None and task in wanted:
                ordered.append(task)
        rest = wanted.difference(ordered)
        ordered.extend(sorted(rest, key=_name_key))
        return ordered

    def _label_of(self, handle: asyncio.Handle) -> str:
        owner: Any = getattr(handle._callback, "__self__", None)  # type: ignore[attr-defined]
        if owner is not None and isinstance(owner, _TASK_TYPES):
            task = cast("asyncio.Future[Any]", owner)
            entry = self._task_labels.get(id(task))
            if entry is not None and entry[0]() is task:
                return entry[1]
            return self._new_task_label(task)
        if type(handle) is asyncio.TimerHandle:
            return self._timer_labels.pop(id(handle), LANE)
        if getattr(owner, "_asyncspec_bookkeeping", False):
            return BOOKKEEPING
        return LANE

    def _schedule(self, due: int, callback: Any, args: Any, context: Any) -> asyncio.TimerHandle:
        timer = super()._schedule(due, callback, args, context)
        if self._chooser is not None:
            task = asyncio.current_task(self)
            creator = LANE if task is None else self.label_of_task(task)
            count = self._timer_counts.get(creator, 0) + 1
            self._timer_counts[creator] = count
            self._timer_labels[id(timer)] = f"{creator}:t{count}"  # see is_timer_label
            self._schedule_timers.append(weakref.ref(timer))
        return timer

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        super()._timer_handle_cancelled(handle)  # type: ignore[misc]
        # A cancelled timer never runs to claim its label: drop it now, or a
        # later timer at the same address would inherit it.
        self._timer_labels.pop(id(handle), None)

    def cancel_schedule_timers(self) -> None:
        """Cancel the timers set during this schedule that have not fired."""
        for held in self._schedule_timers:
            timer = held()
            if timer is not None and timer._scheduled:  # type: ignore[attr-defined]
                timer.cancel()
        self._schedule_timers.clear()

    def has_ready(self) -> bool:
        """Whether any callback is ready (waiting in asyncio's queue or the pool)."""
        return bool(self._ready) or self._held > 0  # type: ignore[attr-defined]

    def would_idle(self) -> bool:
        """Whether a run of the loop now would find nothing to run: no callback
        is ready, no timer is due, and no descriptor but the loop's own
        self-pipe is watched (whose events would queue callbacks)."""
        if self._ready or self._held:  # type: ignore[attr-defined]
            return False
        heap = self._timer_heap
        if heap:
            now = self._ticks if self._own_time() else seconds_to_ticks(self.time())
            if heap[0][0] <= now:
                return False
        return len(self._selector.get_map()) <= 1  # type: ignore[attr-defined]

    # -- running callbacks -----------------------------------------------------

    def _run_ready(self) -> None:
        chooser = self._chooser
        if chooser is None:
            super()._run_ready()
        elif chooser.fifo and not self._held:
            self._run_ready_in_order()
        else:
            _run_chosen(self, chooser)

    def _run_ready_in_order(self) -> None:
        # The oldest first, as stock asyncio: only the labels are logged.
        ready = self._ready  # type: ignore[attr-defined]
        picks = self.picks
        steps = self._steps
        label_of = self._label_of
        for _ in range(len(ready)):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            label = label_of(handle)
            if label is not BOOKKEEPING:
                picks.append(label)
                steps[label] = steps.get(label, 0) + 1
            handle._run()
        handle = None  # break the failed-task cycle, as VirtualClockLoop._run_ready

    def _run_ready_chosen_py(self, chooser: Chooser) -> None:
        """One iteration's picks: the reference for ``_pick_c.run_chosen``,
        which does the same in C (used when the C accelerator is not)."""
        # One function for the arrivals and the picks: a call per pick to take
        # the arrivals it made cost about 5 % of a random schedule of
        # crowd20 (docs/benchmarks-exploration.md).
        candidates = self._candidates
        queued = self._queued
        task_labels = self._task_labels
        steps = self._steps
        picks = self.picks
        deviations = self.deviations
        choose = chooser.choose
        # A chooser that says it ignores arrivals is not told of them.
        arrive = None if getattr(chooser, "ignores_arrivals", False) else chooser.arrive
        ready = self._ready  # type: ignore[attr-defined]
        bisect_right = bisect.bisect_right
        left = -1  # picks left in this iteration, counted once the first arrivals are in
        # Read and written by this method alone: kept in locals, and stored
        # back however the loop below ends.
        choices = self._choices
        passed_over = self._passed_over
        starving = self._starving
        try:
            while True:
                # Newly ready callbacks join the pool.
                while ready:
                    handle = ready.popleft()
                    # A task's step or wake-up is the common arrival: its label is
                    # looked up here, without a call of _label_of.
                    owner = getattr(handle._callback, "__self__", None)
                    if owner is not None and isinstance(owner, _TASK_TYPES):
                        known = task_labels.get(id(owner))
                        if known is not None and known[0]() is owner:
                            label = known[1]
                        else:
                            label = self._new_task_label(cast("asyncio.Future[Any]", owner))
                    else:
                        label = self._label_of(handle)
                        if label is BOOKKEEPING:
                            if not handle._cancelled:
                                handle._run()
                            continue
                    seq = self._arrivals
                    self._arrivals = seq + 1
                    self._held += 1
                    entry = _new_candidate(Candidate, (seq, label, handle))
                    waiting = queued.get(label, _ABSENT)
                    if waiting is _ABSENT:
                        # Arrivals are the newest: appending keeps the pool sorted.
                        candidates.append(entry)
                        # No queue until a second callback of the label waits: a
                        # task never has two steps ready at once.
                        queued[label] = None
                        if label == LANE:
                            self._lane_seq = seq
                        if arrive is not None:
                            arrive(entry)
                    elif waiting is None:
                        queued[label] = deque((entry,))
                    else:
                        waiting.append(entry)
                if left < 0:
                    # As many picks as the pool holds when the iteration begins.
                    left = self._held
                if not left or not candidates:
                    break
                left -= 1
                # Nothing overtakes a loop callback that was ready before it: the
                # loop's own callbacks (a socket's done callback, say) must run
                # before a task they came before resumes, as asyncio's internals
                # assume.  Candidates up to the lane's are eligible.
                lane_seq = self._lane_seq
                if lane_seq is None:
                    eligible = len(candidates)
                else:
                    # Tuples compare by arrival first (unique): (seq, _LAST) sorts
                    # right after the candidate of that arrival, in C.
                    eligible = bisect_right(candidates, (lane_seq, _LAST))
                if passed_over < FAIRNESS_BOUND:
                    index = choose(candidates, eligible, choices, steps)
                    choices += 1
                else:
                    index = 0  # the oldest has waited long enough
                if index:
                    oldest = candidates[0]
                    if oldest.seq != starving:
                        starving, passed_over = oldest.seq, 0
                    passed_over += 1
                    entry = candidates.pop(index)
                else:
                    passed_over = 0
                    entry = oldest = candidates.pop(0)
                self._held -= 1
                label = entry.label
                waiting = queued[label]
                if waiting:
                    successor = waiting.popleft()
                    bisect.insort(candidates, successor)
                    if label == LANE:
                        self._lane_seq = successor.seq
                    if arrive is not None:
                        arrive(successor)
                else:
                    del queued[label]
                    if label == LANE:
                        self._lane_seq = None
                handle = entry.handle
                if index:
                    # Recorded even when the pick is a cancelled callback: taking
                    # it out of the pool early moves its lane on, which a replay
                    # must do at the same moment.  The instance's dictionary is
                    # filled in the order the frozen __init__ fills it, which
                    # makes the same object in half the time (its three
                    # object.__setattr__ calls cost as much as the rest of a pick).
                    deviation = _new_object(Deviation)
                    fields = deviation.__dict__
                    fields["instead_of"] = oldest.label
                    fields["step"] = steps.get(oldest.label, 0)
                    fields["ran"] = label
                    deviations.append(deviation)
                    listener = self.on_deviation
                    if listener is not None and not handle._cancelled:
                        listener(oldest, entry)
                if handle._cancelled:
                    continue
                picks.append(label)
                steps[label] = steps.get(label, 0) + 1
                handle._run()
        finally:
            self._choices = choices
            self._passed_over = passed_over
            self._starving = starving
        # No frame of the loop may keep a failed task alive (see
        # VirtualClockLoop._run_ready).
        handle = entry = oldest = successor = None  # type: ignore[assignment]

    def _flow_in_real_time(self, due: int | None) -> None:
        if self._chooser is not None:
            self.real_waits += 1
        super()._flow_in_real_time(due)

    def close(self) -> None:
        super().close()
        self._candidates.clear()
        self._queued.clear()
        self._held = 0


def _name_key(task: asyncio.Future[Any]) -> list[tuple[int, str]]:
    """Sorts task names with their numbers compared as numbers."""
    name = task.get_name() if isinstance(task, _TASK_TYPES) else ""  # type: ignore[attr-defined]
    return [(int(part), "") if part.isdigit() else (-1, part) for part in _DIGITS.split(name)]


_DIGITS = re.compile(r"(\d+)")
#: Size of the task-label table at which dead entries are first pruned.
_FIRST_LABEL_PRUNE = 256
#: Makes a Candidate from a tuple of its fields without NamedTuple's
#: Python-level __new__ (one call less per arrival).
_new_candidate = tuple.__new__
#: Makes a Deviation without its frozen __init__ (see deviation.new_deviation).
_new_object = object.__new__
#: A label with no callback in the pool (``None`` there: one, queue empty).
_ABSENT: Any = object()
#: Greater than any label, for searching the pool by arrival number.
_LAST = "\U0010ffff"


def _pick_accelerator() -> Callable[[ExploringLoop, Chooser], None]:
    """The pick loop: ``_pick_c.run_chosen`` where it was built (Linux
    CPython), else the Python one.  ``PYTEST_ASYNCSPEC_PURE_PYTHON`` chooses
    Python, as it does for the step log."""
    if not os.environ.get("PYTEST_ASYNCSPEC_PURE_PYTHON"):
        try:
            from . import _pick_c  # type: ignore[attr-defined]
        except ImportError:  # no compiler at install time, or not Linux
            pass
        else:
            # Their choose and arrive run in C too, on their own state.
            from .strategies import PctChooser, RandomChooser

            _pick_c.configure(
                Candidate,
                Deviation,
                deque,
                LANE,
                BOOKKEEPING,
                _TASK_TYPES,
                _ABSENT,
                FAIRNESS_BOUND,
                RandomChooser,
                PctChooser,
                shown_task_name,
                SHORT_NAMES,
            )
            return cast("Callable[[ExploringLoop, Chooser], None]", _pick_c.run_chosen)
    return ExploringLoop._run_ready_chosen_py


_run_chosen = _pick_accelerator()
#: Whether the pick loop runs in C.
PICKS_ACCELERATED = _run_chosen is not ExploringLoop._run_ready_chosen_py
