"""Phi Accrual: exact values, the threshold crossing, and numerical safety."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rpcnet_phi import HeartbeatHistory, PhiAccrualDetector, PhiOptions, phi

from rpcnet import make_plugin_manager
from rpcnet.errors import ConfigError

# phi(elapsed, mean=1 s, std=0.1 s). Reference values of the logistic
# approximation, the same table Akka's PhiAccrualFailureDetectorSpec checks
# (there in milliseconds), to its precision of 0.1.
AKKA_TABLE = [(0.0, 0.0), (0.5, 0.0), (1.0, 0.3), (1.2, 1.6), (1.4, 4.7), (1.6, 10.8), (1.7, 15.3)]

# (elapsed - mean) / std at which phi reaches 8, from the same approximation.
Y_AT_PHI_8 = 5.2260


@pytest.mark.parametrize(("elapsed", "expected"), AKKA_TABLE)
def test_phi_matches_the_reference_table(elapsed: float, expected: float) -> None:
    assert phi(elapsed, 1.0, 0.1) == pytest.approx(expected, abs=0.1)


def test_phi_at_the_mean_is_log10_of_two() -> None:
    # y = 0: the logistic gives 1/2, so phi = log10(2) exactly.
    assert phi(1.0, 1.0, 0.1) == pytest.approx(math.log10(2), abs=1e-12)


def _regular(detector: PhiAccrualDetector, peer: str, beats: int, interval: float = 1.0) -> float:
    for i in range(beats):
        detector.heartbeat(peer, i * interval)
    return (beats - 1) * interval


def _crossing(detector: PhiAccrualDetector, peer: str, last: float) -> float:
    """Elapsed time after ``last`` at which the peer turns unavailable, to 0.1 ms."""
    lo, hi = 0.0, 60.0
    assert detector.is_available(peer, last + lo) and not detector.is_available(peer, last + hi)
    while hi - lo > 1e-4:
        mid = (lo + hi) / 2
        if detector.is_available(peer, last + mid):
            lo = mid
        else:
            hi = mid
    return hi


@pytest.mark.parametrize("pause", [0.0, 1.0, 3.0])
def test_regular_one_second_heartbeats_cross_phi_8_when_expected(pause: float) -> None:
    detector = PhiAccrualDetector(PhiOptions(acceptable_heartbeat_pause=pause))
    last = _regular(detector, "peer", 1001)
    # 1000 intervals of exactly 1 s plus the two seeds (0.75, 1.25): mean 1 s,
    # std sqrt(0.125 / 1002) ~ 0.011 s, so the 0.1 s floor applies.
    expected = 1.0 + pause + Y_AT_PHI_8 * 0.1
    assert _crossing(detector, "peer", last) == pytest.approx(expected, abs=5e-4)


def test_few_samples_use_the_seeded_spread() -> None:
    detector = PhiAccrualDetector(PhiOptions(acceptable_heartbeat_pause=0.0))
    last = _regular(detector, "peer", 3)
    # Samples 0.75, 1.25, 1.0, 1.0: mean 1, variance 0.125 / 4.
    std = math.sqrt(0.125 / 4)
    assert _crossing(detector, "peer", last) == pytest.approx(1.0 + Y_AT_PHI_8 * std, abs=5e-4)


def test_zero_variance_never_gives_nan_or_inf() -> None:
    history = HeartbeatHistory(10)
    for _ in range(10):
        history.add(0.3)  # 0.3 is inexact in binary: running sums leave a residue
    assert history.variance >= 0.0
    detector = PhiAccrualDetector(PhiOptions(max_sample_size=2, acceptable_heartbeat_pause=0.0))
    for i in range(50):
        detector.heartbeat("peer", i * 1.0)
    for elapsed in (0.0, 0.5, 1.0, 2.0, 100.0, 1e6, 1e12):
        value = detector.phi("peer", 49.0 + elapsed)
        assert math.isfinite(value) and value >= 0.0


def test_no_heartbeat_means_phi_zero_and_one_heartbeat_is_finite() -> None:
    detector = PhiAccrualDetector()
    assert detector.phi("stranger", 1e9) == 0.0
    assert detector.is_available("stranger", 1e9)
    detector.heartbeat("peer", 5.0)
    for now in (5.0, 6.0, 10.0, 1e9):
        assert math.isfinite(detector.phi("peer", now))
    assert not detector.is_available("peer", 1e9)


@given(
    elapsed=st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
    mean=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    std=st.floats(min_value=1e-6, max_value=1e6, allow_nan=False),
)
def test_phi_is_finite_non_negative_and_monotonic(elapsed: float, mean: float, std: float) -> None:
    value = phi(elapsed, mean, std)
    assert math.isfinite(value) and value >= 0.0
    assert phi(elapsed + std, mean, std) >= value


def test_window_keeps_only_the_last_samples() -> None:
    history = HeartbeatHistory(3)
    for interval in (10.0, 1.0, 2.0, 3.0):
        history.add(interval)
    assert len(history) == 3
    assert history.mean == pytest.approx(2.0)
    assert history.std_deviation == pytest.approx(math.sqrt(2 / 3))


def test_an_interval_that_ends_an_outage_is_not_learned() -> None:
    detector = PhiAccrualDetector(PhiOptions(acceptable_heartbeat_pause=0.0))
    last = _regular(detector, "peer", 20)
    before = _crossing(detector, "peer", last)
    detector.heartbeat("peer", last + 60.0)  # the peer was unavailable for a minute
    assert _crossing(detector, "peer", last + 60.0) == pytest.approx(before, abs=5e-4)
    # A late but acceptable beat is learned: the window widens.
    detector.heartbeat("peer", last + 61.3)
    assert _crossing(detector, "peer", last + 61.3) > before + 0.01


def test_remove_forgets_the_peer() -> None:
    detector = PhiAccrualDetector()
    _regular(detector, "peer", 5)
    assert detector.peers() == ["peer"]
    detector.remove("peer")
    assert detector.peers() == []
    assert detector.phi("peer", 1e6) == 0.0


def test_registered_as_phi_accrual_with_validated_options() -> None:
    host = make_plugin_manager()
    assert host.strategy("failure-detector", "phi-accrual") is PhiAccrualDetector
    detector = host.create("failure-detector", "phi-accrual", {"threshold": 10, "acceptable-heartbeat-pause": 2})
    assert detector.options == PhiOptions(threshold=10.0, acceptable_heartbeat_pause=2.0)
    with pytest.raises(ConfigError, match="threshold"):
        host.create("failure-detector", "phi-accrual", {"threshold": 0})
    with pytest.raises(ConfigError, match="min_std_deviation"):
        PhiOptions(min_std_deviation=0)


def test_defaults_are_akkas_but_without_a_pause() -> None:
    options = PhiOptions()
    assert (options.threshold, options.min_std_deviation, options.max_sample_size) == (8.0, 0.1, 1000)
    # A crossing only triggers a confirming probe, so no silence is tolerated on top.
    assert options.acceptable_heartbeat_pause == 0.0
    detector = PhiAccrualDetector()
    last = _regular(detector, "peer", 100)
    assert _crossing(detector, "peer", last) == pytest.approx(1.0 + Y_AT_PHI_8 * 0.1, abs=5e-4)
