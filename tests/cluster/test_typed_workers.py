"""Typed proxies over a ClusterClient: tag filters, and retries that follow the definition's idempotency."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import attrs
import pytest

from rpcnet import Service, rpcmethod
from rpcnet.errors import RpcError, StatusCode

from .test_cluster_client import Lab

pytestmark = pytest.mark.timeout(60)


@attrs.frozen
class Job:
    n: int


@attrs.frozen
class Done:
    n: int
    worker: str


class Jobs(Service, Protocol):
    @rpcmethod(idempotent=True)
    async def safe(self, request: Job) -> Done: ...

    async def unsafe(self, request: Job) -> Done: ...

    def spread(self, request: Job) -> AsyncIterator[Done]: ...


class JobsImpl(Jobs):
    def __init__(self, name: str, broken: bool = False) -> None:
        self.name = name
        self.broken = broken
        self.calls = 0

    async def _answer(self, request: Job) -> Done:
        self.calls += 1
        if self.broken:
            raise RpcError("conflict", code=StatusCode.ABORTED)
        return Done(request.n, self.name)

    async def safe(self, request: Job) -> Done:
        return await self._answer(request)

    async def unsafe(self, request: Job) -> Done:
        return await self._answer(request)

    async def spread(self, request: Job) -> AsyncIterator[Done]:
        for index in range(request.n):
            yield Done(index, self.name)


@pytest.fixture
async def lab() -> Any:
    lab = Lab()
    yield lab
    await lab.close()


async def test_typed_calls_reach_workers_selected_by_tag(lab: Lab) -> None:
    cpu = await lab.node("cpu", {"role": "worker", "kind": "cpu"})
    gpu = await lab.node("gpu", {"role": "worker", "kind": "gpu"})
    cpu.server.add_service(JobsImpl("cpu"))
    gpu.server.add_service(JobsImpl("gpu"))
    clients = await lab.client(workers=2)
    jobs = Jobs.client(clients, filter="kind=gpu")
    assert [await jobs.safe(Job(i)) for i in range(3)] == [Done(0, "gpu"), Done(1, "gpu"), Done(2, "gpu")]
    assert await jobs.with_options(filter="kind=cpu").unsafe(Job(5)) == Done(5, "cpu")
    assert [d async for d in jobs.spread(Job(2))] == [Done(0, "gpu"), Done(1, "gpu")]


async def test_only_methods_the_definition_marks_idempotent_are_retried(lab: Lab) -> None:
    broken, healthy = JobsImpl("a", broken=True), JobsImpl("b")
    (await lab.worker("a")).server.add_service(broken)
    (await lab.worker("b")).server.add_service(healthy)
    clients = await lab.client(workers=2)
    jobs = Jobs.client(clients, filter="role=worker", timeout=10.0)
    for n in range(4):  # round robin: half of these start on the broken worker
        assert (await jobs.safe(Job(n))).worker == "b"
    assert broken.calls >= 1 and clients.stats.retries >= 1
    retries = clients.stats.retries
    outcomes = []
    for n in range(4):
        try:
            outcomes.append((await jobs.unsafe(Job(n))).worker)
        except RpcError as exc:
            outcomes.append(exc.code.name)
    assert "ABORTED" in outcomes
    assert clients.stats.retries == retries
