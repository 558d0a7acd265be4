"""RequestChannel on its own: two RPC servers on the memory transport, sealed requests both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import pytest

from rpcnet import RpcConfig, RpcServer
from rpcnet.cluster.channel import REQUEST_METHOD, RequestChannel, RequestChannelStats
from rpcnet.cluster.keyring import Keyring
from rpcnet.errors import RpcError


@pytest.fixture
async def servers() -> AsyncIterator[tuple[RpcServer, RpcServer]]:
    a, b = RpcServer(RpcConfig(transport="memory")), RpcServer(RpcConfig(transport="memory"))
    await a.start(("channel-a", 1))
    await b.start(("channel-b", 1))
    yield a, b
    await a.stop(grace=0)
    await b.stop(grace=0)


async def test_a_request_is_answered_by_the_handler_and_counted(servers) -> None:
    a, b = servers
    key = Keyring.generate()
    client = RequestChannel(a, keyring=Keyring.from_config([key]), label="prod")
    server = RequestChannel(b, keyring=Keyring.from_config([key]), label="prod")
    seen = []
    server.serve(lambda data: seen.append(data) or b"re:" + data)
    assert REQUEST_METHOD in b.methods
    assert await client.request(b.address, b"hello") == b"re:hello"
    assert seen == [b"hello"]
    assert client.stats == RequestChannelStats(requests_sent=1)
    assert server.stats == RequestChannelStats(requests_served=1)
    await client.close()


async def test_the_wrong_key_or_label_is_refused_on_both_sides(servers) -> None:
    a, b = servers
    server = RequestChannel(b, keyring=Keyring.from_config([Keyring.generate()]), label="prod")
    server.serve(lambda data: data)
    for keyring, label in ((Keyring.from_config([Keyring.generate()]), "prod"), (server.keyring, "staging"), (None, "prod")):
        client = RequestChannel(a, keyring=keyring, label=label)
        with pytest.raises(RpcError, match="sync refused"):
            await client.request(b.address, b"x")
        assert client.stats.requests_failed == 1
        await client.close()
    assert server.stats.requests_rejected == 3 and server.stats.requests_served == 0


async def test_without_a_keyring_requests_are_labelled_not_encrypted(servers) -> None:
    a, b = servers
    server = RequestChannel(b, keyring=None, label="lab")
    server.serve(lambda data: data[::-1])
    client = RequestChannel(a, keyring=None, label="lab")
    assert await client.request(b.address, b"abc") == b"cba"
    assert client.seal(b"abc").endswith(b"abc"), "insecure sealing carries the bytes in the clear"
    await client.close()


async def test_a_handler_that_raises_is_invalid_argument_and_the_stats_are_frozen(servers) -> None:
    a, b = servers
    server = RequestChannel(b, keyring=None)

    def refuse(data: bytes) -> bytes:
        raise ValueError("not a request")

    server.serve(refuse)
    client = RequestChannel(a, keyring=None)
    with pytest.raises(RpcError, match="malformed sync request: not a request"):
        await client.request(b.address, b"x")
    stats = client.stats
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stats.requests_failed = 0  # type: ignore[misc]
    with pytest.warns(DeprecationWarning, match="requests_failed"):
        assert stats["syncs_failed"] == 1
    await client.close()
