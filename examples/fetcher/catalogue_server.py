"""A fake catalogue service for the fetcher's tests: HTTP/1.1 on 127.0.0.1.

It runs on the test's own event loop (start it from an async fixture), so on
pytest-asyncspec's virtual clock its latency -- an ``asyncio.sleep`` before
each answer -- is skipped over and every request lasts exactly that latency,
at no real cost.  A server in a thread or another process would be real I/O
to the loop, and the virtual clock would wait for it in real time.

Routes (``GET`` only, keep-alive, ``Content-Length`` bodies):

* ``/items/<id>``: ``{"id": id, "name": ..., "category": ..., "price": ...}``;
* ``/categories/<name>``: ``{"name": ..., "vat": ...}``;
* anything else: 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

#: Item ``id`` belongs to ``CATEGORIES[id % len(CATEGORIES)]``.
CATEGORIES = ("books", "games", "music", "tools", "garden", "toys", "food", "shoes")


def category_of(item_id: int) -> str:
    return CATEGORIES[item_id % len(CATEGORIES)]


@dataclass
class CatalogueServer:
    """The service's settings, and what it saw (for the tests to check)."""

    latency: float = 0.1
    port: int = 0
    #: The path of every request, in arrival order.
    paths: list[str] = field(default_factory=list, repr=False)
    #: Requests being answered right now, and the most there ever were.
    in_flight: int = 0
    max_in_flight: int = 0
    _server: asyncio.Server | None = field(default=None, repr=False)
    _connections: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_idle(self) -> None:
        """Wait until every connection is closed on this side too, so that
        nothing of this server is left running."""
        while self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the client closed the connection
                method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
                self.paths.append(path)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    await asyncio.sleep(self.latency)
                finally:
                    self.in_flight -= 1
                status, body = self._answer(method, path)
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode("latin-1")
                    + body
                )
                await writer.drain()
        except asyncio.CancelledError:
            # Cancelled by serve()'s exit, or by the exploring loop, which
            # cancels what a schedule leaves running.  End quietly: on Python
            # 3.11 a connection handler that ends cancelled makes asyncio log
            # a spurious "Exception in callback" error.
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()
            self._connections.discard(task)  # last: wait_idle() waits for all of the above

    @staticmethod
    def _answer(method: str, path: str) -> tuple[str, bytes]:
        kind, _, key = path.lstrip("/").partition("/")
        if method != "GET":
            return "405 Method Not Allowed", b"{}"
        if kind == "items" and key.isdigit():
            item_id = int(key)
            item = {
                "id": item_id,
                "name": f"item {item_id}",
                "category": category_of(item_id),
                "price": 100 + item_id,  # in cents
            }
            return "200 OK", json.dumps(item).encode()
        if kind == "categories" and key in CATEGORIES:
            # VAT in percent, a different figure for each category.
            vat = 5 + CATEGORIES.index(key)
            return "200 OK", json.dumps({"name": key, "vat": vat}).encode()
        return "404 Not Found", b"{}"


@contextlib.asynccontextmanager
async def serve(latency: float = 0.1) -> AsyncIterator[CatalogueServer]:
    """Serve the catalogue on an ephemeral port of 127.0.0.1 for the ``with`` block."""
    catalogue = CatalogueServer(latency=latency)
    server = await asyncio.start_server(catalogue._serve, "127.0.0.1", 0)
    catalogue._server = server
    catalogue.port = server.sockets[0].getsockname()[1]
    try:
        yield catalogue
    finally:
        server.close()
        # Connections a client left open would keep their handlers waiting
        # for the next request: end them so the loop can close cleanly.
        handlers = list(catalogue._connections)
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
