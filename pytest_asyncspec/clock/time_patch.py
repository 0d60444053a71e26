"""Make the ``time`` module follow a virtual clock on the threads that run one.

While a virtual-clock loop runs on a thread, ``time.monotonic``,
``time.perf_counter``, ``time.time`` (and their ``_ns`` twins) answer with the
loop's virtual time on *that thread only*, and ``time.sleep`` there advances
the virtual clock instead of stalling.  Every other thread keeps real time.
``datetime`` follows too (see :mod:`.datetime_patch`).

The module functions are swapped only while at least one virtual loop is
running, and restored when the last one stops.  Code that bound a function
before the swap (``from time import sleep`` at import time) keeps the real one;
this is documented as a limitation of any pure-Python time virtualisation.

A process forked while a loop runs (``os.fork``, multiprocessing's fork start
method, a fork ``ProcessPoolExecutor``) is not that loop: a fork handler gives
the child the real functions and forgets every registration and this module's
lock (see :func:`_forget_in_child`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

from . import datetime_patch
from .ticks import TICKS_PER_SECOND, seconds_to_ticks

# Captured at import so that our own code, and every thread without a virtual
# loop, always reaches the real clock whatever is patched later.
real_monotonic = time.monotonic
real_monotonic_ns = time.monotonic_ns
real_perf_counter = time.perf_counter
real_perf_counter_ns = time.perf_counter_ns
real_time = time.time
real_time_ns = time.time_ns
real_sleep = time.sleep


class VirtualTimeSource(Protocol):
    """What a loop must offer for the time module to follow it."""

    def virtual_ticks(self) -> int:
        """Ticks elapsed on the virtual clock since the loop was created."""
        ...

    def epoch_ns(self) -> int:
        """Wall-clock time (ns since the Unix epoch) at tick 0."""
        ...

    def block_for(self, seconds: float) -> None:
        """Account for a blocking sleep of ``seconds`` made on the loop thread."""
        ...


_sources: dict[int, VirtualTimeSource] = {}
_lock = threading.Lock()
_active = 0
_get_ident = threading.get_ident


def _monotonic() -> float:
    source = _sources.get(_get_ident())
    if source is None:
        return real_monotonic()
    return source.virtual_ticks() / TICKS_PER_SECOND


def _monotonic_ns() -> int:
    source = _sources.get(_get_ident())
    if source is None:
        return real_monotonic_ns()
    return source.virtual_ticks()


def _perf_counter() -> float:
    source = _sources.get(_get_ident())
    if source is None:
        return real_perf_counter()
    return source.virtual_ticks() / TICKS_PER_SECOND


def _perf_counter_ns() -> int:
    source = _sources.get(_get_ident())
    if source is None:
        return real_perf_counter_ns()
    return source.virtual_ticks()


def _time() -> float:
    source = _sources.get(_get_ident())
    if source is None:
        return real_time()
    return (source.epoch_ns() + source.virtual_ticks()) / TICKS_PER_SECOND


def _time_ns() -> int:
    source = _sources.get(_get_ident())
    if source is None:
        return real_time_ns()
    return source.epoch_ns() + source.virtual_ticks()


def _wall_ns() -> int | None:
    source = _sources.get(_get_ident())
    if source is None:
        return None
    return source.epoch_ns() + source.virtual_ticks()


datetime_patch.bind(_wall_ns)


def _sleep(seconds: float) -> None:
    source = _sources.get(_get_ident())
    if source is None:
        real_sleep(seconds)
        return
    if seconds < 0:
        # Same complaint as the real time.sleep, so behaviour does not change.
        raise ValueError("sleep length must be non-negative")
    seconds_to_ticks(seconds)  # rejects NaN exactly like a virtual timer would
    source.block_for(seconds)


_REPLACEMENTS: dict[str, Callable[..., object]] = {
    "monotonic": _monotonic,
    "monotonic_ns": _monotonic_ns,
    "perf_counter": _perf_counter,
    "perf_counter_ns": _perf_counter_ns,
    "time": _time,
    "time_ns": _time_ns,
    "sleep": _sleep,
}
_ORIGINALS: dict[str, Callable[..., object]] = {name: getattr(time, name) for name in _REPLACEMENTS}


def enter(source: VirtualTimeSource) -> None:
    """Route the current thread's time functions to ``source``."""
    global _active
    ident = _get_ident()
    with _lock:
        if ident in _sources:
            raise RuntimeError(
                "a virtual-clock loop is already running on this thread; "
                "virtual loops cannot be nested"
            )
        _sources[ident] = source
        _active += 1
        if _active == 1:
            for name, replacement in _REPLACEMENTS.items():
                setattr(time, name, replacement)
            datetime_patch.install()


def leave() -> None:
    """Give the current thread its real time functions back."""
    global _active
    with _lock:
        if _sources.pop(_get_ident(), None) is None:
            return
        _active -= 1
        if _active == 0:
            for name, original in _ORIGINALS.items():
                setattr(time, name, original)
            datetime_patch.restore()


def hold() -> None:
    """Keep the replacements in place until :func:`release`, across the loops
    that start and stop meanwhile.

    For a caller that runs a loop many times in a row (the explorer runs one
    per schedule): swapping the functions in and out at every start and stop
    costs more than a short schedule's own picks.  Every thread that runs no
    loop still gets real time through the replacements.
    """
    global _active
    with _lock:
        _active += 1
        if _active == 1:
            for name, replacement in _REPLACEMENTS.items():
                setattr(time, name, replacement)
            datetime_patch.install()


def release() -> None:
    """End one :func:`hold`; the real functions are back once nothing runs or holds."""
    global _active
    with _lock:
        if _active == 0:
            return  # forgotten in a forked child meanwhile
        _active -= 1
        if _active == 0:
            for name, original in _ORIGINALS.items():
                setattr(time, name, original)
            datetime_patch.restore()


def current_source() -> VirtualTimeSource | None:
    """The virtual clock the current thread follows, if any."""
    return _sources.get(_get_ident())


def _forget_in_child() -> None:
    """A forked child is not the loop: real time for every thread it will run.

    The child copies the registrations of the parent's loop threads (its one
    thread has the forking thread's ident, so a loop forked from would still
    be "running" there) and this module's lock, which another thread of the
    parent may have held at the fork and nobody in the child would release.
    """
    global _lock, _active
    _lock = threading.Lock()
    _sources.clear()
    _active = 0
    for name, original in _ORIGINALS.items():
        setattr(time, name, original)
    datetime_patch.restore()


# Once, at import: every fork after it (os.fork, multiprocessing's fork and
# ProcessPoolExecutor's fork workers) gives the child the real clocks.
def _note_fork_in_parent() -> None:
    """The loop of the forking thread learns of the child (real work)."""
    source = _sources.get(_get_ident())
    noted = getattr(source, "forked", None)
    if noted is not None:
        noted()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child, after_in_parent=_note_fork_in_parent)
