"""HTTP/2 (RFC 9113) connections carrying rpcnet streams, over TLS 1.3 on TCP.

One rpcnet stream is one HTTP/2 stream. The client opens it with a fixed
HEADERS frame (``POST /``, three static-table HPACK indices); the server
answers with a fixed ``:status 200`` HEADERS frame before its first bytes.
Everything else travels as DATA, byte for byte what the RPC engine wrote;
END_STREAM is the stream's FIN. RST_STREAM resets a stream, GOAWAY ends a
connection gracefully, PING keeps it alive, WINDOW_UPDATE follows
consumption (so :meth:`H2Stream.pause_reading` exerts backpressure), and the
server's SETTINGS_MAX_CONCURRENT_STREAMS is the stream credit clients wait
for in :meth:`H2Connection.open_stream`.

The framing is written here rather than driven through the ``h2`` library:
h2 spends about 95 us of CPU per call on each side for a 64-byte echo
(docs/transport.md, "Why not the h2 library"), more than the whole call
costs over QUIC. Frames are parsed and built with :mod:`struct`; header
blocks other than the two fixed ones are decoded with ``hpack``, so the
HPACK state stays correct whatever a peer sends.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
from collections.abc import Callable
from typing import Any

from rpcnet.errors import TlsError, TransportError
from rpcnet.transport import CONNECTION_LOST, Address, Connection, NewStreamCallback, PeerInfo, Stream, StreamHandler

from .options import MAX_WINDOW, TcpOptions

__all__ = ["H2Connection", "H2Stream", "PREFACE", "to_h2_code", "from_h2_code"]

logger = logging.getLogger("rpcnet.tcp")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113 section 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Settings (section 6.5.2).
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

# Error codes (section 7).
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ERROR_NAMES = {
    0x0: "NO_ERROR", 0x1: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR", 0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT", 0x5: "STREAM_CLOSED", 0x6: "FRAME_SIZE_ERROR", 0x7: "REFUSED_STREAM",
    0x8: "CANCEL", 0x9: "COMPRESSION_ERROR", 0xA: "CONNECT_ERROR", 0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY", 0xD: "HTTP_1_1_REQUIRED",
}

#: HTTP/2's default window and frame size, in force until SETTINGS say otherwise.
DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME = 16_384

# ``:method POST``, ``:scheme https``, ``:path /``: HPACK static-table indices 3, 7 and 4.
REQUEST_BLOCK = b"\x83\x87\x84"
# ``:status 200``: static-table index 8.
RESPONSE_BLOCK = b"\x88"
_FIXED_BLOCKS = frozenset((REQUEST_BLOCK, RESPONSE_BLOCK))

# Frame header: 24-bit length (as a byte and a short), type, flags, stream id.
_FRAME = struct.Struct(">BHBBI")
_pack = _FRAME.pack
_unpack_from = _FRAME.unpack_from
_U32 = struct.Struct(">I")
_SETTING = struct.Struct(">HI")
_GOAWAY = struct.Struct(">II")

#: Pieces at least this large are written to TLS as they are, never joined with others.
_BIG = 64 * 1024

# rpcnet application codes (Stream.reset) <-> RST_STREAM codes. The ones with
# an HTTP/2 meaning map onto it; the others are carried above HTTP/2's
# registry, at APP_CODE_BASE + code.
APP_CODE_BASE = 0x100
_TO_H2 = {0: NO_ERROR, 1: CANCEL, 3: PROTOCOL_ERROR, 4: REFUSED_STREAM, 5: INTERNAL_ERROR}
_FROM_H2 = {h2: app for app, h2 in _TO_H2.items()}
_APP_INTERNAL = 5

_HANDSHAKE, _OPEN, _CLOSING, _CLOSED = range(4)


def to_h2_code(code: int) -> int:
    """The RST_STREAM error code carrying rpcnet application code ``code``."""
    mapped = _TO_H2.get(code)
    if mapped is not None:
        return mapped
    if 0 <= code <= 0xFFFFFFFF - APP_CODE_BASE:
        return APP_CODE_BASE + code
    return INTERNAL_ERROR


def from_h2_code(code: int) -> int:
    """The rpcnet application code an RST_STREAM error code stands for."""
    mapped = _FROM_H2.get(code)
    if mapped is not None:
        return mapped
    if code >= APP_CODE_BASE:
        return code - APP_CODE_BASE
    return _APP_INTERNAL  # an HTTP/2 error with no rpcnet meaning (FLOW_CONTROL_ERROR, ...)


class _ProtocolViolation(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class H2Stream(Stream):
    """One HTTP/2 stream (one call)."""

    __slots__ = (
        "stream_id", "connection", "handler", "local", "paused", "send_window", "recv_window", "unacked",
        "_headers_sent", "_queue", "_queued", "_queued_fin", "_send_done", "_recv_done", "_error",
        "_held", "_held_fin", "_drain_waiter",
    )

    def __init__(self, connection: H2Connection, stream_id: int, handler: StreamHandler | None, local: bool) -> None:
        self.stream_id = stream_id
        self.connection = connection
        self.handler = handler
        self.local = local  # we opened it: it holds a unit of the peer's stream credit
        self.paused = False
        self.send_window = connection._peer_initial_window
        self.recv_window = connection._options.stream_window
        self.unacked = 0  # bytes consumed since our last WINDOW_UPDATE for this stream
        self._headers_sent = local  # clients send HEADERS when they open; servers before their first bytes
        self._queue: collections.deque[memoryview] | None = None  # bytes waiting for flow-control credit
        self._queued = 0
        self._queued_fin = False
        self._send_done = False  # END_STREAM queued or sent, or reset
        self._recv_done = False  # END_STREAM delivered, or reset
        self._error: str | None = None
        self._held: bytearray | None = None  # bytes that arrived while paused
        self._held_fin = False
        self._drain_waiter: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<H2Stream {self.stream_id} of {self.connection!r}>"

    # -- sending -----------------------------------------------------------

    def send(self, data: bytes, end_stream: bool = False) -> None:
        if self._send_done:
            raise TransportError(self._error or f"stream {self.stream_id} already ended for sending")
        connection = self.connection
        if connection._state >= _CLOSING and not (connection._state == _CLOSING and connection._draining):
            raise connection._closed_error()
        if end_stream:
            self._send_done = True
        if not self._headers_sent:
            self._headers_sent = True
            if not data and end_stream:
                connection._frame(HEADERS, END_HEADERS | END_STREAM, self.stream_id, RESPONSE_BLOCK)
                if self._recv_done:
                    connection._forget(self)
                return
            connection._frame(HEADERS, END_HEADERS, self.stream_id, RESPONSE_BLOCK)
        size = len(data)
        if self._queue is None and size <= self.send_window and size <= connection._send_window:
            if size or end_stream:
                self.send_window -= size
                connection._send_window -= size
                connection._write_data(self.stream_id, data, end_stream)
        else:
            self._enqueue(data, end_stream)
            connection._send_queued(self)
        if end_stream:
            if self._recv_done and self._queue is None:
                connection._forget(self)
            elif self.local and connection._local_open == 1 and connection._flush_handle is not None:
                # A lone call's request is complete and nothing else is
                # open to share the write with: send it now rather than one
                # event-loop turn later (with more calls open, the frames
                # of one turn still leave together, in one TLS record).
                connection._flush_handle.cancel()
                connection._flush()

    def _enqueue(self, data: bytes, end_stream: bool) -> None:
        if self._queue is None:
            self._queue = collections.deque()
            self.connection._blocked[self.stream_id] = self
        if data:
            self._queue.append(memoryview(data))
            self._queued += len(data)
        if end_stream:
            self._queued_fin = True

    def reset(self, error_code: int) -> None:
        if self._error is not None or (self._recv_done and self._send_done and self._queue is None):
            return
        connection = self.connection
        if connection._state < _CLOSED:
            connection._frame(RST_STREAM, 0, self.stream_id, _U32.pack(to_h2_code(error_code)))
        self._error = f"stream {self.stream_id} was reset"
        self._abandon()
        connection._forget(self)

    async def drain(self) -> None:
        connection = self.connection
        while True:
            if self._error is not None:
                raise TransportError(self._error)
            if connection._state == _CLOSED:
                raise connection._closed_error()
            if self._queued <= connection._options.send_high_water and not connection._write_paused:
                return
            waiter = self._drain_waiter = connection._loop.create_future()
            connection._drain_waiting.add(self)
            try:
                await waiter
            finally:
                self._drain_waiter = None
                connection._drain_waiting.discard(self)

    # -- receiving -----------------------------------------------------------

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        if not self.paused:
            return
        self.paused = False
        if self._held is not None:
            self.connection._loop.call_soon(self._deliver_held)

    @property
    def buffered_bytes(self) -> int:
        """Bytes received and held back because reading is paused."""
        return len(self._held) if self._held is not None else 0

    def _received(self, data: bytes, end_stream: bool) -> None:
        if self._recv_done:
            self.connection._consumed(len(data))
            return
        if self.paused or self._held is not None:
            if self._held is None:
                self._held = bytearray()
            self._held += data
            self._held_fin = end_stream
            return
        self._hand_over(data, end_stream)

    def _hand_over(self, data: bytes, end_stream: bool) -> None:
        connection = self.connection
        size = len(data)
        if end_stream:
            self._recv_done = True
        if size:
            connection._consumed(size)
            if not end_stream:
                unacked = self.unacked = self.unacked + size
                if unacked >= connection._stream_update_at:
                    # Credit follows consumption, in batches of half a window.
                    self.unacked = 0
                    self.recv_window += unacked
                    connection._frame(WINDOW_UPDATE, 0, self.stream_id, _U32.pack(unacked))
        handler = self.handler
        if handler is not None:
            try:
                handler.data_received(data, end_stream)
            except Exception:
                logger.exception("stream handler failed on data for %r; resetting the stream", self)
                self.reset(1)
                return
        if end_stream and self._send_done and self._queue is None:
            connection._forget(self)

    def _deliver_held(self) -> None:
        held = self._held
        if held is None or self.paused or self._recv_done:
            return
        self._held = None
        self._hand_over(bytes(held), self._held_fin)

    def _abandon(self) -> None:
        """Drop everything buffered either way; both directions are done."""
        connection = self.connection
        self._recv_done = self._send_done = True
        held = self._held
        if held is not None:
            self._held = None
            connection._consumed(len(held))
        if self._queue is not None:
            self._queue = None
            self._queued = 0
            connection._blocked.pop(self.stream_id, None)
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TransportError(self._error or "stream ended"))

    def _peer_aborted(self, error_code: int) -> None:
        """RST_STREAM from the peer, or the connection ended."""
        if self._error is not None:
            return
        notify = not self._recv_done or error_code != CONNECTION_LOST
        if error_code == CONNECTION_LOST:
            self._error = str(self.connection._closed_error())
        else:
            self._error = f"stream {self.stream_id} was reset by the peer (code {error_code})"
        self._abandon()
        handler = self.handler
        if notify and handler is not None:
            try:
                handler.stream_reset(error_code)
            except Exception:
                logger.exception("stream handler failed on reset of %r", self)


class H2Connection(Connection, asyncio.Protocol):
    """An HTTP/2 connection over a TLS transport (client or server side)."""

    def __init__(
        self,
        *,
        options: TcpOptions,
        is_client: bool,
        alpn: str,
        on_stream: NewStreamCallback | None = None,
        on_made: Callable[[H2Connection], None] | None = None,
        on_finished: Callable[[H2Connection], None] | None = None,
        identify_peer: Callable[[Any], PeerInfo] | None = None,
        describe: str = "?",
        refusal: str | None = None,
        source: str = "",
    ) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._options = options
        self._is_client = is_client
        self._alpn = alpn
        self._on_stream = on_stream
        self._on_made = on_made
        self._on_finished = on_finished
        self._identify_peer = identify_peer
        self._describe = describe
        #: Servers: why the listener refused this connection (None: admitted),
        #: and the client's IP address the admission counted.
        self._refusal = refusal
        self._source = source
        self.peer = PeerInfo()
        self._transport: Any = None
        self._transport_lost = False
        self._sent_certificate = False  # clients: whether we presented a certificate
        self._state = _HANDSHAKE
        self._draining = False  # we sent a GOAWAY that lets running streams finish
        self._goaway_received = False
        self._goaway_reason = ""
        self._streams: dict[int, H2Stream] = {}
        self._blocked: dict[int, H2Stream] = {}
        self._drain_waiting: set[H2Stream] = set()
        self._credit_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._next_id = 1
        self._local_open = 0
        self._peer_open = 0
        self._peer_highest = 0
        # What the peer allows us (its SETTINGS) and what we allow it.
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_MAX_FRAME
        self._peer_max_streams = 0 if is_client else 1 << 31  # clients wait for the server's SETTINGS
        self._send_window = DEFAULT_WINDOW
        self._recv_window = options.connection_window
        self._conn_unacked = 0
        self._conn_update_at = options.connection_window // 2
        self._stream_update_at = options.stream_window // 2
        self._max_control = options.max_header_size
        # Receive state.
        self._preface_left = 0 if is_client else len(PREFACE)
        self._settings_seen = False
        self._partial = b""
        self._data_left = 0
        self._data_stream: H2Stream | None = None
        self._data_fin = False
        self._continuation: tuple[int, int, list[bytes], int] | None = None
        self._hpack: Any = None
        # Send state.
        self._out: list[Any] = []
        self._out_big = False
        self._flush_handle: asyncio.Handle | None = None
        self._write_paused = False
        # Timers and ending.
        self._last_received = loop.time()
        self._keepalive_handle: asyncio.TimerHandle | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._unused_timer: asyncio.TimerHandle | None = None
        self._ready: asyncio.Future[None] = loop.create_future()
        self._closed: asyncio.Future[None] = loop.create_future()
        self._close_callbacks: list[Callable[[BaseException | None], None]] = []
        self._close_exc: BaseException | None = None
        self._closed_cleanly = False  # close() with code 0
        self._close_reported: BaseException | None = None
        self._handlers = {
            HEADERS: self._on_headers,
            PRIORITY: self._on_priority,
            RST_STREAM: self._on_rst_stream,
            SETTINGS: self._on_settings,
            PUSH_PROMISE: self._on_push_promise,
            PING: self._on_ping,
            GOAWAY: self._on_goaway,
            WINDOW_UPDATE: self._on_window_update,
            CONTINUATION: self._on_continuation,
        }

    def __repr__(self) -> str:
        side = "client" if self._is_client else "server"
        return f"<H2Connection {side} peer={self._describe} state={self._state}>"

    # -- Connection interface ----------------------------------------------

    async def open_stream(self, handler: StreamHandler) -> H2Stream:
        if not self._is_client:
            raise TransportError("only clients open streams: a server answers the calls its clients make")
        woken = False
        while True:
            if self._state != _OPEN or self._goaway_received:
                if self._state == _HANDSHAKE:
                    raise TransportError("the connection is still handshaking")
                raise self._closed_error()
            if self._next_id > MAX_WINDOW:
                # Stream ids ran out (2^30 calls): this connection takes no more.
                self._goaway_received = True
                self._goaway_reason = "stream ids exhausted"
                self._maybe_finish_draining()
                raise TransportError("this connection has used every HTTP/2 stream id; open a new one")
            if (woken or not self._credit_waiters) and self._local_open < self._peer_max_streams:
                break
            # Out of stream credit (SETTINGS_MAX_CONCURRENT_STREAMS): wait for a stream to finish.
            waiter = self._loop.create_future()
            if woken:
                self._credit_waiters.appendleft(waiter)
            else:
                self._credit_waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._wake_credit_waiters()  # hand our turn to the next waiter
                elif not waiter.done():
                    try:
                        self._credit_waiters.remove(waiter)
                    except ValueError:
                        pass
                raise
            woken = True
        stream_id = self._next_id
        self._next_id += 2
        stream = H2Stream(self, stream_id, handler, True)
        self._streams[stream_id] = stream
        self._local_open += 1
        self._frame(HEADERS, END_HEADERS, stream_id, REQUEST_BLOCK)
        if self._credit_waiters:
            self._wake_credit_waiters()
        return stream

    def close(self, error_code: int = 0, reason: str = "") -> None:
        if self._state >= _CLOSING and not self._draining:
            return
        self._draining = False
        self._state = _CLOSING
        code = NO_ERROR if error_code == 0 else INTERNAL_ERROR
        self._send_goaway(code, reason)
        self._close_transport()
        detail = f"code {error_code}" + (f": {reason}" if reason else "")
        self._close_exc = TransportError(f"connection to {self._describe} was closed locally ({detail})")
        self._closed_cleanly = error_code == 0
        # Callbacks run on the next tick, never inside the caller's own callback.
        self._loop.call_soon(self._finish, None if error_code == 0 else self._close_exc)

    def go_away(self, reason: str = "") -> None:
        """Graceful stop (server): GOAWAY with the largest stream id, so no
        call in flight is lost; running streams finish, new ones are for a
        new connection. The connection ends when its last stream does, or at
        :meth:`close`."""
        if self._state != _OPEN or self._draining:
            return
        self._draining = True
        self._state = _CLOSING
        self._frame(GOAWAY, 0, 0, _GOAWAY.pack(MAX_WINDOW, NO_ERROR) + reason.encode("utf-8", "replace")[:256])

    @property
    def is_closed(self) -> bool:
        return self._state >= _CLOSING or self._goaway_received

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    def add_close_callback(self, callback: Callable[[BaseException | None], None]) -> None:
        if self._state == _CLOSED:
            self._loop.call_soon(callback, self._close_reported)
        else:
            self._close_callbacks.append(callback)

    async def wait_ready(self) -> None:
        await asyncio.shield(self._ready)

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        peername = transport.get_extra_info("peername")
        address: Address | None = (str(peername[0]), int(peername[1])) if peername else None
        if self._describe == "?" and address is not None:
            host, port = address
            self._describe = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if self._refusal is not None:
            # Refused (not accepting, or too many connections): a GOAWAY says so, then the socket closes.
            self._state = _CLOSED
            logger.debug("refused connection from %s: %s", self._describe, self._refusal)
            reason = self._refusal.encode("utf-8", "replace")[:256]
            transport.write(_pack(0, 8 + len(reason), GOAWAY, 0, 0) + _GOAWAY.pack(0, REFUSED_STREAM) + reason)
            transport.close()
            return
        if self._on_made is not None:
            self._on_made(self)
        ssl_object = transport.get_extra_info("ssl_object")
        negotiated = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if negotiated != self._alpn:
            if self._is_client:
                from rpcnet.tls import ALERT_NO_APPLICATION_PROTOCOL, explain_peer_rejection

                reason = f"peer negotiated ALPN {negotiated!r}, this side speaks {self._alpn!r}"
                self._state = _CLOSING
                self._close_transport()
                self._finish(TlsError(explain_peer_rejection(
                    ALERT_NO_APPLICATION_PROTOCOL, reason, address=self._describe, sent_certificate=True, alpn=self._alpn
                )))
            else:
                self._state = _CLOSING
                self._close_transport()
                self._finish(TlsError(f"client {self._describe} does not speak {self._alpn!r}"))
            return
        identify = self._identify_peer
        self.peer = identify(ssl_object) if identify is not None else PeerInfo()
        self.peer = PeerInfo(
            address=address, identity=self.peer.identity, certificate=self.peer.certificate, alpn=negotiated
        )
        settings = [
            (SETTINGS_MAX_CONCURRENT_STREAMS, 0 if self._is_client else self._options.max_streams),
            (SETTINGS_INITIAL_WINDOW_SIZE, self._options.stream_window),
            (SETTINGS_MAX_FRAME_SIZE, self._options.max_frame_size),
            (SETTINGS_MAX_HEADER_LIST_SIZE, self._options.max_header_size),
            (SETTINGS_HEADER_TABLE_SIZE, 4096),
        ]
        if self._is_client:
            settings.append((SETTINGS_ENABLE_PUSH, 0))
            self._out.append(PREFACE)
        self._frame(SETTINGS, 0, 0, b"".join(_SETTING.pack(k, v) for k, v in settings))
        increment = self._options.connection_window - DEFAULT_WINDOW
        if increment > 0:
            self._frame(WINDOW_UPDATE, 0, 0, _U32.pack(increment))
        self._flush()
        self._handshake_timer = self._loop.call_later(self._options.handshake_timeout, self._handshake_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport_lost = True
        if self._state == _CLOSED:
            return
        if self._state == _HANDSHAKE and exc is not None:
            from rpcnet.tls import explain_peer_rejection

            from .tls import alert_of

            # Under TLS 1.3 a server checks the client certificate after the
            # client's handshake is done: its alert arrives here, before HTTP/2.
            alert = alert_of(exc)
            if alert is not None and self._is_client:
                self._finish(TlsError(explain_peer_rejection(
                    alert, "", address=self._describe, sent_certificate=self._sent_certificate, alpn=self._alpn
                )))
                return
        if self._state == _HANDSHAKE and self._is_client and not self._goaway_received:
            # TLS was up but the server hung up before its SETTINGS, with an
            # alert we have no words for or none at all: under TLS 1.3 that
            # is the client certificate.
            reason = getattr(exc, "reason", None)
            said = f" (server said: {reason})" if isinstance(reason, str) and "ALERT" in reason else ""
            self._finish(TlsError(self._explain_hangup() + said))
        elif self._goaway_received:
            reason = f": {self._goaway_reason}" if self._goaway_reason else ""
            self._finish(TransportError(f"the peer {self._describe} closed the connection{reason}"))
        elif self._state == _CLOSING:
            self._finish(None if self._closed_cleanly else self._close_exc)
        else:
            detail = f" ({exc})" if exc else ""
            self._finish(TransportError(f"the peer {self._describe} closed the connection{detail}"))

    def _explain_hangup(self) -> str:
        where = f"the server at {self._describe} refused the TLS handshake"
        if not self._sent_certificate:
            return (
                f"{where}: the server requires a client certificate (mutual TLS) and we sent none; "
                "set tls.cert_file and tls.key_file"
            )
        return (
            f"{where}: it closed the connection before HTTP/2 started, so it refused our client certificate: "
            "unknown issuer (not signed by a CA the server trusts), expired certificate, or a certificate "
            "without the clientAuth usage"
        )

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain_waiters()

    def data_received(self, data: bytes) -> None:
        if self._state == _CLOSED:
            return
        self._last_received = self._loop.time()
        if self._partial:
            data = self._partial + data
            self._partial = b""
        try:
            self._parse(data)
        except _ProtocolViolation as exc:
            self._fail(exc.code, exc.reason)
            return
        if self._credit_waiters:
            self._wake_credit_waiters()
        if self._out:
            # Replies that handlers wrote while this read was delivered (they
            # start eagerly), window updates, PING and SETTINGS acknowledgements
            # leave now, in one write, instead of one event-loop turn later.
            handle = self._flush_handle
            if handle is not None:
                handle.cancel()
            self._flush()

    # -- parsing -----------------------------------------------------------

    def _parse(self, data: bytes) -> None:
        end = len(data)
        pos = 0
        if self._preface_left:
            # Servers: the client's connection preface comes first.
            seen = len(PREFACE) - self._preface_left
            take = min(self._preface_left, end)
            if data[:take] != PREFACE[seen : seen + take]:
                raise _ProtocolViolation(PROTOCOL_ERROR, "the client did not send the HTTP/2 connection preface")
            self._preface_left -= take
            pos = take
        if self._data_left and pos < end:
            pos = self._continue_data(data, pos, end)
        handlers = self._handlers
        while pos < end:
            if self._state == _CLOSED:
                return
            if end - pos < 9:
                self._partial = data[pos:]
                return
            high, low, kind, flags, stream_id = _unpack_from(data, pos)
            length = high << 16 | low
            stream_id &= 0x7FFFFFFF
            if kind == DATA:
                if not self._settings_seen or self._continuation is not None:
                    raise _ProtocolViolation(PROTOCOL_ERROR, "DATA before SETTINGS or inside a header block")
                if flags & PADDED:
                    # Padded DATA (never sent by rpcnet) is taken whole.
                    if length > self._options.max_frame_size:
                        raise _ProtocolViolation(FRAME_SIZE_ERROR, f"DATA frame of {length} bytes exceeds our limit")
                    if end - pos - 9 < length:
                        self._partial = data[pos:]
                        return
                    self._on_data_frame(length, flags, stream_id)
                    pad = data[pos + 9] if length else 0
                    if length == 0 or pad >= length:
                        raise _ProtocolViolation(PROTOCOL_ERROR, "DATA padding as long as the frame")
                    self._data_left = length - 1 - pad
                    # The pad-length byte and the padding count against the
                    # windows but are never handed on: give their credit back.
                    self._consumed(1 + pad)
                    if self._data_stream is not None:
                        self._data_stream.unacked += 1 + pad
                    pos = self._continue_data(data, pos + 10, pos + 9 + length - pad)
                    pos += pad
                    continue
                self._on_data_frame(length, flags, stream_id)
                pos = self._continue_data(data, pos + 9, end)
                continue
            if length > self._max_control:
                raise _ProtocolViolation(
                    FRAME_SIZE_ERROR, f"frame of type {kind} with {length} bytes exceeds our {self._max_control}-byte limit"
                )
            if end - pos - 9 < length:
                self._partial = data[pos:]
                return
            payload = data[pos + 9 : pos + 9 + length]
            pos += 9 + length
            if not self._settings_seen and kind != SETTINGS and kind != GOAWAY:
                raise _ProtocolViolation(PROTOCOL_ERROR, "the first frame must be SETTINGS")
            if self._continuation is not None and kind != CONTINUATION:
                raise _ProtocolViolation(PROTOCOL_ERROR, "a header block was interrupted by another frame")
            handler = handlers.get(kind)
            if handler is not None:  # unknown frame types are ignored (section 5.5)
                handler(flags, stream_id, payload)

    def _on_data_frame(self, length: int, flags: int, stream_id: int) -> None:
        """Flow control for a DATA frame, checked on its header before any payload is kept."""
        if stream_id == 0:
            raise _ProtocolViolation(PROTOCOL_ERROR, "DATA on stream 0")
        if length > self._options.max_frame_size:
            raise _ProtocolViolation(FRAME_SIZE_ERROR, f"DATA frame of {length} bytes exceeds our limit")
        self._recv_window -= length
        if self._recv_window < 0:
            raise _ProtocolViolation(FLOW_CONTROL_ERROR, "the peer sent more than the connection window allows")
        stream = self._streams.get(stream_id)
        if stream is None:
            self._check_not_idle(stream_id, "DATA")
        elif stream._recv_done:
            self._frame(RST_STREAM, 0, stream_id, _U32.pack(STREAM_CLOSED))
            stream._error = f"stream {stream_id}: the peer sent DATA after ending it"
            stream._abandon()
            self._forget(stream)
            stream = None
        else:
            stream.recv_window -= length
            if stream.recv_window < 0:
                self._frame(RST_STREAM, 0, stream_id, _U32.pack(FLOW_CONTROL_ERROR))
                stream._peer_aborted(_APP_INTERNAL)
                self._forget(stream)
                stream = None
        self._data_stream = stream
        self._data_left = length
        self._data_fin = bool(flags & END_STREAM)

    def _continue_data(self, data: bytes, pos: int, end: int) -> int:
        take = self._data_left if self._data_left <= end - pos else end - pos
        self._data_left -= take
        finished = self._data_left == 0
        fin = finished and self._data_fin
        stream = self._data_stream
        if take or fin:
            if take == len(data):
                chunk = data  # the whole read is this frame's payload: no copy
            else:
                chunk = data[pos : pos + take]
            if stream is not None:
                stream._received(chunk, fin)
            elif take:
                self._consumed(take)
        if finished:
            self._data_stream = None
        return pos + take

    def _check_not_idle(self, stream_id: int, what: str) -> None:
        """A frame for a stream that was never opened is a connection error;
        one for a stream that has ended is ignored (it crossed our reset)."""
        if stream_id & 1:
            opened = stream_id < self._next_id if self._is_client else stream_id <= self._peer_highest
        else:
            opened = False
        if not opened:
            raise _ProtocolViolation(PROTOCOL_ERROR, f"{what} for stream {stream_id}, which was never opened")

    # -- control frames ----------------------------------------------------

    def _on_headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise _ProtocolViolation(PROTOCOL_ERROR, "HEADERS on stream 0")
        start, end = 0, len(payload)
        if flags & PADDED:
            if not payload or payload[0] >= end:
                raise _ProtocolViolation(PROTOCOL_ERROR, "HEADERS padding as long as the frame")
            start, end = 1, end - payload[0]
        if flags & PRIORITY_FLAG:
            start += 5
            if start > end:
                raise _ProtocolViolation(FRAME_SIZE_ERROR, "HEADERS too short for its priority fields")
        block = payload[start:end] if (start or end != len(payload)) else payload
        if not flags & END_HEADERS:
            self._continuation = (stream_id, flags, [block], len(block))
            return
        self._headers_done(stream_id, flags, block)

    def _on_continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        pending = self._continuation
        if pending is None or pending[0] != stream_id:
            raise _ProtocolViolation(PROTOCOL_ERROR, "CONTINUATION without a header block to continue")
        first_id, first_flags, pieces, size = pending
        size += len(payload)
        if size > self._max_control:
            raise _ProtocolViolation(COMPRESSION_ERROR, f"header block over our {self._max_control}-byte limit")
        pieces.append(payload)
        if flags & END_HEADERS:
            self._continuation = None
            self._headers_done(first_id, first_flags, b"".join(pieces))
        else:
            self._continuation = (first_id, first_flags, pieces, size)

    def _decode_block(self, block: bytes) -> None:
        """Keep the HPACK state in step; rpcnet reads no header field."""
        if block in _FIXED_BLOCKS:
            return  # static-table indices only: they leave the dynamic table as it is
        if self._hpack is None:
            from hpack import Decoder

            self._hpack = Decoder()
            self._hpack.max_header_list_size = self._max_control
        try:
            self._hpack.decode(block, raw=True)
        except Exception as exc:
            raise _ProtocolViolation(COMPRESSION_ERROR, f"undecodable header block: {exc}") from None

    def _headers_done(self, stream_id: int, flags: int, block: bytes) -> None:
        self._decode_block(block)
        end_stream = bool(flags & END_STREAM)
        stream = self._streams.get(stream_id)
        if stream is not None:
            # Response headers (ignored) or trailers (they end the stream).
            if end_stream and not stream._recv_done:
                stream._received(b"", True)
            return
        if self._is_client or not stream_id & 1:
            self._check_not_idle(stream_id, "HEADERS")
            return
        if stream_id <= self._peer_highest:
            return  # a stream that ended: trailers that crossed our reset
        self._accept_stream(stream_id, end_stream)

    def _accept_stream(self, stream_id: int, end_stream: bool) -> None:
        self._peer_highest = stream_id
        if self._unused_timer is not None:
            self._unused_timer.cancel()
            self._unused_timer = None
        if self._state != _OPEN and not self._draining:
            return
        if self._peer_open >= self._options.max_streams:
            # Over the credit we granted: refused before any state is kept.
            self._frame(RST_STREAM, 0, stream_id, _U32.pack(REFUSED_STREAM))
            return
        stream = H2Stream(self, stream_id, None, False)
        self._streams[stream_id] = stream
        self._peer_open += 1
        on_stream = self._on_stream
        try:
            stream.handler = on_stream(stream) if on_stream is not None else None
        except Exception:
            logger.exception("on_stream failed for stream %d from %s; resetting it", stream_id, self._describe)
            stream.reset(1)
            return
        if end_stream:
            stream._received(b"", True)

    def _on_priority(self, flags: int, stream_id: int, payload: bytes) -> None:
        if len(payload) != 5:
            raise _ProtocolViolation(FRAME_SIZE_ERROR, "PRIORITY frame is not 5 bytes")

    def _on_rst_stream(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or len(payload) != 4:
            raise _ProtocolViolation(PROTOCOL_ERROR if stream_id == 0 else FRAME_SIZE_ERROR, "malformed RST_STREAM")
        stream = self._streams.get(stream_id)
        if stream is None:
            self._check_not_idle(stream_id, "RST_STREAM")
            return
        stream._peer_aborted(from_h2_code(_U32.unpack(payload)[0]))
        self._forget(stream)

    def _on_settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise _ProtocolViolation(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise _ProtocolViolation(FRAME_SIZE_ERROR, "SETTINGS acknowledgement with a payload")
            return
        if len(payload) % 6:
            raise _ProtocolViolation(FRAME_SIZE_ERROR, "SETTINGS payload is not a multiple of 6 bytes")
        for offset in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, offset)
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise _ProtocolViolation(FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1")
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
                if delta > 0:
                    self._send_blocked()
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_MAX_FRAME <= value <= (1 << 24) - 1:
                    raise _ProtocolViolation(PROTOCOL_ERROR, f"SETTINGS_MAX_FRAME_SIZE {value} out of range")
                self._peer_max_frame = value
            elif key == SETTINGS_MAX_CONCURRENT_STREAMS:
                self._peer_max_streams = value
            elif key == SETTINGS_ENABLE_PUSH and value > 1:
                raise _ProtocolViolation(PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH must be 0 or 1")
        self._frame(SETTINGS, ACK, 0, b"")
        if not self._settings_seen:
            self._settings_seen = True
            self._become_open()

    def _on_push_promise(self, flags: int, stream_id: int, payload: bytes) -> None:
        raise _ProtocolViolation(PROTOCOL_ERROR, "PUSH_PROMISE, though push is disabled")

    def _on_ping(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0 or len(payload) != 8:
            raise _ProtocolViolation(PROTOCOL_ERROR if stream_id else FRAME_SIZE_ERROR, "malformed PING")
        if not flags & ACK:
            self._frame(PING, ACK, 0, payload)

    def _on_goaway(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0 or len(payload) < 8:
            raise _ProtocolViolation(PROTOCOL_ERROR, "malformed GOAWAY")
        last_id, code = _GOAWAY.unpack_from(payload)
        last_id &= 0x7FFFFFFF
        self._goaway_received = True
        self._goaway_reason = bytes(payload[8:]).decode("utf-8", "replace")
        if self._state == _HANDSHAKE:
            self._abort(TransportError(
                f"the server at {self._describe} refused the connection ({self._goaway_reason or 'no reason given'})"
            ))
            return
        if code != NO_ERROR:
            name = ERROR_NAMES.get(code, f"{code:#x}")
            reason = f": {self._goaway_reason}" if self._goaway_reason else ""
            self._abort(TransportError(f"the peer {self._describe} closed the connection with error {name}{reason}"))
            return
        # Streams the peer never processed are refused: the engine retries them elsewhere.
        for stream in [s for s in self._streams.values() if s.local and s.stream_id > last_id]:
            stream._peer_aborted(_FROM_H2[REFUSED_STREAM])
            self._forget(stream)
        waiters, self._credit_waiters = self._credit_waiters, collections.deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(self._closed_error())
        self._maybe_finish_draining()

    def _on_window_update(self, flags: int, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ProtocolViolation(FRAME_SIZE_ERROR, "WINDOW_UPDATE is not 4 bytes")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if increment == 0:
                raise _ProtocolViolation(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise _ProtocolViolation(FLOW_CONTROL_ERROR, "connection window above 2^31-1")
            self._send_blocked()
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            self._check_not_idle(stream_id, "WINDOW_UPDATE")
            return
        if increment == 0 or stream.send_window + increment > MAX_WINDOW:
            self._frame(RST_STREAM, 0, stream_id, _U32.pack(PROTOCOL_ERROR if increment == 0 else FLOW_CONTROL_ERROR))
            stream._peer_aborted(_APP_INTERNAL)
            self._forget(stream)
            return
        stream.send_window += increment
        if stream._queue is not None:
            self._send_queued(stream)

    # -- sending -----------------------------------------------------------

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        length = len(payload)
        self._out.append(_pack(length >> 16, length & 0xFFFF, kind, flags, stream_id) + payload)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _write_data(self, stream_id: int, data: Any, end_stream: bool) -> None:
        size = len(data)
        out = self._out
        flags = END_STREAM if end_stream else 0
        max_frame = self._peer_max_frame
        if size <= max_frame:
            if size < _BIG:
                out.append(_pack(size >> 16, size & 0xFFFF, DATA, flags, stream_id) + data)
            else:
                out.append(_pack(size >> 16, size & 0xFFFF, DATA, flags, stream_id))
                out.append(data)
                self._out_big = True
        else:
            view = memoryview(data)
            for offset in range(0, size, max_frame):
                piece = view[offset : offset + max_frame]
                length = len(piece)
                last = offset + max_frame >= size
                out.append(_pack(length >> 16, length & 0xFFFF, DATA, flags if last else 0, stream_id))
                out.append(piece)
            self._out_big = True
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _send_queued(self, stream: H2Stream) -> None:
        """Send what flow control now allows of a stream's queued bytes."""
        queue = stream._queue
        if queue is None:
            return
        fin_sent = False
        while queue:
            allowed = min(stream.send_window, self._send_window)
            if allowed <= 0:
                return
            piece = queue[0]
            if len(piece) <= allowed:
                queue.popleft()
            else:
                queue[0] = piece[allowed:]
                piece = piece[:allowed]
            size = len(piece)
            stream.send_window -= size
            self._send_window -= size
            stream._queued -= size
            fin_sent = stream._queued_fin and not queue
            self._write_data(stream.stream_id, piece, fin_sent)
        if stream._queued_fin and not fin_sent:
            self._write_data(stream.stream_id, b"", True)
        stream._queue = None
        self._blocked.pop(stream.stream_id, None)
        if stream._drain_waiter is not None:
            self._wake_drain_waiters()
        if stream._send_done and stream._recv_done:
            self._forget(stream)

    def _send_blocked(self) -> None:
        for stream in list(self._blocked.values()):
            if self._send_window <= 0:
                break
            self._send_queued(stream)
        if self._drain_waiting:
            self._wake_drain_waiters()

    def _flush(self) -> None:
        self._flush_handle = None
        out = self._out
        transport = self._transport
        if not out or transport is None or transport.is_closing():
            return
        self._out = []
        if not self._out_big:
            transport.write(b"".join(out) if len(out) > 1 else out[0])
            return
        self._out_big = False
        pieces: list[Any] = []
        small: list[Any] = []
        for piece in out:
            if len(piece) >= _BIG:
                if small:
                    pieces.append(b"".join(small))
                    small = []
                pieces.append(piece)
            else:
                small.append(piece)
        if small:
            pieces.append(b"".join(small))
        transport.writelines(pieces)

    def _consumed(self, size: int) -> None:
        """``size`` received bytes were handed on or dropped: the connection window may grow."""
        unacked = self._conn_unacked = self._conn_unacked + size
        if unacked >= self._conn_update_at:
            self._conn_unacked = 0
            self._recv_window += unacked
            self._frame(WINDOW_UPDATE, 0, 0, _U32.pack(unacked))

    def _send_goaway(self, code: int, reason: str) -> None:
        if self._transport is None or self._transport_lost:
            return
        self._frame(GOAWAY, 0, 0, _GOAWAY.pack(self._peer_highest, code) + reason.encode("utf-8", "replace")[:256])
        self._flush()

    def _close_transport(self) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            self._flush()
            transport.close()

    # -- state -----------------------------------------------------------------

    def _become_open(self) -> None:
        if self._state != _HANDSHAKE:
            return
        self._state = _OPEN
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        self._arm_keepalive()
        unused = self._options.unused_connection_timeout
        if not self._is_client and unused is not None and not self._peer_highest:
            self._unused_timer = self._loop.call_later(unused, self._unused_timed_out)
        if not self._ready.done():
            self._ready.set_result(None)

    def _unused_timed_out(self) -> None:
        self._unused_timer = None
        if self._state == _OPEN and not self._peer_highest:
            seconds = self._options.unused_connection_timeout
            logger.debug("closing connection from %s: no call within %g s", self._describe, seconds)
            self.close(0, f"no call within {seconds:g} s of connecting")

    def _forget(self, stream: H2Stream) -> None:
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]
            if stream.local:
                self._local_open -= 1
                if self._credit_waiters:
                    self._wake_credit_waiters()
            else:
                self._peer_open -= 1
        # The handler usually points back at its stream: dropping the link lets
        # reference counting free both at once.
        stream.handler = None
        if (self._goaway_received or self._draining) and not self._streams:
            self._maybe_finish_draining()

    def _maybe_finish_draining(self) -> None:
        if self._streams or self._state == _CLOSED:
            return
        if self._goaway_received and self._state < _CLOSING:
            reason = f": {self._goaway_reason}" if self._goaway_reason else ""
            self.close(0, f"the peer is going away{reason}")
        elif self._draining and not self._is_client:
            self.close(0, "server shutting down")

    def _wake_credit_waiters(self) -> None:
        available = self._peer_max_streams - self._local_open
        waiters = self._credit_waiters
        while available > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                available -= 1

    def _wake_drain_waiters(self) -> None:
        if self._write_paused:
            return
        high_water = self._options.send_high_water
        for stream in list(self._drain_waiting):
            if stream._queued <= high_water:
                waiter = stream._drain_waiter
                self._drain_waiting.discard(stream)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    def _arm_keepalive(self) -> None:
        options = self._options
        tick = options.keepalive_interval if options.keepalive_interval is not None else options.idle_timeout
        tick = min(tick, options.idle_timeout)
        self._keepalive_handle = self._loop.call_later(tick, self._keepalive)

    def _keepalive(self) -> None:
        self._keepalive_handle = None
        if self._state == _CLOSED:
            return
        options = self._options
        silent = self._loop.time() - self._last_received
        if silent >= options.idle_timeout:
            self._fail(NO_ERROR, "idle timeout", TransportError(
                f"connection to {self._describe} closed by the idle timeout: nothing arrived for "
                f"{options.idle_timeout:g} s"
            ))
            return
        if options.keepalive_interval is not None and silent >= options.keepalive_interval * 0.9:
            self._frame(PING, 0, 0, b"rpcnet\0\0")
        self._arm_keepalive()

    def _handshake_timed_out(self) -> None:
        self._handshake_timer = None
        if self._state != _HANDSHAKE:
            return
        self._fail(PROTOCOL_ERROR, "no SETTINGS in time", TransportError(
            f"no HTTP/2 settings from {self._describe} within {self._options.handshake_timeout:g} s "
            "(is an rpcnet tcp listener there?)"
        ))

    def _fail(self, code: int, reason: str, exc: BaseException | None = None) -> None:
        """A connection error: GOAWAY with ``code``, then close."""
        if self._state == _CLOSED:
            return
        if exc is None:
            name = ERROR_NAMES.get(code, f"{code:#x}")
            exc = TransportError(f"connection to {self._describe} failed: HTTP/2 {name}: {reason}")
            if not self._is_client:
                logger.info("closing connection from %s: %s", self._describe, reason)
        self._state = _CLOSING
        self._send_goaway(code, reason)
        self._close_transport()
        self._finish(exc)

    def _abort(self, exc: BaseException) -> None:
        if self._state == _CLOSED:
            return
        self._state = _CLOSING
        self._close_transport()
        self._finish(exc)

    def _closed_error(self) -> TransportError:
        exc = self._close_exc
        if exc is None:
            if self._goaway_received:
                reason = f": {self._goaway_reason}" if self._goaway_reason else ""
                return TransportError(f"the peer {self._describe} is going away{reason}; open a new connection")
            return TransportError(f"connection to {self._describe} is closed")
        return type(exc)(str(exc)) if isinstance(exc, TransportError) else TransportError(str(exc))

    def _finish(self, exc: BaseException | None) -> None:
        """Tear down: release waiters, tell open streams, run close callbacks."""
        if self._state == _CLOSED:
            return
        self._state = _CLOSED
        if exc is not None:
            self._close_exc = exc
        elif self._close_exc is None:
            self._close_exc = TransportError(f"connection to {self._describe} is closed")
        self._close_reported = exc
        if isinstance(exc, TlsError):
            # Once per connection, here (ALPN refused, a client certificate
            # refused as seen from the client); a failed TLS handshake itself
            # is logged where it fails (TcpListener, TcpTransport.connect).
            logger.info("%s: %s", "client" if self._is_client else "server", exc)
        for handle in (self._keepalive_handle, self._handshake_timer, self._unused_timer):
            if handle is not None:
                handle.cancel()
        self._keepalive_handle = self._handshake_timer = self._unused_timer = None
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()
        if not self._ready.done():
            self._ready.set_exception(self._closed_error())
            self._ready.exception()  # retrieved: connect() may have stopped waiting
        waiters, self._credit_waiters = self._credit_waiters, collections.deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(self._closed_error())
        streams = list(self._streams.values())
        self._streams.clear()
        self._blocked.clear()
        for stream in streams:
            stream._peer_aborted(CONNECTION_LOST)
            stream.handler = None
        self._drain_waiting.clear()
        if not self._closed.done():
            self._closed.set_result(None)
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            try:
                callback(exc)
            except Exception:
                logger.exception("connection close callback %r failed", callback)
        if self._on_finished is not None:
            self._on_finished(self)
