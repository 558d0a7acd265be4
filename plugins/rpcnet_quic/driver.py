"""One QUIC connection: a thin asyncio driver around a sans-IO ``QuicConnection``.

The driver feeds datagrams and timer expiries into the QUIC state machine,
turns its events into :class:`~rpcnet.transport.StreamHandler` callbacks, and
sends what it has to send **once per event-loop tick**: every ``send`` only
sets a flag (one ``call_soon``), so a burst of calls leaves in as few packets
as possible. Streams are plain objects: no task, queue or future per stream
unless someone waits in :meth:`QuicStream.drain`.

The driver knows nothing about sockets (its endpoint sends datagrams) or about
which QUIC library runs underneath (see :mod:`rpcnet_quic.backend`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from cryptography.hazmat.primitives.serialization import Encoding

from rpcnet.errors import TlsError, TransportError
from rpcnet.tls import (
    ALERT_NO_APPLICATION_PROTOCOL,
    ClientCertificateRejected,
    explain_peer_rejection,
    explain_server_rejection,
    identity_of,
    verify_client_certificate,
)
from rpcnet.transport import CONNECTION_LOST, Address, Connection, NewStreamCallback, PeerInfo, Stream, StreamHandler

from .backend import QuicBackend
from .options import QuicOptions

__all__ = ["QuicConnection", "QuicStream", "Endpoint", "PeerUnreachable"]

logger = logging.getLogger("rpcnet.quic")

# QUIC transport error codes (RFC 9000 section 20.1).
NO_ERROR = 0x0
INTERNAL_ERROR = 0x1
CONNECTION_REFUSED = 0x2
CRYPTO_ERROR = 0x100  # + the TLS alert number (rpcnet.tls.ALERT_*)

#: Application error code for a stream whose handler raised, or that nobody accepted.
STREAM_REFUSED = 0x1

_HANDSHAKE, _OPEN, _CLOSING, _CLOSED = range(4)
_CLOCK_SLACK = time.get_clock_info("monotonic").resolution
#: Bytes one receive call may hand a backend without receive-credit control
#: at least, whatever the stream window (see ``datagrams_received``).
_MIN_RECEIVE_BUDGET = 1500


class PeerUnreachable(TransportError):
    """The handshake got an ICMP error back (nobody listens there); another
    address of the same host may still work."""


class Endpoint(Protocol):
    """What a connection needs from the socket side (client or listener)."""

    def send_datagram(self, data: bytes, addr: Any) -> None: ...

    def send_datagrams(self, datagrams: list[bytes], addr: Any) -> None: ...

    def connection_id_issued(self, connection: QuicConnection, cid: bytes) -> None: ...

    def connection_id_retired(self, connection: QuicConnection, cid: bytes) -> None: ...

    def connection_ready(self, connection: QuicConnection) -> None: ...

    def connection_finished(self, connection: QuicConnection) -> None: ...


class QuicStream(Stream):
    """One bidirectional QUIC stream (one call)."""

    __slots__ = (
        "stream_id", "connection", "handler", "paused", "consumed", "granted",
        "_pending", "_pending_fin", "_recv_done", "_send_done", "_error", "_drain_waiter",
    )

    def __init__(self, connection: QuicConnection, stream_id: int, handler: StreamHandler | None) -> None:
        self.stream_id = stream_id
        self.connection = connection
        self.handler = handler
        self.paused = False
        self.consumed = 0  # bytes handed to the handler: the basis of receive credit
        self.granted = 0  # ``consumed`` when credit was last raised
        # Bytes (and FIN) that arrived while paused, in one buffer: a peer
        # sending one-byte frames costs a byte each, not an object each.
        self._pending: bytearray | None = None
        self._pending_fin = False
        self._recv_done = False  # FIN delivered, or the stream was reset
        self._send_done = False  # FIN sent, or the stream was reset
        self._error: str | None = None  # why the stream was reset, either way
        self._drain_waiter: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<QuicStream {self.stream_id} of {self.connection!r}>"

    def send(self, data: bytes, end_stream: bool = False) -> None:
        connection = self.connection
        if self._send_done:
            raise TransportError(self._error or f"stream {self.stream_id} already ended for sending")
        if connection._state >= _CLOSING:
            raise connection._closed_error()
        if end_stream:
            self._send_done = True
        connection._quic.send_stream_data(self.stream_id, data, end_stream)
        connection._data_pending = True
        if connection._transmit_handle is None:
            connection._transmit_handle = connection._loop.call_soon(connection._transmit)
        if end_stream and self._recv_done:
            connection._forget(self)

    def reset(self, error_code: int) -> None:
        if self._error is not None or (self._recv_done and self._send_done):
            return
        connection = self.connection
        if connection._state < _CLOSING:
            connection._abort_quic_stream(self.stream_id, error_code, send=True, receive=not self._recv_done)
            connection._schedule_transmit()
        self._recv_done = self._send_done = True
        self._error = f"stream {self.stream_id} was reset"
        self._drop_pending()
        self._fail_drain()
        connection._forget(self)

    async def drain(self) -> None:
        connection = self.connection
        while True:
            if self._error is not None:
                raise TransportError(self._error)
            if connection._state >= _CLOSING:
                raise connection._closed_error()
            if connection._backend.send_backlog(connection._quic, self.stream_id) <= connection._options.send_high_water:
                return
            waiter = self._drain_waiter = connection._loop.create_future()
            connection._drain_waiting.add(self)
            try:
                await waiter
            finally:
                self._drain_waiter = None
                connection._drain_waiting.discard(self)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        if not self.paused:
            return
        self.paused = False
        connection = self.connection
        if self._pending is not None:
            connection._loop.call_soon(self._deliver_pending)
        elif connection._holding:
            connection._update_hold()
        # Consumed bytes may now earn the peer more credit.
        connection._schedule_transmit()

    # -- driver side -------------------------------------------------------

    @property
    def buffered_bytes(self) -> int:
        """Bytes received and held back because reading is paused."""
        return len(self._pending) if self._pending is not None else 0

    def _deliver(self, data: bytes, end_stream: bool) -> None:
        """Hand data to the handler, or keep it while reading is paused (or
        earlier data still waits)."""
        if self._recv_done:
            return
        if self.paused or self._pending is not None:
            if self._pending is None:
                self._pending = bytearray()
            self._pending += data
            self._pending_fin = end_stream
            self.connection._held += len(data)
            return
        if end_stream:
            self._recv_done = True
        else:
            consumed = self.consumed = self.consumed + len(data)
            connection = self.connection
            window = connection._options.stream_window
            # Batch updates: grant more once half a window has been consumed.
            if consumed - self.granted >= window // 2:
                self.granted = consumed
                connection._backend.grant_stream_credit(connection._quic, self.stream_id, consumed + window)
        handler = self.handler
        if handler is not None:
            try:
                handler.data_received(data, end_stream)
            except Exception:
                logger.exception("stream handler failed on data for %r; resetting the stream", self)
                self.reset(STREAM_REFUSED)
                return
        if end_stream and self._send_done and self.handler is not None:
            # (A handler that answered at once has already been forgotten.)
            self.connection._forget(self)

    def _deliver_pending(self) -> None:
        pending = self._pending
        if pending is None or self.paused or self._recv_done:
            return
        fin = self._pending_fin
        self._drop_pending()
        self._deliver(bytes(pending), fin)  # nothing is pending now: straight to the handler
        self.connection._schedule_transmit()

    def _peer_aborted(self, error_code: int) -> None:
        """RESET_STREAM or STOP_SENDING from the peer, or the connection ended."""
        if self._error is not None or (self._recv_done and self._send_done):
            return
        # A stream that received everything hears only of a peer abort of
        # its sending side, not of the connection ending.
        notify = not self._recv_done or error_code != CONNECTION_LOST
        self._recv_done = self._send_done = True
        self._drop_pending()
        if error_code == CONNECTION_LOST:
            self._error = str(self.connection._closed_error())
        else:
            self._error = f"stream {self.stream_id} was reset by the peer (code {error_code})"
        self._fail_drain()
        handler = self.handler
        if notify and handler is not None:
            try:
                handler.stream_reset(error_code)
            except Exception:
                logger.exception("stream handler failed on reset of %r", self)

    def _drop_pending(self) -> None:
        pending = self._pending
        if pending is not None:
            connection = self.connection
            connection._held -= len(pending)
            self._pending = None
            if connection._holding:
                connection._update_hold()

    def _fail_drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TransportError(self._error or "stream ended"))


def _nothing_to_withdraw() -> None:
    pass


class _SoonOpen:
    """A stream asked for with ``open_stream_soon``, waiting for credit among
    ``open_stream``'s futures: it answers to ``done``, ``set_result`` (credit
    for it: open the stream now) and ``set_exception`` like one."""

    __slots__ = ("connection", "handler", "opened")

    def __init__(
        self,
        connection: QuicConnection,
        handler: StreamHandler,
        opened: Callable[[Stream | None, BaseException | None], None],
    ) -> None:
        self.connection: QuicConnection | None = connection
        self.handler = handler
        self.opened = opened

    def done(self) -> bool:
        return self.connection is None

    def withdraw(self) -> None:
        self.connection = None

    def set_result(self, _: None) -> None:
        connection = self.connection
        if connection is None:
            return
        if connection._state != _OPEN:
            self.set_exception(connection._closed_error())
            return
        stream_id = connection._backend.next_stream(connection._quic)
        if stream_id < 0:
            connection._credit_waiters.appendleft(self)  # taken meanwhile: first in line again
            return
        self.connection = None
        stream = connection._open_granted(stream_id, self.handler, wake=False)
        try:
            self.opened(stream, None)
        except Exception:
            # Runs inside the connection's receive path: a failing callback
            # loses its own stream, not the connection.
            logger.exception("open_stream_soon callback %r failed; resetting %r", self.opened, stream)
            stream.reset(STREAM_REFUSED)

    def set_exception(self, exc: BaseException) -> None:
        if self.connection is not None:
            self.connection = None
            try:
                self.opened(None, exc)
            except Exception:
                logger.exception("open_stream_soon callback %r failed", self.opened)


class QuicConnection(Connection):
    """A QUIC connection (client or server side)."""

    def __init__(
        self,
        *,
        backend: QuicBackend,
        quic: Any,
        options: QuicOptions,
        endpoint: Endpoint,
        is_client: bool,
        peer_address: Address,
        on_stream: NewStreamCallback | None = None,
        trusted_cas: list[Any] | None = None,
        server_name: str | None = None,
        ca_file: str | None = None,
        sent_certificate: bool = False,
        alpn: str,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._backend = backend
        self._quic = quic
        self._streams: dict[int, QuicStream] = {}
        self._options = options
        self._endpoint = endpoint
        self._is_client = is_client
        self._on_stream = on_stream
        self._trusted_cas = trusted_cas
        self._server_name = server_name
        self._ca_file = ca_file
        self._sent_certificate = sent_certificate
        self.peer = PeerInfo(address=(str(peer_address[0]), int(peer_address[1])))
        self._peer_address = peer_address
        #: The peer's IP address as the socket reported it (per-source limits).
        self.source_host = peer_address[0]
        self._unused_timer: asyncio.TimerHandle | None = None
        self._state = _HANDSHAKE
        self._handshake_completed = False
        self._expected_alpn = alpn
        self._alpn: str | None = None
        self._ready: asyncio.Future[None] = loop.create_future()
        self._closed: asyncio.Future[None] = loop.create_future()
        self._close_callbacks: list[Callable[[BaseException | None], None]] = []
        self._close_exc: BaseException | None = None  # why it ended, for errors raised later
        self._close_reported: BaseException | None = None  # what close callbacks got
        self._transmit_handle: asyncio.Handle | None = None
        self._data_pending = False  # stream data written since the last transmit
        self._held = 0  # bytes received and held for paused streams
        # Backends whose library grants receive credit by itself as it hands
        # data over (qh3): see _should_hold. Their packets are always
        # processed, so ACKs flow and no held stream stops the others' sending.
        self._credit_by_library = not backend.controls_receive_credit
        self._holding = False  # stream data is left in the library
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._keepalive_handle: asyncio.TimerHandle | None = None
        self._handshake_timer: asyncio.TimerHandle | None = loop.call_later(
            options.handshake_timeout, self._handshake_timed_out
        )
        self._last_received = loop.time()
        self._reset_token: bytes | None = None  # the server's stateless reset token (clients)
        self._credit_waiters: collections.deque[asyncio.Future[None] | _SoonOpen] = collections.deque()
        self._drain_waiting: set[QuicStream] = set()
        # Peer-opened stream ids: the highest seen, and lower ones skipped by
        # reordering (bounded by the stream credit we grant).
        self._peer_highest = -4
        self._peer_skipped: set[int] = set()
        ev = backend.events
        self._dispatch: dict[type, Callable[[Any], None]] = {
            ev.stream_data_received: self._on_stream_data,
            ev.stream_reset: self._on_stream_reset,
            ev.stop_sending_received: self._on_stop_sending,
            ev.handshake_completed: self._on_handshake_completed,
            ev.protocol_negotiated: self._on_protocol_negotiated,
            ev.connection_id_issued: self._on_cid_issued,
            ev.connection_id_retired: self._on_cid_retired,
        }

    def __repr__(self) -> str:
        side = "client" if self._is_client else "server"
        return f"<QuicConnection {side} peer={self.peer.address} state={self._state}>"

    # -- Connection interface ----------------------------------------------

    async def open_stream(self, handler: StreamHandler) -> QuicStream:
        if not self._is_client:
            raise TransportError("only clients open streams: a server answers the calls its clients make")
        woken = False
        quic = self._quic
        while True:
            if self._state != _OPEN:
                raise self._not_open_error()
            stream_id = self._backend.next_stream(quic)
            if (woken or not self._credit_waiters) and stream_id >= 0:
                break
            # Out of stream credit (MAX_STREAMS): wait for the peer to grant more.
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
        return self._open_granted(stream_id, handler)

    #: open_stream_soon is implemented (see rpcnet.transport.Connection).
    opens_streams_soon = True

    def open_stream_soon(
        self, handler: StreamHandler, opened: Callable[[Stream | None, BaseException | None], None]
    ) -> Callable[[], None]:
        """``open_stream`` without a waiting coroutine: ``opened(stream, None)``
        runs at once when there is stream credit, else as soon as the peer
        grants it (in turn with ``open_stream``'s waiters), or
        ``opened(None, exc)`` when the connection ends first. Returns a
        function that withdraws a request still waiting."""
        if not self._is_client:
            raise TransportError("only clients open streams: a server answers the calls its clients make")
        if self._state != _OPEN:
            opened(None, self._not_open_error())
            return _nothing_to_withdraw
        if not self._credit_waiters and (stream_id := self._backend.next_stream(self._quic)) >= 0:
            opened(self._open_granted(stream_id, handler), None)
            return _nothing_to_withdraw
        request = _SoonOpen(self, handler, opened)
        self._credit_waiters.append(request)
        return request.withdraw

    def _not_open_error(self) -> TransportError:
        """Why no stream can be opened now (the connection is not open)."""
        if self._state == _HANDSHAKE:
            return TransportError("the connection is still handshaking")
        return self._closed_error()

    def _open_granted(self, stream_id: int, handler: StreamHandler, wake: bool = True) -> QuicStream:
        stream = QuicStream(self, stream_id, handler)
        self._streams[stream_id] = stream
        self._backend.claim_stream(self._quic, stream_id)  # now, before any await
        if self._holding:
            self._update_hold()  # the reply of this call may come behind held data
        if wake and self._credit_waiters:
            self._wake_credit_waiters()
        return stream

    def close(self, error_code: int = 0, reason: str = "") -> None:
        if self._state >= _CLOSING:
            return
        self._state = _CLOSING
        self._backend.close(self._quic, error_code, reason)
        self._transmit()
        detail = f"code {error_code}" + (f": {reason}" if reason else "")
        self._close_exc = TransportError(f"connection to {self._describe_peer()} was closed locally ({detail})")
        # Callbacks run on the next tick, never inside the caller's own callback;
        # a clean close reports None to close callbacks.
        self._loop.call_soon(self._finish, None if error_code == NO_ERROR else self._close_exc)

    @property
    def is_closed(self) -> bool:
        return self._state >= _CLOSING

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    def add_close_callback(self, callback: Callable[[BaseException | None], None]) -> None:
        if self._state == _CLOSED:
            self._loop.call_soon(callback, self._close_reported)
        else:
            self._close_callbacks.append(callback)

    # -- endpoint side -----------------------------------------------------

    def start_client(self) -> None:
        self._quic.connect(self._peer_address, now=self._loop.time())
        self._transmit()

    async def wait_ready(self) -> None:
        await asyncio.shield(self._ready)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self._state == _CLOSED:
            return
        token = self._reset_token
        if token is not None and data[-16:] == token and not data[0] & 0x80:
            # A stateless reset: the server no longer knows this connection.
            self.abort(TransportError(
                f"the server at {self._describe_peer()} reset the connection (it restarted or lost its state)"
            ))
            return
        now = self._loop.time()
        self._last_received = now
        self._backend.receive_datagram(self._quic, data, addr, now)
        self._after_input()

    def datagrams_received(self, datagrams: list[bytes], addr: Any) -> None:
        """Several datagrams from one read (a GRO buffer): the QUIC library
        takes them in one call where it can, and their events are handled
        once."""
        if self._state == _CLOSED:
            return
        token = self._reset_token
        if token is not None and any(d[-16:] == token for d in datagrams):
            for data in datagrams:
                self.datagram_received(data, addr)
            return
        now = self._loop.time()
        self._last_received = now
        if not self._credit_by_library:
            self._backend.receive_datagrams(self._quic, datagrams, addr, now)
            self._after_input()
            return
        # Without receive-credit control, a stream that pauses while its
        # events are handled may get the rest of the batch: feed at most
        # half a stream window at a time, then look again.
        budget = max(self._options.stream_window // 2, _MIN_RECEIVE_BUDGET)
        start, count = 0, len(datagrams)
        while start < count:
            if self._state == _CLOSED:
                return
            end, size = start, 0
            while end < count and (end == start or size + len(datagrams[end]) <= budget):
                size += len(datagrams[end])
                end += 1
            self._backend.receive_datagrams(self._quic, datagrams[start:end], addr, self._loop.time())
            self._after_input()
            start = end

    # -- holding stream data (backends without receive-credit control) --------

    def _should_hold(self) -> bool:
        """Whether received stream data should stay in the QUIC library,
        where it earns the peer no credit. Paused streams may together
        buffer half a ``connection_window``; one paused stream stops within its
        ``stream_window`` only while no other stream is waiting for data,
        since held data would hold that stream's too."""
        held = self._held
        if not held:
            return False
        options = self._options
        if held >= options.connection_window // 2:
            return True
        # Half a window, so the next receive (at most half a window, see
        # datagrams_received) leaves it within its window.
        half = options.stream_window // 2
        full = False
        for stream in self._streams.values():
            if not stream.paused:
                if not stream._recv_done:
                    return False  # someone reads: keep data flowing
            elif stream._pending is not None and len(stream._pending) >= half:
                full = True
        return full

    def _update_hold(self) -> None:
        hold = self._state == _OPEN and self._should_hold()
        if hold == self._holding:
            return
        self._holding = hold
        if hold:
            self._backend.hold_events(self._quic, True)
        else:
            self._loop.call_soon(self._release_events)

    def _release_events(self) -> None:
        if self._holding or self._state >= _CLOSING:
            return
        self._backend.hold_events(self._quic, False)
        self._after_input()

    def error_received(self, exc: OSError) -> None:
        # ICMP errors (port unreachable) on a client socket mean nobody listens.
        if self._state == _HANDSHAKE and self._is_client:
            self._state = _CLOSING
            self._finish(PeerUnreachable(f"cannot reach {self._describe_peer()}: {exc.strerror or exc}"))
        elif self._state == _OPEN and self._is_client and isinstance(exc, ConnectionRefusedError):
            # On an established connection, port-unreachable means the server
            # process is gone (kill -9, crash): end now so calls fail over at
            # once instead of waiting for the idle timeout. Only the connected
            # client socket receives these, so a server is never affected.
            self._state = _CLOSING
            self._finish(TransportError(f"{self._describe_peer()} is unreachable (port closed): {exc.strerror or exc}"))

    def abort(self, exc: BaseException) -> None:
        """End at once without telling the peer (the socket is gone)."""
        if self._state != _CLOSED:
            self._state = _CLOSING
            self._finish(exc)

    # -- event processing --------------------------------------------------

    def _after_input(self) -> None:
        quic = self._quic
        dispatch = self._dispatch
        event = quic.next_event()
        while event is not None:
            # Once closing (close() or a failed handshake), events are dropped:
            # no stream hears anything after the connection was closed.
            if self._state < _CLOSING:
                handler = dispatch.get(type(event))
                if handler is not None:
                    handler(event)
            event = quic.next_event()
        if self._state >= _CLOSING:
            return
        if self._state == _HANDSHAKE and self._is_client and self._handshake_completed:
            if self._backend.handshake_confirmed(quic):
                self._become_open()
        if self._credit_waiters:
            self._wake_credit_waiters()
        if self._drain_waiting:
            self._wake_drain_waiters()
        info = self._backend.close_info(quic)
        if info is not None:
            self._transmit()  # a close we must send (protocol error found while receiving)
            self._finish(self._error_for_close(info))
            return
        if self._credit_by_library and (self._held or self._holding):
            self._update_hold()
        if self._transmit_handle is None:
            if self._is_client:
                # Replies just delivered wake their callers on the next turn;
                # transmit one turn later so the calls they start leave in
                # the same packets as the acknowledgements, instead of an
                # empty pass now and a second transmit then.
                self._transmit_handle = self._loop.call_soon(self._transmit_next_turn)
            else:
                self._transmit_handle = self._loop.call_soon(self._transmit)

    def _transmit_next_turn(self) -> None:
        if self._state == _CLOSED:
            self._transmit_handle = None
            return
        self._transmit_handle = self._loop.call_soon(self._transmit)

    def _on_stream_data(self, event: Any) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            stream = self._accept_stream(event.stream_id)
            if stream is None:
                return
        data = event.data
        if data or event.end_stream:
            stream._deliver(data, event.end_stream)

    def _on_stream_reset(self, event: Any) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            if self._is_new_peer_stream(event.stream_id):
                # Opened and aborted before we saw data: finish our side so
                # the stream is released and its credit returns to the peer.
                self._abort_quic_stream(event.stream_id, event.error_code, send=True, receive=False)
            return
        if not stream._send_done:
            self._abort_quic_stream(event.stream_id, event.error_code, send=True, receive=False)
        stream._peer_aborted(event.error_code)
        self._forget(stream)

    def _on_stop_sending(self, event: Any) -> None:
        # The QUIC stack has already reset our sending side.
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return
        if not stream._recv_done:
            self._abort_quic_stream(event.stream_id, event.error_code, send=False, receive=True)
        stream._peer_aborted(event.error_code)
        self._forget(stream)

    def _on_protocol_negotiated(self, event: Any) -> None:
        self._alpn = event.alpn_protocol

    def _on_handshake_completed(self, event: Any) -> None:
        self._handshake_completed = True
        self._alpn = event.alpn_protocol or self._alpn
        if self._alpn != self._expected_alpn:
            self._fail_handshake(
                CRYPTO_ERROR + ALERT_NO_APPLICATION_PROTOCOL,
                f"peer negotiated ALPN {self._alpn!r}, this side speaks {self._expected_alpn!r}",
            )
            return
        if self._is_client:
            leaf, _ = self._backend.peer_certificates(self._quic)
            if leaf is not None:
                self.peer = PeerInfo(
                    address=self.peer.address, identity=identity_of(leaf),
                    certificate=leaf.public_bytes(Encoding.DER), alpn=self._alpn,
                )
            # Ready once the server confirms (HANDSHAKE_DONE): a server that
            # rejects our certificate closes instead, and connect() says why.
            if self._backend.handshake_confirmed(self._quic):
                self._become_open()
            return
        identity = certificate = None
        if self._trusted_cas is not None:
            leaf, chain = self._backend.peer_certificates(self._quic)
            try:
                verified = verify_client_certificate(leaf, chain, self._trusted_cas)
            except ClientCertificateRejected as exc:
                self._fail_handshake(CRYPTO_ERROR + exc.alert, exc.message)
                return
            identity, certificate = verified.identity, verified.certificate
        self.peer = PeerInfo(address=self.peer.address, identity=identity, certificate=certificate, alpn=self._alpn)
        self._become_open()

    def _fail_handshake(self, error_code: int, reason: str) -> None:
        self._state = _CLOSING
        self._backend.close(self._quic, error_code, reason, transport_error=True)
        self._transmit()
        self._finish(TlsError(reason))

    def _become_open(self) -> None:
        if self._state != _HANDSHAKE:
            return
        self._state = _OPEN
        if self._is_client:
            self._reset_token = self._backend.peer_reset_token(self._quic)
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        tick = self._keepalive_tick()
        if tick is not None:
            self._keepalive_handle = self._loop.call_later(tick, self._keepalive)
        unused = self._options.unused_connection_timeout
        if not self._is_client and unused is not None:
            self._unused_timer = self._loop.call_later(unused, self._unused_timed_out)
        if not self._ready.done():
            self._ready.set_result(None)
        self._endpoint.connection_ready(self)

    def _unused_timed_out(self) -> None:
        self._unused_timer = None
        if self._state == _OPEN and self._peer_highest < 0:
            seconds = self._options.unused_connection_timeout
            logger.debug("closing connection from %s: no call within %g s", self._describe_peer(), seconds)
            self.close(NO_ERROR, f"no call within {seconds:g} s of connecting")

    def _on_cid_issued(self, event: Any) -> None:
        self._endpoint.connection_id_issued(self, event.connection_id)

    def _on_cid_retired(self, event: Any) -> None:
        self._endpoint.connection_id_retired(self, event.connection_id)

    # -- peer-opened streams -------------------------------------------------

    def _is_new_peer_stream(self, stream_id: int) -> bool:
        """True (once) for a stream id the peer opened that we have not seen."""
        if stream_id & 0b11 != (0b01 if self._is_client else 0b00):
            return False
        if stream_id > self._peer_highest:
            if stream_id != self._peer_highest + 4:
                self._peer_skipped.update(range(self._peer_highest + 4, stream_id, 4))
            self._peer_highest = stream_id
            return True
        if stream_id in self._peer_skipped:
            self._peer_skipped.discard(stream_id)
            return True
        return False

    def _accept_stream(self, stream_id: int) -> QuicStream | None:
        if self._state != _OPEN or not self._is_new_peer_stream(stream_id) or self._on_stream is None:
            return None
        stream = QuicStream(self, stream_id, None)
        self._streams[stream_id] = stream
        if self._unused_timer is not None:
            self._unused_timer.cancel()
            self._unused_timer = None
        try:
            stream.handler = self._on_stream(stream)
        except Exception:
            logger.exception("on_stream failed for stream %d from %s; resetting it", stream_id, self.peer.address)
            stream.reset(STREAM_REFUSED)
            return None
        return stream

    def _abort_quic_stream(self, stream_id: int, error_code: int, *, send: bool, receive: bool) -> None:
        quic = self._quic
        try:
            if send:
                quic.reset_stream(stream_id, error_code)
            if receive:
                quic.stop_stream(stream_id, error_code)
        except self._backend.stream_errors:
            pass  # already finished and discarded by the QUIC stack

    def _forget(self, stream: QuicStream) -> None:
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]
        # The handler usually points back at its stream: dropping the link
        # lets reference counting free both at once, instead of leaving a
        # cycle per call for the garbage collector.
        stream.handler = None

    # -- waiters -------------------------------------------------------------

    def _wake_credit_waiters(self) -> None:
        available = self._backend.peer_stream_limit(self._quic) - self._quic.get_next_available_stream_id() // 4
        waiters = self._credit_waiters
        while available > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                available -= 1

    def _wake_drain_waiters(self) -> None:
        high_water = self._options.send_high_water
        backlog = self._backend.send_backlog
        for stream in list(self._drain_waiting):
            if backlog(self._quic, stream.stream_id) <= high_water:
                waiter = stream._drain_waiter
                self._drain_waiting.discard(stream)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    # -- sending and timers ---------------------------------------------------

    def _schedule_transmit(self) -> None:
        if self._transmit_handle is None and self._state != _CLOSED:
            self._transmit_handle = self._loop.call_soon(self._transmit)

    def _transmit(self) -> None:
        self._transmit_handle = None
        if self._state == _CLOSED:
            return
        quic = self._quic
        send = self._endpoint.send_datagram
        now = self._loop.time()
        if self._data_pending:
            self._data_pending = False
            self._backend.ack_with_data(quic, now)
        # Connection credit follows consumption too: what arrived, minus what
        # paused streams still hold, plus one connection window.
        self._backend.grant_connection_credit(quic, self._held)
        datagrams = quic.datagrams_to_send(now=now)
        if len(datagrams) > 1:
            addr = datagrams[0][1]
            if all(a == addr for _, a in datagrams):
                # One address (the usual case): equal-size runs can leave in
                # one system call (UDP GSO, see rpcnet_quic.udp).
                self._endpoint.send_datagrams([data for data, _ in datagrams], addr)
                datagrams = []
        for data, addr in datagrams:
            send(data, addr)
        timer_at = quic.get_timer()
        if timer_at is not None and (self._timer is None or timer_at < self._timer_at):
            # A later deadline leaves the earlier timer armed: it fires, finds
            # nothing due and re-arms, which is cheaper than rescheduling on
            # every transmit.
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(timer_at, self._on_timer)
            self._timer_at = timer_at

    def _on_timer(self) -> None:
        self._timer = None
        if self._state == _CLOSED:
            return
        quic = self._quic
        now = self._loop.time()
        due = quic.get_timer()
        if due is not None and now + _CLOCK_SLACK >= due:
            quic.handle_timer(now=max(now, due))
            self._after_input()
            if self._state == _CLOSED:
                return
        self._transmit()

    def _keepalive_tick(self) -> float | None:
        """How often the keep-alive timer looks: the shorter of the idle
        keep-alive and (clients only) the busy probe; None when both are off."""
        options = self._options
        busy = options.busy_probe_interval if self._is_client else None
        ticks = [t for t in (options.keepalive_interval, busy) if t is not None]
        return min(ticks) if ticks else None

    def _keepalive(self) -> None:
        self._keepalive_handle = None
        if self._state != _OPEN:
            return
        options = self._options
        silent = self._loop.time() - self._last_received
        busy = options.busy_probe_interval if self._is_client and self._streams else None
        if (busy is not None and silent >= busy * 0.9) or (
            options.keepalive_interval is not None and silent >= options.keepalive_interval * 0.9
        ):
            self._quic.send_ping(0)
            self._schedule_transmit()
        tick = self._keepalive_tick()
        if tick is not None:
            self._keepalive_handle = self._loop.call_later(tick, self._keepalive)

    def _handshake_timed_out(self) -> None:
        self._handshake_timer = None
        if self._state != _HANDSHAKE:
            return
        seconds = self._options.handshake_timeout
        self._state = _CLOSING
        self._backend.close(self._quic, CONNECTION_REFUSED, "handshake timed out", transport_error=True)
        self._transmit()
        self._finish(TransportError(
            f"no QUIC handshake with {self._describe_peer()} within {seconds:g} s "
            "(is a server listening there, and is UDP reachable?)"
        ))

    # -- ending ----------------------------------------------------------------

    def _closed_error(self) -> TransportError:
        """A fresh exception saying why the connection ended, to raise."""
        exc = self._close_exc
        if exc is None:
            return TransportError(f"connection to {self._describe_peer()} is closed")
        return type(exc)(str(exc)) if isinstance(exc, TransportError) else TransportError(str(exc))

    def _describe_peer(self) -> str:
        host, port = self.peer.address or ("?", 0)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _error_for_close(self, info: Any) -> BaseException | None:
        peer = self._describe_peer()
        code, reason = info.error_code, info.reason
        if self._state == _HANDSHAKE:
            if CRYPTO_ERROR <= code < CRYPTO_ERROR + 0x100:
                alert = code - CRYPTO_ERROR
                if info.by_peer and not self._is_client:
                    return TlsError(
                        f"TLS handshake with client {peer} failed: the client refused it "
                        f"({reason or 'no reason given'}; TLS alert {alert})"
                    )
                if info.by_peer:
                    return TlsError(explain_peer_rejection(
                        alert, reason, address=peer, sent_certificate=self._sent_certificate, alpn=self._expected_alpn
                    ))
                if self._is_client:
                    leaf, _ = self._backend.peer_certificates(self._quic)
                    if leaf is not None and alert in (42, 43, 44, 45, 46, 48):
                        return TlsError(explain_server_rejection(
                            leaf, server_name=self._server_name or "", ca_file=self._ca_file,
                            address=peer, detail=reason or f"TLS alert {alert}",
                        ))
                return TlsError(f"TLS handshake with {peer} failed: {reason or f'TLS alert {alert}'}")
            if info.by_peer and code == CONNECTION_REFUSED:
                return TransportError(f"the server at {peer} refused the connection (it is not accepting new connections)")
            if info.by_peer:
                return TransportError(f"the peer {peer} closed the connection during the handshake (code {code:#x}{': ' + reason if reason else ''})")
            return TransportError(f"QUIC handshake with {peer} failed: {reason or f'error {code:#x}'}")
        if info.by_peer:
            if code == NO_ERROR and info.frame_type is None:
                return TransportError(f"the peer {peer} closed the connection{': ' + reason if reason else ''}")
            return TransportError(f"the peer {peer} closed the connection with error {code:#x}{': ' + reason if reason else ''}")
        if reason.lower().startswith("idle timeout"):
            return TransportError(
                f"connection to {peer} closed by the idle timeout: nothing arrived in time "
                f"(ours is {self._options.idle_timeout:g} s; the smaller of both sides' applies)"
            )
        return TransportError(f"connection to {peer} failed: {reason or f'error {code:#x}'}")

    def _finish(self, exc: BaseException | None) -> None:
        """Tear down: release waiters, tell open streams, run close callbacks."""
        if self._state == _CLOSED:
            return
        self._state = _CLOSED
        if exc is not None:
            self._close_exc = exc
        elif self._close_exc is None:
            self._close_exc = TransportError(f"connection to {self._describe_peer()} is closed")
        self._close_reported = exc
        if isinstance(exc, TlsError):
            # Once per connection, here; the QUIC library's own lines go to
            # its "quic" logger, which has a NullHandler.
            side = "client" if self._is_client else "server"
            logger.info("%s: %s", side, exc)
        for handle in (
            self._transmit_handle, self._timer, self._keepalive_handle, self._handshake_timer, self._unused_timer
        ):
            if handle is not None:
                handle.cancel()
        self._transmit_handle = self._timer = self._keepalive_handle = self._handshake_timer = None
        self._unused_timer = None
        if not self._ready.done():
            self._ready.set_exception(self._closed_error())
            self._ready.exception()  # retrieved: connect() may have stopped waiting
        waiters, self._credit_waiters = self._credit_waiters, collections.deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(self._closed_error())
        streams = list(self._streams.values())
        self._streams.clear()
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
        self._endpoint.connection_finished(self)
