"""Bundled rpcnet plugin: the ``quic`` transport (QUIC + TLS 1.3 on aioquic).

See docs/transport.md for options, TLS behaviour and how to add another QUIC
library as a backend.
"""

from __future__ import annotations

from rpcnet import hookimpl
from rpcnet.hookspecs import Register

from .options import ALPN, QuicOptions
from .transport import QuicTransport

__all__ = ["QuicTransport", "QuicOptions", "ALPN", "rpcnet_register_transports"]


@hookimpl
def rpcnet_register_transports(register: Register) -> None:
    register(QuicTransport.name, QuicTransport)
