"""A blocking call three calls deep, as it hides in real projects.

The watchdog must name the line in :func:`level_three`, not the coroutine
that called :func:`level_one`.  ``time.sleep`` is looked up at call time so
that a virtual-clock loop sees it.
"""

from __future__ import annotations

import time


def level_one(seconds: float) -> None:
    level_two(seconds)  # calls level_two


def level_two(seconds: float) -> None:
    level_three(seconds)  # calls level_three


def level_three(seconds: float) -> None:
    time.sleep(seconds)  # blocks here
