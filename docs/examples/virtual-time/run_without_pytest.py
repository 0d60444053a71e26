"""A coroutine on the virtual clock, without pytest: an hour passes at once."""

import asyncio
import sys
import time

from pytest_asyncspec import VirtualClockLoop


async def main() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.sleep(3600)
    print(f"slept {loop.time() - started} s of loop time")


real_start = time.perf_counter()
if sys.version_info >= (3, 11):
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        runner.run(main())
else:  # Python 3.10 has no Runner: drive the loop by hand
    loop = VirtualClockLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
print(f"real time under a second: {time.perf_counter() - real_start < 1}")
