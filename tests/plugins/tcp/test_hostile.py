"""Hostile and foreign peers: every limit is checked on a frame's header,
before its payload is kept; bad input closes the connection with a GOAWAY
that names the problem, and other connections go on. A second HTTP/2
implementation (the h2 library) talks to the transport, so the wire format is
HTTP/2 and not only something both ends of rpcnet agree on."""

from __future__ import annotations

import asyncio
import ssl
import struct

import h2.config
import h2.connection
import h2.events
import pytest
from rpcnet_tcp import TcpOptions, TcpTransport

from rpcnet.errors import TransportError
from rpcnet.rpc.protocol import ALPN
from rpcnet.transport import CONNECTION_LOST

from ..transport_helpers import DEADLINE, Echo, Recorder, until
from .conftest import frame

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0, 1, 3, 4, 6, 7
REQUEST = b"\x83\x87\x84"  # :method POST, :scheme https, :path /


def goaway_of(frames) -> tuple[int, str]:
    payload = next(p for kind, _, _, p in frames if kind == GOAWAY)
    _, code = struct.unpack_from(">II", payload)
    return code, payload[8:].decode()


async def test_a_client_without_the_preface_is_disconnected(start_server, raw_peer) -> None:
    server = await start_server()
    peer = await raw_peer(server, preface=False)
    peer.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    code, reason = goaway_of(await peer.frames_until_closed())
    assert code == 0x1 and "connection preface" in reason
    assert server.accepted.empty()


async def test_an_oversize_control_frame_is_refused_on_its_header(start_server, raw_peer) -> None:
    server = await start_server(max_header_size=4096)
    peer = await raw_peer(server)
    # Only the 9-byte header of a 1 MiB HEADERS frame: the server must not wait for the rest.
    peer.send(frame(HEADERS, 0x4, 1, length=1 << 20))
    code, reason = goaway_of(await peer.frames_until_closed())
    assert code == 0x6 and "4096-byte limit" in reason  # FRAME_SIZE_ERROR
    assert server.accepted.empty()


async def test_an_oversize_data_frame_is_refused_on_its_header(start_server, raw_peer) -> None:
    server = await start_server(max_frame_size=16 * 1024)
    peer = await raw_peer(server)
    peer.send(frame(HEADERS, 0x4, 1, REQUEST) + frame(DATA, 0, 1, length=16 * 1024 + 1))
    code, reason = goaway_of(await peer.frames_until_closed())
    assert code == 0x6 and "exceeds our limit" in reason


async def test_data_beyond_the_stream_window_resets_only_that_stream(start_server, raw_peer) -> None:
    window = 64 * 1024
    server = await start_server(handler=Recorder, stream_window=window)
    peer = await raw_peer(server)
    peer.send(frame(HEADERS, 0x4, 1, REQUEST) + frame(DATA, 0, 1, bytes(window + 1)))
    _, server_side = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    _, _, stream_id, payload = await peer.next_frame(RST_STREAM)
    assert stream_id == 1 and struct.unpack(">I", payload)[0] == 0x3  # FLOW_CONTROL_ERROR
    assert await asyncio.wait_for(server_side.reset, DEADLINE) == 5  # rpcnet INTERNAL
    assert server_side.received == b""  # nothing of the excess was handed on
    # The connection itself goes on.
    peer.send(frame(PING, 0, 0, b"12345678"))
    _, flags, _, payload = await peer.next_frame(PING)
    assert flags == 0x1 and payload == b"12345678"


async def test_data_beyond_the_connection_window_closes_the_connection(start_server, raw_peer) -> None:
    server = await start_server(handler=Recorder, stream_window=1 << 20, connection_window=64 * 1024)
    peer = await raw_peer(server)
    peer.send(frame(HEADERS, 0x4, 1, REQUEST) + frame(DATA, 0, 1, length=64 * 1024 + 1))
    code, reason = goaway_of(await peer.frames_until_closed())
    assert code == 0x3 and "connection window" in reason


async def test_streams_beyond_the_credit_are_refused_and_the_rest_served(start_server, raw_peer) -> None:
    server = await start_server(handler=Recorder, max_streams=4)
    peer = await raw_peer(server)
    peer.send(b"".join(frame(HEADERS, 0x4, stream_id, REQUEST) for stream_id in range(1, 20, 2)))
    refused = set()
    while len(refused) < 6:
        _, _, stream_id, payload = await peer.next_frame(RST_STREAM)
        assert struct.unpack(">I", payload)[0] == 0x7  # REFUSED_STREAM
        refused.add(stream_id)
    assert refused == set(range(9, 20, 2))
    assert server.accepted.qsize() == 4


async def test_frames_for_streams_never_opened_are_protocol_errors(start_server, raw_peer) -> None:
    server = await start_server(handler=Recorder)
    for bad in (frame(DATA, 0, 0, b"x"), frame(DATA, 0, 7, b"x"), frame(HEADERS, 0x4, 2, REQUEST)):
        peer = await raw_peer(server)
        peer.send(bad)
        code, _ = goaway_of(await peer.frames_until_closed())
        assert code == 0x1


async def test_garbage_frames_close_the_connection_and_others_carry_on(start_server, raw_peer, connect) -> None:
    server = await start_server()
    healthy = await connect(server)
    peer = await raw_peer(server)
    peer.send(frame(SETTINGS, 0, 0, b"\x00\x04\x80\x00\x00\x00"))  # initial window 2^31: too large
    code, _ = goaway_of(await peer.frames_until_closed())
    assert code == 0x3
    peer = await raw_peer(server)
    peer.send(frame(HEADERS, 0x4, 1, b"\xff\xff\xff\xff"))  # not HPACK
    code, reason = goaway_of(await peer.frames_until_closed())
    assert code == 0x9 and "header block" in reason
    recorder = Recorder()
    stream = await healthy.open_stream(recorder)
    stream.send(b"still here", end_stream=True)
    assert await asyncio.wait_for(recorder.finished, DEADLINE) == b"still here"


async def test_a_peer_that_vanishes_mid_frame_resets_its_streams(start_server, raw_peer) -> None:
    server = await start_server(handler=Recorder)
    peer = await raw_peer(server)
    peer.send(frame(HEADERS, 0x4, 1, REQUEST) + frame(DATA, 0, 1, length=1000) + b"only part")
    _, server_side = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    await until(lambda: server_side.received == b"only part")
    peer.writer.transport.abort()
    assert await asyncio.wait_for(server_side.reset, DEADLINE) == CONNECTION_LOST
    await until(lambda: server.listener.connections() == [])


async def test_a_peer_that_never_starts_http2_is_dropped_after_the_handshake_timeout(start_server, raw_peer) -> None:
    server = await start_server(handshake_timeout=0.2)
    peer = await raw_peer(server, preface=False)
    frames = await peer.frames_until_closed()
    assert goaway_of(frames)[0] == 0x1


async def test_clients_beyond_max_connections_are_refused_with_a_reason(start_server, connect) -> None:
    server = await start_server(max_connections=1)
    await connect(server)
    with pytest.raises(TransportError, match="refused the connection \\(too many connections: max_connections = 1\\)"):
        await connect(server)


async def test_the_h2_library_speaks_to_the_tcp_transport(start_server, certs) -> None:
    """A foreign HTTP/2 client (Huffman-coded, indexed headers) echoes through an rpcnet stream."""
    server = await start_server(handler=Echo)
    context = ssl.create_default_context(cafile=certs.path("ca.pem"))
    context.set_alpn_protocols([ALPN])
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(*server.address, ssl=context, server_hostname="localhost"), DEADLINE
    )
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    client.initiate_connection()
    headers = [(":method", "POST"), (":scheme", "https"), (":path", "/rpcnet"), (":authority", "localhost"),
               ("user-agent", "h2-interop-test")]
    replies: dict[int, bytes] = {}
    ended: set[int] = set()
    for stream_id in (1, 3):
        client.send_headers(stream_id, headers)
        client.send_data(stream_id, b"hello over HTTP/2 %d" % stream_id, end_stream=True)
    writer.write(client.data_to_send())
    while ended != {1, 3}:
        data = await asyncio.wait_for(reader.read(65536), DEADLINE)
        assert data, "the server closed the connection"
        for event in client.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                replies[event.stream_id] = replies.get(event.stream_id, b"") + event.data
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                ended.add(event.stream_id)
            elif isinstance(event, h2.events.ResponseReceived):
                assert dict(event.headers)[":status"] == "200"
        writer.write(client.data_to_send())
    assert replies == {1: b"hello over HTTP/2 1", 3: b"hello over HTTP/2 3"}
    client.close_connection()
    writer.write(client.data_to_send())
    writer.close()


async def test_configuration_is_validated_when_built() -> None:
    from rpcnet.errors import ConfigError

    with pytest.raises(ConfigError, match="max_frame_size must be between 16384 and 16777215"):
        TcpOptions(max_frame_size=1 << 24)
    with pytest.raises(ConfigError, match="keepalive_interval .* must be shorter than idle_timeout"):
        TcpOptions(keepalive_interval=10, idle_timeout=5)
    assert TcpTransport().options == TcpOptions()
