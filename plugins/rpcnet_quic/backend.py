"""What the QUIC driver needs from a QUIC library, and its aioquic implementation.

The driver (:mod:`rpcnet_quic.driver`) and the endpoints speak to a sans-IO
``QuicConnection`` through its public API (``receive_datagram``,
``datagrams_to_send``, ``get_timer``, ``handle_timer``, ``next_event``,
``send_stream_data``, ``reset_stream``, ``stop_stream``, ``send_ping``,
``connect``, ``get_next_available_stream_id``), which aioquic and qh3 share. Everything else (building configurations, packet helpers, the few
pieces of connection state the public API does not expose, and receive-credit
control) goes through a :class:`QuicBackend`. A second library becomes a
second backend, chosen by the ``backend`` option (:mod:`rpcnet_quic.qh3_backend`
is one); see docs/transport.md.
"""

from __future__ import annotations

import abc
import ssl
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

from rpcnet.config import TlsConfig
from rpcnet.errors import ConfigError, TlsError

from .options import QuicOptions

__all__ = ["QuicBackend", "AioquicBackend", "EventTypes", "CloseInfo", "LongHeader", "CID_LENGTH"]

#: Length of the connection IDs our endpoints issue (short-header routing relies on it).
CID_LENGTH = 8

_FRAME_CRYPTO = 0x06  # the frame type a TLS failure is attributed to
#: Room a packet needs before a STREAM frame is worth trying: the largest
#: frame header (type, stream id, offset, length) plus a few bytes of data.
_MIN_STREAM_FRAME = 24
#: aioquic's packet loop is offered streams with data to send in batches
#: holding about this many bytes (see ``_write_application``).
_SEND_BATCH_BYTES = 64 * 1024
#: What a stream with nothing new to send counts toward a batch.
_RESEND_ESTIMATE = 1200
#: A STREAM frame's header, at most.
_FRAME_OVERHEAD = 25


class EventTypes(NamedTuple):
    """The library's event classes the driver dispatches on."""

    handshake_completed: type
    protocol_negotiated: type
    stream_data_received: type
    stream_reset: type
    stop_sending_received: type
    connection_terminated: type
    connection_id_issued: type
    connection_id_retired: type


class CloseInfo(NamedTuple):
    """Why a connection is closing: the CONNECTION_CLOSE fields, and who sent it."""

    error_code: int
    frame_type: int | None
    reason: str
    by_peer: bool


class LongHeader(NamedTuple):
    version: int
    is_initial: bool
    destination_cid: bytes
    source_cid: bytes
    token: bytes


class QuicBackend(abc.ABC):
    """Adapter between the driver and one QUIC library."""

    name: ClassVar[str]
    events: EventTypes
    #: False when the library raises receive windows by itself as it hands
    #: data over (qh3): the driver then bounds what paused streams hold by
    #: leaving stream data in the library (``hold_events``) instead.
    controls_receive_credit: ClassVar[bool] = True
    #: What the library raises for an operation on a stream it has already
    #: finished and forgotten (ignored when aborting such a stream).
    stream_errors: tuple[type[BaseException], ...] = (ValueError, RuntimeError)

    # -- configuration and connections -----------------------------------

    @abc.abstractmethod
    def server_configuration(self, options: QuicOptions, tls: TlsConfig, alpn: str) -> Any:
        """A server configuration, loaded once per listener."""

    @abc.abstractmethod
    def server_connection(
        self,
        configuration: Any,
        options: QuicOptions,
        *,
        original_destination_cid: bytes,
        retry_source_cid: bytes | None,
        request_client_certificate: bool,
        reset_token: Callable[[bytes], bytes],
    ) -> Any:
        """A server-side ``QuicConnection`` for a new Initial. The stateless
        reset token of every connection ID it issues is ``reset_token(cid)``."""

    @abc.abstractmethod
    def client_connection(self, options: QuicOptions, tls: TlsConfig, server_name: str, alpn: str) -> Any:
        """A client-side ``QuicConnection`` (not yet connected)."""

    # -- state the public API does not expose -----------------------------

    @abc.abstractmethod
    def peer_stream_limit(self, quic: Any) -> int:
        """How many bidirectional streams the peer lets us open in total."""

    @abc.abstractmethod
    def handshake_confirmed(self, quic: Any) -> bool:
        """True once the handshake is confirmed (a client got HANDSHAKE_DONE)."""

    @abc.abstractmethod
    def close_info(self, quic: Any) -> CloseInfo | None:
        """Why the connection is closing, once it is (else None)."""

    @abc.abstractmethod
    def peer_certificates(self, quic: Any) -> tuple[Any, list[Any]]:
        """The peer's leaf certificate (or None) and intermediates, as
        ``cryptography`` certificates."""

    @abc.abstractmethod
    def peer_reset_token(self, quic: Any) -> bytes | None:
        """The stateless reset token of the connection ID we send to, if any."""

    @abc.abstractmethod
    def send_backlog(self, quic: Any, stream_id: int) -> int:
        """Bytes written to a stream and not yet acknowledged."""

    @abc.abstractmethod
    def grant_stream_credit(self, quic: Any, stream_id: int, limit: int) -> None:
        """Raise the receive limit (MAX_STREAM_DATA) of a stream to ``limit``
        bytes; the next packet announces it. Never lowers it."""

    @abc.abstractmethod
    def grant_connection_credit(self, quic: Any, held: int) -> None:
        """Raise the connection's receive limit (MAX_DATA) to the bytes
        received so far, minus ``held`` (received but not consumed), plus
        ``options.connection_window``. Never lowers it."""

    def receive_datagram(self, quic: Any, data: bytes, addr: Any, now: float) -> None:
        """Feed one datagram."""
        quic.receive_datagram(data, addr, now)

    def receive_datagrams(self, quic: Any, datagrams: list[bytes], addr: Any, now: float) -> None:
        """Feed several datagrams from one address (one by one unless the
        library takes a batch)."""
        receive = quic.receive_datagram
        for data in datagrams:
            receive(data, addr, now)

    def next_stream(self, quic: Any) -> int:
        """The id our next stream gets, or -1 while the peer's stream credit
        (MAX_STREAMS) has no room for it."""
        stream_id = quic.get_next_available_stream_id()
        return stream_id if stream_id // 4 < self.peer_stream_limit(quic) else -1

    def claim_stream(self, quic: Any, stream_id: int) -> None:
        """Take ``stream_id`` (the next of ours) before any data is written,
        so the next ``get_next_available_stream_id`` is past it."""
        quic.send_stream_data(stream_id, b"")

    def hold_events(self, quic: Any, hold: bool) -> None:  # noqa: B027 - only without receive-credit control
        """Leave received stream data inside the library (``hold``), where it
        earns the peer no credit, or hand it over again; packets, and so
        ACKs, are processed either way. Only for ``controls_receive_credit``
        False."""

    def ack_with_data(self, quic: Any, now: float) -> None:  # noqa: B027 - optional, a no-op by default
        """Stream data is about to be sent: send pending ACKs with it rather
        than after the ACK delay. Optional (a backend may keep its own timing)."""

    @abc.abstractmethod
    def close(self, quic: Any, error_code: int, reason: str, *, transport_error: bool = False) -> None:
        """Start closing: an application CONNECTION_CLOSE, or with
        ``transport_error`` a transport one (such as CRYPTO_ERROR + alert)."""

    # -- packets ----------------------------------------------------------

    @abc.abstractmethod
    def parse_long_header(self, data: bytes) -> LongHeader | None:
        """The long header of a datagram's first packet, None if malformed."""

    @abc.abstractmethod
    def supported_versions(self, configuration: Any) -> list[int]: ...

    @abc.abstractmethod
    def encode_version_negotiation(self, header: LongHeader, versions: list[int]) -> bytes: ...

    @abc.abstractmethod
    def encode_retry(self, header: LongHeader, source_cid: bytes, token: bytes) -> bytes: ...

    @abc.abstractmethod
    def retry_token_handler(self) -> Any:
        """An object with ``create_token(*, address, original_destination_connection_id,
        retry_source_connection_id, now)`` and ``validate_token(*, address,
        destination_cid, token, now)`` (which raises ValueError)."""

    @abc.abstractmethod
    def encode_initial_close(self, header: LongHeader, error_code: int) -> bytes:
        """An Initial packet that closes the connection a client is opening."""


def _load_cert_chain(configuration: Any, tls: TlsConfig, role: str) -> None:
    try:
        configuration.load_cert_chain(tls.cert_file, tls.key_file)
    except FileNotFoundError as exc:
        raise ConfigError(f"{role} certificate or key file not found: {exc.filename}") from None
    except (ValueError, TypeError) as exc:
        raise TlsError(
            f"cannot load the {role} certificate {tls.cert_file!r} with key {tls.key_file!r}: {exc}; "
            "expected PEM files (rpcnet certs DIR writes a working set)"
        ) from None


def _check_ca_file(tls: TlsConfig) -> None:
    if tls.ca_file is not None:
        try:
            with open(tls.ca_file, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"tls.ca_file {tls.ca_file!r} cannot be read: {exc.strerror}") from None


class AioquicBackend(QuicBackend):
    """The aioquic library (the default)."""

    name = "aioquic"

    def __init__(self) -> None:
        from aioquic.quic import events
        from aioquic.quic.configuration import QuicConfiguration
        from aioquic.quic.connection import QuicConnection, QuicConnectionState
        from aioquic.quic.packet import QuicFrameType

        self._QuicConfiguration = QuicConfiguration
        self._draining = QuicConnectionState.DRAINING
        self._connection_class = _make_connection_class(QuicConnection, QuicFrameType.MAX_STREAM_DATA)
        self.events = EventTypes(
            handshake_completed=events.HandshakeCompleted,
            protocol_negotiated=events.ProtocolNegotiated,
            stream_data_received=events.StreamDataReceived,
            stream_reset=events.StreamReset,
            stop_sending_received=events.StopSendingReceived,
            connection_terminated=events.ConnectionTerminated,
            connection_id_issued=events.ConnectionIdIssued,
            connection_id_retired=events.ConnectionIdRetired,
        )

    def _configuration(self, options: QuicOptions, *, is_client: bool, alpn: str) -> Any:
        return self._QuicConfiguration(
            alpn_protocols=[alpn],
            is_client=is_client,
            idle_timeout=options.idle_timeout,
            max_data=options.connection_window,
            max_stream_data=options.stream_window,
            max_datagram_size=options.max_datagram_size,
            congestion_control_algorithm=options.congestion_control,
            connection_id_length=CID_LENGTH,
        )

    def server_configuration(self, options: QuicOptions, tls: TlsConfig, alpn: str) -> Any:
        configuration = self._configuration(options, is_client=False, alpn=alpn)
        _load_cert_chain(configuration, tls, "server")
        return configuration

    def server_connection(
        self,
        configuration: Any,
        options: QuicOptions,
        *,
        original_destination_cid: bytes,
        retry_source_cid: bytes | None,
        request_client_certificate: bool,
        reset_token: Callable[[bytes], bytes],
    ) -> Any:
        quic = self._connection_class(
            configuration=configuration,
            original_destination_connection_id=original_destination_cid,
            retry_source_connection_id=retry_source_cid,
        )
        quic.rpcnet_setup(options, request_client_certificate, reset_token)
        return quic

    def client_connection(self, options: QuicOptions, tls: TlsConfig, server_name: str, alpn: str) -> Any:
        configuration = self._configuration(options, is_client=True, alpn=alpn)
        configuration.server_name = server_name
        configuration.verify_mode = ssl.CERT_REQUIRED
        _check_ca_file(tls)
        if tls.ca_file is not None:
            configuration.load_verify_locations(cafile=tls.ca_file)
        if tls.cert_file is not None:
            _load_cert_chain(configuration, tls, "client")
        quic = self._connection_class(configuration=configuration)
        quic.rpcnet_setup(options, False, None)
        return quic

    def peer_stream_limit(self, quic: Any) -> int:
        return quic._remote_max_streams_bidi

    def handshake_confirmed(self, quic: Any) -> bool:
        return quic._handshake_confirmed

    def close_info(self, quic: Any) -> CloseInfo | None:
        event = quic._close_event
        if event is None:
            return None
        return CloseInfo(event.error_code, event.frame_type, event.reason_phrase, quic._state == self._draining)

    def peer_certificates(self, quic: Any) -> tuple[Any, list[Any]]:
        context = getattr(quic, "tls", None)
        if context is None:
            return None, []
        return context._peer_certificate, list(context._peer_certificate_chain)

    def peer_reset_token(self, quic: Any) -> bytes | None:
        return quic._peer_cid.stateless_reset_token or None

    def send_backlog(self, quic: Any, stream_id: int) -> int:
        stream = quic._streams.get(stream_id)
        if stream is None:
            return 0
        sender = stream.sender
        return sender._buffer_stop - sender._buffer_start

    def grant_stream_credit(self, quic: Any, stream_id: int, limit: int) -> None:
        quic.rpcnet_grant_stream_credit(stream_id, limit)

    def grant_connection_credit(self, quic: Any, held: int) -> None:
        quic.rpcnet_grant_connection_credit(held)

    def ack_with_data(self, quic: Any, now: float) -> None:
        quic.rpcnet_ack_with_data(now)

    def close(self, quic: Any, error_code: int, reason: str, *, transport_error: bool = False) -> None:
        quic.close(error_code=error_code, frame_type=_FRAME_CRYPTO if transport_error else None, reason_phrase=reason)

    def parse_long_header(self, data: bytes) -> LongHeader | None:
        from aioquic.buffer import Buffer
        from aioquic.quic.packet import QuicPacketType, pull_quic_header

        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=CID_LENGTH)
        except ValueError:
            return None
        if header.version is None:
            return None
        return LongHeader(
            header.version,
            header.packet_type == QuicPacketType.INITIAL,
            header.destination_cid,
            header.source_cid,
            header.token,
        )

    def supported_versions(self, configuration: Any) -> list[int]:
        return list(configuration.supported_versions)

    def encode_version_negotiation(self, header: LongHeader, versions: list[int]) -> bytes:
        from aioquic.quic.packet import encode_quic_version_negotiation

        return encode_quic_version_negotiation(
            source_cid=header.destination_cid, destination_cid=header.source_cid, supported_versions=versions
        )

    def encode_retry(self, header: LongHeader, source_cid: bytes, token: bytes) -> bytes:
        from aioquic.quic.packet import encode_quic_retry

        return encode_quic_retry(
            version=header.version,
            source_cid=source_cid,
            destination_cid=header.source_cid,
            original_destination_cid=header.destination_cid,
            retry_token=token,
        )

    def retry_token_handler(self) -> Any:
        from aioquic.quic.retry import QuicRetryTokenHandler

        return QuicRetryTokenHandler()

    def encode_initial_close(self, header: LongHeader, error_code: int) -> bytes:
        from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE
        from aioquic.quic.crypto import CryptoPair
        from aioquic.quic.packet import QuicFrameType, QuicPacketType
        from aioquic.quic.packet_builder import QuicPacketBuilder

        # Initial keys come from the Destination Connection ID the client chose.
        crypto = CryptoPair()
        crypto.setup_initial(cid=header.destination_cid, is_client=False, version=header.version)
        builder = QuicPacketBuilder(
            host_cid=header.destination_cid,
            is_client=False,
            max_datagram_size=SMALLEST_MAX_DATAGRAM_SIZE,
            peer_cid=header.source_cid,
            version=header.version,
        )
        builder.start_packet(QuicPacketType.INITIAL, crypto)
        buf = builder.start_frame(QuicFrameType.TRANSPORT_CLOSE, capacity=16)
        buf.push_uint_var(error_code)
        buf.push_uint_var(QuicFrameType.PADDING)
        buf.push_uint_var(0)  # no reason phrase: it would travel unauthenticated
        datagrams, _ = builder.flush()
        return datagrams[0]


def _flight_full(builder: Any) -> bool:
    """Whether the congestion window leaves no room for another stream frame
    (the packet loop then ends with an empty packet)."""
    return builder._packet is not None and builder.remaining_flight_space < _MIN_STREAM_FRAME


class _StreamsSeen:
    """What aioquic's packet loop sees as the connection's stream table: the
    streams with a limit to announce; discarding a stream reaches the table."""

    __slots__ = ("_streams", "_announce")

    def __init__(self, streams: dict[int, Any], announce: list[Any]) -> None:
        self._streams = streams
        self._announce = announce

    def values(self) -> list[Any]:
        return self._announce

    def pop(self, stream_id: int) -> Any:
        return self._streams.pop(stream_id)


def _make_connection_class(base: type, max_stream_data_frame: int) -> type:
    """aioquic's ``QuicConnection`` with the changes rpcnet needs.

    - Stateless reset tokens come from ``reset_token(cid)`` (a keyed hash),
      not from random bytes, so a restarted server can reset old connections.
    - The peer's stream credit (MAX_STREAMS) is ``options.max_streams`` for
      bidirectional streams on a server, zero on a client (servers never open
      calls) and zero for unidirectional streams, which rpcnet does not use.
    - Receive credit follows consumption, for streams and for the
      connection: aioquic doubles a window whenever the peer has sent half of
      it, whether or not anyone read the data. Here the driver raises the limit to ``consumed +
      stream_window`` (see ``grant_stream_credit``) and leaves it while the
      stream is paused, so a paused stream buffers at most one window.
    """

    from aioquic.tls import Epoch

    one_rtt = Epoch.ONE_RTT

    class RpcnetQuicConnection(base):  # type: ignore[misc, valid-type]
        _rpcnet_request_client_cert = False
        _rpcnet_streams_batch = 16
        _rpcnet_reset_token: Callable[[bytes], bytes] | None = None
        _rpcnet_connection_window = 0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            #: Streams whose receive limit was raised but not yet announced.
            self._rpcnet_limits: set[Any] = set()
            super().__init__(*args, **kwargs)

        def rpcnet_setup(
            self, options: QuicOptions, request_client_cert: bool, reset_token: Callable[[bytes], bytes] | None
        ) -> None:
            self._rpcnet_request_client_cert = request_client_cert
            self._rpcnet_reset_token = reset_token
            self._rpcnet_connection_window = options.connection_window
            self._rpcnet_derive_reset_tokens()
            # The peer's initial credit travels in the transport parameters
            # (``value``); ``sent`` must match so MAX_STREAMS updates batch right.
            # A client accepts no streams: only clients open calls.
            bidi = 0 if self._is_client else options.max_streams
            self._rpcnet_streams_batch = max(1, options.max_streams // 8)
            self._local_max_streams_bidi.value = self._local_max_streams_bidi.sent = bidi
            self._local_max_streams_uni.value = self._local_max_streams_uni.sent = 0

        def _rpcnet_derive_reset_tokens(self) -> None:
            # Tokens derived from the connection ID with a key that survives a
            # restart let a restarted server reset connections it forgot.
            derive = self._rpcnet_reset_token
            if derive is not None:
                for connection_id in self._host_cids:
                    connection_id.stateless_reset_token = derive(connection_id.cid)

        def _replenish_connection_ids(self) -> None:
            super()._replenish_connection_ids()
            self._rpcnet_derive_reset_tokens()

        def _initialize(self, peer_cid: bytes) -> None:
            super()._initialize(peer_cid)
            if self._rpcnet_request_client_cert:
                # aioquic sends a CertificateRequest only when asked this way;
                # it does not verify the chain, the driver does after the handshake.
                self.tls._request_client_certificate = True

        def rpcnet_ack_with_data(self, now: float) -> None:
            # Stream data leaves in this transmit: acknowledge what arrived in
            # the same packets instead of in ACK-only packets a millisecond
            # later. On a busy request/response connection this halves the
            # packets each side builds and parses. With nothing to send (a
            # bulk receiver), ACKs stay delayed, which keeps bulk fast.
            space = self._spaces.get(one_rtt)
            if space is not None and space.ack_at is not None and space.ack_at > now:
                space.ack_at = now

        def rpcnet_grant_stream_credit(self, stream_id: int, limit: int) -> None:
            stream = self._streams.get(stream_id)
            if stream is not None and stream.max_stream_data_local and limit > stream.max_stream_data_local:
                stream.max_stream_data_local = limit
                self._rpcnet_limits.add(stream)

        def _on_max_stream_data_delivery(self, delivery: Any, stream: Any) -> None:
            super()._on_max_stream_data_delivery(delivery, stream)
            if stream.max_stream_data_local_sent != stream.max_stream_data_local:
                self._rpcnet_limits.add(stream)  # lost: announce it again

        def _write_application(self, builder: Any, network_path: Any, now: float) -> None:
            # aioquic's packet loop walks every open stream for every packet it
            # builds: once to announce stream limits, once more to offer each
            # stream a frame, and then rebuilds its service queue. A client at
            # its stream credit of large requests (100 streams) spent most of
            # its CPU there. Here the loop sees only streams with work: the
            # limits the driver raised (tracked as they change), and the
            # streams with something to send, offered in batches of about
            # _SEND_BATCH_BYTES, so a packet walks a few streams, not all.
            # aioquic still writes every frame and keeps its round-robin
            # within a batch; a batch that sent goes to the back of the queue.
            if not self._cryptos[one_rtt].send.is_valid():
                super()._write_application(builder, network_path, now)  # 0-RTT or none: as aioquic does
                return
            streams, queue = self._streams, self._streams_queue
            work = []
            idle = []
            for stream in queue:
                sender = stream.sender
                if not sender.buffer_is_empty and not (
                    sender.highest_offset < sender._buffer_stop or sender._pending_eof or len(sender._pending)
                ):
                    # The last frame went out: what aioquic records the next
                    # time it asks the stream for a frame (a loss or a write
                    # sets it back), recorded now since this stream is not asked.
                    sender.buffer_is_empty = True
                if (
                    not sender.buffer_is_empty
                    or sender.reset_pending
                    or stream.receiver.stop_pending
                    or (sender.is_finished and stream.receiver.is_finished)
                ):
                    work.append(stream)
                else:
                    idle.append(stream)
            limits = self._rpcnet_limits
            announce = [stream for stream in limits if streams.get(stream.stream_id) is stream]
            limits.clear()
            self._streams = _StreamsSeen(streams, announce)
            served: list[Any] = []
            start = 0
            try:
                while True:
                    batch_bytes = 0
                    stop = start
                    # What flow control lets the connection send that it never sent.
                    room = self._remote_max_data - self._remote_max_data_used
                    while stop < len(work) and batch_bytes < _SEND_BATCH_BYTES:
                        # A stream counts the new bytes it may send (its own
                        # window and the connection's) and a frame header; a
                        # packet's worth when it has only data to resend (or
                        # flow control lets it send nothing new); a header
                        # when all it has is a FIN, a reset or its discarding.
                        stream = work[stop]
                        sender = stream.sender
                        new = min(sender._buffer_stop, stream.max_stream_data_remote) - sender.highest_offset
                        new = min(new, room)
                        room -= max(new, 0)
                        if new > 0:
                            batch_bytes += new + _FRAME_OVERHEAD
                        elif len(sender._pending):
                            batch_bytes += _RESEND_ESTIMATE
                        else:  # a FIN, a reset, a STOP_SENDING, or a stream to discard
                            batch_bytes += _FRAME_OVERHEAD
                        stop += 1
                    self._streams_queue = work[start:stop]
                    start = stop
                    super()._write_application(builder, network_path, now)
                    served += self._streams_queue
                    self._streams_queue = []
                    if start >= len(work) or self._rpcnet_paced(now) or _flight_full(builder):
                        break
            finally:
                self._streams = streams
                # A limit the packets had no room for is announced next time.
                limits.update(s for s in announce if s.max_stream_data_local_sent != s.max_stream_data_local)
                self._streams_queue = work[start:] + idle + served + self._streams_queue

        def _rpcnet_paced(self, now: float) -> bool:
            # The test aioquic's packet loop makes before each packet.
            space = self._spaces[one_rtt]
            if space.ack_at is not None and space.ack_at < now:
                return False
            return self._loss._pacer.next_send_time(now=now) is not None

        def rpcnet_grant_connection_credit(self, held: int) -> None:
            limit = self._local_max_data
            window = self._rpcnet_connection_window
            target = limit.used - held + window
            # Batch updates: announce once half a window has been consumed.
            if (target - limit.value) * 2 >= window:
                limit.value = target

        def _write_connection_limits(self, builder: Any, space: Any) -> None:
            # aioquic doubles MAX_DATA whenever half of it has arrived, read or
            # not; hiding ``used`` from it leaves only the driver's grants
            # (rpcnet_grant_connection_credit), which follow consumption.
            max_data = self._local_max_data
            used, max_data.used = max_data.used, 0
            try:
                super()._write_connection_limits(builder, space)
            finally:
                max_data.used = used
            # aioquic holds MAX_STREAMS back until the peer has used half its
            # credit, so a client running many short calls keeps waiting for
            # credit it is owed. Announce returned streams in small batches.
            limit = self._local_max_streams_bidi
            if limit.value - limit.sent >= self._rpcnet_streams_batch:
                buf = builder.start_frame(
                    limit.frame_type, capacity=9, handler=self._on_connection_limit_delivery, handler_args=(limit,)
                )
                buf.push_uint_var(limit.value)
                limit.sent = limit.value

        def _write_stream_frame(self, builder: Any, space: Any, stream: Any, max_offset: int) -> int:
            # aioquic offers every stream with data to send to every packet it
            # builds, even once the packet is full. With many calls sending at
            # once (a client at its stream credit of large requests) that cost
            # grows with the number of streams for every packet; a full packet
            # now ends the offer at once. The streams not served keep their
            # place and go first into the next packet.
            if builder.remaining_flight_space < _MIN_STREAM_FRAME:
                return 0
            return super()._write_stream_frame(builder, space, stream, max_offset)

        def _write_stream_limits(self, builder: Any, space: Any, stream: Any) -> None:
            # Only announces limits: the driver raises them as data is consumed
            # (grant_stream_credit), where aioquic would double them on arrival.
            limit = stream.max_stream_data_local
            if stream.max_stream_data_local_sent != limit and limit:
                buf = builder.start_frame(
                    max_stream_data_frame,
                    capacity=17,
                    handler=self._on_max_stream_data_delivery,
                    handler_args=(stream,),
                )
                buf.push_uint_var(stream.stream_id)
                buf.push_uint_var(limit)
                stream.max_stream_data_local_sent = limit

    return RpcnetQuicConnection
