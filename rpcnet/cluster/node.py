"""The cluster facade: one node's membership, for applications.

:class:`Cluster` puts four parts together for one node and is what
applications use (view, tags, events, join/leave):

- the membership core (``swim`` by default), built by
  :func:`rpcnet.membership.build_core` from the configuration;
- its driver, :class:`~rpcnet.cluster.driver.MembershipDriver` (timers,
  datagrams, requests, events);
- the gossip endpoint (encrypted UDP), opened only when the core uses
  datagrams, and the request channel,
  :class:`~rpcnet.cluster.channel.RequestChannel` (sealed RPC calls over the
  node's mutual-TLS server);
- health publication, :class:`~rpcnet.cluster.publication.HealthPublication`
  (checks -> the health tag).

    cluster = await enable_cluster(server, ClusterConfig(tags={"role": "worker"}, seeds=["10.0.0.1:7000"]))
    async for event in cluster.subscribe():
        ...
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from ..config import TlsConfig
from ..errors import ConfigError
from ..membership import Member, Membership, MemberState, build_core
from ..rpc import RpcServer
from ..transport import Address, format_address, parse_address
from .channel import REQUEST_METHOD, RequestChannel, RequestChannelStats
from .config import RPC_ADDRESS_TAG, ClusterConfig
from .driver import MembershipDriver, Subscription
from .gossip import GossipEndpoint, GossipStats
from .keyring import Keyring
from .publication import HealthPublication

__all__ = ["Cluster", "Subscription", "enable_cluster", "REQUEST_METHOD", "MEMBERS_METHOD"]

MEMBERS_METHOD = "rpcnet.cluster/Members"


def __getattr__(name: str) -> Any:
    if name == "SYNC_METHOD":
        warnings.warn(
            "rpcnet.cluster.node.SYNC_METHOD is deprecated: use rpcnet.cluster.channel.REQUEST_METHOD (removed in 0.3)",
            DeprecationWarning,
            stacklevel=2,
        )
        return REQUEST_METHOD
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Cluster:
    """One node's membership in a cluster, driven on the event loop."""

    def __init__(self, server: RpcServer, config: ClusterConfig | None = None, *, rng: random.Random | None = None) -> None:
        self.server = server
        self.config = config or ClusterConfig()
        self.plugins = server.plugins
        self._rng = rng or random.Random()
        self._endpoint: GossipEndpoint | None = None
        self._channel: RequestChannel | None = None
        self._driver: MembershipDriver | None = None
        self._health: HealthPublication | None = None
        self._early: set[Subscription] = set()
        self._closed = False
        self._rpc_address: Address | None = None

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        if self._driver is not None:
            raise RuntimeError("the cluster is already started")
        config = self.config
        self.plugins.check_options(config.options)
        strategy = self.plugins.strategy("membership", config.membership)
        uses_datagrams = bool(getattr(strategy, "uses_datagrams", True))
        rpc_address = config.rpc_advertise or self.server.address
        if rpc_address[0] in ("0.0.0.0", "::", ""):
            raise ConfigError(
                f"the RPC server is bound to {format_address(rpc_address)}, which peers cannot dial; "
                "set ClusterConfig.rpc_advertise to a reachable address"
            )
        self._rpc_address = rpc_address
        keyring = self._keyring(required=uses_datagrams)
        if uses_datagrams:
            self._endpoint = await GossipEndpoint.open(
                bind=config.gossip_bind,
                advertise=config.gossip_advertise,
                keyring=keyring,
                label=config.label,
                insecure=config.insecure_gossip,
                on_datagram=self._on_datagram,
            )
        try:
            core = self._make_core(
                self._endpoint.advertise_address if self._endpoint is not None else rpc_address,
                self._endpoint.max_payload if self._endpoint is not None else None,
            )
        except BaseException:
            if self._endpoint is not None:
                self._endpoint.close()
            raise
        self._channel = RequestChannel(
            self.server, keyring=keyring, label=config.label, tls=self._request_tls(), timeout=config.sync_timeout
        )
        driver = self._driver = MembershipDriver(
            core,
            send_request=self._send_request,
            send_datagram=self._endpoint.send if self._endpoint is not None else None,
            on_event=self.plugins.notify_cluster_event,
        )
        for subscription in self._early:
            driver.adopt(subscription)
        self._early.clear()
        self._channel.serve(driver.handle_request)
        self.server.register(MEMBERS_METHOD, self._serve_members)
        driver.start()
        # Always: with no checks configured the aggregate is simply healthy,
        # and external probes still get an answer from rpcnet.health/Check.
        checks = [self.plugins.create("health-check", name, config.options.get(name)) for name in config.health_checks]
        self._health = HealthPublication(
            self.server, checks, get_tags=lambda: self.local_node.tags, set_tag=self.set_tag,
            interval=config.health_interval, timeout=config.health_timeout,
        )
        await self._health.start()
        if config.seeds:
            await self.join(config.seeds)

    def _keyring(self, *, required: bool) -> Keyring | None:
        config = self.config
        if config.keyring_file:
            return Keyring.from_file(config.keyring_file)
        if config.gossip_keys:
            return Keyring.from_config(config.gossip_keys)
        if required and not config.insecure_gossip:
            raise ConfigError(
                "gossip needs an encryption key: set ClusterConfig.gossip_keys (generate one with "
                "`python -c 'from rpcnet.cluster import Keyring; print(Keyring.generate())'`) or "
                "keyring_file, or set insecure_gossip=True on a network you control"
            )
        return None

    def _make_core(self, address: Address, datagram_budget: int | None) -> Membership:
        config = self.config
        assert self._rpc_address is not None
        tags = dict(config.tags)
        tags[RPC_ADDRESS_TAG] = format_address(self._rpc_address)
        return build_core(
            self.plugins,
            config.membership,
            config.options.get(config.membership, {}),
            node_id=config.node_id or format_address(self._rpc_address),
            address=address,
            tags=tags,
            failure_detector=config.failure_detector,
            detector_options=config.options.get(config.failure_detector),
            datagram_budget=datagram_budget,
            rng=self._rng,
        )

    async def join(self, seeds: Iterable[str | Address]) -> None:
        """Join through each seed (an RPC address of a member); returns once
        at least one answered, or raises UNAVAILABLE naming every failure."""
        driver = self._require_driver()
        own = self._rpc_address
        await driver.join([a for a in (parse_address(seed) for seed in seeds) if a != own])

    async def leave(self, timeout: float = 5.0) -> None:
        """Announce a graceful leave (peers report ``left``, never ``failed``)
        and wait until it has gone out, at most ``timeout`` seconds."""
        await self._require_driver().leave(timeout)

    async def close(self) -> None:
        """Stop the node's membership at once (without a leave announcement)."""
        if self._closed:
            return
        self._closed = True
        if self._health is not None:
            await self._health.stop()
        if self._driver is not None:
            await self._driver.close()
        if self._endpoint is not None:
            self._endpoint.close()
        if self._channel is not None:
            await self._channel.close()
        for subscription in list(self._early):
            subscription.close()

    # -- view -----------------------------------------------------------

    @property
    def core(self) -> Membership:
        """The membership core (read it; drive it only through this object)."""
        return self._require_driver().core

    @property
    def local_node(self) -> Member:
        return self.core.local_member

    @property
    def node_id(self) -> str:
        return self.core.node_id

    @property
    def gossip_address(self) -> Address | None:
        """The advertised gossip address; None when the membership strategy uses no datagrams."""
        return self._endpoint.advertise_address if self._endpoint is not None else None

    @property
    def gossip_stats(self) -> GossipStats | None:
        """The gossip endpoint's counters; None when there is no endpoint."""
        return self._endpoint.stats if self._endpoint is not None else None

    @property
    def keyring(self) -> Keyring | None:
        """The live keyring (rotate keys on it); None when gossip is insecure or keyless."""
        if self._channel is not None:
            return self._channel.keyring
        return None

    @property
    def stats(self) -> RequestChannelStats:
        """Counters of the request channel (a frozen snapshot)."""
        return self._channel.stats if self._channel is not None else RequestChannelStats()

    def members(self, tags: Mapping[str, str] | None = None, *, states: Iterable[MemberState] | None = None) -> list[Member]:
        """Every known member (this node included), optionally only those
        whose tags include all of ``tags`` and whose state is in ``states``."""
        members = self.core.members()
        if tags:
            members = [m for m in members if all(m.tags.get(k) == v for k, v in tags.items())]
        if states is not None:
            wanted = set(states)
            members = [m for m in members if m.state in wanted]
        return members

    def member(self, node_id: str) -> Member | None:
        return self.core.member(node_id)

    @property
    def tags(self) -> dict[str, str]:
        """A copy of the local node's tags."""
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
        driver = self._require_driver()
        driver.core.set_tags(tags, driver.now())
        driver.changed()

    def subscribe(self) -> Subscription:
        """Events from now on, as an async iterator (also an async context manager)."""
        if self._driver is None:
            # Before start: attached to the driver when it exists.
            subscription = Subscription(self._early.discard)
            self._early.add(subscription)
            return subscription
        return self._driver.subscribe()

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
        core = self.core
        detector = core.failure_detector
        if detector is None or node_id == core.node_id:
            return None
        try:
            return float(detector.phi(node_id, self._require_driver().now()))
        except Exception:
            return None

    def describe_members(self) -> list[dict[str, Any]]:
        """The view ``rpcnet members`` prints."""
        rows = []
        for member in self.members():
            rows.append(
                {
                    "id": member.id,
                    "address": format_address(member.address),
                    "rpc": member.tags.get(RPC_ADDRESS_TAG),
                    "state": member.state.value,
                    "incarnation": member.incarnation,
                    "tags": {k: v for k, v in sorted(member.tags.items())},
                    "phi": self.phi(member.id),
                    "local": member.id == self.node_id,
                }
            )
        return rows

    # -- wiring -------------------------------------------------------------

    def _require_driver(self) -> MembershipDriver:
        if self._driver is None:
            raise RuntimeError("the cluster is not started; await cluster.start() (or rpcnet.cluster.enable_cluster(server))")
        return self._driver

    def _on_datagram(self, source: Address, data: bytes) -> None:
        if self._driver is not None:
            self._driver.receive(source, data)

    def _rpc_address_for(self, address: Address) -> Address:
        """A request goes to the member's RPC address; seeds are RPC addresses already."""
        if self._driver is not None:
            for member in self._driver.core.members():
                if member.address == address:
                    rpc = self.rpc_address(member)
                    if rpc is not None:
                        return rpc
        return address

    async def _send_request(self, address: Address, data: bytes) -> bytes:
        assert self._channel is not None
        return await self._channel.request(self._rpc_address_for(address), data)

    def _request_tls(self) -> TlsConfig | None:
        if self.config.tls is not None:
            return self.config.tls
        server_tls = self.server.config.tls
        if server_tls is None:
            return None
        return TlsConfig(ca_file=server_tls.ca_file, cert_file=server_tls.cert_file, key_file=server_tls.key_file)

    async def _serve_members(self, request: Any, ctx: Any) -> dict[str, Any]:
        return {"node": self.node_id, "members": self.describe_members()}

    async def __aenter__(self) -> Cluster:
        if self._driver is None:
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
