"""Helpers shared by the tests of real work beside the virtual clock."""

from __future__ import annotations

import contextlib
import socketserver
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from pytest_asyncspec.clock.virtual_loop import time_patch

_Server = TypeVar("_Server", bound=socketserver.BaseServer)

#: The real time functions, as time_patch captured them at import: what every
#: thread without a virtual loop, and every forked child, must see.
REAL_TIME_FUNCTIONS: dict[str, Callable[..., object]] = {
    "monotonic": time_patch.real_monotonic,
    "monotonic_ns": time_patch.real_monotonic_ns,
    "perf_counter": time_patch.real_perf_counter,
    "perf_counter_ns": time_patch.real_perf_counter_ns,
    "time": time_patch.real_time,
    "time_ns": time_patch.real_time_ns,
    "sleep": time_patch.real_sleep,
}


@contextlib.contextmanager
def serving_in_a_thread(server: _Server, name: str = "test-server") -> Iterator[_Server]:
    """``server`` answering from its own thread, always stopped on exit.

    shutdown() returns once serve_forever has left its loop; handlers are
    bounded by their socket timeouts, so this cannot hang.
    """
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
    assert not thread.is_alive(), "the server thread did not stop"
