"""NodeConfig: one file, RPCNET_* variables and flags, layered; every key nobody reads is an error."""

from __future__ import annotations

import random
import re
import warnings
from pathlib import Path

import pytest

from rpcnet import make_plugin_manager
from rpcnet.cluster import ClusterConfig
from rpcnet.cluster.settings import NodeConfig, WorkersConfig, load_node_config
from rpcnet.cluster.workers import WorkerRegistry
from rpcnet.errors import ConfigError
from rpcnet.events import MemberJoined
from rpcnet.members import Member, MemberState

ROOT = Path(__file__).resolve().parents[2]

NODE_TOML = """\
[node]
listen = "127.0.0.1:7000"
certs = "/etc/rpcnet/certs"
[rpc]
serializer = "json"
[cluster]
seeds = ["10.0.0.1:7000"]
health_checks = ["event-loop-lag"]
tags = { role = "worker", zone = "a" }
[cluster.options.phi-accrual]
threshold = 10
[cluster.options.event-loop-lag]
warn-ms = 200
[workers]
load_balancer = "least-connections"
filter = "role=worker,zone=a"
"""


@pytest.fixture
def node_toml(tmp_path: Path) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(NODE_TOML)
    return path


def test_a_whole_node_from_one_file(node_toml: Path) -> None:
    config = load_node_config(node_toml, environ={})
    assert config.node.listen == ("127.0.0.1", 7000)
    assert config.rpc.serializer == "json"
    assert config.rpc.tls is not None and config.rpc.tls.ca_file == "/etc/rpcnet/certs/ca.pem"
    assert config.rpc.tls.require_client_cert, "[node] certs means mutual TLS"
    assert config.cluster.seeds == ("10.0.0.1:7000",) and dict(config.cluster.tags) == {"role": "worker", "zone": "a"}
    assert config.cluster.options["phi-accrual"] == {"threshold": 10}
    assert config.workers == WorkersConfig(load_balancer="least-connections", filter="role=worker,zone=a")


def test_layers_merge_table_by_table(node_toml: Path) -> None:
    config = NodeConfig.load(
        node_toml,
        environ={"RPCNET_CLUSTER__OPTIONS__PHI_ACCRUAL__ACCEPTABLE_HEARTBEAT_PAUSE": "0.5",
                 "RPCNET_CLUSTER__TAGS": '{"zone": "b"}', "RPCNET_WORKERS__LOAD_BALANCER": "random"},
        overrides={"workers": {"load_balancer": "round-robin"}, "cluster": {"tags": {"rack": "7"}}},
    )
    assert config.cluster.options["phi-accrual"] == {"threshold": 10, "acceptable_heartbeat_pause": 0.5}
    assert dict(config.cluster.tags) == {"role": "worker", "zone": "b", "rack": "7"}
    assert config.workers.load_balancer == "round-robin", "flags over the environment over the file"


@pytest.mark.parametrize(
    "text, message",
    [
        ("[clustr]\n", "config file '{path}': unknown key 'clustr' (did you mean 'cluster'?); valid keys in the top level: node, rpc, cluster, workers"),
        ("[cluster]\ntagz = {a = 'b'}\n", "config file '{path}': unknown key 'cluster.tagz' (did you mean 'cluster.tags'?)"),
        ("[rpc.tls]\nca-fil = 'x'\n", "config file '{path}': unknown key 'rpc.tls.ca_fil' (did you mean 'rpc.tls.ca_file'?)"),
        ("label = 'x'\n", "config file '{path}': unknown key 'label' at the top level; settings live in tables: did you mean [cluster] label?"),
        ("verbose = true\n", "config file '{path}': unknown key 'verbose'; valid keys in the top level: node, rpc, cluster, workers"),
        ("[node]\nlog_level = 'verbose'\n", "config file '{path}': [node] log_level must be one of debug, info, warning, error, critical, got 'verbose'"),
    ],
    ids=["table", "key", "tls key", "setting at the root", "root key", "value"],
)
def test_a_key_nobody_reads_names_the_file_the_key_and_the_nearest(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        NodeConfig.load(path, environ={})
    assert str(info.value).startswith(message.format(path=path)), str(info.value)


def test_options_in_the_table_of_another_kind_are_refused_with_where_they_belong(tmp_path: Path) -> None:
    """What docs/plugins.md used to show: options that were silently dropped."""
    path = tmp_path / "node.toml"
    path.write_text("[rpc.options.phi-accrual]\nthreshold = 10\n")
    config = NodeConfig.load(path, environ={})
    with pytest.raises(ConfigError) as info:
        config.check(make_plugin_manager())
    assert str(info.value) == (
        f"config file {str(path)!r}: [rpc.options.phi-accrual] is never read: 'phi-accrual' is a failure-detector "
        "strategy, chosen in [cluster]; move the table to [cluster.options.phi-accrual] "
        "(RPCNET_CLUSTER__OPTIONS__PHI_ACCRUAL__<OPTION> in the environment)"
    )


def test_every_option_is_checked_even_for_strategies_not_chosen(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("[workers.options.p2c]\nchoice = 3\n")
    with pytest.raises(ConfigError, match=r"\[workers.options.p2c\] unknown option 'choice' \(did you mean 'choices'\?\)"):
        load_node_config(path, environ={})


def test_a_strategy_nobody_provides_names_where_it_was_chosen() -> None:
    with pytest.raises(ConfigError, match="environment variable RPCNET_WORKERS__LOAD_BALANCER: workers.load_balancer: "
                                          "unknown load-balancer strategy 'p2cc'. Did you mean 'p2c'?"):
        load_node_config(environ={"RPCNET_WORKERS__LOAD_BALANCER": "p2cc"})


def test_environment_variables_are_checked_like_keys() -> None:
    with pytest.raises(ConfigError, match=re.escape(
            "environment variable RPCNET_CLUSTER__TAGZ: unknown key 'cluster.tagz' (did you mean 'cluster.tags' "
            "(RPCNET_CLUSTER__TAGS)?)")):
        NodeConfig.load(environ={"RPCNET_CLUSTER__TAGZ": "a=b"})
    with pytest.raises(ConfigError, match="environment variable RPCNET_CLUSTR__SEEDS is not an rpcnet setting "
                                          r"\(did you mean RPCNET_CLUSTER__SEEDS\?\)"):
        NodeConfig.load(environ={"RPCNET_CLUSTR__SEEDS": "[]"})
    # Variables that are not configuration are left alone.
    NodeConfig.load(environ={"RPCNET_GOSSIP_KEY": "x", "RPCNET_DISABLED_PLUGINS": "p2c", "RPCNET_CERTS": "/c",
                             "RPCNET_DISABLE_PLUGIN_AUTOLOAD": "1", "OTHER": "1"})


def test_flags_are_named_as_the_command_line() -> None:
    with pytest.raises(ConfigError, match="^the command line: unknown key 'cluster.seed' "):
        NodeConfig.load(environ={}, overrides={"cluster": {"seed": ["a:1"]}})


def test_the_names_before_0_2_still_work_in_the_right_table_with_a_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = NodeConfig.load(environ={"RPCNET_TRANSPORT": "memory", "RPCNET_TAGS": "role=worker",
                                          "RPCNET_OPTIONS__SWIM__PRESET": "wan",
                                          "RPCNET_OPTIONS__MSGPACK__MAX_SIZE": "10"})
    assert config.rpc.transport == "memory" and dict(config.cluster.tags) == {"role": "worker"}
    assert config.cluster.options["swim"] == {"preset": "wan"} and config.rpc.options["msgpack"] == {"max_size": 10}
    assert sorted(str(w.message) for w in caught if w.category is DeprecationWarning) == [
        "environment variable RPCNET_OPTIONS__MSGPACK__MAX_SIZE is deprecated (removed in 0.3): use RPCNET_RPC__OPTIONS__MSGPACK__MAX_SIZE",
        "environment variable RPCNET_OPTIONS__SWIM__PRESET is deprecated (removed in 0.3): use RPCNET_CLUSTER__OPTIONS__SWIM__PRESET",
        "environment variable RPCNET_TAGS is deprecated (removed in 0.3): use RPCNET_CLUSTER__TAGS",
        "environment variable RPCNET_TRANSPORT is deprecated (removed in 0.3): use RPCNET_RPC__TRANSPORT",
    ]


def test_a_file_with_only_rpc_loads_as_a_cluster_config(tmp_path: Path) -> None:
    path = tmp_path / "rpc.toml"
    path.write_text('[rpc]\ntransport = "memory"\n')
    assert ClusterConfig.from_toml(path) == ClusterConfig()


def test_the_load_balancer_and_its_options_are_configuration() -> None:
    config = load_node_config(environ={"RPCNET_WORKERS__LOAD_BALANCER": "p2c",
                                       "RPCNET_WORKERS__OPTIONS__P2C__CHOICES": "3",
                                       "RPCNET_WORKERS__FILTER": "role=gpu"})
    registry = WorkerRegistry.from_config(None, config.workers, rng=random.Random(1))
    assert registry.strategy == "p2c" and str(registry.filter) == "role=gpu"
    for index in range(4):
        member = Member(id=f"w{index}", address=("127.0.0.1", 9000 + index), incarnation=0,
                        state=MemberState.ALIVE, tags={"role": "gpu"})
        registry.apply(MemberJoined(member=member, at=0.0))
    balancer = registry._route(registry.filter).balancer
    assert balancer.options.choices == 3
    assert registry.select_worker().node_id in {"w0", "w1", "w2", "w3"}


def _documented_toml() -> list[tuple[str, str]]:
    blocks = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "cluster" / "README.md"]:
        for block in re.findall(r"```toml\n(.*?)```", path.read_text(), flags=re.S):
            if "[project" in block or "[tool." in block:
                continue  # a pyproject.toml, not a node's configuration
            blocks.append((path.relative_to(ROOT).as_posix(), block))
    return blocks


def _documented_plugins() -> list[object]:
    """The plugins the docs' worked examples write: drain_check.py, and the balancer in plugins.md."""
    import sys
    import types

    sys.path.insert(0, str(ROOT / "examples" / "cluster"))
    try:
        import drain_check
    finally:
        sys.path.pop(0)
    text = (ROOT / "docs" / "plugins.md").read_text()
    (source,) = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "class Fastest" in b]
    module = types.ModuleType("documented_fastest")
    exec(compile(source, "docs/plugins.md", "exec"), module.__dict__)
    return [drain_check.plugin, ("documented-fastest", module)]


@pytest.mark.parametrize("where, block", _documented_toml(), ids=lambda v: v if "/" in v or v.endswith(".md") else "")
def test_every_configuration_the_docs_show_loads_and_checks(tmp_path: Path, where: str, block: str) -> None:
    path = tmp_path / "shown.toml"
    path.write_text(block)
    load_node_config(path, environ={}, plugins=make_plugin_manager(plugins=_documented_plugins()))
