"""The ``quic`` transport strategy: rpcnet streams over QUIC + TLS 1.3."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import attrs

from rpcnet.config import TlsConfig
from rpcnet.errors import ConfigError, TransportError
from rpcnet.tls import load_ca_certificates
from rpcnet.transport import Address, NewStreamCallback, Transport, parse_address

from .backend import AioquicBackend, QuicBackend
from .driver import PeerUnreachable, QuicConnection
from .endpoint import ClientEndpoint, QuicListener
from .options import QuicOptions
from .udp import bind_udp_socket, connect_udp_socket

__all__ = ["QuicTransport"]


def _qh3_backend_class() -> type[QuicBackend]:
    from .qh3_backend import Qh3Backend

    return Qh3Backend


class QuicTransport(Transport):
    """QUIC on aioquic or qh3, chosen by the ``backend`` option; nothing
    above the transport changes."""

    name: ClassVar[str] = "quic"
    Options: ClassVar[type] = QuicOptions
    #: Backend classes by the name the ``backend`` option gives, built on
    #: first use, so importing the plugin never imports a QUIC library.
    backends: ClassVar[dict[str, Callable[[], type[QuicBackend]]]] = {
        "aioquic": lambda: AioquicBackend,
        "qh3": _qh3_backend_class,
    }

    def __init__(self, options: QuicOptions | None = None) -> None:
        super().__init__(options if options is not None else QuicOptions())
        self._backend: QuicBackend | None = None

    @property
    def backend(self) -> QuicBackend:
        if self._backend is None:
            self._backend = self.backends[self.options.backend]()()
        return self._backend

    async def listen(
        self,
        address: Address,
        on_stream: NewStreamCallback,
        *,
        tls: TlsConfig | None = None,
        alpn: str | None = None,
        max_streams: int | None = None,
    ) -> QuicListener:
        tls = _require_tls(tls)
        alpn = _require_alpn(alpn)
        options = self.options
        if max_streams is not None and max_streams != options.max_streams:
            # The caller's credit (the RPC server's per-connection call limit)
            # is the MAX_STREAMS every connection of this listener grants.
            options = attrs.evolve(options, max_streams=max_streams)
        if not tls.cert_file or not tls.key_file:
            raise ConfigError(
                "the quic transport needs a certificate to listen: set tls.cert_file and tls.key_file "
                "(rpcnet certs DIR writes server.pem and server.key)"
            )
        configuration, trusted = _server_tls_material(self.backend, options, tls, alpn)
        host, port = parse_address(address)
        listener = QuicListener(
            backend=self.backend,
            configuration=configuration,
            options=options,
            on_stream=on_stream,
            trusted_cas=trusted,
            reset_key=_stateless_reset_key(tls.key_file),
            alpn=alpn,
            tls_loader=lambda new: _server_tls_material(self.backend, options, _require_tls(new), alpn),
        )
        try:
            await bind_udp_socket(listener, host, port, read_batch=options.listener_read_batch)
        except OSError as exc:
            raise TransportError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        return listener

    async def connect(
        self,
        address: Address,
        *,
        tls: TlsConfig | None = None,
        server_name: str | None = None,
        alpn: str | None = None,
    ) -> QuicConnection:
        alpn = _require_alpn(alpn)
        if tls is None:
            tls = TlsConfig()  # verify against the system trust store
        tls = _require_tls(tls)
        host, port = parse_address(address)
        name = server_name or tls.server_name or host
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM), self.options.handshake_timeout
            )
        except (TimeoutError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise TransportError(f"cannot resolve {host!r}: {reason}") from None
        # A name may resolve to several addresses (localhost: ::1 and
        # 127.0.0.1); try the next one when nobody listens on this one.
        candidates = list(dict.fromkeys((family, sockaddr) for family, _, _, _, sockaddr in infos))
        failure: PeerUnreachable | None = None
        for family, sockaddr in candidates:
            try:
                return await self._connect_to(family, sockaddr, tls, name, alpn)
            except PeerUnreachable as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def _connect_to(self, family: int, sockaddr: Any, tls: TlsConfig, name: str, alpn: str) -> QuicConnection:
        options = self.options
        quic = self.backend.client_connection(options, tls, name, alpn)
        endpoint = ClientEndpoint()
        try:
            udp = await connect_udp_socket(endpoint, family, sockaddr, bind_address=options.bind_address)
        except OSError as exc:
            raise PeerUnreachable(f"cannot reach {sockaddr[0]}:{sockaddr[1]}: {exc.strerror or exc}") from None
        connection = QuicConnection(
            backend=self.backend,
            quic=quic,
            options=options,
            endpoint=endpoint,
            is_client=True,
            peer_address=udp.get_extra_info("peername"),
            server_name=name,
            ca_file=tls.ca_file,
            sent_certificate=tls.cert_file is not None,
            alpn=alpn,
        )
        endpoint.attach(connection)
        connection.start_client()
        try:
            await connection.wait_ready()
        except BaseException:
            connection.close(0, "connect abandoned")
            raise
        return connection


def _stateless_reset_key(key_file: str) -> bytes:
    """A key for stateless reset tokens that stays the same across restarts
    of a server (it comes from the server's private key) and reveals nothing
    about that private key."""
    try:
        secret = Path(key_file).read_bytes()
    except OSError as exc:
        raise ConfigError(f"tls.key_file {key_file!r} cannot be read: {exc.strerror}") from None
    return hashlib.sha256(b"rpcnet stateless reset key\0" + secret).digest()


def _server_tls_material(backend: QuicBackend, options: QuicOptions, tls: TlsConfig, alpn: str) -> tuple[Any, Any]:
    """The QUIC server configuration and the client CAs (mutual TLS) that ``tls`` names."""
    if not tls.cert_file or not tls.key_file:
        raise ConfigError(
            "the quic transport needs a certificate to listen: set tls.cert_file and tls.key_file "
            "(rpcnet certs DIR writes server.pem and server.key)"
        )
    trusted = None
    if tls.require_client_cert:
        if not tls.ca_file:
            raise ConfigError("tls.require_client_cert needs tls.ca_file: the CA that issues client certificates")
        trusted = load_ca_certificates(tls.ca_file)
    return backend.server_configuration(options, tls, alpn), trusted


def _require_alpn(alpn: str | None) -> str:
    if not alpn:
        raise ConfigError(
            "the quic transport needs the application protocol id it carries: pass alpn=... "
            "(the RPC engine passes its own; rpcnet.rpc.protocol.ALPN)"
        )
    return alpn


def _require_tls(tls: Any) -> TlsConfig:
    if tls is None:
        raise ConfigError("the quic transport needs TLS settings: pass tls=TlsConfig(...) (RpcConfig.tls)")
    if not isinstance(tls, TlsConfig):
        raise ConfigError(f"tls must be an rpcnet.config.TlsConfig, got {type(tls).__name__}")
    return tls

