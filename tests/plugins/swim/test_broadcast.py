"""The piggyback queue: retransmit limit, replacement, ordering, byte budget."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rpcnet_swim.broadcast import BroadcastQueue


def queue_of(*items: tuple[str, bytes]) -> BroadcastQueue:
    queue = BroadcastQueue()
    for key, data in items:
        queue.put(key, data)
    return queue


def test_empty_queue_hands_out_nothing() -> None:
    queue = BroadcastQueue()
    assert queue.take(1400, 4) == []
    assert len(queue) == 0 and "a" not in queue


@pytest.mark.parametrize("limit", [1, 2, 4, 12])
def test_each_update_is_handed_out_exactly_limit_times(limit: int) -> None:
    queue = queue_of(("a", b"alive-a"))
    handed_out = 0
    for _ in range(limit + 5):
        handed_out += queue.take(1400, limit).count(b"alive-a")
    assert handed_out == limit
    assert "a" not in queue and len(queue) == 0


def test_an_update_stays_queued_until_its_last_hand_out() -> None:
    queue = queue_of(("a", b"update"))
    for _ in range(2):
        assert queue.take(100, 3) == [b"update"]
        assert "a" in queue and len(queue) == 1
    assert queue.take(100, 3) == [b"update"]
    assert "a" not in queue and len(queue) == 0


def test_newer_update_about_a_member_replaces_the_older_one() -> None:
    queue = queue_of(("a", b"suspect-a"), ("b", b"alive-b"), ("a", b"alive-a-inc2"))
    assert len(queue) == 2
    taken = queue.take(1400, 4)
    assert sorted(taken) == [b"alive-a-inc2", b"alive-b"]
    assert b"suspect-a" not in taken


def test_replacement_gets_a_full_set_of_retransmits() -> None:
    queue = queue_of(("a", b"old"))
    assert queue.take(100, 3) == [b"old"]
    assert queue.take(100, 3) == [b"old"]
    queue.put("a", b"new")
    assert [queue.take(100, 3) for _ in range(4)] == [[b"new"], [b"new"], [b"new"], []]


def test_among_equally_sent_updates_the_newest_goes_first() -> None:
    queue = queue_of(("a", b"1111"), ("b", b"2222"), ("c", b"3333"))
    assert queue.take(4, 10) == [b"3333"]
    assert queue.take(12, 10) == [b"2222", b"1111", b"3333"]


def test_updates_sent_fewest_times_go_first() -> None:
    queue = queue_of(("a", b"aaaa"), ("b", b"bbbb"))
    assert queue.take(4, 10) == [b"bbbb"]  # b: 1 transmit, a: 0
    queue.put("c", b"cccc")  # c: 0
    # Fresh news (c, then a, both unsent) before b, already sent once.
    assert queue.take(8, 10) == [b"cccc", b"aaaa"]
    # All at one transmit: the newest (c) again; then b and a, which now have fewer than c.
    assert queue.take(4, 10) == [b"cccc"]
    assert queue.take(12, 10) == [b"bbbb", b"aaaa", b"cccc"]


def test_a_stale_update_still_gets_out_when_there_is_room() -> None:
    queue = queue_of(("old", b"o" * 10))
    for _ in range(3):
        queue.take(100, 10)
    queue.put("new", b"n" * 10)
    assert queue.take(20, 10) == [b"n" * 10, b"o" * 10]


def test_packing_respects_the_byte_budget() -> None:
    queue = queue_of(*((f"m{i}", bytes([i]) * 30) for i in range(10)))
    taken = queue.take(100, 4)
    assert len(taken) == 3 and sum(map(len, taken)) == 90
    assert len(queue) == 10, "nothing reached its limit"


def test_an_update_exactly_the_size_of_the_budget_fits() -> None:
    queue = queue_of(("a", b"x" * 64))
    assert queue.take(64, 4) == [b"x" * 64]
    assert queue.take(63, 4) == []


def test_an_update_too_big_for_the_room_left_is_skipped_for_smaller_ones() -> None:
    queue = queue_of(("small-old", b"s" * 10), ("big", b"B" * 80), ("medium", b"m" * 30))
    # Newest first: medium (30), then big does not fit in the 70 left, small (10) does.
    assert queue.take(100, 4) == [b"m" * 30, b"s" * 10]
    # The skipped update was not counted as sent: it leads the next round,
    # and the room it leaves goes to the next that fits.
    assert queue.take(100, 4) == [b"B" * 80, b"s" * 10]


def test_no_budget_hands_out_nothing_and_costs_no_retransmit() -> None:
    queue = queue_of(("a", b"update"))
    assert queue.take(0, 1) == []
    assert queue.take(-5, 1) == []
    assert queue.take(3, 1) == [], "larger than the room left"
    assert "a" in queue
    assert queue.take(6, 1) == [b"update"]
    assert "a" not in queue


def test_a_lower_limit_applies_to_updates_already_sent() -> None:
    # The limit grows and shrinks with the cluster; it is read at each hand-out.
    queue = queue_of(("a", b"update"))
    for _ in range(3):
        queue.take(100, 8)
    assert queue.take(100, 2) == [b"update"]
    assert "a" not in queue


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("put"), st.sampled_from("abcdef"), st.integers(min_value=1, max_value=60)),
            st.tuples(st.just("take"), st.integers(min_value=0, max_value=150), st.integers(min_value=1, max_value=5)),
        ),
        max_size=60,
    )
)
def test_queue_invariants_under_any_sequence_of_puts_and_takes(operations: list[tuple]) -> None:
    queue = BroadcastQueue()
    current: dict[str, bytes] = {}  # the latest update queued per member
    sent: Counter[bytes] = Counter()  # hand-outs of each distinct update
    version = 0
    for operation in operations:
        if operation[0] == "put":
            _, key, size = operation
            version += 1
            data = f"{key}:{version}:".encode().ljust(size + 8, b".")
            queue.put(key, data)
            current[key] = data
            continue
        _, budget, limit = operation
        live = set(current.values())
        taken = queue.take(budget, limit)
        assert sum(map(len, taken)) <= budget
        assert len(taken) == len(set(taken)), "an update at most once per datagram"
        assert set(taken) <= live, "only the latest update about a member goes out"
        sent.update(taken)
        for key, data in list(current.items()):
            if data in taken and sent[data] >= limit:
                assert key not in queue
                del current[key]
        assert len(queue) == len(current)
        assert all(key in queue for key in current)
