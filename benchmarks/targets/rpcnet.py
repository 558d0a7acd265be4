"""rpcnet over its QUIC transport, through the public client and server API
(``rpcnet_tcp`` runs the same code over the ``tcp`` transport).

Serializer, limits and transport options are rpcnet's defaults; only the TLS
files are set, the same ones the other TLS targets load.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import attrs

from targets import TargetUnavailable, TlsFiles, decode_download, download_message

try:
    from rpcnet import RpcClient, RpcConfig, RpcServer, Service, TlsConfig, UnknownStrategyError
except ImportError as exc:
    raise TargetUnavailable(
        f"rpcnet does not provide RpcServer/RpcClient in this checkout ({exc}); "
        "the RPC engine has to be built before rpcnet can be measured"
    ) from exc


@attrs.frozen
class Payload:
    data: bytes


@attrs.frozen
class Download:
    count: int
    size: int


class Bench(Service, Protocol, name="bench"):
    """The typed twins of ``echo`` and ``download``."""

    async def echo(self, request: Payload) -> Payload: ...

    def download(self, request: Download) -> AsyncIterator[Payload]: ...


class BenchService(Bench):
    async def echo(self, request: Payload) -> Payload:
        return request

    async def download(self, request: Download) -> AsyncIterator[Payload]:
        message = Payload(download_message(request.size))
        for _ in range(request.count):
            yield message


#: The QUIC backend (rpcnet_qh3 sets "qh3"; this target stays on aioquic).
BACKEND = "aioquic"


def _quic_options() -> dict:
    options = {"backend": BACKEND}
    size = os.environ.get("RPCNET_BENCH_MAX_DATAGRAM")
    if size:
        options["max_datagram_size"] = int(size)
    # rpc_bench.py --quic-option KEY=VALUE: a setting to measure against the default.
    options.update(json.loads(os.environ.get("RPCNET_BENCH_QUIC_OPTIONS", "{}")))
    return {"quic": options}


class RpcnetServer:
    def __init__(self, server: RpcServer) -> None:
        self._server = server
        self.port: int = server.address[1]

    async def close(self) -> None:
        await self._server.stop(grace=1.0)


async def start_server(host: str, tls: TlsFiles, transport: str = "quic") -> RpcnetServer:
    config = RpcConfig(
        transport=transport,
        tls=TlsConfig(cert_file=tls.cert_file, key_file=tls.key_file),
        options=_quic_options() if transport == "quic" else {},
    )
    try:
        server = RpcServer(config)
    except UnknownStrategyError as exc:
        raise TargetUnavailable(f"rpcnet cannot build its {transport} transport here: {exc}") from exc

    @server.unary("echo")
    async def echo(request: bytes, ctx) -> bytes:
        return request

    @server.server_streaming("download")
    async def download(request: bytes, ctx) -> AsyncIterator[bytes]:
        count, size = decode_download(request)
        message = download_message(size)
        for _ in range(count):
            yield message

    server.add_service(BenchService())
    await server.start((host, 0))
    return RpcnetServer(server)


class RpcnetClient:
    def __init__(self, client: RpcClient) -> None:
        self._client = client
        self._bench = Bench.client(client)
        # The public call itself, as raw QUIC's target binds its own: no
        # coroutine of the benchmark's between the caller and rpcnet.
        self.unary: Callable[[bytes], Awaitable[bytes]] = functools.partial(client.call, "echo")

    async def download(self, request: bytes) -> AsyncIterator[bytes]:
        async for message in self._client.call_server_streaming("download", request):
            yield message

    async def typed_unary(self, payload: bytes) -> bytes:
        return (await self._bench.echo(Payload(payload))).data

    async def typed_download(self, request: bytes) -> AsyncIterator[bytes]:
        count, size = decode_download(request)
        async for message in self._bench.download(Download(count, size)):
            yield message.data

    async def close(self) -> None:
        await self._client.__aexit__(None, None, None)


async def connect(host: str, port: int, tls: TlsFiles, transport: str = "quic") -> RpcnetClient:
    config = RpcConfig(
        transport=transport,
        tls=TlsConfig(ca_file=tls.ca_file, server_name=tls.server_name),
        options=_quic_options() if transport == "quic" else {},
    )
    client = RpcClient((host, port), config)
    await client.__aenter__()
    return RpcnetClient(client)
