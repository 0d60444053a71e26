import asyncio
import unittest

import pytest
from service import Cache, lookup


class CacheTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.cache = Cache()
        await self.cache.start(every=60)
        self.addAsyncCleanup(self.cache.stop)

    async def test_refreshes_every_minute(self):
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(3630)  # an hour of virtual time, in milliseconds
        assert loop.time() - started == 3630
        assert self.cache.refreshes == 60


class LookupTest(unittest.IsolatedAsyncioTestCase):
    async def test_lookup(self):
        assert await lookup("key") == "KEY"

    @pytest.mark.asyncspec(max_blocking=None)
    async def test_lookup_without_the_gate(self):
        assert await lookup("key") == "KEY"
