"""rpcnet over its ``tcp`` transport (HTTP/2 over TLS 1.3 over TCP): the same
server and client code as ``targets/rpcnet.py``, default settings."""

from __future__ import annotations

from targets import TlsFiles
from targets import rpcnet as _rpcnet


async def start_server(host: str, tls: TlsFiles) -> _rpcnet.RpcnetServer:
    return await _rpcnet.start_server(host, tls, transport="tcp")


async def connect(host: str, port: int, tls: TlsFiles) -> _rpcnet.RpcnetClient:
    return await _rpcnet.connect(host, port, tls, transport="tcp")
