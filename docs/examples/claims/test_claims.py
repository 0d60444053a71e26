"""A claim with its test and its negative control."""

import asyncio

import pytest

pytestmark = pytest.mark.asyncspec(clock="virtual")
SOURCE = "Async Processing in Python: Make Data Pipelines Scream"


@pytest.mark.claim("S0.2", source=SOURCE, kind="T,O")
async def test_awaited_sleeps_overlap(asyncspec_clock):
    """Five gathered 5 s sleeps take 5 s in all. (Only this sentence is the title.)"""
    asyncspec_clock.reset()
    await asyncio.gather(*(asyncio.sleep(5) for _ in range(5)))
    asyncspec_clock.assert_time(asyncspec_clock.now(), 5.0, what="whole job", documented=5.00495)


@pytest.mark.claim("S0.2", source=SOURCE, kind="T,O", control=True)
async def test_control_sequential_sleeps(asyncspec_clock):
    """Negative control: the same sleeps awaited one by one take 25 s."""
    asyncspec_clock.reset()
    for _ in range(5):
        await asyncio.sleep(5)
    asyncspec_clock.assert_time(asyncspec_clock.now(), 25.0, what="one by one")
