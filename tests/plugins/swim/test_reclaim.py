"""Restarts, reclaimed addresses, replayed and forged datagrams, on the simulator.

A node that comes back after leaving or failing is re-admitted whoever it
joins through (or if it joins through nobody); a new member may take the
address of one that left; datagrams replayed or forged by someone on the
path change nothing. Explicit virtual time, fixed seeds.
"""

from __future__ import annotations

from typing import Any

from rpcnet_swim import SwimOptions, codec
from rpcnet_swim.messages import Ack, Packet, Ping, PingReq

from rpcnet.membership import MemberState
from rpcnet.testing import Simulator, membership_factory

IDS = [f"n{i}" for i in range(5)]


def cluster(seed: int, options: SwimOptions | None = None) -> Simulator:
    sim = Simulator(seed=seed)
    factory = membership_factory(options=options or SwimOptions.lan())
    for node_id in IDS:
        sim.add_node(node_id, factory)
    for node_id in IDS[1:]:
        sim.run_for(0.05)
        sim.join(node_id, ["n0"])
    assert sim.run_until_true(lambda sim=sim: all_alive(sim, IDS), timeout=30.0, step=0.1)
    return sim


def all_alive(sim: Simulator, ids: list[str]) -> bool:
    return all(
        all(m.state is MemberState.ALIVE for m in sim.core(i).members()) and {m.id for m in sim.core(i).members()} == set(ids)
        for i in ids
    )


def state_of(sim: Simulator, observer: str, node_id: str) -> MemberState | None:
    member = sim.core(observer).member(node_id)
    return None if member is None else member.state


def capture(sim: Simulator) -> list[tuple[str, tuple[str, int], bytes]]:
    """Record every datagram put on the simulated network: (sender id, destination, bytes)."""
    seen: list[tuple[str, tuple[str, int], bytes]] = []
    send = sim._send_datagram

    def recording(source: Any, address: tuple[str, int], data: bytes) -> None:
        seen.append((source.node_id, address, data))
        send(source, address, data)

    sim._send_datagram = recording  # type: ignore[method-assign]
    return seen


# -- rejoin after a restart ---------------------------------------------------


def test_a_seed_that_left_and_restarted_with_no_seeds_is_found_again() -> None:
    """The director leaves (SIGTERM), comes back on the same address with no
    seeds of its own: the others recontact members that left, so it hears it
    is held left, refutes, and is alive everywhere again. Before, members
    that left were never contacted and it stayed alone."""
    for seed in range(1, 6):
        sim = cluster(seed)
        sim.call("n0", lambda core, now: core.leave(now))
        assert sim.run_until_true(lambda sim=sim: all(state_of(sim, i, "n0") is MemberState.LEFT for i in IDS[1:]), timeout=5.0)
        sim.crash("n0")
        sim.run_for(5.0)
        sim.restart("n0")  # no seeds
        assert sim.run_until_true(lambda sim=sim: all_alive(sim, IDS), timeout=60.0, step=0.1), f"seed {seed}: n0 stayed alone"
        assert sim.core("n0").local_member.incarnation >= 2, "it refuted its leave (incarnation 1)"


def test_a_seed_that_failed_and_restarted_with_no_seeds_is_found_again() -> None:
    for seed in range(1, 6):
        sim = cluster(seed)
        sim.crash("n0")
        assert sim.run_until_true(lambda sim=sim: all(state_of(sim, i, "n0") is MemberState.FAILED for i in IDS[1:]), timeout=30.0)
        sim.restart("n0")
        assert sim.run_until_true(lambda sim=sim: all_alive(sim, IDS), timeout=60.0, step=0.1), f"seed {seed}: n0 stayed alone"


def test_a_member_that_left_and_restarts_through_a_seed_is_back_at_once() -> None:
    """A worker stopped gracefully and started again joins through the seed,
    whose sync tells it it is held left: everyone sees it alive within a second."""
    for seed in range(1, 11):
        sim = cluster(seed)
        sim.call("n3", lambda core, now: core.leave(now))
        assert sim.run_until_true(lambda sim=sim: all(state_of(sim, i, "n3") is MemberState.LEFT for i in IDS if i != "n3"), timeout=5.0)
        sim.crash("n3")
        sim.run_for(2.0)
        sim.restart("n3", seeds=["n0"])
        assert sim.run_until_true(lambda sim=sim: all_alive(sim, IDS), timeout=1.0, step=0.05), f"seed {seed}"


def test_a_seed_restarted_before_anyone_noticed_learns_the_cluster_at_once() -> None:
    """Killed and restarted with no seeds within a second: nobody suspected
    it, so nobody tells it anything, and it knows nobody. The first member
    to probe it gets an ack that says "I do not know you" and syncs with it."""
    slowest = 0.0
    for seed in range(1, 21):
        sim = cluster(seed)
        sim.crash("n0")
        sim.run_for(0.3)
        sim.restart("n0")
        restarted = sim.now
        assert sim.run_until_true(lambda sim=sim: all_alive(sim, IDS), timeout=10.0, step=0.05), f"seed {seed}"
        slowest = max(slowest, sim.now - restarted)
        assert sum(sim.core(i).stats.stranger_syncs for i in IDS[1:]) >= 1
    assert slowest <= 3.0, slowest


def test_recontacting_the_dead_stops_after_recontact_time() -> None:
    sim = cluster(3, SwimOptions.lan(recontact_time=40.0, reconnect_interval=5.0))
    sim.crash("n4")
    assert sim.run_until_true(lambda sim=sim: all(state_of(sim, i, "n4") is MemberState.FAILED for i in IDS[:4]), timeout=30.0)
    sim.run_for(40.0)
    total = sum(sim.core(i).stats.recontacts for i in IDS[:4])
    assert total > 0, "the failed member was recontacted while recent"
    sim.run_for(60.0)
    assert sum(sim.core(i).stats.recontacts for i in IDS[:4]) == total, "and no more after recontact_time"


def test_a_new_member_on_the_address_of_one_that_left_replaces_it() -> None:
    sim = cluster(4)
    address = sim.nodes["n2"].address
    sim.call("n2", lambda core, now: core.leave(now))
    assert sim.run_until_true(lambda sim=sim: all(state_of(sim, i, "n2") is MemberState.LEFT for i in IDS if i != "n2"), timeout=5.0)
    sim.crash("n2")
    sim.add_node("n2-new", membership_factory(options=SwimOptions.lan()), address=address)
    sim.join("n2-new", ["n0"])
    rest = [i for i in IDS if i != "n2"]
    assert sim.run_until_true(lambda: all_alive(sim, [*rest, "n2-new"]), timeout=10.0, step=0.1)
    assert all(sim.core(i).member("n2") is None for i in rest)
    assert sum(sim.core(i).stats.reclaimed_addresses for i in rest) >= len(rest)


# -- replay and forgery ------------------------------------------------------------


def test_replayed_datagrams_of_a_member_that_left_change_nothing() -> None:
    """Everything n1 sent while alive, replayed after it left (datagrams open
    in the core: the sealing layer's replay window is tested in
    tests/cluster/test_gossip.py), neither revives it nor makes anyone send
    a ping-req on its behalf."""
    sim = cluster(5)
    seen = capture(sim)
    sim.run_for(10.0)
    from_n1 = [(address, data) for sender, address, data in seen if sender == "n1"]
    assert from_n1
    sim.call("n1", lambda core, now: core.leave(now))
    assert sim.run_until_true(lambda sim=sim: all(state_of(sim, i, "n1") is MemberState.LEFT for i in IDS if i != "n1"), timeout=5.0)
    sim.crash("n1")
    by_address = {sim.nodes[i].address: i for i in IDS}
    refused_before = sum(sim.core(i).stats.refused_ping_reqs for i in IDS if i != "n1")
    for address, data in from_n1:
        target = by_address.get(address)
        if target and target != "n1":
            sim.call(target, lambda core, now, d=data: core.receive(sim.nodes["n1"].address, d, now))
    sim.run_for(5.0)
    assert all(state_of(sim, i, "n1") is MemberState.LEFT for i in IDS if i != "n1")
    replayed_reqs = sum(1 for _, d in from_n1 if isinstance(codec.decode_packet(d).message, PingReq))
    assert sum(sim.core(i).stats.refused_ping_reqs for i in IDS if i != "n1") - refused_before == replayed_reqs


def test_forged_acks_do_not_keep_a_dead_member_alive() -> None:
    """n4 is dead; whoever sees n0's pings to it answers them with acks that
    claim to come from n1. n0 drops them (counted) and n4 is declared failed
    anyway. Before acks were matched by sender, they kept n4 alive at n0."""
    sim = cluster(6)
    seen = capture(sim)
    sim.crash("n4")
    n4 = sim.nodes["n4"].address
    start = len(seen)
    forged = 0
    deadline = sim.now + 30.0
    while sim.now < deadline and state_of(sim, "n0", "n4") is not MemberState.FAILED:
        sim.run_for(0.05)
        for sender, address, data in seen[start:]:
            message = codec.decode_packet(data).message
            if sender == "n0" and address == n4 and isinstance(message, Ping):
                ack = codec.encode_packet(Packet(sender="n1", message=Ack(seq=message.seq)))
                sim.call("n0", lambda core, now, a=ack: core.receive(sim.nodes["n1"].address, a, now))
                forged += 1
        start = len(seen)
    assert forged > 0
    assert state_of(sim, "n0", "n4") is MemberState.FAILED
    assert sim.core("n0").stats.forged_acks >= forged
