"""The alive / suspect / failed / left precedence rules, property-tested."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rpcnet_swim.messages import Alive, Dead, Suspect
from rpcnet_swim.precedence import RANK, Verdict, judge, refuted_incarnation, transition_event, update_state

from rpcnet.membership import MemberState

STATES = list(MemberState)
states = st.sampled_from(STATES)
incarnations = st.integers(min_value=0, max_value=20)
claims = st.tuples(states, incarnations)


def fold(start: tuple[MemberState, int], updates: list[tuple[MemberState, int]]) -> tuple[MemberState, int]:
    state, incarnation = start
    for claimed, claimed_incarnation in updates:
        if judge(state, incarnation, claimed, claimed_incarnation) is Verdict.APPLY:
            state, incarnation = claimed, claimed_incarnation
    return state, incarnation


@given(st.lists(claims, max_size=12), st.randoms(use_true_random=False))
def test_every_order_of_the_same_updates_ends_in_the_same_state(updates: list[tuple[MemberState, int]], rnd) -> None:
    start = (MemberState.ALIVE, 0)
    shuffled = list(updates)
    rnd.shuffle(shuffled)
    final = fold(start, updates)
    assert fold(start, shuffled) == final
    # ... and that state is the greatest claim by (incarnation, rank).
    best = max([start, *updates], key=lambda c: (c[1], RANK[c[0]]))
    assert final == best


@given(states, incarnations, states, incarnations)
def test_an_older_incarnation_never_changes_a_member(current, current_inc, claimed, claimed_inc) -> None:
    verdict = judge(current, current_inc, claimed, claimed_inc)
    if claimed_inc < current_inc:
        assert verdict is Verdict.IGNORE


@given(st.sampled_from([MemberState.SUSPECT, MemberState.FAILED]), incarnations, incarnations)
def test_only_a_higher_incarnation_brings_a_member_back_alive(current, current_inc, claimed_inc) -> None:
    verdict = judge(current, current_inc, MemberState.ALIVE, claimed_inc)
    assert (verdict is Verdict.APPLY) == (claimed_inc > current_inc)


@given(st.sampled_from([MemberState.ALIVE, MemberState.SUSPECT]), incarnations)
def test_failed_and_left_win_at_the_same_incarnation(current, incarnation) -> None:
    assert judge(current, incarnation, MemberState.FAILED, incarnation) is Verdict.APPLY
    assert judge(current, incarnation, MemberState.LEFT, incarnation) is Verdict.APPLY
    assert judge(MemberState.FAILED, incarnation, MemberState.LEFT, incarnation) is Verdict.APPLY
    assert judge(MemberState.LEFT, incarnation, MemberState.FAILED, incarnation) is Verdict.IGNORE


@given(incarnations)
def test_the_same_suspicion_again_is_a_confirmation(incarnation) -> None:
    assert judge(MemberState.SUSPECT, incarnation, MemberState.SUSPECT, incarnation) is Verdict.CONFIRM
    assert judge(MemberState.SUSPECT, incarnation, MemberState.SUSPECT, incarnation + 1) is Verdict.APPLY


@given(states, incarnations)
def test_only_alive_introduces_an_unknown_member(claimed, incarnation) -> None:
    expected = Verdict.APPLY if claimed is MemberState.ALIVE else Verdict.IGNORE
    assert judge(None, 0, claimed, incarnation) is expected


@given(incarnations, states, incarnations, st.booleans())
def test_the_local_node_is_never_changed_by_others_only_refutes(own, claimed, claimed_inc, same_content) -> None:
    verdict = judge(MemberState.ALIVE, own, claimed, claimed_inc, about_self=True, same_alive_content=same_content)
    assert verdict in (Verdict.IGNORE, Verdict.REFUTE)
    if claimed_inc < own:
        assert verdict is Verdict.IGNORE
    elif claimed is not MemberState.ALIVE:
        assert verdict is Verdict.REFUTE
    else:
        assert (verdict is Verdict.REFUTE) == (claimed_inc > own or not same_content)
    if verdict is Verdict.REFUTE:
        assert refuted_incarnation(own, claimed_inc) > max(own, claimed_inc)


@given(incarnations, states, incarnations)
def test_a_leaving_node_refutes_nothing(own, claimed, claimed_inc) -> None:
    assert judge(MemberState.ALIVE, own, claimed, claimed_inc, about_self=True, leaving=True) is Verdict.IGNORE


def test_dead_from_the_member_itself_means_left() -> None:
    assert update_state(Dead(node="a", incarnation=1, source="a")) is MemberState.LEFT
    assert update_state(Dead(node="a", incarnation=1, source="b")) is MemberState.FAILED
    assert update_state(Suspect(node="a", incarnation=1, source="b")) is MemberState.SUSPECT
    assert update_state(Alive(node="a", incarnation=1, address=("h", 1))) is MemberState.ALIVE


@pytest.mark.parametrize(
    ("previous", "new", "kind"),
    [
        (None, MemberState.ALIVE, "joined"),
        (MemberState.LEFT, MemberState.ALIVE, "joined"),
        (MemberState.ALIVE, MemberState.SUSPECT, "suspect"),
        (MemberState.SUSPECT, MemberState.ALIVE, "recovered"),
        (MemberState.FAILED, MemberState.ALIVE, "recovered"),
        (MemberState.SUSPECT, MemberState.FAILED, "failed"),
        (MemberState.ALIVE, MemberState.FAILED, "failed"),
        (MemberState.ALIVE, MemberState.LEFT, "left"),
        (MemberState.SUSPECT, MemberState.LEFT, "left"),
        (MemberState.FAILED, MemberState.LEFT, "left"),
    ],
)
def test_transition_events(previous, new, kind) -> None:
    assert transition_event(previous, new) == kind


@pytest.mark.parametrize("state", STATES)
def test_no_event_without_a_state_change(state) -> None:
    assert transition_event(state, state) is None


def test_every_reachable_transition_has_an_event() -> None:
    for previous, new in itertools.product([None, *STATES], STATES):
        if previous is new:
            continue
        reachable = any(
            judge(previous, inc, new, claimed_inc) is Verdict.APPLY for inc in range(3) for claimed_inc in range(3)
        )
        if reachable:
            assert transition_event(previous, new) is not None, (previous, new)
