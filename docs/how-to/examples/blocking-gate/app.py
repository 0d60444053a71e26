"""A small service with a blocking call hidden in its async code."""

import asyncio
import time


def warm_up_cache() -> dict[str, str]:
    """Start-up code that blocks on purpose; pytest.ini allows it."""
    time.sleep(0.1)  # stands in for a slow synchronous read
    return {"greeting": "hello"}


def checksum(text: str) -> str:
    time.sleep(0.2)  # stands in for a slow synchronous library call
    return f"{len(text):04x}"


async def start() -> dict[str, str]:
    return warm_up_cache()


async def handle(request: str) -> str:
    await asyncio.sleep(0.01)  # stands in for a database query
    return checksum(request)
