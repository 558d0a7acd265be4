"""``rpcnet plugins``, in process (click's CliRunner) and as ``python -m rpcnet``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from rpcnet.cli import main


def run(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def test_plugins_lists_each_plugin_with_distribution_strategies_and_hooks():
    result = run("plugins")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    start = lines.index("builtin-serializers  [rpcnet 0.1.0]")
    assert lines[start + 1: start + 3] == ["    serializer: json, msgpack", "    hooks: rpcnet_register_serializers"]
    start = lines.index("p2c  [rpcnet-p2c 0.1.0]")
    assert lines[start + 1: start + 3] == ["    load-balancer: p2c", "    hooks: rpcnet_register_load_balancers"]


def test_plugins_json():
    result = run("plugins", "--json")
    assert result.exit_code == 0
    payload = json.loads(result.output)
    plugins = {p["name"]: p for p in payload["plugins"]}
    assert plugins["p2c"] == {
        "name": "p2c",
        "distribution": "rpcnet-p2c",
        "version": "0.1.0",
        "strategies": {"load-balancer": ["p2c"]},
        "hooks": ["rpcnet_register_load_balancers"],
    }
    assert plugins["builtin-serializers"]["strategies"] == {"serializer": ["json", "msgpack"]}
    assert isinstance(payload["broken"], list)


def test_plugins_shows_broken_plugins_with_their_error(fake_dist, only_entry_points):
    only_entry_points(fake_dist("rpcnet-broken", {"broken": "rpcnet_broken_mod"},
                                {"rpcnet_broken_mod": "import numpyy_not_installed\n"}, version="0.3"))
    result = run("plugins")
    assert result.exit_code == 1, "a broken plugin is an error, even though the others are listed"
    text = result.output
    assert "broken plugins:\n  broken [rpcnet-broken 0.3]: ModuleNotFoundError: No module named 'numpyy_not_installed'" in text
    assert "Error: 1 plugin(s) failed to load; fix or block them (RPCNET_DISABLED_PLUGINS=name)" in text
    as_json = run("plugins", "--json")
    assert as_json.exit_code == 1
    payload = json.loads(as_json.stdout)
    assert {"name": "broken", "distribution": "rpcnet-broken", "version": "0.3",
            "error": "ModuleNotFoundError: No module named 'numpyy_not_installed'"} in payload["broken"]


def test_plugins_that_conflict_give_an_error_not_a_traceback(fake_dist, only_entry_points, lb_module):
    only_entry_points(
        fake_dist("rpcnet-one", {"one": "rpcnet_one_mod"}, {"rpcnet_one_mod": lb_module("shared")}),
        fake_dist("rpcnet-two", {"two": "rpcnet_two_mod"}, {"rpcnet_two_mod": lb_module("shared")}),
    )
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 1
    assert "Error: the plugins cannot be loaded together: load-balancer strategy 'shared' is registered twice" in result.output
    assert "Traceback" not in result.output


def test_plugins_honours_the_block_list(monkeypatch):
    monkeypatch.setenv("RPCNET_DISABLED_PLUGINS", "p2c")
    assert "p2c" not in {p["name"] for p in json.loads(run("plugins", "--json").output)["plugins"]}


def rpcnet_subprocess(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RPCNET_")} | env
    return subprocess.run([sys.executable, "-m", "rpcnet", *args], capture_output=True, text=True,
                          env=environ, timeout=60, check=False)


def test_python_dash_m_rpcnet_plugins_json():
    result = rpcnet_subprocess("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert plugins["p2c"]["strategies"] == {"load-balancer": ["p2c"]}
    assert plugins["builtin-serializers"]["distribution"] == "rpcnet"


def test_python_dash_m_rpcnet_plugins_with_autoload_disabled():
    result = rpcnet_subprocess("plugins", RPCNET_DISABLE_PLUGIN_AUTOLOAD="1")
    assert result.returncode == 0, result.stderr
    assert "builtin-serializers  [rpcnet" in result.stdout
    assert "p2c" not in result.stdout


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_plugins_command(flag):
    result = run(flag)
    assert result.exit_code == 0 and "plugins" in result.output


def test_version():
    assert run("--version").output.strip() == "rpcnet, version 0.1.0"


def test_plugins_honours_disabled_plugins_from_a_config_file(tmp_path):
    path = tmp_path / "rpcnet.toml"
    path.write_text('[rpc]\ndisabled_plugins = ["p2c"]\n')
    names = {p["name"] for p in json.loads(run("plugins", "--json", "--config", str(path)).output)["plugins"]}
    assert "p2c" not in names and "builtin-serializers" in names


def test_plugins_reports_a_bad_config_file_without_a_traceback(tmp_path):
    path = tmp_path / "rpcnet.toml"
    path.write_text('[rpc]\ndisabled_plugin = ["p2c"]\n')
    result = CliRunner().invoke(main, ["plugins", "--config", str(path)])
    assert result.exit_code == 1
    assert "Error: unknown setting 'disabled_plugin'" in result.output and "did you mean 'disabled_plugins'" in result.output
