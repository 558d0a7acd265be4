"""Concurrency: many typed calls at once on one connection; the server runs them side by side.

    python examples/typed/concurrency.py [CALLS]
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Protocol

import attrs

from rpcnet import RpcClient, RpcConfig, RpcServer, Service


@attrs.frozen
class Job:
    id: int
    milliseconds: int


@attrs.frozen
class JobDone:
    id: int
    running_at_start: int


class Jobs(Service, Protocol):
    async def run(self, request: Job) -> JobDone: ...


class JobRunner(Jobs):
    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    async def run(self, request: Job) -> JobDone:
        self.running += 1
        self.peak = max(self.peak, self.running)
        started_with = self.running
        try:
            await asyncio.sleep(request.milliseconds / 1000)  # stands in for I/O the job waits on
        finally:
            self.running -= 1
        return JobDone(request.id, started_with)


async def main(calls: int = 50, milliseconds: int = 100) -> list[str]:
    config = RpcConfig(transport="memory")
    server = RpcServer(config)
    runner = JobRunner()
    server.add_service(runner)
    address = await server.start(("jobs", 0))
    try:
        async with RpcClient(address, config) as client:
            jobs = Jobs.client(client)
            started = time.perf_counter()
            done = await asyncio.gather(*(jobs.run(Job(i, milliseconds)) for i in range(calls)))
            elapsed = time.perf_counter() - started
            return [
                f"{len(done)} calls of {milliseconds} ms each took {elapsed * 1000:.0f} ms in all",
                f"at most {runner.peak} ran at once on the server; every id answered: {sorted(d.id for d in done) == list(range(calls))}",
            ]
    finally:
        await server.stop()


if __name__ == "__main__":
    print("\n".join(asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))))
