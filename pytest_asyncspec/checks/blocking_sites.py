"""What the blocking watchdog reports, as plain data: a blocking step
(:class:`BlockingEvent`) and the frames of its stack (:class:`FrameSite`);
and how those frames are found: the step's own frames (without loop and
runner machinery), the few an allow rule reads, and the frame of a task's
coroutine.  Shared by the watchdog's sampler, its sleep tallies, its
settling and its reports."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from ..clock.loops import ClockChoice
from ..introspection import is_library, live_coro
from ..tracing.trace import Tracer

if TYPE_CHECKING:
    from .allow_rules import AllowRule


@dataclass(frozen=True)
class FrameSite:
    """One frame of a blocking step's stack, reduced to plain data."""

    filename: str
    lineno: int
    #: Qualified name on Python 3.11+ (``Class.method``); the bare name on 3.10.
    function: str
    #: The module the code belongs to (its ``__name__``), or "" if unknown.
    module: str
    #: Not the user's own code: the standard library, an installed package
    #: (any file under a site-packages or dist-packages directory), or this
    #: plugin.
    library: bool

    @property
    def location(self) -> str:
        return f"{self.filename}:{self.lineno}"

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno} in {self.function}"

    def shown(self, root: str | None) -> str:
        filename = self.filename
        if root is not None and filename.startswith(root):
            filename = filename[len(root) :]
        return f"{filename}:{self.lineno} in {self.function}"


# Loop, test-runner and plugin machinery: never the place that blocks, so
# left out of the reported stack (the task's own frames start above the
# step recorder anyway; this drops e.g. asyncio.wait_for and timeouts).
_INTERNAL_MODULES = (
    "asyncio",
    "uvloop",
    "_pytest",
    "pytest",
    "pluggy",
    "pytest_asyncio",
    "pytest_asyncspec",
)


def is_internal(module: str) -> bool:
    head = module.partition(".")[0]
    return head in _INTERNAL_MODULES


def site_of(frame: FrameType) -> FrameSite:
    code = frame.f_code
    module = frame.f_globals.get("__name__")
    return FrameSite(
        filename=code.co_filename,
        lineno=frame.f_lineno or code.co_firstlineno,
        function=getattr(code, "co_qualname", code.co_name),
        module=module if isinstance(module, str) else "",
        library=is_library(code.co_filename),
    )


def step_frames(
    innermost: FrameType | None, outermost: FrameType | None
) -> tuple[tuple[FrameSite, ...], int, bool]:
    """The running step's frames, outermost first, without loop machinery.

    ``outermost`` is the frame of the task's own coroutine, where the step
    begins: frames below it are the loop's.  Also returns how many frames
    there are from the innermost to it before filtering, and whether it was
    found at all (no: the stack is not inside that step, which is entering or
    leaving its coroutine, or is another step's).
    """
    above: list[FrameType] = []
    frame = innermost
    boundary = False
    while frame is not None and outermost is not None:
        above.append(frame)
        if frame is outermost:
            boundary = True
            break
        frame = frame.f_back
    if not boundary:
        return (), 0, False
    sites = tuple(
        site for site in (site_of(each) for each in reversed(above)) if not is_internal(site.module)
    )
    return sites, len(above), True


def near_frames(innermost: FrameType, outermost: FrameType | None) -> tuple[FrameSite, ...]:
    """The frames an allow rule may match, outermost first: from the
    innermost outward, without loop machinery, up to the first frame of the
    user's code (or the step's coroutine).  What
    :func:`~pytest_asyncspec.checks.allow_rules.allowing_rule` reads of the whole
    stack, for the price of walking a frame or two."""
    sites: list[FrameSite] = []
    frame: FrameType | None = innermost
    while frame is not None:
        site = site_of(frame)
        if not is_internal(site.module):
            sites.append(site)
            if not site.library:
                break
        if frame is outermost:
            break
        frame = frame.f_back
    return tuple(reversed(sites))


def coroutine_frame(tracer: Tracer, label: int) -> FrameType | None:
    """The frame of the coroutine of the task with ``label``, if it runs one."""
    task = tracer.live_task(label)
    coro = live_coro(task) if isinstance(task, asyncio.Task) else None
    # Our recorder, unless a factory chained after the tracer's wrapped it.
    coro = getattr(coro, "_coro", coro)
    frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
    return frame if isinstance(frame, FrameType) else None


# -- events --------------------------------------------------------------


@dataclass(frozen=True)
class BlockingEvent:
    """A task step that held the loop longer than the threshold."""

    task_label: int
    task_name: str
    #: The task's coroutine (qualified name) and where the task was created.
    coroutine: str
    created_where: str
    #: Real ``perf_counter_ns`` at which the step began.
    started_ns: int
    #: Seconds the step held the loop, on ``clock``: real seconds, or the
    #: virtual seconds of its blocking ``time.sleep`` calls.
    duration: float
    clock: ClockChoice
    threshold: float
    #: The step's stack, outermost first, without loop and runner frames;
    #: empty when the watchdog could not sample it.
    frames: tuple[FrameSite, ...] = ()
    #: False: the step was still blocking when the watchdog stopped, and
    #: ``duration`` is how long it had blocked by then.
    finished: bool = True
    #: Index of the step in the trace (``Trace.step(index)``), when known.
    step_index: int | None = None
    #: Blocking ``time.sleep`` calls that make up a virtual-clock event.
    sleep_calls: int = 0
    allowed_by: AllowRule | None = None
    #: Real seconds of ``duration`` the garbage collector ran (on the loop
    #: thread, inside this step): not the step's own blocking.
    collector: float = 0.0
    #: The watchdog's period (:meth:`BlockingWatchdog.new_period`) the step
    #: began in: 0 before the first.  The plugin starts one per explored
    #: schedule.
    period: int = 0

    @property
    def allowed(self) -> bool:
        return self.allowed_by is not None

    @property
    def own_duration(self) -> float:
        """What the step itself held the loop: ``duration`` less the collector's time."""
        return self.duration - self.collector

    @property
    def by_collector(self) -> bool:
        """Over the threshold only because the garbage collector ran inside
        the step: the collector's pause, not a blocking call of the task."""
        return self.collector > 0 and self.own_duration <= self.threshold

    @property
    def innermost(self) -> FrameSite | None:
        """The innermost sampled frame (possibly inside a library)."""
        return self.frames[-1] if self.frames else None

    @property
    def site_frame(self) -> FrameSite | None:
        """The innermost frame outside the stdlib and installed packages
        (the user's line that made the blocking call), else the innermost."""
        for frame in reversed(self.frames):
            if not frame.library:
                return frame
        return self.innermost

    @property
    def site(self) -> str | None:
        """``file:line in function`` of :attr:`site_frame`, if sampled."""
        frame = self.site_frame
        return None if frame is None else str(frame)

    @property
    def chain(self) -> list[str]:
        """``file:line in function`` from the outermost user frame to the innermost frame."""
        return [str(frame) for frame in self._chain_frames()]

    def _chain_frames(self) -> tuple[FrameSite, ...]:
        # Library frames above the user's first one (a library's task calling
        # back into user code) say nothing about the blocking call.
        frames = self.frames
        first = next((i for i, frame in enumerate(frames) if not frame.library), 0)
        return frames[first:]

    def describe(self, root: str | os.PathLike[str] | None = None) -> str:
        """A multi-line report; file names are shown relative to ``root`` if under it."""
        prefix = None if root is None else os.path.join(os.fspath(root), "")
        how_long = f"{self.duration:g} s" if self.clock == "virtual" else f"{self.duration:.3f} s"
        clock = "virtual time" if self.clock == "virtual" else "real time"
        if self.clock == "virtual":
            calls = "call" if self.sleep_calls == 1 else "calls"
            clock += f", in {self.sleep_calls} blocking time.sleep() {calls}"
        verb = "blocked" if self.finished else "had blocked"
        if self.by_collector:
            return (
                f"The garbage collector held the event loop for {self.collector:.3f} s inside "
                f"a step of task {self.task_name!r} ({self.coroutine}), which took "
                f"{how_long} in all ({clock}; threshold {self.threshold:g} s): "
                f"{self.own_duration:.3f} s of the task's own, under the threshold, so not "
                "counted against it.  Collections run wherever the program happens to "
                "allocate; gc.freeze() after start-up, or fewer long-lived objects, makes "
                "full ones shorter."
            )
        lines = [
            f"Task {self.task_name!r} ({self.coroutine}) {verb} the event loop for "
            f"{'at least ' if not self.finished else ''}{how_long} "
            f"({clock}; threshold {self.threshold:g} s)"
            + ("" if self.finished else " and was still blocking when the watchdog stopped")
            + "."
        ]
        if self.collector:
            lines.append(
                f"Of this, {self.collector:.3f} s was the garbage collector's (not "
                f"counted): the task's own {self.own_duration:.3f} s is over the threshold."
            )
        site = self.site_frame
        if site is None:
            why = (
                "the step ended before the watchdog could look at its stack"
                if self.finished
                else "the watchdog stopped before it could look at the step's stack"
            )
            lines.append(
                f"Blocking call: not caught -- {why} (a C call that holds the GIL, or a "
                "starved machine), so no allow rule can apply to it. The task was "
                f"created at {self.created_where}."
            )
        else:
            lines.append(f"Blocking call: {site.shown(prefix)}")
            lines.append("Call chain (outermost first):")
            for frame in self._chain_frames():
                mark = "> " if frame is site else "  "
                lines.append(f"  {mark}{frame.shown(prefix)}")
        # A rule cannot allow a step whose frames were never caught: no
        # point suggesting one for it.
        allow = "" if site is None else ", or allow this place with an allow rule"
        if self.allowed_by is not None:
            lines.append(f"Allowed by rule {self.allowed_by.text!r}.")
        elif self.clock == "virtual":
            lines.append(f"Fix: await asyncio.sleep(...) instead of time.sleep(...){allow}.")
        else:
            api = ", use an async API" if allow else " or use an async API"
            lines.append(
                "Fix: run the blocking work in a thread (await asyncio.to_thread(...) or "
                f"loop.run_in_executor(...)){api}{allow}."
            )
        return "\n".join(lines)
