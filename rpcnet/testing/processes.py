"""Cluster nodes as real processes (``rpcnet node``), for tests and benchmarks.

Each :class:`NodeProcess` runs ``python -m rpcnet node`` and collects its JSON
lines; tests wait for conditions on those lines with deadlines, never with
fixed sleeps.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

__all__ = ["NodeProcess"]


class NodeProcess:
    """One ``rpcnet node`` process and everything it printed."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None, *, stdin: Any = None) -> None:
        self.args = list(args)
        self.env = env
        #: What the process reads on stdin: a pipe for commands (the default), or
        #: anything ``asyncio.create_subprocess_exec`` takes (``subprocess.DEVNULL``, a file).
        self.stdin = asyncio.subprocess.PIPE if stdin is None else stdin
        self.lines: list[dict[str, Any]] = []
        self.ready: dict[str, Any] | None = None
        #: When the ready line was read (wall clock), the node's "up" moment.
        self.ready_at: float | None = None
        self.process: asyncio.subprocess.Process | None = None
        self._changed: asyncio.Event | None = None
        self._reader: asyncio.Task[None] | None = None
        self.stderr: bytes = b""

    @classmethod
    async def start(
        cls,
        *,
        node_id: str,
        listen: str = "127.0.0.1:0",
        gossip: str = "127.0.0.1:0",
        seeds: Sequence[str] = (),
        tags: dict[str, str] | None = None,
        certs: str | None = None,
        key: str | None = None,
        preset: str | None = None,
        extra: Sequence[str] = (),
        timeout: float = 20.0,
        prefix: Sequence[str] = (),
        stdin: Any = None,
        env: dict[str, str] | None = None,
    ) -> NodeProcess:
        args = [*prefix, sys.executable, "-m", "rpcnet", "node", "--node-id", node_id, "--listen", listen, "--gossip", gossip]
        if preset is not None:
            args += ["--preset", preset]
        for seed in seeds:
            args += ["--seed", seed]
        for k, v in (tags or {}).items():
            args += ["--tag", f"{k}={v}"]
        if certs:
            args += ["--certs", certs]
        env = dict(env or {})
        if key:
            env["RPCNET_GOSSIP_KEY"] = key  # not --key: a key in argv is visible to every local user
        elif "--key-file" not in extra:
            args += ["--insecure-gossip"]
        args += list(extra)
        node = cls(args, env, stdin=stdin)
        await node.spawn(timeout)
        return node

    async def spawn(self, timeout: float = 20.0) -> None:
        """Start the process and wait (up to ``timeout`` s) for its ready line."""
        self._changed = asyncio.Event()
        self.process = await asyncio.create_subprocess_exec(
            *self.args,
            stdin=self.stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(self.env or {})},
        )
        self._reader = asyncio.ensure_future(self._read())
        try:
            await self.wait_for(lambda line: line.get("ready"), timeout)
        except BaseException:
            await self.kill()
            raise
        self.ready = next(line for line in self.lines if line.get("ready"))

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while True:
            raw = await self.process.stdout.readline()
            if not raw:
                break
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if self.ready_at is None and isinstance(line, dict) and line.get("ready"):
                self.ready_at = time.time()
            self.lines.append(line)
            assert self._changed is not None
            self._changed.set()
        if self.process.stderr is not None:
            self.stderr = await self.process.stderr.read()
        assert self._changed is not None
        self._changed.set()

    @property
    def node_id(self) -> str:
        assert self.ready is not None
        return self.ready["node"]

    @property
    def rpc(self) -> str:
        assert self.ready is not None
        return self.ready["rpc"]

    @property
    def gossip(self) -> str:
        assert self.ready is not None
        return self.ready["gossip"]

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def events(self, kind: str | None = None, member: str | None = None) -> list[dict[str, Any]]:
        return [
            line for line in self.lines
            if "event" in line and (kind is None or line["event"] == kind) and (member is None or line.get("member") == member)
        ]

    async def wait_for(self, predicate: Callable[[dict[str, Any]], Any], timeout: float, *, start: int = 0) -> dict[str, Any]:
        """The first line (from index ``start``) matching ``predicate``, waiting up to ``timeout`` s."""
        assert self._changed is not None
        deadline = time.monotonic() + timeout
        index = start
        while True:
            while index < len(self.lines):
                line = self.lines[index]
                index += 1
                if predicate(line):
                    return line
            if not self.alive and self._reader is not None and self._reader.done():
                raise AssertionError(f"node exited before the condition held; stderr: {self.stderr.decode()[-2000:]}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"condition not met within {timeout} s; last lines: {self.lines[-5:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def command(self, line: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def members(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        start = len(self.lines)
        await self.command("members")
        line = await self.wait_for(lambda line: "members" in line, timeout, start=start)
        return line["members"]

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process."""
        assert self.process is not None
        self.process.send_signal(signum)

    async def exited(self, timeout: float = 10.0) -> int:
        """Wait (up to ``timeout`` s) for the process to exit and its output to be read; its exit status."""
        assert self.process is not None
        code = await asyncio.wait_for(self.process.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(asyncio.gather(self._reader, return_exceptions=True), timeout)
        return code

    async def kill(self) -> float:
        """SIGKILL the process; returns the wall-clock time of the kill."""
        killed_at = time.time()
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        return killed_at

    async def stop(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                await self.kill()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
