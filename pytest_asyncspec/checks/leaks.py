"""Find what a test left behind: tasks still pending and coroutines never awaited.

Both are silent in plain asyncio: a pending task is destroyed with the loop
("Task was destroyed but it is pending!" at best, in a log nobody reads), and a
coroutine that was called but never awaited only warns when the garbage
collector gets to it, often in another test.  This module names each leak and
the line that created it, so a report can point at the bug.

Nothing here imports pytest; the plugin decides what to do with a leak (the
``leaks`` setting: off, warn or error).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import Any

# waiting.py's frame helpers describe a task's await chain; reused, not copied.
from ..clock.waiting import await_chain, coroutine_name, place, qualname
from ..introspection import ASYNCIO_DIR, PACKAGE_DIR
from ..tracing.trace import TaskRecord, Tracer
from .allow_rules import AllowRule, first_match
from .blocking import FrameSite

UNKNOWN = "unknown"


# -- tasks still pending ------------------------------------------------------


@dataclass(frozen=True)
class LeakedTask:
    """A task still pending when it should have finished."""

    name: str
    coroutine: str
    #: The tracer's label, when the task was created under a tracer.
    label: int | None
    #: ``file:line`` of the code that created the task, or ``"unknown"``.
    created_where: str
    #: Loop time at creation (traced tasks only).
    created_at: float | None
    #: Where the task is suspended, outermost await first (``file:line in func``).
    chain: tuple[str, ...]
    #: What would wake it (the innermost asyncio primitive and its future).
    awaiting: str
    #: When in the test it was created ("during setup (fixture 'server')"),
    #: when the plugin knows.
    started: str = ""
    #: The places an allow rule may name: the task's coroutine and the line
    #: that created it.
    sites: tuple[FrameSite, ...] = field(default=(), compare=False, repr=False)

    def describe(self) -> str:
        who = f"task {self.name!r} ({self.coroutine})"
        if self.label is not None:
            who += f" [label {self.label}]"
        lines = [f"{who} is still pending; it awaits {self.awaiting}"]
        created = f"  created at {self.created_where}"
        if self.created_at is not None:
            created += f" (loop time {self.created_at:g} s)"
        if self.started:
            created += f" {self.started}"
        lines.append(created)
        lines.extend(f"  suspended at {place}" for place in self.chain)
        return "\n".join(lines)


def _outside_asyncio(filename: str) -> bool:
    return not (filename.startswith(ASYNCIO_DIR) or filename.startswith(PACKAGE_DIR))


def _source_traceback_site(task: asyncio.Task[Any]) -> str:
    # Only debug-mode loops keep a creation stack on each task (private to
    # asyncio, hence read defensively); its last user frame made the task.
    stack = getattr(task, "_source_traceback", None)
    if not stack:
        return UNKNOWN
    for entry in reversed(stack):
        filename = getattr(entry, "filename", None)
        if isinstance(filename, str) and _outside_asyncio(filename):
            return f"{filename}:{entry.lineno}"
    return UNKNOWN


def _traced_record(task: asyncio.Task[Any], tracer: Tracer | None) -> TaskRecord | None:
    if tracer is None:
        return None
    return tracer.record_of(task)


def _awaiting(task: asyncio.Task[Any], frames: list[FrameType]) -> str:
    # Neutral wording on purpose: unlike a deadlock report, a leak or hang
    # report cannot tell whether a timer or a callback will still wake it.
    waiter = getattr(task, "_fut_waiter", None)  # private to asyncio
    if isinstance(waiter, asyncio.Task):
        target = f"task {waiter.get_name()!r} ({coroutine_name(waiter)})"
    elif waiter is not None:
        target = f"a {type(waiter).__name__}"
    else:
        return "nothing: it is ready to run its next step"
    if frames and frames[-1].f_code.co_filename.startswith(ASYNCIO_DIR):
        return f"asyncio {qualname(frames[-1])}(): {target}"
    return target


def describe_task(task: asyncio.Task[Any], tracer: Tracer | None = None) -> LeakedTask:
    """Name one unfinished task, where it was created and where it is suspended."""
    record = _traced_record(task, tracer)
    frames = await_chain(task)
    created_where = record.created_where if record is not None else _source_traceback_site(task)
    sites = [creation_site(created_where)]
    if frames:
        own = frames[0]
        module = own.f_globals.get("__name__")
        sites.insert(
            0,
            _site(
                own.f_code, own.f_lineno, qualname(own), module if isinstance(module, str) else ""
            ),
        )
    return LeakedTask(
        name=task.get_name(),
        coroutine=coroutine_name(task),
        label=None if record is None else record.label,
        created_where=created_where,
        created_at=None if record is None else record.created_at,
        chain=tuple(place(frame) for frame in frames),
        awaiting=_awaiting(task, frames),
        sites=tuple(sites),
    )


def _site(code: CodeType | str, lineno: int, function: str, module: str) -> FrameSite:
    # Only allow rules read these sites, and they never ask whether a place
    # is in a library.
    filename = code if isinstance(code, str) else code.co_filename
    return FrameSite(filename, lineno, function, module, library=False)


def creation_site(created_where: str) -> FrameSite:
    """The ``file:line`` that created a task, as a place an allow rule can name
    (path rules only: the creating function is not recorded)."""
    filename, _, line = created_where.rpartition(":")
    if not filename or not line.isdigit():
        return _site(created_where, 0, "", "")
    return _site(filename, int(line), "", "")


def task_order(leak: LeakedTask) -> tuple[bool, int, str]:
    """Sort key: traced tasks in creation order, then the others by name."""
    return (leak.label is None, leak.label or 0, leak.name)


def pending_tasks(
    loop: asyncio.AbstractEventLoop, tracer: Tracer | None = None
) -> list[LeakedTask]:
    """Every task of ``loop`` that has not finished, oldest first when traced.

    Call it when the loop is not running (after the test's coroutine
    returned).  ``tracer`` supplies creation sites and labels for the tasks it
    recorded; other tasks fall back to the debug-mode creation stack, or
    ``"unknown"``.
    """
    return sorted((describe_task(task, tracer) for task in asyncio.all_tasks(loop)), key=task_order)


# -- coroutines never awaited -------------------------------------------------

_NEVER_AWAITED = re.compile(r"coroutine '(?P<name>[^']*)' was never awaited")
_ORIGIN_LINE = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>.*)$')

#: Frames of creation stack kept per coroutine while tracking is on.
DEFAULT_ORIGIN_DEPTH = 10


@dataclass(frozen=True)
class UnawaitedCoroutine:
    """A coroutine object that was created, then dropped without being awaited."""

    name: str
    #: ``file:line`` where the coroutine object was created, or ``"unknown"``.
    created_where: str
    #: The creation stack, innermost first (``file:line in func``).
    origin: tuple[str, ...]
    #: The warning Python emitted for it.
    message: str
    #: The places an allow rule may name: the coroutine's function (when the
    #: dying coroutine was at hand) and the line that created it.
    sites: tuple[FrameSite, ...] = field(default=(), compare=False, repr=False)

    def describe(self) -> str:
        return f"coroutine {self.name!r} was never awaited; created at {self.created_where}"


_Place = tuple[str, int, str]


def _origin_from_coroutine(source: object) -> list[_Place] | None:
    # The warning's source is the dying coroutine; its cr_origin (set while
    # origin tracking is on) is the creation stack, innermost first.
    origin = getattr(source, "cr_origin", None)
    if not isinstance(origin, tuple):
        return None
    return [(str(filename), int(lineno), str(function)) for filename, lineno, function in origin]


def _origin_from_message(message: str) -> list[_Place]:
    # The message lists the creation stack most recent call last.
    places = [
        (match["file"], int(match["line"]), match["func"])
        for match in map(_ORIGIN_LINE.match, message.splitlines())
        if match
    ]
    return places[::-1]


def _unawaited(warning: warnings.WarningMessage) -> UnawaitedCoroutine | None:
    if not issubclass(warning.category, RuntimeWarning):
        return None
    message = str(warning.message)
    match = _NEVER_AWAITED.search(message)
    if match is None:
        return None
    origin = _origin_from_coroutine(warning.source) or _origin_from_message(message)
    created_where = f"{origin[0][0]}:{origin[0][1]}" if origin else UNKNOWN
    sites = [creation_site(created_where)]
    code = getattr(warning.source, "cr_code", None)
    frame = getattr(warning.source, "cr_frame", None)
    if isinstance(code, CodeType):
        module = getattr(frame, "f_globals", {}).get("__name__")
        sites.insert(
            0,
            _site(
                code,
                code.co_firstlineno,
                match["name"],
                module if isinstance(module, str) else "",
            ),
        )
    return UnawaitedCoroutine(
        name=match["name"],
        created_where=created_where,
        origin=tuple(f"{file}:{line} in {function}" for file, line, function in origin),
        message=message,
        sites=tuple(sites),
    )


def _reemit(warning: warnings.WarningMessage) -> None:
    warnings.warn_explicit(
        warning.message,
        warning.category,
        warning.filename,
        warning.lineno,
        source=warning.source,
    )


@contextlib.contextmanager
def track_unawaited(
    depth: int = DEFAULT_ORIGIN_DEPTH, *, collect: bool = True
) -> Iterator[list[UnawaitedCoroutine]]:
    """Collect the coroutines dropped without being awaited inside the block.

    Coroutine origin tracking is switched on (at least ``depth`` frames) for
    the block so each report can name the creating line; the previous depth
    is restored afterwards.  A garbage collection runs before the block ends
    (unless ``collect`` is false: a later block of the same test will run
    it), so coroutines caught in reference cycles are reported here rather
    than in some later test.  The yielded list is filled when the block exits.

    Every other warning caught in the block is emitted again at exit, through
    the filters that were in force outside it.
    """
    found: list[UnawaitedCoroutine] = []
    previous_depth = sys.get_coroutine_origin_tracking_depth()
    sys.set_coroutine_origin_tracking_depth(max(depth, previous_depth))
    others: list[warnings.WarningMessage] = []
    body_failed = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            # "always": the same line may drop a coroutine in several tests,
            # and each must be seen, not just the first.
            warnings.simplefilter("always", RuntimeWarning)
            _read_each_warning_at_once(caught, found)
            try:
                yield found
            except BaseException:
                body_failed = True
                raise
            finally:
                if collect:
                    gc.collect()
                for warning in caught:
                    leak = _unawaited(warning)
                    if leak is None:
                        others.append(warning)
                    else:
                        found.append(leak)
                # Drop the references to the dead coroutines (warning.source).
                caught.clear()
    finally:
        sys.set_coroutine_origin_tracking_depth(previous_depth)
        for warning in others:
            if body_failed:
                # The block's own error matters more than a warning that the
                # outer filters would turn into one.
                with contextlib.suppress(Warning):
                    _reemit(warning)
            else:
                _reemit(warning)


def _read_each_warning_at_once(
    caught: list[warnings.WarningMessage], found: list[UnawaitedCoroutine]
) -> None:
    """Turn a never-awaited coroutine's warning into plain data as it is
    issued, other warnings going on to ``caught``.

    A recorded warning holds its source, here the dropped coroutine, and with
    it the arguments it was called with: kept to the block's end they would
    outlive the moment stock Python frees them.  ``catch_warnings(record=True)``
    records through ``warnings._showwarnmsg_impl`` (CPython), which it also
    restores on exit; where that hook is missing, warnings are read at the end.
    """
    if not hasattr(warnings, "_showwarnmsg_impl"):
        return

    def note(warning: warnings.WarningMessage) -> None:
        leak = _unawaited(warning)
        if leak is None:
            caught.append(warning)
        else:
            found.append(leak)

    warnings._showwarnmsg_impl = note


def leak_report(
    tasks: Sequence[LeakedTask],
    coroutines: Sequence[UnawaitedCoroutine] = (),
    *,
    when: str = "at the end of the test",
) -> str:
    """One message naming every leak, or ``""`` when there is none; ``when``
    says when the tasks were found pending."""
    parts: list[str] = []
    if tasks:
        parts.append(
            f"{len(tasks)} task(s) still pending {when} "
            "(await them, cancel them, or use a TaskGroup):"
        )
        parts.extend(task.describe() for task in tasks)
    if coroutines:
        parts.append(
            f"{len(coroutines)} coroutine(s) created but never awaited "
            "(a missing `await`, or a call that should have been create_task):"
        )
        parts.extend(coroutine.describe() for coroutine in coroutines)
    return "\n".join(parts)


def teardown_report(
    tasks: Sequence[LeakedTask],
    unawaited: Sequence[UnawaitedCoroutine],
    lost: Sequence[TaskRecord],
    schedule_leaks: Sequence[LeakedTask] = (),
    schedules_leaking: int = 0,
) -> str:
    """A test's leak report, judged after its fixtures' teardown: ``tasks``
    still pending then, ``unawaited`` coroutines, ``lost`` pending tasks the
    garbage collector destroyed before the end, and in an explored test the
    tasks left when a schedule's run ended (the first such schedule's, in
    ``schedules_leaking`` schedules).  ``""`` when there is none."""
    parts = [leak_report(tasks, unawaited, when="after the test's teardown")]
    if schedule_leaks:
        parts.append(
            leak_report(
                schedule_leaks,
                when=f"when a schedule's run of the test ended (in {schedules_leaking} "
                "schedule(s); the explorer cancelled them before the next)",
            )
        )
    if lost:
        parts.append(
            f"{len(lost)} task(s) destroyed while still pending (nothing kept a "
            "reference to them, so they never finished):"
        )
        parts.extend(
            f"task {record.name!r} ({record.coroutine}) created at {record.created_where}"
            for record in lost
        )
    return "\n".join(part for part in parts if part)


def unique_unawaited(
    coroutines: Iterable[UnawaitedCoroutine], rules: Sequence[AllowRule]
) -> list[UnawaitedCoroutine]:
    """Each never-awaited coroutine once (each schedule of an explored test
    makes its own), less those a rule allows."""
    unique = {(c.name, c.created_where): c for c in coroutines}
    return [c for c in unique.values() if first_match(rules, c.sites) is None]
