"""Partition policies: is the local node on the minority side of its own view?"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rpcnet_swim import KeepMajority, NoPartitionPolicy, PartitionPolicy, StaticQuorum, make_partition_policy
from rpcnet_swim.options import PARTITION_POLICIES


def ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(count)]


@pytest.mark.parametrize(
    ("alive", "unreachable", "minority"),
    [
        (1, 0, False),  # alone and nothing known: nothing to be a minority of
        (0, 1, True),
        (1, 1, None),  # exact split: decided by member ids (below)
        (2, 1, False),
        (1, 2, True),
        (3, 2, False),
        (2, 3, True),
        (5, 4, False),
        (4, 5, True),
        (26, 24, False),
        (24, 26, True),
        (1, 49, True),
        (50, 0, False),
        (2, 2, None),
        (25, 25, None),
    ],
)
def test_keep_majority_by_counts(alive: int, unreachable: int, minority: bool | None) -> None:
    reachable, failed = ids("r", alive), ids("f", unreachable)
    if minority is None:
        # The ids of the failed side ("f..") sort first: this side stands down ...
        assert KeepMajority().in_minority(reachable, failed) is True
        # ... and with the ids the other way round, it keeps going.
        assert KeepMajority().in_minority(ids("a", alive), ids("f", unreachable)) is False
    else:
        assert KeepMajority().in_minority(reachable, failed) is minority


@pytest.mark.parametrize(
    ("reachable", "failed", "minority"),
    [
        (["a", "b", "c"], ["d", "e"], False),
        (["d", "e"], ["a", "b", "c"], True),
        (["a", "b"], ["c", "d"], False),  # tie: the side with the lowest id stays
        (["c", "d"], ["a", "b"], True),
        (["b", "c"], ["a", "d"], True),  # the lowest id is what counts, not the most low ids
        (["a", "d"], ["b", "c"], False),
        (["a"], [], False),
        (["node-10"], ["node-9"], False),  # ids compare as strings
    ],
)
def test_keep_majority_tie_goes_to_the_side_with_the_lowest_id(reachable, failed, minority) -> None:
    assert KeepMajority().in_minority(reachable, failed) is minority


@given(st.sets(st.text(min_size=1, max_size=5), min_size=1, max_size=12), st.data())
def test_keep_majority_lets_exactly_one_side_of_a_clean_split_go_on(members: set[str], data: st.DataObject) -> None:
    ordered = sorted(members)
    side = set(data.draw(st.lists(st.sampled_from(ordered), unique=True)))
    other = members - side
    policy = KeepMajority()
    verdicts = {policy.in_minority(side, other), policy.in_minority(other, side)}
    assert verdicts == {True, False}, "never both in charge, never both standing down"


@given(st.lists(st.text(min_size=1, max_size=4), unique=True, max_size=10), st.data())
def test_keep_majority_ignores_the_order_and_kind_of_collection(members: list[str], data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(members)))
    reachable, failed = members[:cut], members[cut:]
    policy = KeepMajority()
    expected = policy.in_minority(reachable, failed)
    assert policy.in_minority(tuple(reversed(reachable)), set(failed)) is expected
    assert policy.in_minority(frozenset(reachable), list(reversed(failed))) is expected


@pytest.mark.parametrize(
    ("quorum", "alive", "unreachable", "minority"),
    [
        (3, 3, 4, False),  # a quorum is enough even when more are out of reach
        (3, 2, 0, True),  # and required even when nothing is out of reach
        (3, 4, 0, False),
        (1, 1, 10, False),
        (5, 4, 1, True),
        (5, 5, 0, False),
        (2, 1, 1, True),
    ],
)
def test_static_quorum_counts_reachable_members_only(quorum: int, alive: int, unreachable: int, minority: bool) -> None:
    assert StaticQuorum(quorum).in_minority(ids("r", alive), ids("f", unreachable)) is minority


def test_static_quorum_can_stop_both_sides() -> None:
    policy = StaticQuorum(3)
    left, right = ids("a", 2), ids("b", 2)
    assert policy.in_minority(left, right) and policy.in_minority(right, left)


@given(st.integers(min_value=0, max_value=20), st.integers(min_value=0, max_value=20))
def test_no_partition_policy_never_reports_one(alive: int, unreachable: int) -> None:
    assert NoPartitionPolicy().in_minority(ids("r", alive), ids("f", unreachable)) is False


def test_every_configurable_policy_name_builds_its_policy() -> None:
    built = {name: make_partition_policy(name, 2) for name in PARTITION_POLICIES}
    assert {name: type(policy) for name, policy in built.items()} == {
        "keep-majority": KeepMajority,
        "static-quorum": StaticQuorum,
        "none": NoPartitionPolicy,
    }
    assert all(policy.name == name for name, policy in built.items()), "events report the policy by this name"
    assert all(isinstance(policy, PartitionPolicy) for policy in built.values())


def test_partition_policy_by_name() -> None:
    assert isinstance(make_partition_policy("keep-majority"), KeepMajority)
    assert make_partition_policy("static-quorum", 4).quorum_size == 4
    assert isinstance(make_partition_policy("none"), NoPartitionPolicy)
    with pytest.raises(ValueError, match="keep-majority"):
        make_partition_policy("majority")
    with pytest.raises(ValueError, match="quorum_size"):
        make_partition_policy("static-quorum")
