"""A three-stage pipeline: fetch a batch, parse its items together, store them."""

import asyncio


async def fetch(count: int) -> list[int]:
    await asyncio.sleep(0.2)  # one request for the whole batch
    return list(range(count))


async def parse(item: int) -> int:
    await asyncio.sleep(0.3)  # each item waits on its own service call
    return item * 2


async def store(rows: list[int]) -> None:
    await asyncio.sleep(0.1)  # one write


async def run_pipeline(count: int) -> list[int]:
    items = await fetch(count)
    rows = list(await asyncio.gather(*(parse(item) for item in items)))
    await store(rows)
    return rows
