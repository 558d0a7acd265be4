"""Call semantics beyond the interop cases: deadlines, errors, limits, backpressure, hooks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rpcnet import RpcServer, ServerContext, current_deadline, hookimpl, make_plugin_manager
from rpcnet.errors import (
    CancelledError,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    RpcError,
    StatusCode,
    UnknownError,
)
from rpcnet.rpc import MethodKind
from rpcnet.rpc.server import _ServerCall

from .helpers import until


async def test_deadline_propagates_into_nested_calls(setup: Any) -> None:
    seen: dict[str, Any] = {}
    inner_server = setup.server()

    @inner_server.unary("inner")
    async def inner(request: Any, ctx: ServerContext) -> Any:
        seen["inner_remaining"] = ctx.time_remaining()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["inner_cancelled"] = True
            raise

    inner_address = await inner_server.start(setup.listen)
    nested = setup.client(inner_address)
    outer_server = setup.server()

    @outer_server.unary("outer")
    async def outer(request: Any, ctx: ServerContext) -> Any:
        seen["outer_deadline"] = current_deadline()
        await nested.call("inner", None)  # no timeout given: inherits the caller's
        return "unreachable"

    outer_address = await outer_server.start(setup.listen)
    client = setup.client(outer_address)
    try:
        with pytest.raises(DeadlineExceededError):
            await client.call("outer", None, timeout=0.5)
        assert seen["outer_deadline"] is not None
        assert 0 < seen["inner_remaining"] <= 0.5
        # The inner handler was cancelled at the inherited deadline, not after its 30 s sleep.
        await until(lambda: seen.get("inner_cancelled"), timeout=5)
        await until(lambda: inner_server.active_calls == 0)
    finally:
        await client.close()
        await nested.close()
        await outer_server.stop(grace=0)
        await inner_server.stop(grace=0)


async def test_expired_inherited_deadline_fails_before_sending(serve: Any) -> None:
    calls = []

    def register(server: RpcServer) -> None:
        @server.unary("count")
        async def count(request: Any, ctx: ServerContext) -> int:
            calls.append(request)
            return len(calls)

    _, client = await serve(register)
    from rpcnet.rpc.context import deadline_var

    token = deadline_var.set(asyncio.get_running_loop().time() - 1)
    try:
        with pytest.raises(DeadlineExceededError):
            await client.call("count", 1)
    finally:
        deadline_var.reset(token)
    assert calls == []


async def test_error_details_round_trip_exactly(serve: Any) -> None:
    details = {"field": "näme", "reasons": ["\U0001f608", "\u263a"], "raw": b"\x00\xff", "n": 2**40}

    def register(server: RpcServer) -> None:
        @server.unary("find")
        async def find(request: Any, ctx: ServerContext) -> Any:
            raise NotFoundError(f"no item {request!r} \U0001f50e", details=details, trailers={"retry-after": 3})

    _, client = await serve(register)
    with pytest.raises(NotFoundError) as info:
        await client.call("find", "x")
    assert info.value.code is StatusCode.NOT_FOUND
    assert info.value.message == "no item 'x' \U0001f50e"
    assert info.value.details == details
    assert info.value.trailers == {"retry-after": 3}


async def test_handler_exception_is_unknown_and_connection_survives(serve: Any) -> None:
    def register(server: RpcServer) -> None:
        @server.unary("boom")
        async def boom(request: Any, ctx: ServerContext) -> Any:
            raise ValueError("bad thing")

        @server.unary("ok")
        async def ok(request: Any, ctx: ServerContext) -> Any:
            return "fine"

    _, client = await serve(register)
    with pytest.raises(UnknownError) as info:
        await client.call("boom", None)
    assert "ValueError" in info.value.message and "bad thing" in info.value.message
    connection = client._connection
    assert await client.call("ok", None) == "fine"
    assert client._connection is connection


async def test_undecodable_request_is_invalid_argument(serve: Any) -> None:
    def register(server: RpcServer) -> None:
        @server.unary("echo")
        async def echo(request: Any, ctx: ServerContext) -> Any:
            return request

    _, client = await serve(register)
    with pytest.raises(InvalidArgumentError):
        # Sent as JSON to a msgpack method: valid frame, undecodable payload.
        await client.call("echo", {"a": 1}, serializer="json")


async def test_per_connection_cap(serve: Any) -> None:
    release = asyncio.Event()

    def register(server: RpcServer) -> None:
        @server.unary("hold")
        async def hold(request: Any, ctx: ServerContext) -> Any:
            await release.wait()
            return request

    server, client = await serve(register, max_concurrent_calls_per_connection=2)
    held = [asyncio.ensure_future(client.call("hold", i)) for i in range(2)]
    await until(lambda: server.active_calls == 2)
    # The limit is the stream credit: a third call waits for a stream (here
    # until its deadline) instead of being refused.
    with pytest.raises(DeadlineExceededError) as info:
        await client.call("hold", 3, timeout=0.2)
    assert info.value.message == (
        "deadline exceeded while waiting for a stream: the connection was at its limit of concurrent calls"
    )
    assert info.value.not_sent
    waiting = asyncio.ensure_future(client.call("hold", 4))
    release.set()
    assert await asyncio.gather(*held, waiting) == [0, 1, 4]


async def test_global_cap(setup: Any) -> None:
    release = asyncio.Event()
    server = setup.server(max_concurrent_calls=1)

    @server.unary("hold")
    async def hold(request: Any, ctx: ServerContext) -> Any:
        await release.wait()
        return request

    address = await server.start(setup.listen)
    first, second = setup.client(address), setup.client(address)
    try:
        held = asyncio.ensure_future(first.call("hold", 1))
        await until(lambda: server.active_calls == 1)
        with pytest.raises(ResourceExhaustedError):
            await second.call("hold", 2)
        release.set()
        assert await held == 1
    finally:
        await first.close()
        await second.close()
        await server.stop(grace=0)


async def test_request_over_the_size_limit_is_refused_before_sending(serve: Any) -> None:
    calls = []

    def register(server: RpcServer) -> None:
        @server.unary("echo")
        async def echo(request: Any, ctx: ServerContext) -> Any:
            calls.append(1)
            return request

    server, client = await serve(register)
    limit = client.config.max_message_size
    with pytest.raises(ResourceExhaustedError) as info:
        await client.call("echo", bytes(limit))  # msgpack adds a 5-byte prefix: 5 bytes over
    assert str(limit) in info.value.message
    assert calls == []


async def test_response_over_the_size_limit(setup: Any) -> None:
    server = setup.server(max_message_size=1000)

    @server.unary("big")
    async def big(request: Any, ctx: ServerContext) -> Any:
        return bytes(request)

    address = await server.start(setup.listen)
    client = setup.client(address)  # the client keeps the 4 MiB default
    try:
        assert len(await client.call("big", 990)) == 990
        with pytest.raises(ResourceExhaustedError) as info:
            await client.call("big", 1000)
        assert "1000-byte limit" in info.value.message
    finally:
        await client.close()
        await server.stop(grace=0)


async def test_client_limit_applies_to_received_messages(setup: Any) -> None:
    server = setup.server()

    @server.unary("big")
    async def big(request: Any, ctx: ServerContext) -> Any:
        return bytes(request)

    address = await server.start(setup.listen)
    client = setup.client(address, max_message_size=1000)
    try:
        with pytest.raises(ResourceExhaustedError) as info:
            await client.call("big", 2000)
        assert "exceeds the 1000-byte limit" in info.value.message
        assert len(await client.call("big", 10)) == 10
    finally:
        await client.close()
        await server.stop(grace=0)


async def test_server_streaming_backpressure(serve: Any) -> None:
    produced = []
    size = 16 * 1024

    def register(server: RpcServer) -> None:
        @server.server_streaming("flood")
        async def flood(count: int, ctx: ServerContext) -> Any:
            for index in range(count):
                produced.append(index)
                yield bytes(size)

    _, client = await serve(register)
    stream = client.call_server_streaming("flood", 400)
    first = await stream.read()
    assert len(first) == size
    # The reader stops; the producer must stall well before 400 messages
    # instead of buffering them all (the bound covers the reader's queue,
    # the stream window and the sender's buffer, about 48 messages here).
    loop = asyncio.get_running_loop()
    end = loop.time() + 0.5
    while loop.time() < end:
        assert len(produced) < 150, f"producer ran ahead to {len(produced)} messages"
        await asyncio.sleep(0.01)
    rest = [len(item) async for item in stream]
    assert len(rest) == 399 and len(produced) == 400


async def test_client_streaming_backpressure(serve: Any) -> None:
    gate = asyncio.Event()
    size = 16 * 1024

    def register(server: RpcServer) -> None:
        @server.client_streaming("sink")
        async def sink(requests: Any, ctx: ServerContext) -> int:
            await gate.wait()
            return sum([len(item) async for item in requests])

    _, client = await serve(register)
    sent = []

    async def requests() -> Any:
        for index in range(400):
            sent.append(index)
            yield bytes(size)

    result = asyncio.ensure_future(client.call_client_streaming("sink", requests()))
    await until(lambda: len(sent) > 0)
    loop = asyncio.get_running_loop()
    end = loop.time() + 0.5
    while loop.time() < end:
        assert len(sent) < 150, f"sender ran ahead to {len(sent)} messages"
        await asyncio.sleep(0.01)
    gate.set()
    assert await asyncio.wait_for(result, 30) == 400 * size


class CallRecorder:
    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []
        self.finished: list[tuple[str, str, StatusCode | None, bool]] = []

    @hookimpl(wrapper=True)
    def rpcnet_call(self, call: Any) -> Any:
        self.started.append((call.side, call.method))
        yield
        self.finished.append((call.side, call.method, call.status, call.duration is not None and call.duration >= 0))


async def test_call_wrapper_hook_sees_both_sides(setup: Any) -> None:
    recorder = CallRecorder()
    host = make_plugin_manager(plugins=[("recorder", recorder)])
    from rpcnet import RpcClient

    server = RpcServer(setup.server_config, plugins=host)

    @server.unary("ok")
    async def ok(request: Any, ctx: ServerContext) -> Any:
        return request

    @server.unary("missing")
    async def missing(request: Any, ctx: ServerContext) -> Any:
        raise NotFoundError("gone")

    address = await server.start(setup.listen)
    client = RpcClient(address, setup.client_config, plugins=host)
    try:
        await client.call("ok", 1)
        with pytest.raises(NotFoundError):
            await client.call("missing", 1)
        await until(lambda: len(recorder.finished) == 4)
    finally:
        await client.close()
        await server.stop(grace=0)
    assert ("client", "ok", StatusCode.OK, True) in recorder.finished
    assert ("server", "ok", StatusCode.OK, True) in recorder.finished
    assert ("client", "missing", StatusCode.NOT_FOUND, True) in recorder.finished
    assert ("server", "missing", StatusCode.NOT_FOUND, True) in recorder.finished


async def test_finished_calls_leave_no_reference_cycles(serve: Any) -> None:
    """A finished call is freed by reference counting: no per-call garbage
    piles up for the cyclic collector, whose pauses would stall every call."""
    import gc

    def register(server: RpcServer) -> None:
        @server.unary("echo")
        async def echo(request: Any, ctx: ServerContext) -> Any:
            return request

    _, client = await serve(register)
    for _ in range(20):  # connection set-up and caches are not what is measured
        await client.call("echo", b"warm")
    calls = 300
    gc.collect()
    gc.disable()
    try:
        for _ in range(calls // 30):
            await asyncio.gather(*(client.call("echo", b"x" * 64) for _ in range(30)))
        # Let the transports see the last acknowledgements and finish their streams.
        await asyncio.sleep(0)
        unreachable = gc.collect()
    finally:
        gc.enable()
    # Before streams dropped their handlers this was about 17 objects per call.
    assert unreachable < calls // 10, f"{unreachable} objects in reference cycles after {calls} calls"


async def test_handlers_run_as_real_tasks_with_their_own_context(serve: Any) -> None:
    """Handlers start eagerly, yet each is a real task: current_task(),
    asyncio.timeout(), task groups and contextvars work as in any task."""
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    tasks_seen: list[asyncio.Task[Any]] = []

    def register(server: RpcServer) -> None:
        @server.unary("probe")
        async def probe(request: Any, ctx: ServerContext) -> Any:
            task = asyncio.current_task()
            assert task is not None
            tasks_seen.append(task)
            before = var.get()
            var.set(request)  # must not leak into the next call
            async with asyncio.timeout(5):
                async with asyncio.TaskGroup() as group:
                    child = group.create_task(asyncio.sleep(0, result=var.get()))
            return [before, child.result()]

    _, client = await serve(register)
    first, second = await asyncio.gather(client.call("probe", "a"), client.call("probe", "b"))
    assert first == ["unset", "a"] and second == ["unset", "b"]
    assert len(tasks_seen) == 2 and tasks_seen[0] is not tasks_seen[1]


async def test_a_handler_that_answers_at_once_replies_inside_the_delivery_callback(setup: Any) -> None:
    """Eager start: the reply is written while the request is being delivered,
    so it leaves in the same event-loop turn (and packet) as the others."""
    from rpcnet.builtins.serializers import MsgpackSerializer
    from rpcnet.rpc.protocol import MESSAGE, PREFIX, encode_header
    from rpcnet.transport import PeerInfo

    server = setup.server()

    @server.unary("echo")
    async def echo(request: Any, ctx: ServerContext) -> Any:
        return request

    class Connection:
        peer = PeerInfo(address=("192.0.2.1", 1))

    class Stream:
        connection = Connection()
        stream_id = 0

        def __init__(self) -> None:
            self.sent: list[tuple[bytes, bool]] = []

        def send(self, data: bytes, end_stream: bool = False) -> None:
            self.sent.append((data, end_stream))

    message = MsgpackSerializer().dumps(b"now")
    request = encode_header("echo") + PREFIX.pack(MESSAGE, len(message)) + message
    stream = Stream()
    await server.start(setup.listen)
    loop = asyncio.get_running_loop()
    written_during_delivery = loop.create_future()

    def deliver() -> None:
        # Transports deliver from loop callbacks, as here, not from a task.
        _ServerCall(server, stream).data_received(request, True)
        written_during_delivery.set_result(list(stream.sent))

    try:
        loop.call_soon(deliver)
        sent = await asyncio.wait_for(written_during_delivery, 5)
        assert len(sent) == 1, "the reply was not written during delivery"
        data, end_stream = sent[0]
        assert end_stream and message in data
    finally:
        await server.stop(grace=0)


async def test_call_objects_offer_what_their_kind_has(serve: Any) -> None:
    from rpcnet.rpc import BidiCall, ClientStreamingCall

    def register(server: RpcServer) -> None:
        @server.client_streaming("total")
        async def total(requests: Any, ctx: ServerContext) -> int:
            return sum([r async for r in requests])

        @server.bidi_streaming("echo")
        async def echo(requests: Any, ctx: ServerContext) -> Any:
            async for r in requests:
                yield r

    _, client = await serve(register)
    assert await client.call_client_streaming("total", [1, 2, 3]) == 6
    by_hand = client.call_client_streaming("total")
    for n in (4, 5):
        await by_hand.send(n)
    await by_hand.done_writing()
    assert await by_hand == 9
    assert not hasattr(ClientStreamingCall, "__aiter__")  # one response: nothing to iterate
    bidi = client.call_streaming("echo", [1, 2])
    assert isinstance(bidi, BidiCall)
    assert [r async for r in bidi] == [1, 2]
    assert not hasattr(bidi, "result")  # many responses: no single result


def test_the_old_bidi_registration_names_warn_and_still_work() -> None:
    server = RpcServer()
    with pytest.warns(DeprecationWarning, match="use register_bidi_streaming"):
        server.register_streaming("a", lambda requests, ctx: requests)
    with pytest.warns(DeprecationWarning, match="use bidi_streaming"):
        server.streaming("b")(lambda requests, ctx: requests)
    assert {server.methods[n].kind for n in ("a", "b")} == {MethodKind.BIDI_STREAMING}


@pytest.mark.parametrize("kind", ["client_streaming", "bidi_streaming"])
async def test_a_request_iterator_that_raises_cancels_the_call_and_says_why(serve: Any, kind: str) -> None:
    handler_cancelled = asyncio.Event()

    def register(server: RpcServer) -> None:
        @server.client_streaming("total")
        async def total(requests: Any, ctx: ServerContext) -> int:
            try:
                return sum([r async for r in requests])
            except asyncio.CancelledError:
                handler_cancelled.set()
                raise

        @server.bidi_streaming("echo")
        async def echo(requests: Any, ctx: ServerContext) -> Any:
            try:
                async for r in requests:
                    yield r
            except asyncio.CancelledError:
                handler_cancelled.set()
                raise

    async def requests() -> Any:
        yield 1
        raise ValueError("the disk went away")

    _, client = await serve(register)
    # No deadline: before, the call waited forever for requests that never came.
    with pytest.raises(CancelledError, match="request iterator raised ValueError: the disk went away") as caught:
        if kind == "client_streaming":
            await asyncio.wait_for(client.call_client_streaming("total", requests()), 10)
        else:
            await asyncio.wait_for(_drain(client.call_streaming("echo", requests())), 10)
    assert isinstance(caught.value.__cause__, ValueError)
    await asyncio.wait_for(handler_cancelled.wait(), 10)
    assert await client.call_client_streaming("total", [1, 2]) == 3  # the connection is fine


async def _drain(responses: Any) -> list[Any]:
    return [r async for r in responses]


async def test_a_response_stream_the_caller_lets_go_of_gives_its_credit_back(serve: Any) -> None:
    cancelled = asyncio.Event()  # set when the handler ends

    def register(server: RpcServer) -> None:
        @server.server_streaming("forever")
        async def forever(request: Any, ctx: ServerContext) -> Any:
            try:
                n = 0
                while True:
                    yield n
                    n += 1
            finally:  # closed by the server once the call is cancelled
                cancelled.set()

    # One call at a time per connection: a leaked stream would block the next call.
    _, client = await serve(register, max_concurrent_calls_per_connection=1)
    async for n in client.call_server_streaming("forever", None):
        if n == 2:
            break  # no cancel(), no `async with`: the stream object is simply dropped
    await asyncio.wait_for(cancelled.wait(), 10)
    assert await asyncio.wait_for(_first(client.call_server_streaming("forever", None)), 10) == 0


async def _first(responses: Any) -> Any:
    async with responses:
        async for item in responses:
            return item


async def test_a_call_queued_for_credit_on_a_lost_connection_goes_to_a_fresh_one(serve: Any, setup: Any) -> None:
    """A call waiting for stream credit has sent nothing, so when its
    connection ends it connects again instead of failing; the call that was
    running on the lost connection fails (UNAVAILABLE)."""
    release = asyncio.Event()
    entered: list[str] = []

    def register(server: RpcServer) -> None:
        @server.unary("held")
        async def held(request: str, ctx: ServerContext) -> str:
            entered.append(request)
            if request == "first":
                await release.wait()
            return request

    _, client = await serve(register, max_concurrent_calls_per_connection=1)
    first = asyncio.ensure_future(client.call("held", "first"))
    await until(lambda: entered == ["first"])
    queued = asyncio.ensure_future(client.call("held", "queued"))
    await asyncio.sleep(0)
    assert not queued.done() and entered == ["first"]  # waiting for credit
    lost = client._link.connection  # the only way to lose a connection on purpose from outside
    lost.close(0, "test: connection lost")
    with pytest.raises(RpcError) as failed:
        await asyncio.wait_for(first, 5)
    assert failed.value.code is StatusCode.UNAVAILABLE
    assert await asyncio.wait_for(queued, 5) == "queued"
    assert client._link.connection is not lost and entered == ["first", "queued"]
    release.set()
