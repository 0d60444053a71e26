"""Helpers shared by the tests that run programs under a Tracer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from pytest_asyncspec.clock.virtual_loop import VirtualClockLoop
from pytest_asyncspec.tracing.trace import Trace, Tracer

Main = Callable[[], Coroutine[Any, Any, None]]


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Tear a loop down as ``asyncio.Runner.close`` does (3.10 has no Runner)."""
    try:
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


def run_traced_main(
    main: Main,
    *,
    eager: bool = False,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = VirtualClockLoop,
) -> Trace:
    """Run ``main()`` (as a task named "main") on a traced loop, by default
    one on the virtual clock."""
    loop = loop_factory()
    if eager:
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    tracer = Tracer(loop)
    tracer.install()
    try:
        loop.run_until_complete(loop.create_task(main(), name="main"))
    finally:
        trace = tracer.stop()
        loop.close()
    return trace
