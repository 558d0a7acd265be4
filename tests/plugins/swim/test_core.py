"""The SWIM core driven by hand: explicit packets, explicit time."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rpcnet_phi import PhiAccrualDetector
from rpcnet_swim import SwimMembership, SwimOptions, codec
from rpcnet_swim.messages import (
    Ack,
    Alive,
    Dead,
    Heartbeat,
    MemberRecord,
    Nack,
    Packet,
    Ping,
    PingReq,
    StreamAck,
    StreamPing,
    Suspect,
    SyncMessage,
)

from rpcnet import make_plugin_manager
from rpcnet.errors import ConfigError
from rpcnet.membership import MemberState

ME = ("10.0.0.1", 7001)
PEER = ("10.0.0.2", 7002)
OTHER = ("10.0.0.3", 7003)


def make(node_id: str = "me", address=ME, **options) -> SwimMembership:
    core = SwimMembership(
        node_id=node_id,
        address=address,
        options=SwimOptions.lan(**options),
        failure_detector=PhiAccrualDetector(),
        rng=random.Random(1),
    )
    core.start(0.0)
    return core


def packet(sender: str, message=None, *updates) -> bytes:
    return codec.encode_packet(Packet(sender=sender, message=message, updates=tuple(updates)))


def sent(core: SwimMembership) -> list[tuple[tuple[str, int], Packet]]:
    return [(addr, codec.decode_packet(data)) for addr, data in core.datagrams_to_send()]


def with_peers(core: SwimMembership, *peers: tuple[str, tuple[str, int]], now: float = 0.0) -> None:
    for node_id, address in peers:
        core.receive(address, packet(node_id, None, Alive(node=node_id, incarnation=0, address=address)), now)
    core.datagrams_to_send()
    core.events_to_deliver()


def test_ping_for_me_is_acked_with_the_same_sequence_number() -> None:
    core = make()
    core.receive(PEER, packet("peer", Ping(seq=42, target="me")), 0.1)
    replies = sent(core)
    # "peer" is not in our view: the ack says so, so that it syncs with us.
    assert [(addr, p.message) for addr, p in replies] == [(PEER, Ack(seq=42, unknown_sender=True))]
    with_peers(core, ("peer", PEER), now=0.2)
    core.receive(PEER, packet("peer", Ping(seq=43, target="me")), 0.3)
    assert [(addr, p.message) for addr, p in sent(core)] == [(PEER, Ack(seq=43))]


def test_ping_meant_for_another_node_is_not_acked() -> None:
    core = make()
    core.receive(PEER, packet("peer", Ping(seq=42, target="somebody-else")), 0.1)
    assert [p.message for _, p in sent(core)] == []


@given(st.binary(max_size=200))
def test_garbage_is_counted_and_dropped(data: bytes) -> None:
    core = make()
    core.receive(PEER, data, 0.1)
    core.receive(PEER, b"\x93\x01\xa1x\xc0" + data, 0.1)  # a valid header followed by junk
    assert core.members() == [core.local_member]


def test_malformed_datagram_increments_decode_errors() -> None:
    core = make()
    core.receive(PEER, b"\xc1not msgpack", 0.1)
    core.receive(PEER, codec.encode_header("peer", None)[:-1], 0.1)
    assert core.stats.decode_errors == 2


def test_suspicion_about_me_is_refuted_with_a_higher_incarnation() -> None:
    core = make()
    core.datagrams_to_send()
    core.receive(PEER, packet("peer", Ping(seq=1, target="me"), Suspect(node="me", incarnation=3, source="peer")), 1.0)
    assert core.local_member.incarnation == 4
    assert core.health_score == 1, "having to refute counts against local health"
    # The refutation rides on the ack that answers the ping.
    (addr, reply), = sent(core)
    assert reply.message == Ack(seq=1, unknown_sender=True)
    assert Alive(node="me", incarnation=4, address=ME, tags={}) in reply.updates


def test_failed_claim_about_me_is_refuted_but_not_while_leaving() -> None:
    core = make()
    core.receive(PEER, packet("peer", None, Dead(node="me", incarnation=0, source="peer")), 1.0)
    assert core.local_member.incarnation == 1
    core.leave(2.0)
    assert core.local_member.state is MemberState.LEFT
    core.receive(PEER, packet("peer", None, Dead(node="me", incarnation=7, source="peer")), 3.0)
    assert core.local_member.incarnation == 2


def test_news_about_others_never_raises_my_incarnation() -> None:
    core = make()
    with_peers(core, ("peer", PEER))
    core.receive(PEER, packet("peer", None, Suspect(node="peer", incarnation=5, source="x")), 1.0)
    core.receive(PEER, packet("peer", None, Alive(node="peer", incarnation=9, address=PEER)), 1.0)
    assert core.local_member.incarnation == 0
    assert core.member("peer").incarnation == 9


def test_set_tags_raises_the_incarnation_and_announces() -> None:
    core = make()
    with_peers(core, ("peer", PEER))
    core.set_tags({"role": "worker"}, 1.0)
    core.set_tags({"role": "worker"}, 1.1)  # unchanged: nothing to announce
    assert core.local_member.incarnation == 1
    core.handle_timer(1.5)
    updates = [u for _, p in sent(core) for u in p.updates]
    assert Alive(node="me", incarnation=1, address=ME, tags={"role": "worker"}) in updates


def _next_probe(core: SwimMembership, start: float) -> tuple[float, Packet]:
    now = start
    for _ in range(200):
        deadline = core.get_timer()
        assert deadline is not None
        now = deadline
        core.handle_timer(now)
        for _addr, p in sent(core):
            if isinstance(p.message, Ping):
                return now, p
    raise AssertionError("no probe was sent")


def test_probe_without_ack_goes_indirect_then_suspects() -> None:
    core = make()
    with_peers(core, ("a", PEER), ("b", OTHER), ("c", ("10.0.0.4", 7004)), ("d", ("10.0.0.5", 7005)))
    now, ping = _next_probe(core, 0.0)
    target = ping.message.target
    # Nobody answers. At the probe timeout, ping-reqs go to the three others.
    core.handle_timer(now + 0.5)
    asked = [(addr, p.message) for addr, p in sent(core) if isinstance(p.message, PingReq)]
    reqs = [r for _, r in asked]
    assert len(reqs) == 3 and {r.target for r in reqs} == {target} and all(r.seq == ping.message.seq for r in reqs)
    # Two helpers nack (they are reachable), one does not.
    ids = {PEER: "a", OTHER: "b", ("10.0.0.4", 7004): "c", ("10.0.0.5", 7005): "d"}
    for addr, _ in asked[:2]:
        core.receive(addr, packet(ids[addr], Nack(seq=ping.message.seq)), now + 0.8)
    core.handle_timer(now + 1.0)
    assert core.member(target).state is MemberState.SUSPECT
    assert [e.kind for e in core.events_to_deliver()] == ["suspect"]
    assert core.health_score == 1, "one expected nack missing"


def test_relayed_ack_clears_the_probe() -> None:
    core = make()
    with_peers(core, ("a", PEER), ("b", OTHER), ("c", ("10.0.0.4", 7004)))
    now, ping = _next_probe(core, 0.0)
    core.handle_timer(now + 0.5)
    sent(core)
    core.receive(PEER, packet("a", Ack(seq=ping.message.seq)), now + 0.7)
    core.handle_timer(now + 1.0)
    assert all(m.state is MemberState.ALIVE for m in core.members())
    assert core.events_to_deliver() == []


def direct(core: SwimMembership) -> list[tuple[tuple[str, int], Packet]]:
    """What the core sent that carries a direct message (gossip rounds left out)."""
    return [(addr, p) for addr, p in sent(core) if p.message is not None]


def test_ping_req_is_relayed_and_answered_with_ack_or_nack() -> None:
    core = make(monitors=0, probe_interval=100.0)  # no probes or heartbeats of its own in the way
    with_peers(core, ("a", PEER), ("b", OTHER), now=1.0)
    core.receive(PEER, packet("a", PingReq(seq=7, target="b", target_address=OTHER, nack=True)), 1.0)
    ((addr, relayed),) = direct(core)
    assert addr == OTHER and isinstance(relayed.message, Ping) and relayed.message.target == "b"
    core.receive(OTHER, packet("b", Ack(seq=relayed.message.seq)), 1.1)
    assert [(a, p.message) for a, p in direct(core)] == [(PEER, Ack(seq=7))]
    # A second request whose target stays silent is nacked at 80% of the probe
    # timeout, so the nack reaches the prober before its verdict ...
    core.receive(PEER, packet("a", PingReq(seq=8, target="b", target_address=OTHER, nack=True)), 2.0)
    ((_, relayed),) = direct(core)
    core.handle_timer(2.39)
    assert direct(core) == []
    core.handle_timer(2.4)
    assert [(a, p.message) for a, p in direct(core)] == [(PEER, Nack(seq=8))]
    # ... and an ack that still comes within the probe timeout is relayed anyway.
    core.receive(OTHER, packet("b", Ack(seq=relayed.message.seq)), 2.45)
    assert [(a, p.message) for a, p in direct(core)] == [(PEER, Ack(seq=8))]
    core.receive(PEER, packet("a", PingReq(seq=9, target="b", target_address=OTHER, nack=True)), 3.0)
    ((_, relayed),) = direct(core)
    core.handle_timer(3.5)
    direct(core)
    core.receive(OTHER, packet("b", Ack(seq=relayed.message.seq)), 3.6)
    assert direct(core) == [], "too late: the relay is gone"


def test_ping_req_is_answered_only_for_known_members_at_known_addresses() -> None:
    core = make(monitors=0, probe_interval=100.0)
    with_peers(core, ("a", PEER), ("b", OTHER), now=1.0)
    spoofed = ("192.0.2.66", 9999)
    # An unknown requester, an unknown target: nothing is sent anywhere.
    core.receive(spoofed, packet("stranger", PingReq(seq=1, target="b", target_address=OTHER)), 1.0)
    core.receive(PEER, packet("a", PingReq(seq=2, target="nobody", target_address=spoofed)), 1.0)
    assert direct(core) == []
    assert core.stats.refused_ping_reqs == 2
    # A known requester's ping-req that arrives from (or names) another
    # address: the ping goes to the target's known address, the answer to the
    # requester's known address, never where the packet points.
    core.receive(spoofed, packet("a", PingReq(seq=3, target="b", target_address=spoofed)), 1.0)
    ((addr, relayed),) = direct(core)
    assert addr == OTHER
    core.receive(OTHER, packet("b", Ack(seq=relayed.message.seq)), 1.1)
    assert [(a, p.message) for a, p in direct(core)] == [(PEER, Ack(seq=3))]


def test_relayed_ack_only_from_the_target() -> None:
    core = make(monitors=0, probe_interval=100.0)
    with_peers(core, ("a", PEER), ("b", OTHER), ("c", ("10.0.0.4", 7004)), now=1.0)
    core.receive(PEER, packet("a", PingReq(seq=7, target="b", target_address=OTHER, nack=False)), 1.0)
    ((_, relayed),) = direct(core)
    core.receive(("10.0.0.4", 7004), packet("c", Ack(seq=relayed.message.seq)), 1.1)
    assert direct(core) == [] and core.stats.forged_acks == 1


def test_sequence_numbers_do_not_start_at_the_same_place_after_a_restart() -> None:
    firsts = set()
    for seed in range(5):
        core = SwimMembership(node_id="me", address=ME, options=SwimOptions.lan(monitors=0), rng=random.Random(seed))
        core.start(0.0)
        with_peers(core, ("a", PEER))
        _, ping = _next_probe(core, 0.0)
        firsts.add(ping.message.seq)
    assert len(firsts) == 5 and min(firsts) > 1000


def test_probing_a_suspect_tells_it_so() -> None:
    core = make()
    with_peers(core, ("a", PEER))
    core.receive(OTHER, packet("x", None, Suspect(node="a", incarnation=0, source="x")), 0.0)
    sent(core)
    _, ping = _next_probe(core, 0.0)
    assert Suspect(node="a", incarnation=0, source="me") in ping.updates


class Driver:
    """Runs a core's timers up to a time, answering its pings on behalf of live peers."""

    def __init__(self, core: SwimMembership, addresses: dict[str, tuple[str, int]]) -> None:
        self.core = core
        self.addresses = addresses
        self.now = 0.0
        self.silent: set[str] = set()
        self.beating: set[str] = set()
        self.next_beat = 1.0
        self.heartbeats_to: list[tuple[str, int]] = []
        self.nacking = True

    def run_until(self, until: float) -> None:
        core = self.core
        while True:
            deadline = core.get_timer()
            step = min(d for d in (deadline, self.next_beat if self.beating else None, until) if d is not None)
            self.now = step
            if step == until and (deadline is None or deadline > until):
                return
            if self.beating and step == self.next_beat:
                for sender in sorted(self.beating):
                    core.receive(self.addresses[sender], packet(sender, Heartbeat()), step)
                self.next_beat += 1.0
            if deadline is not None and deadline <= step:
                core.handle_timer(step)
            for addr, p in sent(core):
                if isinstance(p.message, Heartbeat):
                    self.heartbeats_to.append(addr)
                if isinstance(p.message, PingReq) and p.message.target in self.silent and self.nacking:
                    helper = next(k for k, v in self.addresses.items() if v == addr)
                    core.receive(addr, packet(helper, Nack(seq=p.message.seq)), step)
                if isinstance(p.message, Ping) and p.message.target not in self.silent:
                    target = p.message.target
                    core.receive(self.addresses[target], packet(target, Ack(seq=p.message.seq)), step)


def test_suspicion_expires_into_failed_and_confirmations_shorten_it() -> None:
    peers = {f"p{i}": ("10.0.1.1", 8000 + i) for i in range(9)}
    for confirmations, expected_deadline in ((0, 34.0), (1, 21.381), (2, 14.0)):
        core = make(monitors=0, suspicion_mult=4)  # memberlist's multiplier, its table's numbers
        with_peers(core, *peers.items())  # n = 10: min 4 s, max 24 s, k = 2
        driver = Driver(core, peers)
        driver.run_until(10.0)
        core.receive(peers["p1"], packet("p1", None, Suspect(node="p0", incarnation=0, source="p1")), 10.0)
        for source in ("p2", "p3")[:confirmations]:
            core.receive(peers[source], packet(source, None, Suspect(node="p0", incarnation=0, source=source)), 10.5)
        driver.run_until(expected_deadline - 0.01)
        assert core.member("p0").state is MemberState.SUSPECT, confirmations
        driver.run_until(expected_deadline + 1e-6)
        assert core.member("p0").state is MemberState.FAILED, confirmations
        kinds = [e.kind for e in core.events_to_deliver() if getattr(e, "member", None) and e.member.id == "p0"]
        assert kinds == ["suspect", "failed"]


def test_heartbeats_go_to_monitors_and_silence_triggers_one_confirming_probe() -> None:
    peers = {name: ("10.0.1.1", 8000 + i) for i, name in enumerate("abcde")}
    core = make(monitors=1)
    with_peers(core, *peers.items())
    driver = Driver(core, peers)
    driver.run_until(3.0)
    (monitor,) = core._monitors_of_self()
    assert len(driver.heartbeats_to) == 3 and set(driver.heartbeats_to) == {peers[monitor]}, "to its monitor, every second"
    (watched,) = core._watched
    driver.beating = {watched}
    driver.run_until(20.0)
    assert core.stats.confirm_probes == 0, "regular heartbeats raise nothing"
    driver.beating = set()
    driver.run_until(40.0)
    assert core.stats.confirm_probes == 1, "one confirming probe per silence"
    assert core.member(watched).state is MemberState.ALIVE, "the probe was answered: no suspicion"
    driver.next_beat = 41.0
    driver.beating = {watched}
    driver.run_until(50.0)
    driver.beating = set()
    driver.silent = {watched}
    driver.run_until(54.0)
    assert core.stats.confirm_probes == 2
    assert core.member(watched).state is MemberState.SUSPECT


def test_alive_at_the_same_incarnation_does_not_clear_a_suspicion() -> None:
    core = make()
    with_peers(core, ("a", PEER))
    core.receive(OTHER, packet("x", None, Suspect(node="a", incarnation=2, source="x")), 1.0)
    core.receive(PEER, packet("a", None, Alive(node="a", incarnation=2, address=PEER)), 1.1)
    assert core.member("a").state is MemberState.SUSPECT
    core.receive(PEER, packet("a", None, Alive(node="a", incarnation=3, address=PEER)), 1.2)
    assert core.member("a").state is MemberState.ALIVE
    assert [e.kind for e in core.events_to_deliver()] == ["suspect", "recovered"]


def test_updates_are_piggybacked_a_limited_number_of_times() -> None:
    core = make()
    with_peers(core, ("a", PEER))  # n = 2: limit 4 * ceil(log10 3) = 4
    core.datagrams_to_send()
    core.receive(OTHER, packet("x", None, Alive(node="news", incarnation=0, address=OTHER)), 1.0)
    carried = 0
    for seq in range(10):
        core.receive(PEER, packet("a", Ping(seq=seq, target="me")), 1.0 + seq)
        carried += sum(u.node == "news" for _, p in sent(core) for u in p.updates)
    assert carried == 4


def test_datagrams_respect_the_packet_budget() -> None:
    core = make(packet_budget=600)
    for i in range(60):
        address = ("10.0.2.1", 9000 + i)
        core.receive(address, packet(f"node-{i}", None, Alive(node=f"node-{i}", incarnation=0, address=address, tags={"zone": "eu-west-1a"})), 0.0)
    core.datagrams_to_send()
    for seq in range(20):
        core.receive(PEER, packet("node-1", Ping(seq=seq, target="me")), 1.0)
    sizes = [len(data) for _, data in core.datagrams_to_send()]
    assert sizes and max(sizes) <= 600
    assert max(sizes) > 500, "the budget is used, not left empty"


def test_sync_merges_both_ways_and_a_remote_failed_is_only_a_suspicion() -> None:
    core = make()
    request = SyncMessage(
        sender="peer",
        response=False,
        join=True,
        members=(
            MemberRecord(node="peer", address=PEER),
            MemberRecord(node="x", address=OTHER, incarnation=2),
            MemberRecord(node="gone", address=("10.0.0.9", 1), state=MemberState.LEFT),
        ),
    )
    reply = codec.decode_sync(core.handle_request(PEER, codec.encode_sync(request), 1.0))
    assert reply.response and {r.node for r in reply.members} == {"me", "peer", "x"}
    follow_up = SyncMessage(sender="peer", response=True, members=(MemberRecord(node="x", address=OTHER, incarnation=2, state=MemberState.FAILED),))
    core.handle_response(PEER, codec.encode_sync(follow_up), 2.0)
    assert core.member("x").state is MemberState.SUSPECT
    assert core.member("gone") is None, "unknown members are introduced only by alive"


def test_join_queues_a_sync_to_every_seed_but_itself() -> None:
    core = make()
    core.join([PEER, ME, OTHER], 0.0)
    syncs = core.requests_to_send()
    assert [addr for addr, _ in syncs] == [PEER, OTHER]
    assert all(codec.decode_sync(data).join for _, data in syncs)


def test_presets_carry_memberlists_numbers() -> None:
    lan, wan, local = SwimOptions.lan(), SwimOptions.wan(), SwimOptions.local()
    # LAN departs from memberlist in one number: a suspicion multiplier of 3, not 4
    # (monitors, the stream fallback and confirmations make a suspicion reliable sooner).
    assert (lan.probe_interval, lan.probe_timeout, lan.indirect_checks, lan.suspicion_mult) == (1.0, 0.5, 3, 3)
    assert (lan.gossip_interval, lan.gossip_nodes, lan.retransmit_mult, lan.push_pull_interval) == (0.2, 3, 4, 30.0)
    assert (wan.probe_interval, wan.probe_timeout, wan.suspicion_mult, wan.gossip_nodes, wan.gossip_interval) == (5.0, 3.0, 6, 4, 0.5)
    assert (local.probe_timeout, local.indirect_checks, local.retransmit_mult, local.suspicion_mult, local.gossip_interval) == (0.2, 1, 2, 3, 0.1)
    assert SwimOptions.wan(gossip_nodes=5).gossip_nodes == 5
    assert SwimOptions(stream_fallback="false").stream_fallback is False


@pytest.mark.parametrize(
    "changes",
    [{"probe_interval": 0}, {"probe_timeout": 2.0}, {"stream_fallback": "maybe"}, {"gossip_nodes": 0}, {"partition_policy": "majority"}, {"partition_policy": "static-quorum"}, {"packet_budget": 100}],
)
def test_options_are_validated(changes) -> None:
    with pytest.raises(ConfigError):
        SwimOptions(**changes)


def test_registered_as_swim_and_built_through_the_registry() -> None:
    host = make_plugin_manager()
    assert host.strategy("membership", "swim") is SwimMembership
    core = host.create("membership", "swim", {"gossip-nodes": 4}, node_id="n", address=("h", 1))
    assert core.options.gossip_nodes == 4 and core.local_member.id == "n"


def test_stream_ping_is_acked_only_by_its_target() -> None:
    core = make()
    reply = codec.decode_sync(core.handle_request(PEER, codec.encode_sync(StreamPing(sender="peer", seq=5, target="me")), 1.0))
    assert reply == StreamAck(sender="me", seq=5)
    with pytest.raises(codec.SwimDecodeError, match="reached"):
        core.handle_request(PEER, codec.encode_sync(StreamPing(sender="peer", seq=6, target="other")), 1.0)


def test_missed_direct_ack_also_pings_over_the_stream_and_its_ack_saves_the_member() -> None:
    core = make()
    with_peers(core, ("a", PEER), ("b", OTHER), ("c", ("10.0.0.4", 7004)))
    now, ping = _next_probe(core, 0.0)
    target = ping.message.target
    core.handle_timer(now + 0.5)
    sent(core)
    ((address, data),) = core.requests_to_send()
    stream_ping = codec.decode_sync(data)
    assert stream_ping == StreamPing(sender="me", seq=ping.message.seq, target=target)
    assert address == core.member(target).address
    core.handle_response(address, codec.encode_sync(StreamAck(sender=target, seq=stream_ping.seq)), now + 0.6)
    core.handle_timer(now + 1.0)
    assert core.member(target).state is MemberState.ALIVE and core.stats.stream_acks == 1
    assert core.events_to_deliver() == []


def test_stream_fallback_can_be_disabled() -> None:
    core = make(stream_fallback=False)
    with_peers(core, ("a", PEER), ("b", OTHER))
    now, _ = _next_probe(core, 0.0)
    core.handle_timer(now + 0.5)
    assert core.requests_to_send() == []


def test_missing_nacks_lower_local_health_and_stretch_the_probe_interval() -> None:
    core = make(monitors=0, stream_fallback=False)
    with_peers(core, ("a", PEER), ("b", OTHER), ("c", ("10.0.0.4", 7004)), ("d", ("10.0.0.5", 7005)))
    now, _ = _next_probe(core, 0.0)
    core.handle_timer(now + 0.5)  # ping-reqs out; no helper answers, not even with a nack
    core.handle_timer(now + 1.0)
    assert core.health_score == 3, "three expected nacks missing"
    # Nobody ever answers: the score climbs to its cap and probes spread out to 8 intervals.
    times = [now]
    for _ in range(5):
        now, _ = _next_probe(core, now)
        times.append(now)
    gaps = [round(b - a, 6) for a, b in zip(times, times[1:])]
    assert core.health_score == 7
    # Each gap is (score + 1) intervals for the score when it was scheduled.
    assert gaps[2:] == [4.0, 6.0, 7.0] and max(gaps[:2]) < 2.0, gaps


def test_failed_members_are_gossiped_to_for_a_while_then_forgotten() -> None:
    core = make(monitors=0, gossip_to_the_dead_time=30.0, failed_member_retention=100.0, left_member_retention=50.0)
    with_peers(core, ("a", PEER), ("b", OTHER))
    core.receive(OTHER, packet("b", None, Dead(node="a", incarnation=0, source="b"), Dead(node="b", incarnation=0, source="b")), 1.0)
    assert core.member("a").state is MemberState.FAILED and core.member("b").state is MemberState.LEFT

    def gossip_targets(start: float, end: float) -> set[tuple[str, int]]:
        targets = set()
        while core.get_timer() < start:
            core.handle_timer(core.get_timer())
            sent(core)
        now = start
        while now < end:
            core.set_tags({"t": str(now)}, now)  # always something to gossip
            now = core.get_timer()
            core.handle_timer(now)
            targets |= {addr for addr, p in sent(core) if p.message is None}
        return targets

    assert gossip_targets(1.0, 10.0) == {PEER}, "the failed member hears the news, the one that left does not"
    assert gossip_targets(40.0, 50.0) == set(), "not after gossip_to_the_dead_time"
    core.handle_timer(60.0)
    while core.get_timer() < 200.0:
        core.handle_timer(core.get_timer())
    assert core.member("a") is None and core.member("b") is None


def test_leave_is_done_once_the_announcement_went_out_enough_times() -> None:
    core = make(monitors=0)
    with_peers(core, ("a", PEER), ("b", OTHER))
    assert not core.leave_done()
    core.leave(1.0)
    assert not core.leave_done()
    announcements = 0
    while not core.leave_done():
        core.handle_timer(core.get_timer())
        announcements += sum(u == Dead(node="me", incarnation=1, source="me") for _, p in sent(core) for u in p.updates)
    assert announcements == 4  # retransmit limit for 3 members
    alone = make()
    alone.leave(1.0)
    assert alone.leave_done(), "nobody to tell"


def test_a_member_back_from_failed_is_probed_in_the_current_pass() -> None:
    peers = {f"p{i}": ("10.0.1.1", 8000 + i) for i in range(30)}
    core = make(monitors=0)
    with_peers(core, *peers.items())
    driver = Driver(core, peers)
    driver.run_until(5.0)  # a pass of 30 probes is under way
    core.receive(peers["p1"], packet("p1", None, Dead(node="p7", incarnation=0, source="p1")), 5.0)
    driver.run_until(35.0)  # the pass ends without p7; a new one starts
    remaining = core._probe_order[core._probe_index :]
    assert "p7" not in remaining and len(remaining) >= 10, "the pass under way was shuffled while p7 was failed"
    core.receive(peers["p7"], packet("p7", None, Alive(node="p7", incarnation=1, address=peers["p7"])), 35.0)
    assert core.member("p7").state is MemberState.ALIVE
    probed: list[str] = []
    now = 35.0
    while len(probed) <= len(remaining):  # before this pass ends
        now = core.get_timer()
        core.handle_timer(now)
        for _, p in sent(core):
            if isinstance(p.message, Ping):
                probed.append(p.message.target)
                core.receive(peers[p.message.target], packet(p.message.target, Ack(seq=p.message.seq)), now)
    assert "p7" in probed


@pytest.mark.parametrize(("nacking", "expected"), [(True, 24.0), (False, 25.0)])
def test_a_healthy_prober_counts_its_suspicion_from_the_unanswered_ping(nacking: bool, expected: float) -> None:
    peers = {f"p{i}": ("10.0.1.1", 8000 + i) for i in range(9)}
    core = make(monitors=0, stream_fallback=False, suspicion_mult=4)
    with_peers(core, *peers.items())  # n = 10: min 4 s, max 24 s, k = 2
    driver = Driver(core, peers)
    driver.nacking = nacking
    driver.silent = {"p0"}
    sent_at = None
    while core.member("p0").state is MemberState.ALIVE:
        before = core.stats.probes
        driver.run_until(driver.now + 0.05)
        if core.stats.probes > before and "p0" in core._probing and sent_at is None:
            sent_at = driver.now
    assert sent_at is not None
    suspected_at = driver.now
    assert suspected_at - sent_at == pytest.approx(1.0, abs=0.06)
    assert (core.health_score == 0) is nacking, "missing nacks point at this node's own network"
    # Nobody else confirms (the other peers answer this node's probes of p0's helpers).
    driver.run_until(sent_at + expected - 0.1)
    assert core.member("p0").state is MemberState.SUSPECT
    driver.run_until(sent_at + expected + 0.1)
    assert core.member("p0").state is MemberState.FAILED


def test_refuting_a_death_from_a_previous_life_costs_no_health() -> None:
    core = make()  # restarted: incarnation 0 again
    previous_life = SyncMessage(
        sender="peer",
        response=True,
        members=(MemberRecord(node="peer", address=PEER), MemberRecord(node="me", address=ME, incarnation=6, state=MemberState.FAILED)),
    )
    core.handle_response(PEER, codec.encode_sync(previous_life), 1.0)
    assert core.local_member.incarnation == 7
    assert core.health_score == 0
    core.receive(PEER, packet("peer", None, Suspect(node="me", incarnation=7, source="peer")), 2.0)
    assert core.local_member.incarnation == 8
    assert core.health_score == 1, "a suspicion, unlike a death notice, hints at our own slowness"
