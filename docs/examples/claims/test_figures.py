"""A figure that is not a timing check, recorded by hand."""

import asyncio

import pytest

from pytest_asyncspec import ClaimRecorder

SOURCE = "The reducers' design notes"


async def reduce_part(number: int) -> int:
    await asyncio.sleep(0.1 * number)
    return 7 * number


async def reduce_all() -> int:
    return sum(await asyncio.gather(*(reduce_part(n) for n in range(5))))


@pytest.mark.claim("R1", source=SOURCE, kind="S")
async def test_reducers(asyncspec_claim: ClaimRecorder):
    """The five parts reduce to 70."""
    total = await reduce_all()
    asyncspec_claim.record("sum of the parts", documented=70, measured=total)
    assert total == 70
