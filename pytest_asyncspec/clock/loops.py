"""Which event loop a test runs on: the loop implementation and its clock.

The virtual clock is a property of :class:`~pytest_asyncspec.clock.virtual_loop.VirtualClockLoop`,
a subclass of asyncio's selector loop; tests get its exploring subclass.
Loops whose clock lives in C (uvloop) cannot be virtualised; asking for that
combination is an error that names the alternative instead of silently
running on real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Literal

ClockChoice = Literal["virtual", "manual", "real"]
LoopChoice = Literal["asyncio", "uvloop"]
CLOCK_CHOICES: tuple[ClockChoice, ...] = ("virtual", "manual", "real")
#: The clocks of the virtual-clock loop: time jumps by itself, or moves only
#: when a test advances it.
VIRTUAL_CLOCKS: tuple[ClockChoice, ...] = ("virtual", "manual")
LOOP_CHOICES: tuple[LoopChoice, ...] = ("asyncio", "uvloop")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class UnsupportedLoopError(ValueError):
    """The requested loop and clock cannot be combined, or the loop is missing."""


def _policy_loop() -> asyncio.AbstractEventLoop:
    # The stock loop as the active policy builds it, so a user's own
    # event_loop_policy (pytest-asyncio fixture) is still honoured.
    return asyncio.get_event_loop_policy().new_event_loop()


def _uvloop_factory() -> LoopFactory:
    try:
        import uvloop
    except ImportError:
        raise UnsupportedLoopError(
            "the uvloop loop was requested but uvloop is not installed: "
            "`pip install uvloop` (not available on Windows), or choose the asyncio loop"
        ) from None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def virtual_on_uvloop_message(
    sources: Mapping[str, str] | None = None, clock_name: str = "virtual"
) -> str:
    """Why the virtual (or manual) clock and uvloop cannot go together, and
    the ways out; ``sources`` (a setting's name -> where its value came from)
    says who asked for each."""
    clock = f" (from {sources['clock']})" if sources else ""
    loop = f" (from {sources['loop']})" if sources else ""
    return (
        f"the {clock_name} clock{clock} cannot run on uvloop{loop}: uvloop keeps its clock and "
        "timers in C, out of reach of virtual time. Run uvloop on the real clock "
        "(--asyncspec-clock=real, or clock='real' in the asyncspec marker), or keep "
        f"the {clock_name} clock on the asyncio loop (drop --asyncspec-loop=uvloop or "
        "loop='uvloop')."
    )


def loop_factory(clock: ClockChoice, loop: LoopChoice) -> LoopFactory:
    """The factory for ``loop`` on ``clock``; the same object for the same pair.

    Returning one object per pair matters: pytest caches a shared (module- or
    session-scoped) loop only while the factory it came from is identical.
    """
    if clock not in CLOCK_CHOICES:
        raise UnsupportedLoopError(
            f"unknown clock {clock!r}; expected one of {', '.join(CLOCK_CHOICES)}"
        )
    if loop not in LOOP_CHOICES:
        raise UnsupportedLoopError(
            f"unknown loop {loop!r}; expected one of {', '.join(LOOP_CHOICES)}"
        )
    if loop == "uvloop":
        if clock in VIRTUAL_CLOCKS:
            raise UnsupportedLoopError(virtual_on_uvloop_message(clock_name=clock))
        return _uvloop_factory()
    if clock == "virtual":
        return _virtual_loop
    if clock == "manual":
        return _manual_loop
    return _policy_loop


def _virtual_loop() -> asyncio.AbstractEventLoop:
    # The virtual-clock loop that can also explore schedules; it runs in
    # stock order unless a test asks for exploration.  Imported when a loop
    # is made, not when a suite that asks for it is collected.
    from ..exploration.exploring_loop import ExploringLoop

    return ExploringLoop()


def _manual_loop() -> asyncio.AbstractEventLoop:
    # The same loop on a clock that only asyncspec_clock.advance() moves.
    from ..exploration.exploring_loop import ExploringLoop

    return ExploringLoop(manual=True)


def is_stock_asyncio_factory(factory: object) -> bool:
    """Whether ``factory`` makes asyncio's own default loop, the loop our
    virtual-clock loop is faithful to (3.13 names it asyncio.EventLoop)."""
    stock = {asyncio.new_event_loop, asyncio.SelectorEventLoop, getattr(asyncio, "EventLoop", None)}
    return factory in stock or factory is _policy_loop
