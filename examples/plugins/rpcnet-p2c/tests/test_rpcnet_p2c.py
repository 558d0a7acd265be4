"""Behaviour of the p2c balancer, seeded so every run sees the same draws."""

from __future__ import annotations

import collections
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rpcnet_p2c import P2COptions, PowerOfTwoChoices

from rpcnet import make_plugin_manager
from rpcnet.balancing import WorkerView
from rpcnet.errors import ConfigError


def worker(node_id: str, in_flight: int = 0, latency: float = 0.0) -> WorkerView:
    return WorkerView(node_id=node_id, address=("127.0.0.1", 7000), in_flight=in_flight, ewma_latency=latency)


def p2c(seed: int = 0, **options) -> PowerOfTwoChoices:
    return PowerOfTwoChoices(P2COptions(**options), rng=random.Random(seed))


def test_one_worker_is_picked_without_drawing():
    rng = random.Random(3)
    state = rng.getstate()
    only = worker("only")
    assert PowerOfTwoChoices(rng=rng).select([only]) is only
    assert rng.getstate() == state


def test_no_worker_is_an_error():
    with pytest.raises(ValueError, match="at least one eligible worker"):
        p2c().select([])


@pytest.mark.parametrize("seed", range(20))
def test_of_two_workers_the_one_with_fewer_calls_in_flight_wins(seed):
    idle, busy = worker("idle", in_flight=1, latency=0.9), worker("busy", in_flight=2, latency=0.001)
    assert p2c(seed).select([busy, idle]) is idle


@pytest.mark.parametrize("seed", range(20))
def test_a_tie_in_flight_goes_to_the_lower_latency(seed):
    fast, slow = worker("fast", in_flight=3, latency=0.010), worker("slow", in_flight=3, latency=0.050)
    assert p2c(seed).select([slow, fast]) is fast


def test_a_full_tie_is_broken_by_the_injected_rng():
    twins = [worker("a"), worker("b")]
    picks = [p2c(seed).select(twins).node_id for seed in range(40)]
    assert set(picks) == {"a", "b"}
    # Same seed, same sequence.
    first, second = p2c(11), p2c(11)
    assert [first.select(twins).node_id for _ in range(50)] == [second.select(twins).node_id for _ in range(50)]


def test_it_never_uses_the_global_random_state():
    random.seed(5)
    state = random.getstate()
    balancer = p2c(1)
    for _ in range(100):
        balancer.select([worker(str(i), in_flight=i) for i in range(5)])
    assert random.getstate() == state


def test_pick_frequencies_follow_the_two_choices_law():
    # Two distinct workers drawn uniformly from n, the less loaded kept: the
    # worker ranked i (0 = least loaded) wins with probability (n-1-i)/C(n,2).
    n, picks = 6, 30_000
    workers = [worker(f"w{i}", in_flight=i) for i in range(n)]
    balancer = p2c(2024)
    counts = collections.Counter(balancer.select(workers).in_flight for _ in range(picks))
    pairs = math.comb(n, 2)
    for rank in range(n):
        expected = (n - 1 - rank) / pairs
        assert counts[rank] / picks == pytest.approx(expected, abs=0.01), (rank, counts)
    assert counts[n - 1] == 0  # the most loaded worker can never win a comparison


def test_more_choices_concentrate_on_the_least_loaded():
    workers = [worker(f"w{i}", in_flight=i) for i in range(3)]
    assert {p2c(seed, choices=3).select(workers).node_id for seed in range(30)} == {"w0"}


@given(
    loads=st.lists(st.tuples(st.integers(0, 50), st.floats(0, 1)), min_size=2, max_size=12),
    seed=st.integers(0, 2**32),
)
def test_the_pick_is_never_worse_than_every_other_worker(loads, seed):
    workers = [worker(f"w{i}", in_flight=f, latency=lat) for i, (f, lat) in enumerate(loads)]
    chosen = p2c(seed).select(workers)
    assert chosen in workers
    key = lambda w: (w.in_flight, w.ewma_latency)  # noqa: E731
    assert any(key(chosen) <= key(other) for other in workers if other is not chosen)


# -- as a strategy ---------------------------------------------------------------


def test_options_are_validated_through_the_plugin_host():
    host = make_plugin_manager()
    with pytest.raises(ConfigError, match="choices must be >= 2"):
        host.create("load-balancer", "p2c", {"choices": 1})
    with pytest.raises(ConfigError, match="unknown option 'choice' \\(did you mean 'choices'\\?\\)"):
        host.create("load-balancer", "p2c", {"choice": 3})
    assert host.create("load-balancer", "p2c").options == P2COptions(choices=2)
