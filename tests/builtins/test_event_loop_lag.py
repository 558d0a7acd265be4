"""The bundled ``event-loop-lag`` health check."""

from __future__ import annotations

import time

import pytest

from rpcnet import make_plugin_manager
from rpcnet.builtins.event_loop_lag import EventLoopLag, EventLoopLagOptions
from rpcnet.errors import ConfigError
from rpcnet.health import HealthStatus

HEALTHY, DEGRADED, UNHEALTHY = HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY


def test_event_loop_lag_is_a_builtin_chosen_by_name_with_validated_options():
    host = make_plugin_manager(autoload=False)
    entry = host.registry.entry("health-check", "event-loop-lag")
    assert (entry.cls, entry.plugin) == (EventLoopLag, "builtin-health")
    check = host.create("health-check", "event-loop-lag", {"warn_ms": 20, "fail-ms": 200})
    assert check.options == EventLoopLagOptions(warn_ms=20, fail_ms=200)
    with pytest.raises(ConfigError, match=r"fail_ms \(10.0\) must be >= warn_ms \(20.0\)"):
        host.create("health-check", "event-loop-lag", {"warn_ms": 20, "fail_ms": 10})
    with pytest.raises(ConfigError, match="warn_ms must be >= 0"):
        host.create("health-check", "event-loop-lag", {"warn_ms": -1})


@pytest.mark.parametrize(
    ("lag_ms", "status"), [(0, HEALTHY), (99.9, HEALTHY), (100, DEGRADED), (999, DEGRADED), (1000, UNHEALTHY)]
)
def test_event_loop_lag_thresholds(lag_ms, status):
    result = EventLoopLag(EventLoopLagOptions(warn_ms=100, fail_ms=1000)).classify(lag_ms)
    assert result.status is status
    assert result.reason.startswith(f"event loop lag {lag_ms:.0f} ms")


async def test_event_loop_lag_sees_a_loop_blocked_between_two_checks():
    check = EventLoopLag(EventLoopLagOptions(warn_ms=250, fail_ms=60_000, sample_ms=50))
    try:
        assert (await check.check()).status is HEALTHY
        time.sleep(0.4)  # the condition under test: a handler blocks the loop for 400 ms
        blocked = await check.check()
        assert blocked.status is DEGRADED, blocked
        assert (await check.check()).status is HEALTHY  # a new period starts after each check
    finally:
        check.close()


