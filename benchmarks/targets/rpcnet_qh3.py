"""rpcnet on its qh3 QUIC backend (options.quic.backend = "qh3"); otherwise the rpcnet target."""

from __future__ import annotations

from targets import rpcnet as _rpcnet

_rpcnet.BACKEND = "qh3"
connect, start_server = _rpcnet.connect, _rpcnet.start_server

__all__ = ["connect", "start_server"]
