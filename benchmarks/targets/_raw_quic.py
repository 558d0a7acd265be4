"""Raw QUIC (aioquic, or qh3 through the same API): one bidirectional stream per call, no framework.

``raw_aioquic`` and ``raw_qh3`` are this module with the library named, so
both baselines run the very same code.

The request is a one-byte method tag and the body; the server answers when
the request stream ends. Server-streamed messages carry a 4-byte length
prefix so the client can hand them over one by one. The server sends from its
event handler, so aioquic transmits once per received datagram; the client
coalesces the transmits its callers cause during one event-loop turn into
one (as aioquic's own stream writers do), instead of a send per call.

A call beyond the server's stream credit (MAX_STREAMS) waits in a queue and
leaves with the first transmit after the credit arrives. aioquic does this
itself (a stream beyond the limit is created blocked, and its data goes out
once MAX_STREAMS raises the limit); qh3 raises instead, so the client keeps
the queue, on both libraries alike, and neither waits longer than aioquic's
own queue would.
Configuration is aioquic's default apart from the certificate and ALPN.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import os
import struct
from collections.abc import AsyncIterator

from targets import BENCH_ALPN, TlsFiles, decode_download, download_message

#: The library, from the module that loaded this one (raw_aioquic or raw_qh3).
_LIBRARY = os.environ.get("RPCNET_BENCH_RAW_LIBRARY", "aioquic")
_asyncio = importlib.import_module(f"{_LIBRARY}.asyncio")
QuicConnectionProtocol, serve, quic_connect = _asyncio.QuicConnectionProtocol, _asyncio.serve, _asyncio.connect
QuicConfiguration = importlib.import_module(f"{_LIBRARY}.quic.configuration").QuicConfiguration
_events = importlib.import_module(f"{_LIBRARY}.quic.events")
ConnectionTerminated, StreamDataReceived, StreamReset = (
    _events.ConnectionTerminated, _events.StreamDataReceived, _events.StreamReset
)


def _stream_limit(quic) -> int:
    """Bidirectional streams the server lets the client open in total."""
    if _LIBRARY == "qh3":
        return quic.max_concurrent_bidi_streams
    return quic._remote_max_streams_bidi


def _datagram_options() -> dict[str, int]:
    """``max_datagram_size`` when the scenario caps datagrams (RPCNET_BENCH_MAX_DATAGRAM).

    On qh3 path MTU probing is then off: its probes grow a client's
    datagrams past the setting (1456 bytes with 1452), and the cap is the
    scenario's path."""
    size = os.environ.get("RPCNET_BENCH_MAX_DATAGRAM")
    if not size:
        return {}
    options = {"max_datagram_size": int(size)}
    if _LIBRARY == "qh3":
        options["probe_datagram_size"] = False
    return options

ECHO = b"e"
DOWNLOAD = b"d"
LENGTH = struct.Struct("!I")


class ServerProtocol(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._requests: dict[int, list[bytes]] = {}

    def quic_event_received(self, event) -> None:
        if not isinstance(event, StreamDataReceived):
            if isinstance(event, StreamReset):
                self._requests.pop(event.stream_id, None)
            return
        stream_id = event.stream_id
        if not event.end_stream:
            self._requests.setdefault(stream_id, []).append(event.data)
            return
        parts = self._requests.pop(stream_id, None)
        request = event.data if parts is None else b"".join([*parts, event.data])
        tag = request[:1]
        if tag == ECHO:
            self._quic.send_stream_data(stream_id, request[1:], end_stream=True)
        elif tag == DOWNLOAD:
            count, size = decode_download(request[1:])
            frame = LENGTH.pack(size) + download_message(size)
            for _ in range(count):
                self._quic.send_stream_data(stream_id, frame)
            self._quic.send_stream_data(stream_id, b"", end_stream=True)
        # aioquic transmits after handling the datagram that carried this event.


class RawQuicServer:
    def __init__(self, server) -> None:
        self._server = server
        self.port: int = server._transport.get_extra_info("sockname")[1]

    async def close(self) -> None:
        self._server.close()


def _server_configuration(tls: TlsFiles) -> QuicConfiguration:
    configuration = QuicConfiguration(is_client=False, alpn_protocols=[BENCH_ALPN], **_datagram_options())
    configuration.load_cert_chain(tls.cert_file, tls.key_file)
    return configuration


async def start_server(host: str, tls: TlsFiles) -> RawQuicServer:
    server = await serve(host, 0, configuration=_server_configuration(tls), create_protocol=ServerProtocol)
    return RawQuicServer(server)


class _UnaryCall:
    __slots__ = ("future", "parts")

    def __init__(self, future: asyncio.Future[bytes]) -> None:
        self.future = future
        self.parts: list[bytes] = []

    def feed(self, data: bytes, end: bool) -> None:
        if not end:
            self.parts.append(data)
        elif self.parts:
            self.parts.append(data)
            self.future.set_result(b"".join(self.parts))
        else:
            self.future.set_result(data)

    def fail(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class _StreamCall:
    __slots__ = ("buffer", "queue")

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.queue: asyncio.Queue[bytes | Exception | None] = asyncio.Queue()

    def feed(self, data: bytes, end: bool) -> None:
        buffer = self.buffer
        buffer += data
        offset = 0
        available = len(buffer)
        while available - offset >= LENGTH.size:
            (length,) = LENGTH.unpack_from(buffer, offset)
            start = offset + LENGTH.size
            if available - start < length:
                break
            self.queue.put_nowait(bytes(buffer[start : start + length]))
            offset = start + length
        if offset:
            del buffer[:offset]
        if end:
            self.queue.put_nowait(None)

    def fail(self, exc: Exception) -> None:
        self.queue.put_nowait(exc)


class ClientProtocol(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._calls: dict[int, _UnaryCall | _StreamCall] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._terminated: Exception | None = None
        # Calls waiting, in order, for the server's stream credit (MAX_STREAMS).
        self._waiting: collections.deque[tuple[bytes, _UnaryCall | _StreamCall]] = collections.deque()

    def quic_event_received(self, event) -> None:
        if isinstance(event, StreamDataReceived):
            call = self._calls.get(event.stream_id)
            if call is not None:
                if event.end_stream:
                    del self._calls[event.stream_id]
                call.feed(event.data, event.end_stream)
        elif isinstance(event, StreamReset):
            call = self._calls.pop(event.stream_id, None)
            if call is not None:
                call.fail(ConnectionResetError(f"server reset stream {event.stream_id}"))
        elif isinstance(event, ConnectionTerminated):
            self._terminated = ConnectionError(f"connection closed: {event.reason_phrase or event.error_code}")
            for call in self._calls.values():
                call.fail(self._terminated)
            self._calls.clear()
            for _, call in self._waiting:
                call.fail(self._terminated)
            self._waiting.clear()

    def _start(self, request: bytes, call: _UnaryCall | _StreamCall) -> None:
        if self._terminated is not None:
            raise self._terminated
        if self._waiting or not self._has_credit():
            self._waiting.append((request, call))
            return
        self._open(request, call)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _open(self, request: bytes, call: _UnaryCall | _StreamCall) -> None:
        stream_id = self._quic.get_next_available_stream_id()
        self._calls[stream_id] = call
        self._quic.send_stream_data(stream_id, request, end_stream=True)

    def _has_credit(self) -> bool:
        """The peer's MAX_STREAMS allows one more bidirectional stream."""
        return self._quic.get_next_available_stream_id() // 4 < _stream_limit(self._quic)

    def transmit(self) -> None:
        # Runs after every datagram received: calls waiting for stream
        # credit leave as soon as a MAX_STREAMS frame has granted it.
        waiting = self._waiting
        while waiting and self._has_credit():
            self._open(*waiting.popleft())
        super().transmit()

    def _flush(self) -> None:
        self._flush_handle = None
        self.transmit()

    async def unary(self, payload: bytes) -> bytes:
        call = _UnaryCall(self._loop.create_future())
        self._start(ECHO + payload, call)
        return await call.future

    async def download(self, request: bytes) -> AsyncIterator[bytes]:
        call = _StreamCall()
        self._start(DOWNLOAD + request, call)
        while True:
            item = await call.queue.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item


class RawQuicClient:
    def __init__(self, stack: contextlib.AsyncExitStack, protocol: ClientProtocol) -> None:
        self._stack = stack
        self._protocol = protocol
        self.unary = protocol.unary
        self.download = protocol.download

    async def close(self) -> None:
        await self._stack.aclose()


async def connect(host: str, port: int, tls: TlsFiles) -> RawQuicClient:
    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=[BENCH_ALPN], server_name=tls.server_name, **_datagram_options()
    )
    configuration.load_verify_locations(tls.ca_file)
    stack = contextlib.AsyncExitStack()
    protocol = await stack.enter_async_context(
        quic_connect(host, port, configuration=configuration, create_protocol=ClientProtocol)
    )
    return RawQuicClient(stack, protocol)
