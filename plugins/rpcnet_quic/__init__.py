"""Bundled rpcnet plugin: the ``quic`` transport (QUIC + TLS 1.3 on aioquic).

See docs/transport.md for options, TLS behaviour and how to add another QUIC
library as a backend.
"""

from __future__ import annotations

import logging

from rpcnet import hookimpl
from rpcnet.deprecation import moved_names
from rpcnet.hookspecs import Register

from .options import QuicOptions
from .transport import QuicTransport

__all__ = ["QuicTransport", "QuicOptions", "rpcnet_register_transports"]

#: The protocol id is the RPC engine's (``rpcnet.rpc.protocol.ALPN``), handed to the transport.
__getattr__ = moved_names(__name__, {"ALPN": "rpcnet.rpc.protocol"}, removed_in="0.3")

# aioquic logs on "quic" (a warning per failed handshake, among others).
# Without a handler of its own, logging's last-resort handler would print
# those lines to stderr in applications that never configured logging.
logging.getLogger("quic").addHandler(logging.NullHandler())


@hookimpl
def rpcnet_register_transports(register: Register) -> None:
    register(QuicTransport.name, QuicTransport)
