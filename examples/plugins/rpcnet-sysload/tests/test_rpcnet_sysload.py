"""The sysload plugin as users get it: installed, found through its entry point, chosen by name."""

from __future__ import annotations

import importlib.metadata

import pytest
from rpcnet_sysload import CpuCheck, CpuOptions, MemoryCheck, MemoryOptions

from rpcnet import make_plugin_manager
from rpcnet.cluster.health import HealthMonitor, run_checks
from rpcnet.errors import ConfigError
from rpcnet.health import HealthStatus


def test_the_installed_distribution_declares_the_entry_point():
    eps = importlib.metadata.distribution("rpcnet-sysload").entry_points
    assert [(ep.group, ep.name, ep.value) for ep in eps] == [("rpcnet", "sysload", "rpcnet_sysload")]


@pytest.mark.parametrize(("name", "cls"), [("cpu", CpuCheck), ("memory", MemoryCheck)])
def test_each_check_is_discovered_through_the_entry_point_and_chosen_by_name(name, cls):
    host = make_plugin_manager()
    entry = host.registry.entry("health-check", name)
    assert (entry.cls, entry.plugin, entry.distribution) == (cls, "sysload", "rpcnet-sysload")
    info = next(p for p in host.plugins() if p.name == "sysload")
    assert info.strategies == {"health-check": ("cpu", "memory")}
    assert type(host.create("health-check", name)) is cls


def test_blocking_the_distribution_removes_its_checks():
    host = make_plugin_manager(disabled=["rpcnet-sysload"])
    assert "cpu" not in host.registry.names("health-check")


def test_options_are_validated_through_the_plugin_host():
    host = make_plugin_manager()
    assert host.create("health-check", "cpu", {"warn_percent": 50, "fail_percent": 90}).options == CpuOptions(
        warn_percent=50, fail_percent=90
    )
    with pytest.raises(ConfigError, match="warn_percent must be between 0 and 100"):
        host.create("health-check", "memory", {"warn_percent": 120})
    with pytest.raises(ConfigError, match=r"fail_percent \(50.0\) must be >= warn_percent \(80.0\)"):
        host.create("health-check", "cpu", {"warn_percent": 80, "fail_percent": 50})
    with pytest.raises(ConfigError, match="unknown option 'warn'"):
        host.create("health-check", "memory", {"warn": 80})


@pytest.mark.parametrize(
    ("used", "status"), [(10.0, HealthStatus.HEALTHY), (70.0, HealthStatus.DEGRADED), (90.0, HealthStatus.UNHEALTHY)]
)
def test_thresholds(used, status):
    cpu = CpuCheck(CpuOptions(warn_percent=70, fail_percent=90), read=lambda: used)
    memory = MemoryCheck(MemoryOptions(warn_percent=70, fail_percent=90), read=lambda: used)
    assert cpu.check().status is status
    assert memory.check().status is status
    assert memory.check().reason.startswith(f"memory used {used:.0f}%")


async def test_the_real_readings_run_under_the_kernel_runner():
    host = make_plugin_manager()
    checks = [host.create("health-check", "cpu"), host.create("health-check", "memory")]
    result = await run_checks(checks, timeout=5)
    assert set(result.checks) == {"cpu", "memory"}
    for name in ("cpu", "memory"):
        assert f"{'CPU' if name == 'cpu' else 'memory'} used " in result.checks[name].reason, result.checks[name]
    # With thresholds no machine can miss, the status follows the reading.
    always = [host.create("health-check", "memory", {"warn_percent": 0, "fail_percent": 0})]
    published = []
    await HealthMonitor(always, interval=1, publish=published.append).check_now()
    assert [p.status for p in published] == [HealthStatus.UNHEALTHY]
