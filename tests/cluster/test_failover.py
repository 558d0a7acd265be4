"""Failover with real processes: the example director and workers, this test as the client node.

Every worker is the demo worker (``python -m rpcnet.demo.worker``) in its own process (mutual TLS,
encrypted gossip, LAN timings); this process joins as ``role=client`` and
sends a steady stream of idempotent ``infer`` calls through a ClusterClient.
Each answer names the worker and its pid. Which worker each attempt is routed
to is recorded by the registry: the ClusterClient asks it for the chosen
worker's statistics once per attempt, just before sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from rpcnet.certs import write_dev_certs
from rpcnet.cluster import Cluster, ClusterClient, ClusterConfig, Keyring
from rpcnet.cluster.workers import WorkerRegistry, WorkerStats
from rpcnet.config import RpcConfig, TlsConfig
from rpcnet.demo import ExampleProcess
from rpcnet.rpc import RpcServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "cluster"


class RoutingRegistry(WorkerRegistry):
    """Records (monotonic time, worker) for every attempt routed to a worker."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.routed: list[tuple[float, str]] = []

    def stats(self, node_id: str) -> WorkerStats:
        self.routed.append((time.monotonic(), node_id))
        return super().stats(node_id)


class Load:
    """``callers`` tasks, together about ``rate`` idempotent calls per second."""

    def __init__(self, client: ClusterClient, *, rate: float = 60.0, callers: int = 6) -> None:
        self.client = client
        self.rate = rate
        self.callers = callers
        #: (monotonic time answered, worker, pid)
        self.answers: list[tuple[float, str, int]] = []
        self.failures: list[str] = []
        self._stop = False
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._caller(i)) for i in range(self.callers)]

    async def stop(self) -> None:
        self._stop = True
        await asyncio.gather(*self._tasks)

    async def _caller(self, index: int) -> None:
        interval = self.callers / self.rate
        next_start = time.monotonic() + index * interval / self.callers
        number = 0
        while not self._stop:
            delay = next_start - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            next_start += interval
            number += 1
            try:
                reply = await self.client.call_worker("infer", {"prompt": f"{index}-{number}"}, timeout=20)
            except Exception as error:  # any failure is what the test counts
                self.failures.append(f"{type(error).__name__}: {error}")
                continue
            self.answers.append((time.monotonic(), reply["worker"], reply["pid"]))

    def answered_since(self, since: float) -> int:
        return sum(1 for t, _, _ in self.answers if t >= since)


class ClientNode:
    """This process as a cluster node with role=client, plus a registry and a ClusterClient."""

    def __init__(self, certs: Path, key: str, director: str) -> None:
        tls = TlsConfig(ca_file=certs / "ca.pem", cert_file=certs / "server.pem", key_file=certs / "server.key")
        self.server = RpcServer(RpcConfig(tls=attrs.evolve(tls, require_client_cert=True)))
        self.outgoing = RpcConfig(tls=tls)
        self.config = ClusterConfig(node_id="test-client", tags={"role": "client"}, seeds=[director], gossip_keys=(key,))
        self.events: list[tuple[float, Any]] = []
        self.changed = asyncio.Event()

    async def start(self) -> None:
        await self.server.start("127.0.0.1:0")
        self.cluster = Cluster(self.server, self.config)
        subscription = self.cluster.subscribe()
        await self.cluster.start()
        self._follower = asyncio.ensure_future(self._follow(subscription))
        self.registry = RoutingRegistry(self.cluster, strategy="round-robin", plugins=self.server.plugins)
        await self.registry.start()
        self.client = ClusterClient(self.registry, self.outgoing, cluster=self.cluster, plugins=self.server.plugins,
                                    idempotent=["infer"])
        await self.client.start()

    async def _follow(self, subscription: Any) -> None:
        async for event in subscription:
            self.events.append((time.monotonic(), event))
            self.changed.set()

    def event_time(self, kind: str | tuple[str, ...], member: str, after: float = 0.0) -> float | None:
        kinds = (kind,) if isinstance(kind, str) else kind
        for at, event in self.events:
            if at >= after and event.kind in kinds and getattr(event, "member", None) is not None and event.member.id == member:
                return at
        return None

    async def until(self, predicate: Callable[[], Any], timeout: float, what: str) -> float:
        """Wait for ``predicate`` (re-checked on every cluster event, at least every 50 ms); return when it held."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"not within {timeout} s: {what}\n{self.describe()}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.05))
        return time.monotonic()

    def describe(self) -> str:
        """What the client node knows, for failure messages."""
        start = self.events[0][0] if self.events else 0.0
        events = ", ".join(f"{at - start:.2f}s {e.describe()}" for at, e in self.events[-12:])
        registry = getattr(self, "registry", None)
        workers = [w.node_id for w in registry.workers()] if registry is not None else []
        stats = dict(self.client.stats) if hasattr(self, "client") else {}
        return f"workers in rotation: {workers}; client stats: {stats}; last events: {events}"

    async def close(self) -> None:
        await self.client.close()
        await self.registry.close()
        self._follower.cancel()
        await asyncio.gather(self._follower, return_exceptions=True)
        await self.cluster.close()
        await self.server.stop(grace=0.5)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("failover-certs")
    write_dev_certs(directory, server_names=["127.0.0.1", "localhost"], client_names=["client"], days=2)
    return directory


@pytest.fixture
async def cluster(certs: Path) -> Any:
    """The director, a way to start workers, and this process as the client node."""
    key = Keyring.generate()
    env = {"RPCNET_CERTS": str(certs), "RPCNET_GOSSIP_KEY": key, "PYTHONPATH": str(EXAMPLES)}
    processes: list[ExampleProcess] = []

    async def worker(label: str, *extra: str, listen: str = "127.0.0.1:0", gossip: str = "127.0.0.1:0") -> ExampleProcess:
        process = await ExampleProcess.launch(
            "worker", ["--label", label, "--listen", listen, "--gossip", gossip, "--infer-ms", "2", *extra], env=env
        )
        processes.append(process)
        return process

    director = await ExampleProcess.launch("director", ["--director", "127.0.0.1:0", "--table-every", "0"], env=env)
    processes.append(director)
    env["DIRECTOR_ADDR"] = director.rpc
    node = ClientNode(certs, key, director.rpc)
    try:
        yield node, worker
    finally:
        with contextlib.suppress(AttributeError):
            await node.close()
        await asyncio.gather(*(p.stop() for p in processes), return_exceptions=True)


async def test_kill9_fails_over_with_no_failed_call_and_the_restart_rejoins(cluster: Any) -> None:
    node, start_worker = cluster
    workers = await asyncio.gather(*(start_worker(f"worker-{i}") for i in (1, 2, 3)))
    await node.start()
    labels = [w.node_id for w in workers]
    await node.until(lambda: len(node.registry.workers()) == 3, 15, "the client sees 3 workers")
    load = Load(node.client)
    load.start()
    try:
        await node.until(lambda: {w for _, w, _ in load.answers} == set(labels), 10, "every worker answers")

        victim = workers[1]
        killed_at = time.monotonic()
        await victim.kill()
        await node.until(
            lambda: node.event_time("failed", victim.node_id, killed_at) is not None, 30,
            "the client node declares the killed worker failed",
        )
        failed_at = node.event_time("failed", victim.node_id, killed_at)
        assert failed_at is not None
        # Watch traffic for a while after detection: at least 1.5 s and 50 answers.
        await node.until(
            lambda: time.monotonic() > failed_at + 1.5 and load.answered_since(failed_at + 1.0) >= 50, 15,
            "traffic flows after the detection",
        )

        restart_began = time.monotonic()
        restarted = await start_worker(victim.node_id, listen=victim.rpc, gossip=victim.gossip)
        ready_at = time.monotonic()
        served_again = await node.until(
            lambda: any(pid == restarted.pid and t >= ready_at for t, _, pid in load.answers), 15,
            "the restarted worker answers a call",
        )
    finally:
        await load.stop()

    assert load.failures == [], load.failures[:5]
    assert any(w == victim.node_id and t < killed_at for t, w in node.registry.routed)  # the record sees routing
    late = [t - failed_at for t, worker in node.registry.routed
            if worker == victim.node_id and failed_at + 1.0 < t < restart_began]
    assert late == [], f"attempts routed to the failed worker more than 1 s after its failed event: {late[:5]}"
    back_after = served_again - ready_at
    assert back_after <= 2.0, f"the restarted worker answered {back_after:.2f} s after it was ready"
    print(f"detection {failed_at - killed_at:.2f} s after SIGKILL; back in rotation {back_after:.2f} s after ready; "
          f"{len(load.answers)} calls, 0 failed, {node.client.stats.retries} retries")


async def test_custom_health_check_takes_a_worker_out_of_rotation_and_back(cluster: Any, tmp_path: Path) -> None:
    node, start_worker = cluster
    flag = tmp_path / "drain-worker-2"
    drained_options = ["--plugin", "drain_check:plugin", "--health-check", "drain-file",
                       "--health-option", f"drain-file.path={flag}", "--health-interval", "0.25"]
    workers = await asyncio.gather(
        start_worker("worker-1"), start_worker("worker-2", *drained_options), start_worker("worker-3")
    )
    await node.start()
    drained = workers[1].node_id

    def in_rotation() -> bool:
        return drained in {w.node_id for w in node.registry.workers()}

    await node.until(lambda: len(node.registry.workers()) == 3, 15, "the client sees 3 workers")
    load = Load(node.client)
    load.start()
    try:
        await node.until(lambda: any(w == drained for _, w, _ in load.answers), 10, "the worker answers")

        flag.touch()
        flagged_at = time.monotonic()
        out_at = await node.until(lambda: not in_rotation(), 10, "the unhealthy worker leaves rotation")
        await node.until(lambda: load.answered_since(out_at + 0.2) >= 30, 10, "traffic flows while it is drained")
        routed_while_out = [t for t, w in node.registry.routed if w == drained and t > out_at]

        flag.unlink()
        cleared_at = time.monotonic()
        back_at = await node.until(in_rotation, 10, "the recovered worker returns to rotation")
        await node.until(lambda: any(w == drained and t > back_at for t, w, _ in load.answers), 5,
                         "the recovered worker answers again")
    finally:
        await load.stop()

    assert load.failures == [], load.failures[:5]
    assert out_at - flagged_at <= 2.0, f"left rotation {out_at - flagged_at:.2f} s after turning unhealthy"
    assert any(w == drained and t < flagged_at for t, w in node.registry.routed)  # the record sees routing
    assert routed_while_out == []
    assert back_at - cleared_at <= 2.0, f"returned {back_at - cleared_at:.2f} s after recovering"
    print(f"out of rotation {out_at - flagged_at:.2f} s after unhealthy, back {back_at - cleared_at:.2f} s after healthy")


def test_rpcnet_demo_kills_a_worker_and_reports_no_failed_call() -> None:
    """``rpcnet demo`` end to end (its shortest run): exit status 0 and a summary that says what happened."""
    result = subprocess.run(
        [sys.executable, "-m", "rpcnet", "demo", "--duration", "20", "--strategy", "least-connections"],
        capture_output=True, text=True, timeout=80,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout[result.stdout.index("\nsummary\n"):]
    assert re.search(r"calls ok [1-9]\d*, failed 0", summary), summary
    assert re.search(r"worker-2: client node declared it failed \d+\.\d+ s after SIGKILL", summary), summary
    assert re.search(r"first answer \d+\.\d+ s after ready", summary), summary
    assert "OK: no call failed" in summary
