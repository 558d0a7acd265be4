"""Helpers shared by the transport tests (quic and tcp): recording handlers and waiting."""

from __future__ import annotations

import asyncio
from typing import Any

from rpcnet.testing import wait_until as until  # noqa: F401 - used by the tests
from rpcnet.transport import Stream

#: Every wait in these tests ends by this deadline at the latest.
DEADLINE = 5.0


class Recorder:
    """A stream handler that records every event and resolves futures on FIN and reset."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.events: list[tuple[Any, ...]] = []
        self.finished: asyncio.Future[bytes] = loop.create_future()
        self.reset: asyncio.Future[int] = loop.create_future()
        self.stream: Stream | None = None

    @property
    def received(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "data")

    def data_received(self, data: bytes, end_stream: bool) -> None:
        self.events.append(("data", data, end_stream))
        if end_stream:
            self.finished.set_result(self.received)

    def stream_reset(self, error_code: int) -> None:
        self.events.append(("reset", error_code))
        self.reset.set_result(error_code)


class Echo(Recorder):
    """Sends back what it received, with FIN, once the peer's FIN arrives."""

    def data_received(self, data: bytes, end_stream: bool) -> None:
        super().data_received(data, end_stream)
        if end_stream:
            assert self.stream is not None
            self.stream.send(self.received, end_stream=True)
