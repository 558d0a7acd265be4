"""The transport conformance suite over real TCP + TLS 1.3 on loopback (HTTP/2 framing)."""

from __future__ import annotations

from rpcnet.testing.transport_conformance import TransportConformance


class TestTcpConformance(TransportConformance):
    transport = "tcp"
