"""WorkerRegistry, TagFilter and WorkerStats, driven by explicit cluster events."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from rpcnet import UnknownStrategyError, make_plugin_manager
from rpcnet.cluster.workers import (
    NoWorkerError,
    TagFilter,
    TagFilterError,
    WorkerAdded,
    WorkerRegistry,
    WorkerRemoved,
    WorkerStats,
)
from rpcnet.errors import ConfigError, InternalError, NotFoundError, UnavailableError
from rpcnet.events import (
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberRecovered,
    MemberSuspect,
    MemberTagsUpdated,
    PartitionDetected,
)
from rpcnet.membership import Member, MemberState

HOST = make_plugin_manager(autoload=False)


def member(node_id: str, state: MemberState = MemberState.ALIVE, **tags: str) -> Member:
    tags.setdefault("role", "worker")
    return Member(id=node_id, address=("10.0.0.1", 7000 + len(node_id)), tags=tags, state=state)


def registry(*members: Member, strategy: str = "round-robin", **kwargs) -> WorkerRegistry:
    reg = WorkerRegistry(None, strategy=strategy, plugins=HOST, rng=random.Random(0), **kwargs)
    for m in members:
        reg.apply(MemberJoined(at=0.0, member=m))
    return reg


def picks(reg: WorkerRegistry, n: int = 30, filter: str | None = None) -> set[str]:
    return {reg.select_worker(filter).node_id for _ in range(n)}


# -- TagFilter ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("role=worker", (("role", "worker"),)),
        ("role=worker,zone=a", (("role", "worker"), ("zone", "a"))),
        ("zone=a,role=worker", (("role", "worker"), ("zone", "a"))),
        ("  role = worker ,  zone=a  ", (("role", "worker"), ("zone", "a"))),
        ("gpu=true", (("gpu", "true"),)),
        ("role=worker,role=worker", (("role", "worker"),)),
        ("rpcnet.health=healthy", (("rpcnet.health", "healthy"),)),
        ("*", ()),
        (" * ", ()),
    ],
)
def test_tag_filter_parses(text, terms):
    assert TagFilter.parse(text).terms == terms


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty tag filter"),
        ("   ", "empty tag filter"),
        ("role", "term 'role' has no '='"),
        ("role=worker,zone", "term 'zone' has no '='"),
        ("=worker", "term '=worker' has an empty key"),
        ("role=", "term 'role=' has an empty value"),
        ("role=worker,", "has an empty term"),
        ("role=worker,,zone=a", "has an empty term"),
        ("a=b=c", "term 'a=b=c' has more than one '='"),
        ("my role=worker", "whitespace inside its key or value"),
        ("role=big worker", "whitespace inside its key or value"),
        ("zone=a,zone=b", "key 'zone' is given two values, 'a' and 'b'"),
    ],
)
def test_a_malformed_tag_filter_is_a_clear_error(text, problem):
    with pytest.raises(TagFilterError) as info:
        TagFilter.parse(text)
    message = str(info.value)
    assert problem in message
    assert f"invalid tag filter {text!r}" in message or "empty tag filter" in message
    assert "e.g. 'role=worker,zone=a'" in message
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)


def test_a_filter_that_is_not_a_string_is_an_error():
    with pytest.raises(TagFilterError, match="a tag filter is a string"):
        TagFilter.parse(3)  # type: ignore[arg-type]


def test_every_term_must_match_exactly():
    f = TagFilter.parse("role=worker,zone=a")
    assert f.matches({"role": "worker", "zone": "a", "gpu": "true"})
    assert not f.matches({"role": "worker", "zone": "b"})
    assert not f.matches({"role": "worker"})
    assert TagFilter.parse("gpu=true").matches({"gpu": "true"})
    assert not TagFilter.parse("gpu=true").matches({"gpu": "True"})
    assert TagFilter.parse("*").matches({})
    assert str(TagFilter.parse(" zone=a , role=worker")) == "role=worker,zone=a"
    assert TagFilter.of({"zone": "a", "role": "worker"}) == TagFilter.parse("role=worker,zone=a")


# -- WorkerStats -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_in_flight_counts_begun_calls_not_yet_ended():
    stats = WorkerStats(clock=Clock())
    stats.begin()
    stats.begin()
    assert stats.in_flight == 2
    stats.end(True, 0.1)
    assert stats.in_flight == 1
    stats.end(False, 0.1)
    assert stats.in_flight == 0
    with pytest.raises(RuntimeError, match="without a matching begin"):
        stats.end(True, 0.1)


def test_ewma_latency():
    stats = WorkerStats(clock=Clock(), alpha=0.5)
    for latency in (0.100, 0.200, 0.050):
        stats.begin()
        stats.end(True, latency)
    # 0.1, then 0.1 + 0.5 * (0.2 - 0.1) = 0.15, then 0.15 + 0.5 * (0.05 - 0.15) = 0.10
    assert stats.ewma_latency == pytest.approx(0.10)


def test_a_fast_failure_does_not_make_a_worker_look_fast_but_a_slow_one_makes_it_look_slow():
    stats = WorkerStats(clock=Clock(), alpha=0.5)
    stats.begin()
    stats.end(True, 0.100)
    stats.begin()
    stats.end(False, 0.001)
    assert stats.ewma_latency == pytest.approx(0.100)
    stats.begin()
    stats.end(False, 0.300)
    assert stats.ewma_latency == pytest.approx(0.200)


def test_recent_errors_age_out_of_the_window():
    clock = Clock()
    stats = WorkerStats(clock=clock, window=10.0, buckets=10)
    for ok in (False, False, True):
        stats.begin()
        stats.end(ok, 0.01)
    assert stats.recent() == (3, 2)
    clock.now = 5.0
    stats.begin()
    stats.end(False, 0.01)
    assert (stats.recent_calls, stats.recent_errors) == (4, 3)
    clock.now = 10.5  # the first three are older than the window now
    assert stats.recent() == (1, 1)
    clock.now = 15.5
    assert stats.recent() == (0, 0)


async def test_track_counts_the_block_as_one_call():
    clock = Clock()
    stats = WorkerStats(clock=clock)
    with stats.track():
        assert stats.in_flight == 1
        clock.now = 0.25
    assert (stats.in_flight, stats.ewma_latency, stats.recent()) == (0, 0.25, (1, 0))
    with pytest.raises(UnavailableError), stats.track():
        raise UnavailableError("worker down")
    assert stats.recent() == (2, 1)
    with pytest.raises(NotFoundError), stats.track():  # an answer, not a failure
        raise NotFoundError("no such key")
    assert stats.recent() == (3, 1)
    with pytest.raises(asyncio.CancelledError), stats.track():  # the caller gave up: no verdict
        raise asyncio.CancelledError()
    assert (stats.in_flight, stats.recent()) == (0, (3, 1))


# -- WorkerRegistry: routing and eligibility -------------------------------------------------


def test_the_default_filter_picks_workers_only():
    reg = registry(member("w1"), member("w2"), member("c1", role="client"))
    assert picks(reg) == {"w1", "w2"}
    assert [w.node_id for w in reg.workers()] == ["w1", "w2"]


def test_tag_routing():
    reg = registry(member("a1", zone="a"), member("a2", zone="a", gpu="true"), member("b1", zone="b", gpu="true"))
    assert picks(reg, filter="role=worker,zone=a") == {"a1", "a2"}
    assert picks(reg, filter="gpu=true") == {"a2", "b1"}
    assert picks(reg, filter="zone=b , gpu=true") == {"b1"}
    assert [w.node_id for w in reg.workers("zone=a")] == ["a1", "a2"]


def test_round_robin_through_the_registry_is_exact_per_filter():
    reg = registry(*(member(f"w{i}", zone="a" if i < 3 else "b") for i in range(6)))
    seq_a = [reg.select_worker("zone=a").node_id for _ in range(6)]
    reg.select_worker("zone=b")  # another filter does not disturb zone=a's rotation
    seq_a += [reg.select_worker("zone=a").node_id for _ in range(3)]
    assert sorted(seq_a[:3]) == ["w0", "w1", "w2"]
    assert seq_a == seq_a[:3] * 3


def test_suspect_members_are_not_chosen_and_return_on_recovery():
    w1, w2 = member("w1"), member("w2")
    reg = registry(w1, w2)
    reg.apply(MemberSuspect(at=1.0, member=member("w2", MemberState.SUSPECT)))
    assert picks(reg) == {"w1"}
    reg.stats("w2")  # still known: a suspect keeps its stats
    reg.apply(MemberRecovered(at=2.0, member=w2))
    assert picks(reg) == {"w1", "w2"}


@pytest.mark.parametrize("event", [MemberFailed, MemberLeft])
def test_failed_and_left_members_are_removed(event):
    reg = registry(member("w1"), member("w2"))
    reg.apply(event(at=1.0, member=member("w2", MemberState.FAILED if event is MemberFailed else MemberState.LEFT)))
    assert picks(reg) == {"w1"}
    with pytest.raises(KeyError, match="no known member 'w2'"):
        reg.stats("w2")


def test_failed_or_suspect_members_are_never_picked_by_any_strategy():
    for strategy in ("round-robin", "random", "least-connections"):
        reg = registry(member("up"), member("sus"), member("down"), strategy=strategy)
        reg.apply(MemberSuspect(at=1.0, member=member("sus", MemberState.SUSPECT)))
        reg.apply(MemberFailed(at=1.0, member=member("down", MemberState.FAILED)))
        # Make the others look idle next to "up", which least-connections would otherwise avoid.
        for _ in range(5):
            reg.stats("up").begin()
        assert picks(reg, 50) == {"up"}, strategy


def test_an_unhealthy_worker_is_not_chosen_and_comes_back_when_it_recovers():
    reg = registry(member("w1"), member("w2"))
    reg.apply(MemberTagsUpdated(at=1.0, member=member("w2", **{"rpcnet.health": "unhealthy"})))
    assert picks(reg) == {"w1"}
    assert [w.node_id for w in reg.workers()] == ["w1"]
    reg.apply(MemberTagsUpdated(at=2.0, member=member("w2", **{"rpcnet.health": "healthy"})))
    assert picks(reg) == {"w1", "w2"}


def test_a_degraded_worker_is_chosen_only_when_no_healthy_one_matches():
    reg = registry(member("w1", zone="a"), member("w2", zone="a", **{"rpcnet.health": "degraded"}),
                   member("w3", zone="b", **{"rpcnet.health": "degraded"}))
    assert picks(reg, filter="zone=a") == {"w1"}
    assert picks(reg, filter="zone=b") == {"w3"}
    reg.apply(MemberSuspect(at=1.0, member=member("w1", MemberState.SUSPECT, zone="a")))
    assert picks(reg, filter="zone=a") == {"w2"}
    assert {w.node_id: w.health.value for w in reg.workers()} == {"w2": "degraded", "w3": "degraded"}


def test_avoided_workers_are_skipped_unless_nobody_else_is_left():
    reg = registry(member("w1"), member("w2"), member("w3", **{"rpcnet.health": "degraded"}))
    assert {reg.select_worker(avoid={"w1"}).node_id for _ in range(10)} == {"w2"}
    # Every healthy worker avoided: a degraded one is better than a retry on the same worker.
    assert {reg.select_worker(avoid={"w1", "w2"}).node_id for _ in range(10)} == {"w3"}
    # Everyone avoided: the balancer chooses among all healthy workers again.
    assert {reg.select_worker(avoid={"w1", "w2", "w3"}).node_id for _ in range(10)} == {"w1", "w2"}


def test_the_health_tag_name_is_configurable():
    reg = registry(member("w1", health="unhealthy"), member("w2"), health_tag="health")
    assert picks(reg) == {"w2"}


def test_tags_updated_moves_a_member_in_and_out_of_a_filter():
    reg = registry(member("w1", zone="a"), member("w2", zone="b"))
    reg.apply(MemberTagsUpdated(at=1.0, member=member("w2", zone="a")))
    assert picks(reg, filter="zone=a") == {"w1", "w2"}
    reg.apply(MemberTagsUpdated(at=2.0, member=member("w1", role="client", zone="a")))
    assert picks(reg, filter="zone=a,role=worker") == {"w2"}


def test_other_events_are_ignored():
    reg = registry(member("w1"))
    reg.apply(PartitionDetected(at=1.0, policy="keep-majority", reachable=1, known=3))
    assert picks(reg) == {"w1"}


def test_least_connections_through_the_registry_follows_the_stats_it_keeps():
    reg = registry(member("w1"), member("w2"), member("w3"), strategy="least-connections")
    reg.stats("w1").begin()
    reg.stats("w2").begin()
    assert picks(reg, 10) == {"w3"}
    reg.stats("w3").begin()
    reg.stats("w3").begin()
    reg.stats("w1").end(True, 0.01)
    assert picks(reg, 10) == {"w1"}


def test_a_fail_fast_worker_gets_traffic_again_once_its_errors_age_out():
    clock = Clock()
    reg = registry(member("flaky"), member("steady"), strategy="least-connections", clock=clock, error_window=10.0)
    for _ in range(5):
        reg.stats("flaky").begin()
        reg.stats("flaky").end(False, 0.001)
    reg.stats("steady").begin()
    assert picks(reg, 10) == {"steady"}
    clock.now = 10.5  # nothing else happened: only time moved the errors out of the window
    assert picks(reg, 10) == {"flaky"}
    assert reg.workers()[0].recent_errors == 0


# -- errors ----------------------------------------------------------------------------------


def test_no_match_names_the_filter():
    reg = registry(member("w1", zone="a"))
    with pytest.raises(NoWorkerError) as info:
        reg.select_worker("zone=b")
    assert isinstance(info.value, UnavailableError)
    assert "no available worker matches tag filter 'role=worker,zone=b'" not in str(info.value)
    assert "no available worker matches tag filter 'zone=b'" in str(info.value)
    assert "none of the 1 known member(s) has these tags" in str(info.value)
    assert info.value.filter == TagFilter.parse("zone=b")


def test_matching_members_that_cannot_be_chosen_are_counted_in_the_error():
    reg = registry(member("w1"), member("w2"), member("w3"))
    reg.apply(MemberSuspect(at=1.0, member=member("w1", MemberState.SUSPECT)))
    reg.apply(MemberTagsUpdated(at=1.0, member=member("w2", **{"rpcnet.health": "unhealthy"})))
    reg.apply(MemberLeft(at=1.0, member=member("w3", MemberState.LEFT)))
    with pytest.raises(UnavailableError, match=r"'role=worker': 2 member\(s\) match but 1 are suspect and 1 report unhealthy"):
        reg.select_worker()


def test_an_empty_registry_says_so():
    with pytest.raises(UnavailableError, match="none of the 0 known member"):
        registry().select_worker()


def test_a_malformed_filter_is_an_error_at_each_entry_point():
    with pytest.raises(TagFilterError, match="term 'zone' has no '='"):
        registry(filter="role=worker,zone")
    reg = registry(member("w1"))
    with pytest.raises(TagFilterError, match="has an empty key"):
        reg.select_worker("=a")
    with pytest.raises(TagFilterError, match="has an empty value"):
        reg.workers("zone=")
    with pytest.raises(TagFilterError, match="given two values"):
        reg.subscribe("zone=a,zone=b")


def test_an_unknown_strategy_fails_when_the_registry_is_built():
    with pytest.raises(UnknownStrategyError, match="unknown load-balancer strategy 'round-robbin'.*'round-robin'"):
        registry(strategy="round-robbin")


def test_a_balancer_that_returns_a_stranger_is_caught():
    from rpcnet import hookimpl
    from rpcnet.balancing import LoadBalancer, WorkerView

    class Stranger(LoadBalancer):
        name = "stranger"

        def select(self, workers):
            return WorkerView(node_id="nobody", address=("10.0.0.9", 1))

    class Plugin:
        @hookimpl
        def rpcnet_register_load_balancers(self, register):
            register("stranger", Stranger)

    host = make_plugin_manager(plugins=[("stranger-plugin", Plugin())], autoload=False)
    reg = WorkerRegistry(None, strategy="stranger", plugins=host)
    reg.apply(MemberJoined(at=0.0, member=member("w1")))
    with pytest.raises(InternalError, match="not one of the workers it was given"):
        reg.select_worker()


# -- snapshots and subscriptions -----------------------------------------------------------


def test_sync_loads_a_snapshot_and_drops_what_is_gone():
    reg = registry(member("old"))
    reg.sync([member("w1"), member("w2", MemberState.SUSPECT), member("w3", MemberState.FAILED),
              member("w4", MemberState.LEFT)])
    assert picks(reg) == {"w1"}
    reg.stats("w2")
    for gone in ("old", "w3", "w4"):
        with pytest.raises(KeyError):
            reg.stats(gone)


async def next_event(subscription, timeout: float = 5.0):
    return await asyncio.wait_for(anext(subscription), timeout)


async def test_subscribe_yields_existing_then_added_and_removed_workers():
    reg = registry(member("w1"), member("c1", role="client"))
    sub = reg.subscribe()
    first = await next_event(sub)
    assert (type(first), first.worker.node_id, first.reason) == (WorkerAdded, "w1", "existing")
    reg.apply(MemberJoined(at=1.0, member=member("w2")))
    reg.apply(MemberJoined(at=1.0, member=member("c2", role="client")))  # not a worker: no event
    reg.apply(MemberSuspect(at=2.0, member=member("w2", MemberState.SUSPECT)))  # still a worker: no event
    reg.apply(MemberFailed(at=3.0, member=member("w2", MemberState.FAILED)))
    reg.apply(MemberTagsUpdated(at=4.0, member=member("c1", role="worker")))
    reg.apply(MemberTagsUpdated(at=5.0, member=member("w1", role="client")))
    reg.apply(MemberLeft(at=6.0, member=member("c1", MemberState.LEFT)))
    seen = [await next_event(sub) for _ in range(5)]
    assert [(type(e).__name__, e.worker.node_id, e.reason) for e in seen] == [
        ("WorkerAdded", "w2", "joined"),
        ("WorkerRemoved", "w2", "failed"),
        ("WorkerAdded", "c1", "tags-updated"),
        ("WorkerRemoved", "w1", "tags-updated"),
        ("WorkerRemoved", "c1", "left"),
    ]
    assert seen[3].worker.tags["role"] == "worker"  # the worker as it was when it left the set
    await reg.close()
    with pytest.raises(StopAsyncIteration):
        await next_event(sub)


async def test_a_subscription_can_watch_another_filter_and_skip_existing_workers():
    reg = registry(member("a1", zone="a"))
    sub = reg.subscribe("zone=b", include_existing=False)
    reg.apply(MemberJoined(at=1.0, member=member("a2", zone="a")))
    reg.apply(MemberJoined(at=1.0, member=member("b1", zone="b")))
    event = await next_event(sub)
    assert (type(event), event.worker.node_id) == (WorkerAdded, "b1")
    async with sub:
        pass
    with pytest.raises(StopAsyncIteration):
        await next_event(sub)


# -- following a source -----------------------------------------------------------------------


class FakeCluster:
    """The part of the cluster facade the registry uses: a snapshot and an event stream."""

    def __init__(self, members: list[Member], *, as_context_manager: bool) -> None:
        self._members = members
        self.queues: list[asyncio.Queue] = []
        self.as_context_manager = as_context_manager
        self.closed = 0

    def members(self) -> list[Member]:
        return list(self._members)

    def subscribe(self):
        queue: asyncio.Queue = asyncio.Queue()
        self.queues.append(queue)
        cluster = self

        class Events:
            def __aiter__(self) -> AsyncIterator:
                return self

            async def __anext__(self):
                event = await queue.get()
                if event is None:
                    raise StopAsyncIteration
                return event

            async def aclose(self) -> None:
                cluster.closed += 1

        if not self.as_context_manager:
            return Events()

        class Subscription:
            async def __aenter__(self):
                return Events()

            async def __aexit__(self, *exc):
                cluster.closed += 1

        return Subscription()

    def publish(self, event) -> None:
        for queue in self.queues:
            queue.put_nowait(event)


@pytest.mark.parametrize("as_context_manager", [False, True])
async def test_the_registry_follows_the_cluster_events_without_polling(as_context_manager):
    cluster = FakeCluster([member("w1"), member("w2", MemberState.FAILED)], as_context_manager=as_context_manager)
    async with WorkerRegistry(cluster, plugins=HOST, rng=random.Random(0)) as reg:
        assert len(cluster.queues) == 1
        assert picks(reg) == {"w1"}  # the snapshot is loaded by the time start() returns
        sub = reg.subscribe(include_existing=False)
        cluster.publish(MemberJoined(at=1.0, member=member("w3")))
        assert (await next_event(sub)).worker.node_id == "w3"
        assert picks(reg) == {"w1", "w3"}
        cluster.publish(MemberFailed(at=2.0, member=member("w1", MemberState.FAILED)))
        assert isinstance(await next_event(sub), WorkerRemoved)
        assert picks(reg) == {"w3"}
    assert cluster.closed == 1


async def test_run_without_a_source_is_an_error():
    with pytest.raises(RuntimeError, match="no source"):
        await registry().start()
