"""A trace and its timeline, without pytest."""

import asyncio

from pytest_asyncspec import VirtualClockLoop
from pytest_asyncspec.tracing import Tracer, render_timeline


async def brew() -> None:
    await asyncio.sleep(2)


async def toast() -> None:
    await asyncio.sleep(1)


async def breakfast() -> None:
    await asyncio.gather(
        asyncio.create_task(brew(), name="brew"),
        asyncio.create_task(toast(), name="toast"),
    )


loop = VirtualClockLoop()
with Tracer(loop) as trace:
    loop.run_until_complete(breakfast())
loop.close()
print(f"toast done at {trace.finish_of('toast')} s, brew at {trace.finish_of('brew')} s")
print(render_timeline(trace, width=60))
