"""``static``: membership from a member list in the configuration.

The cluster is the members listed in ``[cluster.options.static] members``
(plus any node that contacts one of them, or that it joins through). Liveness
is one request at a time to each peer over the driver's reliable request
channel, every ``ping_interval``: a reply proves the peer alive and carries
its incarnation, tags and state; a request that fails is a miss.
``suspect_after`` misses in a row make the peer suspect, ``fail_after``
failed. Every request carries the sender's own state too, so a tag change or
a leave reaches a peer with the next request, which is sent at once.

It sends no datagrams (``uses_datagrams = False``): its node opens no gossip
socket and needs no gossip key. Only the member itself ever says anything
about itself, so there is nothing to order, refute or gossip. It has no
partition policy.

    [cluster]
    membership = "static"
    node_id = "a"
    [cluster.options.static]
    members = [{id = "a", address = "10.0.0.1:7000"}, {id = "b", address = "10.0.0.2:7000"}]
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import attrs

from rpcnet import hookimpl
from rpcnet.config import at_least, positive
from rpcnet.errors import ConfigError
from rpcnet.events import (
    ClusterEvent,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberRecovered,
    MemberSuspect,
    MemberTagsUpdated,
)
from rpcnet.failure_detector import FailureDetector
from rpcnet.hookspecs import Register
from rpcnet.membership import Member, Membership, MemberState
from rpcnet.transport import Address, format_address, parse_address

__all__ = ["StaticMember", "StaticOptions", "StaticMembership", "rpcnet_register_membership"]


@attrs.frozen(kw_only=True)
class StaticMember:
    id: str
    #: The member's request address (its RPC address in rpcnet).
    address: Address = attrs.field(converter=parse_address)


def _members(value: Any) -> tuple[StaticMember, ...]:
    members = []
    for entry in value or ():
        if isinstance(entry, StaticMember):
            members.append(entry)
        elif isinstance(entry, Mapping) and set(entry) == {"id", "address"}:
            members.append(StaticMember(id=str(entry["id"]), address=entry["address"]))
        else:
            raise ConfigError(f"a static member is a table {{id = ..., address = \"host:port\"}}, got {entry!r}")
    return tuple(members)


@attrs.frozen(kw_only=True)
class StaticOptions:
    members: tuple[StaticMember, ...] = attrs.field(default=(), converter=_members)
    #: Time between requests to each peer.
    ping_interval: float = attrs.field(default=1.0, converter=float, validator=positive)
    #: Failed requests in a row before a peer is suspect, and failed.
    suspect_after: int = attrs.field(default=1, converter=int, validator=at_least(1))
    fail_after: int = attrs.field(default=3, converter=int, validator=at_least(1))


_ALIVE_STATES = (MemberState.ALIVE, MemberState.SUSPECT)


class _Peer:
    def __init__(self, address: Address, node_id: str | None) -> None:
        self.address = address
        self.id = node_id
        self.misses = 0
        self.busy = False  # one request at a time, so a failure names the request
        self.news = False  # our state changed while busy: send again when free


class StaticMembership(Membership):
    name: ClassVar[str] = "static"
    Options: ClassVar[type] = StaticOptions
    uses_datagrams: ClassVar[bool] = False

    def __init__(
        self,
        *,
        node_id: str,
        address: Address,
        tags: Mapping[str, str] | None = None,
        options: StaticOptions | None = None,
        failure_detector: FailureDetector | None = None,
        rng: random.Random | None = None,
        datagram_budget: int | None = None,
    ) -> None:
        super().__init__(node_id=node_id, address=address, tags=tags, options=options or StaticOptions(),
                         failure_detector=failure_detector, rng=rng, datagram_budget=datagram_budget)
        self._opts: StaticOptions = self.options
        self._self = Member(id=node_id, address=self.address, tags=dict(tags or {}))
        self._view: dict[str, Member] = {}
        self._peers: dict[Address, _Peer] = {}
        for m in self._opts.members:
            self._peer(m.address, m.id)
        self._requests: list[tuple[Address, bytes]] = []
        self._events: list[ClusterEvent] = []
        self._next_tick: float | None = None
        self._now = 0.0

    # -- lifecycle ------------------------------------------------------

    def start(self, now: float) -> None:
        self._now = now
        self._next_tick = now + self.rng.uniform(0, self._opts.ping_interval)

    def join(self, seeds: Iterable[Address], now: float) -> None:
        for seed in seeds:
            peer = self._peer((str(seed[0]), int(seed[1])), None)
            if peer is not None:
                self._send(peer)

    def leave(self, now: float) -> None:
        if self._self.state is MemberState.LEFT:
            return
        self._self = attrs.evolve(self._self, state=MemberState.LEFT, incarnation=self._self.incarnation + 1)
        self._next_tick = None
        self._announce()

    def leave_done(self) -> bool:
        return self._self.state is MemberState.LEFT and not any(p.busy or p.news for p in self._peers.values())

    def set_tags(self, tags: Mapping[str, str], now: float) -> None:
        if dict(tags) != dict(self._self.tags):
            self._self = attrs.evolve(self._self, tags=tags, incarnation=self._self.incarnation + 1)
            self._announce()

    # -- input ----------------------------------------------------------

    def receive(self, source: Address, data: bytes, now: float) -> None:
        return  # no datagrams

    def handle_timer(self, now: float) -> None:
        self._now = now
        if self._next_tick is not None and now >= self._next_tick:
            self._next_tick = now + self._opts.ping_interval
            for peer in self._peers.values():
                member = self._view.get(peer.id or "")
                if member is None or member.state is not MemberState.LEFT:
                    self._send(peer)

    def handle_request(self, source: Address | None, data: bytes, now: float) -> bytes:
        self._now = now
        self._heard(json.loads(data), now)  # the requester names itself: source is None
        return self._encode()

    def handle_response(self, destination: Address, data: bytes, now: float) -> None:
        self._now = now
        peer = self._done(destination)
        info = json.loads(data)
        if peer is not None and peer.id is None:
            peer.id = str(info["id"])
        self._heard(info, now)

    def request_failed(self, destination: Address, now: float) -> None:
        self._now = now
        peer = self._done(destination)
        if peer is None or peer.id is None or self._self.state is MemberState.LEFT:
            return
        peer.misses += 1
        member = self._view.get(peer.id)
        if member is None or member.state not in _ALIVE_STATES:
            return
        if peer.misses >= self._opts.fail_after:
            self._set(member, MemberFailed, state=MemberState.FAILED)
        elif peer.misses >= self._opts.suspect_after and member.state is MemberState.ALIVE:
            self._set(member, MemberSuspect, state=MemberState.SUSPECT)

    # -- output ---------------------------------------------------------

    def get_timer(self) -> float | None:
        return self._next_tick

    def datagrams_to_send(self) -> list[tuple[Address, bytes]]:
        return []

    def requests_to_send(self) -> list[tuple[Address, bytes]]:
        out, self._requests = self._requests, []
        return out

    def events_to_deliver(self) -> list[ClusterEvent]:
        out, self._events = self._events, []
        return out

    # -- view -----------------------------------------------------------

    def members(self) -> list[Member]:
        return sorted([self._self, *self._view.values()], key=lambda m: m.id)

    def member(self, node_id: str) -> Member | None:
        return self._self if node_id == self.node_id else self._view.get(node_id)

    @property
    def local_member(self) -> Member:
        return self._self

    # -- internals --------------------------------------------------------

    def _peer(self, address: Address, node_id: str | None) -> _Peer | None:
        if address == self.address or node_id == self.node_id:
            return None
        peer = self._peers.get(address)
        if peer is None:
            peer = self._peers[address] = _Peer(address, node_id)
        return peer

    def _encode(self) -> bytes:
        me = self._self
        return json.dumps({"id": me.id, "address": format_address(me.address), "incarnation": me.incarnation,
                           "tags": dict(me.tags), "state": me.state.value}).encode()

    def _send(self, peer: _Peer) -> None:
        if peer.busy:
            peer.news = True
            return
        peer.busy, peer.news = True, False
        self._requests.append((peer.address, self._encode()))

    def _announce(self) -> None:
        for peer in self._peers.values():
            member = self._view.get(peer.id or "")
            if member is not None and member.state in _ALIVE_STATES:
                self._send(peer)

    def _done(self, destination: Address) -> _Peer | None:
        peer = self._peers.get(destination)
        if peer is None:
            return None
        peer.busy = False
        if peer.news:
            self._send(peer)
        return peer

    def _heard(self, info: Mapping[str, Any], now: float) -> None:
        node_id, address = str(info["id"]), parse_address(info["address"])
        peer = self._peer(address, node_id)
        if peer is None:
            return
        peer.misses = 0
        state = MemberState(info["state"])
        heard = Member(id=node_id, address=address, tags=info["tags"], incarnation=int(info["incarnation"]), state=state)
        current = self._view.get(node_id)
        if state is MemberState.LEFT:
            if current is not None and current.state is not MemberState.LEFT:
                self._set(heard, MemberLeft)
            return
        if current is None or current.state is MemberState.LEFT:
            self._set(heard, MemberJoined)
        elif current.state is not MemberState.ALIVE:
            self._set(attrs.evolve(heard, tags=current.tags), MemberRecovered)
            if dict(current.tags) != dict(heard.tags):
                self._set(heard, MemberTagsUpdated, previous_tags=current.tags)
        elif dict(current.tags) != dict(heard.tags):
            self._set(heard, MemberTagsUpdated, previous_tags=current.tags)
        else:
            self._view[node_id] = heard

    def _set(self, member: Member, event: type[ClusterEvent], *, state: MemberState | None = None, **extra: Any) -> None:
        if state is not None:
            member = attrs.evolve(member, state=state)
        self._view[member.id] = member
        self._events.append(event(at=self._now, member=member, **extra))  # type: ignore[call-arg]


@hookimpl
def rpcnet_register_membership(register: Register) -> None:
    register(StaticMembership.name, StaticMembership)
