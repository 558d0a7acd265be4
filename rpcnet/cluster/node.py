"""The cluster facade and its asyncio driver.

:class:`Cluster` runs a sans-IO membership core (``swim`` by default) for one
node: datagrams travel through a :class:`~rpcnet.cluster.gossip.GossipEndpoint`
(encrypted UDP), full-state syncs travel as RPC calls to the peer's RPC server
(mutual TLS over QUIC), and the core's single timer is one ``loop.call_at``.
Everything the core decides comes out as :mod:`rpcnet.events` values, handed
to subscribers and to the ``rpcnet_cluster_event`` hook.

    cluster = await enable_cluster(server, ClusterConfig(tags={"role": "worker"}, seeds=["10.0.0.1:7000"]))
    async for event in cluster.subscribe():
        ...
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ..config import RpcConfig, TlsConfig
from ..errors import ConfigError, RpcError, RpcnetError, StatusCode
from ..events import ClusterEvent
from ..membership import Member, Membership, MemberState
from ..registry import build_options
from ..rpc import RpcClient, RpcServer
from ..transport import Address, parse_address
from .config import HEALTH_TAG, RPC_ADDRESS_TAG, ClusterConfig
from .gossip import NONCE_SIZE, GossipEndpoint, GossipPacketError, seal, seal_insecure, unseal
from .health import HealthMonitor, register_health_service
from .keyring import Keyring

__all__ = ["Cluster", "Subscription", "enable_cluster", "SYNC_METHOD", "MEMBERS_METHOD"]

log = logging.getLogger("rpcnet.cluster")

SYNC_METHOD = "rpcnet.cluster/Sync"
MEMBERS_METHOD = "rpcnet.cluster/Members"


class Subscription:
    """Cluster events as an async iterator; ``close()`` (or leaving an
    ``async with``) stops it. Events queue without bound: they are rare."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._queue: asyncio.Queue[ClusterEvent | None] = asyncio.Queue()
        self._closed = False

    def _put(self, event: ClusterEvent) -> None:
        if not self._closed:
            self._queue.put_nowait(event)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._cluster._subscribers.discard(self)
            self._queue.put_nowait(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ClusterEvent:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event

    async def get(self, timeout: float | None = None) -> ClusterEvent:
        """The next event, waiting at most ``timeout`` seconds."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()


def _format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Cluster:
    """One node's membership in a cluster, driven on the event loop."""

    def __init__(self, server: RpcServer, config: ClusterConfig | None = None, *, rng: random.Random | None = None) -> None:
        self.server = server
        self.config = config or ClusterConfig()
        self.plugins = server.plugins
        self._rng = rng or random.Random()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._endpoint: GossipEndpoint | None = None
        self._core: Membership | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._subscribers: set[Subscription] = set()
        self._sync_clients: dict[Address, RpcClient] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._leave_done: asyncio.Event | None = None
        self._closed = False
        self._rpc_address: Address | None = None
        self._health: Any = None
        #: Counters: syncs_sent, syncs_served, syncs_rejected (wrong key or label), syncs_failed.
        self.stats: dict[str, int] = {"syncs_sent": 0, "syncs_served": 0, "syncs_rejected": 0, "syncs_failed": 0}

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        if self._core is not None:
            raise RuntimeError("the cluster is already started")
        config = self.config
        self.plugins.check_options(config.options)
        loop = self._loop = asyncio.get_running_loop()
        rpc_address = config.rpc_advertise or self.server.address
        if rpc_address[0] in ("0.0.0.0", "::", ""):
            raise ConfigError(
                f"the RPC server is bound to {_format_address(rpc_address)}, which peers cannot dial; "
                "set ClusterConfig.rpc_advertise to a reachable address"
            )
        self._rpc_address = rpc_address
        keyring = self._keyring()
        self._endpoint = await GossipEndpoint.open(
            bind=config.gossip_bind,
            advertise=config.gossip_advertise,
            keyring=keyring,
            label=config.label,
            insecure=config.insecure_gossip,
            on_datagram=self._on_datagram,
        )
        try:
            self._core = self._make_core(self._endpoint.advertise_address, self._endpoint.max_payload)
        except BaseException:
            self._endpoint.close()
            raise
        self.server.register(SYNC_METHOD, self._serve_sync)
        self.server.register(MEMBERS_METHOD, self._serve_members)
        self._core.start(loop.time())
        self._after_input()
        # Always: with no checks configured the aggregate is simply healthy,
        # and external probes still get an answer from rpcnet.health/Check.
        await self._start_health()
        if config.seeds:
            await self.join(config.seeds)

    def _keyring(self) -> Keyring | None:
        config = self.config
        if config.keyring_file:
            return Keyring.from_file(config.keyring_file)
        if config.gossip_keys:
            return Keyring.from_config(config.gossip_keys)
        if not config.insecure_gossip:
            raise ConfigError(
                "gossip needs an encryption key: set ClusterConfig.gossip_keys (generate one with "
                "`python -c 'from rpcnet.cluster import Keyring; print(Keyring.generate())'`) or "
                "keyring_file, or set insecure_gossip=True on a network you control"
            )
        return None

    def _make_core(self, gossip_address: Address, max_payload: int) -> Membership:
        config = self.config
        registry = self.plugins.registry
        detector = None
        if config.failure_detector and config.failure_detector != "none":
            detector = registry.create(
                "failure-detector", config.failure_detector, config.options.get(config.failure_detector)
            )
        cls = registry.get("membership", config.membership)
        values = {k.replace("-", "_"): v for k, v in config.options.get(config.membership, {}).items()}
        options_cls = getattr(cls, "Options", None)
        options = None
        if options_cls is not None:
            fields = {f.name for f in attrs.fields(options_cls)}
            if "partition_policy" in fields:
                values.setdefault("partition_policy", config.partition_policy)
            if "packet_budget" in fields:
                values.setdefault("packet_budget", max_payload)
            checked = build_options("membership", config.membership, cls, values)
            preset = getattr(options_cls, config.preset, None)
            if callable(preset):
                options = preset(**{f: getattr(checked, f) for f in values})
            else:
                options = checked
        tags = dict(config.tags)
        tags[RPC_ADDRESS_TAG] = _format_address(self._rpc_address or ("", 0))
        node_id = config.node_id or _format_address(self._rpc_address or gossip_address)
        kwargs: dict[str, Any] = dict(node_id=node_id, address=gossip_address, tags=tags, failure_detector=detector, rng=self._rng)
        if options is not None:
            kwargs["options"] = options
        return cls(**kwargs)

    async def join(self, seeds: Iterable[str | Address]) -> None:
        """Sync with each seed (an RPC address of a member); returns once at
        least one answered, or raises UNAVAILABLE naming every failure."""
        core = self._require_core()
        addresses = [parse_address(seed) for seed in seeds]
        own = self._rpc_address
        addresses = [a for a in addresses if a != own]
        if not addresses:
            return
        core.join(addresses, self._now())
        pending = self._take_syncs()
        results = await asyncio.gather(*(self._sync(address, data) for address, data in pending), return_exceptions=True)
        self._after_input()
        errors = [r for r in results if isinstance(r, BaseException)]
        if pending and len(errors) == len(pending):
            detail = "; ".join(f"{_format_address(a)}: {e}" for (a, _), e in zip(pending, errors))
            raise RpcError(f"could not join through any seed: {detail}", code=StatusCode.UNAVAILABLE)

    async def leave(self, timeout: float = 5.0) -> None:
        """Announce a graceful leave (peers report ``left``, never ``failed``)
        and wait until it has been gossiped, at most ``timeout`` seconds."""
        core = self._require_core()
        self._leave_done = asyncio.Event()
        core.leave(self._now())
        self._after_input()
        try:
            await asyncio.wait_for(self._leave_done.wait(), timeout)
        except TimeoutError:
            log.warning("leave was not fully gossiped within %s s", timeout)

    async def close(self) -> None:
        """Stop the node's membership at once (without a leave announcement)."""
        if self._closed:
            return
        self._closed = True
        if self._health is not None:
            await self._health.stop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._endpoint is not None:
            self._endpoint.close()
        for client in list(self._sync_clients.values()):
            await client.close()
        self._sync_clients.clear()
        for subscription in list(self._subscribers):
            subscription.close()

    # -- view -----------------------------------------------------------

    @property
    def local_node(self) -> Member:
        return self._require_core().local_member

    @property
    def node_id(self) -> str:
        return self._require_core().node_id

    @property
    def gossip_address(self) -> Address:
        assert self._endpoint is not None
        return self._endpoint.advertise_address

    @property
    def gossip_stats(self) -> Any:
        assert self._endpoint is not None
        return self._endpoint.stats

    def members(self, tags: Mapping[str, str] | None = None, *, states: Iterable[MemberState] | None = None) -> list[Member]:
        """Every known member (this node included), optionally only those
        whose tags include all of ``tags`` and whose state is in ``states``."""
        members = self._require_core().members()
        if tags:
            members = [m for m in members if all(m.tags.get(k) == v for k, v in tags.items())]
        if states is not None:
            wanted = set(states)
            members = [m for m in members if m.state in wanted]
        return members

    def member(self, node_id: str) -> Member | None:
        return self._require_core().member(node_id)

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.local_node.tags)

    def set_tag(self, key: str, value: str) -> None:
        tags = self.tags
        tags[str(key)] = str(value)
        self._set_tags(tags)

    def remove_tag(self, key: str) -> None:
        tags = self.tags
        if key == RPC_ADDRESS_TAG:
            raise ValueError(f"tag {key!r} is managed by rpcnet")
        if tags.pop(key, None) is not None:
            self._set_tags(tags)

    def _set_tags(self, tags: dict[str, str]) -> None:
        core = self._require_core()
        core.set_tags(tags, self._now())
        self._after_input()

    def subscribe(self) -> Subscription:
        """Events from now on, as an async iterator (also an async context manager)."""
        subscription = Subscription(self)
        self._subscribers.add(subscription)
        return subscription

    def rpc_address(self, member: Member) -> Address | None:
        """The RPC address a member advertises, or None."""
        value = member.tags.get(RPC_ADDRESS_TAG)
        if not value:
            return None
        try:
            return parse_address(value)
        except ValueError:
            return None

    def phi(self, node_id: str) -> float | None:
        core = self._require_core()
        detector = core.failure_detector
        if detector is None or node_id == core.node_id:
            return None
        try:
            return float(detector.phi(node_id, self._now()))
        except Exception:
            return None

    def describe_members(self) -> list[dict[str, Any]]:
        """The view ``rpcnet members`` prints."""
        rows = []
        for member in self.members():
            rows.append(
                {
                    "id": member.id,
                    "address": _format_address(member.address),
                    "rpc": member.tags.get(RPC_ADDRESS_TAG),
                    "state": member.state.value,
                    "incarnation": member.incarnation,
                    "tags": {k: v for k, v in sorted(member.tags.items())},
                    "phi": self.phi(member.id),
                    "local": member.id == self.node_id,
                }
            )
        return rows

    # -- driver -------------------------------------------------------------

    def _require_core(self) -> Membership:
        if self._core is None:
            raise RuntimeError("the cluster is not started; await cluster.start() (or rpcnet.cluster.enable_cluster(server))")
        return self._core

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _on_datagram(self, source: Address, data: bytes) -> None:
        core = self._core
        if core is None or self._closed:
            return
        core.receive(source, data, self._now())
        self._after_input()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        core = self._core
        if core is None or self._closed:
            return
        core.handle_timer(self._now())
        self._after_input()

    def _after_input(self) -> None:
        core = self._core
        if core is None or self._closed:
            return
        endpoint = self._endpoint
        assert endpoint is not None
        for address, data in core.datagrams_to_send():
            try:
                endpoint.send(address, data)
            except RpcnetError as exc:
                log.warning("gossip to %s not sent: %s", _format_address(address), exc)
        for address, data in self._take_syncs():
            self._spawn(self._sync_in_background(address, data))
        for event in core.events_to_deliver():
            for subscription in list(self._subscribers):
                subscription._put(event)
            self.plugins.notify_cluster_event(event)
        if self._leave_done is not None and not self._leave_done.is_set() and core.leave_done():
            self._leave_done.set()  # only once leave() was called
        deadline = core.get_timer()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_at = deadline
            if deadline is not None:
                assert self._loop is not None
                self._timer = self._loop.call_at(deadline, self._on_timer)

    def _take_syncs(self) -> list[tuple[Address, bytes]]:
        core = self._core
        return core.syncs_to_send() if core is not None else []

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _rpc_address_for(self, address: Address) -> Address:
        """A sync goes to the member's RPC address; seeds are RPC addresses already."""
        core = self._core
        if core is not None:
            for member in core.members():
                if member.address == address:
                    rpc = self.rpc_address(member)
                    if rpc is not None:
                        return rpc
        return address

    def _sync_tls(self) -> TlsConfig | None:
        if self.config.tls is not None:
            return self.config.tls
        server_tls = self.server.config.tls
        if server_tls is None:
            return None
        return TlsConfig(ca_file=server_tls.ca_file, cert_file=server_tls.cert_file, key_file=server_tls.key_file)

    def _client_for(self, address: Address) -> RpcClient:
        client = self._sync_clients.get(address)
        if client is None:
            base: RpcConfig = self.server.config
            config = base.evolve(tls=self._sync_tls())
            client = RpcClient(address, config, plugins=self.plugins, server_name=address[0])
            self._sync_clients[address] = client
        return client

    # Syncs are sealed like gossip packets (keyring + cluster label) on top of
    # mutual TLS: a node with the wrong gossip key or label cannot merge
    # state through the sync path either.

    def _seal(self, data: bytes) -> bytes:
        assert self._endpoint is not None
        keyring = self._endpoint.keyring
        if keyring is None:
            return seal_insecure(data, label=self.config.label)
        return seal(data, key=keyring.primary_key, label=self.config.label, nonce=os.urandom(NONCE_SIZE))

    def _unseal(self, data: bytes) -> bytes:
        assert self._endpoint is not None
        keyring = self._endpoint.keyring
        return unseal(data, keys=keyring.keys if keyring is not None else None, label=self.config.label)

    async def _sync(self, address: Address, data: bytes) -> None:
        rpc_address = self._rpc_address_for(address)
        core = self._require_core()
        self.stats["syncs_sent"] += 1
        try:
            sealed = await self._client_for(rpc_address).call(SYNC_METHOD, self._seal(data), timeout=self.config.sync_timeout)
            if not isinstance(sealed, bytes):
                raise RpcError("malformed sync reply: not bytes", code=StatusCode.INTERNAL)
            try:
                reply = self._unseal(sealed)
            except GossipPacketError as exc:
                self.stats["syncs_rejected"] += 1
                raise RpcError(f"sync reply refused: {exc}", code=StatusCode.PERMISSION_DENIED) from None
        except Exception:
            self.stats["syncs_failed"] += 1
            client = self._sync_clients.pop(rpc_address, None)
            if client is not None:
                await client.close()
            if not self._closed:
                core.sync_failed(address, self._now())
                self._after_input()
            raise
        if not self._closed:
            core.handle_sync_response(address, reply, self._now())
            self._after_input()

    async def _sync_in_background(self, address: Address, data: bytes) -> None:
        try:
            await self._sync(address, data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("sync with %s failed: %s", _format_address(address), exc)

    async def _serve_sync(self, request: Any, ctx: Any) -> bytes:
        core = self._require_core()
        if not isinstance(request, bytes):
            raise RpcError("a sync request carries bytes", code=StatusCode.INVALID_ARGUMENT)
        try:
            opened = self._unseal(request)
        except GossipPacketError as exc:
            self.stats["syncs_rejected"] += 1
            raise RpcError(
                f"sync refused: {exc} (check that both nodes share a gossip key and cluster label)",
                code=StatusCode.PERMISSION_DENIED,
            ) from None
        try:
            reply = core.handle_sync_request(ctx.peer.address or ("", 0), opened, self._now())
        except Exception as exc:
            raise RpcError(f"malformed sync request: {exc}", code=StatusCode.INVALID_ARGUMENT) from None
        finally:
            self._after_input()
        self.stats["syncs_served"] += 1
        return self._seal(reply)

    async def _serve_members(self, request: Any, ctx: Any) -> dict[str, Any]:
        return {"node": self.node_id, "members": self.describe_members()}

    # -- health -----------------------------------------------------------

    async def _start_health(self) -> None:
        checks = [self.plugins.create("health-check", name, self.config.options.get(name)) for name in self.config.health_checks]

        def publish(result: Any) -> None:
            status = getattr(result.status, "value", str(result.status))
            current = self.tags.get(HEALTH_TAG)
            # No tag means healthy: a node without checks gossips nothing extra.
            if current != status and not (current is None and status == "healthy"):
                self.set_tag(HEALTH_TAG, status)

        self._health = HealthMonitor(checks, interval=self.config.health_interval, timeout=self.config.health_timeout, publish=publish)
        await self._health.start()
        if "rpcnet.health/Check" not in self.server.methods:
            register_health_service(self.server, self._health)

    async def __aenter__(self) -> Cluster:
        if self._core is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


async def enable_cluster(server: RpcServer, config: ClusterConfig | None = None, **kwargs: Any) -> Cluster:
    """Join (or found) a cluster with ``server`` as the node's RPC endpoint.

    Starts the server on its default address first if needed, then returns
    the started :class:`Cluster`.
    """
    if not server.is_serving:
        await server.start()
    cluster = Cluster(server, config, **kwargs)
    await cluster.start()
    return cluster
