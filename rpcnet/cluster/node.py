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

import asyncio
import logging
import random
import socket
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from ..config import TlsConfig
from ..errors import ConfigError, RpcError, StatusCode
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

log = logging.getLogger("rpcnet.cluster")

#: First pause between join attempts; it doubles up to ``rejoin_interval``.
_FIRST_JOIN_BACKOFF = 0.1
#: Join progress is logged at WARNING at most this often (seconds).
_JOIN_LOG_EVERY = 10.0


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
        self._joined = asyncio.Event()
        self._join_error: RpcError | None = None
        self._seed_task: asyncio.Task[None] | None = None
        #: Resolved seed address -> the host name it came from (TLS checks the name).
        self._server_names: dict[Address, str] = {}

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
                max_clock_skew=config.gossip_clock_skew,
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
        try:
            await self._health.start()
        except BaseException:
            await self.close()
            raise
        if config.seeds:
            # Joining never blocks start: a seed may come up later, or restart.
            self._seed_task = asyncio.get_running_loop().create_task(self._keep_seeds(config.seeds), name="rpcnet-cluster-seeds")
        else:
            self._joined.set()

    async def joined(self, timeout: float | None = None) -> None:
        """Wait until this node has joined through one of its seeds (at once
        without seeds).

        Raises :class:`TimeoutError` when ``timeout`` seconds pass first (the
        node goes on trying), ``UNAVAILABLE`` when ``ClusterConfig.join_timeout``
        ran out with no seed answering, and ``PERMISSION_DENIED`` at once when
        every seed answered and refused this node (another gossip key or label).
        """
        self._require_driver()
        try:
            await asyncio.wait_for(self._joined.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"node {self.node_id!r} has not joined within {timeout:g} s; it is still trying its seeds "
                f"{', '.join(self.config.seeds)} (the log says why each attempt failed)"
            ) from None
        if self._join_error is not None:
            raise self._join_error

    @property
    def is_joined(self) -> bool:
        """True once a seed answered (or when there are no seeds)."""
        return self._joined.is_set() and self._join_error is None

    async def _resolve_seeds(self, seeds: Iterable[str]) -> tuple[list[Address], list[str]]:
        """Every address each seed resolves to now (host names are looked up
        on every call), this node's own left out; and what failed to resolve."""
        loop = asyncio.get_running_loop()
        own = self._rpc_address
        addresses: list[Address] = []
        problems: list[str] = []
        for seed in seeds:
            host, port = parse_address(seed)
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
                resolved = [(str(info[4][0]), int(info[4][1])) for info in infos]
            except OSError as exc:
                # Not in DNS (yet, or a name only the transport knows, such
                # as the memory transport's): the transport may still dial it.
                problems.append(f"{seed}: cannot resolve {host!r}: {exc}")
                resolved = [(host, port)]
            for address in resolved:
                if address != own and address not in addresses:
                    addresses.append(address)
                    if address[0] != host:
                        self._server_names[address] = host
        return addresses, problems

    async def _join_once(self, seeds: Iterable[str]) -> None:
        addresses, problems = await self._resolve_seeds(seeds)
        if not addresses:
            return  # every seed is this node
        try:
            await self._require_driver().join(addresses)
        except RpcError as exc:
            if problems:
                raise RpcError(f"{exc.message} ({'; '.join(problems)})", code=exc.code) from None
            raise

    async def _keep_seeds(self, seeds: tuple[str, ...]) -> None:
        """Join through the seeds until one answers (backing off up to
        ``rejoin_interval``, at most ``join_timeout``), then keep checking:
        a seed not alive in the view, or a view with nobody else alive, gets
        a sync again every ``rejoin_interval``. That finds a seed restarted
        with no seeds of its own, and rejoins a node that lost everyone."""
        config = self.config
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempts = 0
        delay = _FIRST_JOIN_BACKOFF
        logged = started
        while True:
            attempts += 1
            try:
                await self._join_once(seeds)
                break
            except RpcError as exc:
                elapsed = loop.time() - started
                if exc.code is StatusCode.PERMISSION_DENIED:
                    self._join_error = RpcError(
                        f"every seed refused this node: {exc.message}; give it the cluster's gossip key "
                        "(gossip_keys or keyring_file) and label",
                        code=StatusCode.PERMISSION_DENIED,
                    )
                    log.error("%s", self._join_error.message)
                    self._joined.set()
                    return
                if config.join_timeout is not None and elapsed >= config.join_timeout:
                    self._join_error = RpcError(
                        f"could not join through any seed within join_timeout {config.join_timeout:g} s "
                        f"({attempts} attempts): {exc.message}; check that a seed is running and reachable, "
                        "or raise ClusterConfig.join_timeout (unset: keep trying)",
                        code=StatusCode.UNAVAILABLE,
                    )
                    log.error("%s", self._join_error.message)
                    self._joined.set()
                    return
                now = loop.time()
                if attempts == 1:
                    log.info("joining through %s: not yet (%s); trying again", ", ".join(seeds), exc.message)
                elif now - logged >= _JOIN_LOG_EVERY:
                    logged = now
                    log.warning("still joining through %s after %.0f s and %d attempts: %s", ", ".join(seeds), elapsed, attempts, exc.message)
                await asyncio.sleep(delay * self._rng.uniform(0.5, 1.0))
                delay = min(delay * 2, config.rejoin_interval)
        log.info("joined through %s after %d attempt(s)", ", ".join(seeds), attempts)
        self._joined.set()
        while True:
            await asyncio.sleep(config.rejoin_interval * self._rng.uniform(0.8, 1.0))
            try:
                targets, _ = await self._resolve_seeds(seeds)
                live = {
                    self.rpc_address(m)
                    for m in self.core.members()
                    if m.id != self.node_id and m.state in (MemberState.ALIVE, MemberState.SUSPECT)
                }
                if live:
                    targets = [a for a in targets if a not in live]
                if targets:
                    log.debug("syncing with seeds not alive in the view: %s", ", ".join(map(format_address, targets)))
                    await self._require_driver().join(targets)
            except RpcError as exc:
                log.debug("seed check: %s", exc.message)

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
        """Join through each seed (an RPC address of a member) once; returns
        once at least one answered, or raises UNAVAILABLE naming every
        failure. (``ClusterConfig.seeds`` are joined in the background, with
        retries: see :meth:`joined`.)"""
        self._require_driver()
        await self._join_once([seed if isinstance(seed, str) else format_address(seed) for seed in seeds])

    async def leave(self, timeout: float = 5.0) -> None:
        """Announce a graceful leave (peers report ``left``, never ``failed``)
        and wait until it has gone out, at most ``timeout`` seconds."""
        await self._require_driver().leave(timeout)

    async def close(self) -> None:
        """Stop the node's membership at once (without a leave announcement)."""
        if self._closed:
            return
        self._closed = True
        if self._seed_task is not None:
            self._seed_task.cancel()
            await asyncio.gather(self._seed_task, return_exceptions=True)
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
        rpc = self._rpc_address_for(address)
        return await self._channel.request(rpc, data, server_name=self._server_names.get(rpc))

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
