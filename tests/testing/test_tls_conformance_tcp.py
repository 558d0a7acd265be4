"""The TLS conformance suite over real TCP + TLS 1.3 on loopback."""

from __future__ import annotations

from rpcnet.testing.tls_conformance import TlsConformance


class TestTcpTls(TlsConformance):
    transport = "tcp"
    transport_options = {"handshake_timeout": 5.0}
    # Under TLS 1.3 the server checks a client certificate after the client's
    # handshake is done; its alert reaches the client before HTTP/2 starts
    # (rpcnet_tcp.h2) and names the cause. A certificate without the
    # clientAuth usage gets an alert rpcnet.tls has no words for: the
    # message lists the causes and quotes the alert.
    foreign_client_certificate_error = "refused the TLS handshake: unknown issuer"
    expired_client_certificate_error = "refused the TLS handshake: expired certificate"
    server_only_client_certificate_error = "refused our client certificate: .*clientAuth.*server said: .*UNSUPPORTED_CERTIFICATE"
    unreadable_certificate_error = "server.pem' cannot be read"
