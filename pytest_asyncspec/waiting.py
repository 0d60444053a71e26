"""Describe the tasks of a loop that are suspended, and what each one awaits.

Used for the deadlock report: a task list is only useful when it says *where*
each task is stuck (file and line of every await in its chain) and *on what*
(an ``asyncio.Event``, a ``Queue.get``, another task, a bare future).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from types import FrameType
from typing import Any

_ASYNCIO_DIR = os.path.dirname(asyncio.__file__)


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


def qualname(frame: FrameType) -> str:
    code = frame.f_code
    qualname = getattr(code, "co_qualname", None)
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
    """
    frames: list[FrameType] = []
    if task.done():
        # A done task awaits nothing, and CPython 3.12.0-3.12.2 crash in
        # get_coro() on one that finished eagerly.
        return frames
    node: Any = task.get_coro()
    while node is not None:
        frame = (
            getattr(node, "cr_frame", None)
            or getattr(node, "gi_frame", None)
            or getattr(node, "ag_frame", None)
        )
        if frame is None:
            break
        frames.append(frame)
        node = getattr(node, "cr_await", None) or getattr(node, "gi_yieldfrom", None)
    return frames


def coroutine_name(task: asyncio.Task[object]) -> str:
    # See await_chain: no get_coro() on a done task.
    coro = None if task.done() else task.get_coro()
    if coro is None:
        return "<finished>"
    return getattr(coro, "__qualname__", None) or type(coro).__name__


def _awaited(task: asyncio.Task[object], frames: list[FrameType]) -> str:
    # The task's own future (private to asyncio, so read defensively) says
    # what would wake it; the innermost asyncio frame names the primitive.
    waiter = getattr(task, "_fut_waiter", None)
    primitive = None
    if frames and frames[-1].f_code.co_filename.startswith(_ASYNCIO_DIR):
        primitive = f"asyncio {qualname(frames[-1])}()"
    if isinstance(waiter, asyncio.Task):
        target = f"task {waiter.get_name()!r} ({coroutine_name(waiter)})"
    elif waiter is not None:
        target = f"a future that nothing will complete ({type(waiter).__name__})"
    else:
        target = "nothing the loop knows about"
    return f"{primitive}: {target}" if primitive else target


def waiting_tasks(loop: asyncio.AbstractEventLoop) -> list[WaitingTask]:
    """Every pending task of ``loop`` with where and on what it is suspended."""
    described = []
    for task in sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()):
        frames = await_chain(task)
        described.append(
            WaitingTask(
                name=task.get_name(),
                coroutine=coroutine_name(task),
                chain=tuple(place(frame) for frame in frames),
                awaiting=_awaited(task, frames),
            )
        )
    return described
