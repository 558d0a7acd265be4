"""Fixtures for the tcp transport tests: certificates, a listener, recording
handlers, and a raw HTTP/2-over-TLS peer for hostile input.

Every test runs real TCP + TLS 1.3 on loopback. Waits are bounded by
deadlines (``asyncio.wait_for`` or :func:`until`), never by fixed sleeps.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
from rpcnet_tcp import TcpOptions, TcpTransport

from rpcnet.config import TlsConfig
from rpcnet.rpc.protocol import ALPN
from rpcnet.testing.tls_conformance import Certs
from rpcnet.transport import Stream

from ..transport_helpers import DEADLINE, Echo, Recorder


@attrs.define
class Server:
    transport: TcpTransport
    listener: Any
    accepted: asyncio.Queue[tuple[Stream, Recorder]]
    tls: TlsConfig

    @property
    def address(self) -> tuple[str, int]:
        return self.listener.address


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs.create(tmp_path_factory.mktemp("tcp-certs"))


@pytest.fixture
async def start_server(certs: Certs) -> AsyncIterator[Callable[..., Any]]:
    """``await start_server(handler=Echo, tls=..., **options)`` -> :class:`Server`."""
    servers: list[Server] = []

    async def start(handler: type[Recorder] = Echo, tls: TlsConfig | None = None, port: int = 0, **options: Any) -> Server:
        transport = TcpTransport(TcpOptions(**options))
        accepted: asyncio.Queue[tuple[Stream, Recorder]] = asyncio.Queue()

        def on_stream(stream: Stream) -> Recorder:
            recorder = handler()
            recorder.stream = stream
            accepted.put_nowait((stream, recorder))
            return recorder

        tls = tls or certs.server_tls()
        listener = await transport.listen(("127.0.0.1", port), on_stream, alpn=ALPN, tls=tls)
        server = Server(transport, listener, accepted, tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await asyncio.wait_for(server.listener.close(), DEADLINE)


@pytest.fixture
async def connect(certs: Certs) -> AsyncIterator[Callable[..., Any]]:
    """``await connect(server, tls=..., **options)`` -> a client connection, closed afterwards."""
    connections: list[Any] = []

    async def open_connection(server: Server, tls: TlsConfig | None = None, **options: Any) -> Any:
        transport = TcpTransport(TcpOptions(**options))
        connection = await asyncio.wait_for(
            transport.connect(server.address, alpn=ALPN, tls=tls or certs.client_tls()), DEADLINE
        )
        connections.append(connection)
        return connection

    yield open_connection
    for connection in connections:
        connection.close()
        await asyncio.wait_for(connection.wait_closed(), DEADLINE)


# -- a raw peer: TLS + HTTP/2 frames written by hand ----------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADER = struct.Struct(">BHBBI")


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"", length: int | None = None) -> bytes:
    size = len(payload) if length is None else length
    return _HEADER.pack(size >> 16, size & 0xFFFF, kind, flags, stream_id) + payload


def settings(**values: int) -> bytes:
    codes = {"max_streams": 3, "initial_window": 4, "max_frame": 5}
    return frame(4, 0, 0, b"".join(struct.pack(">HI", codes[k], v) for k, v in values.items()))


class RawPeer:
    """A TLS client that speaks HTTP/2 frames the test writes itself."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def frames_until_closed(self) -> list[tuple[int, int, int, bytes]]:
        """Every frame the server sends until it closes the connection."""
        data = b""
        while True:
            chunk = await asyncio.wait_for(self.reader.read(65536), DEADLINE)
            if not chunk:
                break
            data += chunk
        return parse_frames(data)

    async def next_frame(self, kind: int) -> tuple[int, int, int, bytes]:
        """Read until a frame of ``kind`` arrives (others are skipped)."""
        while True:
            header = await asyncio.wait_for(self.reader.readexactly(9), DEADLINE)
            high, low, found, flags, stream_id = _HEADER.unpack(header)
            payload = await asyncio.wait_for(self.reader.readexactly(high << 16 | low), DEADLINE)
            if found == kind:
                return found, flags, stream_id & 0x7FFFFFFF, payload

    def close(self) -> None:
        self.writer.close()


def parse_frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    frames = []
    while len(data) >= 9:
        high, low, kind, flags, stream_id = _HEADER.unpack_from(data)
        length = high << 16 | low
        frames.append((kind, flags, stream_id & 0x7FFFFFFF, data[9 : 9 + length]))
        data = data[9 + length :]
    return frames


@pytest.fixture
async def raw_peer(certs: Certs) -> AsyncIterator[Callable[..., Any]]:
    """``await raw_peer(server, preface=True)`` -> :class:`RawPeer` (TLS with ALPN rpcnet/1)."""
    peers: list[RawPeer] = []

    async def open_peer(server: Server, preface: bool = True, alpn: str = ALPN) -> RawPeer:
        context = ssl.create_default_context(cafile=certs.path("ca.pem"))
        context.set_alpn_protocols([alpn])
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(*server.address, ssl=context, server_hostname="localhost"), DEADLINE
        )
        peer = RawPeer(reader, writer)
        if preface:
            peer.send(PREFACE + settings())
        peers.append(peer)
        return peer

    yield open_peer
    for peer in peers:
        peer.close()


__all__ = ["DEADLINE", "Echo", "Recorder", "frame", "settings", "parse_frames", "PREFACE"]
