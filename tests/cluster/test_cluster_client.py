"""ClusterClient in one process: memory transport for RPC, insecure gossip on loopback.

Membership is real (SWIM + phi over UDP on 127.0.0.1) with timings shrunk so
a stopped node is declared failed in well under a second; every wait is a
condition with a deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from rpcnet.cluster import Cluster, ClusterClient, ClusterConfig, RetryPolicy
from rpcnet.cluster.workers import NoWorkerError, WorkerRegistry
from rpcnet.config import RpcConfig
from rpcnet.errors import ConfigError, RpcError, StatusCode, UnavailableError
from rpcnet.events import MemberFailed, MemberRecovered, MemberTagsUpdated
from rpcnet.rpc import RpcServer

pytestmark = pytest.mark.timeout(60)

#: SWIM and phi shrunk about tenfold, so detection takes a fraction of a second on loopback.
FAST = {
    "swim": {"probe_interval": 0.1, "probe_timeout": 0.05, "gossip_interval": 0.02, "heartbeat_interval": 0.05,
             "suspicion_mult": 1},
    "phi-accrual": {"min_std_deviation": 0.02, "acceptable_heartbeat_pause": 0.1, "first_heartbeat_estimate": 0.05},
}
_networks = itertools.count()

Handler = Callable[[Any, Any], Any]


async def eventually(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)


@attrs.define(eq=False)
class Node:
    name: str
    server: RpcServer
    cluster: Cluster
    #: Requests its ``infer`` handler received, in order.
    received: list[Any] = attrs.field(factory=list)

    @property
    def address(self) -> str:
        host, port = self.server.address
        return f"{host}:{port}"

    async def stop(self) -> None:
        await self.cluster.close()
        await self.server.stop(grace=0)


class Lab:
    """A director (the seed), worker nodes and one client node on a private memory network."""

    def __init__(self) -> None:
        self.network = f"cluster-client-{next(_networks)}"
        self.config = RpcConfig(transport="memory", options={"memory": {"network": self.network}})
        self.nodes: list[Node] = []
        self.clients: list[ClusterClient] = []
        self.registries: list[WorkerRegistry] = []
        self.seed: str | None = None

    async def node(self, name: str, tags: dict[str, str], handler: Handler | None = None, *,
                   address: tuple[str, int] | None = None, gossip: tuple[str, int] | None = None) -> Node:
        if self.seed is None and tags.get("role") != "director":
            await self.node("director", {"role": "director"})
        server = RpcServer(self.config)
        node = Node(name, server, None)  # type: ignore[arg-type]

        async def infer(request: Any, ctx: Any) -> Any:
            node.received.append(request)
            if handler is not None:
                return await handler(request, ctx)
            return {"worker": name}

        server.register("infer", infer)
        await server.start(address or (name, 0))
        seeds = [self.seed] if self.seed else []
        node.cluster = Cluster(server, ClusterConfig(
            node_id=name, tags=tags, seeds=seeds, insecure_gossip=True, options=FAST,
            gossip_bind=gossip or ("127.0.0.1", 0),
        ))
        await node.cluster.start()
        if self.seed is None:
            self.seed = node.address
        self.nodes.append(node)
        return node

    async def worker(self, name: str, handler: Handler | None = None, **kwargs: Any) -> Node:
        return await self.node(name, {"role": "worker"}, handler, **kwargs)

    async def client(self, *, workers: int, strategy: str = "round-robin", **kwargs: Any) -> ClusterClient:
        node = await self.node("client", {"role": "client"})
        registry = WorkerRegistry(node.cluster, strategy=strategy, plugins=node.server.plugins)
        await registry.start()
        self.registries.append(registry)
        client = ClusterClient(registry, self.config, cluster=node.cluster, plugins=node.server.plugins, **kwargs)
        await client.start()
        self.clients.append(client)
        await eventually(lambda: len(registry.workers()) == workers, 10, f"the client sees {workers} workers")
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for registry in self.registries:
            await registry.close()
        for node in self.nodes:
            await node.stop()


@pytest.fixture
async def lab() -> Any:
    lab = Lab()
    yield lab
    await lab.close()


def blocking_handler(entered: asyncio.Event) -> Handler:
    """A handler that signals it runs, then never answers (until its server stops)."""

    async def handle(request: Any, ctx: Any) -> Any:
        entered.set()
        await asyncio.Event().wait()

    return handle


async def call_stuck_on(client: ClusterClient, stuck: Node, entered: asyncio.Event, *, idempotent: bool) -> asyncio.Task[Any]:
    """Start calls until one is running on ``stuck``'s handler; return that call's task.

    Round-robin over two workers sends every other call there, so at most a
    second call is needed."""
    for number in range(4):
        before = len(stuck.received)
        task = asyncio.ensure_future(client.call_worker("infer", {"n": number}, timeout=10, idempotent=idempotent))
        done, _ = await asyncio.wait({task}, timeout=2)
        if done:
            continue  # answered by the other worker
        assert len(stuck.received) == before + 1
        await asyncio.wait_for(entered.wait(), 2)
        return task
    raise AssertionError(f"no call reached {stuck.name} in 4 attempts")


# -- failover ---------------------------------------------------------------------------------------


async def test_idempotent_call_fails_over_when_its_worker_stops_mid_call(lab: Lab) -> None:
    entered = asyncio.Event()
    healthy = await lab.worker("a")
    stuck = await lab.worker("b", blocking_handler(entered))
    client = await lab.client(workers=2)

    call = await call_stuck_on(client, stuck, entered, idempotent=True)
    await stuck.stop()  # the running call ends UNAVAILABLE after it was sent
    answer = await asyncio.wait_for(call, 5)

    assert answer == {"worker": "a"}
    assert [r["n"] for r in healthy.received][-1] == stuck.received[-1]["n"]  # the same request, again
    assert client.stats.failovers >= 1
    # Further calls go on working while membership catches up.
    answers = [await client.call_worker("infer", {"n": 100 + i}, timeout=5, idempotent=True) for i in range(10)]
    assert all(a == {"worker": "a"} for a in answers)


async def test_a_hung_worker_costs_no_idempotent_call(lab: Lab) -> None:
    """Worker b takes calls and never answers (a frozen process). Each
    idempotent call with a 1 s deadline gives its first attempt half of it;
    the attempt that lands on b times out, b is ejected, and the call is
    answered by a. Before, the first attempt had the whole deadline and the
    call failed with DEADLINE_EXCEEDED."""
    entered = asyncio.Event()
    await lab.worker("a")
    hung = await lab.worker("b", blocking_handler(entered))
    client = await lab.client(workers=2)
    answers = await asyncio.gather(*(client.call_worker("infer", {"n": i}, timeout=1.0, idempotent=True) for i in range(20)))
    assert all(a == {"worker": "a"} for a in answers)
    assert hung.received, "some attempts did land on the hung worker"
    assert client.stats.attempt_timeouts >= 1 and client.stats.ejections >= 1
    # A non-idempotent call is never retried once sent, so it keeps the whole deadline.
    assert client._attempt_timeout(1.0, 1, "infer", False) == 1.0
    assert client._attempt_timeout(1.0, 1, "infer", True) == 0.5
    assert client._attempt_timeout(0.4, client.retry.max_attempts, "infer", True) == 0.4


def test_attempt_timeout_fraction_is_validated() -> None:
    assert RetryPolicy(attempt_timeout_fraction=1).attempt_timeout_fraction == 1.0
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ConfigError, match=r"attempt_timeout_fraction must be in \(0, 1\]"):
            RetryPolicy(attempt_timeout_fraction=bad)


async def test_non_idempotent_call_is_not_retried_once_sent(lab: Lab) -> None:
    entered = asyncio.Event()
    healthy = await lab.worker("a")
    stuck = await lab.worker("b", blocking_handler(entered))
    client = await lab.client(workers=2)

    call = await call_stuck_on(client, stuck, entered, idempotent=False)
    seen_by_a = len(healthy.received)
    await stuck.stop()
    with pytest.raises(RpcError) as caught:
        await asyncio.wait_for(call, 5)

    assert caught.value.code is StatusCode.UNAVAILABLE
    assert not caught.value.not_sent
    assert len(healthy.received) == seen_by_a  # never sent a second time
    assert client.stats.retries == 0


async def test_non_idempotent_call_is_retried_when_it_was_never_sent(lab: Lab) -> None:
    healthy = await lab.worker("a")
    gone = await lab.worker("b")
    client = await lab.client(workers=2)
    await gone.server.stop(grace=0)  # still a member, but nothing listens: connecting fails before sending

    answers = [await client.call_worker("infer", {"n": i}, timeout=5, idempotent=False) for i in range(4)]

    assert answers == [{"worker": "a"}] * 4
    assert len(healthy.received) == 4
    assert client.stats.retries >= 1


# -- no worker ------------------------------------------------------------------------------------------


async def test_unavailable_names_the_filter_when_nothing_matches(lab: Lab) -> None:
    await lab.worker("a")
    client = await lab.client(workers=1)

    with pytest.raises(NoWorkerError) as caught:
        await client.call_worker("infer", {}, filter="role=worker,gpu=true", timeout=5)

    error = caught.value
    assert isinstance(error, UnavailableError)
    assert error.code is StatusCode.UNAVAILABLE
    assert "gpu=true,role=worker" in str(error)
    assert error.details == {"filter": "gpu=true,role=worker"}
    assert client.stats.retries == 0


# -- the connection pool -----------------------------------------------------------------------------


async def test_pool_drops_a_failed_worker_and_reconnects_to_its_restart(lab: Lab) -> None:
    worker = await lab.worker("a")
    client = await lab.client(workers=1)
    assert await client.call_worker("infer", {}, timeout=5) == {"worker": "a"}
    assert "a" in client.pool and client.pool.stats.created == 1
    before = client.stats
    assert await client.call_worker("infer", {}, timeout=5) == {"worker": "a"}
    assert (before.calls, client.stats.calls) == (1, 2)  # a snapshot, not a live view
    assert client.pool.stats.reused == 1
    old_incarnation = client.cluster.member("a").incarnation
    rpc, gossip = worker.server.address, worker.cluster.gossip_address

    await worker.stop()
    await eventually(lambda: "a" not in client.pool, 5, "the client's pool drops the failed worker")
    assert client.pool.stats.evicted_failed == 1

    restarted = await lab.worker("a", address=rpc, gossip=gossip)
    registry = lab.registries[-1]
    await eventually(lambda: registry.workers(), 5, "the restarted worker is chosen again")
    member = client.cluster.member("a")
    assert member is not None and member.incarnation > old_incarnation
    assert await client.call_worker("infer", {}, timeout=5) == {"worker": "a"}
    assert len(restarted.received) == 1
    assert client.pool.stats.created == 2


async def test_pool_replaces_a_connection_when_the_member_restarts_at_the_same_address(lab: Lab) -> None:
    await lab.worker("a")
    client = await lab.client(workers=1)
    assert await client.call_worker("infer", {}, timeout=5) == {"worker": "a"}
    member = client.cluster.member("a")
    assert member is not None
    address = lab.nodes[1].server.address
    pooled = client.pool.get("a", address, member.incarnation)

    # A tag change raises the incarnation too; the process is the same, the connection stays.
    retagged = attrs.evolve(member, incarnation=member.incarnation + 1, tags={**member.tags, "zone": "b"})
    client.pool.on_event(MemberTagsUpdated(member=retagged, at=0.0))
    assert client.pool.get("a", address, retagged.incarnation) is pooled

    # The same address with a higher incarnation after a failure is another process.
    restarted = attrs.evolve(member, incarnation=member.incarnation + 5)
    client.pool.on_event(MemberRecovered(member=restarted, at=0.0))
    assert "a" not in client.pool
    assert client.pool.stats.evicted_restart == 1
    assert client.pool.get("a", address, restarted.incarnation) is not pooled

    client.pool.on_event(MemberFailed(member=restarted, at=0.0))
    assert "a" not in client.pool and client.pool.stats.evicted_failed == 1


# -- the retry budget ------------------------------------------------------------------------------------


async def test_retry_budget_exhaustion_stops_retries(lab: Lab) -> None:
    async def overloaded(request: Any, ctx: Any) -> Any:
        raise RpcError("overloaded", code=StatusCode.UNAVAILABLE)

    a = await lab.worker("a", overloaded)
    b = await lab.worker("b", overloaded)
    # One retry in the whole window: 0.1 per second for 10 s, nothing from traffic.
    policy = RetryPolicy(max_attempts=5, initial_backoff=0, budget_ratio=0, budget_min_per_second=0.1, budget_window=10)
    client = await lab.client(workers=2, retry=policy)

    def attempts() -> int:
        return len(a.received) + len(b.received)

    with pytest.raises(RpcError):
        await client.call_worker("infer", {}, timeout=5, idempotent=True)
    assert attempts() == 2  # the first attempt and the one retry the budget held
    assert client.stats.budget_exhausted == 1

    with pytest.raises(RpcError):
        await client.call_worker("infer", {}, timeout=5, idempotent=True)
    assert attempts() == 3  # no retry left: one attempt only
    assert client.stats.retries == 1
    assert client.stats.budget_exhausted == 2

