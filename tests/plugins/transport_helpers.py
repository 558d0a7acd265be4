"""Helpers shared by the transport tests (quic and tcp): recording handlers,
waiting, and an echo server in a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from rpcnet.testing import wait_until as until  # noqa: F401 - used by the tests
from rpcnet.transport import Stream

#: Every wait in these tests ends by this deadline at the latest.
DEADLINE = 5.0

_ECHO_SERVER = Path(__file__).with_name("echo_server.py")


@contextlib.asynccontextmanager
async def echo_server_process(
    transport: str, cert_dir: Path, options: dict[str, Any] | None = None
) -> AsyncIterator[tuple[tuple[str, int], int]]:
    """An rpcnet echo server (method ``echo``) on ``transport`` in its own
    process: yields its address and process id, and stops it on the way out."""
    server = await asyncio.create_subprocess_exec(
        sys.executable, str(_ECHO_SERVER), transport, str(cert_dir), json.dumps(options or {}),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(server.stdout.readline(), 30)
        assert line.startswith(b"READY"), line
        yield ("127.0.0.1", int(line.split()[1])), server.pid
    finally:
        server.stdin.close()
        await asyncio.wait_for(server.wait(), 30)


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


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
