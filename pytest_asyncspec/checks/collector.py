"""Time the garbage collector spent inside task steps.

A full collection of a large heap stops the interpreter for tens of
milliseconds, inside whatever step happened to allocate at that moment: the
blocking watchdog would blame the user's line (often a ``create_task``) for a
pause the user's code did not cause.  :class:`CollectorTime` listens on
``gc.callbacks`` while a watchdog runs and adds each collection's duration to
the step that was running on the loop thread, so the watchdog can take it out
of the step's blocking time and name the collector instead.

Only collections on the loop thread count: one run by another thread also
holds the GIL, but the loop thread may have been blocked in a call of its own
meanwhile, and subtracting that time could hide a real blocking call.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

from ..tracing.step_log import now_ns
from ..tracing.trace import Tracer

#: A step, as the tracer names it while it runs: (task label, real start).
StepKey = tuple[int, int]


class CollectorTime:
    """Collector time per task step of ``tracer``'s loop, on ``loop_thread``.

    Steps whose collections add up to less than ``floor_ns`` are forgotten
    once the next step collects (young-generation collections take
    microseconds and happen thousands of times a second; only a total that
    could matter to a threshold is kept), so memory stays bounded.
    """

    def __init__(self, tracer: Tracer, loop_thread: int, floor_ns: int) -> None:
        self._tracer = tracer
        self._loop_thread = loop_thread
        self._floor_ns = floor_ns
        #: Precise ns at which the running collection began (0: none runs).
        self._began = 0
        self._step: StepKey = (0, 0)
        # The latest step that collected, and its total so far.
        self._open: StepKey = (0, 0)
        self._open_ns = 0
        self._kept: dict[StepKey, int] = {}
        self._installed = False

    def install(self) -> None:
        if not self._installed:
            gc.callbacks.append(self._on_collection)
            self._installed = True

    def remove(self) -> None:
        if self._installed:
            self._installed = False
            # Another listener may have been added after ours: remove ours only.
            for index, callback in enumerate(gc.callbacks):
                if callback == self._on_collection:
                    del gc.callbacks[index]
                    break
        self._began = 0

    @property
    def collecting(self) -> bool:
        """Whether a collection is running on the loop thread right now (read
        by the sampling thread: a stack sampled then shows the line that
        happened to allocate, not one that blocks)."""
        return self._began != 0

    def spent_in(self, label: int, started_ns: int) -> int:
        """Collector ns inside the step of task ``label`` that began at
        ``started_ns`` (on the tracer's clock)."""
        key = (label, started_ns)
        spent = self._kept.get(key, 0)
        if key == self._open:
            spent += self._open_ns
        return spent

    # Runs inside the collector: nothing here may allocate much or raise.
    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if threading.get_ident() != self._loop_thread:
            return
        if phase == "start":
            tracer = self._tracer
            self._step = (tracer.current, tracer.step_started_ns)
            self._began = now_ns()
            return
        if not self._began:
            return
        spent = now_ns() - self._began
        self._began = 0
        step = self._step
        if not step[0]:
            return  # between steps: the loop's own time, no task's
        if step == self._open:
            self._open_ns += spent
            return
        if self._open_ns >= self._floor_ns:
            kept = self._kept
            kept[self._open] = kept.get(self._open, 0) + self._open_ns
        self._open, self._open_ns = step, spent
