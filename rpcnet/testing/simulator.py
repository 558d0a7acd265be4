"""A seeded, virtual-time network for membership cores.

:class:`Simulator` runs any :class:`rpcnet.membership.Membership` core the
way the real driver (:class:`rpcnet.cluster.driver.MembershipDriver`) does
(datagrams, reliable requests, one timer per core, events), on a virtual clock and a simulated network with per-node and
per-link loss, delay, one-way drops, partitions, crashes and restarts. All
randomness derives from the seed, so a scenario replays to a byte-identical
:meth:`Simulator.event_log`.

It passes the cores what the real driver passes: a datagram's ``source`` is
the sender's address, a request's ``source`` is None, and each core is built
by :func:`rpcnet.membership.build_core` (through :func:`membership_factory`)
with the ``datagram_budget`` a default deployment gives it (``datagram_budget``
below: one 1400-byte gossip packet minus AES-GCM sealing).

Datagrams are the cores' real bytes, so the byte counters in
:attr:`SimNode.stats` are what a deployment would send. Requests travel
on modelled reliable streams: each direction takes the link delay plus, for
every lost transmission (drawn with the same loss as datagrams), a
retransmission timeout that starts at ``stream_retransmit`` and doubles, as
QUIC's does. When the path is cut (partition, broken link, crashed peer) or
the retransmissions would outlast ``sync_timeout``, the sender learns of the
failure after ``sync_timeout``.
"""

from __future__ import annotations

import heapq
import random
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from ..cluster.gossip import DEFAULT_MAX_PACKET_SIZE, sealing_overhead
from ..events import ClusterEvent
from ..membership import Member, Membership
from ..transport import Address

__all__ = ["NodeSpec", "SimNode", "Simulator", "NodeStats", "DEFAULT_DATAGRAM_BUDGET"]

_TIMER, _DATAGRAM, _REQUEST, _RESPONSE, _REQUEST_FAILED, _CALL = range(6)

#: What the production driver gives a core by default: one gossip packet, sealed.
DEFAULT_DATAGRAM_BUDGET = DEFAULT_MAX_PACKET_SIZE - sealing_overhead("", insecure=False)


@attrs.frozen(kw_only=True)
class NodeSpec:
    """What a core factory gets: identity plus a private, seeded rng."""

    node_id: str
    address: Address
    rng: random.Random = attrs.field(eq=False)
    #: 0 for the first start, +1 per restart.
    generation: int = 0
    #: The datagram budget to build the core with (the simulator's ``datagram_budget``).
    datagram_budget: int | None = DEFAULT_DATAGRAM_BUDGET


@attrs.frozen(kw_only=True)
class NodeStats:
    """What one node sent and received so far (a snapshot; read ``SimNode.stats``)."""

    datagrams_sent: int = 0
    bytes_sent: int = 0
    datagrams_received: int = 0
    #: Requests and replies to peers' requests handed to the reliable channel.
    requests_sent: int = 0
    request_bytes_sent: int = 0

    @property
    def syncs_sent(self) -> int:
        """Deprecated (until 0.3) name of :attr:`requests_sent`."""
        _renamed("syncs_sent", "requests_sent")
        return self.requests_sent

    @property
    def sync_bytes_sent(self) -> int:
        """Deprecated (until 0.3) name of :attr:`request_bytes_sent`."""
        _renamed("sync_bytes_sent", "request_bytes_sent")
        return self.request_bytes_sent


def _renamed(old: str, new: str) -> None:
    warnings.warn(f"NodeStats.{old} is deprecated: read NodeStats.{new} (removed in 0.3)", DeprecationWarning, stacklevel=3)


CoreFactory = Callable[[NodeSpec], Membership]


@attrs.define(eq=False)
class SimNode:
    node_id: str
    address: Address
    factory: CoreFactory
    core: Membership | None = None
    up: bool = False
    generation: int = -1
    timer_at: float | None = None
    #: Fraction of this node's datagrams lost, in and out.
    loss: float = 0.0
    _counts: dict[str, int] = attrs.Factory(lambda: dict.fromkeys(attrs.fields_dict(NodeStats), 0))

    @property
    def stats(self) -> NodeStats:
        """A snapshot of the node's counters."""
        return NodeStats(**self._counts)

    def _count(self, counter: str, amount: int = 1) -> None:
        self._counts[counter] += amount


class Simulator:
    """A virtual clock plus a network of membership cores.

    ``delay`` is the one-way latency of every link, plus uniform ``jitter``;
    ``loss`` applies to every datagram on top of per-node and per-link loss.
    """

    def __init__(
        self,
        *,
        seed: int,
        delay: float = 0.001,
        jitter: float = 0.0005,
        loss: float = 0.0,
        sync_timeout: float = 2.0,
        stream_retransmit: float = 0.05,
        datagram_budget: int | None = DEFAULT_DATAGRAM_BUDGET,
    ) -> None:
        self.seed = seed
        self.now = 0.0
        self.delay = delay
        self.jitter = jitter
        self.loss = loss
        self.sync_timeout = sync_timeout
        self.stream_retransmit = stream_retransmit
        #: Passed to every core factory in :class:`NodeSpec`.
        self.datagram_budget = datagram_budget
        self.nodes: dict[str, SimNode] = {}
        self._by_address: dict[Address, SimNode] = {}
        self._rng = random.Random(f"rpcnet-sim:{seed}")
        self._queue: list[tuple[float, int, int, Any]] = []
        self._order = 0
        self._link_loss: dict[tuple[str, str], float] = {}
        self._link_delay: dict[tuple[str, str], float] = {}
        self._groups: dict[str, int] | None = None
        self._log: list[str] = []
        self._listeners: list[Callable[[float, str, ClusterEvent], None]] = []
        self._port = 7000

    # ------------------------------------------------------------------
    # building the cluster

    def add_node(self, node_id: str, factory: CoreFactory, *, address: Address | None = None, start: bool = True) -> SimNode:
        """Add a node whose core ``factory(spec)`` builds; started now unless ``start=False``."""
        if node_id in self.nodes:
            raise ValueError(f"node {node_id!r} already exists in this simulation")
        if address is None:
            self._port += 1
            address = ("10.0.0.1", self._port)
        node = SimNode(node_id, (str(address[0]), int(address[1])), factory)
        self.nodes[node_id] = node
        self._by_address[node.address] = node
        if start:
            self._boot(node)
        return node

    def core(self, node_id: str) -> Membership:
        node = self.nodes[node_id]
        if node.core is None:
            raise KeyError(f"node {node_id!r} was never started")
        return node.core

    def join(self, node_id: str, seeds: Iterable[str]) -> None:
        """Node ``node_id`` joins through the nodes named in ``seeds``."""
        addresses = [self.nodes[s].address for s in seeds]
        self.call(node_id, lambda core, now: core.join(addresses, now))

    def call(self, node_id: str, action: Callable[[Membership, float], Any]) -> Any:
        """Run ``action(core, now)`` on a live node now, then deliver what it queued."""
        node = self.nodes[node_id]
        if not node.up or node.core is None:
            raise RuntimeError(f"node {node_id!r} is down")
        result = action(node.core, self.now)
        self._flush(node)
        return result

    def on_event(self, listener: Callable[[float, str, ClusterEvent], None]) -> None:
        """Call ``listener(now, observer_id, event)`` for every event a core emits."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------
    # faults

    def crash(self, node_id: str) -> None:
        """Stop a node abruptly: no leave, no more packets in or out."""
        node = self.nodes[node_id]
        node.up = False
        node.timer_at = None
        self._record(f"crash {node_id}")

    def restart(self, node_id: str, seeds: Sequence[str] = ()) -> None:
        """Start a crashed node again with a fresh core (incarnation 0), joining ``seeds``."""
        node = self.nodes[node_id]
        if node.up:
            raise RuntimeError(f"node {node_id!r} is running; crash it first")
        self._record(f"restart {node_id}")
        self._boot(node)
        if seeds:
            self.join(node_id, seeds)

    def set_node_loss(self, node_id: str, loss: float) -> None:
        """Lose this fraction of the node's datagrams, both directions."""
        self.nodes[node_id].loss = loss
        self._record(f"node-loss {node_id} {loss:g}")

    def set_link(self, source: str, destination: str, *, loss: float | None = None, delay: float | None = None, both_ways: bool = True) -> None:
        """Per-link loss and one-way delay, for ``source -> destination`` (and back)."""
        pairs = [(source, destination)] + ([(destination, source)] if both_ways else [])
        for pair in pairs:
            if loss is not None:
                self._link_loss[pair] = loss
            if delay is not None:
                self._link_delay[pair] = delay
        self._record(f"link {source} {destination} loss={loss} delay={delay} both={both_ways}")

    def break_link(self, source: str, destination: str, *, one_way: bool = False) -> None:
        """Drop everything from ``source`` to ``destination`` (and back unless ``one_way``)."""
        self.set_link(source, destination, loss=1.0, both_ways=not one_way)

    def partition(self, *groups: Iterable[str]) -> None:
        """Only nodes in the same group can talk; nodes in no group are isolated."""
        self._groups = {}
        for index, group in enumerate(groups):
            for node_id in group:
                self._groups[node_id] = index
        self._record("partition " + " | ".join(",".join(sorted(g)) for g in map(list, groups)))

    def heal(self) -> None:
        """End the partition (per-link settings stay)."""
        self._groups = None
        self._record("heal")

    # ------------------------------------------------------------------
    # running

    def run_until(self, deadline: float) -> None:
        """Process everything due up to ``deadline``, then set the clock to it."""
        queue = self._queue
        while queue and queue[0][0] <= deadline:
            at, _, kind, payload = heapq.heappop(queue)
            self.now = at
            self._dispatch(kind, payload)
        self.now = max(self.now, deadline)

    def run_for(self, duration: float) -> None:
        self.run_until(self.now + duration)

    def run_until_true(self, predicate: Callable[[], bool], *, timeout: float, step: float = 0.1) -> bool:
        """Run in ``step`` slices until ``predicate()`` holds; False if ``timeout`` passes first."""
        end = self.now + timeout
        while self.now < end:
            if predicate():
                return True
            self.run_until(min(end, self.now + step))
        return predicate()

    # ------------------------------------------------------------------
    # observation

    def event_log(self) -> bytes:
        """Every event and fault so far, one line each; identical for a replayed seed."""
        return "".join(self._log).encode()

    def view(self, node_id: str) -> dict[str, Member]:
        """Node ``node_id``'s members by id."""
        return {m.id: m for m in self.core(node_id).members()}

    def up_nodes(self) -> list[str]:
        return [k for k, n in self.nodes.items() if n.up]

    # ------------------------------------------------------------------
    # internals

    def _record(self, line: str) -> None:
        self._log.append(f"{self.now:.6f} {line}\n")

    def _boot(self, node: SimNode) -> None:
        node.generation += 1
        spec = NodeSpec(
            node_id=node.node_id,
            address=node.address,
            rng=random.Random(f"rpcnet-sim:{self.seed}:{node.node_id}:{node.generation}"),
            generation=node.generation,
            datagram_budget=self.datagram_budget,
        )
        node.core = node.factory(spec)
        node.up = True
        node.timer_at = None
        node.core.start(self.now)
        self._flush(node)

    def _push(self, at: float, kind: int, payload: Any) -> None:
        self._order += 1
        heapq.heappush(self._queue, (at, self._order, kind, payload))

    def _flush(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        if not node.up:
            return
        for address, data in core.datagrams_to_send():
            node._count("datagrams_sent")
            node._count("bytes_sent", len(data))
            self._send_datagram(node, address, data)
        for address, data in core.requests_to_send():
            node._count("requests_sent")
            node._count("request_bytes_sent", len(data))
            self._send_request(node, address, data)
        events = core.events_to_deliver()
        for event in events:
            self._log.append(f"{self.now:.6f} {node.node_id} {event.describe()}\n")
            for listener in self._listeners:
                listener(self.now, node.node_id, event)
        deadline = core.get_timer()
        if deadline is not None and deadline != node.timer_at:
            node.timer_at = deadline
            self._push(max(deadline, self.now), _TIMER, (node, node.generation, deadline))

    def _separated(self, a: str, b: str) -> bool:
        groups = self._groups
        if groups is None:
            return False
        ga = groups.get(a)
        return ga is None or ga != groups.get(b)

    def _delivery_chance(self, source: SimNode, destination: SimNode) -> float:
        if self._separated(source.node_id, destination.node_id):
            return 0.0
        link = self._link_loss.get((source.node_id, destination.node_id), 0.0)
        return (1.0 - self.loss) * (1.0 - source.loss) * (1.0 - destination.loss) * (1.0 - link)

    def _latency(self, source: SimNode, destination: SimNode) -> float:
        base = self._link_delay.get((source.node_id, destination.node_id), self.delay)
        return base + (self._rng.random() * self.jitter if self.jitter else 0.0)

    def _send_datagram(self, source: SimNode, address: Address, data: bytes) -> None:
        destination = self._by_address.get(address)
        if destination is None:
            return
        chance = self._delivery_chance(source, destination)
        if chance <= 0.0 or (chance < 1.0 and self._rng.random() >= chance):
            return
        self._push(self.now + self._latency(source, destination), _DATAGRAM, (destination, source.address, data))

    def _path_open(self, a: SimNode, b: SimNode) -> bool:
        return b.up and self._delivery_chance(a, b) > 0.0 and self._delivery_chance(b, a) > 0.0

    def _stream_transit(self, source: SimNode, destination: SimNode) -> float | None:
        """One direction of a stream message: delay plus retransmissions; None if it cannot make it."""
        if not self._path_open(source, destination):
            return None
        chance = self._delivery_chance(source, destination)
        transit = self._latency(source, destination)
        timeout = self.stream_retransmit
        while chance < 1.0 and self._rng.random() >= chance:
            transit += timeout
            timeout *= 2
            if transit > self.sync_timeout:
                return None
        return transit

    def _send_request(self, source: SimNode, address: Address, data: bytes) -> None:
        destination = self._by_address.get(address)
        transit = self._stream_transit(source, destination) if destination is not None else None
        if transit is None:
            self._push(self.now + self.sync_timeout, _REQUEST_FAILED, (source, source.generation, address))
            return
        self._push(self.now + transit, _REQUEST, (source, source.generation, destination, data))

    def _dispatch(self, kind: int, payload: Any) -> None:
        now = self.now
        if kind == _TIMER:
            node, generation, deadline = payload
            if not node.up or node.generation != generation or node.timer_at != deadline:
                return
            node.timer_at = None
            node.core.handle_timer(now)
            self._flush(node)
        elif kind == _DATAGRAM:
            node, source_address, data = payload
            if not node.up:
                return
            node._count("datagrams_received")
            node.core.receive(source_address, data, now)
            self._flush(node)
        elif kind == _REQUEST:
            source, generation, destination, data = payload
            if not destination.up or not self._path_open(source, destination):
                self._push(now + self.sync_timeout, _REQUEST_FAILED, (source, generation, destination.address))
                return
            try:
                # None, as the production driver passes: the channel does not know the requester's address.
                reply = destination.core.handle_request(None, data, now)
            except Exception:
                self._flush(destination)
                self._push(now, _REQUEST_FAILED, (source, generation, destination.address))
                return
            self._flush(destination)
            destination._count("requests_sent")
            destination._count("request_bytes_sent", len(reply))
            transit = self._stream_transit(destination, source)
            if transit is None:
                self._push(now + self.sync_timeout, _REQUEST_FAILED, (source, generation, destination.address))
                return
            self._push(now + transit, _RESPONSE, (source, generation, destination.address, reply))
        elif kind == _RESPONSE:
            source, generation, address, reply = payload
            if not source.up or source.generation != generation:
                return
            source.core.handle_response(address, reply, now)
            self._flush(source)
        elif kind == _REQUEST_FAILED:
            source, generation, address = payload
            if not source.up or source.generation != generation:
                return
            source.core.request_failed(address, now)
            self._flush(source)
