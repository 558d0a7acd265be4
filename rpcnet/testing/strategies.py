"""Test helpers for health-check and load-balancer plugins.

- :func:`run_health_check` runs a check once as a node runs it (by name with
  its options, or an instance; a plain ``check()`` in a worker thread, a
  coroutine on the loop; under the time limit) and holds it to the contract
  (docs/plugins.md, "Health checks"): it must return what
  :func:`rpcnet.health.as_health_result` accepts, in time, without raising,
  and ``close()`` must work.
- :class:`LocalCluster` starts a few real nodes in this process (memory
  transport for RPC, insecure gossip on loopback, the ``local`` timing
  preset) where workers run the health checks you name, and a client node
  whose :class:`~rpcnet.cluster.workers.WorkerRegistry` picks among them:
  wait for a worker to drop out of rotation and come back.
- :func:`exercise_balancer` drives a load balancer through a real
  ``WorkerRegistry`` over simulated workers (their tags, health, calls in
  flight, latency, errors) and holds it to its contract: it returns one of
  the workers it was given, never an unhealthy or suspect one, prefers
  healthy to degraded, and a seeded balancer picks the same sequence twice.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import random
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ..config import RpcConfig
from ..errors import ConfigError
from ..events import MemberJoined, MemberSuspect
from ..health import HEALTH_TAG, HealthCheck, HealthResult, HealthStatus, InvalidHealthResult, as_health_result
from ..members import Member, MemberState
from ..plugins import PluginHost, make_plugin_manager
from .waiting import wait_until

__all__ = [
    "HealthCheckContractError",
    "run_health_check",
    "LocalCluster",
    "SimulatedWorker",
    "BalancerTrial",
    "BalancerContractError",
    "exercise_balancer",
]


class HealthCheckContractError(AssertionError):
    """A health check broke its contract; the message says how."""


class BalancerContractError(AssertionError):
    """A load balancer broke its contract; the message says how."""


def _host(plugins: PluginHost | Sequence[Any] | None) -> PluginHost:
    """A host as given; or the builtins, the bundled plugins and these plugin objects; or (None) everything installed."""
    if isinstance(plugins, PluginHost):
        return plugins
    if plugins is None:
        return make_plugin_manager()
    return make_plugin_manager(autoload=False, plugins=list(plugins))


def _build_check(check: str | HealthCheck, options: Mapping[str, Any] | None, host: PluginHost) -> tuple[str, Any]:
    if isinstance(check, str):
        return check, host.create("health-check", check, options)
    if options:
        raise ValueError("options go with a check given by name; an instance already has its options")
    return getattr(check, "name", "") or type(check).__name__, check


async def run_health_check(
    check: str | HealthCheck,
    options: Mapping[str, Any] | None = None,
    *,
    plugins: PluginHost | Sequence[Any] | None = None,
    timeout: float = 2.0,
    rounds: int = 1,
    close: bool = True,
) -> HealthResult:
    """Run ``check`` ``rounds`` times as a node would and return the last result.

    ``check`` is a strategy name (built by ``plugins``: a host, or plugin
    objects to register, or None for every installed plugin) with its
    ``options``, or an instance. Raises :class:`HealthCheckContractError`
    when a round raises, takes longer than ``timeout`` seconds or returns
    anything :func:`~rpcnet.health.as_health_result` refuses (a node refuses
    to start on that in its first round), and when ``close()`` raises; a
    bare status comes back as a ``HealthResult`` without a reason.
    """
    host = _host(plugins)
    name, instance = _build_check(check, options, host)
    if not callable(getattr(instance, "check", None)):
        raise HealthCheckContractError(f"health check {name!r} has no check() method")
    result: HealthResult | None = None
    try:
        for round_number in range(1, rounds + 1):
            try:
                async with asyncio.timeout(timeout):
                    if inspect.iscoroutinefunction(instance.check):
                        value = await instance.check()
                    else:
                        value = await asyncio.to_thread(instance.check)
                        if inspect.isawaitable(value):
                            value = await value
            except TimeoutError:
                raise HealthCheckContractError(
                    f"health check {name!r} took longer than its {timeout:g} s limit (round {round_number}); "
                    "a node counts that as unhealthy"
                ) from None
            except HealthCheckContractError:
                raise
            except Exception as exc:
                raise HealthCheckContractError(
                    f"health check {name!r} raised {type(exc).__name__}: {exc} (round {round_number}); "
                    "return HealthResult.unhealthy(reason) instead"
                ) from exc
            try:
                result = as_health_result(value)  # the one definition of a verdict, as the node applies it
            except InvalidHealthResult as exc:
                raise HealthCheckContractError(f"health check {name!r} {exc} (round {round_number})") from None
    finally:
        if close:
            try:
                instance.close()
            except Exception as exc:
                raise HealthCheckContractError(f"health check {name!r}: close() raised {type(exc).__name__}: {exc}") from exc
    assert result is not None
    return result


class LocalCluster:
    """Real cluster nodes in this process: ``workers`` running ``health_checks``, and a client.

    ::

        async with LocalCluster(workers=2, health_checks=["drain-file"],
                                options={"drain-file": {"path": str(flag)}},
                                plugins=[drain_plugin], health_interval=0.1) as cluster:
            await cluster.wait_for_rotation({"worker-0", "worker-1"})
            flag.touch()
            await cluster.wait_for_health("worker-0", "unhealthy")
            await cluster.wait_for_rotation({"worker-1"})

    RPC runs over the ``memory`` transport and gossip over loopback UDP
    without encryption (a test network); membership uses the ``local``
    timing preset. ``load_balancer`` and its ``balancer_options`` pick
    workers for :meth:`select`.
    """

    def __init__(
        self,
        *,
        workers: int = 2,
        health_checks: Sequence[str] = (),
        options: Mapping[str, Mapping[str, Any]] | None = None,
        plugins: PluginHost | Sequence[Any] | None = None,
        health_interval: float = 0.2,
        health_timeout: float = 1.0,
        load_balancer: str = "round-robin",
        balancer_options: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        self.worker_count = workers
        self.health_checks = tuple(health_checks)
        self.options = dict(options or {})
        self.host = _host(plugins)
        self.health_interval = health_interval
        self.health_timeout = health_timeout
        self.load_balancer = load_balancer
        self.balancer_options = balancer_options
        self.rng = random.Random(seed)
        self.network = f"local-cluster-{id(self)}"
        #: worker node id -> its Cluster
        self.workers: dict[str, Any] = {}
        self.client: Any = None
        self.registry: Any = None
        self._servers: list[Any] = []

    async def _node(self, node_id: str, tags: Mapping[str, str], seeds: Sequence[str], checks: Sequence[str]) -> Any:
        from ..cluster import Cluster, ClusterConfig
        from ..rpc import RpcServer

        config = RpcConfig(transport="memory", options={"memory": {"network": self.network}})
        server = RpcServer(config, plugins=self.host)
        self._servers.append(server)
        await server.start((node_id, 0))
        options = {**self.options, "swim": {"preset": "local", **self.options.get("swim", {})}}
        cluster = Cluster(server, ClusterConfig(
            node_id=node_id, tags=dict(tags), seeds=tuple(seeds), insecure_gossip=True, options=options,
            health_checks=tuple(checks), health_interval=self.health_interval, health_timeout=self.health_timeout,
        ), rng=random.Random(self.rng.getrandbits(64)))
        await cluster.start()
        return cluster

    async def start(self) -> LocalCluster:
        from ..cluster.workers import WorkerRegistry
        from ..transport import format_address

        self.client = await self._node("client", {"role": "client"}, (), ())
        seed = format_address(self.client.server.address)
        for index in range(self.worker_count):
            node_id = f"worker-{index}"
            self.workers[node_id] = await self._node(node_id, {"role": "worker"}, (seed,), self.health_checks)
        self.registry = WorkerRegistry(self.client, strategy=self.load_balancer, options=self.balancer_options,
                                       plugins=self.host, rng=random.Random(self.rng.getrandbits(64)))
        await self.registry.start()
        return self

    def health(self, node_id: str) -> str:
        """The health the client sees ``node_id`` publish (``healthy`` without the tag)."""
        member = self.client.member(node_id)
        if member is None:
            raise KeyError(f"the client does not know {node_id!r}")
        return member.tags.get(HEALTH_TAG, HealthStatus.HEALTHY.value)

    async def wait_for_health(self, node_id: str, status: str | HealthStatus, timeout: float = 10.0) -> None:
        """Until the client sees ``node_id`` publish ``status``."""
        wanted = status.value if isinstance(status, HealthStatus) else status
        await wait_until(lambda: self.client.member(node_id) is not None and self.health(node_id) == wanted, timeout)

    def in_rotation(self) -> set[str]:
        """The workers the client's registry would choose among now."""
        return {worker.node_id for worker in self.registry.workers() if worker.health is not HealthStatus.DEGRADED} or {
            worker.node_id for worker in self.registry.workers()
        }

    async def wait_for_rotation(self, node_ids: set[str], timeout: float = 10.0) -> None:
        """Until exactly ``node_ids`` are in rotation."""
        await wait_until(lambda: self.in_rotation() == set(node_ids), timeout)

    def select(self) -> str:
        """One pick by the client's registry: a worker's node id."""
        return self.registry.select_worker().node_id

    async def close(self) -> None:
        if self.registry is not None:
            await self.registry.close()
        for cluster in [*self.workers.values(), *([self.client] if self.client is not None else [])]:
            await cluster.close()
        for server in self._servers:
            await server.stop(grace=0)

    async def __aenter__(self) -> LocalCluster:
        try:
            return await self.start()
        except BaseException:
            await self.close()
            raise

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


@attrs.frozen(kw_only=True)
class SimulatedWorker:
    """A worker as :func:`exercise_balancer` sets it up before the picks."""

    node_id: str
    tags: Mapping[str, str] = attrs.field(factory=lambda: {"role": "worker"})
    health: HealthStatus = HealthStatus.HEALTHY
    #: Calls already in flight (they stay in flight during the trial).
    in_flight: int = 0
    #: Latency of each call it finishes, seconds (feeds the EWMA).
    latency: float = 0.01
    #: Failed calls in the recent window.
    errors: int = 0
    #: A suspect member is never chosen.
    suspect: bool = False


@attrs.frozen(kw_only=True)
class BalancerTrial:
    """What :func:`exercise_balancer` saw: the picks in order and how many each worker got."""

    picks: tuple[str, ...]
    counts: Mapping[str, int]

    def share(self, node_id: str) -> float:
        return self.counts.get(node_id, 0) / len(self.picks) if self.picks else 0.0


def _registry(balancer: str, options: Mapping[str, Any] | None, host: PluginHost, workers: Sequence[SimulatedWorker],
              seed: int, now: list[float]) -> Any:
    from ..cluster.workers import WorkerRegistry

    registry = WorkerRegistry(None, strategy=balancer, options=options, filter="*", plugins=host,
                              rng=random.Random(seed), clock=lambda: now[0])
    for index, worker in enumerate(workers):
        tags = dict(worker.tags)
        if worker.health is not HealthStatus.HEALTHY:
            tags[HEALTH_TAG] = worker.health.value
        member = Member(id=worker.node_id, address=("127.0.0.1", 20000 + index), tags=tags, state=MemberState.ALIVE)
        registry.apply(MemberJoined(member=member, at=0.0))
        if worker.suspect:
            registry.apply(MemberSuspect(member=attrs.evolve(member, state=MemberState.SUSPECT), at=0.0))
        stats = registry.stats(worker.node_id)
        for _ in range(worker.errors):
            stats.begin()
            stats.end(False, worker.latency)
        stats.begin()
        stats.end(True, worker.latency)
        for _ in range(worker.in_flight):
            stats.begin()
    return registry


def exercise_balancer(
    balancer: str,
    workers: Sequence[SimulatedWorker] | int = 3,
    *,
    picks: int = 1000,
    options: Mapping[str, Any] | None = None,
    plugins: PluginHost | Sequence[Any] | None = None,
    seed: int = 0,
    call_length: int | None = None,
) -> BalancerTrial:
    """Pick ``picks`` times with the load balancer named ``balancer`` and check its contract.

    Each pick goes through a ``WorkerRegistry`` (filtering, health, live
    statistics), as in a node; the picked worker gets one more call in
    flight, which finishes ``call_length`` picks later (None: never). Raises :class:`BalancerContractError` when a pick is an
    unhealthy or suspect worker, a degraded one while a healthy one was
    available, or when the same seed gives another sequence;
    :class:`~rpcnet.errors.ConfigError` for unknown options.
    """
    if isinstance(workers, int):
        workers = [SimulatedWorker(node_id=f"worker-{i}") for i in range(workers)]
    if not workers:
        raise ValueError("exercise_balancer needs at least one worker")
    host = _host(plugins)
    eligible = {w.node_id for w in workers if not w.suspect and w.health is not HealthStatus.UNHEALTHY}
    healthy = {w.node_id for w in workers if w.node_id in eligible and w.health is HealthStatus.HEALTHY}
    allowed = healthy or eligible
    latencies = {w.node_id: w.latency for w in workers}

    def trial() -> tuple[str, ...]:
        now = [0.0]
        registry = _registry(balancer, options, host, workers, seed, now)
        chosen: list[str] = []
        running: collections.deque[tuple[int, str]] = collections.deque()
        for number in range(1, picks + 1):
            while running and running[0][0] <= number:
                _, done = running.popleft()
                now[0] += 0.001
                registry.stats(done).end(True, latencies[done])
            try:
                node_id = registry.select_worker().node_id
            except ConfigError:
                raise
            except Exception as exc:
                if not allowed:
                    raise
                raise BalancerContractError(
                    f"load balancer {balancer!r} failed on pick {number}: {type(exc).__name__}: {exc}"
                ) from exc
            if node_id not in allowed:
                why = ("unhealthy or suspect" if node_id not in eligible
                       else "degraded while a healthy worker was available")
                raise BalancerContractError(
                    f"load balancer {balancer!r} picked {node_id!r} on pick {number}, which is {why}; "
                    "the registry never offers such a worker, so the balancer returned something it was not given"
                )
            chosen.append(node_id)
            registry.stats(node_id).begin()
            if call_length is not None:
                running.append((number + call_length, node_id))
        return tuple(chosen)

    first = trial()
    if trial() != first:
        raise BalancerContractError(
            f"load balancer {balancer!r} picked another sequence with the same seed; take randomness only from "
            "self.rng (the injected random.Random) so tests replay"
        )
    return BalancerTrial(picks=first, counts=dict(collections.Counter(first)))
