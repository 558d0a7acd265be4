"""Fixtures for the QUIC transport tests: certificates, a listener, recording handlers.

Every test runs real QUIC over loopback. Waits are bounded by deadlines
(``asyncio.wait_for`` or :func:`until`), never by fixed sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
from rpcnet_quic import QuicOptions, QuicTransport

from rpcnet.config import TlsConfig
from rpcnet.rpc.protocol import ALPN
from rpcnet.testing.tls_conformance import Certs
from rpcnet.transport import Stream

from ..transport_helpers import DEADLINE, Echo, Recorder


@attrs.define
class Server:
    transport: QuicTransport
    listener: Any
    accepted: asyncio.Queue[tuple[Stream, Recorder]]
    tls: TlsConfig
    #: The backend clients of this server use (the ``quic_backends`` fixture).
    client_backend: str = "aioquic"

    @property
    def address(self) -> tuple[str, int]:
        return self.listener.address


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs.create(tmp_path_factory.mktemp("quic-certs"))


@pytest.fixture
def quic_backends() -> tuple[str, str]:
    """The QUIC backends of (servers, clients) these fixtures start; modules
    that run the same cases on qh3 and across backends override it."""
    return ("aioquic", "aioquic")


@pytest.fixture
async def start_server(certs: Certs, quic_backends: tuple[str, str]) -> AsyncIterator[Callable[..., Any]]:
    """``await start_server(handler=Echo, tls=..., **options)`` -> :class:`Server`."""
    servers: list[Server] = []

    async def start(handler: type[Recorder] = Echo, tls: TlsConfig | None = None, **options: Any) -> Server:
        options.setdefault("backend", quic_backends[0])
        transport = QuicTransport(QuicOptions(**options))
        accepted: asyncio.Queue[tuple[Stream, Recorder]] = asyncio.Queue()

        def on_stream(stream: Stream) -> Recorder:
            recorder = handler()
            recorder.stream = stream
            accepted.put_nowait((stream, recorder))
            return recorder

        tls = tls or certs.server_tls()
        listener = await transport.listen(("127.0.0.1", 0), on_stream, alpn=ALPN, tls=tls)
        server = Server(transport, listener, accepted, tls, client_backend=quic_backends[1])
        servers.append(server)
        return server

    yield start
    for server in servers:
        await asyncio.wait_for(server.listener.close(), DEADLINE)


@pytest.fixture
async def connect(certs: Certs, quic_backends: tuple[str, str]) -> AsyncIterator[Callable[..., Any]]:
    """``await connect(server, tls=..., **options)`` -> a client connection, closed afterwards."""
    connections: list[Any] = []

    async def open_connection(server: Server, tls: TlsConfig | None = None, **options: Any) -> Any:
        options.setdefault("backend", quic_backends[1])
        transport = QuicTransport(QuicOptions(**options))
        connection = await asyncio.wait_for(
            transport.connect(server.address, alpn=ALPN, tls=tls or certs.client_tls()), DEADLINE
        )
        connections.append(connection)
        return connection

    yield open_connection
    for connection in connections:
        connection.close()
        await asyncio.wait_for(connection.wait_closed(), DEADLINE)
