"""PCT lowers one label at each change point, the picked one (a regression check)."""

import asyncio

from pytest_asyncspec.exploration import ExploringLoop, PctChooser


async def worker(n):
    for _ in range(n):
        await asyncio.sleep(0)


async def main():
    tasks = [asyncio.ensure_future(worker(3)) for _ in range(3)]
    asyncio.get_running_loop().call_soon(print, "never").cancel()
    await asyncio.gather(*tasks)


loop = ExploringLoop()
chooser = PctChooser(2, 2, 20)  # depth 2: one change point, at pick 2
loop.begin_schedule(chooser)
loop.run_until_complete(main())
loop.end_schedule()
loop.close()
print({label: p for label, p in chooser._priority.items() if p <= chooser.depth})
# now {'loop': 1}; before the fix {'worker-3': 1, 'loop': 1}, two labels lowered
