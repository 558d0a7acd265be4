"""The transport conformance suite over real QUIC on loopback."""

from __future__ import annotations

from rpcnet.testing.transport_conformance import TransportConformance


class TestQuicConformance(TransportConformance):
    transport = "quic"
