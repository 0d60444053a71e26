"""A catalogue fetcher: the fixed version (compare with ``app_buggy.py``).

``crawl`` fetches items from a catalogue service and prices them with VAT in
a two-stage pipeline:

1. ``fetch_items`` (the producer) downloads ``/items/<id>`` for every id, at
   most ``concurrency`` requests at a time, and puts each item on a queue;
2. ``workers`` tasks take items off the queue, look up the item's category
   (``/categories/<name>``: its VAT rate) through a ``CategoryCache`` -- each
   category once per crawl -- and add the priced item to a ``Report``.

Category look-ups are throttled by a token bucket, because the (imaginary)
real service rate-limits that endpoint.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class Item:
    id: int
    name: str
    category: str
    price: int  # cents, without VAT


@dataclass
class Report:
    #: Price with VAT, in cents, by item id.
    priced: dict[int, int] = field(default_factory=dict)
    #: Why an item could not be priced, by item id.
    failed: dict[int, str] = field(default_factory=dict)
    #: How many times each category was looked up on the service.
    lookups: dict[str, int] = field(default_factory=dict)


class Throttle:
    """A token bucket: bursts of up to ``burst`` calls, then ``rate`` a second."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        # Take the token before waiting: a caller that arrives while this one
        # waits sees the debt and queues up behind it.
        self._tokens -= 1
        if self._tokens < 0:
            # FIX 1: wait on the loop; other tasks run meanwhile.
            await asyncio.sleep(-self._tokens / self._rate)


class CategoryCache:
    """Category details from the service, each looked up once."""

    def __init__(self, client: httpx.AsyncClient, throttle: Throttle, report: Report) -> None:
        self._client = client
        self._throttle = throttle
        self._report = report
        # FIX 3: one look-up task per category, stored before its first await.
        # A second caller finds the task and awaits the same answer.
        self._lookups: dict[str, asyncio.Task[dict[str, Any]]] = {}

    async def get(self, name: str) -> dict[str, Any]:
        lookup = self._lookups.get(name)
        if lookup is None:
            lookup = asyncio.create_task(self._look_up(name), name=f"lookup-{name}")
            self._lookups[name] = lookup
        return await lookup

    async def _look_up(self, name: str) -> dict[str, Any]:
        await self._throttle.wait()
        response = await self._client.get(f"/categories/{name}")
        response.raise_for_status()
        self._report.lookups[name] = self._report.lookups.get(name, 0) + 1
        details: dict[str, Any] = response.json()
        return details


async def fetch_item(client: httpx.AsyncClient, item_id: int) -> Item:
    response = await client.get(f"/items/{item_id}")
    response.raise_for_status()
    data = response.json()
    return Item(data["id"], data["name"], data["category"], data["price"])


async def fetch_items(
    client: httpx.AsyncClient, ids: list[int], queue: asyncio.Queue[Item], *, concurrency: int
) -> None:
    """Fetch every item, at most ``concurrency`` at a time, onto ``queue``."""
    # FIX 2: all requests in flight together, bounded by a semaphore.
    slots = asyncio.Semaphore(concurrency)

    async def fetch_one(item_id: int) -> None:
        async with slots:
            item = await fetch_item(client, item_id)
        await queue.put(item)

    await asyncio.gather(*(fetch_one(item_id) for item_id in ids))


async def price_items(queue: asyncio.Queue[Item], cache: CategoryCache, report: Report) -> None:
    """A worker: price items off the queue until it is cancelled."""
    while True:
        item = await queue.get()
        try:
            category = await cache.get(item.category)
            report.priced[item.id] = item.price * (100 + category["vat"]) // 100
        except httpx.HTTPError as error:
            # Keep going: one unreachable category must not stop the crawl.
            report.failed[item.id] = repr(error)
        finally:
            queue.task_done()


async def price_queue(
    client: httpx.AsyncClient,
    queue: asyncio.Queue[Item],
    *,
    workers: int,
    producer: Awaitable[None] | None = None,
) -> Report:
    """Price every item put on ``queue``, by ``workers`` tasks, while
    ``producer`` (if any) fills it; return when all are priced."""
    report = Report()
    cache = CategoryCache(client, Throttle(rate=20, burst=5), report)
    tasks = [
        asyncio.create_task(price_items(queue, cache, report), name="worker")
        for _ in range(workers)
    ]
    try:
        if producer is not None:
            # join() would return at once on a queue the producer has not
            # filled yet: wait for the producer first.
            await producer
        await queue.join()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return report


async def crawl(
    client: httpx.AsyncClient, ids: list[int], *, concurrency: int = 10, workers: int = 4
) -> Report:
    """Fetch and price the items ``ids``, both stages at once."""
    queue: asyncio.Queue[Item] = asyncio.Queue()
    producer = fetch_items(client, ids, queue, concurrency=concurrency)
    return await price_queue(client, queue, workers=workers, producer=producer)
