"""The TLS conformance suite over real TCP + TLS 1.3 on loopback."""

from __future__ import annotations

from rpcnet.testing.tls_conformance import TlsConformance


class TestTcpTls(TlsConformance):
    transport = "tcp"
    transport_options = {"handshake_timeout": 5.0}
    # OpenSSL refuses a client certificate before HTTP/2 starts; the client
    # reads it as a closed connection (rpcnet_tcp.h2).
    foreign_client_certificate_error = "refused our client certificate: unknown issuer"
    expired_client_certificate_error = "refused our client certificate: .*expired certificate"
    server_only_client_certificate_error = "refused our client certificate: .*clientAuth"
    unreadable_certificate_error = "server.pem' cannot be read"
