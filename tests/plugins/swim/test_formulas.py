"""Table tests for the SWIM / Lifeguard arithmetic (values as memberlist computes them)."""

from __future__ import annotations

import pytest
from rpcnet_swim.formulas import (
    push_pull_interval,
    remaining_suspicion_time,
    retransmit_limit,
    scale_by_health,
    suspicion_confirmations_wanted,
    suspicion_timeout,
)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, 1.0), (5, 1.0), (10, 1.0), (50, 1.698), (100, 2.0), (200, 2.301), (500, 2.698), (1000, 3.0)],
)
def test_suspicion_timeout_scales_with_log10_n(n: int, expected: float) -> None:
    assert suspicion_timeout(1, n, 1.0) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("mult", "n", "interval", "expected"),
    [(4, 5, 1.0, 4.0), (4, 50, 1.0, 6.792), (4, 200, 1.0, 9.204), (6, 50, 5.0, 50.94), (3, 0, 1.0, 3.0)],
)
def test_suspicion_timeout_lan_wan_local(mult: int, n: int, interval: float, expected: float) -> None:
    assert suspicion_timeout(mult, n, interval) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("n", "k", "elapsed", "minimum", "maximum", "expected"),
    [
        (0, 3, 0.0, 2.0, 30.0, 30.0),
        (1, 3, 2.0, 2.0, 30.0, 14.0),
        (2, 3, 3.0, 2.0, 30.0, 4.810),
        (3, 3, 4.0, 2.0, 30.0, -2.0),
        (4, 3, 5.0, 2.0, 30.0, -3.0),
        (5, 3, 10.0, 2.0, 30.0, -8.0),
        # No confirmations expected (small cluster): the minimum from the start.
        (0, 0, 0.0, 2.0, 30.0, 2.0),
        (0, 0, 1.5, 2.0, 30.0, 0.5),
    ],
)
def test_remaining_suspicion_time(n: int, k: int, elapsed: float, minimum: float, maximum: float, expected: float) -> None:
    assert remaining_suspicion_time(n, k, elapsed, minimum, maximum) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("mult", "n", "expected"), [(4, 5, 2), (4, 4, 2), (4, 3, 0), (4, 200, 2), (3, 50, 1), (6, 50, 4), (1, 50, 0), (2, 50, 0)])
def test_confirmations_wanted(mult: int, n: int, expected: int) -> None:
    assert suspicion_confirmations_wanted(mult, n) == expected


@pytest.mark.parametrize(
    ("mult", "n", "expected"),
    [(3, 0, 0), (3, 1, 3), (3, 9, 3), (3, 99, 6), (4, 5, 4), (4, 50, 8), (4, 200, 12), (4, 999, 12), (4, 1000, 16)],
)
def test_retransmit_limit(mult: int, n: int, expected: int) -> None:
    assert retransmit_limit(mult, n) == expected


@pytest.mark.parametrize(("n", "expected"), [(1, 30.0), (32, 30.0), (33, 60.0), (64, 60.0), (65, 90.0), (200, 120.0), (1000, 180.0)])
def test_push_pull_interval_grows_past_32_members(n: int, expected: float) -> None:
    assert push_pull_interval(30.0, n) == expected


@pytest.mark.parametrize(("score", "expected"), [(0, 1.0), (1, 2.0), (7, 8.0)])
def test_scale_by_health(score: int, expected: float) -> None:
    assert scale_by_health(1.0, score) == expected

