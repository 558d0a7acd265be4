"""The UDP socket under the QUIC endpoints: several datagrams per wake-up, no cycles.

asyncio's datagram transport reads one datagram each time the selector says
the socket is readable. Under load that hands datagrams which arrived
together to separate event-loop turns, and each turn ends in its own
transmit: a burst split over a full datagram and a straggler is answered
with a full datagram and a straggler, and the split repeats round after
round. A listener therefore reads up to ``read_batch`` waiting datagrams per
wake-up (``QuicOptions.listener_read_batch``), so a connection answers what
arrived together with one transmit. The bound is small on purpose: reading
everything that waits would merge all calls into one burst per round trip,
leaving client and server to work in turns instead of at the same time.
A client socket reads one datagram per wake-up, which keeps its calls
flowing in several waves.

Sending writes straight to the socket; when the kernel buffer is full the
datagram waits in a bounded queue, and beyond that it is dropped like any
datagram a network loses (QUIC retransmits what mattered).

The protocol object gets the same callbacks as an asyncio
``DatagramProtocol``: ``connection_made``, ``datagram_received``,
``error_received`` and ``connection_lost``.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from typing import Any

__all__ = ["UdpSocket", "bind_udp_socket", "connect_udp_socket"]

#: Largest datagram read (a QUIC datagram is at most 65527 bytes).
MAX_DATAGRAM = 65536
#: Datagrams held while the kernel's send buffer is full; more are dropped.
SEND_QUEUE_LIMIT = 1024
#: Seconds ``close()`` keeps trying to send what is queued (a CONNECTION_CLOSE).
CLOSE_FLUSH_TIMEOUT = 1.0


class UdpSocket:
    """A non-blocking UDP socket registered with the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: Any, read_batch: int) -> None:
        self._loop = loop
        self._read_batch = read_batch
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._connected = False
        try:
            sock.getpeername()
            self._connected = True
        except OSError:
            pass
        self._queue: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._closing = False
        self._closed = False  # the socket's closing is scheduled or done
        self._flush_timer: asyncio.TimerHandle | None = None
        self.dropped = 0  # datagrams dropped because the send queue was full
        # Registered first: a loop without add_reader (Windows' proactor)
        # fails here, before the protocol hears of a transport.
        loop.add_reader(self._fd, self._read_ready)
        protocol.connection_made(self)

    # -- the subset of asyncio.DatagramTransport the endpoints use -------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self._sock.getsockname()
        if name == "peername":
            try:
                return self._sock.getpeername()
            except OSError:
                return default
        if name == "socket":
            return self._sock
        return default

    def is_closing(self) -> bool:
        return self._closing

    def sendto(self, data: bytes, addr: Any = None) -> None:
        if self._closing:
            return
        if self._queue:
            self._enqueue(data, addr)
            return
        try:
            if self._connected:
                self._sock.send(data)
            else:
                self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._enqueue(data, addr)
            self._loop.add_writer(self._fd, self._write_ready)
        except OSError as exc:
            self._protocol.error_received(exc)

    def close(self) -> None:
        """Stop reading and accepting datagrams to send. What is already
        queued (a CONNECTION_CLOSE, say) still goes out, for at most
        :data:`CLOSE_FLUSH_TIMEOUT` seconds; then the socket closes and
        ``connection_lost(None)`` runs, never inside this call."""
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        if self._queue:
            self._flush_timer = self._loop.call_later(CLOSE_FLUSH_TIMEOUT, self.abort)
        else:
            self._closed = True
            self._loop.call_soon(self._finish_close)

    def abort(self) -> None:
        """Close at once, dropping whatever is queued."""
        if self._closed:
            return
        if not self._closing:
            self._closing = True
            self._loop.remove_reader(self._fd)
        if self._queue:
            self._queue.clear()
            self._loop.remove_writer(self._fd)
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._closed = True
        self._loop.call_soon(self._finish_close)

    # -- internals -----------------------------------------------------------

    def _finish_close(self) -> None:
        self._sock.close()
        self._protocol.connection_lost(None)

    def _enqueue(self, data: bytes, addr: Any) -> None:
        if len(self._queue) >= SEND_QUEUE_LIMIT:
            self.dropped += 1
            return
        self._queue.append((data, addr))

    def _read_ready(self) -> None:
        recvfrom = self._sock.recvfrom
        for _ in range(self._read_batch):
            if self._closing:
                return
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # ICMP errors (port unreachable) surface here on a connected socket.
                self._protocol.error_received(exc)
                return
            self._protocol.datagram_received(data, addr)

    def _write_ready(self) -> None:
        queue = self._queue
        sock = self._sock
        while queue:
            data, addr = queue[0]
            try:
                if self._connected:
                    sock.send(data)
                else:
                    sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                queue.popleft()
                if not self._closing:
                    self._protocol.error_received(exc)
                continue
            queue.popleft()
        self._loop.remove_writer(self._fd)
        if self._closing and not self._closed:
            # close() was waiting for the queue to drain.
            if self._flush_timer is not None:
                self._flush_timer.cancel()
                self._flush_timer = None
            self._closed = True
            self._loop.call_soon(self._finish_close)


def _start(loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: Any, read_batch: int) -> UdpSocket:
    try:
        return UdpSocket(loop, sock, protocol, read_batch)
    except BaseException:
        sock.close()
        raise


async def bind_udp_socket(protocol: Any, host: str, port: int, *, read_batch: int = 1) -> Any:
    """Bind a UDP socket to ``host:port`` and start reading.

    A name is resolved and its addresses tried in order; an empty host
    means every IPv4 address (use ``"::"`` for IPv4 and IPv6). Each wake-up
    reads at most ``read_batch`` datagrams, so one busy socket cannot starve
    the event loop. Raises ``OSError`` when no address binds.

    On a loop that cannot watch sockets (Windows' proactor loop) this falls
    back to the loop's own datagram transport, which reads one datagram per
    wake-up.
    """
    loop = asyncio.get_running_loop()
    if not _can_watch_sockets(loop):
        transport, _ = await loop.create_datagram_endpoint(lambda: protocol, local_addr=(host or "0.0.0.0", port))
        return transport
    infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.bind(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return _start(loop, sock, protocol, read_batch)
    raise error or OSError(f"cannot resolve {host!r}")


async def connect_udp_socket(
    protocol: Any, family: int, sockaddr: Any, *, read_batch: int = 1, bind_address: str | None = None
) -> Any:
    """A UDP socket connected to a resolved ``sockaddr``, reading (see
    :func:`bind_udp_socket`); bound first to ``bind_address`` when given."""
    loop = asyncio.get_running_loop()
    if not _can_watch_sockets(loop):
        local = (bind_address, 0) if bind_address is not None else None
        transport, _ = await loop.create_datagram_endpoint(
            lambda: protocol, local_addr=local, remote_addr=sockaddr, family=family
        )
        return transport
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if bind_address is not None:
            sock.bind((bind_address, 0))
        sock.connect(sockaddr)
    except OSError:
        sock.close()
        raise
    return _start(loop, sock, protocol, read_batch)


def _can_watch_sockets(loop: asyncio.AbstractEventLoop) -> bool:
    """False for loops whose add_reader is not implemented (the proactor loop)."""
    proactor = getattr(asyncio, "ProactorEventLoop", None)
    return proactor is None or not isinstance(loop, proactor)
