"""Reading asyncio's own objects and telling whose code a frame runs: one
home for what every check needs.

Standard library only, and nothing of this package: the clock, the tracer,
the checks and exploration all read tasks and frames through here.
"""

from __future__ import annotations

import asyncio
import os
import site
import sysconfig
from types import FrameType
from typing import Any

#: asyncio's source directory, with a trailing separator (so that a sibling
#: such as ``asyncio_extras/`` never counts as asyncio): a frame whose file
#: starts with it is asyncio's own.
ASYNCIO_DIR = os.path.join(os.path.dirname(asyncio.__file__), "")
#: This package's source directory, with a trailing separator.
PACKAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")


def _install_prefixes() -> tuple[str, ...]:
    """Where this interpreter keeps its standard library and installed packages."""
    places: set[str] = set()
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if key in paths:
            places.add(paths[key])
    # Virtualenvs and user installs may keep packages elsewhere.
    places.update(getattr(site, "getsitepackages", list)())
    user_site = getattr(site, "getusersitepackages", lambda: None)()
    if isinstance(user_site, str):
        places.add(user_site)
    prefixes: set[str] = set()
    for place in places:
        for form in (os.path.abspath(place), os.path.realpath(place)):
            prefixes.add(os.path.normcase(form).rstrip(os.sep) + os.sep)
    return tuple(sorted(prefixes))


_INSTALL_PREFIXES = _install_prefixes()
_OWN_PREFIX = os.path.normcase(PACKAGE_DIR)
#: Installed packages live in such a directory wherever it is (another
#: interpreter's, a vendored tree, a tool's private environment), not only
#: under this interpreter's install paths.
_PACKAGE_DIRECTORIES = frozenset({"site-packages", "dist-packages"})
_STDLIB_DIRS = tuple(
    {os.path.normpath(sysconfig.get_paths()[key]) + os.sep for key in ("stdlib", "platstdlib")}
)
_library_cache: dict[str, bool] = {}


def is_library(filename: str) -> bool:
    """Whether ``filename`` is not the user's own code: the standard library,
    an installed package (any file under a site-packages or dist-packages
    directory), or this plugin.  The blocking gate's question: which frame is
    the first of the user's, and which library frames lie between."""
    known = _library_cache.get(filename)
    if known is None:
        normal = os.path.normcase(filename)
        known = (
            filename.startswith("<frozen")
            or normal.startswith(_INSTALL_PREFIXES)
            or normal.startswith(_OWN_PREFIX)
            or not _PACKAGE_DIRECTORIES.isdisjoint(normal.replace("\\", "/").split("/"))
        )
        _library_cache[filename] = known
    return known


def is_stdlib_or_plugin(filename: str) -> bool:
    """Whether ``filename`` is the standard library's or this plugin's: never
    where a hung step is stuck.  Installed third-party code counts as the
    user's here (a hang inside a client library is shown at its line), even
    where it sits under the standard library's tree."""
    if filename.startswith(PACKAGE_DIR):
        return True
    return filename.startswith(_STDLIB_DIRS) and "site-packages" not in filename


#: Most links of an await chain walked: no real chain is this deep, and a
#: walk over an object that misreports its ``cr_await`` still ends.
MAX_AWAIT_DEPTH = 1000


def awaitable_frames(awaitable: Any) -> list[FrameType]:
    """The frames of an await chain, outermost first: ``awaitable`` (a
    coroutine, generator or async generator, or anything forwarding their
    attributes, such as the tracer's step recorder) and each one it awaits in
    turn, down to the innermost await (``Event.wait``, ``Queue.get``).  Ends
    at the first link without a frame (a future, a finished coroutine)."""
    frames: list[FrameType] = []
    node = awaitable
    while node is not None and len(frames) < MAX_AWAIT_DEPTH:
        frame = (
            getattr(node, "cr_frame", None)
            or getattr(node, "gi_frame", None)
            or getattr(node, "ag_frame", None)
        )
        if not isinstance(frame, FrameType):
            break
        frames.append(frame)
        node = getattr(node, "cr_await", None) or getattr(node, "gi_yieldfrom", None)
    return frames


def live_coro(task: Any) -> Any:
    """The coroutine a pending task runs, or None for a done task.

    Never ``get_coro()`` on a done task: CPython 3.12.0-3.12.2 crash on one
    that finished eagerly (its coroutine is already released).
    """
    if task.done():
        return None
    return task.get_coro()
