"""A real HTTP/1.1 server on 127.0.0.1 for the spec claims about HTTP clients.

The documents time real HTTP clients (``httpx.AsyncClient``,
``aiohttp.ClientSession``) against public APIs.  The claims keep the clients
and swap the far end for this server: it listens on an ephemeral port of
127.0.0.1, speaks enough HTTP/1.1 for both clients (keep-alive,
``Content-Length`` bodies), waits an injected latency before each answer,
returns a known body, and counts what it served.

Where it runs: on the test's own event loop, not in a thread.
    Both ends of every connection then belong to one loop.  Under the
    virtual clock the plugin sees that (``pytest_asyncspec.clock.inflight``
    classifies a socket whose peer this loop also owns as internal), so the
    injected latency is an ``asyncio.sleep`` on virtual time: the clock jumps
    over it and each request lasts exactly its latency, to the nanosecond.
    That is what lets the claims use the documents' own scale of waiting
    (seconds) at no real cost and assert timings exactly.  A server in a
    thread would make every client socket an external peer: the virtual
    clock would flow at real speed for each request (see
    ``docs/virtual-time.md``, rule 5), the latency would have to be scaled
    down to real milliseconds and the figures would carry scheduling noise.
    Under ``--asyncspec-clock=real`` (and on uvloop, which has no virtual
    clock) the same server runs on the real clock and the latency is really
    waited.

Lifetime: :func:`serve_http` is an async context manager; leaving it closes
the listening socket, every open connection and every handler task, also
when the body of the ``with`` raised.  The ``loopback_http`` fixture in
``spec_tests/conftest.py`` wraps it for tests.

Routes (all ``GET``; the body of any other method is read and ignored):

* ``/items?limit=N``: a JSON catalogue ``{"results": [{"name", "url"}, ...]}``
  of N items whose URLs point back at this server (the shape of the list
  endpoint the documents call);
* ``/items/<k>``: a JSON item ``{"id": k, "name": "item-k", ...}``;
* anything else: :data:`KNOWN_BODY` as ``text/plain``.

The query parameter ``delay=<seconds>`` overrides the server's latency for
one request.  With ``max_concurrent=K`` at most K requests are served at
once (the others wait their turn, as at a service with limited capacity).

``keep_alive=False`` answers every request with ``Connection: close`` and
closes the connection, for a claim about clients that cannot reuse one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

KNOWN_BODY = "Hello from the loopback HTTP server.\n"

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found"}


@dataclass(frozen=True)
class ServedRequest:
    """One answered request: its target and the loop times it arrived and left."""

    method: str
    target: str
    arrived: float
    answered: float


@dataclass
class LoopbackHTTPServer:
    """The server's settings and what it has served (see the module docstring)."""

    latency: float = 0.0
    max_concurrent: int | None = None
    keep_alive: bool = True
    host: str = "127.0.0.1"
    port: int = 0
    #: Requests fully read (counted on arrival, before the latency).
    requests: int = 0
    #: Requests being served right now, and the most there ever were at once.
    in_flight: int = 0
    max_in_flight: int = 0
    served: list[ServedRequest] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _capacity: asyncio.Semaphore | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _closing: bool = False

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    async def start(self) -> None:
        if self.max_concurrent is not None:
            self._capacity = asyncio.Semaphore(self.max_concurrent)
        self._server = await asyncio.start_server(self._connection, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, drop every connection and wait for every handler."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- serving ---------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            while await self._one_request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away between requests
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # Cancelled by close(): end quietly.  (A handler task that ends
            # cancelled makes Python 3.11's streams log a spurious error.)
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; False when the connection is to be closed."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if error.partial:
                raise
            return False  # a clean close between requests
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = request_line.split(" ")
        except ValueError:
            await self._respond(writer, 400, "text/plain", b"bad request line\n", close=True)
            return False
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length:
            await reader.readexactly(length)
        close = headers.get("connection", "").lower() == "close" or not self.keep_alive

        loop = asyncio.get_running_loop()
        arrived = loop.time()
        self.requests += 1
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        delay = float(query["delay"][0]) if "delay" in query else self.latency
        async with self._capacity if self._capacity is not None else contextlib.nullcontext():
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if delay > 0:
                    await asyncio.sleep(delay)
            finally:
                self.in_flight -= 1
        status, content_type, body = self._route(parts.path, query)
        self.served.append(ServedRequest(method, target, arrived, loop.time()))
        await self._respond(writer, status, content_type, body, close=close)
        return not close

    def _route(self, path: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        if path == "/items":
            limit = int(query.get("limit", ["10"])[0])
            results = [
                {"name": f"item-{k}", "url": self.url(f"/items/{k}")} for k in range(1, limit + 1)
            ]
            return 200, "application/json", json.dumps({"results": results}).encode()
        if path.startswith("/items/"):
            try:
                number = int(path.removeprefix("/items/"))
            except ValueError:
                return 404, "text/plain", b"no such item\n"
            item = {"id": number, "name": f"item-{number}", "height": number % 17, "weight": number}
            return 200, "application/json", json.dumps(item).encode()
        return 200, "text/plain; charset=utf-8", KNOWN_BODY.encode()

    @staticmethod
    async def _respond(
        writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes, *, close: bool
    ) -> None:
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + body)
        await writer.drain()


@contextlib.asynccontextmanager
async def serve_http(
    *, latency: float = 0.0, max_concurrent: int | None = None, keep_alive: bool = True
) -> AsyncIterator[LoopbackHTTPServer]:
    """Run a :class:`LoopbackHTTPServer` on the running loop for the ``with`` block."""
    server = LoopbackHTTPServer(
        latency=latency, max_concurrent=max_concurrent, keep_alive=keep_alive
    )
    await server.start()
    try:
        yield server
    finally:
        await server.close()
