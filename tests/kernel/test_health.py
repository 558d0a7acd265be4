"""The health-check interface's values: statuses, results, thresholds, the gossip tag."""

from __future__ import annotations

import pytest

from rpcnet.health import HealthResult, HealthStatus, status_from_tags, threshold_result

HEALTHY, DEGRADED, UNHEALTHY = HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY


def test_worst_status_wins():
    assert HealthStatus.worst([HEALTHY, DEGRADED, HEALTHY]) is DEGRADED
    assert HealthStatus.worst([DEGRADED, UNHEALTHY, HEALTHY]) is UNHEALTHY
    assert HealthStatus.worst([]) is HEALTHY


@pytest.mark.parametrize(
    ("tags", "status"),
    [
        ({}, HEALTHY),
        ({"rpcnet.health": "healthy"}, HEALTHY),
        ({"rpcnet.health": "degraded"}, DEGRADED),
        ({"rpcnet.health": "unhealthy"}, UNHEALTHY),
        ({"rpcnet.health": " Unhealthy "}, UNHEALTHY),
        ({"rpcnet.health": "draining"}, DEGRADED),  # unknown: neither trusted nor dropped
    ],
)
def test_status_from_tags(tags, status):
    assert status_from_tags(tags) is status


def test_result_as_plain_data():
    result = HealthResult(UNHEALTHY, "x", checks={"a": HealthResult.unhealthy("x"), "b": HealthResult.healthy()})
    assert result.to_dict() == {
        "status": "unhealthy",
        "reason": "x",
        "checks": {"a": {"status": "unhealthy", "reason": "x"}, "b": {"status": "healthy", "reason": ""}},
    }
    assert HealthResult("degraded", "slow").status is DEGRADED




@pytest.mark.parametrize(
    ("value", "status", "reason"),
    [
        (5, HEALTHY, "disk 5% (healthy)"),
        (80, DEGRADED, "disk 80% (warn at 80%)"),
        (95, UNHEALTHY, "disk 95% (fail at 90%)"),
    ],
)
def test_threshold_result_rates_a_measurement_and_says_why(value, status, reason):
    result = threshold_result("disk", value, warn=80, fail=90, unit="%")
    assert result.status is status
    if status is not HEALTHY:
        assert result.reason == reason
    else:
        assert result.reason == "disk 5%"
