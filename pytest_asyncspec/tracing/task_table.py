"""The tasks a tracer saw: appended cheaply while the loop runs, read later.

A test may create thousands of tasks; building a record object for each as it
is created, and copying them all when the tracer stops, cost more than
recording every step of those tasks.  So the table only appends while the
loop runs: the creation facts of each task here, and each ending, in the
order they happen, in the step log's ``endings``.  :class:`TaskRecord`
objects are built when someone reads them, and a snapshot is two counts
(tasks and endings so far), so a trace taken at a test's end keeps showing
the outcomes of that moment even if tasks are cancelled later, during
teardown.
"""

from __future__ import annotations

import asyncio
import enum
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..clock.ticks import TICKS_PER_SECOND
from .step_log import EndDetail

#: Where a task was created: (file, line), or None when no frame outside
#: asyncio and this package asked for it.
Site = tuple[str, int]


class Outcome(enum.Enum):
    """How a task ended (``PENDING`` while it has not)."""

    PENDING = "pending"
    RETURNED = "returned"
    RAISED = "raised"
    CANCELLED = "cancelled"


def shown_task_name(name: str, coroutine: str) -> str:
    """A task's own name if it was given one, else its coroutine's (last part
    of the qualified name).  asyncio's ``Task-N`` counts tasks across the whole
    process, so it differs after other tests, in another pytest-xdist worker,
    or in another schedule; CPython 3.13's eager task factory names unnamed
    tasks "None"."""
    # asyncio's default name is "Task-" and decimal digits.  Tested without
    # a regular expression (``Task-\d+``, whose \d is what isdecimal tests),
    # for a fifth of its cost: the exploring loop names every task of every
    # schedule.
    unnamed = not name or name == "None" or (name[:5] == "Task-" and name[5:].isdecimal())
    if unnamed and coroutine:
        short = SHORT_NAMES.get(coroutine)
        if short is None:
            short = SHORT_NAMES[coroutine] = coroutine.rsplit(".", 1)[-1]
        return short
    return name


#: The last part of each coroutine's qualified name seen so far (as many as
#: the program has coroutine functions).  The exploring loop's C labeller
#: reads it, and calls shown_task_name on a miss.
SHORT_NAMES: dict[str, str] = {}


@dataclass
class TaskRecord:
    """One traced task: who it is, who made it, how it ended."""

    label: int
    name: str
    coroutine: str
    parent: int | None
    created_at: float
    created_where: str
    outcome: Outcome = Outcome.PENDING
    error: str | None = None

    @property
    def shown_name(self) -> str:
        """The name to show in files and pages (see :func:`shown_task_name`)."""
        return shown_task_name(self.name, self.coroutine)


#: A point in a table's history: (tasks created, endings seen).
Mark = tuple[int, int]


class TaskTable:
    """Per-task facts by label (1, 2, 3, ... in creation order)."""

    def __init__(self, endings: list[tuple[int, EndDetail]]) -> None:
        # By label - 1: (coroutine, parent label or 0, created at ns, site).
        self._created: list[tuple[str, int, int, Site | None]] = []
        # By label - 1: the task, held weakly (until the factory made it, a
        # stand-in that answers None).
        self._tasks: list[Callable[[], asyncio.Future[Any] | None]] = []
        # Every ending, in order: (label, detail), detail None when the task
        # returned (see step_log.EndDetail); appended by the step log.
        self._endings = endings
        # Names read from tasks soon after they were made (a task may be gone
        # by the time its record is built).
        self._names: dict[int, str] = {}
        # The live view: records built so far, and the endings applied to it.
        self._records: dict[int, TaskRecord] = {}
        self._applied = 0
        #: Labels of the tasks running this package's or pytest-asyncio's own
        #: coroutines (see Trace.helper_tasks).
        self.helpers: set[int] = set()

    def __len__(self) -> int:
        return len(self._created)

    # -- while the loop runs (cheap) -------------------------------------------

    def add(self, coroutine: str, parent: int, created_ns: int, site: Site | None) -> int:
        """A new task, before it exists (an eager task may run, and even end,
        while it is being made); returns its label."""
        self._created.append((coroutine, parent, created_ns, site))
        self._tasks.append(_not_yet)
        return len(self._created)

    def bind(self, label: int, task: asyncio.Future[Any]) -> None:
        """The task of ``label``, once made."""
        self._tasks[label - 1] = weakref.ref(task)

    def read_name(self, label: int) -> None:
        """Remember the task's current name (while it still exists)."""
        task = self._tasks[label - 1]()
        if isinstance(task, asyncio.Task):
            name = self._names[label] = task.get_name()
            record = self._records.get(label)
            if record is not None:
                record.name = name

    def live(self, label: int) -> asyncio.Future[Any] | None:
        """The task with ``label`` if it still exists."""
        if not 0 < label <= len(self._tasks):
            return None
        return self._tasks[label - 1]()

    def mark(self) -> Mark:
        return (len(self._created), len(self._endings))

    # -- when read -------------------------------------------------------------

    def records(self) -> dict[int, TaskRecord]:
        """The live view: every task, every ending so far (built incrementally)."""
        records = self._records
        self._build(records, len(self._created))
        endings = self._endings
        for label, error in endings[self._applied :]:
            _apply_ending(records[label], error)
        self._applied = len(endings)
        return records

    def records_at(self, mark: Mark) -> dict[int, TaskRecord]:
        """A new view as it was at ``mark``: its tasks, and its endings only."""
        tasks, endings = mark
        records: dict[int, TaskRecord] = {}
        self._build(records, tasks)
        for label, error in self._endings[:endings]:
            if label in records:
                _apply_ending(records[label], error)
        return records

    def refresh_names(self) -> None:
        """Read the names of the tasks still alive into the live view."""
        for label, record in self._records.items():
            task = self._tasks[label - 1]()
            if isinstance(task, asyncio.Task):
                record.name = self._names[label] = task.get_name()

    def _build(self, records: dict[int, TaskRecord], count: int) -> None:
        for label in range(len(records) + 1, count + 1):
            coroutine, parent, created_ns, site = self._created[label - 1]
            task = self._tasks[label - 1]()
            records[label] = TaskRecord(
                label=label,
                name=(
                    task.get_name()
                    if isinstance(task, asyncio.Task)
                    else self._names.get(label, f"task {label}")
                ),
                coroutine=coroutine,
                parent=parent or None,
                created_at=created_ns / TICKS_PER_SECOND,
                created_where=_shown_site(site),
            )


def _apply_ending(record: TaskRecord, detail: EndDetail) -> None:
    if detail is None:
        record.outcome = Outcome.RETURNED
    else:
        record.outcome = Outcome(detail[0])
        record.error = detail[1]


def _not_yet() -> None:
    return None


def _shown_site(site: Site | None) -> str:
    """``file:line``; a site with no line (a description) shows as it is."""
    if site is None:
        return "<unknown>"
    return site[0] if site[1] == 0 else f"{site[0]}:{site[1]}"
