"""ClusterConfig: read-only tags and options, the deprecated SWIM keys, TOML and environment loading."""

from __future__ import annotations

import warnings
from pathlib import Path

import attrs
import pytest

from rpcnet.cluster import ClusterConfig


def test_tags_and_options_are_read_only_all_the_way_down() -> None:
    config = ClusterConfig(tags={"role": "worker"}, options={"static": {"members": [{"id": "a", "address": "h:1"}]}})
    with pytest.raises(TypeError):
        config.tags["role"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        config.options["static"]["x"] = 1  # type: ignore[index]
    members = config.options["static"]["members"]
    assert isinstance(members, tuple)
    with pytest.raises(TypeError):
        members[0]["id"] = "b"  # type: ignore[index]
    assert config == ClusterConfig(tags={"role": "worker"}, options={"static": {"members": [{"id": "a", "address": "h:1"}]}})
    hash(config)
    changed = attrs.evolve(config, tags={**config.tags, "zone": "b"})
    assert dict(changed.tags) == {"role": "worker", "zone": "b"} and changed.options == config.options


def test_preset_and_partition_policy_are_deprecated_aliases_of_swim_options() -> None:
    with pytest.warns(DeprecationWarning, match=r'ClusterConfig.partition_policy and ClusterConfig.preset are deprecated .*options\["swim"\]\["partition_policy"\]'):
        config = ClusterConfig(preset="wan", partition_policy="none", options={"swim": {"probe_interval": 2.0}})
    assert dict(config.options["swim"]) == {"preset": "wan", "partition_policy": "none", "probe_interval": 2.0}
    # Folded into the options once: evolving the config neither warns again nor loses them.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evolved = config.evolve(label="x")
    assert (evolved.preset, evolved.options["swim"]["preset"]) == (None, "wan")
    with pytest.warns(DeprecationWarning):
        explicit = ClusterConfig(preset="wan", options={"swim": {"preset": "local"}})
    assert explicit.options["swim"]["preset"] == "local", "the swim option wins over the deprecated key"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "swim" not in ClusterConfig().options


def test_toml_and_environment_still_load(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[cluster]\ntags = {role = "worker"}\n[cluster.options.swim]\npreset = "local"\n')
    config = ClusterConfig.from_toml(path)
    assert config.tags == {"role": "worker"} and config.options["swim"]["preset"] == "local"
    env = ClusterConfig.from_env({"RPCNET_CLUSTER__TAGS": "role=director,zone=b", "RPCNET_CLUSTER__OPTIONS__SWIM__PRESET": "wan"})
    assert dict(env.tags) == {"role": "director", "zone": "b"} and env.options["swim"]["preset"] == "wan"


async def test_a_swim_preset_in_the_options_reaches_the_core() -> None:
    from rpcnet import RpcConfig, RpcServer
    from rpcnet.cluster import Cluster

    server = RpcServer(RpcConfig(transport="memory"))
    await server.start(("preset-node", 1))
    cluster = Cluster(server, ClusterConfig(insecure_gossip=True, options={"swim": {"preset": "wan", "gossip_nodes": 5}}))
    try:
        await cluster.start()
        options = cluster.core.options
        assert (options.preset, options.probe_interval, options.gossip_nodes) == ("wan", 5.0, 5)
        assert cluster.core.datagram_budget == cluster._endpoint.max_payload
    finally:
        await cluster.close()
        await server.stop(grace=0)
