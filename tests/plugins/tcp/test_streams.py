"""Streams over real TCP + TLS: data, FIN, resets, connection loss, stream credit, flow control, go-away."""

from __future__ import annotations

import asyncio

import pytest

from rpcnet.errors import TransportError
from rpcnet.transport import CONNECTION_LOST

from ..transport_helpers import DEADLINE, Echo, Recorder, until


async def test_many_calls_share_one_connection_each_on_its_own_stream(start_server, connect) -> None:
    server = await start_server()
    connection = await connect(server)
    recorders = [Recorder() for _ in range(20)]
    streams = [await connection.open_stream(r) for r in recorders]
    for index, stream in enumerate(streams):
        stream.send(b"call %d " % index)
    for stream in reversed(streams):
        stream.send(b"payload", end_stream=True)
    replies = await asyncio.wait_for(asyncio.gather(*(r.finished for r in recorders)), DEADLINE)
    assert replies == [b"call %d payload" % i for i in range(20)]
    assert len({s.stream_id for s in streams}) == 20
    assert len(server.listener.connections()) == 1
    assert connection.peer.alpn == "rpcnet/1"
    assert connection.peer.identity == "localhost"


async def test_fin_alone_and_empty_sends(start_server, connect) -> None:
    server = await start_server()
    connection = await connect(server)
    recorder = Recorder()
    stream = await connection.open_stream(recorder)
    stream.send(b"")  # nothing to deliver: no event may follow from it
    stream.send(b"x")
    stream.send(b"", end_stream=True)
    assert await asyncio.wait_for(recorder.finished, DEADLINE) == b"x"
    _, server_side = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    assert all(data or fin for _, data, fin in server_side.events)
    assert server_side.events[-1][2] is True

    empty = Recorder()
    stream = await connection.open_stream(empty)
    stream.send(b"", end_stream=True)
    assert await asyncio.wait_for(empty.finished, DEADLINE) == b""
    assert empty.events == [("data", b"", True)]
    with pytest.raises(TransportError, match="ended for sending"):
        stream.send(b"more")


async def test_half_close_then_the_server_streams_and_fin_comes_after_all_data(start_server, connect) -> None:
    server = await start_server(handler=Recorder)
    connection = await connect(server)
    recorder = Recorder()
    stream = await connection.open_stream(recorder)
    stream.send(b"subscribe", end_stream=True)  # our direction is done; theirs is open
    server_stream, server_side = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    assert await asyncio.wait_for(server_side.finished, DEADLINE) == b"subscribe"
    for index in range(50):
        server_stream.send(b"item %03d;" % index)
        if index % 10 == 0:
            await server_stream.drain()
    server_stream.send(b"last", end_stream=True)
    received = await asyncio.wait_for(recorder.finished, DEADLINE)
    assert received == b"".join(b"item %03d;" % i for i in range(50)) + b"last"
    assert recorder.events[-1][2] is True and all(not fin for _, _, fin in recorder.events[:-1])
    # Finished both ways: the stream's credit is back and its handler let go.
    await until(lambda: not connection._streams and not server_stream.connection._streams)
    assert stream.handler is None and server_stream.handler is None


async def test_client_reset_reaches_server_handler_with_its_code(start_server, connect) -> None:
    server = await start_server(handler=Recorder)
    connection = await connect(server)
    for code in (1, 2, 3, 4, 5, 7, 0x1234):
        recorder = Recorder()
        stream = await connection.open_stream(recorder)
        stream.send(b"begin")
        server_stream, server_side = await asyncio.wait_for(server.accepted.get(), DEADLINE)
        await until(lambda side=server_side: side.received == b"begin")
        stream.reset(code)
        stream.reset(code)  # idempotent
        assert await asyncio.wait_for(server_side.reset, DEADLINE) == code
        assert recorder.events == []  # no callbacks after our own reset
        with pytest.raises(TransportError):
            stream.send(b"after reset")
        with pytest.raises(TransportError, match="reset by the peer"):
            server_stream.send(b"late")


async def test_server_reset_reaches_client_handler(start_server, connect) -> None:
    server = await start_server(handler=Recorder)
    connection = await connect(server)
    recorder = Recorder()
    stream = await connection.open_stream(recorder)
    stream.send(b"request")
    server_stream, _ = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    server_stream.reset(9)
    assert await asyncio.wait_for(recorder.reset, DEADLINE) == 9
    with pytest.raises(TransportError, match="reset by the peer"):
        await stream.drain()


async def test_reset_after_request_finished_still_reaches_the_server(start_server, connect) -> None:
    server = await start_server(handler=Recorder)
    connection = await connect(server)
    recorder = Recorder()
    stream = await connection.open_stream(recorder)
    stream.send(b"subscribe", end_stream=True)
    server_stream, server_side = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    await asyncio.wait_for(server_side.finished, DEADLINE)
    server_stream.send(b"item 1")
    await until(lambda: recorder.received == b"item 1")
    stream.reset(5)
    assert await asyncio.wait_for(server_side.reset, DEADLINE) == 5


async def test_connection_close_resets_open_streams_with_connection_lost(start_server, connect) -> None:
    server = await start_server(handler=Recorder)
    connection = await connect(server)
    client_side = Recorder()
    stream = await connection.open_stream(client_side)
    stream.send(b"pending")
    _, server_side = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    await until(lambda: server_side.received == b"pending")
    closed: list[object] = []
    connection.add_close_callback(closed.append)
    connection.close(0, "bye")
    assert connection.is_closed
    assert await asyncio.wait_for(client_side.reset, DEADLINE) == CONNECTION_LOST
    assert await asyncio.wait_for(server_side.reset, DEADLINE) == CONNECTION_LOST
    await asyncio.wait_for(connection.wait_closed(), DEADLINE)
    assert closed == [None]  # a clean local close
    with pytest.raises(TransportError, match="closed"):
        await connection.open_stream(Recorder())
    await until(lambda: server.listener.connections() == [])


async def test_abrupt_disconnect_resets_the_servers_streams(start_server, connect) -> None:
    server = await start_server(handler=Recorder)
    connection = await connect(server)
    stream = await connection.open_stream(Recorder())
    stream.send(b"half a request")
    server_stream, server_side = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    await until(lambda: server_side.received == b"half a request")
    errors: list[BaseException | None] = []
    server_stream.connection.add_close_callback(errors.append)
    connection._transport.abort()  # no GOAWAY, no TLS close_notify: the socket just goes
    assert await asyncio.wait_for(server_side.reset, DEADLINE) == CONNECTION_LOST
    await until(lambda: errors)
    assert isinstance(errors[0], TransportError)
    with pytest.raises(TransportError):
        server_stream.send(b"reply")


async def test_server_close_reaches_the_client_with_its_reason(start_server, connect) -> None:
    server = await start_server(handler=Recorder)
    connection = await connect(server)
    recorder = Recorder()
    stream = await connection.open_stream(recorder)
    stream.send(b"x")
    await asyncio.wait_for(server.accepted.get(), DEADLINE)
    errors: list[BaseException | None] = []
    connection.add_close_callback(errors.append)
    await asyncio.wait_for(server.listener.close(), DEADLINE)
    assert await asyncio.wait_for(recorder.reset, DEADLINE) == CONNECTION_LOST
    await until(lambda: errors)
    assert "server shutting down" in str(errors[0])
    assert connection.is_closed


async def test_open_stream_waits_for_stream_credit_first_come_first_served(start_server, connect) -> None:
    server = await start_server(handler=Recorder, max_streams=2)
    connection = await connect(server)
    first = await connection.open_stream(Recorder())
    await connection.open_stream(Recorder())
    third = asyncio.ensure_future(connection.open_stream(Recorder()))
    fourth = asyncio.ensure_future(connection.open_stream(Recorder()))
    cancelled = asyncio.ensure_future(connection.open_stream(Recorder()))
    await asyncio.sleep(0)
    cancelled.cancel()
    await until(lambda: server.accepted.qsize() == 2)
    assert not third.done() and not fourth.done()
    # Finishing a stream both ways returns one unit of credit: the first waiter goes.
    server_first, _ = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    first.send(b"", end_stream=True)
    server_first.send(b"", end_stream=True)
    await asyncio.wait_for(third, DEADLINE)
    assert not fourth.done()
    # A reset returns credit too.
    third.result().reset(1)
    await asyncio.wait_for(fourth, DEADLINE)
    assert fourth.result().stream_id > third.result().stream_id
    with pytest.raises(asyncio.CancelledError):
        await cancelled


async def test_credit_waiters_fail_when_the_connection_ends(start_server, connect) -> None:
    server = await start_server(handler=Recorder, max_streams=1)
    connection = await connect(server)
    await connection.open_stream(Recorder())
    waiting = asyncio.ensure_future(connection.open_stream(Recorder()))
    await asyncio.sleep(0)
    await asyncio.wait_for(server.listener.close(), DEADLINE)
    with pytest.raises(TransportError):
        await asyncio.wait_for(waiting, DEADLINE)


async def test_a_slow_reader_holds_back_the_sender_and_loses_nothing(start_server, connect) -> None:
    window = 64 * 1024
    server = await start_server(handler=Recorder, stream_window=window, send_high_water=16 * 1024)
    connection = await connect(server, stream_window=window, send_high_water=16 * 1024)
    recorder = Recorder()
    stream = await connection.open_stream(recorder)
    stream.send(b"go", end_stream=True)
    server_stream, _ = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    stream.pause_reading()
    chunk = bytes(range(256)) * 64  # 16 KiB
    sent = 0
    drained = True
    while drained and sent < 40 * len(chunk):
        server_stream.send(chunk)
        sent += len(chunk)
        try:
            await asyncio.wait_for(server_stream.drain(), 0.5)
        except TimeoutError:
            drained = False
    # The reader is paused: the sender stalled after about one window plus its high-water mark.
    assert not drained
    assert sent <= window + 16 * 1024 + 2 * len(chunk)
    await until(lambda: stream.buffered_bytes > 0)
    assert stream.buffered_bytes <= window
    assert recorder.events == []
    # Reading again lets everything through, in order.
    stream.resume_reading()
    server_stream.send(b"end", end_stream=True)
    received = await asyncio.wait_for(recorder.finished, DEADLINE)
    assert received == chunk * (sent // len(chunk)) + b"end"


async def test_paused_streams_hold_at_most_the_connection_window(start_server, connect) -> None:
    window = 64 * 1024
    server = await start_server(handler=Recorder)
    connection = await connect(server, stream_window=window, connection_window=2 * window)
    recorders = [Recorder() for _ in range(4)]
    streams = [await connection.open_stream(r) for r in recorders]
    server_streams = []
    for stream in streams:
        stream.pause_reading()
        stream.send(b"go", end_stream=True)
        server_streams.append((await asyncio.wait_for(server.accepted.get(), DEADLINE))[0])
    for server_stream in server_streams:
        server_stream.send(bytes(window))
    await until(lambda: sum(s.buffered_bytes for s in streams) >= 2 * window - 1)
    assert sum(s.buffered_bytes for s in streams) <= 2 * window
    for stream in streams:
        stream.resume_reading()
    for server_stream in server_streams:
        server_stream.send(b"", end_stream=True)
    received = await asyncio.wait_for(asyncio.gather(*(r.finished for r in recorders)), DEADLINE)
    assert received == [bytes(window)] * 4


async def test_large_messages_cross_in_frames_of_the_peers_size(start_server, connect) -> None:
    server = await start_server(max_frame_size=16 * 1024)
    connection = await connect(server)
    payload = bytes(range(256)) * 8192  # 2 MiB, beyond the 1 MiB stream window
    recorder = Recorder()
    stream = await connection.open_stream(recorder)
    stream.send(payload, end_stream=True)
    assert await asyncio.wait_for(recorder.finished, DEADLINE) == payload


async def test_graceful_go_away_lets_running_calls_finish_and_refuses_new_ones(start_server, connect) -> None:
    server = await start_server(handler=Recorder)
    connection = await connect(server)
    recorder = Recorder()
    stream = await connection.open_stream(recorder)
    stream.send(b"long call")
    server_stream, server_side = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    closed: list[BaseException | None] = []
    connection.add_close_callback(closed.append)
    server.listener.stop_accepting()
    await until(lambda: connection.is_closed)  # GOAWAY arrived: no new streams here
    with pytest.raises(TransportError, match="going away"):
        await connection.open_stream(Recorder())
    # The running call goes on both ways.
    stream.send(b" continues", end_stream=True)
    assert await asyncio.wait_for(server_side.finished, DEADLINE) == b"long call continues"
    server_stream.send(b"answer", end_stream=True)
    assert await asyncio.wait_for(recorder.finished, DEADLINE) == b"answer"
    # Its last stream done, the client closes the connection.
    await asyncio.wait_for(connection.wait_closed(), DEADLINE)
    await until(lambda: server.listener.connections() == [])
    # New clients are refused by the kernel: the listening socket is closed.
    with pytest.raises(TransportError, match="refused the connection"):
        await connect(server)


async def test_only_clients_open_streams(start_server, connect) -> None:
    server = await start_server(handler=Recorder)
    connection = await connect(server)
    stream = await connection.open_stream(Recorder())
    stream.send(b"x")
    server_stream, _ = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    with pytest.raises(TransportError, match="only clients open streams"):
        await server_stream.connection.open_stream(Recorder())


async def test_handler_exception_resets_only_that_stream(start_server, connect) -> None:
    class Exploding(Recorder):
        def data_received(self, data: bytes, end_stream: bool) -> None:
            raise RuntimeError("handler bug")

    server = await start_server(handler=Exploding)
    connection = await connect(server)
    recorder = Recorder()
    stream = await connection.open_stream(recorder)
    stream.send(b"boom")
    assert await asyncio.wait_for(recorder.reset, DEADLINE) == 1
    assert not connection.is_closed
    healthy = Recorder()
    other = await connection.open_stream(healthy)
    other.reset(3)  # the connection still takes streams
    assert connection._streams == {}


async def test_idle_connection_is_closed_by_the_idle_timeout(start_server, connect) -> None:
    server = await start_server(handler=Echo, idle_timeout=0.3, keepalive_interval=None)
    connection = await connect(server, idle_timeout=30, keepalive_interval=None)
    await asyncio.wait_for(connection.wait_closed(), DEADLINE)
    assert connection.is_closed


async def test_keepalive_keeps_a_quiet_connection_open(start_server, connect) -> None:
    server = await start_server(handler=Echo, idle_timeout=0.5, keepalive_interval=None)
    connection = await connect(server, idle_timeout=30, keepalive_interval=0.1)
    server_connection = None
    await until(lambda: server.listener.connections())
    server_connection = server.listener.connections()[0]
    received = server_connection._last_received
    # PINGs from the client keep arriving, so the server's idle timer never fires.
    await until(lambda: server_connection._last_received > received + 0.6, timeout=DEADLINE)
    assert not connection.is_closed and not server_connection.is_closed
