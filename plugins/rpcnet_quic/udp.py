"""The UDP socket under the QUIC endpoints: several datagrams per wake-up, no cycles.

asyncio's datagram transport reads one datagram each time the selector says
the socket is readable. Under load that hands datagrams which arrived
together to separate event-loop turns, and each turn ends in its own
transmit: a burst split over a full datagram and a straggler is answered
with a full datagram and a straggler, and the split repeats round after
round. A listener therefore reads up to ``read_batch`` waiting datagrams per
wake-up (``QuicOptions.listener_read_batch``, 1 by default), and with GRO
(below) the datagrams one sender sent together arrive as one buffer, one
read, so a connection answers what arrived together with one transmit.
The bound is small on purpose: reading everything that waits merges all
calls into one burst per round trip, leaving client and server to work in
turns instead of at the same time. A client socket reads one datagram per
wake-up, which keeps its calls flowing in several waves.

Sending writes straight to the socket; when the kernel buffer is full the
datagram waits in a bounded queue, and beyond that it is dropped like any
datagram a network loses (QUIC retransmits what mattered).

On Linux the socket uses UDP segmentation offload where the kernel has it:
:meth:`UdpSocket.send_many` hands a run of equal-size datagrams (the last
may be shorter) to the kernel in one ``sendmsg`` with ``UDP_SEGMENT``
(GSO), and reads ask for ``UDP_GRO``, so the kernel may deliver several
datagrams of one sender as one buffer, split here at the segment size it
reports. Either is switched off when ``setsockopt`` refuses it, and GSO
also when a send with it fails as unsupported (the datagrams then go one
by one), so elsewhere nothing changes.

The protocol object gets the same callbacks as an asyncio
``DatagramProtocol``: ``connection_made``, ``datagram_received``,
``error_received`` and ``connection_lost``; one that also has
``datagrams_received(datagrams, addr)`` gets the datagrams of one GRO
buffer in one call.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import socket
import struct
import sys
from typing import Any

__all__ = ["UdpSocket", "bind_udp_socket", "connect_udp_socket"]

#: Largest datagram read (a QUIC datagram is at most 65527 bytes).
MAX_DATAGRAM = 65536
#: Datagrams held while the kernel's send buffer is full; more are dropped.
SEND_QUEUE_LIMIT = 1024
#: Seconds ``close()`` keeps trying to send what is queued (a CONNECTION_CLOSE).
CLOSE_FLUSH_TIMEOUT = 1.0

_SOL_UDP = getattr(socket, "SOL_UDP", 17)
#: Linux socket options (include/uapi/linux/udp.h), absent from Python's socket module before 3.12.
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
UDP_GRO = getattr(socket, "UDP_GRO", 104)
#: Segments one GSO send may carry (the kernel's UDP_MAX_SEGMENTS).
GSO_MAX_SEGMENTS = 64
#: Bytes one GSO send may carry: a UDP payload, with room for the headers.
GSO_MAX_BYTES = 65000
#: Errors that mean the path cannot segment (a device without checksum offload, say).
_GSO_UNSUPPORTED = frozenset(
    code for code in (errno.EIO, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOPROTOOPT, getattr(errno, "ENOTSUP", None))
    if code is not None
)
_SEGMENT_SIZE = struct.Struct("=H")
_GRO_SIZE = struct.Struct("@i")
_ANCILLARY_SPACE = socket.CMSG_SPACE(_GRO_SIZE.size) if hasattr(socket, "CMSG_SPACE") else 0
_LINUX = sys.platform.startswith("linux")


def enable_gro(sock: socket.socket) -> bool:
    """Ask the kernel to coalesce received datagrams (Linux 5.0+); False when it will not."""
    if not _LINUX or not _ANCILLARY_SPACE:
        return False
    try:
        sock.setsockopt(_SOL_UDP, UDP_GRO, 1)
        return sock.getsockopt(_SOL_UDP, UDP_GRO) == 1
    except OSError:
        return False


def supports_gso(sock: socket.socket) -> bool:
    """True when the kernel segments UDP sends (Linux 4.18+). Only a
    per-send control message asks for it; the socket-wide value stays 0."""
    if not _LINUX or not hasattr(sock, "sendmsg"):
        return False
    try:
        sock.setsockopt(_SOL_UDP, UDP_SEGMENT, 1200)
    except OSError:
        return False
    try:
        sock.setsockopt(_SOL_UDP, UDP_SEGMENT, 0)
    except OSError:
        return False
    return True


def _gro_segment_size(ancillary: list[tuple[int, int, bytes]]) -> int:
    for level, kind, data in ancillary:
        if level == _SOL_UDP and kind == UDP_GRO and len(data) >= _GRO_SIZE.size:
            return _GRO_SIZE.unpack_from(data)[0]
    return 0


class UdpSocket:
    """A non-blocking UDP socket registered with the event loop."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: Any, read_batch: int, offload: bool = True
    ) -> None:
        self._loop = loop
        self._read_batch = read_batch
        #: Segmentation offload in use, each way (see the module's docstring).
        self.gro = offload and enable_gro(sock)
        self.gso = offload and supports_gso(sock)
        self._batch_received = getattr(protocol, "datagrams_received", None)
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

    def send_many(self, datagrams: list[bytes], addr: Any = None) -> None:
        """Send several datagrams to one address: each run of equal-size
        datagrams (and a shorter one closing it) in one GSO ``sendmsg``
        where the kernel segments, else one by one."""
        count = len(datagrams)
        if not self.gso or count == 1 or self._queue:
            for data in datagrams:
                self.sendto(data, addr)
            return
        if self._closing:
            return
        sendmsg = self._sock.sendmsg
        target = () if self._connected else (0, addr)
        start = 0
        while start < count:
            size = len(datagrams[start])
            limit = min(count, start + min(GSO_MAX_SEGMENTS, max(1, GSO_MAX_BYTES // max(size, 1))))
            end = start + 1
            while end < limit and len(datagrams[end]) == size:
                end += 1
            if end < limit and len(datagrams[end]) < size:
                end += 1  # a shorter datagram may end a run
            if end - start == 1:
                self.sendto(datagrams[start], addr)
                start = end
                continue
            try:
                sendmsg(datagrams[start:end], [(_SOL_UDP, UDP_SEGMENT, _SEGMENT_SIZE.pack(size))], *target)
            except (BlockingIOError, InterruptedError):
                for data in datagrams[start:]:
                    self._enqueue(data, addr)
                self._loop.add_writer(self._fd, self._write_ready)
                return
            except OSError as exc:
                if exc.errno in _GSO_UNSUPPORTED:
                    self.gso = False
                    for data in datagrams[start:]:
                        self.sendto(data, addr)
                    return
                self._protocol.error_received(exc)
            start = end

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
        if self.gro:
            self._read_coalesced()
            return
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

    def _read_coalesced(self) -> None:
        recvmsg = self._sock.recvmsg
        protocol = self._protocol
        for _ in range(self._read_batch):
            if self._closing:
                return
            try:
                data, ancillary, _, addr = recvmsg(MAX_DATAGRAM, _ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                protocol.error_received(exc)
                return
            size = _gro_segment_size(ancillary) if ancillary else 0
            if size <= 0 or len(data) <= size:
                protocol.datagram_received(data, addr)
                continue
            segments = [data[offset : offset + size] for offset in range(0, len(data), size)]
            if self._batch_received is not None:
                self._batch_received(segments, addr)
                continue
            for segment in segments:
                if self._closing:
                    return
                protocol.datagram_received(segment, addr)

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


#: Asked of the kernel for each socket's receive and send buffers (it grants
#: at most ``net.core.rmem_max`` / ``wmem_max``).
SOCKET_BUFFER = 4 * 1024 * 1024


def _start(loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: Any, read_batch: int) -> UdpSocket:
    try:
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            except OSError:
                pass
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
