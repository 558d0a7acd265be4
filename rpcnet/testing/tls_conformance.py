"""The TLS conformance suite: what every TLS-speaking transport must verify and report.

The checks are the transport's TLS stack's, the words are
:mod:`rpcnet.tls`'s: whichever transport runs, a refused certificate names
the check that failed (unknown issuer, expired certificate, server name
mismatch, missing client certificate, another protocol version),
settings that cannot work are refused before any handshake with errors
naming them, mutual TLS gives both ends the peer's verified identity and
certificate, and ``Listener.reload_tls`` serves new connections with new
material while established ones stay. The tests drive a transport directly through
``rpcnet.transport`` (``listen``, ``connect``, ``open_stream``), for a
transport chosen by name.

Run it from your own test module (pytest-asyncio must be installed)::

    from rpcnet.testing.tls_conformance import TlsConformance

    class TestMyTransportTls(TlsConformance):
        transport = "my-transport"
        transport_options = {"handshake_timeout": 5.0}   # RpcConfig.options[transport]

Servers and clients get different options by overriding the
``tls_transport_options`` fixture, which returns ``(server options, client
options)``. Where a transport's TLS stack words a refused client
certificate its own way, the ``*_client_certificate_error`` class
attributes hold the pattern its message matches.

:class:`Certs` (and :meth:`Certs.create`) is the certificate set the suite
uses, for a transport's own TLS tests too: a CA with ``localhost`` server
and ``client``/``alice`` client certificates, expired ones, and a second,
unrelated CA with its own server and client certificates.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..certs import CertificateAuthority, expired_validity, write_dev_certs
from ..config import TlsConfig
from ..errors import ConfigError, TlsError
from ..plugins import make_plugin_manager
from ..rpc.protocol import ALPN
from ..transport import Connection, Listener, Stream, Transport
from .waiting import wait_until

__all__ = ["TlsConformance", "TlsHarness", "TlsServer", "Certs"]

#: Every single wait of the suite ends by then at the latest.
DEADLINE = 10.0


@attrs.frozen
class Certs:
    """Certificate files in ``directory`` and the CA that issued them."""

    directory: Path
    ca: CertificateAuthority

    @classmethod
    def create(cls, directory: Path) -> Certs:
        """Write the set into ``directory``: ``ca``, ``server`` (``localhost``,
        127.0.0.1, ::1), clients ``client`` and ``alice``; ``expired-server``,
        ``expired-client`` (CN ``late``); ``other-ca`` ("some other CA") with
        ``other-server`` and ``other-client`` (CN ``mallory``). Each as
        ``NAME.pem`` and ``NAME.key``."""
        write_dev_certs(directory, server_names=["localhost"], client_names=["client", "alice"], days=30)
        ca = CertificateAuthority.load(directory / "ca.pem", directory / "ca.key")
        not_before, not_after = expired_validity()
        ca.issue_server(not_before=not_before, not_after=not_after).write(
            directory / "expired-server.pem", directory / "expired-server.key"
        )
        ca.issue_client("late", not_before=not_before, not_after=not_after).write(
            directory / "expired-client.pem", directory / "expired-client.key"
        )
        other = CertificateAuthority.create("some other CA")
        other.write(directory / "other-ca.pem", directory / "other-ca.key")
        other.issue_server().write(directory / "other-server.pem", directory / "other-server.key")
        other.issue_client("mallory").write(directory / "other-client.pem", directory / "other-client.key")
        return cls(directory, ca)

    def path(self, name: str) -> str:
        return str(self.directory / name)

    def der(self, name: str) -> bytes:
        """The DER bytes of the certificate in ``name``."""
        return x509.load_pem_x509_certificate(Path(self.path(name)).read_bytes()).public_bytes(Encoding.DER)

    def server_tls(self, **changes: Any) -> TlsConfig:
        values = {"cert_file": self.path("server.pem"), "key_file": self.path("server.key"), "ca_file": self.path("ca.pem")}
        values.update(changes)
        return TlsConfig(**values)

    def client_tls(self, **changes: Any) -> TlsConfig:
        values = {"ca_file": self.path("ca.pem"), "server_name": "localhost"}
        values.update(changes)
        return TlsConfig(**values)

    def client_with(self, name: str, **changes: Any) -> TlsConfig:
        """Client settings presenting the certificate ``name``.pem/.key."""
        return self.client_tls(cert_file=self.path(f"{name}.pem"), key_file=self.path(f"{name}.key"), **changes)


class _Recorder:
    """A stream handler that keeps what arrives; ``finished`` resolves on FIN."""

    def __init__(self) -> None:
        self.data = b""
        self.finished: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes, end_stream: bool) -> None:
        self.data += data
        if end_stream and not self.finished.done():
            self.finished.set_result(self.data)

    def stream_reset(self, error_code: int) -> None:
        if not self.finished.done():
            self.finished.set_exception(AssertionError(f"stream reset ({error_code})"))


@attrs.define
class TlsServer:
    listener: Listener
    #: Every stream a client opened, in order.
    accepted: asyncio.Queue[Stream]

    @property
    def address(self) -> Any:
        return self.listener.address


@attrs.define
class TlsHarness:
    """Listeners and connections of one test, all closed when it ends."""

    transport: str
    server_options: dict[str, Any]
    client_options: dict[str, Any]
    certs: Certs
    servers: list[TlsServer] = attrs.field(factory=list)
    connections: list[Connection] = attrs.field(factory=list)

    def _transport(self, options: dict[str, Any]) -> Transport:
        transport: Transport = make_plugin_manager().create("transport", self.transport, options or None)
        return transport

    async def start_server(self, tls: TlsConfig | None = None) -> TlsServer:
        accepted: asyncio.Queue[Stream] = asyncio.Queue()

        def on_stream(stream: Stream) -> _Recorder:
            accepted.put_nowait(stream)
            return _Recorder()

        listener = await self._transport(self.server_options).listen(
            ("127.0.0.1", 0), on_stream, alpn=ALPN, tls=tls or self.certs.server_tls()
        )
        server = TlsServer(listener, accepted)
        self.servers.append(server)
        return server

    async def connect(
        self, server: TlsServer, tls: TlsConfig | None = None, *, server_name: str | None = None, alpn: str = ALPN
    ) -> Connection:
        connection = await asyncio.wait_for(
            self._transport(self.client_options).connect(
                server.address, alpn=alpn, tls=tls or self.certs.client_tls(), server_name=server_name
            ),
            DEADLINE,
        )
        self.connections.append(connection)
        return connection

    async def listen_with(self, tls: TlsConfig | None, *, alpn: str | None = ALPN) -> Listener:
        """``listen`` with exactly these settings (for the errors they get)."""
        listener = await self._transport(self.server_options).listen(
            ("127.0.0.1", 0), lambda stream: _Recorder(), alpn=alpn, tls=tls
        )
        self.servers.append(TlsServer(listener, asyncio.Queue()))
        return listener

    async def connect_with(self, tls: TlsConfig | None, *, alpn: str | None = ALPN) -> Connection:
        """``connect`` to a port nobody listens on, with exactly these settings."""
        connection = await asyncio.wait_for(
            self._transport(self.client_options).connect(("127.0.0.1", 9), alpn=alpn, tls=tls), DEADLINE
        )
        self.connections.append(connection)
        return connection

    async def close(self) -> None:
        for connection in self.connections:
            connection.close()
        for server in self.servers:
            await asyncio.wait_for(server.listener.close(), DEADLINE)


class TlsConformance:
    """The suite. Subclass it with ``transport = "name"`` in a test module."""

    #: The transport strategy's registered name.
    transport: ClassVar[str] = ""
    #: Its options (``RpcConfig.options[transport]``), the same on both sides.
    transport_options: ClassVar[dict[str, Any]] = {}
    #: What the client's error for a refused client certificate matches
    #: (``re.search``): one from another CA, an expired one, and a server-only
    #: one (no ``clientAuth`` usage).
    foreign_client_certificate_error: ClassVar[str] = "unknown issuer"
    expired_client_certificate_error: ClassVar[str] = "expired certificate"
    server_only_client_certificate_error: ClassVar[str] = "client certificate"
    #: What the error for a certificate file that cannot be read matches.
    unreadable_certificate_error: ClassVar[str] = "/nonexistent/server.pem"

    pytestmark = [pytest.mark.asyncio]

    # -- fixtures ----------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def tls_certs(cls, tmp_path_factory: pytest.TempPathFactory) -> Certs:
        return Certs.create(tmp_path_factory.mktemp("tls-conformance-certs"))

    @pytest.fixture
    def tls_transport_options(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The options of (servers, clients); override to make them differ."""
        return dict(self.transport_options), dict(self.transport_options)

    @pytest_asyncio.fixture
    async def tls(
        self, tls_certs: Certs, tls_transport_options: tuple[dict[str, Any], dict[str, Any]]
    ) -> AsyncIterator[TlsHarness]:
        if not self.transport:
            pytest.fail(f"{type(self).__name__} must set transport = '<strategy name>'")
        server_options, client_options = tls_transport_options
        harness = TlsHarness(self.transport, server_options, client_options, tls_certs)
        try:
            yield harness
        finally:
            await harness.close()

    # -- settings refused before any handshake ------------------------------

    async def test_configuration_errors_are_clear(self, tls: TlsHarness) -> None:
        certs, listen = tls.certs, tls.listen_with
        with pytest.raises(ConfigError, match="needs a certificate to listen"):
            await listen(TlsConfig(ca_file=certs.path("ca.pem")))
        with pytest.raises(ConfigError, match="require_client_cert needs tls.ca_file"):
            await listen(certs.server_tls(ca_file=None, require_client_cert=True))
        with pytest.raises(ConfigError, match="needs TLS settings"):
            await listen(None)
        with pytest.raises(ConfigError, match=self.unreadable_certificate_error):
            await listen(certs.server_tls(cert_file="/nonexistent/server.pem"))
        with pytest.raises(ConfigError, match="missing.pem"):
            await tls.connect_with(TlsConfig(ca_file="/nonexistent/missing.pem"))

    async def test_the_transport_refuses_to_run_without_a_protocol_id(self, tls: TlsHarness) -> None:
        with pytest.raises(ConfigError, match="needs the application protocol id"):
            await tls.listen_with(tls.certs.server_tls(), alpn=None)
        with pytest.raises(ConfigError, match="needs the application protocol id"):
            await tls.connect_with(tls.certs.client_tls(), alpn=None)

    # -- the server's certificate, checked by the client --------------------

    async def test_wrong_ca_is_reported_as_unknown_issuer(self, tls: TlsHarness) -> None:
        server = await tls.start_server()
        with pytest.raises(TlsError, match="unknown issuer") as caught:
            await tls.connect(server, tls.certs.client_tls(ca_file=tls.certs.path("other-ca.pem")))
        assert "other-ca.pem" in str(caught.value)  # says which CA file was used

    async def test_server_certificate_from_another_ca_is_unknown_issuer(self, tls: TlsHarness) -> None:
        certs = tls.certs
        server = await tls.start_server(
            certs.server_tls(cert_file=certs.path("other-server.pem"), key_file=certs.path("other-server.key"))
        )
        with pytest.raises(TlsError, match="unknown issuer.*some other CA"):
            await tls.connect(server)

    async def test_expired_server_certificate(self, tls: TlsHarness) -> None:
        certs = tls.certs
        server = await tls.start_server(
            certs.server_tls(cert_file=certs.path("expired-server.pem"), key_file=certs.path("expired-server.key"))
        )
        with pytest.raises(TlsError, match="expired certificate: the server certificate .* expired on"):
            await tls.connect(server)

    async def test_server_name_mismatch(self, tls: TlsHarness) -> None:
        server = await tls.start_server()
        with pytest.raises(TlsError, match="server name mismatch: we expected 'db.example.com'.*localhost"):
            await tls.connect(server, server_name="db.example.com")

    async def test_ip_address_in_san_verifies(self, tls: TlsHarness) -> None:
        server = await tls.start_server()
        connection = await tls.connect(server, tls.certs.client_tls(server_name=None))  # host 127.0.0.1
        assert connection.peer.identity == "localhost"

    async def test_a_peer_speaking_another_protocol_version_is_refused(self, tls: TlsHarness) -> None:
        # The engine hands the transport its protocol id; a server of another
        # version refuses the handshake, and the client's error names what it offered.
        server = await tls.start_server()
        with pytest.raises(TlsError) as caught:
            await tls.connect(server, alpn="rpcnet/999")
        assert "does not speak the protocol version we offered ('rpcnet/999')" in str(caught.value)

    # -- mutual TLS: the client's certificate, checked by the server -------

    async def test_missing_client_certificate_when_server_requires_one(self, tls: TlsHarness) -> None:
        server = await tls.start_server(tls.certs.server_tls(require_client_cert=True))
        with pytest.raises(TlsError, match="requires a client certificate"):
            await tls.connect(server)
        await wait_until(lambda: server.listener.connections() == [], DEADLINE)

    async def test_client_certificate_from_another_ca_is_refused(self, tls: TlsHarness) -> None:
        server = await tls.start_server(tls.certs.server_tls(require_client_cert=True))
        with pytest.raises(TlsError, match=self.foreign_client_certificate_error):
            await tls.connect(server, tls.certs.client_with("other-client"))
        assert server.accepted.empty()

    async def test_expired_client_certificate_is_refused(self, tls: TlsHarness) -> None:
        server = await tls.start_server(tls.certs.server_tls(require_client_cert=True))
        with pytest.raises(TlsError, match=self.expired_client_certificate_error):
            await tls.connect(server, tls.certs.client_with("expired-client"))

    async def test_a_server_only_certificate_is_refused_as_a_client_certificate(
        self, tls: TlsHarness, tmp_path: Path
    ) -> None:
        server = await tls.start_server(tls.certs.server_tls(require_client_cert=True))
        tls.certs.ca.issue_server(client=False).write(tmp_path / "s.pem", tmp_path / "s.key")
        client = tls.certs.client_tls(cert_file=str(tmp_path / "s.pem"), key_file=str(tmp_path / "s.key"))
        with pytest.raises(TlsError, match=self.server_only_client_certificate_error):
            await tls.connect(server, client)

    async def test_mutual_tls_exposes_the_verified_identity(self, tls: TlsHarness) -> None:
        server = await tls.start_server(tls.certs.server_tls(require_client_cert=True))
        connection = await tls.connect(server, tls.certs.client_with("alice"))
        recorder = _Recorder()
        stream = await connection.open_stream(recorder)
        stream.send(b"who am i", end_stream=True)
        server_stream = await asyncio.wait_for(server.accepted.get(), DEADLINE)
        server_stream.send(b"alice", end_stream=True)
        peer = server_stream.connection.peer
        assert peer.identity == "alice"
        assert peer.certificate == tls.certs.der("alice.pem")
        assert peer.alpn == ALPN
        assert await asyncio.wait_for(recorder.finished, DEADLINE) == b"alice"
        # The client knows whom it verified, too.
        assert connection.peer.identity == "localhost"
        assert connection.peer.certificate == tls.certs.der("server.pem")

    async def test_without_mutual_tls_the_server_sees_no_identity(self, tls: TlsHarness) -> None:
        server = await tls.start_server()
        connection = await tls.connect(server, tls.certs.client_with("alice"))
        stream = await connection.open_stream(_Recorder())
        stream.send(b"hi")
        server_stream = await asyncio.wait_for(server.accepted.get(), DEADLINE)
        assert server_stream.connection.peer.identity is None
        assert server_stream.connection.peer.certificate is None

    async def test_a_node_certificate_works_both_ways_under_mutual_tls(self, tls: TlsHarness) -> None:
        # Cluster nodes present server.pem as servers and as clients.
        server = await tls.start_server(tls.certs.server_tls(require_client_cert=True))
        await tls.connect(server, tls.certs.client_with("server"))
        await wait_until(lambda: len(server.listener.connections()) == 1, DEADLINE)
        assert server.listener.connections()[0].peer.identity == "localhost"

    # -- certificate reload ---------------------------------------------------

    async def test_reloaded_certificates_serve_new_connections_and_established_ones_stay(
        self, tls: TlsHarness
    ) -> None:
        certs = tls.certs
        server = await tls.start_server()
        established = await tls.connect(server)
        # A file that cannot be loaded changes nothing.
        with pytest.raises(ConfigError):
            server.listener.reload_tls(certs.server_tls(cert_file=certs.path("missing.pem")))
        (await tls.connect(server)).close()

        server.listener.reload_tls(
            certs.server_tls(cert_file=certs.path("other-server.pem"), key_file=certs.path("other-server.key"))
        )
        with pytest.raises(TlsError, match="unknown issuer"):
            await tls.connect(server)  # the new certificate is the other CA's
        renewed = await tls.connect(server, certs.client_tls(ca_file=certs.path("other-ca.pem")))
        assert not renewed.is_closed and not established.is_closed
