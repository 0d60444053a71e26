"""Which ends are this loop's own, and bytes in flight between them (rule 5).

A peer the loop itself holds (both ends of a socketpair, a Unix server and
its client, a UDP server and its client, the two ends of a pipe) sends only
during the loop's own callbacks, so such an end never holds time back: the
clock jumps, and a 30 s virtual wait ends exactly 30 s later, at no real
cost.  A peer the loop does not hold (a thread, another process) may send at
any real moment: the clock flows at real speed, so its reply arrives under a
timeout and a timer elsewhere does not fire first.  Bytes a loopback TCP
socket of this loop still holds back (Nagle's algorithm waiting for a delayed
acknowledgement) are real work too.

Every case runs on both the plain virtual loop and the exploring loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import socketserver
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from real_work_helpers import serving_in_a_thread

from pytest_asyncspec import VirtualClockLoop
from pytest_asyncspec.exploration import ExploringLoop

if TYPE_CHECKING:
    from conftest import RunVirtual

#: The responder's virtual wait: far longer than the real-time bound, so a
#: real-speed wait cannot pass for a jump.
LONG_WAIT = 30
LONG_WAIT_TICKS = LONG_WAIT * 1_000_000_000
#: Real seconds under which a 30 s virtual wait must finish (generous: a
#: loaded 2-core machine), and after which the watchdog gives up.
REAL_BOUND = 10.0
WATCHDOG = 15.0
#: Real seconds an outside peer waits before it answers.
REPLY_DELAY = 0.3

needs_unix = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets")

LOOPS = pytest.mark.parametrize(
    "loop_class", [VirtualClockLoop, ExploringLoop], ids=["virtual", "exploring"]
)


def run_jump(
    run_virtual: RunVirtual,
    loop_class: type[VirtualClockLoop],
    main: Callable[[], Awaitable[bytes]],
) -> bytes:
    """Run ``main`` (which awaits a reply a peer on the loop sends after a 30 s
    virtual sleep); check the wait lasted exactly 30 s of virtual time and far
    less real time."""

    async def timed() -> tuple[bytes, int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        started = loop.virtual_ticks()
        reply = await main()
        return reply, loop.virtual_ticks() - started

    began = time.perf_counter()
    reply, ticks = run_virtual(timed, watchdog=WATCHDOG, loop_class=loop_class)
    real = time.perf_counter() - began
    assert ticks == LONG_WAIT_TICKS, f"{ticks / 1e9} s of virtual time: not a jump"
    assert real < REAL_BOUND, f"{real:.1f} s of real time: the clock flowed at real speed"
    return reply


async def late_echo(
    receive: Callable[[], Awaitable[bytes]], send: Callable[[bytes], object]
) -> None:
    """The peer on this loop: read a request, sleep 30 s, answer it."""
    request = await receive()
    await asyncio.sleep(LONG_WAIT)
    result = send(b"late " + request)
    if asyncio.iscoroutine(result):
        await result


# -- peers on this loop: the clock jumps -------------------------------------------


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, object]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received.put_nowait((data, addr))


@LOOPS
@pytest.mark.parametrize("connected", [True, False], ids=["remote_addr", "sendto"])
def test_udp_server_and_client_on_this_loop_jump(
    run_virtual: RunVirtual, loop_class: type[VirtualClockLoop], connected: bool
) -> None:
    """A UDP server bound on 127.0.0.1:0 and a client on the same loop, the client
    connected to it (``remote_addr``) or sending with ``sendto(data, addr)``: the
    server's unconnected socket is no outside peer, nor is the client's."""

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        server, server_side = await loop.create_datagram_endpoint(
            _Datagrams, local_addr=("127.0.0.1", 0)
        )
        address = server.get_extra_info("sockname")
        if connected:
            client, client_side = await loop.create_datagram_endpoint(
                _Datagrams, remote_addr=address
            )
        else:
            client, client_side = await loop.create_datagram_endpoint(
                _Datagrams, local_addr=("127.0.0.1", 0)
            )
        try:

            async def serve() -> None:
                request, sender = await server_side.received.get()
                await asyncio.sleep(LONG_WAIT)
                server.sendto(b"late " + request, sender)

            serving = asyncio.create_task(serve())
            client.sendto(b"ping", None if connected else address)
            reply, _ = await client_side.received.get()
            await serving
            return reply
        finally:
            client.close()
            server.close()

    assert run_jump(run_virtual, loop_class, main) == b"late ping"


@LOOPS
def test_socketpair_streams_on_this_loop_jump(
    run_virtual: RunVirtual, loop_class: type[VirtualClockLoop]
) -> None:
    """Both ends of ``socket.socketpair()`` given to ``open_connection(sock=...)``:
    their peer names are empty, yet each end's peer is the loop's other end."""

    async def main() -> bytes:
        a, b = socket.socketpair()
        reader_a, writer_a = await asyncio.open_connection(sock=a)
        reader_b, writer_b = await asyncio.open_connection(sock=b)
        try:
            serving = asyncio.create_task(
                late_echo(lambda: reader_b.readexactly(4), writer_b.write)
            )
            writer_a.write(b"ping")
            reply = await reader_a.readexactly(9)
            await serving
            return reply
        finally:
            for writer in (writer_a, writer_b):
                writer.close()
                await writer.wait_closed()

    assert run_jump(run_virtual, loop_class, main) == b"late ping"


@LOOPS
def test_socketpair_with_sock_methods_on_this_loop_jumps(
    run_virtual: RunVirtual, loop_class: type[VirtualClockLoop]
) -> None:
    """``sock_recv``/``sock_sendall`` on the two ends of a socketpair: while one
    end waits in ``sock_recv`` the other is not registered at all, but the loop
    was handed it, so it is the loop's own."""

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        with a, b:
            serving = asyncio.create_task(
                late_echo(lambda: loop.sock_recv(b, 4), lambda data: loop.sock_sendall(b, data))
            )
            await loop.sock_sendall(a, b"ping")
            reply = await loop.sock_recv(a, 100)
            await serving
            return reply

    assert run_jump(run_virtual, loop_class, main) == b"late ping"


@contextlib.contextmanager
def _short_tmpdir() -> Iterator[str]:
    # A Unix socket path is limited to about 100 bytes; pytest's tmp_path can
    # be longer than that.
    path = tempfile.mkdtemp(prefix="asyncspec-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@needs_unix
@LOOPS
def test_unix_server_and_client_on_this_loop_jump(
    run_virtual: RunVirtual, loop_class: type[VirtualClockLoop]
) -> None:
    """``start_unix_server`` and ``open_unix_connection`` on the same loop: the
    accepted socket's peer name is empty, so only the peer's identity (its
    inode) can say it is this loop's client."""

    async def main(path: str) -> bytes:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await late_echo(lambda: reader.readexactly(4), writer.write)
                await writer.drain()
            finally:
                writer.close()

        server = await asyncio.start_unix_server(handle, path)
        try:
            reader, writer = await asyncio.open_unix_connection(path)
            try:
                writer.write(b"ping")
                return await reader.readexactly(9)
            finally:
                writer.close()
                await writer.wait_closed()
        finally:
            server.close()
            await server.wait_closed()

    with _short_tmpdir() as directory:
        path = os.path.join(directory, "s")
        assert run_jump(run_virtual, loop_class, lambda: main(path)) == b"late ping"


@pytest.mark.skipif(sys.platform == "win32", reason="no pipe transports on Windows")
@LOOPS
def test_pipe_ends_on_this_loop_jump(
    run_virtual: RunVirtual, loop_class: type[VirtualClockLoop]
) -> None:
    """``connect_read_pipe`` and ``connect_write_pipe`` on the two ends of one
    ``os.pipe()``: the writer's 30 s sleep is jumped over."""

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        read_end, write_end = os.pipe()
        reader = asyncio.StreamReader()
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_end, "rb")
        )
        write_transport, _ = await loop.connect_write_pipe(
            asyncio.Protocol, os.fdopen(write_end, "wb")
        )
        try:

            async def write_late() -> None:
                await asyncio.sleep(LONG_WAIT)
                write_transport.write(b"late ping")

            writing = asyncio.create_task(write_late())
            reply = await reader.readexactly(9)
            await writing
            return reply
        finally:
            write_transport.close()
            read_transport.close()

    assert run_jump(run_virtual, loop_class, main) == b"late ping"


# -- peers outside this loop: the clock flows at real speed ---------------------------


def run_outside(
    run_virtual: RunVirtual,
    loop_class: type[VirtualClockLoop],
    exchange: Callable[[], Awaitable[bytes]],
) -> bytes:
    """Run ``exchange`` (whose reply an outside peer sends after 0.3 real
    seconds) under a 10 s timeout, with a 5 s sleep pending elsewhere: the
    reply arrives, after about 0.3 s of virtual time, and the sleep has not
    ended."""

    async def main() -> tuple[bytes, float, bool]:
        loop = asyncio.get_running_loop()
        sleeper = asyncio.create_task(asyncio.sleep(5))
        started = loop.time()
        try:
            reply = await asyncio.wait_for(exchange(), 10)
            return reply, loop.time() - started, sleeper.done()
        finally:
            sleeper.cancel()

    reply, elapsed, slept = run_virtual(main, watchdog=WATCHDOG, loop_class=loop_class)
    assert not slept, "the clock jumped past a 5 s sleep while a reply was owed"
    assert REPLY_DELAY * 0.8 <= elapsed < 5
    return reply


class _LateReplyHandler(socketserver.StreamRequestHandler):
    timeout = 5.0  # a client that never sends cannot hold the server thread

    def handle(self) -> None:
        request = self.rfile.read(4)
        time.sleep(REPLY_DELAY)  # a real sleep: this thread runs no loop
        self.wfile.write(b"late " + request)


class _LateDatagramHandler(socketserver.DatagramRequestHandler):
    def handle(self) -> None:
        request = self.rfile.read()
        time.sleep(REPLY_DELAY)
        self.wfile.write(b"late " + request)


@LOOPS
def test_socketpair_end_written_by_a_thread_is_outside(
    run_virtual: RunVirtual, loop_class: type[VirtualClockLoop]
) -> None:
    """One socketpair end on the loop, the other written by a thread 0.3 real
    seconds later: the loop does not hold that end, so its bytes are owed from
    outside."""

    async def exchange() -> bytes:
        a, b = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=a)
        timer = threading.Timer(REPLY_DELAY, b.sendall, (b"late ping",))
        timer.start()
        try:
            return await reader.readexactly(9)
        finally:
            timer.join()
            b.close()
            writer.close()
            await writer.wait_closed()

    assert run_outside(run_virtual, loop_class, exchange) == b"late ping"


@LOOPS
def test_unconnected_udp_client_awaiting_a_thread_server_is_outside(
    run_virtual: RunVirtual, loop_class: type[VirtualClockLoop]
) -> None:
    """An unconnected datagram endpoint sends a request with ``sendto`` to a UDP
    server in another thread: it is a client an outside peer owes a reply,
    not a server awaiting datagrams that may never come."""

    async def exchange(address: tuple[str, int]) -> bytes:
        loop = asyncio.get_running_loop()
        client, side = await loop.create_datagram_endpoint(_Datagrams, local_addr=("127.0.0.1", 0))
        try:
            client.sendto(b"ping", address)
            reply, _ = await side.received.get()
            return reply
        finally:
            client.close()

    server = socketserver.UDPServer(("127.0.0.1", 0), _LateDatagramHandler)
    with serving_in_a_thread(server):
        address = server.server_address
        assert isinstance(address, tuple)
        reply = run_outside(run_virtual, loop_class, lambda: exchange(address))
    assert reply == b"late ping"


@pytest.mark.skipif(sys.platform == "win32", reason="no pipe transports on Windows")
@LOOPS
def test_pipe_written_by_a_thread_is_outside(
    run_virtual: RunVirtual, loop_class: type[VirtualClockLoop]
) -> None:
    """The read end of a pipe on the loop, the write end written by a thread."""

    async def exchange() -> bytes:
        loop = asyncio.get_running_loop()
        read_end, write_end = os.pipe()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_end, "rb")
        )
        timer = threading.Timer(REPLY_DELAY, os.write, (write_end, b"late ping"))
        timer.start()
        try:
            return await reader.readexactly(9)
        finally:
            timer.join()
            os.close(write_end)
            transport.close()

    assert run_outside(run_virtual, loop_class, exchange) == b"late ping"


@needs_unix
@LOOPS
def test_unix_server_in_a_thread_is_outside(
    run_virtual: RunVirtual, loop_class: type[VirtualClockLoop]
) -> None:
    """``open_unix_connection`` to a Unix server in another thread."""

    async def exchange(path: str) -> bytes:
        reader, writer = await asyncio.open_unix_connection(path)
        try:
            writer.write(b"ping")
            return await reader.readexactly(9)
        finally:
            writer.close()
            await writer.wait_closed()

    with _short_tmpdir() as directory:
        path = os.path.join(directory, "s")
        server = socketserver.UnixStreamServer(path, _LateReplyHandler)
        with serving_in_a_thread(server):
            reply = run_outside(run_virtual, loop_class, lambda: exchange(path))
    assert reply == b"late ping"


@LOOPS
def test_a_closed_transport_under_a_reused_fd_does_not_make_an_outside_server_internal(
    run_virtual: RunVirtual, loop_class: type[VirtualClockLoop]
) -> None:
    """A closed transport lingers in the loop's ``_transports`` while something
    references it, under a number the OS then gives to the listening socket of
    a server in another thread.  That number is not the loop's any more: the
    client's peer is outside, and its 0.3 s reply must not be overtaken."""

    async def main() -> tuple[bytes, float, bool]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        _, stale = await asyncio.open_connection(sock=a)
        stale_fd = a.fileno()
        stale.close()
        await stale.wait_closed()
        transports = getattr(loop, "_transports", {})
        assert stale_fd in transports, "the closed transport should linger (precondition)"
        # The lowest free number is the one the transport's socket just gave up.
        server = socketserver.TCPServer(("127.0.0.1", 0), _LateReplyHandler)
        try:
            assert server.socket.fileno() == stale_fd, "fd not reused (precondition)"
            with serving_in_a_thread(server):
                port = server.server_address[1]

                async def exchange() -> bytes:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    try:
                        writer.write(b"ping")
                        return await reader.readexactly(9)
                    finally:
                        writer.close()
                        await writer.wait_closed()

                sleeper = asyncio.create_task(asyncio.sleep(5))
                started = loop.time()
                try:
                    reply = await asyncio.wait_for(exchange(), 10)
                    return reply, loop.time() - started, sleeper.done()
                finally:
                    sleeper.cancel()
        finally:
            b.close()
            del stale

    reply, elapsed, slept = run_virtual(main, watchdog=WATCHDOG, loop_class=loop_class)
    assert reply == b"late ping"
    assert not slept
    assert REPLY_DELAY * 0.8 <= elapsed < 5


# -- bytes in flight ----------------------------------------------------------------


@LOOPS
def test_bytes_nagle_holds_back_are_not_overtaken(
    run_virtual: RunVirtual, loop_class: type[VirtualClockLoop]
) -> None:
    """Sockets from ``socket.create_server`` and ``socket.socket()`` have proto 0,
    so asyncio leaves Nagle's algorithm on.  After a few request/response rounds
    the server acknowledges lazily (delayed ACK, about 40 ms), and the client's
    second small write in a row stays in its kernel until then.  Those bytes
    are in flight: the server's ``readexactly`` under a 10 s timeout gets them,
    and a 5 s sleep elsewhere does not end first.  Stock asyncio takes about
    40 ms here; so does the virtual clock, which flows at real speed meanwhile."""
    rounds = 40

    async def main() -> tuple[list[bytes], float, bool]:
        loop = asyncio.get_running_loop()
        received: list[bytes] = []
        done = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                for _ in range(rounds):
                    await reader.readexactly(5)
                    writer.write(b"ok")
                    await writer.drain()
                for _ in range(2):
                    received.append(await asyncio.wait_for(reader.readexactly(5), 10))
            finally:
                writer.close()
                done.set()

        listening = socket.create_server(("127.0.0.1", 0))
        server = await asyncio.start_server(handle, sock=listening)
        client = socket.socket()
        client.connect(listening.getsockname())
        client.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=client)
        try:
            for _ in range(rounds):
                writer.write(b"12345")
                await writer.drain()
                await reader.readexactly(2)
            sleeper = asyncio.create_task(asyncio.sleep(5))
            started = loop.time()
            for message in (b"hello", b"world"):
                writer.write(message)
                await writer.drain()
            await done.wait()
            elapsed = loop.time() - started
            slept = sleeper.done()
            sleeper.cancel()
            return received, elapsed, slept
        finally:
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()

    received, elapsed, slept = run_virtual(main, watchdog=WATCHDOG, loop_class=loop_class)
    assert received == [b"hello", b"world"]
    assert not slept
    assert elapsed < 5
