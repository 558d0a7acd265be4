"""The bundled balancers: each strategy's distribution, seeded so every run sees the same draws."""

from __future__ import annotations

import collections
import random

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rpcnet_balancers import LeastConnections, RandomChoice, RoundRobin

from rpcnet import make_plugin_manager
from rpcnet.balancing import WorkerView, effective_load
from rpcnet.cluster.workers import WorkerStats


def worker(node_id: str, *, in_flight: int = 0, latency: float = 0.0, errors: int = 0, calls: int = 0) -> WorkerView:
    return WorkerView(
        node_id=node_id,
        address=("127.0.0.1", 7000),
        in_flight=in_flight,
        ewma_latency=latency,
        recent_errors=errors,
        recent_calls=calls,
    )


def view(node_id: str, stats: WorkerStats) -> WorkerView:
    calls, errors = stats.recent()
    return worker(node_id, in_flight=stats.in_flight, latency=stats.ewma_latency, errors=errors, calls=calls)


# -- registration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"), [("round-robin", RoundRobin), ("random", RandomChoice), ("least-connections", LeastConnections)]
)
def test_each_balancer_is_chosen_by_name_through_the_bundled_entry_point(name, cls):
    host = make_plugin_manager(autoload=False)
    entry = host.registry.entry("load-balancer", name)
    assert (entry.cls, entry.plugin, entry.distribution) == (cls, "balancers", "rpcnet")
    balancer = host.create("load-balancer", name, rng=random.Random(0))
    assert type(balancer) is cls


@pytest.mark.parametrize("cls", [RoundRobin, RandomChoice, LeastConnections])
def test_no_worker_is_an_error(cls):
    with pytest.raises(ValueError, match="at least one eligible worker"):
        cls(rng=random.Random(0)).select([])


@pytest.mark.parametrize("cls", [RoundRobin, RandomChoice, LeastConnections])
def test_no_balancer_touches_the_global_random_state(cls):
    random.seed(5)
    state = random.getstate()
    balancer = cls(rng=random.Random(1))
    workers = [worker(f"w{i}") for i in range(5)]
    for _ in range(50):
        balancer.select(workers)
    assert random.getstate() == state


# -- round-robin ------------------------------------------------------------------------


def test_round_robin_visits_every_worker_once_per_cycle_in_id_order():
    workers = [worker(n) for n in ("a", "b", "c", "d", "e")]
    balancer = RoundRobin(rng=random.Random(3))
    picks = [balancer.select(workers).node_id for _ in range(15)]
    start = "abcde".index(picks[0])
    assert picks == [("abcde" * 4)[start + i] for i in range(15)]


def test_round_robin_does_not_depend_on_the_order_it_is_given():
    ordered = [worker(n) for n in "abcd"]
    shuffled = [ordered[i] for i in (2, 0, 3, 1)]
    one, two = RoundRobin(rng=random.Random(9)), RoundRobin(rng=random.Random(9))
    assert [one.select(ordered).node_id for _ in range(8)] == [two.select(shuffled).node_id for _ in range(8)]


def test_round_robin_starts_at_a_seeded_random_worker():
    workers = [worker(n) for n in "abcdef"]
    starts = {RoundRobin(rng=random.Random(seed)).select(workers).node_id for seed in range(30)}
    assert len(starts) > 1
    assert RoundRobin(rng=random.Random(4)).select(workers) is RoundRobin(rng=random.Random(4)).select(workers)


def test_round_robin_keeps_its_place_when_workers_join_and_leave():
    balancer = RoundRobin(rng=random.Random(0))
    balancer.last = "b"  # as if "b" was just picked
    assert balancer.select([worker(n) for n in "abcd"]).node_id == "c"
    # "c" fails; "bb" joins between "b" and "c": the rotation goes on after "c", not from the start.
    assert balancer.select([worker(n) for n in ("a", "b", "bb", "d")]).node_id == "d"
    assert balancer.select([worker(n) for n in ("a", "b", "bb", "d")]).node_id == "a"
    assert balancer.select([worker(n) for n in ("a", "b", "bb", "d")]).node_id == "b"
    assert balancer.select([worker(n) for n in ("a", "b", "bb", "d")]).node_id == "bb"


# -- random ------------------------------------------------------------------------------


def test_random_spreads_uniformly_within_statistical_bounds():
    n, picks = 5, 50_000
    workers = [worker(f"w{i}") for i in range(n)]
    balancer = RandomChoice(rng=random.Random(2024))
    counts = collections.Counter(balancer.select(workers).node_id for _ in range(picks))
    expected = picks / n
    chi_square = sum((counts[w.node_id] - expected) ** 2 / expected for w in workers)
    # 18.47 is the 0.999 quantile of chi-square with 4 degrees of freedom.
    assert chi_square < 18.47, counts
    assert set(counts) == {w.node_id for w in workers}


def test_random_with_the_same_seed_makes_the_same_picks():
    workers = [worker(f"w{i}") for i in range(7)]
    one, two = RandomChoice(rng=random.Random(11)), RandomChoice(rng=random.Random(11))
    assert [one.select(workers).node_id for _ in range(100)] == [two.select(workers).node_id for _ in range(100)]


# -- least-connections --------------------------------------------------------------------


def test_least_connections_counts_calls_in_flight_not_assignments():
    stats = {"busy": WorkerStats(clock=lambda: 0.0), "served-many": WorkerStats(clock=lambda: 0.0)}
    for _ in range(100):  # a hundred calls, all finished
        stats["served-many"].begin()
        stats["served-many"].end(True, 0.01)
    stats["busy"].begin()  # one call, still running
    balancer = LeastConnections(rng=random.Random(0))
    assert balancer.select([view(n, s) for n, s in stats.items()]).node_id == "served-many"


def test_least_connections_follows_in_flight_counts_with_one_slow_worker():
    # One call per tick; calls to "slow" take 10 ticks, to the others 2.
    durations = {"fast-1": 2, "fast-2": 2, "slow": 10}
    stats = {n: WorkerStats(clock=lambda: 0.0) for n in durations}
    finishing: list[tuple[int, str]] = []
    balancer = LeastConnections(rng=random.Random(7))
    picks = collections.Counter()
    for tick in range(600):
        for done in [f for f in finishing if f[0] == tick]:
            finishing.remove(done)
            stats[done[1]].end(True, durations[done[1]])
        views = [view(n, s) for n, s in stats.items()]
        chosen = balancer.select(views)
        assert chosen.in_flight == min(v.in_flight for v in views)
        picks[chosen.node_id] += 1
        stats[chosen.node_id].begin()
        finishing.append((tick + durations[chosen.node_id], chosen.node_id))
    # Each fast worker keeps about one call in flight, the slow one about one
    # in its 10-tick call: it gets about a fifth of what a fast worker gets.
    assert picks["slow"] < picks["fast-1"] / 3 and picks["slow"] < picks["fast-2"] / 3, picks
    assert abs(picks["fast-1"] - picks["fast-2"]) < 0.1 * picks["fast-1"], picks
    assert picks["slow"] > 0


def test_least_connections_breaks_ties_in_proportion_to_speed():
    fast, slow = worker("fast", in_flight=2, latency=0.01), worker("slow", in_flight=2, latency=0.05)
    picks = collections.Counter(LeastConnections(rng=random.Random(s)).select([slow, fast]).node_id for s in range(600))
    # Weights 1/0.01 : 1/0.05 = 5 : 1, so about 500 : 100; the slow one is never starved.
    assert 440 <= picks["fast"] <= 560 and picks["slow"] >= 40, picks
    twins = [worker("a", in_flight=1), worker("b", in_flight=1), worker("c", in_flight=3)]
    picks = collections.Counter(LeastConnections(rng=random.Random(s)).select(twins).node_id for s in range(200))
    assert set(picks) == {"a", "b"} and min(picks.values()) > 60, picks
    # No figure yet counts as the fastest: a fresh worker is not avoided.
    fresh = [worker("new", in_flight=0, latency=0.0), worker("old", in_flight=0, latency=0.02)]
    picks = collections.Counter(LeastConnections(rng=random.Random(s)).select(fresh).node_id for s in range(200))
    assert picks["new"] >= 60 and picks["old"] >= 60, picks


def test_a_worker_that_only_fails_fast_does_not_look_idle():
    healthy = [worker("ok-1", in_flight=2, calls=40), worker("ok-2", in_flight=3, calls=40)]
    failing = worker("fails-fast", in_flight=0, errors=8, calls=8)
    assert LeastConnections(rng=random.Random(0)).select([*healthy, failing]).node_id == "ok-1"
    # The same worker without its errors is the idle one, and wins.
    idle = attrs.evolve(failing, recent_errors=0)
    assert LeastConnections(rng=random.Random(0)).select([*healthy, idle]).node_id == "fails-fast"


def test_a_fail_fast_worker_gets_a_small_share_of_the_traffic():
    # Calls to "broken" fail at once; calls to the others succeed after 3 ticks.
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    stats = {n: WorkerStats(clock=clock, window=10.0) for n in ("ok-1", "ok-2", "broken")}
    finishing: list[tuple[int, str]] = []
    balancer = LeastConnections(rng=random.Random(1))
    picks = collections.Counter()
    naive_would_pick_broken = 0
    for tick in range(300):
        now[0] = tick * 0.01  # 3 s in all: inside one error window
        for done in [f for f in finishing if f[0] == tick]:
            finishing.remove(done)
            stats[done[1]].end(True, 0.03)
        views = [view(n, s) for n, s in stats.items()]
        naive = min(views, key=lambda v: (v.in_flight, v.ewma_latency))
        naive_would_pick_broken += naive.node_id == "broken"
        chosen = balancer.select(views)
        picks[chosen.node_id] += 1
        stats[chosen.node_id].begin()
        if chosen.node_id == "broken":
            stats["broken"].end(False, 0.0001)
        else:
            finishing.append((tick + 3, chosen.node_id))
    assert picks["broken"] < 0.1 * 300, picks
    # Counting in-flight calls alone, the broken worker would look idle almost every time.
    assert naive_would_pick_broken > 0.5 * 300


@pytest.mark.parametrize(
    ("in_flight", "errors", "calls", "load"),
    [
        (0, 0, 0, 0.0),
        (5, 0, 100, 5.0),
        (0, 1, 1, 1.0),  # one failure out of one call: p = 1/2
        (0, 9, 9, 9.0),  # only failures: about one phantom call per failure
        (1, 9, 9, 19.0),
        (3, 1, 99, 4 / 0.99 - 1),  # a rare error barely counts
    ],
)
def test_effective_load(in_flight, errors, calls, load):
    assert effective_load(worker("w", in_flight=in_flight, errors=errors, calls=calls)) == pytest.approx(load)


@given(
    loads=st.lists(
        st.tuples(st.integers(0, 50), st.floats(0, 1), st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=12
    ),
    seed=st.integers(0, 2**32),
)
def test_least_connections_picks_a_worker_with_the_lowest_load(loads, seed):
    workers = [
        worker(f"w{i}", in_flight=f, latency=lat, errors=min(e, c), calls=c) for i, (f, lat, e, c) in enumerate(loads)
    ]
    chosen = LeastConnections(rng=random.Random(seed)).select(workers)
    assert chosen in workers
    assert effective_load(chosen) == min(effective_load(w) for w in workers)
