"""The in-process ``memory`` transport: what it shares with real transports."""

from __future__ import annotations

import pytest

from rpcnet.builtins.memory import MemoryOptions, MemoryTransport
from rpcnet.errors import TransportError


class Sink:
    def data_received(self, data: bytes, end_stream: bool) -> None:
        pass

    def stream_reset(self, error_code: int) -> None:
        pass


async def test_a_client_of_another_protocol_version_is_refused_naming_both() -> None:
    transport = MemoryTransport(MemoryOptions(network="alpn-test"))
    listener = await transport.listen(("server", 1), lambda stream: Sink(), alpn="rpcnet/2")
    try:
        with pytest.raises(TransportError, match=r"server:1 speaks 'rpcnet/2', this client speaks 'rpcnet/1'"):
            await transport.connect(("server", 1), alpn="rpcnet/1")
        connection = await transport.connect(("server", 1), alpn="rpcnet/2")
        assert not connection.is_closed
        connection.close()
    finally:
        await listener.close()


async def test_nothing_listening_is_a_refusal_naming_the_address_and_network() -> None:
    transport = MemoryTransport(MemoryOptions(network="empty"))
    with pytest.raises(TransportError, match="nothing is accepting at nowhere:9 on memory network 'empty'"):
        await transport.connect(("nowhere", 9), alpn="rpcnet/1")
