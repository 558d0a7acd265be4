"""grpc.aio over TLS with generic handlers: bytes in, bytes out, no protobuf.

One channel is one HTTP/2 connection; every caller shares it. Options are
gRPC's defaults apart from the certificate and the name the client verifies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from targets import TargetUnavailable, TlsFiles, decode_download, download_message

try:
    import grpc
    import grpc.aio
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise TargetUnavailable(f"grpcio is not installed ({exc}); install the dev extras: pip install -e '.[dev]'") from exc

SERVICE = "rpcnet.bench.Bench"


async def _echo(request: bytes, context) -> bytes:
    return request


async def _download(request: bytes, context) -> AsyncIterator[bytes]:
    count, size = decode_download(request)
    message = download_message(size)
    for _ in range(count):
        yield message


class GrpcServer:
    def __init__(self, server: grpc.aio.Server, port: int) -> None:
        self._server = server
        self.port = port

    async def close(self) -> None:
        await self._server.stop(grace=None)


async def start_server(host: str, tls: TlsFiles) -> GrpcServer:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(_echo),
            "Download": grpc.unary_stream_rpc_method_handler(_download),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.ssl_server_credentials(
        [(Path(tls.key_file).read_bytes(), Path(tls.cert_file).read_bytes())]
    )
    port = server.add_secure_port(f"{host}:0", credentials)
    await server.start()
    return GrpcServer(server, port)


class GrpcClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel
        self._echo = channel.unary_unary(f"/{SERVICE}/Echo")
        self._download = channel.unary_stream(f"/{SERVICE}/Download")

    async def unary(self, payload: bytes) -> bytes:
        return await self._echo(payload)

    async def download(self, request: bytes) -> AsyncIterator[bytes]:
        async for message in self._download(request):
            yield message

    async def close(self) -> None:
        await self._channel.close()


async def connect(host: str, port: int, tls: TlsFiles) -> GrpcClient:
    credentials = grpc.ssl_channel_credentials(root_certificates=Path(tls.ca_file).read_bytes())
    channel = grpc.aio.secure_channel(
        f"{host}:{port}", credentials, options=[("grpc.ssl_target_name_override", tls.server_name)]
    )
    await channel.channel_ready()
    return GrpcClient(channel)
