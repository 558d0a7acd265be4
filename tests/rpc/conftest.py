"""Fixtures that run every RPC test over each available transport."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import attrs
import pytest

from rpcnet import RpcClient, RpcConfig, RpcServer, TlsConfig, make_plugin_manager

_networks = itertools.count()


def _available_transports() -> list[str]:
    names = make_plugin_manager().registry.names("transport")
    return [name for name in ("memory", "quic", "tcp") if name in names]


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rpcnet.certs import write_dev_certs

    directory = tmp_path_factory.mktemp("certs")
    write_dev_certs(directory, server_names=["localhost", "127.0.0.1"], client_names=["client"], days=30)
    return directory


@attrs.define
class Setup:
    """A server config, a client config and a listen address for one transport."""

    transport: str
    server_config: RpcConfig
    client_config: RpcConfig
    listen: tuple[str, int]

    def server(self, **changes: object) -> RpcServer:
        return RpcServer(attrs.evolve(self.server_config, **changes))

    def client(self, address: tuple[str, int], **changes: object) -> RpcClient:
        return RpcClient(address, attrs.evolve(self.client_config, **changes))


@pytest.fixture(params=_available_transports())
def setup(request: pytest.FixtureRequest, certs: Path) -> Setup:
    transport = request.param
    if transport == "memory":
        # A network per test: listeners of one test never leak into another.
        options = {"memory": {"network": f"test-{next(_networks)}"}}
        config = RpcConfig(transport="memory", options=options)
        return Setup(transport, config, config, ("server", 0))
    server = RpcConfig(
        transport=transport,
        tls=TlsConfig(cert_file=certs / "server.pem", key_file=certs / "server.key", ca_file=certs / "ca.pem"),
    )
    client = RpcConfig(transport=transport, tls=TlsConfig(ca_file=certs / "ca.pem", server_name="localhost"))
    return Setup(transport, server, client, ("127.0.0.1", 0))


@pytest.fixture
async def serve(setup: Setup) -> AsyncIterator[Callable[..., object]]:
    """``server, client = await serve(register)``: start a server with the
    methods ``register(server)`` adds, and a client connected to it."""
    started: list[tuple[RpcServer, RpcClient]] = []

    async def start(register: Callable[[RpcServer], None], **server_changes: object) -> tuple[RpcServer, RpcClient]:
        server = setup.server(**server_changes)
        register(server)
        address = await server.start(setup.listen)
        client = setup.client(address)
        started.append((server, client))
        return server, client

    yield start
    for server, client in started:
        await client.close()
        await server.stop(grace=0)
