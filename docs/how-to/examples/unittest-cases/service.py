"""A small service: a cache refreshed in the background, and a slow lookup."""

import asyncio
import time


class Cache:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.refreshes = 0
        self._refresher: asyncio.Task[None] | None = None

    async def start(self, every: float) -> None:
        self._refresher = asyncio.get_running_loop().create_task(self._refresh(every))

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)

    async def _refresh(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.refreshes += 1


async def lookup(key: str) -> str:
    await asyncio.sleep(0.01)  # stands in for a database query
    time.sleep(0.2)  # stands in for a slow synchronous library call
    return key.upper()
