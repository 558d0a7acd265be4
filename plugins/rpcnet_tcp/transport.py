"""The ``tcp`` transport strategy: rpcnet streams as HTTP/2 streams over TLS 1.3 on TCP."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from rpcnet.config import TlsConfig
from rpcnet.errors import ConfigError, TlsError, TransportError
from rpcnet.tls import (
    ALERT_BAD_CERTIFICATE,
    ALERT_CERTIFICATE_EXPIRED,
    ALERT_UNKNOWN_CA,
    explain_peer_rejection,
    explain_server_rejection,
    identity_of,
)
from rpcnet.transport import Address, Listener, NewStreamCallback, PeerInfo, Transport, format_address, parse_address

from .h2 import H2Connection
from .options import TcpOptions
from .tls import alert_of, client_context, server_context
from .tlsio import TlsTransport, accept_loop, connect_socket, handshake, listening_sockets

_CERTIFICATE_ALERTS = frozenset((ALERT_UNKNOWN_CA, ALERT_BAD_CERTIFICATE, ALERT_CERTIFICATE_EXPIRED))

__all__ = ["TcpTransport", "TcpListener"]

logger = logging.getLogger("rpcnet.tcp")


def _peer_from_certificate(ssl_object: Any) -> PeerInfo:
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return PeerInfo()
    certificate = x509.load_der_x509_certificate(der)
    return PeerInfo(identity=identity_of(certificate), certificate=certificate.public_bytes(Encoding.DER))


class TcpListener(Listener):
    """A listening TCP socket; each accepted connection is an :class:`H2Connection`.

    Admission is decided when the TCP connection is accepted, before TLS:
    the listener counts connections (handshaking or established) in total
    and per source IP address. A connection over a limit still completes its
    TLS handshake, so that the client learns why from the GOAWAY that
    follows at once, and is then closed; it holds nothing but that
    handshake meanwhile.
    """

    def __init__(
        self, options: TcpOptions, on_stream: NewStreamCallback, alpn: str, mutual: bool, context: ssl.SSLContext
    ) -> None:
        self._options = options
        self._on_stream = on_stream
        self._alpn = alpn
        self._mutual = mutual
        self._context = context
        self._stop_accepting: list[Callable[[], None]] = []  # one per listening socket
        self._all: set[H2Connection] = set()  # established (TLS done, admitted)
        self._handshakes: set[asyncio.Task[None]] = set()
        self._per_source: dict[str, int] = {}  # admitted connections, handshaking or established, by IP address
        self._admitted = 0
        self._accepting = True
        self._closed = False
        self.address: Address = ("", 0)

    def _accepted(self, sock: socket.socket, peername: Any) -> None:
        source = str(peername[0]) if peername else "?"
        options = self._options
        refusal = None
        if not self._accepting:
            refusal = "not accepting new connections"
        elif self._admitted >= options.max_connections:
            refusal = f"too many connections: max_connections = {options.max_connections}"
        elif self._per_source.get(source, 0) >= options.max_connections_per_source:
            refusal = (
                f"too many connections from {source}: "
                f"max_connections_per_source = {options.max_connections_per_source}"
            )
        else:
            self._admitted += 1
            self._per_source[source] = self._per_source.get(source, 0) + 1
        connection = H2Connection(
            options=options,
            is_client=False,
            alpn=self._alpn,
            on_stream=self._on_stream,
            on_made=self._made,
            on_finished=self._finished,
            identify_peer=_peer_from_certificate if self._mutual else None,
            refusal=refusal,
            source=source,
            describe=format_address((source, int(peername[1]))) if peername else "?",
        )
        task = asyncio.ensure_future(self._handshake(sock, connection, source, admitted=refusal is None))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, sock: socket.socket, connection: H2Connection, source: str, *, admitted: bool) -> None:
        try:
            secure = await handshake(sock, self._context, server_side=True, timeout=self._options.handshake_timeout)
        except BaseException as exc:
            if admitted:
                self._release(source)
            # Logged here, once per connection; the client's own error says why from its side.
            where = connection._describe
            if isinstance(exc, ssl.SSLError) and alert_of(exc) in _CERTIFICATE_ALERTS:
                logger.info(
                    "server: TLS handshake with client %s failed: the client refused this server's certificate (%s)",
                    where, exc.reason,
                )
            elif isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError):
                logger.info("server: TLS handshake with client %s failed: %s", where, exc.reason or exc)
            elif isinstance(exc, (OSError, TimeoutError)):
                logger.debug("server: no TLS handshake with client %s: %r", where, exc)
            elif not isinstance(exc, asyncio.CancelledError):
                raise
            return
        transport = TlsTransport(secure, connection)
        connection.connection_made(transport)
        transport.start()

    def _made(self, connection: H2Connection) -> None:
        """TLS is up on an admitted connection."""
        self._all.add(connection)

    def _finished(self, connection: H2Connection) -> None:
        self._all.discard(connection)
        if connection._refusal is None:
            self._release(connection._source)

    def _release(self, source: str) -> None:
        self._admitted -= 1
        count = self._per_source.get(source, 1) - 1
        if count > 0:
            self._per_source[source] = count
        else:
            self._per_source.pop(source, None)

    def reload_tls(self, tls: TlsConfig) -> None:
        if tls.require_client_cert != self._mutual:
            raise ConfigError("tls.require_client_cert cannot change on a running server; restart it")
        if not tls.cert_file or not tls.key_file:
            raise ConfigError("tls.cert_file and tls.key_file are needed to reload the certificate")
        self._context = server_context(tls, self._alpn)  # raises before anything changes

    def stop_accepting(self) -> None:
        """Close the listening socket (new clients are refused by the kernel)
        and send every connection a graceful GOAWAY: running calls finish,
        new calls go to a new connection."""
        if not self._accepting:
            return
        self._accepting = False
        for stop in self._stop_accepting:
            stop()
        self._stop_accepting = []
        for connection in list(self._all):
            connection.go_away("server shutting down")

    def connections(self) -> list[H2Connection]:  # type: ignore[override]
        return [c for c in self._all if not c.is_closed and c._settings_seen]

    async def close(self) -> None:
        self.stop_accepting()
        if self._closed:
            return
        self._closed = True
        for task in list(self._handshakes):
            task.cancel()
        if self._handshakes:
            await asyncio.gather(*self._handshakes, return_exceptions=True)
        connections = list(self._all)
        for connection in connections:
            connection.close(0, "server shutting down")
        if connections:
            await asyncio.gather(*(c.wait_closed() for c in connections))


class TcpTransport(Transport):
    """HTTP/2 over TLS 1.3 over TCP (strategy ``tcp``)."""

    name: ClassVar[str] = "tcp"
    Options: ClassVar[type] = TcpOptions

    def __init__(self, options: TcpOptions | None = None) -> None:
        super().__init__(options if options is not None else TcpOptions())
        self._client_contexts: dict[tuple[TlsConfig, str], ssl.SSLContext] = {}

    async def listen(
        self,
        address: Address,
        on_stream: NewStreamCallback,
        *,
        tls: TlsConfig | None = None,
        alpn: str | None = None,
        max_streams: int | None = None,
    ) -> TcpListener:
        tls = _require_tls(tls)
        alpn = _require_alpn(alpn)
        options = self.options
        if max_streams is not None and max_streams != options.max_streams:
            # The caller's credit (the RPC server's per-connection call limit)
            # is the SETTINGS_MAX_CONCURRENT_STREAMS every connection grants.
            options = attrs.evolve(options, max_streams=max_streams)
        if not tls.cert_file or not tls.key_file:
            raise ConfigError(
                "the tcp transport needs a certificate to listen: set tls.cert_file and tls.key_file "
                "(rpcnet certs DIR writes server.pem and server.key)"
            )
        context = server_context(tls, alpn)
        host, port = parse_address(address)
        listener = TcpListener(options, on_stream, alpn, mutual=tls.require_client_cert, context=context)
        try:
            sockets = await listening_sockets(host, port, backlog=1024)
        except OSError as exc:
            raise TransportError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        listener._stop_accepting = [accept_loop(sock, listener._accepted) for sock in sockets]
        bound = sockets[0].getsockname()
        listener.address = (bound[0], bound[1])
        return listener

    async def connect(
        self,
        address: Address,
        *,
        tls: TlsConfig | None = None,
        server_name: str | None = None,
        alpn: str | None = None,
    ) -> H2Connection:
        alpn = _require_alpn(alpn)
        if tls is None:
            tls = TlsConfig()  # verify against the system trust store
        tls = _require_tls(tls)
        host, port = parse_address(address)
        name = server_name or tls.server_name or host
        key = (tls, alpn)
        context = self._client_contexts.get(key)
        if context is None:
            context = self._client_contexts[key] = client_context(tls, alpn)
        where = format_address((host, port))
        connection = H2Connection(
            options=self.options, is_client=True, alpn=alpn, describe=where, identify_peer=_peer_from_certificate
        )
        connection._sent_certificate = tls.cert_file is not None
        timeout = self.options.handshake_timeout
        try:
            async with asyncio.timeout(timeout):
                secure = await self._secure_socket(host, port, context, name)
        except ssl.SSLCertVerificationError as exc:
            leaf = await self._refused_certificate(host, port, tls, name, alpn)
            detail = exc.verify_message or exc.reason or str(exc)
            raise _logged(TlsError(
                explain_server_rejection(leaf, server_name=name, ca_file=tls.ca_file, address=where, detail=detail)
            )) from None
        except (ssl.SSLEOFError, ConnectionResetError):
            raise TransportError(
                f"the server at {where} closed the connection during the TLS handshake (is a TLS server listening there?)"
            ) from None
        except ssl.SSLError as exc:
            if "ALERT" not in (exc.reason or ""):
                # Not a refusal: what came back is not the TLS we speak.
                raise _logged(TlsError(
                    f"the TLS handshake with the server at {where} failed: {exc.reason or exc} "
                    "(is a TLS 1.3 server listening there?)"
                )) from None
            raise _logged(TlsError(explain_peer_rejection(
                alert_of(exc), exc.reason or str(exc), address=where,
                sent_certificate=tls.cert_file is not None, alpn=alpn,
            ))) from None
        except ConnectionRefusedError:
            raise TransportError(
                f"the server at {where} refused the connection (nothing is listening there, "
                "or it is not accepting new connections)"
            ) from None
        except TimeoutError:
            raise TransportError(f"no TCP + TLS handshake with {where} within {timeout:g} s") from None
        except OSError as exc:
            raise TransportError(f"cannot connect to {where}: {exc.strerror or exc}") from None
        transport = TlsTransport(secure, connection)
        connection.connection_made(transport)
        transport.start()
        try:
            await connection.wait_ready()
        except BaseException:
            connection.close(0, "connect abandoned")
            raise
        return connection

    async def _secure_socket(self, host: str, port: int, context: ssl.SSLContext, name: str) -> ssl.SSLSocket:
        """TCP connect, then the TLS handshake (the caller bounds both in time)."""
        sock = await connect_socket(host, port, bind_address=self.options.bind_address)
        return await handshake(sock, context, server_side=False, server_hostname=name, timeout=None)

    async def _refused_certificate(
        self, host: str, port: int, tls: TlsConfig, name: str, alpn: str
    ) -> x509.Certificate | None:
        """The certificate a server presented that we refused, for the error
        message only: fetched once more without verification (the connection
        is closed right after; nothing is sent on it)."""
        try:
            async with asyncio.timeout(self.options.handshake_timeout):
                secure = await self._secure_socket(host, port, client_context(tls, alpn, verify=False), name)
        except (OSError, TimeoutError, ConfigError):  # ssl.SSLError is an OSError
            return None
        try:
            der = secure.getpeercert(binary_form=True)
            return x509.load_der_x509_certificate(der) if der else None
        finally:
            secure.close()


def _logged(exc: TlsError) -> TlsError:
    """A TLS failure of the client's handshake, logged once (rpcnet.tcp, INFO)."""
    logger.info("client: %s", exc)
    return exc


def _require_alpn(alpn: str | None) -> str:
    if not alpn:
        raise ConfigError(
            "the tcp transport needs the application protocol id it carries: pass alpn=... "
            "(the RPC engine passes its own; rpcnet.rpc.protocol.ALPN)"
        )
    return alpn


def _require_tls(tls: Any) -> TlsConfig:
    if tls is None:
        raise ConfigError("the tcp transport needs TLS settings: pass tls=TlsConfig(...) (RpcConfig.tls)")
    if not isinstance(tls, TlsConfig):
        raise ConfigError(f"tls must be an rpcnet.config.TlsConfig, got {type(tls).__name__}")
    return tls
