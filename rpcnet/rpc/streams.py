"""Bounded message queues between a stream and the code that reads it."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

from ..transport import Stream

__all__ = ["MessageQueue"]


class MessageQueue:
    """Received message payloads, decoded lazily as they are read.

    Holds at most ``limit`` undecoded payloads before it pauses the stream
    (the transport stops granting the peer credit), and resumes when the
    reader has taken half of them. ``close(exc)`` ends iteration with
    ``exc`` (or cleanly with None) once the buffered messages are read:
    every message that arrived before an error or a reset is delivered
    before it.
    """

    __slots__ = ("_stream", "_limit", "_decode", "_items", "_waiter", "_closed", "_exc", "_paused")

    def __init__(self, stream: Stream, limit: int, decode: Callable[[bytes], Any]) -> None:
        self._stream = stream
        self._limit = limit
        self._decode = decode
        self._items: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._exc: BaseException | None = None
        self._paused = False

    def put(self, payload: bytes) -> None:
        if self._closed:
            return
        self._items.append(payload)
        if len(self._items) >= self._limit and not self._paused:
            self._paused = True
            self._stream.pause_reading()
        self._wake()

    def close(self, exc: BaseException | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._exc = exc
        self._wake()

    @property
    def closed(self) -> bool:
        return self._closed

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def __aiter__(self) -> MessageQueue:
        return self

    async def __anext__(self) -> Any:
        while not self._items:
            if self._exc is not None:
                raise self._exc
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        payload = self._items.popleft()
        if self._paused and not self._closed and len(self._items) <= self._limit // 2:
            self._paused = False
            self._stream.resume_reading()
        return self._decode(payload)

    async def read(self) -> Any:
        """The next message, or raise ``EOFError`` at the end of the stream."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise EOFError("the stream has ended") from None
