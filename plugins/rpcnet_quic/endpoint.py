"""UDP endpoints: the server's listener (one socket, many connections) and a client's socket."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from typing import Any

from rpcnet.config import TlsConfig
from rpcnet.errors import ConfigError, TransportError
from rpcnet.transport import Address, Listener, NewStreamCallback

from .backend import CID_LENGTH, LongHeader, QuicBackend
from .driver import CONNECTION_REFUSED, QuicConnection
from .options import QuicOptions

__all__ = ["QuicListener", "ClientEndpoint"]

logger = logging.getLogger("rpcnet.quic")

#: A client's first datagram must be at least this large (RFC 9000 section 14.1);
#: answering smaller ones would amplify spoofed traffic.
MIN_INITIAL_SIZE = 1200
#: A stateless reset is at least 21 bytes and must be smaller than what it answers.
MIN_STATELESS_RESET_SIZE = 21
_VERSION_NEGOTIATION = b"\x00\x00\x00\x00"


class QuicListener(Listener, asyncio.DatagramProtocol):
    """Routes datagrams to connections by connection ID; creates connections for new Initials."""

    def __init__(
        self,
        *,
        backend: QuicBackend,
        configuration: Any,
        options: QuicOptions,
        on_stream: NewStreamCallback,
        trusted_cas: list[Any] | None,
        reset_key: bytes,
        alpn: str,
        tls_loader: Callable[[TlsConfig], tuple[Any, Any]] | None = None,
    ) -> None:
        self._tls_loader = tls_loader
        self._backend = backend
        self._alpn = alpn
        self._reset_key = reset_key
        self._configuration = configuration
        self._supported_versions = backend.supported_versions(configuration)
        self._options = options
        self._on_stream = on_stream
        self._trusted_cas = trusted_cas
        self._retry = backend.retry_token_handler()
        self._by_cid: dict[bytes, QuicConnection] = {}
        self._all: set[QuicConnection] = set()
        self._established: dict[QuicConnection, None] = {}
        self._per_source: dict[str, int] = {}  # connections by source IP address
        self._accepting = True
        self._udp: asyncio.DatagramTransport | None = None
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._socket_closed: asyncio.Future[None] = self._loop.create_future()
        self.address: Address = ("", 0)

    # -- Listener interface --------------------------------------------------

    def reload_tls(self, tls: TlsConfig) -> None:
        if self._tls_loader is None:
            super().reload_tls(tls)
            return
        configuration, trusted = self._tls_loader(tls)  # raises before anything changes
        if (trusted is None) != (self._trusted_cas is None):
            raise ConfigError("tls.require_client_cert cannot change on a running server; restart it")
        self._configuration = configuration
        self._trusted_cas = trusted

    def stop_accepting(self) -> None:
        self._accepting = False

    def connections(self) -> list[QuicConnection]:  # type: ignore[override]
        return [c for c in self._established if not c.is_closed]

    async def close(self) -> None:
        self._accepting = False
        if self._closed:
            return
        self._closed = True
        connections = list(self._all)
        for connection in connections:
            connection.close(0, "server shutting down")
        if connections:
            await asyncio.gather(*(c.wait_closed() for c in connections))
        if self._udp is not None:
            self._udp.close()
            # The socket is released on a later tick; the address is free only then.
            await asyncio.shield(self._socket_closed)

    # -- asyncio.DatagramProtocol --------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._udp = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("sockname")[:2]
        self.address = (host, port)

    def error_received(self, exc: Exception) -> None:
        logger.debug("listener %s: socket error %s", self.address, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._socket_closed.done():
            self._socket_closed.set_result(None)
        for connection in list(self._all):
            connection.abort(TransportError(f"listener {self.address} socket closed"))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not data:
            return
        if not data[0] & 0x80:
            # Short header: the destination connection ID follows the first byte.
            cid = data[1 : 1 + CID_LENGTH]
            connection = self._by_cid.get(cid)
            if connection is not None:
                connection.datagram_received(data, addr)
            elif len(data) > MIN_STATELESS_RESET_SIZE:
                self._send_stateless_reset(cid, len(data), addr)
            return
        if data[1:5] == _VERSION_NEGOTIATION:
            # A Version Negotiation packet is only ever sent *to* clients;
            # answering one could start a reflection loop between servers.
            return
        header = self._backend.parse_long_header(data)
        if header is None:
            return
        connection = self._by_cid.get(header.destination_cid)
        if connection is not None:
            connection.datagram_received(data, addr)
            return
        if len(data) < MIN_INITIAL_SIZE:
            return
        if header.version not in self._supported_versions:
            self._send(self._backend.encode_version_negotiation(header, self._supported_versions), addr)
            return
        if not header.is_initial:
            return
        if (
            not self._accepting
            or len(self._all) >= self._options.max_connections
            or self._per_source.get(addr[0], 0) >= self._options.max_connections_per_source
        ):
            self._send(self._backend.encode_initial_close(header, CONNECTION_REFUSED), addr)
            return
        self._accept(header, data, addr)

    def datagrams_received(self, datagrams: list[bytes], addr: Any) -> None:
        """The datagrams of one GRO buffer: one sender, and short-header ones
        for the same connection go to it together."""
        first = datagrams[0]
        if first and not first[0] & 0x80:
            cid = first[1 : 1 + CID_LENGTH]
            connection = self._by_cid.get(cid)
            if connection is not None and all(d and not d[0] & 0x80 and d[1 : 1 + CID_LENGTH] == cid for d in datagrams):
                connection.datagrams_received(datagrams, addr)
                return
        for data in datagrams:
            self.datagram_received(data, addr)

    def _send_stateless_reset(self, cid: bytes, received: int, addr: Any) -> None:
        # Smaller than what triggered it (no loops, no amplification), and
        # looking like any short-header packet (RFC 9000 section 10.3).
        size = min(received - 1, 43)
        first = (os.urandom(1)[0] & 0x3F) | 0x40
        self._send(bytes([first]) + os.urandom(size - 17) + self._reset_token(cid), addr)

    def _reset_token(self, cid: bytes) -> bytes:
        return hmac.new(self._reset_key, cid, hashlib.sha256).digest()[:16]

    # -- new connections -------------------------------------------------------

    def _accept(self, header: LongHeader, data: bytes, addr: Any) -> None:
        original_cid = header.destination_cid
        retry_cid: bytes | None = None
        now = self._loop.time()
        if header.token:
            # Only our Retry packets hand out tokens: check it whatever the load.
            try:
                original_cid = self._retry.validate_token(
                    address=addr, destination_cid=header.destination_cid, token=header.token, now=now
                )
            except ValueError:
                return  # forged, expired or from another address
            retry_cid = header.destination_cid
        elif self._options.retry or len(self._all) - len(self._established) >= self._options.max_pending_handshakes:
            # Prove the address first: no state is kept until the client
            # comes back with the token, which a spoofed source cannot.
            source_cid = os.urandom(CID_LENGTH)
            token = self._retry.create_token(
                address=addr,
                original_destination_connection_id=header.destination_cid,
                retry_source_connection_id=source_cid,
                now=now,
            )
            self._send(self._backend.encode_retry(header, source_cid, token), addr)
            return
        quic = self._backend.server_connection(
            self._configuration,
            self._options,
            original_destination_cid=original_cid,
            retry_source_cid=retry_cid,
            request_client_certificate=self._trusted_cas is not None,
            reset_token=self._reset_token,
        )
        connection = QuicConnection(
            backend=self._backend,
            quic=quic,
            options=self._options,
            endpoint=self,
            is_client=False,
            peer_address=addr,
            on_stream=self._on_stream,
            trusted_cas=self._trusted_cas,
            alpn=self._alpn,
        )
        self._all.add(connection)
        self._per_source[addr[0]] = self._per_source.get(addr[0], 0) + 1
        self._by_cid[header.destination_cid] = connection
        self._by_cid[quic.host_cid] = connection
        connection.datagram_received(data, addr)

    # -- Endpoint (called by connections) ---------------------------------------

    def _send(self, data: bytes, addr: Any) -> None:
        if self._udp is not None and not self._udp.is_closing():
            self._udp.sendto(data, addr)

    send_datagram = _send

    def send_datagrams(self, datagrams: list[bytes], addr: Any) -> None:
        udp = self._udp
        if udp is None or udp.is_closing():
            return
        send_many = getattr(udp, "send_many", None)
        if send_many is not None:
            send_many(datagrams, addr)
        else:
            for data in datagrams:
                udp.sendto(data, addr)

    def connection_id_issued(self, connection: QuicConnection, cid: bytes) -> None:
        self._by_cid[cid] = connection

    def connection_id_retired(self, connection: QuicConnection, cid: bytes) -> None:
        if self._by_cid.get(cid) is connection:
            del self._by_cid[cid]

    def connection_ready(self, connection: QuicConnection) -> None:
        self._established[connection] = None

    def connection_finished(self, connection: QuicConnection) -> None:
        if connection in self._all:
            source = connection.source_host
            count = self._per_source.get(source, 1) - 1
            if count > 0:
                self._per_source[source] = count
            else:
                self._per_source.pop(source, None)
        self._all.discard(connection)
        self._established.pop(connection, None)
        for cid in [cid for cid, c in self._by_cid.items() if c is connection]:
            del self._by_cid[cid]


class ClientEndpoint(asyncio.DatagramProtocol):
    """A connected UDP socket carrying one client connection."""

    def __init__(self) -> None:
        self.connection: QuicConnection | None = None
        self._udp: asyncio.DatagramTransport | None = None

    def attach(self, connection: QuicConnection) -> None:
        self.connection = connection
        # Datagrams go straight to the connection, without a hop through here.
        self.datagram_received = connection.datagram_received  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._udp = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        pass  # replaced by attach()

    def datagrams_received(self, datagrams: list[bytes], addr: Any) -> None:
        if self.connection is not None:
            self.connection.datagrams_received(datagrams, addr)

    def error_received(self, exc: Exception) -> None:
        if self.connection is not None and isinstance(exc, OSError):
            self.connection.error_received(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.connection is not None:
            self.connection.abort(TransportError(f"client socket closed: {exc}" if exc else "client socket closed"))

    def send_datagram(self, data: bytes, addr: Any) -> None:
        udp = self._udp
        if udp is not None and not udp.is_closing():
            udp.sendto(data)

    def send_datagrams(self, datagrams: list[bytes], addr: Any) -> None:
        udp = self._udp
        if udp is None or udp.is_closing():
            return
        send_many = getattr(udp, "send_many", None)
        if send_many is not None:
            send_many(datagrams)
        else:
            for data in datagrams:
                udp.sendto(data)

    def connection_id_issued(self, connection: QuicConnection, cid: bytes) -> None:
        pass

    def connection_id_retired(self, connection: QuicConnection, cid: bytes) -> None:
        pass

    def connection_ready(self, connection: QuicConnection) -> None:
        pass

    def connection_finished(self, connection: QuicConnection) -> None:
        if self._udp is not None:
            self._udp.close()
