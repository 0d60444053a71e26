"""Fixtures shared by the spec suite's claim files."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Protocol

import pytest
from loopback_http import LoopbackHTTPServer, serve_http


class StartServer(Protocol):
    """Starts a loopback HTTP server on the test's loop (see ``loopback_http``)."""

    def __call__(
        self, *, latency: float = 0.0, max_concurrent: int | None = None, keep_alive: bool = True
    ) -> Awaitable[LoopbackHTTPServer]: ...


@pytest.fixture
async def loopback_http() -> AsyncIterator[StartServer]:
    """Start real HTTP servers on 127.0.0.1 for this test; all are shut down at
    teardown, whether the test passed or failed.

    ``server = await loopback_http(latency=0.2)``; the server runs on the
    test's own event loop (why: see the docstring of ``spec_tests/loopback_http.py``).
    """
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            *, latency: float = 0.0, max_concurrent: int | None = None, keep_alive: bool = True
        ) -> LoopbackHTTPServer:
            return await stack.enter_async_context(
                serve_http(latency=latency, max_concurrent=max_concurrent, keep_alive=keep_alive)
            )

        yield start
