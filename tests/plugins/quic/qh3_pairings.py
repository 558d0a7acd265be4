"""The backend pairings the qh3 modules run their borrowed cases on:
``from .qh3_pairings import quic_backends`` overrides conftest's fixture
(aioquic on both sides) for that module, and skips it without qh3."""

from __future__ import annotations

import pytest

pytest.importorskip("qh3", reason="the qh3 backend needs: pip install 'rpcnet[qh3]'")


@pytest.fixture(
    params=[("qh3", "qh3"), ("qh3", "aioquic"), ("aioquic", "qh3")],
    ids=["qh3", "qh3-server-aioquic-client", "aioquic-server-qh3-client"],
)
def quic_backends(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param
