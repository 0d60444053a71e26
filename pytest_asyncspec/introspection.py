"""Reading asyncio's own objects: one home for what every check needs.

Standard library only, and nothing of this package: the clock, the tracer,
the checks and exploration all read tasks through here.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

#: asyncio's source directory, with a trailing separator (so that a sibling
#: such as ``asyncio_extras/`` never counts as asyncio): a frame whose file
#: starts with it is asyncio's own.
ASYNCIO_DIR = os.path.join(os.path.dirname(asyncio.__file__), "")


def live_coro(task: Any) -> Any:
    """The coroutine a pending task runs, or None for a done task.

    Never ``get_coro()`` on a done task: CPython 3.12.0-3.12.2 crash on one
    that finished eagerly (its coroutine is already released).
    """
    if task.done():
        return None
    return task.get_coro()
