"""Connection admission: a per-source limit, unused connections closed, memory bounded.

The server runs in its own process so its resident memory can be read.
"""

from __future__ import annotations

import asyncio
import sys

import pytest
from rpcnet_quic import QuicOptions, QuicTransport

from rpcnet import RpcClient, RpcConfig
from rpcnet.errors import TransportError
from rpcnet.rpc.protocol import ALPN

from ..transport_helpers import DEADLINE, Recorder, echo_server_process, rss

#: docs/transport.md, "Connection admission": the most one established
#: connection without calls costs the server (measured: about 77 KiB).
IDLE_CONNECTION_BOUND = 128 * 1024


async def _echo(connection, payload: bytes) -> bytes:
    recorder = Recorder()
    stream = await connection.open_stream(recorder)
    stream.send(payload, end_stream=True)
    return await asyncio.wait_for(recorder.finished, DEADLINE)


async def test_a_connection_that_opens_no_call_is_closed(start_server, connect) -> None:
    server = await start_server(unused_connection_timeout=0.3)
    idle = await connect(server, keepalive_interval=0.1, idle_timeout=30)
    busy = await connect(server, keepalive_interval=0.1, idle_timeout=30)
    assert await _echo(busy, b"used") == b"used"
    await asyncio.wait_for(idle.wait_closed(), DEADLINE)
    assert "no call within 0.3 s" in str(idle._closed_error())
    # The connection that made a call stays, although it is quiet now.
    assert not busy.is_closed
    assert await _echo(busy, b"still") == b"still"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and binds 127.0.0.2")
async def test_one_source_is_refused_at_its_limit_while_others_are_served(certs) -> None:
    """A host on 127.0.0.2 opens connections until refused; a client on
    127.0.0.1 keeps completing calls within 1 s; the server's memory stays
    under the documented bound per connection."""
    async with echo_server_process("quic", certs.directory) as (address, pid):
        config = RpcConfig(transport="quic", tls=certs.client_tls())
        async with RpcClient(address, config) as client:
            assert await client.call("echo", 0) == 0
            before = rss(pid)
            attacking = True
            slowest = 0.0
            calls = 0

            async def keep_calling() -> None:
                nonlocal slowest, calls
                loop = asyncio.get_running_loop()
                while attacking:
                    started = loop.time()
                    assert await asyncio.wait_for(client.call("echo", calls), DEADLINE) == calls
                    slowest = max(slowest, loop.time() - started)
                    calls += 1
                    await asyncio.sleep(0.005)

            caller = asyncio.ensure_future(keep_calling())
            attacker = QuicTransport(QuicOptions(bind_address="127.0.0.2", keepalive_interval=5))
            limit = QuicOptions().max_connections_per_source
            held = []
            try:
                with pytest.raises(TransportError, match="refused the connection"):
                    for _ in range(limit + 1):
                        held.append(await asyncio.wait_for(attacker.connect(address, alpn=ALPN, tls=certs.client_tls()), DEADLINE))
                assert len(held) == limit
                assert held[0].peer.address == address
                grown = rss(pid) - before
            finally:
                attacking = False
                await asyncio.wait_for(caller, DEADLINE)
                for connection in held:
                    connection.close()
        assert calls > 0 and slowest < 1.0, f"slowest call took {slowest:.3f} s"
        assert grown < limit * IDLE_CONNECTION_BOUND, f"{grown / limit / 1024:.0f} KiB per connection"
