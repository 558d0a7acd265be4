"""The transport conformance suite over the in-process ``memory`` transport."""

from __future__ import annotations

from rpcnet.testing.transport_conformance import TransportConformance


class TestMemoryConformance(TransportConformance):
    transport = "memory"
    listen_host = "conformance"
