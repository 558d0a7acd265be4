"""TLS on a TCP socket for the ``tcp`` transport, without asyncio's TLS layer.

A non-blocking :class:`ssl.SSLSocket` driven by ``loop.add_reader`` /
``loop.add_writer``: OpenSSL reads and writes the socket itself, so bytes are
copied once each way (the kernel's copy aside) instead of passing through
asyncio's memory BIOs, its 256 KiB read buffer and its write backlog.
``benchmarks/tls_layer_cost.py`` measures the difference (docs/transport.md,
"How TLS is done").

- :func:`connect_socket` and :func:`accept_loop`: TCP sockets in and out, no
  asyncio transport in between.
- :func:`handshake`: the TLS handshake of a socket, within a deadline.
  OpenSSL writes its own alerts, so a peer that refuses a certificate sends
  the alert that names why, and the other side reads it.
- :class:`TlsTransport`: the asyncio transport an ``asyncio.Protocol`` (the
  HTTP/2 connection) runs on. Reads are gathered into one buffer of up to
  256 KiB per event-loop turn (one buffer per thread, shared by every
  connection: each read copies its bytes out at once). Writes go to OpenSSL
  as they come, and each 16 KiB record reaches the socket as soon as it is
  encrypted, so the peer decrypts the first records while later ones are
  encrypted. What the socket does
  not take waits in a buffer; past ``WRITE_HIGH`` bytes the protocol is told
  to pause (``pause_writing``), and resumes below ``WRITE_LOW``.
- Closing sends TLS close_notify, shuts the socket for writing and reads
  (discarding) until the peer's end or ``LINGER`` seconds, so a reply written
  just before closing is not lost to a reset caused by bytes still arriving.
  A close_notify from the peer is ``eof_received``; a TCP end without it, a
  reset, or a corrupt record is ``connection_lost`` with the error.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "TlsTransport", "accept_loop", "connect_socket", "handshake", "linger_close", "listening_sockets",
    "READ_SIZE", "WRITE_HIGH", "WRITE_LOW", "LINGER",
]

logger = logging.getLogger("rpcnet.tcp")

#: Decrypted bytes handed to the protocol per event-loop turn, at most.
READ_SIZE = 256 * 1024
#: ``pause_writing`` once more than this waits for the socket; ``resume_writing`` below ``WRITE_LOW``.
WRITE_HIGH = 256 * 1024
WRITE_LOW = 64 * 1024
#: Seconds a closed connection keeps reading (and discarding) until the peer's end.
LINGER = 5.0
#: The plaintext of the largest TLS record.
_RECORD = 16 * 1024
#: Connections taken from the listen queue per event-loop turn.
_ACCEPTS_PER_TURN = 64


def _tune(sock: socket.socket) -> None:
    sock.setblocking(False)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _wait_fd(loop: asyncio.AbstractEventLoop, fd: int, writable: bool) -> None:
    waiter = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if writable else (loop.add_reader, loop.remove_reader)
    add(fd, lambda: waiter.done() or waiter.set_result(None))
    try:
        await waiter
    finally:
        remove(fd)


async def connect_socket(host: str, port: int, *, bind_address: str | None = None) -> socket.socket:
    """A connected, non-blocking TCP socket (TCP_NODELAY) to the first address
    of ``host`` that answers; the first address's error when none does."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    first_error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            if bind_address is not None:
                sock.bind((bind_address, 0))
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            first_error = first_error or exc
            continue
        except BaseException:
            sock.close()
            raise
        _tune(sock)
        return sock
    raise first_error or OSError(f"no address found for {host!r}")


async def handshake(
    sock: socket.socket, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None,
    timeout: float | None,
) -> ssl.SSLSocket:
    """The TLS handshake on ``sock``; the :class:`ssl.SSLSocket` it made.

    Raises what OpenSSL raised (:class:`ssl.SSLError` and its subclasses),
    an :class:`OSError` from the socket, or :class:`TimeoutError`, and closes
    the socket then: after an :class:`ssl.SSLError` through
    :func:`linger_close`, so the alert OpenSSL wrote reaches the peer."""
    loop = asyncio.get_running_loop()
    try:
        tls = context.wrap_socket(
            sock, server_side=server_side, server_hostname=server_hostname,
            do_handshake_on_connect=False, suppress_ragged_eofs=False,
        )
    except BaseException:
        sock.close()
        raise
    fd = tls.fileno()
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    tls.do_handshake()
                    return tls
                except ssl.SSLWantReadError:
                    await _wait_fd(loop, fd, writable=False)
                except ssl.SSLWantWriteError:
                    await _wait_fd(loop, fd, writable=True)
    except ssl.SSLError:
        linger_close(tls)
        raise
    except BaseException:
        tls.close()
        raise


def linger_close(sock: socket.socket, timeout: float = LINGER) -> None:
    """Shut ``sock`` for writing, read and discard until the peer's end (or
    ``timeout``), then close it: what was sent last (an alert, a GOAWAY)
    is not cut off by a reset that unread incoming bytes would cause."""
    if isinstance(sock, ssl.SSLSocket):
        sock = socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    if sock.fileno() < 0:
        return
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        sock.close()
        return
    loop = asyncio.get_running_loop()
    fd = sock.fileno()
    timer: asyncio.TimerHandle | None = None

    def finish() -> None:
        loop.remove_reader(fd)
        if timer is not None:
            timer.cancel()
        sock.close()

    def readable() -> None:
        try:
            while sock.recv(65536):
                pass
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        finish()

    loop.add_reader(fd, readable)
    timer = loop.call_later(timeout, finish)


async def listening_sockets(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for ``host`` (every address it
    resolves to; "" for every interface), as ``loop.create_server`` makes them."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def accept_loop(listening: socket.socket, on_accepted: Callable[[socket.socket, Any], None]) -> Callable[[], None]:
    """Hand every connection ``listening`` accepts to ``on_accepted(sock,
    address)`` (non-blocking, TCP_NODELAY); returns the function that stops
    accepting and closes the listening socket."""
    loop = asyncio.get_running_loop()
    fd = listening.fileno()
    retry: asyncio.TimerHandle | None = None

    def acceptable() -> None:
        nonlocal retry
        for _ in range(_ACCEPTS_PER_TURN):
            try:
                sock, address = listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                # Out of file descriptors or memory: try again in a second
                # rather than spin on a listen queue we cannot empty.
                logger.warning("server: cannot accept connections (%s); trying again in 1 s", exc)
                loop.remove_reader(fd)
                retry = loop.call_later(1.0, loop.add_reader, fd, acceptable)
                return
            _tune(sock)
            on_accepted(sock, address)

    def stop() -> None:
        if retry is not None:
            retry.cancel()
        loop.remove_reader(fd)
        listening.close()

    loop.add_reader(fd, acceptable)
    return stop


_thread = threading.local()

#: See :func:`_nudge_allocator`.
_ALLOCATOR_NUDGE = 4 * 1024 * 1024


def _nudge_allocator() -> None:
    """Free one 4 MiB block, once per process, before the first connection.

    glibc serves blocks above its mmap threshold (128 KiB at first) with
    mmap, and when it frees one it raises the threshold to that block's size
    and the heap's trim threshold to twice that. A process that moves 1 MiB
    messages otherwise settles at about 1 MiB and 2 MiB: every call frees
    more than 2 MiB at the top of the heap, glibc returns it to the kernel,
    and the next call page-faults it back in, which doubled the server's CPU
    per 1 MiB echo (benchmarks/README.md, "The tcp transport's own TLS
    layer"). After one 4 MiB block has come and gone, blocks up to 4 MiB come
    from the heap and up to 8 MiB of free heap is kept. It costs one mmap and
    munmap of untouched pages; elsewhere than glibc it changes nothing.
    """
    bytes(_ALLOCATOR_NUDGE)  # zero-filled by calloc: fresh pages, never touched


_nudged = False


def _read_buffer() -> memoryview:
    """The buffer every transport of this thread decrypts into. Shared: a
    read copies what it decrypted out before any other code runs, so one
    buffer per thread serves every connection (none holds 256 KiB idle)."""
    view = getattr(_thread, "read_buffer", None)
    if view is None:
        view = _thread.read_buffer = memoryview(bytearray(READ_SIZE))
    return view


class TlsTransport(asyncio.Transport):
    """An asyncio transport over a non-blocking :class:`ssl.SSLSocket` whose
    handshake is done. Call :meth:`start` once the protocol is ready for data."""

    def __init__(self, sock: ssl.SSLSocket, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._sock: ssl.SSLSocket | None = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._view = _read_buffer()
        global _nudged
        if not _nudged:
            _nudged = True
            _nudge_allocator()
        self._pending: collections.deque[memoryview] = collections.deque()  # waiting for the socket
        self._pending_size = 0
        self._paused = False  # we told the protocol to pause writing
        self._closing = False
        # OpenSSL may need the other direction first (a TLS 1.3 key update):
        self._read_waits_for_write = False
        self._write_waits_for_read = False
        self._reading = False
        self._close_timer: asyncio.TimerHandle | None = None
        try:
            self._peername = sock.getpeername()
        except OSError:
            self._peername = None
        self._extra = {"peername": self._peername, "ssl_object": sock, "socket": sock}

    def __repr__(self) -> str:
        return f"<TlsTransport fd={self._fd} peer={self._peername} closing={self._closing}>"

    def start(self) -> None:
        """Begin reading. OpenSSL may already hold decrypted bytes the socket
        no longer signals, so the first read is tried at once."""
        if self._sock is None or self._reading:
            return
        self._reading = True
        self._loop.add_reader(self._fd, self._read)
        self._loop.call_soon(self._read)

    # -- asyncio.Transport -------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def get_write_buffer_size(self) -> int:
        return self._pending_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return WRITE_LOW, WRITE_HIGH

    def can_write_eof(self) -> bool:
        return False

    def write(self, data: Any) -> None:
        if self._closing or self._sock is None:
            return
        if self._pending:
            self._queue(memoryview(data))
            return
        self._send(memoryview(data))

    def writelines(self, pieces: Iterable[Any]) -> None:
        for piece in pieces:
            self.write(piece)

    def close(self) -> None:
        """Flush what is buffered, send close_notify, then end the connection."""
        if self._closing:
            return
        self._closing = True
        if self._sock is not None:
            self._stop_reading()
            if not self._pending:
                self._shut_down()
            else:
                # A peer that reads nothing more cannot hold the socket for ever.
                self._close_timer = self._loop.call_later(LINGER, self._give_up)
        self._loop.call_soon(self._protocol.connection_lost, None)

    def _give_up(self) -> None:
        self._close_timer = None
        if self._sock is not None:
            self._release().close()

    def abort(self) -> None:
        """End the connection now, dropping whatever is buffered."""
        if self._sock is None:
            return
        closing = self._closing
        self._closing = True
        self._release().close()
        if not closing:
            self._loop.call_soon(self._protocol.connection_lost, None)

    # -- reading -------------------------------------------------------------

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def _read(self) -> None:
        sock = self._sock
        if sock is None or not self._reading:
            return
        view = self._view
        filled = 0
        count = -1
        try:
            while True:
                count = sock.recv_into(view[filled:], READ_SIZE - filled)
                if not count:
                    break  # close_notify
                filled += count
                if filled == READ_SIZE or count < _RECORD:
                    # A record shorter than the largest ends what the peer
                    # wrote: stop without the read that would only say
                    # "nothing more" (the socket signals again if more came).
                    break
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLWantWriteError:
            # OpenSSL must send before it reads on: read again once the socket is writable.
            self._read_waits_for_write = True
            if not self._pending:
                self._loop.add_writer(self._fd, self._flush)
        except (OSError, ssl.SSLError) as exc:  # SSLEOFError: the TCP end came without close_notify
            if filled:
                self._protocol.data_received(bytes(view[:filled]))
            self._fatal(exc)
            return
        if count and sock.pending():
            self._loop.call_soon(self._read)  # decrypted bytes the socket will not signal
        if filled:
            self._protocol.data_received(bytes(view[:filled]))
        if self._write_waits_for_read and self._sock is not None:
            self._write_waits_for_read = False
            self._loop.add_writer(self._fd, self._flush)
        if count == 0 and self._sock is not None and self._reading:
            # close_notify from the peer.
            self._stop_reading()
            if not self._protocol.eof_received():
                self.close()

    # -- writing -------------------------------------------------------------

    def _send(self, view: memoryview) -> None:
        """Send as much of ``view`` as the socket takes now; queue the rest."""
        sock = self._sock
        assert sock is not None
        sent = 0
        size = len(view)
        try:
            while sent < size:
                # OpenSSL puts each 16 KiB record on the socket as soon as it is
                # encrypted; when the socket is full it remembers how far it
                # got and wants the same bytes again (SSLWantWriteError).
                sent += sock.send(view[sent:])
        except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
            pass
        except ssl.SSLWantReadError:
            self._write_waits_for_read = True  # _read resumes the writing
        except (OSError, ssl.SSLError) as exc:
            self._fatal(exc)
            return
        if sent < size:
            # OpenSSL wants the same bytes again once the socket is writable.
            self._queue(view[sent:])
            if not self._write_waits_for_read:
                self._loop.add_writer(self._fd, self._flush)

    def _queue(self, view: memoryview) -> None:
        if not len(view):
            return
        if view.readonly is False or not isinstance(view.obj, bytes):
            view = memoryview(bytes(view))  # the caller may reuse its buffer
        self._pending.append(view)
        self._pending_size += len(view)
        if not self._paused and self._pending_size > WRITE_HIGH:
            self._paused = True
            try:
                self._protocol.pause_writing()
            except Exception:
                logger.exception("pause_writing failed on %r", self._protocol)

    def _flush(self) -> None:
        """The socket is writable: send what waits, in order."""
        sock = self._sock
        if sock is None:
            return
        pending = self._pending
        try:
            while pending:
                head = pending[0]
                count = sock.send(head)
                self._pending_size -= count
                if count == len(head):
                    pending.popleft()
                else:
                    pending[0] = head[count:]
        except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
            pass
        except ssl.SSLWantReadError:
            self._write_waits_for_read = True  # _read resumes the writing
            self._loop.remove_writer(self._fd)
        except (OSError, ssl.SSLError) as exc:
            self._fatal(exc)
            return
        if not pending:
            self._loop.remove_writer(self._fd)
        if self._read_waits_for_write and self._reading and not pending:
            self._read_waits_for_write = False
            self._read()
        if self._paused and self._pending_size <= WRITE_LOW:
            self._paused = False
            try:
                self._protocol.resume_writing()
            except Exception:
                logger.exception("resume_writing failed on %r", self._protocol)
        if not pending and self._closing and self._sock is not None:
            self._shut_down()

    # -- ending --------------------------------------------------------------

    def _release(self) -> ssl.SSLSocket:
        sock = self._sock
        assert sock is not None
        self._sock = None
        self._stop_reading()
        self._loop.remove_writer(self._fd)
        self._pending.clear()
        self._pending_size = 0
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        return sock

    def _shut_down(self) -> None:
        """Everything is sent: close_notify, then close after the peer's end."""
        sock = self._release()
        try:
            sock.unwrap()  # sends close_notify; the peer's comes later, or never
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except (OSError, ssl.SSLError, ValueError):
            sock.close()
            return
        linger_close(sock)

    def _fatal(self, exc: BaseException) -> None:
        if self._sock is None:
            return
        self._release().close()
        closing = self._closing
        self._closing = True
        if not closing:
            self._protocol.connection_lost(exc)  # type: ignore[arg-type]
