"""LoopClock in any coroutine, without pytest or a fixture."""

import asyncio

from pytest_asyncspec import LoopClock, VirtualClockLoop


async def work() -> None:
    await asyncio.sleep(2.5)


async def main() -> None:
    clock = LoopClock()
    with clock.measure() as span:
        await work()
    print(f"took {span.elapsed} s on the {clock.mode} clock")
    clock.assert_time(span.elapsed, 2.5, what="work")


loop = VirtualClockLoop()
try:
    loop.run_until_complete(main())
finally:
    loop.close()
