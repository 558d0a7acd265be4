"""Listener and connection lifecycle: version negotiation, Retry, shutdown, timeouts."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from rpcnet_quic import QuicOptions, QuicTransport

from rpcnet.errors import TransportError
from rpcnet.rpc.protocol import ALPN
from rpcnet.transport import CONNECTION_LOST

from ..transport_helpers import DEADLINE, Recorder, until


def _long_header(version: bytes, dcid: bytes, scid: bytes, body: bytes) -> bytes:
    packet = bytes([0xC0]) + version + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid + body
    return packet.ljust(1200, b"\x00")


async def _udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    return sock


RETRY = 3  # long-header packet type of a Retry in QUIC v1


def _record_long_header_types(listener) -> list[int]:
    """Record the long-header packet type of every datagram the listener sends."""
    sent_types: list[int] = []
    original_send = listener._send

    def spy(data: bytes, addr) -> None:
        if data[0] & 0x80:
            sent_types.append((data[0] & 0x30) >> 4)
        original_send(data, addr)

    listener._send = spy
    return sent_types


async def _echo(connection, payload: bytes) -> bytes:
    recorder = Recorder()
    stream = await connection.open_stream(recorder)
    stream.send(payload, end_stream=True)
    return await asyncio.wait_for(recorder.finished, DEADLINE)


async def test_version_negotiation_packets_are_dropped(start_server) -> None:
    server = await start_server()
    loop = asyncio.get_running_loop()
    sock = await _udp_socket()
    try:
        # First a Version Negotiation packet (version 0): servers must not answer it.
        vn_scid = os.urandom(8)
        vn_body = (0x00000001).to_bytes(4, "big")
        await loop.sock_sendto(sock, _long_header(b"\x00\x00\x00\x00", os.urandom(8), vn_scid, vn_body), server.address)
        # Then an Initial with a version nobody speaks: that one gets a Version Negotiation reply.
        probe_scid = os.urandom(8)
        await loop.sock_sendto(sock, _long_header(b"\x1a\x2a\x3a\x4a", os.urandom(8), probe_scid, b""), server.address)
        reply = await asyncio.wait_for(loop.sock_recv(sock, 2048), DEADLINE)
    finally:
        sock.close()
    # The first (and only) reply answers the probe, not the version-0 packet.
    assert reply[1:5] == b"\x00\x00\x00\x00"
    dcid_length = reply[5]
    assert reply[6 : 6 + dcid_length] == probe_scid != vn_scid
    assert server.listener._all == set()


async def test_garbage_datagrams_do_not_disturb_the_listener(start_server, connect) -> None:
    server = await start_server()
    loop = asyncio.get_running_loop()
    sock = await _udp_socket()
    try:
        for payload in (b"", b"\x00", os.urandom(40), b"\xc0" + os.urandom(1300), bytes(1500)):
            await loop.sock_sendto(sock, payload, server.address)
    finally:
        sock.close()
    connection = await connect(server)
    assert await _echo(connection, b"still here") == b"still here"


async def test_stop_accepting_keeps_existing_connections_then_close_releases_the_port(
    start_server, connect, certs
) -> None:
    server = await start_server(handshake_timeout=30)
    existing = await connect(server)
    server.listener.stop_accepting()

    # A new client is refused at once, well before its 30 s handshake timeout ...
    transport = QuicTransport(QuicOptions(handshake_timeout=30))
    with pytest.raises(TransportError, match="refused"):
        await asyncio.wait_for(transport.connect(server.address, alpn=ALPN, tls=certs.client_tls()), DEADLINE)
    # ... while the existing connection keeps working.
    assert await _echo(existing, b"in flight") == b"in flight"

    await asyncio.wait_for(server.listener.close(), DEADLINE)
    await asyncio.wait_for(existing.wait_closed(), DEADLINE)
    assert existing.is_closed
    assert "shutting down" in str(existing._closed_error())

    # The address is free again as soon as close() returns.
    restarted = await QuicTransport(QuicOptions()).listen(server.address, lambda s: Recorder(), alpn=ALPN, tls=server.tls)
    try:
        assert restarted.address == server.address
    finally:
        await restarted.close()


async def test_client_reconnects_after_server_restart(start_server, connect, certs) -> None:
    from ..transport_helpers import Echo

    server = await start_server()
    address = server.address
    first = await connect(server)
    await server.listener.close()
    await asyncio.wait_for(first.wait_closed(), DEADLINE)

    def on_stream(stream):
        echo = Echo()
        echo.stream = stream
        return echo

    restarted = await QuicTransport(QuicOptions()).listen(address, on_stream, alpn=ALPN, tls=server.tls)
    try:
        second = await QuicTransport(QuicOptions()).connect(address, alpn=ALPN, tls=certs.client_tls())
        try:
            assert await _echo(second, b"again") == b"again"
        finally:
            second.close()
    finally:
        await restarted.close()


async def test_retry_validates_the_client_address(start_server, connect) -> None:
    server = await start_server(retry=True)
    sent_types = _record_long_header_types(server.listener)
    connection = await connect(server)
    assert await _echo(connection, b"validated") == b"validated"
    assert sent_types[0] == RETRY


async def test_retry_drops_initials_with_a_forged_token(start_server) -> None:
    server = await start_server(retry=True)
    loop = asyncio.get_running_loop()
    sock = await _udp_socket()
    try:
        # An Initial: type bits 00, token length 16, a forged token, then padding.
        body = bytes([16]) + os.urandom(16) + b"\x40\x64"
        await loop.sock_sendto(sock, _long_header(b"\x00\x00\x00\x01", os.urandom(8), os.urandom(8), body), server.address)
        # A packet with no token gets a Retry, showing the socket path works.
        await loop.sock_sendto(sock, _long_header(b"\x00\x00\x00\x01", os.urandom(8), os.urandom(8), b"\x00\x40\x64"), server.address)
        reply = await asyncio.wait_for(loop.sock_recv(sock, 2048), DEADLINE)
    finally:
        sock.close()
    assert (reply[0] & 0x30) >> 4 == RETRY
    assert server.listener._all == set()


async def test_idle_timeout_closes_both_sides(start_server, connect) -> None:
    server = await start_server(idle_timeout=0.5, keepalive_interval=None)
    connection = await connect(server, idle_timeout=0.5, keepalive_interval=None)
    await until(lambda: len(server.listener.connections()) == 1)
    await asyncio.wait_for(connection.wait_closed(), DEADLINE)
    assert "idle" in str(connection._closed_error())
    await until(lambda: server.listener.connections() == [])


async def test_keepalive_holds_an_idle_connection_open(start_server, connect) -> None:
    server = await start_server(idle_timeout=1.0, keepalive_interval=None)
    connection = await connect(server, idle_timeout=1.0, keepalive_interval=0.2)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(connection.wait_closed(), 2.5)  # two and a half idle timeouts
    assert await _echo(connection, b"alive") == b"alive"


async def test_handshake_timeout_when_nobody_answers(certs) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        transport = QuicTransport(QuicOptions(handshake_timeout=0.3))
        with pytest.raises(TransportError, match=r"no QUIC handshake .* within 0.3 s"):
            await asyncio.wait_for(transport.connect(silent.getsockname(), alpn=ALPN, tls=certs.client_tls()), DEADLINE)
    finally:
        silent.close()


async def test_connect_to_a_closed_port_fails_fast(certs) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    address = probe.getsockname()
    probe.close()
    transport = QuicTransport(QuicOptions(handshake_timeout=30))
    with pytest.raises(TransportError, match="cannot reach"):
        await asyncio.wait_for(transport.connect(address, alpn=ALPN, tls=certs.client_tls()), DEADLINE)


async def test_connect_tries_every_address_of_a_name(start_server, certs, monkeypatch) -> None:
    server = await start_server()  # listens on 127.0.0.1 only
    port = server.address[1]
    loop = asyncio.get_running_loop()

    async def resolve(host, port_, **kwargs):
        # A name with an IPv6 address nobody listens on, then the right one.
        assert host == "db.internal" and port_ == port
        return [
            (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("::1", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(loop, "getaddrinfo", resolve)
    transport = QuicTransport(QuicOptions(handshake_timeout=30))
    connection = await asyncio.wait_for(
        transport.connect(("db.internal", port), alpn=ALPN, tls=certs.client_tls(server_name="localhost")), DEADLINE
    )
    try:
        assert connection.peer.address == ("127.0.0.1", port)
        assert await _echo(connection, b"second address") == b"second address"
    finally:
        connection.close()


async def test_unresolvable_name_is_a_clear_error(certs) -> None:
    transport = QuicTransport(QuicOptions(handshake_timeout=5))
    with pytest.raises(TransportError, match="cannot resolve 'no-such-host.invalid'"):
        await asyncio.wait_for(transport.connect(("no-such-host.invalid", 4433), alpn=ALPN, tls=certs.client_tls()), DEADLINE)


async def test_restarted_server_resets_connections_it_forgot(start_server, connect, certs) -> None:
    server = await start_server()
    address = server.address
    connection = await connect(server, idle_timeout=30, keepalive_interval=None)
    assert await _echo(connection, b"before") == b"before"
    # Nothing the client still owes the server (an ACK of the reply, a
    # retransmission) may leave between the server's death and its restart:
    # it would meet port-unreachable and end the connection before the
    # restarted server could reset it.
    await _client_is_quiet(connection)
    # The server process dies: its socket goes away without a word to clients.
    server.listener._udp.abort()
    await asyncio.wait_for(asyncio.shield(server.listener._socket_closed), DEADLINE)

    restarted = await QuicTransport(QuicOptions(backend=server.transport.options.backend)).listen(
        address, lambda s: Recorder(), alpn=ALPN, tls=server.tls
    )
    try:
        orphan = Recorder()
        stream = await connection.open_stream(orphan)
        stream.send(b"anyone there?")
        # Well before the 30 s idle timeout, the new server's stateless reset ends it.
        await asyncio.wait_for(connection.wait_closed(), DEADLINE)
        assert "reset the connection" in str(connection._closed_error())
        assert await asyncio.wait_for(orphan.reset, DEADLINE) == CONNECTION_LOST
        assert restarted._all == set()
    finally:
        await restarted.close()


async def test_stateless_reset_is_smaller_than_what_triggered_it(start_server) -> None:
    server = await start_server()
    loop = asyncio.get_running_loop()
    sock = await _udp_socket()
    try:
        cid = os.urandom(8)
        packet = bytes([0x40]) + cid + os.urandom(30)  # short header, unknown connection ID
        await loop.sock_sendto(sock, packet, server.address)
        reply = await asyncio.wait_for(loop.sock_recv(sock, 2048), DEADLINE)
        await loop.sock_sendto(sock, bytes([0x40]) + cid + os.urandom(200), server.address)
        second = await asyncio.wait_for(loop.sock_recv(sock, 2048), DEADLINE)
    finally:
        sock.close()
    assert 21 <= len(reply) < len(packet) and reply[0] & 0xC0 == 0x40
    assert len(second) <= 43
    assert reply[-16:] == second[-16:]  # the token depends on the connection ID only


async def test_many_pending_handshakes_turn_on_address_validation(start_server, connect) -> None:
    server = await start_server(max_pending_handshakes=1)
    sent_types = _record_long_header_types(server.listener)
    loop = asyncio.get_running_loop()
    sock = await _udp_socket()
    try:
        # An Initial nobody will finish (it does not even decrypt): one pending handshake.
        await loop.sock_sendto(sock, _long_header(b"\x00\x00\x00\x01", os.urandom(8), os.urandom(8), b"\x00\x40\x64"), server.address)
        await until(lambda: len(server.listener._all) == 1)
        # Another spoofed-looking Initial now gets a Retry and creates no state.
        await loop.sock_sendto(sock, _long_header(b"\x00\x00\x00\x01", os.urandom(8), os.urandom(8), b"\x00\x40\x64"), server.address)
        reply = await asyncio.wait_for(loop.sock_recv(sock, 2048), DEADLINE)
    finally:
        sock.close()
    assert (reply[0] & 0x30) >> 4 == RETRY
    assert len(server.listener._all) == 1
    # A real client passes the Retry and is served.
    sent_types.clear()
    connection = await connect(server)
    assert await _echo(connection, b"validated") == b"validated"
    assert sent_types[0] == RETRY


async def test_below_the_pending_limit_no_retry_round_trip(start_server, connect) -> None:
    server = await start_server(max_pending_handshakes=1)
    sent_types = _record_long_header_types(server.listener)
    connection = await connect(server)
    assert await _echo(connection, b"direct") == b"direct"
    assert RETRY not in sent_types


async def test_clients_beyond_max_connections_are_refused(start_server, connect, certs) -> None:
    server = await start_server(max_connections=2, handshake_timeout=30)
    first = await connect(server)
    await connect(server)
    transport = QuicTransport(QuicOptions(handshake_timeout=30))
    with pytest.raises(TransportError, match="refused the connection"):
        await asyncio.wait_for(transport.connect(server.address, alpn=ALPN, tls=certs.client_tls()), DEADLINE)
    # Room again once one leaves.
    first.close()
    await until(lambda: len(server.listener._all) == 1)
    third = await connect(server)
    assert await _echo(third, b"room again") == b"room again"


async def test_a_client_waiting_on_calls_notices_a_dead_server_at_once(start_server, connect) -> None:
    """The server process dies mid-call (its socket just goes away): the busy
    probe's PING meets port-unreachable and the waiting stream is released
    long before the 30 s idle timeout."""
    server = await start_server(handler=Recorder)  # never answers
    connection = await connect(server, idle_timeout=30, keepalive_interval=None, busy_probe_interval=0.5)
    waiting = Recorder()
    stream = await connection.open_stream(waiting)
    await _delivered_and_acknowledged(server, connection, stream)
    server.listener._udp.abort()
    await asyncio.wait_for(connection.wait_closed(), DEADLINE)
    assert await asyncio.wait_for(waiting.reset, DEADLINE) == CONNECTION_LOST
    assert "unreachable" in str(connection._closed_error())


async def test_without_the_busy_probe_a_dead_server_goes_unnoticed(start_server, connect) -> None:
    server = await start_server(handler=Recorder)
    connection = await connect(server, idle_timeout=30, keepalive_interval=None, busy_probe_interval=None)
    stream = await connection.open_stream(Recorder())
    await _delivered_and_acknowledged(server, connection, stream)
    server.listener._udp.abort()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(connection.wait_closed(), 2.0)


async def _client_is_quiet(connection) -> None:
    """Wait until the client has nothing to send: no ACK pending and nothing
    unacknowledged in flight (with keep-alive off and no call open, it then
    stays silent until it is given something to send)."""
    quic = connection._quic
    core = getattr(quic, "_core", None)
    if core is not None:  # qh3: its native core's figures; an idle timer is the only one left
        await until(lambda: core.bytes_in_flight == 0 and core.get_timer()[0] == "idle")
        return
    await until(
        lambda: quic._loss.bytes_in_flight == 0 and all(space.ack_at is None for space in quic._spaces.values())
    )


async def _delivered_and_acknowledged(server, connection, stream) -> None:
    """Send a request and wait until the server has it and the client has its
    ACK, so nothing is left to retransmit when the server dies."""
    stream.send(b"a call that never gets its answer")
    _, recorder = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    await until(lambda: recorder.received == b"a call that never gets its answer")
    await until(lambda: connection._backend.send_backlog(connection._quic, stream.stream_id) == 0)
    core = getattr(connection._quic, "_core", None)
    if core is not None:  # qh3's backlog leaves out bytes sent and not yet acknowledged
        await until(lambda: core.bytes_in_flight == 0)
