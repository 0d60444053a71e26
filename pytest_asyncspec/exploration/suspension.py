"""Where a ready callback stands: the await line a task resumes from.

Used to explain a deviation of a schedule in words a reader can check
against the source: "worker-2 ran ahead of worker-1", and the await line
each of them was suspended at.
"""

from __future__ import annotations

import asyncio
import inspect
import linecache
import os
from types import FrameType
from typing import Any

from ..introspection import ASYNCIO_DIR, PACKAGE_DIR, awaitable_frames, live_coro
from .exploring_loop import LANE, Candidate, is_timer_label


def describe_candidate(ran: Candidate, oldest: Candidate, step: int) -> str:
    """``ran`` was picked while ``oldest`` (about to take its step ``step``,
    from 0) had been ready longer; three lines, the first unindented."""
    waiting = where_ready(oldest)
    taken = where_ready(ran)
    if is_timer_label(ran.label) and is_timer_label(oldest.label):
        kind = " (timers due at the same instant: on the real clock either may fire first)"
    else:
        kind = f" (step {step + 1} of {oldest.label})"
    return (
        f"{ran.label} ran ahead of {oldest.label}{kind}\n"
        f"   {oldest.label} (ready first): {waiting}\n"
        f"   {ran.label} (ran instead): {taken}"
    )


def where_ready(candidate: Candidate) -> str:
    """What the candidate would do next, in source terms."""
    callback = candidate.handle._callback  # type: ignore[attr-defined]
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Future) and hasattr(owner, "get_coro"):
        return _task_position(owner)
    if candidate.label == LANE:
        name = getattr(callback, "__qualname__", None) or type(callback).__name__
        return f"the loop callback {name}"
    return f"a timer due now, set by {candidate.label.rsplit(':', 1)[0]}"


def _task_position(task: Any) -> str:
    if task.done():
        return "finishing"
    coro = live_coro(task)
    coro = getattr(coro, "_coro", coro)  # the tracer's recorder wraps it
    frame = getattr(coro, "cr_frame", None)
    if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == "CORO_CREATED":
        return f"not started yet: {coro.__qualname__}" + (f" at {_place(frame)}" if frame else "")
    innermost = _innermost_own_frame(coro)
    if innermost is None:
        return "suspended (no frame of its own)"
    return f"suspended at {_place(innermost)}"


def _innermost_own_frame(awaitable: Any) -> FrameType | None:
    """The deepest frame of the await chain outside asyncio and this plugin."""
    own = [
        frame
        for frame in awaitable_frames(awaitable)
        if not frame.f_code.co_filename.startswith((ASYNCIO_DIR, PACKAGE_DIR))
    ]
    return own[-1] if own else None


def _place(frame: FrameType) -> str:
    path = frame.f_code.co_filename
    line = frame.f_lineno
    try:
        shown = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        shown = path
    if shown.startswith(".."):
        shown = path
    source = linecache.getline(path, line).strip()
    return f"{shown}:{line}" + (f" `{source}`" if source else "")
