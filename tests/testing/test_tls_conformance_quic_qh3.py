"""The TLS conformance suite over QUIC on the qh3 backend, and across
backends: a qh3 server with aioquic clients and the reverse. Every error
message must read the same whichever backend runs."""

from __future__ import annotations

from typing import Any

import pytest

from . import test_tls_conformance_quic as quic

pytest.importorskip("qh3", reason="the qh3 backend needs: pip install 'rpcnet[qh3]'")


class TestQuicQh3Tls(quic.TestQuicTls):
    @pytest.fixture(
        params=[("qh3", "qh3"), ("qh3", "aioquic"), ("aioquic", "qh3")],
        ids=["qh3", "qh3-server-aioquic-client", "aioquic-server-qh3-client"],
    )
    def tls_transport_options(self, request: pytest.FixtureRequest) -> tuple[dict[str, Any], dict[str, Any]]:
        server, client = request.param
        return {**self.transport_options, "backend": server}, {**self.transport_options, "backend": client}
