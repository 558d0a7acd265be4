"""The TLS conformance suite over real QUIC on loopback."""

from __future__ import annotations

from rpcnet.testing.tls_conformance import TlsConformance


class TestQuicTls(TlsConformance):
    transport = "quic"
    transport_options = {"handshake_timeout": 5.0}
    # The server verifies client certificates itself (rpcnet.tls) and sends
    # its reason along with the alert.
    foreign_client_certificate_error = "unknown issuer.*server said: client certificate CN=mallory"
    expired_client_certificate_error = "expired certificate.*CN=late expired on"
    server_only_client_certificate_error = "client certificate was rejected.*EKU"
    unreadable_certificate_error = "not found"
