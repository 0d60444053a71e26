"""The frames of a blocking step, reduced to plain data, and how they are
found: the step's own frames (without loop and runner machinery), the few
an allow rule reads, and the frame of a task's coroutine.  Shared by the
blocking watchdog's sampler, its sleep tallies and its reports."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import FrameType

from .introspection import is_library, live_coro
from .trace import Tracer


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
    :func:`~pytest_asyncspec.allow_rules.allowing_rule` reads of the whole
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
