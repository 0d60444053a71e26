"""Describe the tasks of a loop that are suspended, and what each one awaits.

Used for the deadlock report: a task list is only useful when it says *where*
each task is stuck (file and line of every await in its chain) and *on what*
(an ``asyncio.Event``, a ``Queue.get``, another task, a bare future).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any

from ..introspection import ASYNCIO_DIR, awaitable_frames, live_coro


@dataclass(frozen=True)
class WaitingTask:
    """One suspended task: its identity, its await chain and what it waits on."""

    name: str
    coroutine: str
    chain: tuple[str, ...]
    awaiting: str

    def describe(self) -> str:
        lines = [f"task {self.name!r} ({self.coroutine}) awaits {self.awaiting}"]
        lines.extend(f"    at {place}" for place in self.chain)
        return "\n".join(lines)


class _Foreign(threading.local):
    reading = False


_foreign = _Foreign()


@contextlib.contextmanager
def foreign_frames() -> Iterator[None]:
    """Frames read in this block may belong to another running thread (a
    hang report): their ``f_locals`` are never read.  Before Python 3.13,
    reading ``f_locals`` writes the frame's locals dict, freeing values under
    the feet of the thread that runs it (see :mod:`.threads`)."""
    before, _foreign.reading = _foreign.reading, True
    try:
        yield
    finally:
        _foreign.reading = before


#: Python 3.10: qualified names found for code objects (see below).
_QUALNAMES: weakref.WeakKeyDictionary[CodeType, str] = weakref.WeakKeyDictionary()


def _qualname_from_globals(frame: FrameType) -> str:
    """Python 3.10: the qualified name of the function or method whose code
    the frame runs, looked up among its module's globals and their classes
    (its locals are not read); the bare name when it is not found there."""
    code = frame.f_code
    known = _QUALNAMES.get(code)
    if known is not None:
        return known
    name = code.co_name
    for value in list(frame.f_globals.values()):
        members = list(vars(value).values()) if isinstance(value, type) else [value]
        for member in members:
            function = getattr(member, "__func__", member)  # classmethod, staticmethod
            if getattr(function, "__code__", None) is code:
                name = str(getattr(function, "__qualname__", name))
                break
        else:
            continue
        break
    _QUALNAMES[code] = name
    return name


def qualname(frame: FrameType) -> str:
    code = frame.f_code
    qualname = getattr(code, "co_qualname", None)
    if qualname is None and _foreign.reading:  # Python 3.10, another thread's frame
        return _qualname_from_globals(frame)
    if qualname is None:  # Python 3.10: rebuild Class.method from the bound self
        owner = frame.f_locals.get("self")
        qualname = code.co_name if owner is None else f"{type(owner).__qualname__}.{code.co_name}"
    return str(qualname)


def place(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {qualname(frame)}"


def await_chain(task: asyncio.Task[Any]) -> list[FrameType]:
    """Frames of the task's await chain, outermost first.

    ``Task.get_stack`` only shows the task's own coroutine; following
    ``cr_await`` reaches the innermost await (``Event.wait``, ``Queue.get``).
    A done task awaits nothing.
    """
    return awaitable_frames(live_coro(task))


def coroutine_name(task: asyncio.Task[object]) -> str:
    coro = live_coro(task)
    if coro is None:
        return "<finished>"
    return getattr(coro, "__qualname__", None) or type(coro).__name__


def _awaited(task: asyncio.Task[object], frames: list[FrameType], target: str | None) -> str:
    # The task's own future (private to asyncio, so read defensively) says
    # what would wake it; the innermost asyncio frame names the primitive.
    waiter = getattr(task, "_fut_waiter", None)
    primitive = None
    if frames and frames[-1].f_code.co_filename.startswith(ASYNCIO_DIR):
        primitive = f"asyncio {qualname(frames[-1])}()"
    if target is not None:
        pass
    elif isinstance(waiter, asyncio.Task):
        target = f"task {waiter.get_name()!r} ({coroutine_name(waiter)})"
    elif waiter is not None:
        target = f"a future that nothing will complete ({type(waiter).__name__})"
    else:
        target = "nothing the loop knows about"
    return f"{primitive}: {target}" if primitive else target


def waiting_task(task: asyncio.Task[Any], target: str | None = None) -> WaitingTask:
    """Where and on what ``task`` is suspended (``target``: what will wake it,
    when the caller knows better than the task's own future tells)."""
    frames = await_chain(task)
    return WaitingTask(
        name=task.get_name(),
        coroutine=coroutine_name(task),
        chain=tuple(place(frame) for frame in frames),
        awaiting=_awaited(task, frames, target),
    )


def waiting_tasks(
    loop: asyncio.AbstractEventLoop,
    targets: Mapping[asyncio.Task[Any], str] | None = None,
) -> list[WaitingTask]:
    """Every pending task of ``loop`` with where and on what it is suspended
    (``targets``: what will wake some of them, when the caller knows)."""
    known = targets or {}
    return [
        waiting_task(task, known.get(task))
        for task in sorted(asyncio.all_tasks(loop), key=_task_name)
    ]


def _task_name(task: asyncio.Task[Any]) -> str:
    return task.get_name()
