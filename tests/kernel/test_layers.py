"""The layers users and plugin authors rely on, checked where they run."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _modules_loaded_by(code: str) -> set[str]:
    # A fresh interpreter: this test process has long imported everything.
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"],
        check=True, capture_output=True, text=True,
    ).stdout
    return set(out.split())


@pytest.mark.parametrize("code", [
    "import rpcnet",
    "from rpcnet import hookimpl",
    "import rpcnet_quic, rpcnet_swim, rpcnet_phi, rpcnet_balancers",
])
def test_importing_the_kernel_or_a_bundled_plugin_loads_no_engine(code):
    loaded = _modules_loaded_by(code)
    engines = sorted(m for m in loaded if m.startswith(("rpcnet.rpc", "rpcnet.cluster", "rpcnet.builtins", "aioquic")))
    assert engines == []


def test_the_engine_names_are_still_importable_from_the_package():
    loaded = _modules_loaded_by("from rpcnet import RpcServer, RpcClient, ServerContext, current_deadline")
    assert "rpcnet.rpc.server" in loaded
    assert "rpcnet.cluster" not in loaded


def test_a_name_the_package_does_not_have_is_an_attribute_error():
    import rpcnet

    with pytest.raises(AttributeError, match="has no attribute 'RpcSrever'"):
        rpcnet.RpcSrever  # noqa: B018


def test_moved_names_still_resolve_with_a_deprecation_warning():
    import rpcnet.health
    import rpcnet.serializers
    from rpcnet.builtins.serializers import MsgpackSerializer
    from rpcnet.cluster.health import HealthMonitor

    with pytest.warns(DeprecationWarning, match="rpcnet.health.HealthMonitor moved to rpcnet.cluster.health"):
        assert rpcnet.health.HealthMonitor is HealthMonitor
    with pytest.warns(DeprecationWarning, match="moved to rpcnet.builtins.serializers"):
        assert rpcnet.serializers.MsgpackSerializer is MsgpackSerializer
    with pytest.raises(AttributeError):
        rpcnet.health.NoSuchThing  # noqa: B018


def test_the_old_workers_module_still_imports_and_says_where_it_went():
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", "import rpcnet.workers"],
        capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "rpcnet.workers moved to rpcnet.cluster.workers" in result.stderr
    assert _modules_loaded_by("import warnings; warnings.simplefilter('ignore'); from rpcnet.workers import WorkerRegistry")


def test_counters_that_were_dicts_still_read_by_key_with_a_warning():
    from rpcnet_swim.core import SwimStats

    from rpcnet.cluster.client import ClusterClientStats, PoolStats

    for stats, key in ((PoolStats(created=2), "created"), (ClusterClientStats(retries=2), "retries"), (SwimStats(refutes=2), "refutes")):
        with pytest.warns(DeprecationWarning, match=rf'\["{key}"\] is deprecated: read .{key}'):
            assert stats[key] == 2
        with pytest.raises(KeyError):
            stats["no_such_counter"]
