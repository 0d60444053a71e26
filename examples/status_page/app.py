"""A status page: a Starlette app that checks its dependencies concurrently.

``GET /status`` runs every probe at once, gives each one ``PROBE_TIMEOUT``
seconds, and answers with each probe's verdict.  Answers are cached for
``CACHE_SECONDS``: a status page is polled, and the probes must not be.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

PROBE_TIMEOUT = 2.0
CACHE_SECONDS = 30.0

#: A probe answers "ok" or raises; it may take its time.
Probe = Callable[[], Awaitable[str]]


class StatusCache:
    """The last verdicts and when they were taken (anyio's clock)."""

    def __init__(self) -> None:
        self.verdicts: dict[str, str] | None = None
        self.taken_at = 0.0

    def fresh(self) -> dict[str, str] | None:
        if self.verdicts is None or anyio.current_time() - self.taken_at >= CACHE_SECONDS:
            return None
        return self.verdicts

    def keep(self, verdicts: dict[str, str]) -> None:
        self.verdicts, self.taken_at = verdicts, anyio.current_time()


async def _verdict(probe: Probe) -> str:
    try:
        with anyio.fail_after(PROBE_TIMEOUT):
            return await probe()
    except TimeoutError:
        return "timeout"
    except Exception as error:  # a probe's failure is its verdict
        return f"error: {error}"


async def check_all(probes: dict[str, Probe]) -> dict[str, str]:
    """Every probe's verdict, the probes run concurrently."""
    verdicts: dict[str, str] = {}

    async def run(name: str, probe: Probe) -> None:
        verdicts[name] = await _verdict(probe)

    async with anyio.create_task_group() as group:
        for name, probe in probes.items():
            group.start_soon(run, name, probe)
    return dict(sorted(verdicts.items()))


def create_app(probes: dict[str, Probe]) -> Starlette:
    cache = StatusCache()

    async def status(request: Request) -> JSONResponse:
        verdicts = cache.fresh()
        if verdicts is None:
            verdicts = await check_all(probes)
            cache.keep(verdicts)
        healthy = all(verdict == "ok" for verdict in verdicts.values())
        return JSONResponse(verdicts, status_code=200 if healthy else 503)

    return Starlette(routes=[Route("/status", status)])
