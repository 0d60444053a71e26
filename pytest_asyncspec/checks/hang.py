"""Describe a stuck event loop from another thread.

When a test times out, the thread that notices (pytest-timeout's timer, a
watchdog) is not the loop's thread, and the loop cannot be asked anything: it
is either blocked inside a task step or idle with every task waiting for
something that never comes.  :func:`hang_report` answers both cases from the
outside: which task (if any) holds the loop and the line it is stuck on, and
every pending task with the line where it is suspended and what it waits for.

Everything here only *reads* loop and task state, and every read is guarded:
the loop thread keeps running while we look, so a task may finish or a set may
change under us; the report then says what it could not read instead of
raising.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback
from types import FrameType
from typing import Any

from ..clock.waiting import await_chain, foreign_frames, place

# waiting.py's frame helpers are private there; reused rather than copied.
from ..introspection import is_stdlib_or_plugin
from ..tracing.trace import Tracer
from .leaks import LeakedTask, describe_task, task_order

#: Frames of the loop thread's stack shown when no task step is running.
DEFAULT_STACK_LIMIT = 25

_ALL_TASKS_ATTEMPTS = 5


def _failed(what: str, error: BaseException) -> str:
    return f"  (could not read {what}: {type(error).__name__}: {error})"


def _loop_thread(loop: asyncio.AbstractEventLoop) -> int | None:
    # asyncio's own loops note the thread that runs them (private attribute,
    # None while stopped); loops without it (uvloop) leave us guessing.
    ident = getattr(loop, "_thread_id", None)
    return ident if isinstance(ident, int) else None


def _thread_name(ident: int) -> str:
    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread.name
    return f"thread {ident}"


def _all_tasks(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
    # all_tasks copies a weak set the loop thread may be changing; asyncio
    # retries that copy itself, and we retry once more in case its own
    # attempts all collided with the loop thread.
    for attempt in range(_ALL_TASKS_ATTEMPTS):
        try:
            return list(asyncio.all_tasks(loop))
        except RuntimeError:
            if attempt == _ALL_TASKS_ATTEMPTS - 1:
                raise
    return []


def _who(task: LeakedTask) -> str:
    text = f"task {task.name!r} ({task.coroutine})"
    if task.label is not None:
        text += f" [label {task.label}, created at {task.created_where}]"
    return text


def _thread_stack(innermost: FrameType) -> list[FrameType]:
    frames: list[FrameType] = []
    frame: FrameType | None = innermost
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    return frames


def _format_frames(frames: list[FrameType]) -> list[str]:
    summary = traceback.StackSummary.extract(
        ((frame, frame.f_lineno) for frame in frames), capture_locals=False
    )
    return ["    " + line for entry in summary.format() for line in entry.rstrip("\n").splitlines()]


def _running_section(
    loop: asyncio.AbstractEventLoop,
    thread: int | None,
    tracer: Tracer | None,
    stack_limit: int,
) -> tuple[list[str], asyncio.Task[Any] | None]:
    lines: list[str] = []
    running = asyncio.current_task(loop)
    frames: list[FrameType] = []
    if thread is not None:
        innermost = sys._current_frames().get(thread)
        if innermost is not None:
            frames = _thread_stack(innermost)
    if running is not None:
        lines.append(f"running a step now: {_who(describe_task(running, tracer))}")
        if tracer is not None and tracer.current and tracer.step_started_ns:
            held = (tracer.log.clock() - tracer.step_started_ns) / 1e9
            lines.append(f"  the step has held the loop for {held:.3f} s of real time")
        if frames:
            # Frames above the task's coroutine are the loop's own machinery;
            # the story starts where the task's code does.
            chain = await_chain(running)
            start = next((i for i, frame in enumerate(frames) if chain and frame is chain[0]), None)
            shown = frames[start:] if start is not None else frames[-stack_limit:]
            user = [frame for frame in shown if not is_stdlib_or_plugin(frame.f_code.co_filename)]
            if user:
                lines.append(f"  last line of user code: {place(user[-1])}")
            if not user or shown[-1] is not user[-1]:
                lines.append(f"  innermost call: {place(shown[-1])}")
            lines.append("  loop thread stack (most recent call last):")
            lines.extend(_format_frames(shown))
        else:
            lines.append("  (the loop thread's stack is not available)")
        return lines, running
    if thread is None:
        lines.append("no task step is running (the loop thread is unknown)")
        return lines, None
    lines.append(f"no task step is running on the loop thread ({_thread_name(thread)})")
    if frames:
        code = frames[-1].f_code
        if code.co_filename.endswith("selectors.py") or code.co_name in ("select", "poll"):
            lines.append(
                "  the loop is idle, waiting in its selector for I/O or a timer: every task "
                "below waits for something that has not happened"
            )
        lines.append("  loop thread stack (most recent call last):")
        lines.extend(_format_frames(frames[-stack_limit:]))
    return lines, None


def _task_lines(task: LeakedTask, running: bool) -> list[str]:
    if running:
        head = f"{_who(task)} is running a step (see above)"
    else:
        head = f"{_who(task)} awaits {task.awaiting}"
    return [head, *(f"    at {place}" for place in task.chain)]


def hang_report(
    loop: asyncio.AbstractEventLoop,
    *,
    tracer: Tracer | None = None,
    stack_limit: int = DEFAULT_STACK_LIMIT,
) -> str:
    """Say why ``loop`` is stuck; safe to call from any thread.

    The report names the task running a step (if the loop thread is inside
    one) with the loop thread's current stack, then lists every pending task
    with its await chain: the line each is suspended on and what it waits for.
    ``tracer``, when the tasks were traced, adds labels and creation sites.
    A read that fails because the loop moved on is reported in the text; the
    function itself does not raise.  Frames are read through
    ``sys._current_frames()`` under the GIL, their code, line and globals
    only: never a frame's ``f_locals`` (:func:`~pytest_asyncspec.clock.waiting.foreign_frames`).
    """
    with foreign_frames():
        return _hang_report(loop, tracer, stack_limit)


def _hang_report(loop: asyncio.AbstractEventLoop, tracer: Tracer | None, stack_limit: int) -> str:
    lines: list[str] = []
    try:
        thread = _loop_thread(loop)
        header = f"event loop {type(loop).__name__}"
        try:
            header += f" at loop time {loop.time():g} s"
        except Exception as error:  # a closed or foreign loop may refuse
            header += f" (loop time unreadable: {type(error).__name__})"
        if loop.is_closed():
            header += ", closed"
        elif not loop.is_running():
            header += ", not running"
        elif thread is not None:
            header += f", running on {_thread_name(thread)}"
        lines.append(header + f"; reported from {threading.current_thread().name}")
    except Exception as error:
        thread = None
        lines.append(_failed("the loop's state", error))

    running: asyncio.Task[Any] | None = None
    try:
        section, running = _running_section(loop, thread, tracer, stack_limit)
        lines.extend(section)
    except Exception as error:
        lines.append(_failed("the running step", error))

    try:
        tasks = _all_tasks(loop)
    except Exception as error:
        lines.append(_failed("the loop's tasks", error))
        return "\n".join(lines)
    described: list[tuple[LeakedTask, bool]] = []
    for task in tasks:
        try:
            described.append((describe_task(task, tracer), task is running))
        except Exception as error:
            lines.append(_failed(f"task {task.get_name()!r}", error))
    described.sort(key=lambda pair: task_order(pair[0]))
    lines.append(f"{len(tasks)} pending task(s):" if tasks else "no pending tasks")
    for pending, is_running in described:
        lines.extend("  " + line for line in _task_lines(pending, is_running))
    return "\n".join(lines)
