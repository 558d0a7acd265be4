"""The transport conformance suite over real QUIC on loopback, on the qh3 backend."""

from __future__ import annotations

import pytest

from rpcnet.testing.transport_conformance import TransportConformance

pytest.importorskip("qh3", reason="the qh3 backend needs: pip install 'rpcnet[qh3]'")


class TestQuicQh3Conformance(TransportConformance):
    transport = "quic"
    transport_options = {"backend": "qh3"}
