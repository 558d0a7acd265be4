"""The gRPC interoperability cases, over every transport.

Sizes and strings are those of grpc/doc/interop-test-descriptions.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rpcnet import RpcServer, ServerContext
from rpcnet.errors import (
    CancelledError,
    DeadlineExceededError,
    RpcError,
    StatusCode,
    UnavailableError,
    UnimplementedError,
    UnknownError,
)

from .helpers import until

REQUEST_SIZES = [27182, 8, 1828, 45904]
RESPONSE_SIZES = [31415, 9, 2653, 58979]
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"


def register_test_service(server: RpcServer, events: dict[str, Any] | None = None) -> None:
    events = events if events is not None else {}

    @server.unary("EmptyCall")
    async def empty_call(request: bytes, ctx: ServerContext) -> bytes:
        assert request == b""
        return b""

    @server.unary("UnaryCall")
    async def unary_call(request: dict[str, Any], ctx: ServerContext) -> dict[str, Any]:
        echo = ctx.metadata.get("x-grpc-test-echo-initial")
        if echo is not None:
            ctx.set_initial_metadata({"x-grpc-test-echo-initial": echo})
        trailing = ctx.metadata.get("x-grpc-test-echo-trailing-bin")
        if trailing is not None:
            ctx.set_trailers({"x-grpc-test-echo-trailing-bin": trailing})
        status = request.get("response_status")
        if status:
            ctx.abort(status["code"], status["message"])
        return {"payload": bytes(request["response_size"])}

    @server.client_streaming("StreamingInputCall")
    async def streaming_input(requests: Any, ctx: ServerContext) -> dict[str, int]:
        total = 0
        events["input_started"] = True
        try:
            async for request in requests:
                total += len(request["payload"])
        except asyncio.CancelledError:
            events["input_cancelled"] = True
            raise
        return {"aggregated_payload_size": total}

    @server.server_streaming("StreamingOutputCall")
    async def streaming_output(request: dict[str, Any], ctx: ServerContext) -> Any:
        for size in request["response_sizes"]:
            yield {"payload": bytes(size)}
            if request.get("pause_after_each"):
                await asyncio.sleep(request["pause_after_each"])

    @server.bidi_streaming("FullDuplexCall")
    async def full_duplex(requests: Any, ctx: ServerContext) -> Any:
        echo = ctx.metadata.get("x-grpc-test-echo-initial")
        if echo is not None:
            ctx.set_initial_metadata({"x-grpc-test-echo-initial": echo})
        trailing = ctx.metadata.get("x-grpc-test-echo-trailing-bin")
        if trailing is not None:
            ctx.set_trailers({"x-grpc-test-echo-trailing-bin": trailing})
        try:
            async for request in requests:
                if request.get("sleep"):
                    await asyncio.sleep(request["sleep"])
                status = request.get("response_status")
                if status:
                    ctx.abort(status["code"], status["message"])
                yield {"payload": bytes(request["response_size"])}
        except asyncio.CancelledError:
            events["duplex_cancelled"] = True
            raise


async def test_empty_unary(serve: Any) -> None:
    _, client = await serve(register_test_service)
    assert await client.call("EmptyCall", b"") == b""


async def test_large_unary(serve: Any) -> None:
    _, client = await serve(register_test_service)
    reply = await client.call("UnaryCall", {"response_size": 314159, "payload": bytes(271828)})
    assert reply == {"payload": bytes(314159)}


async def test_client_streaming(serve: Any) -> None:
    _, client = await serve(register_test_service)
    requests = [{"payload": bytes(size)} for size in REQUEST_SIZES]
    reply = await client.call_client_streaming("StreamingInputCall", requests)
    assert reply == {"aggregated_payload_size": 74922}


async def test_client_streaming_from_async_generator(serve: Any) -> None:
    _, client = await serve(register_test_service)

    async def requests() -> Any:
        for size in REQUEST_SIZES:
            yield {"payload": bytes(size)}

    reply = await client.call_client_streaming("StreamingInputCall", requests())
    assert reply == {"aggregated_payload_size": 74922}


async def test_server_streaming(serve: Any) -> None:
    _, client = await serve(register_test_service)
    sizes = [len(r["payload"]) async for r in client.call_server_streaming("StreamingOutputCall", {"response_sizes": RESPONSE_SIZES})]
    assert sizes == RESPONSE_SIZES


async def test_ping_pong(serve: Any) -> None:
    _, client = await serve(register_test_service)
    call = client.call_streaming("FullDuplexCall")
    for request_size, response_size in zip(REQUEST_SIZES, RESPONSE_SIZES):
        await call.send({"response_size": response_size, "payload": bytes(request_size)})
        reply = await call.read()
        assert len(reply["payload"]) == response_size
    await call.done_writing()
    with pytest.raises(EOFError):
        await call.read()


async def test_empty_stream(serve: Any) -> None:
    _, client = await serve(register_test_service)
    call = client.call_streaming("FullDuplexCall", [])
    assert [reply async for reply in call] == []


async def test_custom_metadata_unary(serve: Any) -> None:
    _, client = await serve(register_test_service)
    metadata = {"x-grpc-test-echo-initial": "test_initial_metadata_value", "x-grpc-test-echo-trailing-bin": b"\xab\xab\xab"}
    reply, received = await client.call_with_metadata("UnaryCall", {"response_size": 314159, "payload": bytes(271828)}, metadata=metadata)
    assert len(reply["payload"]) == 314159
    assert received.initial == {"x-grpc-test-echo-initial": "test_initial_metadata_value"}
    assert received.trailers == {"x-grpc-test-echo-trailing-bin": b"\xab\xab\xab"}


async def test_custom_metadata_full_duplex(serve: Any) -> None:
    _, client = await serve(register_test_service)
    metadata = {"x-grpc-test-echo-initial": "test_initial_metadata_value", "x-grpc-test-echo-trailing-bin": b"\xab\xab\xab"}
    call = client.call_streaming("FullDuplexCall", [{"response_size": 314159, "payload": bytes(271828)}], metadata=metadata)
    replies = [reply async for reply in call]
    assert [len(r["payload"]) for r in replies] == [314159]
    assert call.initial_metadata == {"x-grpc-test-echo-initial": "test_initial_metadata_value"}
    assert call.trailers == {"x-grpc-test-echo-trailing-bin": b"\xab\xab\xab"}


async def test_status_code_and_message(serve: Any) -> None:
    _, client = await serve(register_test_service)
    status = {"code": 2, "message": "test status message"}
    with pytest.raises(UnknownError) as unary:
        await client.call("UnaryCall", {"response_size": 1, "response_status": status})
    assert unary.value.code is StatusCode.UNKNOWN and unary.value.message == "test status message"
    call = client.call_streaming("FullDuplexCall", [{"response_size": 1, "response_status": status}])
    with pytest.raises(UnknownError) as duplex:
        [reply async for reply in call]
    assert duplex.value.message == "test status message"


async def test_special_status_message(serve: Any) -> None:
    _, client = await serve(register_test_service)
    with pytest.raises(UnknownError) as info:
        await client.call("UnaryCall", {"response_size": 1, "response_status": {"code": 2, "message": SPECIAL_MESSAGE}})
    assert info.value.message.encode("utf-8") == SPECIAL_MESSAGE.encode("utf-8")


async def test_unimplemented_method(serve: Any) -> None:
    _, client = await serve(register_test_service)
    with pytest.raises(UnimplementedError) as info:
        await client.call("UnimplementedCall", b"")
    assert "UnimplementedCall" in info.value.message
    # The connection survives: the next call works.
    assert await client.call("EmptyCall", b"") == b""


async def test_cancel_after_begin(serve: Any) -> None:
    events: dict[str, Any] = {}
    server, client = await serve(lambda s: register_test_service(s, events))
    call = client.call_client_streaming("StreamingInputCall")
    await call._start()
    await until(lambda: events.get("input_started"))
    call.cancel()
    with pytest.raises(CancelledError):
        await call.result()
    await until(lambda: events.get("input_cancelled"))
    await until(lambda: server.active_calls == 0)


async def test_cancel_after_first_response(serve: Any) -> None:
    events: dict[str, Any] = {}
    server, client = await serve(lambda s: register_test_service(s, events))
    call = client.call_streaming("FullDuplexCall")
    await call.send({"response_size": 31415, "payload": bytes(27182)})
    assert len((await call.read())["payload"]) == 31415
    call.cancel()
    with pytest.raises(CancelledError):
        await call.read()
    await until(lambda: events.get("duplex_cancelled"))
    await until(lambda: server.active_calls == 0)


async def test_cancel_by_task_cancellation(serve: Any) -> None:
    events: dict[str, Any] = {}
    server, client = await serve(lambda s: register_test_service(s, events))
    call = client.call_streaming("FullDuplexCall")
    await call.send({"response_size": 1, "sleep": 30})
    reader = asyncio.ensure_future(call.read())
    await until(lambda: server.active_calls == 1)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await until(lambda: events.get("duplex_cancelled"))


async def test_timeout_on_sleeping_server(serve: Any) -> None:
    events: dict[str, Any] = {}
    server, client = await serve(lambda s: register_test_service(s, events))
    call = client.call_streaming("FullDuplexCall", [{"response_size": 1, "payload": bytes(27182), "sleep": 30}], timeout=0.05)
    with pytest.raises(DeadlineExceededError):
        [reply async for reply in call]
    await until(lambda: server.active_calls == 0)


async def test_server_reset_mid_stream_fails_the_call(serve: Any) -> None:
    server, client = await serve(register_test_service)
    stream = client.call_server_streaming(
        "StreamingOutputCall", {"response_sizes": [10] * 1000, "pause_after_each": 0.01}
    )
    assert len((await stream.read())["payload"]) == 10
    stopping = asyncio.ensure_future(server.stop(grace=0))
    with pytest.raises((UnavailableError, CancelledError)):
        async for _ in stream:
            pass
    await asyncio.wait_for(stopping, 10)


async def test_graceful_shutdown_between_calls(setup: Any) -> None:
    first = setup.server()
    register_test_service(first)
    address = await first.start(setup.listen)
    client = setup.client(address)
    try:
        assert await client.call("EmptyCall", b"") == b""
        old_connection = client._connection
        await first.stop(grace=5)
        second = setup.server()
        register_test_service(second)
        await second.start(address)
        try:
            assert await asyncio.wait_for(client.call("EmptyCall", b""), 10) == b""
            assert client._connection is not old_connection
        finally:
            await second.stop(grace=0)
    finally:
        await client.close()


async def test_graceful_shutdown_lets_running_calls_finish(serve: Any) -> None:
    server, client = await serve(register_test_service)
    stream = client.call_server_streaming("StreamingOutputCall", {"response_sizes": [5] * 5, "pause_after_each": 0.05})
    assert len((await stream.read())["payload"]) == 5
    stopping = asyncio.ensure_future(server.stop(grace=10))
    rest = [len(r["payload"]) async for r in stream]
    assert rest == [5] * 4
    await asyncio.wait_for(stopping, 10)
    with pytest.raises(RpcError):
        await client.call("EmptyCall", b"", timeout=2)
