"""50-node SWIM scenarios on the simulator (virtual time, fixed seeds)."""

from __future__ import annotations

from collections import Counter

import pytest
from rpcnet_swim import SwimOptions

from rpcnet.events import ClusterEvent
from rpcnet.membership import MemberState
from rpcnet.testing import Simulator, membership_factory

N = 50


class Cluster:
    """A simulated SWIM cluster that records every event with its observer."""

    def __init__(self, n: int = N, *, seed: int = 1, options: SwimOptions | None = None, **sim_args: float) -> None:
        self.sim = Simulator(seed=seed, **sim_args)
        self.events: list[tuple[float, str, ClusterEvent]] = []
        self.sim.on_event(lambda now, observer, event: self.events.append((now, observer, event)))
        self.ids = [f"n{i:02d}" for i in range(n)]
        factory = membership_factory(options=options or SwimOptions.lan())
        for node_id in self.ids:
            self.sim.add_node(node_id, factory)
        for node_id in self.ids[1:]:
            # Nodes start a little apart, as real ones do; a mass join converges too, just later.
            self.sim.run_for(0.05)
            self.sim.join(node_id, [self.ids[0]])
        assert self.sim.run_until_true(self.converged, timeout=90.0, step=0.5), "cluster did not form"
        self.mark = len(self.events)

    def converged(self, nodes: list[str] | None = None) -> bool:
        nodes = nodes or self.sim.up_nodes()
        return all(self.sim.core(i).live_count() == len(nodes) for i in nodes)

    def since_mark(self, kind: str, about: str | None = None) -> list[tuple[float, str, ClusterEvent]]:
        return [
            (t, obs, e)
            for t, obs, e in self.events[self.mark :]
            if e.kind == kind and (about is None or getattr(e, "member", None) is not None and e.member.id == about)
        ]


def test_cluster_forms_with_every_member_alive_everywhere() -> None:
    formed = Cluster()
    for node_id in formed.ids:
        view = formed.sim.view(node_id)
        assert sorted(view) == formed.ids
        assert all(m.state is MemberState.ALIVE for m in view.values())


def test_crashed_node_is_declared_failed_by_every_member() -> None:
    cluster = Cluster(seed=2)
    cluster.sim.crash("n17")
    survivors = [i for i in cluster.ids if i != "n17"]

    def all_declared() -> bool:
        return {obs for _, obs, _ in cluster.since_mark("failed", "n17")} == set(survivors)

    assert cluster.sim.run_until_true(all_declared, timeout=30.0)
    failed = cluster.since_mark("failed")
    assert Counter(e.member.id for _, _, e in failed) == {"n17": len(survivors)}, "only the crashed node fails"
    assert Counter(obs for _, obs, _ in failed) == Counter(survivors), "once per member"
    for node_id in survivors:
        assert cluster.sim.view(node_id)["n17"].state is MemberState.FAILED


def test_thirty_percent_loss_on_one_node_for_a_minute_fails_nobody() -> None:
    cluster = Cluster(seed=3)
    cluster.sim.set_node_loss("n05", 0.3)
    cluster.sim.run_for(60.0)
    cluster.sim.set_node_loss("n05", 0.0)
    cluster.sim.run_for(15.0)
    assert cluster.since_mark("failed") == []
    # The loss was real: probes needed the stream fallback to get through.
    assert sum(cluster.sim.core(i).stats.stream_acks for i in cluster.ids) > 0
    assert cluster.converged()
    assert all(cluster.sim.view(i)["n05"].state is MemberState.ALIVE for i in cluster.ids)


def test_thirty_percent_loss_on_one_node_is_refuted_without_the_stream_fallback() -> None:
    # Datagrams only: the lossy node is suspected now and then and must refute in time.
    cluster = Cluster(seed=3, options=SwimOptions.lan(stream_fallback=False))
    cluster.sim.set_node_loss("n05", 0.3)
    cluster.sim.run_for(60.0)
    cluster.sim.set_node_loss("n05", 0.0)
    cluster.sim.run_for(15.0)
    assert cluster.since_mark("failed") == []
    assert cluster.since_mark("suspect"), "30% loss never caused a suspicion; the scenario tests nothing"
    assert cluster.sim.core("n05").stats.refutes > 0
    assert cluster.converged()


def test_broken_link_between_two_nodes_fails_nobody() -> None:
    cluster = Cluster(seed=4)
    cluster.sim.break_link("n03", "n04")
    cluster.sim.run_for(60.0)
    assert cluster.since_mark("failed") == []
    assert cluster.since_mark("suspect") == []
    assert cluster.converged()


def test_one_way_drop_between_two_nodes_fails_nobody() -> None:
    cluster = Cluster(seed=5)
    cluster.sim.break_link("n08", "n09", one_way=True)
    cluster.sim.run_for(60.0)
    assert cluster.since_mark("failed") == []


def test_partition_is_detected_by_the_minority_and_heals_to_one_view() -> None:
    cluster = Cluster(seed=6)
    majority, minority = cluster.ids[:30], cluster.ids[30:]
    cluster.sim.partition(majority, minority)

    def minority_knows() -> bool:
        return {obs for _, obs, _ in cluster.since_mark("partition-detected")} == set(minority)

    assert cluster.sim.run_until_true(minority_knows, timeout=60.0)
    cluster.sim.run_for(5.0)
    detected = cluster.since_mark("partition-detected")
    assert Counter(obs for _, obs, _ in detected) == Counter(minority), "each minority node once, no majority node"
    for node_id in majority:
        assert not cluster.sim.core(node_id).in_minority
    # Each side has declared the other failed.
    assert {m.state for m in cluster.sim.view("n00").values() if m.id in minority} == {MemberState.FAILED}

    cluster.sim.heal()

    def one_view() -> bool:
        views = [tuple((m.id, m.incarnation, m.state) for m in cluster.sim.core(i).members()) for i in cluster.ids]
        return len(set(views)) == 1 and all(state is MemberState.ALIVE for _, _, state in views[0])

    assert cluster.sim.run_until_true(one_view, timeout=120.0, step=1.0), "members and incarnations did not converge"
    # Healing may flap while suspicions from the partition drain, but every
    # transition is reported once: each minority node alternates detected /
    # healed and ends healed; the majority never saw a partition.
    for node_id in cluster.ids:
        kinds = [e.kind for _, obs, e in cluster.events[cluster.mark :] if obs == node_id and e.kind.startswith("partition")]
        if node_id in majority:
            assert kinds == []
        else:
            assert kinds[::2] == ["partition-detected"] * len(kinds[::2])
            assert kinds[1::2] == ["partition-healed"] * len(kinds[1::2])
            assert kinds[-1] == "partition-healed"
        assert not cluster.sim.core(node_id).in_minority


def test_suspected_but_alive_node_refutes_with_a_higher_incarnation() -> None:
    cluster = Cluster(seed=7)
    before = cluster.sim.core("n11").local_member.incarnation
    # Silence n11 long enough to be suspected, not long enough to be failed.
    cluster.sim.set_node_loss("n11", 1.0)
    assert cluster.sim.run_until_true(lambda: bool(cluster.since_mark("suspect", "n11")), timeout=10.0, step=0.05)
    cluster.sim.set_node_loss("n11", 0.0)
    cluster.sim.run_for(30.0)
    after = cluster.sim.core("n11").local_member.incarnation
    assert after > before
    assert cluster.since_mark("failed") == []
    assert cluster.since_mark("recovered", "n11"), "the refutation was not reported as recovered"
    for node_id in cluster.ids:
        member = cluster.sim.view(node_id)["n11"]
        assert (member.state, member.incarnation) == (MemberState.ALIVE, after)


def test_graceful_leave_is_left_everywhere_never_failed() -> None:
    cluster = Cluster(n=20, seed=8)
    cluster.sim.call("n07", lambda core, now: core.leave(now))
    assert cluster.sim.run_until_true(lambda: cluster.sim.core("n07").leave_done(), timeout=5.0, step=0.05)
    cluster.sim.crash("n07")  # the driver stops the node once the leave is out
    cluster.sim.run_for(40.0)
    left = cluster.since_mark("left", "n07")
    assert sorted(obs for _, obs, _ in left) == [i for i in cluster.ids if i != "n07"]
    assert cluster.since_mark("failed") == []


def test_restarted_node_rejoins_with_a_higher_incarnation() -> None:
    cluster = Cluster(n=20, seed=9)
    cluster.sim.crash("n04")
    assert cluster.sim.run_until_true(lambda: len(cluster.since_mark("failed", "n04")) == 19, timeout=30.0)
    declared = cluster.sim.view("n00")["n04"].incarnation
    cluster.sim.restart("n04", seeds=["n00"])
    assert cluster.sim.run_until_true(cluster.converged, timeout=30.0)
    cluster.sim.run_for(5.0)
    incarnation = cluster.sim.core("n04").local_member.incarnation
    assert incarnation > declared
    for node_id in cluster.ids:
        assert cluster.sim.view(node_id)["n04"].incarnation == incarnation
    assert len(cluster.since_mark("recovered", "n04")) == 19


def test_incarnations_are_raised_only_by_their_owner() -> None:
    cluster = Cluster(n=20, seed=10)
    cluster.sim.set_node_loss("n02", 0.5)
    cluster.sim.partition(cluster.ids[:12], cluster.ids[12:])
    cluster.sim.run_for(30.0)
    cluster.sim.heal()
    cluster.sim.set_node_loss("n02", 0.0)
    cluster.sim.run_for(60.0)
    own = {i: cluster.sim.core(i).local_member.incarnation for i in cluster.ids}
    assert any(own.values()), "nobody had to refute; the scenario tests nothing"
    for observer in cluster.ids:
        for member in cluster.sim.core(observer).members():
            assert member.incarnation <= own[member.id]


def test_tag_change_reaches_every_member_once() -> None:
    cluster = Cluster(seed=11)
    cluster.sim.call("n21", lambda core, now: core.set_tags({"role": "worker"}, now))
    cluster.sim.run_for(5.0)
    updates = cluster.since_mark("tags-updated", "n21")
    assert sorted(obs for _, obs, _ in updates) == [i for i in cluster.ids if i != "n21"]
    assert all(e.member.tags == {"role": "worker"} and e.previous_tags == {} for _, _, e in updates)


def _scenario_log(seed: int) -> bytes:
    cluster = Cluster(n=12, seed=seed)
    cluster.sim.set_node_loss("n01", 0.3)
    cluster.sim.crash("n05")
    cluster.sim.run_for(20.0)
    cluster.sim.restart("n05", seeds=["n00"])
    cluster.sim.run_for(10.0)
    return cluster.sim.event_log()


def test_a_seed_replays_to_a_byte_identical_event_log() -> None:
    first = _scenario_log(21)
    assert first == _scenario_log(21)
    assert first != _scenario_log(22)
    assert b"failed n05" in first and b"recovered n05" in first


@pytest.mark.parametrize(
    ("preset", "crash_detected_within"),
    [(SwimOptions.local(), 15.0), (SwimOptions.lan(), 20.0), (SwimOptions.wan(), 90.0)],
    ids=["local", "lan", "wan"],
)
def test_every_preset_forms_a_cluster_and_detects_a_crash(preset: SwimOptions, crash_detected_within: float) -> None:
    cluster = Cluster(n=10, seed=12, options=preset)
    cluster.sim.crash("n06")
    survivors = [i for i in cluster.ids if i != "n06"]

    def declared() -> bool:
        return {obs for _, obs, _ in cluster.since_mark("failed", "n06")} == set(survivors)

    assert cluster.sim.run_until_true(declared, timeout=crash_detected_within)
    assert {e.member.id for _, _, e in cluster.since_mark("failed")} == {"n06"}


def test_a_restarted_node_is_seen_alive_by_everyone_at_once() -> None:
    """Members that declared a node failed no longer probe it, and in a small
    cluster the piggybacked copies of its refutation can miss one of them
    until the next push-pull (30 s). The restarted node tells each member
    directly, so over 300 seeded runs every member hears it is back within
    1 s, and nobody suspects it again on the strength of an old probe."""
    slowest = 0.0
    for seed in range(300):
        cluster = Cluster(n=5, seed=seed)
        cluster.sim.crash("n02")
        assert cluster.sim.run_until_true(lambda c=cluster: len(c.since_mark("failed", "n02")) == 4, timeout=30.0)
        cluster.mark = len(cluster.events)
        restarted_at = cluster.sim.now

        def everyone_heard(c: Cluster = cluster) -> bool:
            return {obs for _, obs, _ in c.since_mark("recovered", "n02")} == {"n00", "n01", "n03", "n04"}

        cluster.sim.restart("n02", seeds=["n00"])
        assert cluster.sim.run_until_true(everyone_heard, timeout=30.0, step=0.05), f"seed {seed}: not back within 30 s"
        slowest = max(slowest, cluster.sim.now - restarted_at)
        # A probe of its previous life that times out now says nothing of this one.
        cluster.sim.run_for(3.0)
        assert cluster.since_mark("suspect", "n02") == [], f"seed {seed}: the rejoined node was suspected"
    assert slowest <= 1.0, f"slowest rejoin took {slowest:.2f} s"


def test_an_isolated_node_that_comes_back_fails_nobody() -> None:
    """A node cut off long enough to be suspected suspects everyone in turn,
    and the gossip copies of those suspicions are lost with its packets.
    Unless each suspect hears of it later and refutes, the suspicions expire
    into false failures (13 of these 20 seeds before suspects were told
    directly)."""
    for seed in range(1, 21):
        cluster = Cluster(n=20, seed=seed)
        cluster.sim.set_node_loss("n11", 1.0)
        assert cluster.sim.run_until_true(lambda c=cluster: bool(c.since_mark("suspect", "n11")), timeout=10.0, step=0.05)
        cluster.sim.set_node_loss("n11", 0.0)
        cluster.sim.run_for(30.0)
        failed = cluster.since_mark("failed")
        assert failed == [], f"seed {seed}: {[(obs, e.member.id) for _, obs, e in failed]}"
        assert cluster.converged(), f"seed {seed}: views differ after 30 s"
