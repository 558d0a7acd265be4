"""Hostile peers at the transport level: stream floods stay bounded, others stay served."""

from __future__ import annotations

import asyncio
import tracemalloc

from ..transport_helpers import DEADLINE, Echo, Recorder, until

FLOOD = 10_000


async def _echo(connection, payload: bytes) -> bytes:
    recorder = Recorder()
    stream = await connection.open_stream(recorder)
    stream.send(payload, end_stream=True)
    return await asyncio.wait_for(recorder.finished, DEADLINE)


def _open_raw_streams(connection, count: int) -> None:
    """Open ``count`` streams with one byte each and never finish them (the
    server's Echo handler answers only after FIN, so they stay open),
    straight on the QUIC state machine (no waiting for credit)."""
    quic = connection._quic
    for _ in range(count):
        quic.send_stream_data(quic.get_next_available_stream_id(), b"x")
    connection._schedule_transmit()


async def test_ten_thousand_unfinished_streams_stay_bounded(start_server, connect) -> None:
    max_streams = 100
    server = await start_server(handler=Echo, max_streams=max_streams)
    flooder = await connect(server)
    tracemalloc.start()
    try:
        # The client-side cost of the flood (10 000 queued streams) is paid
        # here, before anything is sent; what the process allocates after
        # that is the server taking the flood in (plus the client's packets).
        _open_raw_streams(flooder, FLOOD)
        before, _ = tracemalloc.get_traced_memory()
        await until(lambda: server.accepted.qsize() >= max_streams)
        await until(lambda: flooder._quic._loss.bytes_in_flight == 0)  # the flood has settled
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Accepting every stream would cost the server over 1 KiB each (>10 MB here).
    assert after - before < 2_000_000, f"memory grew by {after - before} bytes"
    server_connection = server.listener.connections()[0]

    # A well-behaved client is served meanwhile.
    other = await connect(server)
    assert await _echo(other, b"served") == b"served"

    # Only the credit we granted exists on the server: the rest of the flood
    # waits on the client side and costs the server nothing.
    assert server.accepted.qsize() == max_streams + 1
    assert len(server_connection._streams) == max_streams
    assert len(server_connection._quic._streams) == max_streams
    assert not flooder.is_closed


async def test_peer_ignoring_stream_credit_is_disconnected(start_server, connect) -> None:
    server = await start_server(handler=Echo, max_streams=50)
    liar = await connect(server)
    # Pretend the server granted far more streams than it did.
    liar._quic._remote_max_streams_bidi = FLOOD
    _open_raw_streams(liar, FLOOD)
    await asyncio.wait_for(liar.wait_closed(), DEADLINE)
    assert "0x4" in str(liar._closed_error())  # STREAM_LIMIT_ERROR
    await until(lambda: server.listener.connections() == [])
    assert server.accepted.qsize() <= 50

    other = await connect(server)
    assert await _echo(other, b"still serving") == b"still serving"


async def test_unfinished_streams_do_not_hold_buffers_beyond_the_window(start_server, connect) -> None:
    window = 16 * 1024
    server = await start_server(handler=Echo, max_streams=20, stream_window=window)
    flooder = await connect(server)
    quic = flooder._quic
    # Twenty streams each try to push ten windows at a paused server.
    streams = []
    for _ in range(20):
        stream = await flooder.open_stream(Recorder())
        stream.send(b"x")
        streams.append(stream)
    server_streams = []
    for _ in range(20):
        server_stream, _ = await asyncio.wait_for(server.accepted.get(), DEADLINE)
        server_stream.pause_reading()
        server_streams.append(server_stream)
    for stream in streams:
        quic.send_stream_data(stream.stream_id, bytes(10 * window))
    flooder._schedule_transmit()
    await until(lambda: all(s.consumed == 1 for s in server_streams))
    backend = server_streams[0].connection._backend
    await until(lambda: all(backend.send_backlog(quic, s.stream_id) <= 9 * window + 1 for s in streams))
    for _ in range(10):
        await asyncio.sleep(0.005)  # packets keep flowing; the bound must hold throughout
        buffered = sum(s.buffered_bytes for s in server_streams)
        assert buffered <= 20 * window


async def _paused_streams_under_pressure(server, flooder, count: int, push: int):
    """Open ``count`` streams, pause each on the server, then push ``push``
    bytes on each at once (straight into the QUIC stack, without drain)."""
    streams = []
    for _ in range(count):
        stream = await flooder.open_stream(Recorder())
        stream.send(b"x")
        streams.append(stream)
    server_streams = []
    for _ in range(count):
        server_stream, _ = await asyncio.wait_for(server.accepted.get(), DEADLINE)
        server_stream.pause_reading()
        server_streams.append(server_stream)
    for stream in streams:
        flooder._quic.send_stream_data(stream.stream_id, bytes(push))
    flooder._schedule_transmit()
    return streams, server_streams


async def test_paused_streams_together_hold_at_most_one_connection_window(start_server, connect) -> None:
    stream_window, connection_window = 32 * 1024, 64 * 1024
    server = await start_server(handler=Echo, stream_window=stream_window, connection_window=connection_window)
    flooder = await connect(server)
    streams, server_streams = await _paused_streams_under_pressure(server, flooder, 8, 4 * stream_window)
    server_connection = server_streams[0].connection
    # Eight paused streams could take 8 x 32 KiB by their own windows; the
    # connection's window stops them at 64 KiB together.
    await until(lambda: server_connection._held >= connection_window - 8)
    for _ in range(10):
        await asyncio.sleep(0.005)  # packets keep flowing; the bound must hold throughout
        assert sum(s.buffered_bytes for s in server_streams) <= connection_window
    assert server_connection._held == sum(s.buffered_bytes for s in server_streams)

    # Reading again lets everything through, so no credit was lost on the way.
    handlers = [server_stream.handler for server_stream in server_streams]
    for server_stream in server_streams:
        server_stream.resume_reading()
    for stream in streams:
        stream.send(b"", end_stream=True)
    for handler in handlers:
        received = await asyncio.wait_for(handler.finished, DEADLINE)
        assert len(received) == 1 + 4 * stream_window


async def test_resetting_paused_streams_returns_their_connection_credit(start_server, connect) -> None:
    stream_window, connection_window = 32 * 1024, 64 * 1024
    server = await start_server(handler=Echo, stream_window=stream_window, connection_window=connection_window)
    flooder = await connect(server)
    streams, server_streams = await _paused_streams_under_pressure(server, flooder, 4, stream_window)
    server_connection = server_streams[0].connection
    await until(lambda: server_connection._held >= connection_window - 4)
    # The connection window is full of paused data; resetting the streams
    # must free it for new calls.
    for server_stream in server_streams:
        server_stream.reset(8)
    assert server_connection._held == 0
    recorder = Recorder()
    stream = await flooder.open_stream(recorder)
    payload = bytes(3 * connection_window)
    stream.send(payload, end_stream=True)
    assert await asyncio.wait_for(recorder.finished, DEADLINE) == payload
