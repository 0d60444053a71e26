"""The status page, tested through anyio's pytest plugin on the virtual clock,
with the blocking gate on (see pytest.ini): every timing below is exact, and
the 30-second cache is tested without waiting 30 seconds."""

from __future__ import annotations

import anyio
import httpx
import pytest

from conftest import FakeProbe
from pytest_asyncspec import LoopClock

pytestmark = pytest.mark.anyio


async def test_the_probes_run_concurrently(
    client: httpx.AsyncClient, asyncspec_clock: LoopClock
) -> None:
    with asyncspec_clock.measure() as span:
        response = await client.get("/status")
    assert response.json() == {"database": "ok", "queue": "ok"}
    # The slowest probe's 1.5 s, not the 2 s of both in a row.
    asyncspec_clock.assert_time(span.elapsed, 1.5, what="two probes run together")


async def test_a_hung_probe_is_cut_off_at_its_timeout(
    client: httpx.AsyncClient, probes: dict[str, FakeProbe], asyncspec_clock: LoopClock
) -> None:
    probes["queue"].latency = 3600
    with asyncspec_clock.measure() as span:
        response = await client.get("/status")
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "queue": "timeout"}
    asyncspec_clock.assert_time(span.elapsed, 2.0, what="a hung probe, cut off")


async def test_answers_are_cached_for_thirty_seconds(
    client: httpx.AsyncClient, probes: dict[str, FakeProbe]
) -> None:
    await client.get("/status")
    await anyio.sleep(29.9)
    await client.get("/status")
    assert probes["database"].calls == 1  # still cached
    await anyio.sleep(0.1)
    await client.get("/status")
    assert probes["database"].calls == 2  # 30 s after the first answer: probed again
