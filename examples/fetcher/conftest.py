"""Fixtures for the fetcher's tests, and the choice of which app they test.

``pytest examples/fetcher`` tests ``app_fixed.py``;
``pytest examples/fetcher --app=buggy`` runs the same tests on ``app_buggy.py``.
"""

from __future__ import annotations

import importlib
import ssl
from collections.abc import AsyncIterator, Callable
from types import ModuleType

# httpx imports its transport (httpcore) on the first client it builds, and
# anyio its asyncio backend on the first request; were that inside a test, the
# imports would block the loop for 10-20 ms on a cold interpreter, and the
# blocking gate of test_pricing_never_blocks_the_loop would rightly report it.
# Import them with the test session instead.
import catalogue_server
import httpx
import httpx._transports.default
import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--app",
        choices=("fixed", "buggy"),
        default="fixed",
        help="which version of the fetcher to test (default: fixed)",
    )


@pytest.fixture
def app(request: pytest.FixtureRequest) -> ModuleType:
    """The fetcher module under test: ``app_fixed`` or ``app_buggy``."""
    return importlib.import_module(f"app_{request.config.getoption('--app')}")


@pytest.fixture
async def catalogue() -> AsyncIterator[catalogue_server.CatalogueServer]:
    """The catalogue service on 127.0.0.1, on this test's loop, answering
    after 0.1 s (set ``catalogue.latency`` to change that)."""
    async with catalogue_server.serve(latency=0.1) as server:
        yield server


@pytest.fixture(scope="session")
def _tls() -> ssl.SSLContext:
    # httpx builds an SSL context for every client unless given one, at about
    # 17 ms each: that would be most of the cost of exploring 500 schedules,
    # each with its own client.  The catalogue speaks plain HTTP; share one.
    return ssl.create_default_context()


@pytest.fixture
def new_client(
    catalogue: catalogue_server.CatalogueServer, _tls: ssl.SSLContext
) -> Callable[[], httpx.AsyncClient]:
    """Makes an ``httpx.AsyncClient`` for the catalogue (``async with new_client() as client``)."""
    return lambda: httpx.AsyncClient(base_url=catalogue.url, verify=_tls)
