"""Bundled rpcnet plugin: the ``tcp`` transport (HTTP/2 over TLS 1.3 over TCP).

For networks where UDP is blocked or proxied badly, and for bulk transfers on
a LAN, where QUIC in Python is bound by per-packet cost. See
docs/transport.md for the protocol mapping, options and when to pick it.
"""

from __future__ import annotations

from rpcnet import hookimpl
from rpcnet.hookspecs import Register

from .options import TcpOptions
from .transport import TcpTransport

__all__ = ["TcpTransport", "TcpOptions", "rpcnet_register_transports"]


@hookimpl
def rpcnet_register_transports(register: Register) -> None:
    register(TcpTransport.name, TcpTransport)
