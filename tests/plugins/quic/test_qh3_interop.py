"""The stream cases of test_streams.py on the qh3 backend, and across
backends: a qh3 server with aioquic clients and the reverse (the TLS cases,
the same way: tests/testing/test_tls_conformance_quic_qh3.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("qh3", reason="the qh3 backend needs: pip install 'rpcnet[qh3]'")

from .test_streams import *  # noqa: E402, F403 - the same cases, run here on other backends


@pytest.fixture(
    params=[("qh3", "qh3"), ("qh3", "aioquic"), ("aioquic", "qh3")],
    ids=["qh3", "qh3-server-aioquic-client", "aioquic-server-qh3-client"],
)
def quic_backends(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param

# It looks into aioquic's stream table, which qh3 keeps in its native core.
del test_finished_and_reset_streams_are_released  # noqa: F821
