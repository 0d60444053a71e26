"""The fetcher's tests, as its authors would write them.

They pass on ``app_fixed.py``; ``pytest examples/fetcher --app=buggy`` runs
them on ``app_buggy.py``, where each of the last three catches one bug.  The
walkthrough is ``examples/README.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import ModuleType

import httpx
import pytest
from catalogue_server import CATEGORIES, CatalogueServer, category_of

from pytest_asyncspec import LoopClock

NewClient = Callable[[], httpx.AsyncClient]


@pytest.mark.asyncspec(clock="virtual")
async def test_crawl_prices_every_item(app: ModuleType, new_client: NewClient) -> None:
    """The end-to-end check: every item priced, every category looked up.
    It passes on the buggy app too -- none of its bugs changes the result."""
    async with new_client() as client:
        report = await app.crawl(client, list(range(1, 41)))
    assert report.failed == {}
    assert sorted(report.priced) == list(range(1, 41))
    assert report.priced[8] == 108 * 105 // 100  # item 8: books, 5 % VAT
    assert set(report.lookups) == set(CATEGORIES)


# max_blocking: fail if any task step holds the loop longer than 30 ms.  On
# the virtual clock a blocking time.sleep() costs virtual time, not real time,
# and is reported with its exact length.  Steps of plain Python are measured
# in real time; 30 ms leaves room for a cold interpreter's first steps (first
# use of a library, bytecode not yet cached) on a slow machine.
@pytest.mark.asyncspec(clock="virtual", max_blocking=0.03)
async def test_pricing_never_blocks_the_loop(app: ModuleType, new_client: NewClient) -> None:
    """Sixteen items in all eight categories: more look-ups than the
    throttle's burst, so the throttle has to wait -- without blocking."""
    queue: asyncio.Queue[object] = asyncio.Queue()
    for item_id in range(1, 17):
        queue.put_nowait(app.Item(item_id, f"item {item_id}", category_of(item_id), 100))
    async with new_client() as client:
        report = await app.price_queue(client, queue, workers=4)
    assert len(report.priced) == 16


@pytest.mark.asyncspec(clock="virtual")
async def test_fetching_overlaps_requests(
    app: ModuleType,
    new_client: NewClient,
    catalogue: CatalogueServer,
    asyncspec_clock: LoopClock,
) -> None:
    """20 items, 10 requests at a time, 0.5 s each: two rounds, 1 s."""
    catalogue.latency = 0.5
    queue: asyncio.Queue[object] = asyncio.Queue()
    async with new_client() as client:
        with asyncspec_clock.measure() as span:
            await app.fetch_items(client, list(range(1, 21)), queue, concurrency=10)
    assert queue.qsize() == 20
    # Exact on the virtual clock.  Run alone with --asyncspec-clock=real, the
    # same line accepts 0.98 s to 1.2 s.
    asyncspec_clock.assert_time(span.elapsed, 1.0, what="fetching 20 items, 10 at a time")
    assert catalogue.max_in_flight == 10


# Run the body under 500 task orders (stock asyncio's first); any failing
# order is reported with a token that replays it.
@pytest.mark.asyncspec(schedules=500)
async def test_each_category_is_looked_up_once(
    app: ModuleType, new_client: NewClient, catalogue: CatalogueServer
) -> None:
    """Two workers, three items, two of them books: the books category must be
    looked up once, whichever worker gets the second book."""
    queue: asyncio.Queue[object] = asyncio.Queue()
    for item_id in (8, 1, 16):  # books, games, books
        queue.put_nowait(app.Item(item_id, f"item {item_id}", category_of(item_id), 100))
    async with new_client() as client:
        report = await app.price_queue(client, queue, workers=2)
    await catalogue.wait_idle()
    assert len(report.priced) == 3
    assert report.lookups == {"books": 1, "games": 1}
