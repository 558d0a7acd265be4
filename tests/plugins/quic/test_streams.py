"""Streams over real QUIC: data, FIN, resets, connection loss, stream credit, flow control."""

from __future__ import annotations

import asyncio

import pytest

from rpcnet.errors import TransportError
from rpcnet.transport import CONNECTION_LOST

from ..transport_helpers import DEADLINE, Echo, Recorder, until


async def test_echo_on_one_stream_per_call(start_server, connect) -> None:
    server = await start_server()
    connection = await connect(server)
    replies = []
    for index in range(3):
        recorder = Recorder()
        stream = await connection.open_stream(recorder)
        stream.send(b"call %d " % index)
        stream.send(b"payload", end_stream=True)
        replies.append(await asyncio.wait_for(recorder.finished, DEADLINE))
    assert replies == [b"call 0 payload", b"call 1 payload", b"call 2 payload"]
    stream_ids = set()
    for _ in range(3):
        stream, _recorder = server.accepted.get_nowait()
        stream_ids.add(stream.stream_id)
    assert len(stream_ids) == 3  # a new stream per call, on one connection
    assert len(server.listener.connections()) == 1
    assert connection.peer.alpn == "rpcnet/1"


async def test_fin_alone_and_empty_messages(start_server, connect) -> None:
    server = await start_server()
    connection = await connect(server)
    recorder = Recorder()
    stream = await connection.open_stream(recorder)
    stream.send(b"")  # nothing to deliver: no event may follow from it
    stream.send(b"x")
    stream.send(b"", end_stream=True)
    assert await asyncio.wait_for(recorder.finished, DEADLINE) == b"x"
    _, server_side = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    # Every delivered event carries data, or is the FIN (possibly empty).
    assert all(data or fin for _, data, fin in server_side.events)
    assert server_side.events[-1][2] is True

    # A call with no bytes at all: FIN only, both ways.
    empty = Recorder()
    stream = await connection.open_stream(empty)
    stream.send(b"", end_stream=True)
    assert await asyncio.wait_for(empty.finished, DEADLINE) == b""
    assert empty.events == [("data", b"", True)]
    with pytest.raises(TransportError, match="ended for sending"):
        stream.send(b"more")


async def test_client_reset_reaches_server_handler(start_server, connect) -> None:
    server = await start_server(handler=Recorder)
    connection = await connect(server)
    recorder = Recorder()
    stream = await connection.open_stream(recorder)
    stream.send(b"begin")
    server_stream, server_side = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    await until(lambda: server_side.received == b"begin")
    stream.reset(7)
    stream.reset(7)  # idempotent
    assert await asyncio.wait_for(server_side.reset, DEADLINE) == 7
    assert recorder.events == []  # no callbacks after our own reset
    with pytest.raises(TransportError):
        stream.send(b"after reset")
    # The server's stream is released: sending on it fails instead of queueing.
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


async def test_stop_sending_after_request_finished_is_reported(start_server, connect) -> None:
    # The client got everything it wanted and aborts while the server still streams.
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
    done = Recorder()
    finished_stream = await connection.open_stream(done)
    finished_stream.send(b"", end_stream=True)
    _, finished_server_side = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    finished_server_side.stream.send(b"", end_stream=True)
    await asyncio.wait_for(done.finished, DEADLINE)

    closed_with: list[BaseException | None] = []
    connection.add_close_callback(closed_with.append)
    connection.close()
    assert connection.is_closed
    await asyncio.wait_for(connection.wait_closed(), DEADLINE)
    assert await asyncio.wait_for(client_side.reset, DEADLINE) == CONNECTION_LOST
    assert closed_with == [None]  # a clean local close
    assert done.events == [("data", b"", True)]  # finished streams hear nothing more
    # The server learns too: its open stream is lost and the connection ends.
    assert await asyncio.wait_for(server_side.reset, DEADLINE) == CONNECTION_LOST
    await until(lambda: server.listener.connections() == [])
    with pytest.raises(TransportError):
        await connection.open_stream(Recorder())


async def test_peer_close_marks_client_connection_closed(start_server, connect) -> None:
    server = await start_server()
    connection = await connect(server)
    reasons: list[BaseException | None] = []
    connection.add_close_callback(reasons.append)
    await until(lambda: len(server.listener.connections()) == 1)
    server.listener.connections()[0].close(0, "maintenance")
    await asyncio.wait_for(connection.wait_closed(), DEADLINE)
    assert connection.is_closed
    assert len(reasons) == 1 and "maintenance" in str(reasons[0])
    with pytest.raises(TransportError, match="maintenance"):
        await connection.open_stream(Recorder())


async def _server_gets(server, stream, data: bytes) -> bytes:
    """Send ``data`` and FIN on a fresh client stream; what the server's side received."""
    stream.send(data, end_stream=True)
    _, server_side = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    return await asyncio.wait_for(server_side.finished, DEADLINE)


async def test_open_stream_waits_for_stream_credit(start_server, connect) -> None:
    server = await start_server(handler=Recorder, max_streams=4)
    connection = await connect(server)
    streams = []
    for _ in range(4):
        stream = await connection.open_stream(Recorder())
        stream.send(b"hold")
        streams.append(stream)
    fifth = asyncio.ensure_future(connection.open_stream(Recorder()))
    sixth = asyncio.ensure_future(connection.open_stream(Recorder()))
    held = [await asyncio.wait_for(server.accepted.get(), DEADLINE) for _ in range(4)]
    await asyncio.sleep(0)
    assert not fifth.done() and not sixth.done()  # no credit: waiting, not failing or queueing

    # Finishing one call both ways returns one unit of credit.
    streams[0].send(b"", end_stream=True)
    held[0][0].send(b"", end_stream=True)
    stream5 = await asyncio.wait_for(fifth, DEADLINE)
    assert not sixth.done()
    assert await _server_gets(server, stream5, b"fifth") == b"fifth"

    # Closing the connection fails a waiter instead of leaving it hanging.
    connection.close()
    with pytest.raises(TransportError):
        await asyncio.wait_for(sixth, DEADLINE)


async def _the_only_stream_in_use(start_server, connect) -> tuple:
    """A server granting one stream, a client using it, and the server's side of it."""
    server = await start_server(handler=Recorder, max_streams=1)
    connection = await connect(server)
    first = await connection.open_stream(Recorder())
    first.send(b"x")
    (server_stream, _) = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    return server, connection, first, server_stream


async def test_cancelled_credit_waiter_does_not_consume_credit(start_server, connect) -> None:
    server, connection, first, server_stream = await _the_only_stream_in_use(start_server, connect)
    cancelled = asyncio.ensure_future(connection.open_stream(Recorder()))
    waiting = asyncio.ensure_future(connection.open_stream(Recorder()))
    await asyncio.sleep(0)
    cancelled.cancel()
    first.send(b"", end_stream=True)
    server_stream.send(b"", end_stream=True)
    stream = await asyncio.wait_for(waiting, DEADLINE)
    assert stream.stream_id == first.stream_id + 4


class Opened:
    """``open_stream_soon``'s callback: what it was called with, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, BaseException | None]] = []

    def __call__(self, stream: object, exc: BaseException | None) -> None:
        self.calls.append((stream, exc))


async def test_open_stream_soon_opens_at_once_with_credit_and_later_in_turn(start_server, connect) -> None:
    server = await start_server(handler=Recorder, max_streams=2)
    connection = await connect(server)
    assert connection.opens_streams_soon
    now = Opened()
    connection.open_stream_soon(Recorder(), now)
    assert len(now.calls) == 1 and now.calls[0][1] is None  # credit: opened before returning
    first = now.calls[0][0]
    first.send(b"one")
    second = await connection.open_stream(Recorder())
    second.send(b"two")
    held = [await asyncio.wait_for(server.accepted.get(), DEADLINE) for _ in range(2)]

    # No credit: a future waiter, then a callback, then another waiter, each in turn.
    waiter = asyncio.ensure_future(connection.open_stream(Recorder()))
    await asyncio.sleep(0)
    later = Opened()
    connection.open_stream_soon(Recorder(), later)
    last = asyncio.ensure_future(connection.open_stream(Recorder()))
    await asyncio.sleep(0)
    assert later.calls == [] and not waiter.done() and not last.done()

    for stream, (server_side, _) in zip((first, second), held, strict=True):
        stream.send(b"", end_stream=True)
        server_side.send(b"", end_stream=True)
    # Two units of credit went to the first two in line; the callback opens
    # its stream as it is granted, the waiter when it next runs.
    third = await asyncio.wait_for(waiter, DEADLINE)
    await until(lambda: later.calls)
    (fourth, error), = later.calls
    assert error is None and {third.stream_id, fourth.stream_id} == {second.stream_id + 4, second.stream_id + 8}
    assert not last.done()  # still no credit for it
    assert await _server_gets(server, fourth, b"fourth") == b"fourth"
    connection.close()
    with pytest.raises(TransportError):
        await asyncio.wait_for(last, DEADLINE)


async def test_open_stream_soon_withdrawn_or_failed_by_the_connection(start_server, connect) -> None:
    server, connection, first, server_stream = await _the_only_stream_in_use(start_server, connect)
    withdrawn, failed = Opened(), Opened()
    connection.open_stream_soon(Recorder(), withdrawn)()  # queued, then withdrawn at once
    connection.open_stream_soon(Recorder(), failed)
    waiting = asyncio.ensure_future(connection.open_stream(Recorder()))
    await asyncio.sleep(0)
    # Credit for one: the withdrawn request takes none, the next in line gets it.
    first.send(b"", end_stream=True)
    server_stream.send(b"", end_stream=True)
    await until(lambda: failed.calls)
    (stream, error), = failed.calls
    assert error is None and stream.stream_id == first.stream_id + 4
    assert withdrawn.calls == [] and not waiting.done()

    # Closing the connection answers a waiting request with the error.
    queued = Opened()
    connection.open_stream_soon(Recorder(), queued)
    connection.close()
    await until(lambda: queued.calls)
    (nothing, error), = queued.calls
    assert nothing is None and isinstance(error, TransportError)
    closed = Opened()
    connection.open_stream_soon(Recorder(), closed)  # on a closed connection: at once
    assert closed.calls[0][0] is None and isinstance(closed.calls[0][1], TransportError)
    with pytest.raises(TransportError):
        await asyncio.wait_for(waiting, DEADLINE)


async def test_a_failing_open_stream_soon_callback_loses_only_its_stream(start_server, connect) -> None:
    server, connection, first, server_stream = await _the_only_stream_in_use(start_server, connect)
    granted: list[object] = []

    def failing(stream: object, exc: BaseException | None) -> None:
        granted.append(stream)
        raise RuntimeError("callback bug")

    connection.open_stream_soon(Recorder(), failing)
    first.send(b"", end_stream=True)
    server_stream.send(b"", end_stream=True)  # credit for the queued request, granted in the receive path
    await until(lambda: granted)
    assert granted[0]._error is not None  # reset: its credit comes back
    stream = await asyncio.wait_for(connection.open_stream(Echo()), DEADLINE)  # the connection carries on
    assert await _server_gets(server, stream, b"after") == b"after"
    assert not connection.is_closed


async def test_paused_stream_buffers_at_most_one_window(start_server, connect) -> None:
    window = 64 * 1024
    server = await start_server(handler=Recorder, stream_window=window)
    connection = await connect(server, send_high_water=16 * 1024)
    stream = await connection.open_stream(Recorder())
    stream.send(b"a")
    server_stream, server_side = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    await until(lambda: server_side.received == b"a")
    server_stream.pause_reading()

    chunk = bytes(8 * 1024)
    total = 1 + 6 * window
    sender_done = asyncio.Event()

    async def send_all() -> None:
        for _ in range(6 * window // len(chunk)):
            stream.send(chunk)
            await stream.drain()
        stream.send(b"", end_stream=True)
        sender_done.set()

    sending = asyncio.ensure_future(send_all())
    # The peer may send one window beyond what the handler consumed, no more:
    # the sender ends up waiting in drain() while the receiver stays paused.
    backend = connection._backend
    await until(lambda: backend.send_backlog(connection._quic, stream.stream_id) > 16 * 1024)
    received_before = len(server_side.received)
    for _ in range(20):
        await asyncio.sleep(0.005)  # let packets flow; the limit must hold throughout
        buffered = server_stream.buffered_bytes
        assert buffered <= window
    assert len(server_side.received) == received_before  # paused: nothing delivered
    assert not sender_done.is_set()

    server_stream.resume_reading()
    await asyncio.wait_for(sending, DEADLINE)
    assert len(await asyncio.wait_for(server_side.finished, DEADLINE)) == total


async def test_handler_error_resets_only_that_stream(start_server, connect) -> None:
    class Exploding(Recorder):
        def data_received(self, data: bytes, end_stream: bool) -> None:
            if data == b"boom":
                raise RuntimeError("handler bug")
            super().data_received(data, end_stream)

    server = await start_server(handler=Exploding)
    connection = await connect(server)
    bad = Recorder()
    stream = await connection.open_stream(bad)
    stream.send(b"boom")
    await asyncio.wait_for(bad.reset, DEADLINE)
    good = Recorder()
    stream = await connection.open_stream(good)
    stream.send(b"fine", end_stream=True)
    _, server_side = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    _, server_side = await asyncio.wait_for(server.accepted.get(), DEADLINE)
    assert await asyncio.wait_for(server_side.finished, DEADLINE) == b"fine"
    assert not connection.is_closed


async def test_many_concurrent_calls_on_one_connection(start_server, connect) -> None:
    server = await start_server(handler=Echo, max_streams=16)
    connection = await connect(server)

    async def call(index: int) -> bytes:
        recorder = Recorder()
        stream = await connection.open_stream(recorder)
        stream.send(b"%d" % index, end_stream=True)
        return await recorder.finished

    results = await asyncio.wait_for(asyncio.gather(*(call(i) for i in range(200))), DEADLINE * 2)
    assert results == [b"%d" % i for i in range(200)]


async def test_finished_and_reset_streams_are_released(start_server, connect) -> None:
    server = await start_server(handler=Echo, max_streams=8)
    connection = await connect(server)
    for index in range(40):
        recorder = Recorder()
        stream = await connection.open_stream(recorder)
        if index % 2:
            stream.send(b"call", end_stream=True)
            await asyncio.wait_for(recorder.finished, DEADLINE)
        else:
            stream.send(b"abandoned")
            stream.reset(3)
    server_connection = server.listener.connections()[0]
    # Nothing is kept for finished calls, on either side, in rpcnet or in the QUIC stack.
    await until(lambda: not connection._streams and not server_connection._streams)
    await until(lambda: not connection._quic._streams and not server_connection._quic._streams)


async def test_a_stream_reset_before_any_data_returns_its_credit(start_server, connect) -> None:
    # A stream whose caller gave up before sending anything (cancelled while
    # its request was encoded, or refused meanwhile) must still reach the
    # server as a reset: a later stream of ours that did send makes the
    # server count it as opened, and only the reset finishes it there.
    server = await start_server(handler=Echo, max_streams=2)
    connection = await connect(server)
    for round_ in range(4):
        # Both units of credit came back from the round before, or this waits.
        silent = await asyncio.wait_for(connection.open_stream(Recorder()), DEADLINE)
        recorder = Recorder()
        sent = await asyncio.wait_for(connection.open_stream(recorder), DEADLINE)
        assert sent.stream_id == silent.stream_id + 4
        sent.send(b"%d" % round_, end_stream=True)  # the higher stream id goes first
        assert await asyncio.wait_for(recorder.finished, DEADLINE) == b"%d" % round_
        silent.reset(7)
    server_connection = server.listener.connections()[0]
    await until(lambda: not server_connection._streams)


async def test_servers_do_not_open_streams(start_server, connect) -> None:
    server = await start_server()
    await connect(server)
    await until(lambda: len(server.listener.connections()) == 1)
    with pytest.raises(TransportError, match="only clients open streams"):
        await asyncio.wait_for(server.listener.connections()[0].open_stream(Recorder()), DEADLINE)


async def test_returned_stream_credit_is_announced_in_small_batches(start_server, connect) -> None:
    server = await start_server(handler=Echo, max_streams=16)  # batches of 2
    connection = await connect(server)
    backend = connection._backend
    assert backend.peer_stream_limit(connection._quic) == 16
    held = []
    for _ in range(12):
        stream = await connection.open_stream(Recorder())
        stream.send(b"held")  # no FIN: stays open
        held.append(stream)
    for _ in range(2):
        recorder = Recorder()
        stream = await connection.open_stream(recorder)
        stream.send(b"done", end_stream=True)
        await asyncio.wait_for(recorder.finished, DEADLINE)
    # Two calls finished while the client still had credit left: the server
    # tells it at once instead of waiting until half its credit is used.
    await until(lambda: backend.peer_stream_limit(connection._quic) == 18)
