"""Tests anyio's plugin runs, on the virtual clock: a retry loop with backoff,
checked to the nanosecond in no real time."""

import anyio
import pytest

from pytest_asyncspec import LoopClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the backend the clock reaches (see "The trio backend")


async def call_with_backoff(attempt, tries: int = 4, first_delay: float = 1.0):
    delay = first_delay
    for _ in range(tries - 1):
        try:
            return await attempt()
        except ConnectionError:
            await anyio.sleep(delay)
            delay *= 2
    return await attempt()


async def test_backoff_doubles_between_attempts(asyncspec_clock: LoopClock) -> None:
    attempts: list[float] = []

    async def flaky() -> str:
        attempts.append(asyncspec_clock.now())
        if len(attempts) < 4:
            raise ConnectionError("refused")
        return "connected"

    assert await call_with_backoff(flaky) == "connected"
    assert attempts == [0.0, 1.0, 3.0, 7.0]


@pytest.mark.asyncspec(clock="manual")
async def test_a_deadline_steps_by_hand(asyncspec_clock: LoopClock) -> None:
    expired = anyio.Event()

    async def deadline() -> None:
        await anyio.sleep(60)
        expired.set()

    async with anyio.create_task_group() as group:
        group.start_soon(deadline)
        await asyncspec_clock.advance(59.999)
        assert not expired.is_set()
        await asyncspec_clock.advance(0.001)
        assert expired.is_set()
