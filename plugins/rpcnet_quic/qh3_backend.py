"""The qh3 backend: QUIC with a native (Rust) connection core.

qh3 keeps aioquic's ``QuicConnection`` API, so the driver and endpoints run
on it unchanged; this module adapts what differs (see docs/transport.md,
"Backends"):

- **Stream credit.** qh3 grants the peer 100 bidirectional and 103
  unidirectional streams and has no setting for it. The connection subclass
  builds the native core and the transport parameters with ``max_streams``
  bidirectional streams on a server, none on a client, and no
  unidirectional ones. The core re-grants credit itself as streams finish.
- **Stateless reset.** The token in the server's transport parameters is
  derived from its connection ID (``reset_token(cid)``), like the aioquic
  backend's, so a restarted server can reset a client's connection.
- **Mutual TLS.** qh3's TLS server never sends a CertificateRequest. The
  server context here (:class:`_ClientCertContext`) writes one right after
  EncryptedExtensions, then reads the client's Certificate and
  CertificateVerify (checking the signature) before qh3 checks its Finished.
  As with aioquic, the chain is verified by the driver after the handshake
  (``rpcnet.tls``), so the errors are the same on both backends. No
  session ticket is ever issued or accepted, so no handshake skips the
  client certificate.
- **Datagram size.** Path MTU probing is off: qh3's probe grows a
  client's datagrams past ``max_datagram_size``. Neither side announces a
  ``max_udp_payload_size`` (qh3 clients say 1472), so each side sends up
  to its own ``max_datagram_size``, as on aioquic.
- **Receive credit.** qh3's core raises receive windows by itself as it
  hands stream data to Python; there is nothing to call.
  ``controls_receive_credit`` is False, and the driver bounds what paused
  streams hold by leaving stream data in the core (``hold_events``; packets
  and ACKs are still processed, see ``QuicConnection._should_hold``).
- **Sending within the congestion window.** The core gets stream data only
  as far as its congestion window has room; the rest waits in order in the
  connection object (see the connection class, and docs/transport.md).

Everything here that reaches below qh3's public API is checked by
``tests/plugins/quic/test_qh3_internals.py`` against the pinned versions.
"""

from __future__ import annotations

import collections
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from cryptography import x509

from rpcnet.config import TlsConfig
from rpcnet.errors import ConfigError, TlsError

from .backend import CID_LENGTH, AioquicBackend, CloseInfo, EventTypes
from .options import QuicOptions

__all__ = ["Qh3Backend", "QH3_TESTED_VERSIONS"]

#: The qh3 releases this backend was written and tested against; the
#: internals test fails loudly on any other.
QH3_TESTED_VERSIONS = ("2.1.0",)

_FRAME_CRYPTO = 0x06
logger = logging.getLogger("rpcnet.quic")


def _qh3_missing() -> ConfigError:
    return ConfigError(
        'the quic option backend = "qh3" needs the qh3 package: pip install "rpcnet[qh3]"'
    )


class Qh3Backend(AioquicBackend):
    """qh3 (native connection core). The listener's packet helpers (long
    header parsing, Version Negotiation, Retry, the Initial that refuses a
    connection) are library-neutral wire formats and come from the aioquic
    backend, which rpcnet always installs."""

    name = "qh3"
    controls_receive_credit: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        try:
            from qh3.quic import events
            from qh3.quic.configuration import QuicConfiguration
            from qh3.quic.connection import QuicConnectionError
        except ImportError:
            raise _qh3_missing() from None
        self._Qh3Configuration = QuicConfiguration
        self._qh3_connection_class = _make_qh3_connection_class()
        self.stream_errors = (ValueError, RuntimeError, QuicConnectionError)
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

    def _qh3_configuration(self, options: QuicOptions, *, is_client: bool, alpn: str) -> Any:
        return self._Qh3Configuration(
            alpn_protocols=[alpn],
            is_client=is_client,
            idle_timeout=options.idle_timeout,
            max_data=options.connection_window,
            max_stream_data=options.stream_window,
            max_datagram_size=options.max_datagram_size,
            # qh3's path MTU probing (clients only) grows datagrams past
            # max_datagram_size (1456 bytes with a setting of 1280 or 1452):
            # off, so the option bounds every datagram, as on aioquic.
            probe_datagram_size=False,
            connection_id_length=CID_LENGTH,
        )

    def server_configuration(self, options: QuicOptions, tls: TlsConfig, alpn: str) -> Any:
        configuration = self._qh3_configuration(options, is_client=False, alpn=alpn)
        _load_qh3_cert_chain(configuration, tls, "server")
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
        quic = self._qh3_connection_class(
            configuration=configuration,
            original_destination_connection_id=original_destination_cid,
            retry_source_connection_id=retry_source_cid,
        )
        quic.rpcnet_setup(options, request_client_certificate, reset_token)
        return quic

    def client_connection(self, options: QuicOptions, tls: TlsConfig, server_name: str, alpn: str) -> Any:
        configuration = self._qh3_configuration(options, is_client=True, alpn=alpn)
        configuration.server_name = server_name
        configuration.verify_mode = ssl.CERT_REQUIRED
        if tls.ca_file is not None:
            try:
                with open(tls.ca_file, "rb"):
                    pass
            except OSError as exc:
                raise ConfigError(f"tls.ca_file {tls.ca_file!r} cannot be read: {exc.strerror}") from None
            configuration.load_verify_locations(cafile=str(tls.ca_file))
        if tls.cert_file is not None:
            _load_qh3_cert_chain(configuration, tls, "client")
        quic = self._qh3_connection_class(configuration=configuration)
        quic.rpcnet_setup(options, False, None)
        return quic

    # -- state the public API does not expose -----------------------------

    def peer_stream_limit(self, quic: Any) -> int:
        core = quic._core
        return 0 if core is None else core.stream_limits[0]

    def next_stream(self, quic: Any) -> int:
        # get_next_available_stream_id and peer_stream_limit, in one call.
        core = quic._core
        stream_id = quic._next_stream_id_bidi
        return stream_id if core is not None and stream_id // 4 < core.stream_limits[0] else -1

    def handshake_confirmed(self, quic: Any) -> bool:
        return quic._handshake_confirmed

    def close_info(self, quic: Any) -> CloseInfo | None:
        event = quic._close_event
        if event is None:
            return None
        return CloseInfo(event.error_code, event.frame_type, event.reason_phrase, quic.rpcnet_closed_by_peer)

    def peer_certificates(self, quic: Any) -> tuple[Any, list[Any]]:
        leaf = quic.get_peercert()
        if leaf is None:
            return None, []
        return _to_cryptography(leaf), [_to_cryptography(c) for c in quic.get_issuercerts()]

    def peer_reset_token(self, quic: Any) -> bytes | None:
        bridge = quic._tls
        parameters = None if bridge is None else bridge.remote_transport_parameters
        return None if parameters is None else parameters.stateless_reset_token

    def send_backlog(self, quic: Any, stream_id: int) -> int:
        # Bytes not yet sent (in the core, or waiting for room in the
        # congestion window). Unlike aioquic's figure this leaves out bytes
        # sent and not yet acknowledged; the congestion window bounds those.
        return quic.get_send_buffer_size(stream_id) + quic.rpcnet_queued(stream_id)

    def hold_events(self, quic: Any, hold: bool) -> None:
        quic.rpcnet_hold_events(hold)

    def claim_stream(self, quic: Any, stream_id: int) -> None:
        # Only the Python layer's bookkeeping of our streams (the next id;
        # before the handshake, qh3 replays it into the core later). The
        # core creates one of our streams on its first write or reset,
        # whichever comes first (both go through its
        # ensure_send_stream_core), so a stream reset before any data still
        # reaches the peer.
        quic._record_local_stream(stream_id)

    def receive_datagram(self, quic: Any, data: bytes, addr: Any, now: float) -> None:
        # qh3's receive_datagram runs about a dozen Python calls per
        # datagram (address normalising, version-negotiation and Retry
        # checks, a header parse and a copy per packet, logging hooks) that
        # only matter before the handshake completes; its batch entry point
        # goes straight to the native core after that, and falls back to
        # receive_datagram itself before.
        quic.receive_many_datagrams([data], addr, now)

    def receive_datagrams(self, quic: Any, datagrams: list[bytes], addr: Any, now: float) -> None:
        # One call into the native core for the lot (after the handshake;
        # before it qh3 takes them one by one itself).
        quic.receive_many_datagrams(datagrams, addr, now)

    def grant_stream_credit(self, quic: Any, stream_id: int, limit: int) -> None:
        pass  # the native core grants receive credit by itself

    def grant_connection_credit(self, quic: Any, held: int) -> None:
        pass

    def ack_with_data(self, quic: Any, now: float) -> None:
        pass  # the core decides when to acknowledge

    def close(self, quic: Any, error_code: int, reason: str, *, transport_error: bool = False) -> None:
        quic.close(error_code=error_code, frame_type=_FRAME_CRYPTO if transport_error else None, reason_phrase=reason)

    def supported_versions(self, configuration: Any) -> list[int]:
        return [int(v) for v in configuration.supported_versions]


def _to_cryptography(certificate: Any) -> x509.Certificate:
    return x509.load_der_x509_certificate(certificate.public_bytes())


def _load_qh3_cert_chain(configuration: Any, tls: TlsConfig, role: str) -> None:
    try:
        configuration.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    except FileNotFoundError as exc:
        raise ConfigError(f"{role} certificate or key file not found: {exc.filename}") from None
    except Exception as exc:  # qh3's native loaders raise several types
        raise TlsError(
            f"cannot load the {role} certificate {tls.cert_file!r} with key {tls.key_file!r}: {exc}; "
            "expected PEM files (rpcnet certs DIR writes a working set)"
        ) from None


# -- the connection -----------------------------------------------------------


def _make_qh3_connection_class() -> type:
    from qh3._hazmat import Buffer, QuicConnectionCore
    from qh3.quic.connection import QuicConnection, QuicConnectionError
    from qh3.quic.packet import pull_quic_transport_parameters, push_quic_transport_parameters
    from qh3.quic.tls_bridge import QuicTlsBridge

    class RpcnetTlsBridge(QuicTlsBridge):
        """Transport parameters with rpcnet's stream credit."""

        def __init__(self, *args: Any, rpcnet_streams_bidi: int, **kwargs: Any) -> None:
            self._rpcnet_streams_bidi = rpcnet_streams_bidi
            super().__init__(*args, **kwargs)

        def serialize_transport_parameters(self) -> bytes:
            data = super().serialize_transport_parameters()
            parameters = pull_quic_transport_parameters(Buffer(data=data))
            parameters.initial_max_streams_bidi = self._rpcnet_streams_bidi
            parameters.initial_max_streams_uni = 0
            # qh3 clients announce 1472, which would cap a server's datagrams
            # below its max_datagram_size; the UDP socket reads any size.
            parameters.max_udp_payload_size = None
            buf = Buffer(capacity=len(data) + 64)
            push_quic_transport_parameters(buf, parameters)
            return buf.data

    class RpcnetQh3Connection(QuicConnection):
        _rpcnet_request_client_cert = False
        _rpcnet_reset_token: Callable[[bytes], bytes] | None = None
        _rpcnet_streams_bidi = 0

        def rpcnet_setup(
            self, options: QuicOptions, request_client_cert: bool, reset_token: Callable[[bytes], bytes] | None
        ) -> None:
            self._rpcnet_request_client_cert = request_client_cert
            self._rpcnet_reset_token = reset_token
            # A client accepts no streams: only clients open calls.
            self._rpcnet_streams_bidi = 0 if self._is_client else options.max_streams

        # -- sending within the congestion window -----------------------
        #
        # qh3 2.1's core reserves up to 16 packets of stream data at a time
        # and builds one packet per poll. Once the congestion window is
        # full, the reservations left over block ACK-only packets (so two
        # peers that both fill their windows wait for each other's ACKs
        # until a probe timeout), and a stream that finishes meanwhile is
        # dropped under its reservation, which fails the next packet with
        # "reserved stream is missing" and strands the data of every stream
        # in it. So stream data waits here, in order, and the core gets only
        # what its congestion window can send at once.

        _rpcnet_credit = 0  # bytes the core may take before the next transmit
        _rpcnet_queue: collections.deque[list[Any]] | None = None  # [stream_id, data, end_stream]
        _rpcnet_queued: dict[int, int] | None = None  # queued bytes per stream
        _rpcnet_hold = False  # stream events stay in the core (see rpcnet_hold_events)

        def send_stream_data(self, stream_id: int, data: Any, end_stream: bool = False) -> None:
            size = len(data)
            if not self._rpcnet_queue and size <= self._rpcnet_credit and type(data) is bytes:
                # The common case, straight into the core: the stream is one
                # the peer opened or one claim_stream claimed, and
                # bytes need none of the Python layer's buffer handling.
                self._rpcnet_credit -= size
                try:
                    self._core.send_stream(stream_id, data, end_stream)
                except RuntimeError as exc:
                    raise QuicConnectionError(0x1, None, str(exc)) from exc
                return
            if not self._rpcnet_queue and (size <= self._rpcnet_credit or not self._handshake_complete):
                self._rpcnet_credit -= size
                super().send_stream_data(stream_id, data, end_stream)
                return
            queue = self._rpcnet_queue
            if queue is None:
                queue = self._rpcnet_queue = collections.deque()
                self._rpcnet_queued = {}
            queue.append([stream_id, memoryview(bytes(data)), end_stream])
            queued = self._rpcnet_queued
            queued[stream_id] = queued.get(stream_id, 0) + size

        def reset_stream(self, stream_id: int, error_code: int) -> None:
            if self._rpcnet_queue:
                self._rpcnet_queued.pop(stream_id, None)
                self._rpcnet_queue = collections.deque(e for e in self._rpcnet_queue if e[0] != stream_id)
            super().reset_stream(stream_id, error_code)

        def rpcnet_queued(self, stream_id: int) -> int:
            queued = self._rpcnet_queued
            return queued.get(stream_id, 0) if queued else 0

        def _rpcnet_allowance(self, core: Any) -> int:
            # Room in the congestion window, less what the core already
            # holds unsent and two datagrams of slack.
            size = self._configuration.max_datagram_size
            unsent = core.get_send_buffer_size(None)
            in_flight = core.bytes_in_flight
            room = core.congestion_window - in_flight - unsent - 2 * size
            if room <= 0 and not unsent and not in_flight:
                room = size  # nothing moves otherwise
            return room

        def _rpcnet_feed(self, core: Any) -> bool:
            queue = self._rpcnet_queue
            room = self._rpcnet_allowance(core)
            if room <= 0:
                return False
            queued = self._rpcnet_queued
            send = super().send_stream_data
            while queue and room > 0:
                entry = queue[0]
                stream_id, data, end_stream = entry
                size = len(data)
                try:
                    if size > room:
                        send(stream_id, data[:room], False)
                        entry[1] = data[room:]
                        queued[stream_id] -= room
                        return True
                    queue.popleft()
                    left = queued.get(stream_id, 0) - size
                    if left > 0:
                        queued[stream_id] = left
                    else:
                        queued.pop(stream_id, None)
                    send(stream_id, data, end_stream)
                except ValueError:
                    # The core reset the stream meanwhile (the peer's
                    # STOP_SENDING): what waits for it goes too.
                    queued.pop(stream_id, None)
                    queue = self._rpcnet_queue = collections.deque(e for e in queue if e[0] != stream_id)
                    continue
                room -= size
            return True

        def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
            core = self._core
            if core is None:
                return []
            datagrams: list[tuple[bytes, Any]] = []
            if self._close_event is not None:
                self._rpcnet_queue = self._rpcnet_queued = None
            while True:
                fed = bool(self._rpcnet_queue) and self._handshake_complete and self._rpcnet_feed(core)
                before = len(datagrams)
                if not self._rpcnet_poll(core, now, datagrams):
                    break
                if not fed or not self._rpcnet_queue or len(datagrams) == before:
                    break
            self._rpcnet_credit = self._rpcnet_allowance(core) if self._handshake_complete else 0
            return datagrams

        def _rpcnet_poll(self, core: Any, now: float, datagrams: list[tuple[bytes, Any]]) -> bool:
            # qh3 2.1's core can fail to build a packet while the handshake
            # is limited by anti-amplification ("packet builder capacity
            # exhausted", seen with aioquic clients; qh3's own server logs it
            # and carries on). What was built still leaves; the rest goes
            # with the next transmit. False when it stopped that way.
            while True:
                try:
                    transmit = core.poll_transmit(now)
                except RuntimeError as exc:
                    if "capacity exhausted" not in str(exc):
                        raise QuicConnectionError(0x1, None, str(exc)) from exc
                    return False
                except ValueError as exc:
                    # The core's stream state broke (see above): what it
                    # holds can no longer be delivered, so end the
                    # connection rather than leave its calls waiting.
                    logger.warning("qh3 core failed to build a packet (%s); closing the connection", exc)
                    self.close(error_code=0x1, reason_phrase=f"internal error: {exc}")
                    return False
                if transmit is None:
                    return True
                datagrams.append((transmit[0], transmit[1]))

        # -- receive credit ------------------------------------------------

        def rpcnet_hold_events(self, hold: bool) -> None:
            """While held, stream data stays in the core as events not yet
            taken. The core raises receive windows (MAX_STREAM_DATA,
            MAX_DATA) only as it hands data over, so the peer stops at the
            credit it has; packets (and so ACKs) are still processed."""
            self._rpcnet_hold = hold
            if not hold and self._core is not None:
                self._drain_core()

        def _drain_core(self) -> None:
            # Only an established connection holds: a close, an idle timeout
            # or a handshake step always gets through.
            if self._rpcnet_hold and self._core.state == "connected" and self._handshake_complete:
                return
            super()._drain_core()

        @property
        def rpcnet_closed_by_peer(self) -> bool:
            core = self._core
            return core is not None and core.state == "draining"

        def _create_core(self, remote_addr: Any, initial_dcid: bytes, now: float) -> None:
            # qh3 builds its core with a fixed stream credit (100/103); this
            # is the same construction with rpcnet's. No session tickets are
            # used, so nothing is remembered from an earlier connection.
            configuration = self._configuration
            self._core = QuicConnectionCore(
                is_client=self._is_client,
                version=self._version,
                local_addr=("0.0.0.0", 0),
                remote_addr=remote_addr,
                source_cid=self.host_cid,
                destination_cid=initial_dcid,
                peer_address_validated=self._is_client or self._retry_source_connection_id is not None,
                active_connection_id_limit=configuration.active_connection_id_limit or (2 if self._is_client else 8),
                max_datagram_size=configuration.max_datagram_size,
                probe_datagram_size=configuration.probe_datagram_size,
                idle_timeout=configuration.idle_timeout,
                ack_delay_exponent=3,
                max_datagram_frame_size=(
                    configuration.max_datagram_frame_size
                    if configuration.max_datagram_frame_size is not None
                    else (65536 if self._is_client else None)
                ),
                peer_max_datagram_frame_size=None,
                connection_receive_window=configuration.max_data,
                connection_send_limit=0,
                stream_receive_window=configuration.max_stream_data,
                stream_send_limit_bidi_local=0,
                stream_send_limit_bidi_remote=0,
                stream_send_limit_uni=0,
                max_stream_reassembly=configuration.max_stream_data,
                local_max_streams_bidi=self._rpcnet_streams_bidi,
                local_max_streams_uni=0,
                peer_max_streams_bidi=0,
                peer_max_streams_uni=0,
                initial_rtt=configuration.initial_rtt,
                max_ack_delay=0.025,
                initial_time=now,
            )
            self._applied_transport_parameters = None
            self._pre_handshake_state_replayed = False

        def _create_tls(self, remote_source_cid: bytes | None) -> Any:
            derive = self._rpcnet_reset_token
            bridge = RpcnetTlsBridge(
                self._configuration,
                version=self._version,
                local_initial_source_connection_id=self.host_cid,
                remote_initial_source_connection_id=remote_source_cid,
                original_destination_connection_id=self._original_destination_connection_id,
                retry_source_connection_id=self._retry_source_connection_id,
                stateless_reset_token=None if derive is None or self._is_client else derive(self.host_cid),
                quic_logger=self._quic_logger,
                version_change_handler=self._set_version,
                rpcnet_streams_bidi=self._rpcnet_streams_bidi,
            )
            if not self._is_client:
                _serve_with(bridge.tls, request_client_certificate=self._rpcnet_request_client_cert)
            self._tls = bridge
            return bridge

    return RpcnetQh3Connection


# -- mutual TLS on a qh3 server ---------------------------------------------------

#: Signature algorithms a client may sign its CertificateVerify with (TLS 1.3:
#: no PKCS#1 v1.5, no SHA-1).
_CLIENT_SIGNATURE_ALGORITHMS = (0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0807)
_EXPECT_CERTIFICATE, _EXPECT_CERTIFICATE_VERIFY = 1, 2
# The server context whose hello is being written on this thread, if it
# asks for a client certificate (see _write_certificate_with_request).
_writing = threading.local()
_context_class: type | None = None
_lock = threading.Lock()


def _serve_with(context: Any, *, request_client_certificate: bool) -> None:
    """Make one qh3 server TLS context rpcnet's: it refuses a client without
    a common ALPN with no_application_protocol (qh3 says handshake_failure),
    and with ``request_client_certificate`` asks for a client certificate."""
    context.__class__ = _client_cert_context_class()
    context._rpcnet_request = request_client_certificate
    context._rpcnet_stage = None
    context._rpcnet_requested = False
    context._rpcnet_alps = False


def _client_cert_context_class() -> type:
    global _context_class
    with _lock:
        if _context_class is None:
            _context_class = _build_client_cert_context_class()
    return _context_class


def _build_client_cert_context_class() -> type:
    from qh3 import tls
    from qh3._hazmat import Buffer, SignatureError, verify_with_public_key
    from qh3._hazmat import Certificate as Qh3Certificate

    write_certificate = tls.push_certificate

    def write_certificate_with_request(buf: Any, certificate: Any) -> None:
        # qh3's server writes its Certificate right after EncryptedExtensions;
        # a CertificateRequest belongs between the two. Both land in the same
        # transcript update, which hashes the same bytes as two updates would.
        # Only a context of ours, inside its own hello, is ever affected.
        context = getattr(_writing, "context", None)
        if context is not None:
            _writing.context = None
            context._rpcnet_write_certificate_request(buf)
        write_certificate(buf, certificate)

    tls.push_certificate = write_certificate_with_request

    class _AlertNoApplicationProtocol(tls.Alert):
        description = tls.AlertDescription.no_application_protocol

    class _ClientCertContext(tls.Context):
        """A qh3 server TLS context (see :func:`_serve_with`)."""

        _rpcnet_stage: int | None = None
        _rpcnet_request = False

        def _server_handle_hello(self, input_buf: Any, initial_buf: Any, handshake_buf: Any, onertt_buf: Any) -> None:
            self._rpcnet_requested = False
            _writing.context = self if self._rpcnet_request else None
            try:
                super()._server_handle_hello(input_buf, initial_buf, handshake_buf, onertt_buf)
            except tls.AlertHandshakeFailure as exc:
                if "ALPN" in str(exc):
                    raise _AlertNoApplicationProtocol(str(exc)) from None
                raise
            finally:
                _writing.context = None
            if self._rpcnet_requested:
                self._alps_negotiated = self._rpcnet_alps
                self._rpcnet_stage = _EXPECT_CERTIFICATE

        def _rpcnet_write_certificate_request(self, buf: Any) -> None:
            buf.push_uint8(tls.HandshakeType.CERTIFICATE_REQUEST)
            with tls.push_block(buf, 3):
                tls.push_opaque(buf, 1, b"")  # certificate_request_context
                with tls.push_block(buf, 2):  # extensions
                    buf.push_uint16(tls.ExtensionType.SIGNATURE_ALGORITHMS)
                    with tls.push_block(buf, 2), tls.push_block(buf, 2):
                        for algorithm in _CLIENT_SIGNATURE_ALGORITHMS:
                            buf.push_uint16(algorithm)
            self._rpcnet_requested = True
            # The client's Finished now comes after its Certificate and
            # CertificateVerify, so qh3 must not compute it in advance; it
            # skips that when ALPS was negotiated, so borrow the flag until
            # the hello is written.
            self._rpcnet_alps = self._alps_negotiated
            self._alps_negotiated = True

        def handle_message(self, input_data: bytes, output_buf: Any, epoch: int = -1) -> None:
            if self._rpcnet_stage is None:
                return super().handle_message(input_data, output_buf, epoch)
            self._receive_buffer += input_data
            while self._rpcnet_stage is not None and len(self._receive_buffer) >= 4:
                length = 4 + int.from_bytes(self._receive_buffer[1:4], byteorder="big")
                if len(self._receive_buffer) < length:
                    return None
                message = self._receive_buffer[:length]
                self._receive_buffer = self._receive_buffer[length:]
                if epoch >= 0 and epoch != tls.Epoch.HANDSHAKE:
                    raise tls.AlertUnexpectedMessage
                self._rpcnet_client_auth(message[0], Buffer(data=message))
            if self._rpcnet_stage is None and self._receive_buffer:
                return super().handle_message(b"", output_buf, epoch)
            return None

        def _rpcnet_client_auth(self, kind: int, buf: Any) -> None:
            if self._rpcnet_stage == _EXPECT_CERTIFICATE:
                if kind != tls.HandshakeType.CERTIFICATE:
                    raise tls.AlertUnexpectedMessage("expected the client's Certificate")
                certificate = tls.pull_certificate(buf)
                self.key_schedule.update_hash(buf.data)
                try:
                    chain = [Qh3Certificate(entry[0]) for entry in certificate.certificates]
                except Exception as exc:
                    raise tls.AlertBadCertificate(f"client certificate does not parse: {exc}") from None
                self._peer_certificate = chain[0] if chain else None
                self._peer_certificate_chain = chain[1:]
                if chain:
                    self._rpcnet_stage = _EXPECT_CERTIFICATE_VERIFY
                else:
                    # None sent: the driver refuses it (certificate_required).
                    self._rpcnet_client_auth_done()
            else:
                if kind != tls.HandshakeType.CERTIFICATE_VERIFY:
                    raise tls.AlertUnexpectedMessage("expected the client's CertificateVerify")
                verify = tls.pull_certificate_verify(buf)
                if verify.algorithm not in _CLIENT_SIGNATURE_ALGORITHMS:
                    raise tls.AlertIllegalParameter("CertificateVerify uses a signature algorithm we did not offer")
                try:
                    verify_with_public_key(
                        self._peer_certificate.public_key(),
                        verify.algorithm,
                        self.key_schedule.certificate_verify_data(b"TLS 1.3, client CertificateVerify"),
                        verify.signature,
                    )
                except (SignatureError, ValueError) as exc:
                    raise tls.AlertDecryptError(f"client CertificateVerify: {exc}") from None
                self.key_schedule.update_hash(buf.data)
                self._rpcnet_client_auth_done()
            if not buf.eof():
                raise tls.AlertDecodeError("extra bytes at the end of a handshake message")

        def _rpcnet_client_auth_done(self) -> None:
            self._rpcnet_stage = None
            if not self._alps_negotiated:
                # What qh3 does in advance without client authentication,
                # now that the transcript holds the client's messages.
                self._expected_verify_data = self.key_schedule.finished_verify_data(self._dec_key)
                finished = Buffer(capacity=64)
                tls.push_finished(finished, tls.Finished(verify_data=self._expected_verify_data))
                self.key_schedule.update_hash(finished.data)

    return _ClientCertContext
