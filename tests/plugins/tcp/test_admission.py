"""Connection admission on the tcp transport: a per-source limit, unused
connections closed, memory per connection bounded.

The memory test's server runs in its own process so its resident memory can be read.
"""

from __future__ import annotations

import asyncio
import sys

import pytest
from rpcnet_tcp import TcpOptions, TcpTransport

from rpcnet import RpcClient, RpcConfig
from rpcnet.errors import TransportError
from rpcnet.rpc.protocol import ALPN

from ..transport_helpers import DEADLINE, Recorder, echo_server_process, rss, until

#: docs/transport.md, "Connection admission": the most one established tcp
#: connection without calls costs the server.
IDLE_CONNECTION_BOUND = 64 * 1024
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
    await until(lambda: len(server.listener._all) == 1, DEADLINE)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="binds 127.0.0.2")
async def test_one_source_at_its_limit_is_refused_and_others_are_not(start_server, connect, certs) -> None:
    server = await start_server(max_connections_per_source=3)
    attacker = TcpTransport(TcpOptions(bind_address="127.0.0.2"))
    held = [await connect(server, bind_address="127.0.0.2") for _ in range(3)]
    with pytest.raises(TransportError, match="too many connections from 127.0.0.2: max_connections_per_source = 3"):
        await asyncio.wait_for(attacker.connect(server.address, alpn=ALPN, tls=certs.client_tls()), DEADLINE)
    # Another source is still served.
    other = await connect(server)
    assert await _echo(other, b"hello") == b"hello"
    # A connection from the limited source that ends gives its place back.
    held[0].close()
    await until(lambda: server.listener._per_source.get("127.0.0.2") == 2, DEADLINE)
    again = await connect(server, bind_address="127.0.0.2")
    assert await _echo(again, b"back") == b"back"


async def test_failed_handshakes_give_their_place_back(start_server, connect, certs) -> None:
    """Handshakes count against the source's limit while they run, and not after they failed."""
    server = await start_server(max_connections_per_source=2)
    transport = TcpTransport(TcpOptions(handshake_timeout=DEADLINE))
    for _ in range(4):
        with pytest.raises(TransportError):
            await asyncio.wait_for(
                transport.connect(server.address, alpn=ALPN, tls=certs.client_tls(ca_file=certs.path("other-ca.pem"))),
                DEADLINE,
            )
    await until(lambda: not server.listener._per_source, DEADLINE)
    first, second = await connect(server), await connect(server)
    assert await _echo(first, b"a") == b"a" and await _echo(second, b"b") == b"b"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and binds 127.0.0.2")
async def test_one_source_is_refused_at_the_default_limit_while_others_are_served(certs) -> None:
    """A host on 127.0.0.2 opens connections until refused; a client on
    127.0.0.1 keeps completing calls within 1 s; the server's memory stays
    under the documented bound per connection."""
    async with echo_server_process("tcp", certs.directory) as (address, pid):
        config = RpcConfig(transport="tcp", tls=certs.client_tls())
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
            attacker = TcpTransport(TcpOptions(bind_address="127.0.0.2", keepalive_interval=5))
            limit = TcpOptions().max_connections_per_source
            held = []
            try:
                with pytest.raises(TransportError, match="too many connections from 127.0.0.2"):
                    for _ in range(limit + 1):
                        held.append(
                            await asyncio.wait_for(attacker.connect(address, alpn=ALPN, tls=certs.client_tls()), DEADLINE)
                        )
                assert len(held) == limit
                grown = rss(pid) - before
            finally:
                attacking = False
                await asyncio.wait_for(caller, DEADLINE)
                for connection in held:
                    connection.close()
        assert calls > 0 and slowest < 1.0, f"slowest call took {slowest:.3f} s"
        print(f"server memory per idle connection: {grown / limit / 1024:.0f} KiB")
        assert grown < limit * IDLE_CONNECTION_BOUND, f"{grown / limit / 1024:.0f} KiB per connection"
