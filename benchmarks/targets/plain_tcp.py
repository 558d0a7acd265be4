"""Plain asyncio TCP: the floor. No TLS, no framework (``tls_tcp`` is the same with TLS 1.3).

Frames are ``length, request id, kind`` followed by the payload; many calls
share the one connection, told apart by request id. The server parses every
whole frame a read delivered and answers them with one write; the client
gathers the frames its callers produce during one event-loop turn into one
write, the same batching the raw aioquic target does.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from typing import Any

from targets import TlsFiles, decode_download, download_message

HEADER = struct.Struct("!IIB")
ECHO, REPLY, DOWNLOAD, MESSAGE, END = range(5)


class FrameReader:
    """Splits a byte stream into ``(request id, kind, payload)`` frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytearray]]:
        buffer = self._buffer
        buffer += data
        frames = []
        offset = 0
        end = len(buffer)
        while end - offset >= HEADER.size:
            length, request_id, kind = HEADER.unpack_from(buffer, offset)
            start = offset + HEADER.size
            if end - start < length:
                break
            # A bytearray slice is one copy; bytes() of it would be a second.
            frames.append((request_id, kind, buffer[start : start + length]))
            offset = start + length
        if offset:
            del buffer[:offset]
        return frames


class ServerProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._reader = FrameReader()

    def data_received(self, data: bytes) -> None:
        out: list[bytes] = []
        for request_id, kind, payload in self._reader.feed(data):
            if kind == ECHO:
                out.append(HEADER.pack(len(payload), request_id, REPLY))
                out.append(payload)
            elif kind == DOWNLOAD:
                count, size = decode_download(payload)
                frame = HEADER.pack(size, request_id, MESSAGE) + download_message(size)
                out.extend([frame] * count)
                out.append(HEADER.pack(0, request_id, END))
        if out:
            self._transport.write(b"".join(out))


class TcpServer:
    def __init__(self, server: asyncio.Server) -> None:
        self._server = server
        self.port: int = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()


async def start_server(host: str, tls: TlsFiles, ssl: Any = None) -> TcpServer:
    loop = asyncio.get_running_loop()
    return TcpServer(await loop.create_server(ServerProtocol, host, 0, ssl=ssl))


class ClientProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._reader = FrameReader()
        self._next_id = 0
        self._unary: dict[int, asyncio.Future[bytes]] = {}
        self._streams: dict[int, asyncio.Queue[bytes | None]] = {}
        self._out: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or ConnectionResetError("server closed the connection")
        for future in self._unary.values():
            if not future.done():
                future.set_exception(self._lost)
        for queue in self._streams.values():
            queue.put_nowait(None)

    def data_received(self, data: bytes) -> None:
        for request_id, kind, payload in self._reader.feed(data):
            if kind == REPLY:
                self._unary.pop(request_id).set_result(payload)
            elif kind == MESSAGE:
                self._streams[request_id].put_nowait(payload)
            elif kind == END:
                self._streams.pop(request_id).put_nowait(None)

    def _send(self, kind: int, payload: bytes) -> int:
        if self._lost is not None:
            raise self._lost
        self._next_id = request_id = (self._next_id + 1) & 0xFFFFFFFF
        self._out.append(HEADER.pack(len(payload), request_id, kind))
        self._out.append(payload)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)
        return request_id

    def _flush(self) -> None:
        self._flush_handle = None
        out, self._out = self._out, []
        self._transport.write(b"".join(out))

    async def unary(self, payload: bytes) -> bytes:
        future = self._loop.create_future()
        self._unary[self._send(ECHO, payload)] = future
        return await future

    async def download(self, request: bytes) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._streams[self._send(DOWNLOAD, request)] = queue
        while (message := await queue.get()) is not None:
            yield message
        if self._lost is not None:
            raise self._lost

    async def close(self) -> None:
        self._transport.close()


async def connect(host: str, port: int, tls: TlsFiles, ssl: Any = None, server_name: str | None = None) -> ClientProtocol:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(ClientProtocol, host, port, ssl=ssl, server_hostname=server_name)
    return protocol
