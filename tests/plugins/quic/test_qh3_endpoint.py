"""The endpoint cases of test_endpoint.py (restarts and stateless resets, dead
peers and busy probes, Retry, version negotiation, idle timeouts, admission)
on the qh3 backend and across backends."""

from __future__ import annotations

import pytest

pytest.importorskip("qh3", reason="the qh3 backend needs: pip install 'rpcnet[qh3]'")

from .test_endpoint import *  # noqa: E402, F403 - the same cases, run here on other backends


@pytest.fixture(
    params=[("qh3", "qh3"), ("qh3", "aioquic"), ("aioquic", "qh3")],
    ids=["qh3", "qh3-server-aioquic-client", "aioquic-server-qh3-client"],
)
def quic_backends(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param
