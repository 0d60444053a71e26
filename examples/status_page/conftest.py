"""Fixtures for the status page's tests: probes with a latency each test sets,
and an HTTP client that talks to the app in process (httpx's ASGI transport)."""

from __future__ import annotations

from collections.abc import AsyncIterator

# Imported with the session, not inside a test: a cold import on the loop
# thread takes milliseconds, and the blocking gate would rightly report it.
import anyio
import httpx
import pytest
from app import create_app


class FakeProbe:
    """A dependency that answers "ok" after ``latency`` seconds."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        await anyio.sleep(self.latency)
        return "ok"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def probes() -> dict[str, FakeProbe]:
    return {"database": FakeProbe(latency=1.5), "queue": FakeProbe(latency=0.5)}


@pytest.fixture
async def client(probes: dict[str, FakeProbe]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(probes))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://status") as client:
        yield client
