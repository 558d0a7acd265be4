"""The SWIM + Lifeguard membership core (sans-IO).

What runs, per node (all deadlines come out of :meth:`SwimMembership.get_timer`):

- **Probing** (SWIM failure detection). Every probe interval (scaled by the
  local health score) the next member of a shuffled round-robin list gets a
  ping. No ack within the probe timeout: ``indirect_checks`` other members
  are asked to ping it (ping-req) and relay the ack, or a nack when they got
  no answer; at the same time a ping goes over the reliable channel (the
  driver's stream, like memberlist's TCP fallback), which loss cannot
  defeat. Still nothing by the end of the probe interval: the member is
  suspected. A ping to a member already suspect carries the suspicion (the
  Lifeguard buddy system), so it learns it must refute.
- **Monitoring** (the failure detector). Each member heartbeats the
  ``monitors`` members that follow it on a ring ordered by a hash of the ids;
  they feed the detector. When a monitored member's phi crosses the
  threshold, the monitor confirms with an out-of-turn probe (the same ping,
  ping-req and stream ping) before suspecting, so one lossy link never
  accuses anybody. A
  member's monitors suspecting it independently are the confirmations that
  shorten its suspicion timer.
- **Suspicion** (Lifeguard). A suspicion expires after a timeout that falls
  from ``max`` to ``min`` as independent confirmations arrive; then the
  member is declared failed. The member refutes by raising its incarnation.
  A prober whose helpers all nacked counts its suspicion from the moment the
  unanswered ping left (the silence began then); one in doubt about its own
  health counts from the verdict.
- **Dissemination**. Every update (alive, suspect, failed/left) is queued and
  piggybacked on every datagram, plus a gossip round every gossip interval
  to ``gossip_nodes`` random members; each update goes out ``retransmit_mult
  * ceil(log10(N + 1))`` times.
- **Push-pull**. A full-state sync with a random member every push-pull
  interval (scaled up past 32 members) and with the seeds when joining; with
  a random failed member every reconnect interval (heals partitions).
- **Partition policy**. After every change the policy says whether this node
  is on the minority side; the transitions are events.

Only this node raises its own incarnation: on start-up nothing, on a
refutation, a tag change or a leave.
"""

from __future__ import annotations

import collections
import hashlib
import heapq
import random
import zlib
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import attrs

from rpcnet.deprecation import IndexedCounters
from rpcnet.events import (
    ClusterEvent,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberRecovered,
    MemberSuspect,
    MemberTagsUpdated,
    PartitionDetected,
    PartitionHealed,
)
from rpcnet.failure_detector import FailureDetector
from rpcnet.membership import Address, Member, Membership, MemberState

from . import codec
from .broadcast import BroadcastQueue
from .formulas import (
    push_pull_interval,
    retransmit_limit,
    suspicion_confirmations_wanted,
    suspicion_timeout,
)
from .lifeguard import Awareness, Suspicion
from .messages import (
    Ack,
    Alive,
    Dead,
    DirectMessage,
    Heartbeat,
    MemberRecord,
    Nack,
    Ping,
    PingReq,
    StreamAck,
    StreamPing,
    Suspect,
    SyncMessage,
    Update,
)
from .options import SwimOptions
from .partition import make_partition_policy
from .precedence import Verdict, judge, refuted_incarnation, transition_event, update_state

__all__ = ["SwimMembership", "SwimStats"]


@attrs.frozen(kw_only=True)
class SwimStats(IndexedCounters):
    """What a SWIM core has counted, as of one moment."""

    #: Datagrams or requests that did not decode (counted and dropped).
    decode_errors: int = 0
    #: Suspicions of this node it refuted by raising its incarnation.
    refutes: int = 0
    probes: int = 0
    probe_failures: int = 0
    #: Out-of-turn probes a monitor sent to confirm a high phi before suspecting.
    confirm_probes: int = 0
    #: Probes answered over the reliable channel after the datagram path failed.
    stream_acks: int = 0
    #: Acks, nacks and stream acks dropped because their sender was neither
    #: the probed member nor a member asked to relay (forged or misrouted).
    forged_acks: int = 0
    #: Ping-reqs refused: the requester is not a live member, or the target
    #: is not a member this node knows.
    refused_ping_reqs: int = 0
    #: Direct notices sent to a member heard from while held failed or left,
    #: so that it refutes and rejoins at once (reclaim after a restart).
    gone_notices: int = 0
    #: Failed or left members contacted again with a full-state sync.
    recontacts: int = 0
    #: Failed or left members forgotten because another member now holds their address.
    reclaimed_addresses: int = 0
    #: Full-state syncs with a member whose ack said it did not know us.
    stranger_syncs: int = 0

_EVENT_TYPES: dict[str, type[ClusterEvent]] = {
    "joined": MemberJoined,
    "suspect": MemberSuspect,
    "failed": MemberFailed,
    "recovered": MemberRecovered,
    "left": MemberLeft,
}

_LIVE = (MemberState.ALIVE, MemberState.SUSPECT)
_GONE = (MemberState.FAILED, MemberState.LEFT)

# Timer keys that are not per-member or per-sequence-number.
_PROBE, _GOSSIP, _HEARTBEAT, _PUSH_PULL, _RECONNECT = "probe", "gossip", "heartbeat", "push-pull", "reconnect"
_PARTITION = "partition"
_REJOINED = "rejoined"


class _Node:
    __slots__ = ("id", "address", "tags", "incarnation", "state", "since")

    def __init__(self, node_id: str, address: Address, tags: dict[str, str], incarnation: int, state: MemberState, since: float) -> None:
        self.id = node_id
        self.address = address
        self.tags = tags
        self.incarnation = incarnation
        self.state = state
        self.since = since

    def snapshot(self) -> Member:
        return Member(id=self.id, address=self.address, tags=self.tags, incarnation=self.incarnation, state=self.state)


class _Probe:
    """A probe this node started: direct ping, then indirect, then verdict."""

    __slots__ = ("target", "incarnation", "sent", "indirect", "nacks", "expected_nacks", "end", "helpers")

    def __init__(self, target: str, incarnation: int, sent: float, end: float) -> None:
        self.target = target
        #: The target's incarnation when the probe began: a verdict is only
        #: about that life of it.
        self.incarnation = incarnation
        self.sent = sent
        self.indirect = False
        self.nacks = 0
        self.expected_nacks = 0
        self.end = end
        #: Members asked to relay (ping-req): their acks and nacks count too.
        self.helpers: frozenset[str] = frozenset()


class _Relay:
    """A ping this node sends on behalf of a ping-req."""

    __slots__ = ("seq", "requester", "target", "nack", "expires")

    def __init__(self, seq: int, requester: Address, target: str, nack: bool, expires: float) -> None:
        self.seq = seq
        #: The requester's address as this node knows it (never the packet's source).
        self.requester = requester
        #: Only an ack from this member is relayed.
        self.target = target
        self.nack = nack
        self.expires = expires

#: A relay nacks after this fraction of the probe timeout, so that the nack
#: reaches the prober before its verdict (ping-req leaves at one probe
#: timeout, the verdict falls at two).
NACK_FRACTION = 0.8


def _first_seq(rng: random.Random) -> int:
    """Where this life's sequence numbers start: unpredictable, so a restarted
    node does not reuse the numbers of its previous life (whose acks may
    still be in flight) and nobody can guess them.

    Derived from the rng's state without drawing from it, so a seeded
    simulation takes the same random path as before; within [2**16, 2**31),
    so every sequence number encodes in the same five bytes.
    """
    digest = hashlib.blake2b(repr(rng.getstate()).encode(), digest_size=4).digest()
    return (1 << 16) + int.from_bytes(digest, "big") % ((1 << 31) - (1 << 16))


def _ring_key(node_id: str) -> tuple[int, str]:
    # crc32, not hash(): the ring must be the same in every process.
    return (zlib.crc32(node_id.encode()), node_id)


class SwimMembership(Membership):
    """``swim``: SWIM with Lifeguard, memberlist's semantics, sans-IO."""

    name: ClassVar[str] = "swim"
    Options: ClassVar[type] = SwimOptions

    def __init__(
        self,
        *,
        node_id: str,
        address: Address,
        tags: Mapping[str, str] | None = None,
        options: SwimOptions | None = None,
        failure_detector: FailureDetector | None = None,
        rng: random.Random | None = None,
        datagram_budget: int | None = None,
    ) -> None:
        super().__init__(
            node_id=node_id,
            address=address,
            tags=tags,
            options=options if options is not None else SwimOptions(),
            failure_detector=failure_detector,
            rng=rng,
            datagram_budget=datagram_budget,
        )
        opts: SwimOptions = self.options
        self._opts = opts
        #: Bytes of one datagram: the packet_budget option, capped by what the driver carries.
        self._budget = opts.packet_budget if datagram_budget is None else min(opts.packet_budget, datagram_budget)
        self._self = _Node(node_id, self.address, dict(tags or {}), 0, MemberState.ALIVE, 0.0)
        self._nodes: dict[str, _Node] = {node_id: self._self}
        self._policy = make_partition_policy(opts.partition_policy, opts.quorum_size)
        self._awareness = Awareness(opts.awareness_max_multiplier)
        self._broadcasts = BroadcastQueue()
        self._suspicions: dict[str, Suspicion] = {}
        self._waiters: dict[int, _Probe | _Relay] = {}
        self._probing: dict[str, int] = {}
        self._probe_order: list[str] = []
        self._probe_index = 0
        self._seq = _first_seq(self.rng)
        self._timers: list[tuple[float, int, Any]] = []
        self._deadlines: dict[Any, float] = {}
        self._timer_order = 0
        self._out: list[tuple[Address, bytes]] = []
        self._syncs: list[tuple[Address, bytes]] = []
        self._events: list[ClusterEvent] = []
        self._started = False
        self._leaving = False
        self._changed = False
        self._in_minority = False
        self._ring: list[str] | None = None
        self._watched: list[str] = []
        self._last_beat: dict[str, float] = {}
        self._confirming_since: dict[str, float] = {}
        self._live_count = 1
        self._counts = collections.Counter[str]()
        #: Member id -> when it was last told it is held failed or left.
        self._told_gone: dict[str, float] = {}
        #: Member id -> when a reconnect round last synced with it.
        self._recontacted: dict[str, float] = {}
        #: Member id -> when we last synced with it because it did not know us.
        self._synced_strangers: dict[str, float] = {}

    # ------------------------------------------------------------------
    # lifecycle

    @property
    def stats(self) -> SwimStats:
        """Counters a driver can export as metrics; a frozen snapshot."""
        return SwimStats(**self._counts)

    def start(self, now: float) -> None:
        if self._started:
            return
        self._started = True
        opts = self._opts
        self._self.since = now
        rng = self.rng
        # Random phases keep members from probing and gossiping in lock step.
        self._schedule(_PROBE, now + rng.uniform(0, opts.probe_interval))
        self._schedule(_GOSSIP, now + rng.uniform(0, opts.gossip_interval))
        if opts.monitors and self.failure_detector is not None:
            self._schedule(_HEARTBEAT, now + rng.uniform(0, opts.heartbeat_interval))
        if opts.push_pull_interval:
            self._schedule(_PUSH_PULL, now + opts.push_pull_interval * (1 + rng.random()))
        if opts.reconnect_interval:
            self._schedule(_RECONNECT, now + opts.reconnect_interval * (1 + rng.random()))
        self._announce_self()

    def join(self, seeds: Iterable[Address], now: float) -> None:
        for seed in seeds:
            seed = (str(seed[0]), int(seed[1]))
            if seed != self.address:
                self._queue_sync(seed, join=True)

    def leave(self, now: float) -> None:
        if self._leaving:
            return
        me = self._self
        me.incarnation += 1
        me.state = MemberState.LEFT
        me.since = now
        self._leaving = True
        self._cancel(_PROBE)
        self._cancel(_HEARTBEAT)
        self._cancel(_PUSH_PULL)
        self._cancel(_RECONNECT)
        self._broadcast(Dead(node=me.id, incarnation=me.incarnation, source=me.id))

    def leave_done(self) -> bool:
        if not self._leaving:
            return False
        if self._self.id not in self._broadcasts:
            return True
        return not any(n.state in _LIVE for n in self._nodes.values() if n is not self._self)

    def set_tags(self, tags: Mapping[str, str], now: float) -> None:
        new = {str(k): str(v) for k, v in tags.items()}
        if new == self._self.tags:
            return
        self._self.tags = new
        self._self.incarnation += 1
        self._announce_self()

    # ------------------------------------------------------------------
    # input

    def receive(self, source: Address, data: bytes, now: float) -> None:
        try:
            packet = codec.decode_packet(data)
        except codec.SwimDecodeError:
            self._counts["decode_errors"] += 1
            return
        me = self._self
        stale_news = False
        for update in packet.updates:
            if update.node == me.id and isinstance(update, Dead) and update.incarnation < me.incarnation:
                stale_news = True
            self._apply(update, now)
        if stale_news and not self._leaving:
            # The sender still holds an older life of ours failed or left (it
            # missed our refutation): tell it directly that we are back.
            self._send(source, None, self._alive_update())
        self._tell_if_gone(packet.sender, source, now)
        message = packet.message
        if message is not None:
            self._handle_message(packet.sender, source, message, now)
        self._after_input(now)

    def handle_timer(self, now: float) -> None:
        timers = self._timers
        deadlines = self._deadlines
        while timers and timers[0][0] <= now:
            deadline, _, key = heapq.heappop(timers)
            if deadlines.get(key) != deadline:
                continue
            del deadlines[key]
            self._fire(key, now)
        self._after_input(now)

    def handle_request(self, source: Address | None, data: bytes, now: float) -> bytes:
        try:
            message = codec.decode_sync(data)
        except codec.SwimDecodeError:
            self._counts["decode_errors"] += 1
            raise
        if isinstance(message, StreamPing):
            if message.target != self._self.id:
                raise codec.SwimDecodeError(f"stream ping for {message.target!r} reached {self._self.id!r}")
            return codec.encode_sync(StreamAck(sender=self._self.id, seq=message.seq))
        if not isinstance(message, SyncMessage) or message.response:
            raise codec.SwimDecodeError("expected a sync request or a stream ping")
        self._merge(message, now)
        reply = codec.encode_sync(self._sync_message(response=True))
        self._after_input(now)
        return reply

    def handle_response(self, destination: Address, data: bytes, now: float) -> None:
        try:
            message = codec.decode_sync(data)
        except codec.SwimDecodeError:
            self._counts["decode_errors"] += 1
            return
        if isinstance(message, StreamAck):
            waiter = self._waiters.get(message.seq)
            if isinstance(waiter, _Probe) and message.sender != waiter.target:
                self._counts["forged_acks"] += 1
            elif isinstance(waiter, _Probe):
                # Reached over the stream only: neither a health gain nor a loss.
                self._counts["stream_acks"] += 1
                self._finish_probe(message.seq, waiter)
        elif isinstance(message, SyncMessage):
            self._merge(message, now)
        self._after_input(now)

    def request_failed(self, destination: Address, now: float) -> None:
        # Nothing to undo: the next push-pull or reconnect round tries again.
        return

    # ------------------------------------------------------------------
    # output

    def get_timer(self) -> float | None:
        timers = self._timers
        deadlines = self._deadlines
        while timers:
            deadline, _, key = timers[0]
            if deadlines.get(key) == deadline:
                return deadline
            heapq.heappop(timers)
        return None

    def datagrams_to_send(self) -> list[tuple[Address, bytes]]:
        out, self._out = self._out, []
        return out

    def requests_to_send(self) -> list[tuple[Address, bytes]]:
        out, self._syncs = self._syncs, []
        return out

    def events_to_deliver(self) -> list[ClusterEvent]:
        out, self._events = self._events, []
        return out

    # ------------------------------------------------------------------
    # view

    def members(self) -> list[Member]:
        return [self._nodes[k].snapshot() for k in sorted(self._nodes)]

    def member(self, node_id: str) -> Member | None:
        node = self._nodes.get(node_id)
        return node.snapshot() if node is not None else None

    @property
    def local_member(self) -> Member:
        return self._self.snapshot()

    @property
    def health_score(self) -> int:
        """Lifeguard's local health score (0 healthy)."""
        return self._awareness.score

    @property
    def in_minority(self) -> bool:
        """The partition policy's current verdict for this node."""
        return self._in_minority

    def live_count(self) -> int:
        """Members alive or suspect in the local view, this node included."""
        return self._live_count

    # ------------------------------------------------------------------
    # timers

    def _schedule(self, key: Any, deadline: float) -> None:
        self._deadlines[key] = deadline
        self._timer_order += 1
        heapq.heappush(self._timers, (deadline, self._timer_order, key))

    def _cancel(self, key: Any) -> None:
        self._deadlines.pop(key, None)

    def _fire(self, key: Any, now: float) -> None:
        if type(key) is int:
            self._waiter_timeout(key, now)
        elif type(key) is tuple:
            self._suspicion_expired(key[1], now)
        elif key == _GOSSIP:
            self._gossip(now)
        elif key == _PROBE:
            self._probe(now)
        elif key == _HEARTBEAT:
            self._heartbeat(now)
        elif key == _PUSH_PULL:
            self._push_pull(now)
        elif key == _RECONNECT:
            self._reconnect(now)
        elif key == _PARTITION:
            self._partition_hold_over(now)
        elif key == _REJOINED:
            self._tell_everyone_alive()

    # ------------------------------------------------------------------
    # sending

    def _send(self, address: Address, message: DirectMessage | None, extra: bytes = b"") -> bool:
        header = codec.encode_header(self._self.id, message)
        budget = self._budget - len(header) - len(extra)
        updates = self._broadcasts.take(budget, self._retransmit_limit())
        if message is None and not updates and not extra:
            return False
        self._out.append((address, header + extra + b"".join(updates)))
        return True

    def _retransmit_limit(self) -> int:
        return retransmit_limit(self._opts.retransmit_mult, self._live_count)

    def _broadcast(self, update: Update) -> None:
        self._broadcasts.put(update.node, codec.encode_update(update))

    def _repeat_suspicions(self) -> None:
        """Tell each member still suspected, directly, once its suspicion has
        used up its gossip retransmits. The suspect refutes only once it hears
        of it; copies sent while this node's own packets were being lost (an
        isolated node suspects everyone) would otherwise leave the timers to
        expire into false failures. Only the suspect is told, so no other
        member starts suspecting it on this account; the original source is
        kept."""
        for node_id, suspicion in self._suspicions.items():
            if node_id in self._broadcasts:
                continue
            node = self._nodes.get(node_id)
            if node is None or node.state is not MemberState.SUSPECT:
                continue
            source = next(iter(suspicion.sources))
            update = codec.encode_update(Suspect(node=node_id, incarnation=node.incarnation, source=source))
            self._send(node.address, None, update)

    def _tell_everyone_alive(self) -> None:
        """Send our alive message straight to every member, once.

        Members that declared us failed or left no longer probe us, and with
        a few members the piggybacked copies (``retransmit_limit``) can miss
        one of them until the next push-pull, 30 s later on a LAN. A rejoin
        is rare and this costs one datagram per member.
        """
        me = self._self
        alive = self._alive_update()
        for node in self._nodes.values():
            if node is not me and node.state is not MemberState.LEFT:
                self._send(node.address, None, alive)

    def _alive_update(self) -> bytes:
        me = self._self
        return codec.encode_update(Alive(node=me.id, incarnation=me.incarnation, address=me.address, tags=dict(me.tags)))

    def _announce_self(self) -> None:
        me = self._self
        self._broadcast(Alive(node=me.id, incarnation=me.incarnation, address=me.address, tags=dict(me.tags)))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # ------------------------------------------------------------------
    # probing

    def _probe(self, now: float) -> None:
        opts = self._opts
        self._schedule(_PROBE, now + self._awareness.scale(opts.probe_interval))
        self._repeat_suspicions()
        target = self._next_probe_target(now)
        if target is not None and target.id not in self._probing:
            self._start_probe(target, now)

    def _next_probe_target(self, now: float) -> _Node | None:
        checked = 0
        while checked <= len(self._probe_order):
            if self._probe_index >= len(self._probe_order):
                self._reset_probe_order(now)
                if not self._probe_order:
                    return None
            node_id = self._probe_order[self._probe_index]
            self._probe_index += 1
            checked += 1
            node = self._nodes.get(node_id)
            if node is not None and node.state in _LIVE and node is not self._self:
                return node
        return None

    def _add_to_probe_order(self, node_id: str) -> None:
        order = self._probe_order
        if node_id in order[self._probe_index :]:
            return
        if node_id in order[: self._probe_index]:
            # Move it rather than add it twice: a pass stays one probe per member.
            order.remove(node_id)
            self._probe_index -= 1
        order.insert(self.rng.randint(self._probe_index, len(order)), node_id)

    def _reset_probe_order(self, now: float) -> None:
        self._reap(now)
        order = [k for k, n in self._nodes.items() if n is not self._self and n.state in _LIVE]
        order.sort()
        self.rng.shuffle(order)
        self._probe_order = order
        self._probe_index = 0

    def _reap(self, now: float) -> None:
        opts = self._opts
        for node_id, node in list(self._nodes.items()):
            if node is self._self:
                continue
            if (node.state is MemberState.FAILED and now - node.since > opts.failed_member_retention) or (
                node.state is MemberState.LEFT and now - node.since > opts.left_member_retention
            ):
                self._forget(node_id)

    def _forget(self, node_id: str) -> None:
        del self._nodes[node_id]
        self._told_gone.pop(node_id, None)
        self._recontacted.pop(node_id, None)
        self._synced_strangers.pop(node_id, None)
        self._end_suspicion(node_id)
        self._changed = True

    def _start_probe(self, target: _Node, now: float) -> None:
        seq = self._next_seq()
        self._counts["probes"] += 1
        self._waiters[seq] = _Probe(target.id, target.incarnation, now, now + self._awareness.scale(self._opts.probe_interval))
        self._probing[target.id] = seq
        extra = b""
        if target.state is MemberState.SUSPECT:
            # Buddy system: tell the suspect directly, so it can refute at once.
            extra = codec.encode_update(Suspect(node=target.id, incarnation=target.incarnation, source=self._self.id))
        self._send(target.address, Ping(seq=seq, target=target.id), extra)
        self._schedule(seq, now + self._opts.probe_timeout)

    def _waiter_timeout(self, seq: int, now: float) -> None:
        waiter = self._waiters.get(seq)
        if waiter is None:
            return
        if isinstance(waiter, _Relay):
            if waiter.nack:
                waiter.nack = False
                self._send(waiter.requester, Nack(seq=waiter.seq))
                if waiter.expires > now:
                    # A late ack is still worth relaying until the probe timeout.
                    self._schedule(seq, waiter.expires)
                    return
            del self._waiters[seq]
            return
        target = self._nodes.get(waiter.target)
        if target is None or target.state not in _LIVE or target.incarnation != waiter.incarnation:
            # Gone, or no longer the life this probe was about (it refuted,
            # or failed and came back): no verdict from this probe.
            self._finish_probe(seq, waiter)
            return
        if not waiter.indirect:
            waiter.indirect = True
            helpers = self._random_nodes(self._opts.indirect_checks, exclude=(target.id,), states=(MemberState.ALIVE,))
            waiter.helpers = frozenset(helper.id for helper in helpers)
            for helper in helpers:
                self._send(helper.address, PingReq(seq=seq, target=target.id, target_address=target.address, nack=True))
            waiter.expected_nacks = len(helpers)
            if self._opts.stream_fallback:
                ping = StreamPing(sender=self._self.id, seq=seq, target=target.id)
                self._syncs.append((target.address, codec.encode_sync(ping)))
            self._schedule(seq, max(waiter.end, now))
            return
        # No ack, direct or relayed, within the probe interval.
        self._finish_probe(seq, waiter)
        self._counts["probe_failures"] += 1
        if waiter.expected_nacks:
            # Helpers that did not even nack point at our own network (Lifeguard).
            self._awareness.apply_delta(waiter.expected_nacks - waiter.nacks)
        else:
            self._awareness.apply_delta(1)
        # A healthy node (every helper nacked, so the fault is the target's)
        # counts the suspicion from when the unanswered ping left: the silence
        # began then. A node in doubt about its own health gets no head start.
        since = waiter.sent if self._awareness.score == 0 else None
        self._apply(Suspect(node=target.id, incarnation=target.incarnation, source=self._self.id), now, since=since)

    def _finish_probe(self, seq: int, waiter: _Probe) -> None:
        self._waiters.pop(seq, None)
        self._cancel(seq)
        if self._probing.get(waiter.target) == seq:
            del self._probing[waiter.target]

    def _random_nodes(self, k: int, *, exclude: tuple[str, ...], states: tuple[MemberState, ...]) -> list[_Node]:
        me = self._self
        candidates = [n for n in self._nodes.values() if n.state in states and n is not me and n.id not in exclude]
        if len(candidates) <= k:
            return candidates
        return self.rng.sample(candidates, k)

    # ------------------------------------------------------------------
    # messages

    def _handle_message(self, sender: str, source: Address, message: DirectMessage, now: float) -> None:
        if isinstance(message, Ping):
            if message.target == self._self.id:
                # A pinger we do not know knows us: we restarted with nobody
                # to join through, or missed its join. The flag asks it to sync.
                self._send(source, Ack(seq=message.seq, unknown_sender=sender not in self._nodes))
        elif isinstance(message, Ack):
            waiter = self._waiters.get(message.seq)
            if waiter is None:
                return
            if isinstance(waiter, _Relay):
                if sender != waiter.target:
                    self._counts["forged_acks"] += 1
                    return
                del self._waiters[message.seq]
                self._cancel(message.seq)
                self._send(waiter.requester, Ack(seq=waiter.seq))
            else:
                # Acks come from the probed member, or relayed by a helper
                # this probe asked; anything else is forged or stray.
                if sender != waiter.target and sender not in waiter.helpers:
                    self._counts["forged_acks"] += 1
                    return
                self._finish_probe(message.seq, waiter)
                self._awareness.apply_delta(-1)
                if message.unknown_sender and sender == waiter.target:
                    self._sync_with_stranger(sender, now)
        elif isinstance(message, Heartbeat):
            if self.failure_detector is not None and sender in self._watched:
                self.failure_detector.heartbeat(sender, now)
                self._last_beat[sender] = now
        elif isinstance(message, PingReq):
            # Only for a live member, about a member we know, at the address
            # we know: a replayed or forged ping-req cannot aim our pings or
            # answers at an address of its choosing.
            requester = self._nodes.get(sender)
            target = self._nodes.get(message.target)
            if requester is None or requester is self._self or requester.state not in _LIVE or target is None or target is self._self:
                self._counts["refused_ping_reqs"] += 1
                return
            seq = self._next_seq()
            timeout = self._opts.probe_timeout
            self._waiters[seq] = _Relay(message.seq, requester.address, target.id, message.nack, now + timeout)
            self._send(target.address, Ping(seq=seq, target=target.id))
            self._schedule(seq, now + (timeout * NACK_FRACTION if message.nack else timeout))
        elif isinstance(message, Nack):
            waiter = self._waiters.get(message.seq)
            if isinstance(waiter, _Probe):
                if sender not in waiter.helpers:
                    self._counts["forged_acks"] += 1
                    return
                waiter.nacks += 1

    # ------------------------------------------------------------------
    # the precedence rules, applied

    def _apply(self, update: Update, now: float, since: float | None = None) -> None:
        me = self._self
        node = self._nodes.get(update.node)
        claimed = update_state(update)
        if node is me:
            same = True
            if isinstance(update, Alive):
                same = update.address == me.address and update.tags == me.tags
            verdict = judge(
                MemberState.ALIVE,
                me.incarnation,
                claimed,
                update.incarnation,
                about_self=True,
                leaving=self._leaving,
                same_alive_content=same,
            )
            if verdict is Verdict.REFUTE:
                me.incarnation = refuted_incarnation(me.incarnation, update.incarnation)
                self._counts["refutes"] += 1
                if claimed is MemberState.SUSPECT:
                    # Being suspected hints that we are slow (Lifeguard). Being
                    # declared failed or left, or an older alive claim, means
                    # we were away (restarted): no sign of our health now.
                    self._awareness.apply_delta(1)
                self._announce_self()
                if claimed is MemberState.FAILED or claimed is MemberState.LEFT:
                    # After the input that told us is merged, so every member
                    # it lists is known by then.
                    self._schedule(_REJOINED, now)
            return
        verdict = judge(
            node.state if node is not None else None,
            node.incarnation if node is not None else 0,
            claimed,
            update.incarnation,
        )
        if verdict is Verdict.IGNORE:
            if node is not None and isinstance(update, Alive):
                # An older life of a member we hold failed or left: it came
                # back (a restart starts at incarnation 0). Tell it, so it
                # refutes with a higher incarnation and is re-admitted at once.
                self._tell_if_gone(node.id, update.address, now)
            return
        if verdict is Verdict.CONFIRM:
            suspicion = self._suspicions.get(update.node)
            if suspicion is not None and suspicion.confirm(update.source):  # type: ignore[union-attr]
                self._schedule(("suspect", update.node), suspicion.deadline)
                self._broadcast(update)
            return
        previous = node.state if node is not None else None
        previous_tags = node.tags if node is not None else {}
        if node is None:
            assert isinstance(update, Alive)
            node = _Node(update.node, update.address, dict(update.tags), update.incarnation, MemberState.ALIVE, now)
            self._reclaim_address(node, now)
            self._nodes[node.id] = node
            self._add_to_probe_order(node.id)
        elif previous not in _LIVE and claimed in _LIVE:
            # Back from failed or left: probe it in this pass, not only after the next shuffle.
            self._add_to_probe_order(node.id)
        node.incarnation = update.incarnation
        if isinstance(update, Alive):
            node.address = update.address
            node.tags = dict(update.tags)
        if claimed is MemberState.SUSPECT:
            self._start_suspicion(node, update, now if since is None else since)
        else:
            self._end_suspicion(node.id)
        if node.state is not claimed:
            node.state = claimed
            node.since = now
        self._broadcast(update)
        kind = transition_event(previous, claimed)
        if kind is not None:
            self._changed = True
            self._events.append(_EVENT_TYPES[kind](at=now, member=node.snapshot()))
        elif previous is MemberState.ALIVE and claimed is MemberState.ALIVE and node.tags != previous_tags:
            self._events.append(MemberTagsUpdated(at=now, member=node.snapshot(), previous_tags=previous_tags))
        if previous is MemberState.SUSPECT and claimed is MemberState.ALIVE and node.tags != previous_tags:
            self._events.append(MemberTagsUpdated(at=now, member=node.snapshot(), previous_tags=previous_tags))

    def _start_suspicion(self, node: _Node, update: Update, start: float) -> None:
        existing = self._suspicions.get(node.id)
        if existing is not None:
            # Suspected again at a higher incarnation: same timer, one more voice.
            existing.incarnation = update.incarnation
            existing.confirm(update.source)  # type: ignore[union-attr]
            self._schedule(("suspect", node.id), existing.deadline)
            return
        opts = self._opts
        n = self._live_count
        minimum = suspicion_timeout(opts.suspicion_mult, n, opts.probe_interval)
        suspicion = Suspicion(
            source=update.source,  # type: ignore[union-attr]
            incarnation=update.incarnation,
            k=suspicion_confirmations_wanted(opts.suspicion_mult, n),
            minimum=minimum,
            maximum=minimum * opts.suspicion_max_timeout_mult,
            start=start,
        )
        self._suspicions[node.id] = suspicion
        self._schedule(("suspect", node.id), suspicion.deadline)

    def _end_suspicion(self, node_id: str) -> None:
        if self._suspicions.pop(node_id, None) is not None:
            self._cancel(("suspect", node_id))

    def _suspicion_expired(self, node_id: str, now: float) -> None:
        suspicion = self._suspicions.pop(node_id, None)
        node = self._nodes.get(node_id)
        if suspicion is None or node is None or node.state is not MemberState.SUSPECT:
            return
        self._apply(Dead(node=node_id, incarnation=node.incarnation, source=self._self.id), now)

    # ------------------------------------------------------------------
    # dissemination

    def _gossip(self, now: float) -> None:
        opts = self._opts
        self._schedule(_GOSSIP, now + opts.gossip_interval)
        self._check_monitored(now)
        if not len(self._broadcasts):
            return
        me = self._self
        dead_cutoff = now - opts.gossip_to_the_dead_time
        candidates = [
            n
            for n in self._nodes.values()
            if n is not me and (n.state in _LIVE or (n.state is MemberState.FAILED and n.since >= dead_cutoff))
        ]
        if len(candidates) > opts.gossip_nodes:
            candidates = self.rng.sample(candidates, opts.gossip_nodes)
        for node in candidates:
            if not self._send(node.address, None):
                break

    # ------------------------------------------------------------------
    # monitoring through the failure detector

    def _heartbeat(self, now: float) -> None:
        self._schedule(_HEARTBEAT, now + self._opts.heartbeat_interval)
        for node_id in self._monitors_of_self():
            self._send(self._nodes[node_id].address, Heartbeat())

    def _ring_positions(self) -> list[str]:
        if self._ring is None:
            self._ring = sorted((k for k, n in self._nodes.items() if n.state in _LIVE), key=_ring_key)
            self._refresh_watched()
        return self._ring

    def _monitors_of_self(self) -> list[str]:
        ring = self._ring_positions()
        count = min(self._opts.monitors, len(ring) - 1)
        if count <= 0:
            return []
        index = ring.index(self._self.id)
        return [ring[(index + i) % len(ring)] for i in range(1, count + 1)]

    def _refresh_watched(self) -> None:
        ring = self._ring or []
        count = min(self._opts.monitors, len(ring) - 1)
        watched: list[str] = []
        if count > 0 and self._self.id in ring:
            index = ring.index(self._self.id)
            watched = [ring[(index - i) % len(ring)] for i in range(1, count + 1)]
        detector = self.failure_detector
        for node_id in self._watched:
            if node_id not in watched:
                if detector is not None:
                    detector.remove(node_id)
                self._last_beat.pop(node_id, None)
                self._confirming_since.pop(node_id, None)
        self._watched = watched

    def _check_monitored(self, now: float) -> None:
        detector = self.failure_detector
        if detector is None or not self._opts.monitors or self._leaving:
            return
        self._ring_positions()
        for node_id in self._watched:
            node = self._nodes.get(node_id)
            # A suspect is probed too: a monitor that cannot reach it either
            # confirms the suspicion, which shortens it (Lifeguard).
            if node is None or node.state not in _LIVE or node_id in self._probing:
                continue
            last = self._last_beat.get(node_id)
            if last is None or self._confirming_since.get(node_id, -1.0) >= last:
                continue  # never heard, or already confirmed during this silence
            if not detector.is_available(node_id, now):
                self._confirming_since[node_id] = now
                self._counts["confirm_probes"] += 1
                self._start_probe(node, now)

    # ------------------------------------------------------------------
    # push-pull

    def _sync_message(self, *, response: bool, join: bool = False) -> SyncMessage:
        records = tuple(
            MemberRecord(node=n.id, address=n.address, tags=n.tags, incarnation=n.incarnation, state=n.state)
            for n in self._nodes.values()
        )
        return SyncMessage(sender=self._self.id, response=response, join=join, members=records)

    def _queue_sync(self, address: Address, *, join: bool = False) -> None:
        self._syncs.append((address, codec.encode_sync(self._sync_message(response=False, join=join))))

    def _merge(self, message: SyncMessage, now: float) -> None:
        me = self._self
        for record in message.members:
            if record.node == me.id and record.state in _GONE and record.incarnation < me.incarnation and not self._leaving:
                # We refuted already (a direct notice came first), but this
                # peer's view, which we just merged, may name members that
                # have not heard: announce ourselves to everyone again.
                self._schedule(_REJOINED, now)
            if record.state is MemberState.ALIVE:
                self._apply(Alive(node=record.node, incarnation=record.incarnation, address=record.address, tags=record.tags), now)
            elif record.state is MemberState.LEFT:
                self._apply(Dead(node=record.node, incarnation=record.incarnation, source=record.node), now)
            elif record.node == self._self.id and record.state is MemberState.FAILED:
                self._apply(Dead(node=record.node, incarnation=record.incarnation, source=message.sender), now)
            else:
                # A remote "failed" is only a suspicion here: we may still reach it.
                self._apply(Suspect(node=record.node, incarnation=record.incarnation, source=message.sender), now)

    def _push_pull(self, now: float) -> None:
        self._schedule(_PUSH_PULL, now + push_pull_interval(self._opts.push_pull_interval, self._live_count))
        peers = self._random_nodes(1, exclude=(), states=(MemberState.ALIVE,))
        if peers:
            self._queue_sync(peers[0].address)

    def _reconnect(self, now: float) -> None:
        """Sync with a member that failed or left within ``recontact_time``.

        Heals partitions, and finds a member that restarted with nobody to
        join through: our sync tells it it is held failed or left, it
        refutes and is back. The member contacted least recently goes first,
        so every one of them is tried in turn, none left to chance; with
        probability ``gone / live`` per round, so a dead member draws about
        one sync per round from the whole cluster, whatever its size.
        """
        opts = self._opts
        self._schedule(_RECONNECT, now + opts.reconnect_interval)
        horizon = now - opts.recontact_time
        gone = [n for n in self._nodes.values() if n.state in _GONE and n.since >= horizon]
        if gone and self.rng.random() < len(gone) / self._live_count:
            target = min(gone, key=lambda n: (self._recontacted.get(n.id, float("-inf")), n.id))
            self._recontacted[target.id] = now
            self._counts["recontacts"] += 1
            self._queue_sync(target.address)

    def _sync_with_stranger(self, node_id: str, now: float) -> None:
        """A member we probed does not know us (it restarted with no seeds and
        nobody noticed): a full-state sync gives it our view, at most once per
        probe interval."""
        node = self._nodes.get(node_id)
        if node is None:
            return
        last = self._synced_strangers.get(node_id)
        if last is not None and now - last < self._opts.probe_interval:
            return
        self._synced_strangers[node_id] = now
        self._counts["stranger_syncs"] += 1
        self._queue_sync(node.address)

    def _tell_if_gone(self, node_id: str, address: Address, now: float) -> None:
        """Tell a member we hold failed or left, heard from at ``address``, what we hold.

        It is running again (restarted, or resumed after a pause): the notice
        makes it refute with a higher incarnation, which re-admits it
        everywhere. At most once per probe interval per member.
        """
        node = self._nodes.get(node_id)
        if node is None or node is self._self or node.state not in _GONE or self._leaving:
            return
        last = self._told_gone.get(node_id)
        if last is not None and now - last < self._opts.probe_interval:
            return
        self._told_gone[node_id] = now
        self._counts["gone_notices"] += 1
        source = node_id if node.state is MemberState.LEFT else self._self.id
        self._send(address, None, codec.encode_update(Dead(node=node_id, incarnation=node.incarnation, source=source)))

    def _reclaim_address(self, newcomer: _Node, now: float) -> None:
        """A new member at the address of one that left, or failed at least
        ``dead_node_reclaim_time`` ago, replaces it (memberlist's reclaim)."""
        reclaim = self._opts.dead_node_reclaim_time
        for node_id, node in list(self._nodes.items()):
            if node is self._self or node.address != newcomer.address:
                continue
            if node.state is MemberState.LEFT or (node.state is MemberState.FAILED and now - node.since >= reclaim):
                self._forget(node_id)
                self._counts["reclaimed_addresses"] += 1

    # ------------------------------------------------------------------
    # after every input

    def _after_input(self, now: float) -> None:
        if not self._changed:
            return
        self._changed = False
        self._ring = None
        live = sum(1 for node in self._nodes.values() if node.state in _LIVE)
        self._live_count = max(1, live)
        if self._leaving:
            return
        # The partition verdict counts suspects as out of reach: on the cut-off
        # side every probe across the cut fails at once, so waiting for those
        # suspicions to expire (slowly there, for lack of confirmations and
        # with local health stretched) would only delay what is already clear.
        # A minority verdict must hold for two probe intervals before it is
        # announced, so a burst of suspicions that refutations clear at once
        # (as when partitions heal and views merge) announces nothing.
        minority, alive, unreachable = self._partition_verdict()
        if minority and not self._in_minority:
            if _PARTITION not in self._deadlines:
                self._schedule(_PARTITION, now + 2 * self._opts.probe_interval)
        elif not minority:
            self._cancel(_PARTITION)
            if self._in_minority:
                self._in_minority = False
                self._events.append(
                    PartitionHealed(at=now, policy=self._policy.name, reachable=alive, known=alive + unreachable)
                )

    def _partition_verdict(self) -> tuple[bool, int, int]:
        alive: list[str] = []
        unreachable: list[str] = []  # suspect or failed
        for node_id, node in self._nodes.items():
            if node.state is MemberState.ALIVE:
                alive.append(node_id)
            elif node.state is MemberState.SUSPECT or node.state is MemberState.FAILED:
                unreachable.append(node_id)
        return self._policy.in_minority(alive, unreachable), len(alive), len(unreachable)

    def _partition_hold_over(self, now: float) -> None:
        minority, alive, unreachable = self._partition_verdict()
        if minority and not self._in_minority and not self._leaving:
            self._in_minority = True
            self._events.append(
                PartitionDetected(at=now, policy=self._policy.name, reachable=alive, known=alive + unreachable)
            )
