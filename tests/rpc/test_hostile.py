"""Hostile input: every case gets a clear error, memory stays bounded, others keep working."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest

from rpcnet import RpcServer, ServerContext
from rpcnet.errors import StatusCode
from rpcnet.rpc.protocol import (
    ALPN,
    HEADER,
    MESSAGE,
    TRAILER,
    FrameDecoder,
    decode_trailer,
    encode_frame,
    encode_header,
)

from .helpers import until


class Collector:
    """A raw stream handler that records what the server sends back."""

    def __init__(self) -> None:
        self.data = b""
        self.ended = asyncio.Event()
        self.reset_code: int | None = None

    def data_received(self, data: bytes, end_stream: bool) -> None:
        self.data += data
        if end_stream:
            self.ended.set()

    def stream_reset(self, error_code: int) -> None:
        self.reset_code = error_code
        self.ended.set()

    def status(self) -> tuple[int, str]:
        frames = FrameDecoder(1 << 30).feed(self.data)
        trailers = [payload for kind, payload in frames if kind == TRAILER]
        assert trailers, f"no trailer in {frames!r}"
        code, message, _, _ = decode_trailer(trailers[-1])
        return code, message


def register(server: RpcServer) -> None:
    @server.unary("echo")
    async def echo(request: Any, ctx: ServerContext) -> Any:
        return request

    @server.client_streaming("sink")
    async def sink(requests: Any, ctx: ServerContext) -> int:
        return len([item async for item in requests])


async def raw_connection(client: Any) -> Any:
    return await client.transport.connect(client.address, alpn=ALPN, tls=client.config.tls, server_name=client.server_name)


async def send_raw(connection: Any, data: bytes, end_stream: bool = True) -> Collector:
    collector = Collector()
    stream = await connection.open_stream(collector)
    stream.send(data, end_stream)
    await asyncio.wait_for(collector.ended.wait(), 10)
    return collector


@pytest.fixture
async def hostile(serve: Any) -> Any:
    server, client = await serve(register, max_message_size=64 * 1024)
    connection = await raw_connection(client)
    yield server, client, connection
    connection.close()


async def test_length_prefix_of_max_uint32(hostile: Any) -> None:
    server, client, connection = hostile
    collector = await send_raw(connection, encode_header("echo") + struct.pack(">BI", MESSAGE, 2**32 - 1) + b"xx", end_stream=False)
    code, message = collector.status()
    assert code == StatusCode.RESOURCE_EXHAUSTED
    assert "4294967295 bytes exceeds the 65536-byte limit" in message
    assert await client.call("echo", b"still fine") == b"still fine"


async def test_header_with_huge_length_prefix(hostile: Any) -> None:
    server, client, connection = hostile
    collector = await send_raw(connection, struct.pack(">BI", HEADER, 2**32 - 1), end_stream=False)
    code, message = collector.status()
    assert code == StatusCode.RESOURCE_EXHAUSTED and "metadata limit" in message


async def test_message_one_byte_over_the_cap(hostile: Any) -> None:
    server, client, connection = hostile
    limit = 64 * 1024
    at_limit = await send_raw(connection, encode_header("echo") + encode_frame(MESSAGE, _msgpack_bin(limit)))
    assert at_limit.status()[0] == StatusCode.OK
    over = await send_raw(connection, encode_header("echo") + struct.pack(">BI", MESSAGE, limit + 1) + bytes(limit + 1))
    code, message = over.status()
    assert code == StatusCode.RESOURCE_EXHAUSTED and f"{limit + 1} bytes" in message


def _msgpack_bin(total: int) -> bytes:
    """A msgpack bin value whose encoding is exactly ``total`` bytes."""
    import msgpack

    return msgpack.packb(bytes(total - 5))


async def test_garbage_after_the_header(hostile: Any) -> None:
    server, client, connection = hostile
    collector = await send_raw(connection, encode_header("echo") + b"\xffgarbage that is not a frame")
    code, message = collector.status()
    assert code == StatusCode.INTERNAL and "unknown frame type 0xff" in message
    assert await client.call("echo", 1) == 1


async def test_malformed_header_payload(hostile: Any) -> None:
    server, client, connection = hostile
    collector = await send_raw(connection, encode_frame(HEADER, b"\x92\x01\x02"))  # a msgpack list, not a map
    code, message = collector.status()
    assert code == StatusCode.INTERNAL and "expected a map" in message


async def test_message_before_header(hostile: Any) -> None:
    server, client, connection = hostile
    collector = await send_raw(connection, encode_frame(MESSAGE, b"\xc0"))
    code, message = collector.status()
    assert code == StatusCode.INTERNAL and "first frame of a call must be a header" in message


async def test_stream_ending_inside_a_frame(hostile: Any) -> None:
    server, client, connection = hostile
    collector = await send_raw(connection, encode_header("echo")[:3])
    code, message = collector.status()
    assert code == StatusCode.INTERNAL and "ended before a complete header" in message


async def test_stream_ending_inside_a_frame_after_a_complete_request(hostile: Any) -> None:
    server, client, connection = hostile
    request = encode_header("echo") + encode_frame(MESSAGE, b"\x01")  # msgpack 1
    collector = await send_raw(connection, request + b"\x02\x00")  # the start of a second frame, then FIN
    code, message = collector.status()
    assert code == StatusCode.INTERNAL and "ended inside a frame (2 bytes" in message
    assert await client.call("echo", 1) == 1


async def test_unary_with_two_requests(hostile: Any) -> None:
    server, client, connection = hostile
    message = encode_frame(MESSAGE, b"\x01")
    collector = await send_raw(connection, encode_header("echo") + message + message)
    code, text = collector.status()
    assert code == StatusCode.INVALID_ARGUMENT and "exactly one request" in text


async def test_many_streams_opened_and_never_finished(hostile: Any) -> None:
    """10 000 streams opened without ever finishing: the transport's stream
    credit and the per-connection handler cap bound what the server holds;
    a well-behaved client keeps being served."""
    server, client, connection = hostile
    opened: list[Any] = []
    header = encode_header("sink") + encode_frame(MESSAGE, b"\x01")

    async def open_one() -> None:
        stream = await connection.open_stream(Collector())
        stream.send(header, False)  # never finished
        opened.append(stream)

    tasks = [asyncio.ensure_future(open_one()) for _ in range(10_000)]
    await until(lambda: len(opened) >= 100)
    for _ in range(200):  # give the opener every chance to run ahead
        await asyncio.sleep(0)
    stalled_at = len(opened)
    assert server.active_calls <= server.config.max_concurrent_calls_per_connection
    assert await asyncio.wait_for(client.call("echo", b"served"), 10) == b"served"
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert stalled_at <= 1024  # bounded by stream credit, far below 10 000


async def test_rapid_open_and_reset(hostile: Any) -> None:
    server, client, connection = hostile
    header = encode_header("sink")
    for _ in range(2_000):
        stream = await connection.open_stream(Collector())
        stream.send(header, False)
        stream.reset(1)
    await until(lambda: server.active_calls == 0)
    assert await client.call("echo", 7) == 7
