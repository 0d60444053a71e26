"""Root conftest: fixtures shared by this repository's own test suites only."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _close_loops_left_by_inline_runs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Close an event loop an in-process pytester session left as the thread's
    current loop.

    On Python 3.10 and 3.11 ``asyncio.get_event_loop()`` creates a loop when
    none is set; pytest-asyncio calls it when a session starts and puts the
    result back when it ends, without closing it.  Inside one process (our
    pytester runs) that loop is dropped later by whichever test swaps the
    loop or the policy, and its ResourceWarning then fails an innocent test.
    """
    if "pytester" not in request.fixturenames:
        yield
        return
    before = _current_loop()
    yield
    after = _current_loop()
    if after is not None and after is not before and not after.is_running():
        after.close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_event_loop(before)


def _current_loop() -> asyncio.AbstractEventLoop | None:
    local = getattr(asyncio.get_event_loop_policy(), "_local", None)
    loop = getattr(local, "_loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None
