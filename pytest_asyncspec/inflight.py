"""Decide whether the outside world still owes a loop an I/O event.

A virtual clock may only jump ahead when no real event could arrive first.
File descriptors registered with the loop's selector fall into three kinds:

* ``LISTENING`` sockets wait for connections that may never come (a test
  server); they must not freeze virtual time, or every test that starts a
  server would run in real time.
* ``INTERNAL`` sockets are connected to a peer that this same loop owns (a
  client talking to a server on the same loop over loopback).  The kernel
  hands loopback data over during the sending call, so a zero-timeout poll
  sees everything such a peer could deliver; they never hold time back.
* ``EXTERNAL`` descriptors (a peer in another thread or process, pipes,
  anything unknown) may deliver an event at any real moment: while one is
  registered the virtual clock runs at real speed instead of jumping.
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Iterable

Address = tuple[object, ...] | str | bytes


class FdKind(enum.Enum):
    LISTENING = "listening"
    INTERNAL = "internal"
    EXTERNAL = "external"


def _describe_socket(fd: int) -> tuple[bool, Address | None, Address | None] | None:
    """Return (listening, local address, peer address) for a socket fd.

    ``None`` means the descriptor is not a socket (a pipe, a tty, a file).
    The temporary socket object is detached so the caller's fd stays open.
    """
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        try:
            listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        except OSError:
            listening = False
        try:
            local: Address | None = sock.getsockname()
        except OSError:
            local = None
        try:
            peer: Address | None = sock.getpeername()
        except OSError:
            peer = None
        return listening, local, peer
    finally:
        sock.detach()


def _normalise(address: Address | None) -> Address | None:
    # IPv6 addresses carry flow info and scope id; only host and port identify
    # an endpoint.  Unnamed Unix sockets report '' which identifies nothing.
    if isinstance(address, tuple):
        return address[:2]
    if address in ("", b""):
        return None
    return address


def _is_loopback(host: object) -> bool:
    return isinstance(host, str) and (host.startswith("127.") or host == "::1")


def classify(fds: Iterable[int], owned: Iterable[int] = ()) -> dict[int, FdKind]:
    """Classify each registered descriptor (see the module docstring).

    ``owned`` names more descriptors of the same loop that are not registered
    right now (a transport that paused reading): they are peers of this loop
    too, though they are not classified themselves.
    """
    described = {fd: _describe_socket(fd) for fd in fds}
    others = {fd: _describe_socket(fd) for fd in owned if fd not in described}
    own_endpoints = {
        _normalise(info[1]) for info in [*described.values(), *others.values()] if info is not None
    }
    own_endpoints.discard(None)
    # A server bound to every interface (0.0.0.0 or ::) is reached through
    # 127.0.0.1 or ::1; match its port alone.
    wildcard_ports = {
        info[1][1]
        for info in described.values()
        if info is not None
        and info[0]
        and isinstance(info[1], tuple)
        and info[1][0] in ("0.0.0.0", "::")
    }
    kinds: dict[int, FdKind] = {}
    for fd, info in described.items():
        if info is None:
            kinds[fd] = FdKind.EXTERNAL
            continue
        listening, _local, peer = info
        if listening:
            kinds[fd] = FdKind.LISTENING
        elif peer is not None and (
            _normalise(peer) in own_endpoints
            or (isinstance(peer, tuple) and _is_loopback(peer[0]) and peer[1] in wildcard_ports)
        ):
            kinds[fd] = FdKind.INTERNAL
        else:
            kinds[fd] = FdKind.EXTERNAL
    return kinds
