"""HangWatch: a loop that waits for an event nothing will deliver is diagnosed
and interrupted; a loop that waits for something that will come never is.

Each test runs a loop on this thread under a watch with a short span, as the
plugin arms one per test.  Nothing here asserts how fast anything happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from pytest_asyncspec import VirtualClockLoop
from pytest_asyncspec.checks.hang_watch import Armed, HangWatch

HERE = __file__
#: A short span: the tests below that must not be diagnosed wait several of them.
SPAN = 0.05
#: What a correct test waits for: many spans.
LONG_WAIT = 0.4


def line_of(marker: str) -> int:
    with open(HERE, encoding="utf-8") as source:
        for number, text in enumerate(source, start=1):
            if text.rstrip().endswith(f"# {marker}"):
                return number
    raise LookupError(marker)


@pytest.fixture
def watch() -> Iterator[HangWatch]:
    hang_watch = HangWatch()
    yield hang_watch
    hang_watch.stop()


LoopFactory = Callable[[], asyncio.AbstractEventLoop]
CLOCKS = [
    pytest.param(asyncio.new_event_loop, id="real"),
    pytest.param(VirtualClockLoop, id="virtual"),
]


def run_watched(
    watch: HangWatch,
    make_loop: LoopFactory,
    main: Callable[[], Coroutine[Any, Any, object]],
    span: float = SPAN,
) -> tuple[Armed, BaseException | None]:
    """Run ``main()`` on a new loop under the watch, as the plugin runs a test."""
    loop = make_loop()
    armed = watch.arm(Armed(span, lambda: loop))
    error: BaseException | None = None
    try:
        # As asyncio.Runner.run does (3.10 has no Runner).
        loop.run_until_complete(loop.create_task(main()))
    except BaseException as caught:
        error = caught
    finally:
        watch.disarm(armed)
        loop.run_until_complete(_cancel_the_rest())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    assert not armed.errors, armed.errors
    return armed, error


async def waiter(event: asyncio.Event) -> None:
    await event.wait()  # waiter-waits


# -- diagnosed -------------------------------------------------------------------


@pytest.mark.parametrize("make_loop", CLOCKS)
def test_a_loop_waiting_beside_a_listening_server_is_diagnosed(
    watch: HangWatch, make_loop: LoopFactory
) -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        try:
            event = asyncio.Event()
            await asyncio.create_task(waiter(event), name="waiter")  # main-waits
        finally:
            server.close()

    armed, error = run_watched(watch, make_loop, main)

    assert isinstance(error, asyncio.CancelledError)
    assert armed.fired
    message = armed.message
    assert message.startswith("asyncspec: the test hung: its event loop waited 0.05 s")
    assert "2 pending task(s):" in message
    assert f"at {HERE}:{line_of('waiter-waits')} in waiter" in message
    assert f"at {HERE}:{line_of('main-waits')} in " in message
    assert "task 'waiter' (waiter) awaits asyncio Event.wait()" in message


def test_a_real_clock_loop_with_nothing_to_wait_for_is_diagnosed(watch: HangWatch) -> None:
    async def main() -> None:
        await asyncio.Event().wait()  # bare-wait

    armed, error = run_watched(watch, asyncio.new_event_loop, main)

    assert isinstance(error, asyncio.CancelledError)
    assert f"at {HERE}:{line_of('bare-wait')} in " in armed.message


def test_a_task_that_swallows_the_cancellation_is_stopped_a_span_later(
    watch: HangWatch,
) -> None:
    async def main() -> None:
        for _ in range(2):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()

    armed, error = run_watched(watch, asyncio.new_event_loop, main)

    assert armed.fired
    assert armed.stopped_loop
    assert isinstance(error, RuntimeError)
    assert "Event loop stopped before Future completed" in str(error)


def test_a_disarmed_test_is_never_failed(watch: HangWatch) -> None:
    loop = asyncio.new_event_loop()
    armed = watch.arm(Armed(SPAN, lambda: loop))
    watch.disarm(armed)
    try:

        async def main() -> None:
            await asyncio.sleep(LONG_WAIT)  # real time: many spans, no timer left after

        loop.run_until_complete(main())
        # The loop is idle with nothing scheduled now; nobody watches it.
        time.sleep(4 * SPAN)
    finally:
        loop.close()
    assert not armed.fired


# -- never diagnosed: something will still wake the loop -----------------------


def _sleeping_thread_sets(event: asyncio.Event) -> Coroutine[Any, Any, None]:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        def work() -> None:
            time.sleep(LONG_WAIT)
            loop.call_soon_threadsafe(event.set)

        threading.Thread(target=work, name="worker").start()
        await event.wait()

    return main()


async def _cancel_the_rest() -> None:
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class OutsideServer:
    """A server on a thread of its own (outside the loop) that answers late.

    Started before the watch is armed, like a server a session fixture
    starts: its thread is not asked whether it is busy, so only the
    connection tells that an answer may come."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, name="outside-server")
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            connection.recv(10)
            time.sleep(LONG_WAIT)
            connection.sendall(b"late\n")

    async def ask(self) -> None:
        reader, writer = await asyncio.open_connection(*self.listener.getsockname()[:2])
        writer.write(b"hello")
        assert await reader.readline() == b"late\n"
        writer.close()
        await writer.wait_closed()

    def close(self) -> None:
        self.thread.join()
        self.listener.close()


@pytest.mark.parametrize("make_loop", CLOCKS)
def test_a_loop_waiting_for_a_peer_outside_it_is_never_diagnosed(
    watch: HangWatch, make_loop: LoopFactory
) -> None:
    server = OutsideServer()
    try:
        armed, error = run_watched(watch, make_loop, server.ask)
    finally:
        server.close()

    assert error is None, armed.message
    assert not armed.fired


async def _subprocess() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", f"import time; time.sleep({LONG_WAIT})"
    )
    assert await process.wait() == 0


async def _executor_job() -> None:
    await asyncio.get_running_loop().run_in_executor(None, time.sleep, LONG_WAIT)


async def _real_timer() -> None:
    await asyncio.sleep(LONG_WAIT)


CORRECT = {
    "executor-job": _executor_job,
    "thread-calls-back": lambda: _sleeping_thread_sets(asyncio.Event()),
    "subprocess": _subprocess,
}


@pytest.mark.parametrize("make_loop", CLOCKS)
@pytest.mark.parametrize("name", list(CORRECT))
def test_a_loop_waiting_for_real_work_is_never_diagnosed(
    watch: HangWatch, make_loop: LoopFactory, name: str
) -> None:
    armed, error = run_watched(watch, make_loop, CORRECT[name])

    assert error is None, armed.message
    assert not armed.fired


def test_a_real_clock_timer_far_ahead_is_not_a_hang(watch: HangWatch) -> None:
    armed, error = run_watched(watch, asyncio.new_event_loop, _real_timer)

    assert error is None, armed.message
    assert not armed.fired
