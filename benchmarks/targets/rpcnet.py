"""rpcnet over its QUIC transport, through the public client and server API.

Serializer, limits and transport options are rpcnet's defaults; only the TLS
files are set, the same ones the other TLS targets load.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from targets import TargetUnavailable, TlsFiles, decode_download, download_message

try:
    from rpcnet import RpcClient, RpcConfig, RpcServer, TlsConfig, UnknownStrategyError
except ImportError as exc:
    raise TargetUnavailable(
        f"rpcnet does not provide RpcServer/RpcClient in this checkout ({exc}); "
        "the RPC engine has to be built before rpcnet can be measured"
    ) from exc


#: The QUIC backend (rpcnet_qh3 sets "qh3"; this target stays on aioquic).
BACKEND = "aioquic"


def _quic_options() -> dict:
    options = {"backend": BACKEND}
    size = os.environ.get("RPCNET_BENCH_MAX_DATAGRAM")
    if size:
        options["max_datagram_size"] = int(size)
    return {"quic": options}


class RpcnetServer:
    def __init__(self, server: RpcServer) -> None:
        self._server = server
        self.port: int = server.address[1]

    async def close(self) -> None:
        await self._server.stop(grace=1.0)


async def start_server(host: str, tls: TlsFiles) -> RpcnetServer:
    config = RpcConfig(
        transport="quic", tls=TlsConfig(cert_file=tls.cert_file, key_file=tls.key_file), options=_quic_options()
    )
    try:
        server = RpcServer(config)
    except UnknownStrategyError as exc:
        raise TargetUnavailable(f"rpcnet cannot build its QUIC transport here: {exc}") from exc

    @server.unary("echo")
    async def echo(request: bytes, ctx) -> bytes:
        return request

    @server.server_streaming("download")
    async def download(request: bytes, ctx) -> AsyncIterator[bytes]:
        count, size = decode_download(request)
        message = download_message(size)
        for _ in range(count):
            yield message

    await server.start((host, 0))
    return RpcnetServer(server)


class RpcnetClient:
    def __init__(self, client: RpcClient) -> None:
        self._client = client

    async def unary(self, payload: bytes) -> bytes:
        return await self._client.call("echo", payload)

    async def download(self, request: bytes) -> AsyncIterator[bytes]:
        async for message in self._client.call_server_streaming("download", request):
            yield message

    async def close(self) -> None:
        await self._client.__aexit__(None, None, None)


async def connect(host: str, port: int, tls: TlsFiles) -> RpcnetClient:
    config = RpcConfig(
        transport="quic", tls=TlsConfig(ca_file=tls.ca_file, server_name=tls.server_name), options=_quic_options()
    )
    client = RpcClient((host, port), config)
    await client.__aenter__()
    return RpcnetClient(client)
