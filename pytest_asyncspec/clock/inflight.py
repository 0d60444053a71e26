"""Decide whether the outside world still owes a loop an I/O event.

A virtual clock may only jump ahead when no real event could arrive first.
File descriptors registered with the loop's selector fall into three kinds:

* ``LISTENING`` descriptors wait for peers that may never come: a listening
  socket (a test server), or an unconnected datagram socket that has sent
  nothing to a destination outside this loop (a UDP server).  They must not
  freeze virtual time, or every test that starts a server would run in real
  time.
* ``INTERNAL`` descriptors are connected to a peer that this same loop holds
  (see below).  Everything such a peer sends is sent during one of this
  loop's callbacks, and the kernel hands loopback, Unix-socket and pipe data
  over during the sending call, so a zero-timeout poll sees all of it; they
  never hold time back.
* ``EXTERNAL`` descriptors (a peer in another thread or process, a
  subprocess pipe, anything unknown) may deliver an event at any real
  moment: while one is registered the virtual clock runs at real speed
  instead of jumping.

**What the loop holds.**  A descriptor is this loop's own when it is
registered with the loop's selector, is the socket of one of the loop's live
transports (the transport's own socket still has that descriptor: a closed
transport that lingers in ``loop._transports`` under a number the OS has
since given to another socket holds nothing), or is an open socket the loop
was handed through a ``sock_*`` method (``sock_recv``, ``sock_sendall``, ...).
Peers are matched by what they are, never by a number alone:

* a Unix socket's peer by inode: Linux's ``NETLINK_SOCK_DIAG`` (``unix_diag``
  with ``UDIAG_SHOW_PEER``) names the peer's inode, which is compared with the
  inodes (``os.fstat(fd).st_ino``) of the sockets the loop holds.  A client
  not accepted yet counts as this loop's when the loop holds the listening
  socket at its peer path.  Where the netlink query is unavailable, only the
  latter rule applies and every other Unix socket is external;
* a pipe end by the ``(st_dev, st_ino)`` of the pipe: the loop holds both ends;
* a TCP connection by its address pair: the loop holds the socket whose local
  address is this one's peer address and whose peer address is this one's
  local address, or the listening socket the connection waits in;
* a connected datagram socket by its peer address: the loop holds a datagram
  socket bound there (or bound to the wildcard address on that port, for a
  loopback peer) that is not connected to somebody else.

**Datagrams.**  An unconnected datagram socket is a server awaiting datagrams
that may never come (``LISTENING``) until it sends, through the loop (a
datagram transport's ``sendto`` or ``loop.sock_sendto``), to a destination
that no datagram socket of this loop is bound to: from then on it is a client
that an outside peer may answer at any real moment (``EXTERNAL``) for as long
as it is open, like a TCP connection to an outside server.  A bare
``sock.sendto`` on the socket object is not seen by the loop.

**Bytes in flight.**  Loopback TCP hands data over during the sending call,
except what the kernel holds back: Nagle's algorithm keeps a small write
unsent until the previous one is acknowledged, and the acknowledgement may
be delayed by about 40 ms.  A TCP socket of this loop with unsent bytes
(Linux ``SIOCOUTQNSD``) whose peer is this loop's, registered for reading and
with nothing left to read (``SIOCINQ``), is waiting for such a release: it
counts as ``EXTERNAL`` until the bytes arrive.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import fcntl
import os
import socket
import stat
import struct
import sys
import weakref
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

Address = tuple[object, ...] | str | bytes

#: Linux ioctls: bytes queued for reading, bytes written but not yet sent.
_SIOCINQ = 0x541B
_SIOCOUTQNSD = 0x894B
_LINUX = sys.platform.startswith("linux")

# NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, UDIAG_SHOW_PEER, UNIX_DIAG_PEER,
# NLMSG_ERROR, NLM_F_REQUEST (linux/sock_diag.h, unix_diag.h, netlink.h).
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_UDIAG_SHOW_PEER = 4
_UNIX_DIAG_PEER = 2
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 1
_NO_COOKIE = 0xFFFFFFFF

_WILDCARD_HOSTS = ("0.0.0.0", "::")
#: Whether unix_diag answered (None: not asked yet).
_netlink_works: bool | None = None


class FdKind(enum.Enum):
    LISTENING = "listening"
    INTERNAL = "internal"
    EXTERNAL = "external"


def _unix_peer_inode(inode: int) -> int | None:
    """The inode of the peer of the Unix socket ``inode`` (0: none right now).

    ``None`` when the kernel cannot be asked (not Linux, no sock_diag).
    """
    global _netlink_works
    if not _LINUX or _netlink_works is False:
        return None
    request = struct.pack(
        "=BBHIIIII",
        socket.AF_UNIX,
        0,
        0,
        0xFFFFFFFF,  # every state
        inode,
        _UDIAG_SHOW_PEER,
        _NO_COOKIE,
        _NO_COOKIE,
    )
    header = struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as diag:
            diag.sendto(header + request, (0, 0))
            reply = diag.recv(8192)
    except (OSError, AttributeError):
        _netlink_works = _netlink_works or False
        return None
    if len(reply) < 32:
        return None
    length, kind = struct.unpack_from("=IH", reply)
    if kind == _NLMSG_ERROR:
        # ENOENT for a socket gone meanwhile; anything else, and no query
        # ever answered, means unix_diag is not there.
        (error,) = struct.unpack_from("=i", reply, 16)
        if error != -errno.ENOENT and not _netlink_works:
            _netlink_works = False
        return None
    _netlink_works = True
    offset = 16 + 16  # nlmsghdr, unix_diag_msg
    while offset + 4 <= min(length, len(reply)):
        attr_length, attr_kind = struct.unpack_from("=HH", reply, offset)
        if attr_length < 4:
            break
        if attr_kind == _UNIX_DIAG_PEER and attr_length >= 8:
            peer: int = struct.unpack_from("=I", reply, offset + 4)[0]
            return peer
        offset += (attr_length + 3) & ~3
    return 0  # no peer attribute: not connected


def _ioctl_int(fd: int, request: int) -> int:
    try:
        raw = fcntl.ioctl(fd, request, b"\0\0\0\0")
    except OSError:
        return 0
    value: int = struct.unpack("=i", raw)[0]
    return value


def _host(address: object) -> object:
    host = address[0] if isinstance(address, tuple) and address else None
    if isinstance(host, str) and host.startswith("::ffff:") and "." in host:
        return host[7:]  # an IPv4 peer of a dual-stack socket
    return host


def _normalise(address: object) -> Address | None:
    """An endpoint as a comparable value (``None``: identifies nothing)."""
    # IPv6 addresses carry flow info and scope id; only host and port identify
    # an endpoint.  Unnamed Unix sockets report '' which identifies nothing.
    if isinstance(address, tuple):
        return (_host(address), *address[1:2])
    if address in ("", b"") or address is None:
        return None
    if isinstance(address, bytes):
        return address
    if isinstance(address, str):
        return address.encode(errors="surrogateescape")
    return None


def _is_loopback(host: object) -> bool:
    return isinstance(host, str) and (host.startswith("127.") or host in ("::1", "localhost"))


def _receives_at(sock: _Socket, address: Address) -> bool:
    """Whether datagrams sent to ``address`` reach ``sock`` (bound to its local address)."""
    local = sock.local
    if local == address:
        return True
    if not (isinstance(local, tuple) and isinstance(address, tuple)) or local[1:] != address[1:]:
        return False
    if local[0] in _WILDCARD_HOSTS:
        return _is_loopback(address[0])
    return address[0] == "localhost" and _is_loopback(local[0])


@dataclass(slots=True)
class _Socket:
    """What the kernel says about one socket (see :func:`_describe`)."""

    inode: int
    unix: bool
    stream: bool
    listening: bool
    local: Address | None
    peer: Address | None
    #: Unix sockets: the peer's inode (0: none now), None if unknown.
    peer_inode: int | None = None

    @property
    def stable(self) -> bool:
        """Whether the description stays true while the socket lives.

        A listening socket stays one; a connected stream socket keeps its
        peer.  Anything else (datagram sockets, a connect in progress, a Unix
        client not accepted yet) is asked again each time.
        """
        if self.listening:
            return True
        if not self.stream:
            return False
        if self.unix:
            return bool(self.peer_inode)
        return self.peer is not None


@dataclass(slots=True)
class _Pipe:
    identity: tuple[int, int]


@dataclass(slots=True)
class _Other:
    pass


_Described = _Socket | _Pipe | _Other


def _describe(fd: int, st: os.stat_result) -> _Described:
    if stat.S_ISFIFO(st.st_mode):
        return _Pipe((st.st_dev, st.st_ino))
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return _Other()
    try:
        unix = sock.family == getattr(socket, "AF_UNIX", object())
        stream = sock.type == socket.SOCK_STREAM
        try:
            listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        except OSError:
            listening = False
        try:
            local = _normalise(sock.getsockname())
        except OSError:
            local = None
        try:
            peer = _normalise(sock.getpeername())
        except OSError:
            peer = None
    finally:
        sock.detach()
    peer_inode = None
    if unix and not listening:
        peer_inode = _unix_peer_inode(st.st_ino)
    return _Socket(st.st_ino, unix, stream, listening, local, peer, peer_inode)


@dataclass(slots=True)
class _Sends:
    """Destinations a datagram socket sent to through the loop."""

    unchecked: set[Address] = field(default_factory=set)
    outside: bool = False


class PeerTracker:
    """Per loop: what the loop holds, and the kind of each registered fd."""

    def __init__(self) -> None:
        # fd -> (identity, description), only for descriptions that stay true.
        self._cache: dict[int, tuple[tuple[int, int], _Described]] = {}
        self._held_sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._sends: weakref.WeakKeyDictionary[socket.socket, _Sends] = weakref.WeakKeyDictionary()

    # -- what the loop is handed -----------------------------------------------

    def hold(self, sock: object) -> None:
        """``sock`` was given to the loop (a ``sock_*`` method): it is the loop's."""
        if isinstance(sock, socket.socket):
            self._held_sockets.add(sock)

    def sent(self, sock: object, address: object) -> None:
        """``sock`` sent a datagram to ``address`` through the loop."""
        if not isinstance(sock, socket.socket):
            return
        normalised = _normalise(address)
        sends = self._sends.get(sock)
        if sends is None:
            sends = self._sends[sock] = _Sends()
        if sends.outside:
            return
        if normalised is None:
            sends.outside = True
        else:
            sends.unchecked.add(normalised)

    # -- classification ----------------------------------------------------------

    def _lookup(self, fd: int) -> _Described | None:
        try:
            st = os.fstat(fd)
        except OSError:
            return None
        identity = (st.st_dev, st.st_ino)
        cached = self._cache.get(fd)
        if cached is not None and cached[0] == identity:
            return cached[1]
        described = _describe(fd, st)
        if isinstance(described, _Socket) and not described.stable:
            self._cache.pop(fd, None)
        else:
            self._cache[fd] = (identity, described)
        return described

    def kinds(self, registered: Mapping[int, int], transports: Mapping[int, Any]) -> set[FdKind]:
        """The kinds of the ``registered`` fds (fd -> selector events).

        ``transports`` is the loop's ``_transports`` (fd -> transport): only a
        transport whose own socket still has that fd counts as holding it.
        """
        held: dict[int, _Described] = {}
        for fd in registered:
            described = self._lookup(fd)
            if described is not None:
                held[fd] = described
        for fd, transport in list(transports.items()):
            if fd in held or transport is None:
                continue
            sock = transport.get_extra_info("socket")
            if sock is None or sock.fileno() != fd:
                continue  # a closed transport: the number is not ours any more
            described = self._lookup(fd)
            if described is not None:
                held[fd] = described
        for sock in list(self._held_sockets):
            fd = sock.fileno()
            if fd >= 0 and fd not in held:
                described = self._lookup(fd)
                if described is not None:
                    held[fd] = described
        # Forget fds the loop no longer holds, so the cache stays small.
        if len(self._cache) > 2 * len(held) + 8:
            self._cache = {fd: entry for fd, entry in self._cache.items() if fd in held}
        return _Peers(held, registered, self._datagram_sends()).kinds()

    def _datagram_sends(self) -> dict[int, _Sends]:
        sends: dict[int, _Sends] = {}
        for sock, record in list(self._sends.items()):
            fd = sock.fileno()
            if fd >= 0:
                sends[fd] = record
        return sends


class _Peers:
    """One classification: the loop's held fds and the indexes to match peers."""

    def __init__(
        self,
        held: dict[int, _Described],
        registered: Mapping[int, int],
        sends: dict[int, _Sends],
    ) -> None:
        self.held = held
        self.registered = registered
        self.sends = sends
        self.pipe_ends: dict[tuple[int, int], int] = {}
        self.inodes: dict[int, int] = {}  # socket inode -> fd
        self.connections: dict[tuple[bool, object, object], int] = {}
        self.listeners: dict[tuple[bool, object], int] = {}
        self.wildcard_ports: dict[object, int] = {}
        self.datagrams: dict[tuple[bool, object], list[_Socket]] = {}
        self.datagram_ports: dict[object, list[_Socket]] = {}
        for fd, described in held.items():
            if isinstance(described, _Pipe):
                self.pipe_ends[described.identity] = self.pipe_ends.get(described.identity, 0) + 1
            elif isinstance(described, _Socket):
                self._index(fd, described)

    def _index(self, fd: int, sock: _Socket) -> None:
        self.inodes[sock.inode] = fd
        if sock.local is None:
            return
        if sock.listening:
            self.listeners[(sock.unix, sock.local)] = fd
            if isinstance(sock.local, tuple) and sock.local[0] in _WILDCARD_HOSTS:
                self.wildcard_ports[sock.local[1]] = fd
        elif sock.stream:
            if sock.peer is not None:
                self.connections[(sock.unix, sock.local, sock.peer)] = fd
        else:
            self.datagrams.setdefault((sock.unix, sock.local), []).append(sock)
            if isinstance(sock.local, tuple) and (
                sock.local[0] in _WILDCARD_HOSTS or _is_loopback(sock.local[0])
            ):
                self.datagram_ports.setdefault(sock.local[1], []).append(sock)

    def kinds(self) -> set[FdKind]:
        kinds: set[FdKind] = set()
        for fd in self.registered:
            described = self.held.get(fd)
            kinds.add(self._kind(fd, described))
        if FdKind.EXTERNAL not in kinds and self._bytes_in_flight():
            kinds.add(FdKind.EXTERNAL)
        return kinds

    def _kind(self, fd: int, described: _Described | None) -> FdKind:
        if isinstance(described, _Pipe):
            # Both ends held by this loop: the pipe's identity is held twice.
            both = self.pipe_ends.get(described.identity, 0) >= 2
            return FdKind.INTERNAL if both else FdKind.EXTERNAL
        if not isinstance(described, _Socket):
            return FdKind.EXTERNAL
        if described.listening:
            return FdKind.LISTENING
        if described.stream:
            return FdKind.INTERNAL if self._stream_peer(described) is not None else FdKind.EXTERNAL
        return self._datagram_kind(fd, described)

    def _stream_peer(self, sock: _Socket) -> int | None:
        """The fd of this loop's socket at the other end of ``sock``, if any."""
        if sock.unix and sock.peer_inode:
            return self.inodes.get(sock.peer_inode)
        if sock.peer is None:
            return None
        if not sock.unix:
            peer = self.connections.get((False, sock.peer, sock.local))
            if peer is not None:
                return peer
        # Not accepted yet: it waits in the listening socket at its peer address.
        listener = self.listeners.get((sock.unix, sock.peer))
        if listener is not None:
            return listener
        if not sock.unix and isinstance(sock.peer, tuple) and _is_loopback(sock.peer[0]):
            return self.wildcard_ports.get(sock.peer[1])
        return None

    def _datagram_kind(self, fd: int, sock: _Socket) -> FdKind:
        if sock.unix and sock.peer_inode:
            return FdKind.INTERNAL if sock.peer_inode in self.inodes else FdKind.EXTERNAL
        if sock.peer is not None:
            return FdKind.INTERNAL if self._datagram_here(sock.peer, sock) else FdKind.EXTERNAL
        sends = self.sends.get(fd)
        if sends is not None and not sends.outside:
            for destination in sends.unchecked:
                if not self._datagram_here(destination, sock):
                    sends.outside = True
                    break
            sends.unchecked.clear()
        if sends is not None and sends.outside:
            return FdKind.EXTERNAL
        return FdKind.LISTENING

    def _datagram_here(self, address: Address, sender: _Socket) -> bool:
        """Whether a datagram socket of this loop receives what ``sender`` sends to ``address``."""
        candidates = list(self.datagrams.get((sender.unix, address), ()))
        if not sender.unix and isinstance(address, tuple) and _is_loopback(address[0]):
            candidates.extend(self.datagram_ports.get(address[1], ()))
        return any(
            other is not sender
            and _receives_at(other, address)
            and (other.peer is None or other.peer == sender.local)
            for other in candidates
        )

    def _bytes_in_flight(self) -> bool:
        """A loopback TCP socket of this loop holds back bytes its peer here awaits."""
        if not _LINUX:
            return False
        for (unix, _local, _peer), fd in self.connections.items():
            if unix:
                continue
            sock = self.held[fd]
            assert isinstance(sock, _Socket)
            peer = self._stream_peer(sock)
            other = self.held.get(peer) if peer is not None else None
            if peer is None or not isinstance(other, _Socket) or other.listening:
                continue  # not accepted yet: the listening socket is readable
            events = self.registered.get(peer, 0)
            if not events & 1:  # selectors.EVENT_READ: nobody awaits the bytes
                continue
            if _ioctl_int(fd, _SIOCOUTQNSD) > 0 and _ioctl_int(peer, _SIOCINQ) == 0:
                return True
        return False


# -- the loop's side -------------------------------------------------------------

_SelectorDatagramTransport: Any = getattr(
    asyncio.selector_events, "_SelectorDatagramTransport", None
)


class _TrackedDatagramTransport(_SelectorDatagramTransport):  # type: ignore[misc]
    """asyncio's datagram transport, telling the loop where it sends."""

    def sendto(self, data: Any, addr: Any = None) -> None:
        super().sendto(data, addr)
        if addr is not None:
            self._loop._peers.sent(self._sock, addr)


class PeerTrackingLoop(asyncio.SelectorEventLoop):
    """A selector loop that knows which descriptors it holds (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._peers = PeerTracker()

    def _peer_kinds(self, registered: Mapping[int, int]) -> set[FdKind]:
        transports: Mapping[int, Any] = getattr(self, "_transports", {})
        return self._peers.kinds(registered, transports)

    def _make_datagram_transport(
        self,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        address: Any = None,
        waiter: Any = None,
        extra: Any = None,
    ) -> asyncio.DatagramTransport:
        transport: asyncio.DatagramTransport = _TrackedDatagramTransport(
            self, sock, protocol, address, waiter, extra
        )
        return transport

    # Sockets handed to the loop's low-level socket methods are the loop's.

    def sock_recv(self, sock: socket.socket, nbytes: int) -> Coroutine[Any, Any, bytes]:
        self._peers.hold(sock)
        return super().sock_recv(sock, nbytes)

    def sock_recv_into(self, sock: socket.socket, buf: Any) -> Coroutine[Any, Any, int]:
        self._peers.hold(sock)
        return super().sock_recv_into(sock, buf)

    def sock_sendall(self, sock: socket.socket, data: Any) -> Coroutine[Any, Any, None]:
        self._peers.hold(sock)
        return super().sock_sendall(sock, data)

    def sock_connect(self, sock: socket.socket, address: Any) -> Coroutine[Any, Any, None]:
        self._peers.hold(sock)
        return super().sock_connect(sock, address)

    async def sock_accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        self._peers.hold(sock)
        conn, address = await super().sock_accept(sock)
        self._peers.hold(conn)
        return conn, address

    if sys.version_info >= (3, 11):

        def sock_recvfrom(self, sock: socket.socket, bufsize: int) -> Coroutine[Any, Any, Any]:
            self._peers.hold(sock)
            return super().sock_recvfrom(sock, bufsize)

        def sock_recvfrom_into(
            self, sock: socket.socket, buf: Any, nbytes: int = 0
        ) -> Coroutine[Any, Any, Any]:
            self._peers.hold(sock)
            return super().sock_recvfrom_into(sock, buf, nbytes)

        async def sock_sendto(self, sock: socket.socket, data: Any, address: Any) -> int:
            self._peers.hold(sock)
            sent = await super().sock_sendto(sock, data, address)
            self._peers.sent(sock, address)
            return sent
