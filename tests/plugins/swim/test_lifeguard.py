"""Lifeguard's local state: the health score (Awareness) and suspicion timers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rpcnet_swim.lifeguard import Awareness, Suspicion

# -- Awareness ----------------------------------------------------------------

# memberlist's awareness_test.go: (delta applied, score after, 1 s probe interval scaled).
AWARENESS_STEPS = [
    (0, 0, 1.0),
    (-1, 0, 1.0),
    (-10, 0, 1.0),
    (1, 1, 2.0),
    (-1, 0, 1.0),
    (10, 7, 8.0),
    (-1, 6, 7.0),
    (-1, 5, 6.0),
    (-1, 4, 5.0),
    (-1, 3, 4.0),
    (-1, 2, 3.0),
    (-1, 1, 2.0),
    (-1, 0, 1.0),
    (-1, 0, 1.0),
]


def test_awareness_follows_memberlists_table() -> None:
    awareness = Awareness(8)
    for step, (delta, score, timeout) in enumerate(AWARENESS_STEPS):
        awareness.apply_delta(delta)
        assert (awareness.score, awareness.scale(1.0)) == (score, timeout), step


def test_awareness_starts_healthy() -> None:
    awareness = Awareness(8)
    assert awareness.score == 0
    assert awareness.scale(0.5) == 0.5, "a healthy node probes at the configured interval"


@pytest.mark.parametrize(("maximum", "ceiling"), [(1, 0), (2, 1), (3, 2), (8, 7)])
def test_awareness_score_stays_below_its_maximum(maximum: int, ceiling: int) -> None:
    awareness = Awareness(maximum)
    awareness.apply_delta(1_000)
    assert awareness.score == ceiling
    assert awareness.scale(1.0) == maximum, "the probe interval stretches to at most x maximum"
    awareness.apply_delta(-1_000)
    assert awareness.score == 0


@pytest.mark.parametrize(
    ("score", "interval", "expected"),
    [(0, 1.0, 1.0), (1, 1.0, 2.0), (3, 0.5, 2.0), (7, 0.5, 4.0), (7, 5.0, 40.0), (2, 0.25, 0.75)],
)
def test_awareness_scales_timeouts_by_score_plus_one(score: int, interval: float, expected: float) -> None:
    awareness = Awareness(8)
    awareness.apply_delta(score)
    assert awareness.scale(interval) == expected


@given(st.integers(min_value=1, max_value=16), st.lists(st.integers(min_value=-20, max_value=20), max_size=40))
def test_awareness_score_is_always_in_range(maximum: int, deltas: list[int]) -> None:
    awareness = Awareness(maximum)
    for delta in deltas:
        before = awareness.score
        awareness.apply_delta(delta)
        assert 0 <= awareness.score <= maximum - 1
        expected = min(max(before + delta, 0), maximum - 1)
        assert awareness.score == expected


# -- Suspicion ----------------------------------------------------------------


def make_suspicion(k: int = 3, minimum: float = 0.5, maximum: float = 2.0, start: float = 0.0, source: str = "me") -> Suspicion:
    return Suspicion(source=source, incarnation=1, k=k, minimum=minimum, maximum=maximum, start=start)


# memberlist's suspicion_test.go (TestSuspicion_Timer): k = 3, min 0.5 s, max 2 s;
# each row is the reports received after the first ("me"), with whether each was
# new information, and the timeout they leave.
TIMER_CASES = [
    ([], 2.0),
    ([("me", False), ("foo", True)], 1.25),
    ([("me", False), ("foo", True), ("foo", False), ("foo", False)], 1.25),
    ([("me", False), ("foo", True), ("bar", True)], 0.811),
    ([("me", False), ("foo", True), ("bar", True), ("baz", True)], 0.5),
    ([("me", False), ("foo", True), ("bar", True), ("baz", True), ("zoo", False)], 0.5),
]


@pytest.mark.parametrize(("reports", "timeout"), TIMER_CASES)
def test_suspicion_timer_follows_memberlists_table(reports: list[tuple[str, bool]], timeout: float) -> None:
    suspicion = make_suspicion(start=50.0)
    for source, new_info in reports:
        assert suspicion.confirm(source) is new_info, source
    assert suspicion.deadline == pytest.approx(50.0 + timeout, abs=1e-9)


# The timeout falls from max to min as log(c + 1) / log(k + 1), kept at millisecond precision.
@pytest.mark.parametrize(
    ("k", "minimum", "maximum", "timeouts"),
    [
        (1, 3.0, 18.0, [18.0, 3.0]),
        (2, 4.0, 24.0, [24.0, 11.381, 4.0]),  # the core's n = 10 LAN case with suspicion_mult 4
        (3, 2.0, 30.0, [30.0, 16.0, 7.81, 2.0]),
        (4, 3.0, 18.0, [18.0, 11.539, 7.76, 5.079, 3.0]),
        (5, 2.0, 30.0, [30.0, 19.168, 12.831, 8.336, 4.849, 2.0]),
    ],
)
def test_suspicion_timeout_falls_logarithmically_with_confirmations(
    k: int, minimum: float, maximum: float, timeouts: list[float]
) -> None:
    suspicion = make_suspicion(k=k, minimum=minimum, maximum=maximum, start=10.0, source="accuser")
    for confirmations, timeout in enumerate(timeouts):
        if confirmations:
            assert suspicion.confirm(f"peer-{confirmations}")
        assert suspicion.confirmations == confirmations
        assert suspicion.deadline == pytest.approx(10.0 + timeout, abs=1e-9), confirmations


def test_suspicion_without_wanted_confirmations_runs_at_the_minimum() -> None:
    # k = 0: the cluster is too small to confirm anything.
    suspicion = make_suspicion(k=0, minimum=3.0, maximum=18.0, start=7.0)
    assert suspicion.deadline == 10.0
    assert not suspicion.confirm("other"), "nothing to shorten, nothing to re-gossip"
    assert (suspicion.confirmations, suspicion.deadline) == (0, 10.0)


def test_suspicion_first_accuser_never_counts_as_a_confirmation() -> None:
    # Our own suspicion gossiped back to us is not independent news.
    suspicion = make_suspicion(source="me")
    assert not suspicion.confirm("me")
    assert suspicion.confirmations == 0
    assert suspicion.deadline == 2.0


def test_suspicion_deadline_is_relative_to_its_start() -> None:
    early, late = make_suspicion(start=0.0), make_suspicion(start=1_000.0)
    for suspicion in (early, late):
        suspicion.confirm("foo")
    assert late.deadline - early.deadline == pytest.approx(1_000.0)


@given(
    k=st.integers(min_value=0, max_value=10),
    minimum=st.floats(min_value=0.1, max_value=60.0),
    factor=st.integers(min_value=1, max_value=8),
    sources=st.lists(st.sampled_from(["first", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"]), max_size=30),
)
def test_suspicion_deadline_only_falls_and_stays_within_bounds(
    k: int, minimum: float, factor: int, sources: list[str]
) -> None:
    maximum = minimum * factor
    suspicion = make_suspicion(k=k, minimum=minimum, maximum=maximum, start=100.0, source="first")
    seen = {"first"}
    deadline = suspicion.deadline
    for source in sources:
        new = suspicion.confirm(source)
        assert new is (source not in seen and len(seen) - 1 < k)
        if new:
            seen.add(source)
        assert suspicion.deadline <= deadline + 1e-9
        deadline = suspicion.deadline
        assert 100.0 + minimum - 1e-9 <= deadline <= 100.0 + maximum + 1e-9
    assert suspicion.confirmations == min(len(seen) - 1, k)
    if suspicion.confirmations == k:
        assert deadline == pytest.approx(100.0 + minimum)
