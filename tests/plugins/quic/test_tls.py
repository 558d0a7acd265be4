"""TLS over QUIC: every verification failure names its cause; mutual TLS exposes the identity."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rpcnet_quic import QuicOptions, QuicTransport

from rpcnet.config import TlsConfig
from rpcnet.errors import ConfigError, TlsError
from rpcnet.rpc.protocol import ALPN

from .helpers import DEADLINE, Recorder, until


async def _connect(server, tls: TlsConfig, server_name: str | None = None):
    transport = QuicTransport(QuicOptions(handshake_timeout=DEADLINE, backend=server.client_backend))
    return await asyncio.wait_for(transport.connect(server.address, alpn=ALPN, tls=tls, server_name=server_name), DEADLINE)


def _der(path: str) -> bytes:
    return x509.load_pem_x509_certificate(Path(path).read_bytes()).public_bytes(Encoding.DER)


async def test_wrong_ca_is_reported_as_unknown_issuer(start_server, certs) -> None:
    server = await start_server()
    with pytest.raises(TlsError, match="unknown issuer") as caught:
        await _connect(server, certs.client_tls(ca_file=certs.path("other-ca.pem")))
    assert "other-ca.pem" in str(caught.value)  # says which CA file was used


async def test_server_certificate_from_another_ca_is_unknown_issuer(start_server, certs) -> None:
    server = await start_server(
        tls=certs.server_tls(cert_file=certs.path("other-server.pem"), key_file=certs.path("other-server.key"))
    )
    with pytest.raises(TlsError, match="unknown issuer.*some other CA"):
        await _connect(server, certs.client_tls())


async def test_expired_server_certificate(start_server, certs) -> None:
    server = await start_server(
        tls=certs.server_tls(cert_file=certs.path("expired-server.pem"), key_file=certs.path("expired-server.key"))
    )
    with pytest.raises(TlsError, match="expired certificate: the server certificate .* expired on"):
        await _connect(server, certs.client_tls())


async def test_server_name_mismatch(start_server, certs) -> None:
    server = await start_server()
    with pytest.raises(TlsError, match="server name mismatch: we expected 'db.example.com'.*localhost"):
        await _connect(server, certs.client_tls(), server_name="db.example.com")


async def test_ip_address_in_san_verifies(start_server, certs) -> None:
    server = await start_server()
    connection = await _connect(server, certs.client_tls(server_name=None))  # host 127.0.0.1 from the address
    try:
        assert connection.peer.identity == "localhost"
    finally:
        connection.close()


async def test_missing_client_certificate_when_server_requires_one(start_server, certs) -> None:
    server = await start_server(tls=certs.server_tls(require_client_cert=True))
    with pytest.raises(TlsError, match="requires a client certificate"):
        await _connect(server, certs.client_tls())
    await until(lambda: server.listener._all == set())
    assert server.listener.connections() == []


async def test_client_certificate_from_another_ca_is_refused(start_server, certs) -> None:
    server = await start_server(tls=certs.server_tls(require_client_cert=True))
    tls = certs.client_tls(cert_file=certs.path("other-client.pem"), key_file=certs.path("other-client.key"))
    with pytest.raises(TlsError, match="unknown issuer.*server said: client certificate CN=mallory"):
        await _connect(server, tls)
    assert server.accepted.empty()


async def test_expired_client_certificate_is_refused(start_server, certs) -> None:
    server = await start_server(tls=certs.server_tls(require_client_cert=True))
    tls = certs.client_tls(cert_file=certs.path("expired-client.pem"), key_file=certs.path("expired-client.key"))
    with pytest.raises(TlsError, match="expired certificate.*CN=late expired on"):
        await _connect(server, tls)


async def test_mutual_tls_exposes_the_verified_identity(start_server, certs) -> None:
    server = await start_server(tls=certs.server_tls(require_client_cert=True))
    tls = certs.client_tls(cert_file=certs.path("alice.pem"), key_file=certs.path("alice.key"))
    connection = await _connect(server, tls)
    try:
        recorder = Recorder()
        stream = await connection.open_stream(recorder)
        stream.send(b"who am i", end_stream=True)
        server_stream, _ = await asyncio.wait_for(server.accepted.get(), DEADLINE)
        peer = server_stream.connection.peer
        assert peer.identity == "alice"
        assert peer.certificate == _der(certs.path("alice.pem"))
        assert peer.alpn == "rpcnet/1"
        assert await asyncio.wait_for(recorder.finished, DEADLINE) == b"who am i"
        # The client knows whom it verified, too.
        assert connection.peer.identity == "localhost"
        assert connection.peer.certificate == _der(certs.path("server.pem"))
    finally:
        connection.close()


async def test_without_mutual_tls_the_server_sees_no_identity(start_server, connect, certs) -> None:
    server = await start_server()
    tls = certs.client_tls(cert_file=certs.path("alice.pem"), key_file=certs.path("alice.key"))
    connection = await connect(server, tls=tls)
    stream = await connection.open_stream(Recorder())
    stream.send(b"hi")
    server_stream, _ = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    assert server_stream.connection.peer.identity is None
    assert server_stream.connection.peer.certificate is None


async def test_configuration_errors_are_clear(certs) -> None:
    transport = QuicTransport()
    with pytest.raises(ConfigError, match="needs a certificate to listen"):
        await transport.listen(("127.0.0.1", 0), lambda s: Recorder(), alpn=ALPN, tls=TlsConfig(ca_file=certs.path("ca.pem")))
    with pytest.raises(ConfigError, match="require_client_cert needs tls.ca_file"):
        await transport.listen(
            ("127.0.0.1", 0), lambda s: Recorder(), alpn=ALPN, tls=certs.server_tls(ca_file=None, require_client_cert=True)
        )
    with pytest.raises(ConfigError, match="needs TLS settings"):
        await transport.listen(("127.0.0.1", 0), lambda s: Recorder(), alpn=ALPN, tls=None)
    with pytest.raises(ConfigError, match="missing.pem"):
        await transport.connect(("127.0.0.1", 9), alpn=ALPN, tls=TlsConfig(ca_file="/nonexistent/missing.pem"))
    with pytest.raises(ConfigError, match="not found"):
        await transport.listen(
            ("127.0.0.1", 0), lambda s: Recorder(), alpn=ALPN, tls=certs.server_tls(cert_file="/nonexistent/server.pem")
        )


async def test_a_node_certificate_works_both_ways_under_mutual_tls(start_server, certs) -> None:
    # Cluster nodes present server.pem as servers and as clients.
    server = await start_server(tls=certs.server_tls(require_client_cert=True))
    tls = certs.client_tls(cert_file=certs.path("server.pem"), key_file=certs.path("server.key"))
    connection = await _connect(server, tls)
    try:
        await until(lambda: len(server.listener.connections()) == 1)
        assert server.listener.connections()[0].peer.identity == "localhost"
    finally:
        connection.close()


async def test_a_server_only_certificate_is_refused_as_a_client_certificate(start_server, certs, tmp_path) -> None:
    server = await start_server(tls=certs.server_tls(require_client_cert=True))
    certs.ca.issue_server(client=False).write(tmp_path / "s.pem", tmp_path / "s.key")
    tls = certs.client_tls(cert_file=str(tmp_path / "s.pem"), key_file=str(tmp_path / "s.key"))
    with pytest.raises(TlsError, match="client certificate was rejected.*EKU"):
        await _connect(server, tls)


async def test_a_peer_speaking_another_protocol_version_is_refused(start_server, certs) -> None:
    # The engine hands the transport its protocol id; a server of another
    # version refuses the handshake, and the client's error names what it offered.
    server = await start_server()
    transport = QuicTransport(QuicOptions(handshake_timeout=DEADLINE, backend=server.client_backend))
    with pytest.raises(TlsError) as caught:
        await asyncio.wait_for(
            transport.connect(server.address, alpn="rpcnet/999", tls=certs.client_tls()), DEADLINE
        )
    assert "does not speak the protocol version we offered ('rpcnet/999')" in str(caught.value)


async def test_the_transport_refuses_to_run_without_a_protocol_id(certs) -> None:
    transport = QuicTransport(QuicOptions())
    with pytest.raises(ConfigError, match="needs the application protocol id"):
        await transport.listen(("127.0.0.1", 0), lambda s: Recorder(), tls=certs.server_tls())
    with pytest.raises(ConfigError, match="needs the application protocol id"):
        await transport.connect(("127.0.0.1", 9), tls=certs.client_tls())


async def test_reloaded_certificates_serve_new_connections_and_established_ones_stay(start_server, certs) -> None:
    server = await start_server()
    established = await _connect(server, certs.client_tls())
    # A file that cannot be loaded changes nothing.
    with pytest.raises(ConfigError):
        server.listener.reload_tls(certs.server_tls(cert_file=certs.path("missing.pem")))
    (await _connect(server, certs.client_tls())).close()

    server.listener.reload_tls(
        certs.server_tls(cert_file=certs.path("other-server.pem"), key_file=certs.path("other-server.key"))
    )
    with pytest.raises(TlsError, match="unknown issuer"):
        await _connect(server, certs.client_tls())  # the new certificate is the other CA's
    renewed = await _connect(server, certs.client_tls(ca_file=certs.path("other-ca.pem")))
    assert not renewed.is_closed and not established.is_closed
    renewed.close()
