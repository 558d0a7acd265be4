"""The cluster facade in one process: real QUIC syncs and real UDP gossip on loopback."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from rpcnet_swim import codec
from rpcnet_swim.messages import Alive, Packet

from rpcnet import RpcConfig, RpcServer, TlsConfig
from rpcnet.cluster import Cluster, ClusterConfig, Keyring
from rpcnet.cluster.gossip import NONCE_SIZE, seal_datagram
from rpcnet.errors import ConfigError, PermissionDeniedError
from rpcnet.membership import MemberState
from rpcnet.testing import wait_until as until


@pytest.fixture(scope="module")
def node_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rpcnet.certs import write_dev_certs

    directory = tmp_path_factory.mktemp("node-certs")
    write_dev_certs(directory, server_names=["localhost", "127.0.0.1"], client_names=["client"], days=30)
    return directory


def rpc_config(certs: Path) -> RpcConfig:
    return RpcConfig(
        transport="quic",
        tls=TlsConfig(cert_file=certs / "server.pem", key_file=certs / "server.key", ca_file=certs / "ca.pem", require_client_cert=True),
    )


class Nodes:
    def __init__(self, certs: Path) -> None:
        self.certs = certs
        self.started: list[tuple[RpcServer, Cluster]] = []

    async def start(self, node_id: str, **changes: Any) -> Cluster:
        server = RpcServer(rpc_config(self.certs))
        await server.start(("127.0.0.1", 0))
        config = ClusterConfig(node_id=node_id, **changes)
        cluster = Cluster(server, config)
        self.started.append((server, cluster))
        try:
            await cluster.start()
        except BaseException:
            await cluster.close()
            raise
        return cluster

    async def close(self) -> None:
        for server, cluster in reversed(self.started):
            await cluster.close()
            await server.stop(grace=0)


@pytest.fixture
async def nodes(node_certs: Path) -> AsyncIterator[Nodes]:
    started = Nodes(node_certs)
    yield started
    await started.close()


def alive_ids(cluster: Cluster) -> set[str]:
    return {m.id for m in cluster.members(states=[MemberState.ALIVE])}


def seed_of(cluster: Cluster) -> str:
    host, port = cluster.server.address
    return f"{host}:{port}"


async def test_gossip_without_a_key_is_refused_unless_insecure(nodes: Nodes) -> None:
    with pytest.raises(ConfigError, match="gossip needs an encryption key"):
        await nodes.start("lonely")
    cluster = await nodes.start("open", insecure_gossip=True)
    assert cluster.gossip_address[1] > 0


async def test_join_events_tags_and_filters(nodes: Nodes) -> None:
    key = Keyring.generate()
    a = await nodes.start("a", gossip_keys=[key], tags={"role": "director"})
    events = a.subscribe()
    b = await nodes.start("b", gossip_keys=[key], tags={"role": "worker", "zone": "x"}, seeds=[seed_of(a)])
    c = await nodes.start("c", gossip_keys=[key], tags={"role": "worker", "zone": "y"}, seeds=[seed_of(a)])
    await until(lambda: all(alive_ids(n) == {"a", "b", "c"} for n in (a, b, c)))
    assert {m.id for m in a.members({"role": "worker"})} == {"b", "c"}
    assert {m.id for m in c.members({"role": "worker", "zone": "x"})} == {"b"}
    assert a.local_node.id == "a" and a.tags["role"] == "director"

    b.set_tag("gpu", "true")
    await until(lambda: (a.member("b") or b.local_node).tags.get("gpu") == "true" and c.member("b").tags.get("gpu") == "true")
    b.remove_tag("gpu")
    await until(lambda: "gpu" not in a.member("b").tags)

    seen = []
    while True:
        event = await events.get(5)
        seen.append((event.kind, getattr(event, "member", None) and event.member.id))
        if seen.count(("tags-updated", "b")) == 2:
            break
    # Each transition once: one joined per peer, one tags-updated per change.
    assert seen.count(("joined", "b")) == 1 and seen.count(("joined", "c")) == 1
    events.close()


async def test_wrong_gossip_key_packets_are_dropped_and_counted(nodes: Nodes) -> None:
    key, wrong = Keyring.generate(), Keyring.generate()
    a = await nodes.start("a", gossip_keys=[key])
    await nodes.start("b", gossip_keys=[key], seeds=[seed_of(a)])
    await until(lambda: alive_ids(a) == {"a", "b"})
    packet = codec.encode_packet(
        Packet(sender="intruder", updates=(Alive(node="intruder", incarnation=1, address=("127.0.0.1", 9), tags={}),))
    )
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=a.gossip_address)
    try:
        before = a.gossip_stats.dropped_auth

        def sealed(key: str, counter: int) -> bytes:
            return seal_datagram(packet, key=Keyring([key]).primary_key, label="", nonce=os.urandom(NONCE_SIZE),
                                 epoch=b"intruder", counter=counter, timestamp=int(time.time()))

        for counter in range(5):
            transport.sendto(sealed(wrong, counter))
        await until(lambda: a.gossip_stats.dropped_auth >= before + 5)
        assert a.member("intruder") is None and alive_ids(a) == {"a", "b"}
        # The same bytes under the right key are accepted: the key is what kept it out.
        transport.sendto(sealed(key, 1))
        await until(lambda: a.member("intruder") is not None)
    finally:
        transport.close()


async def test_joining_with_the_wrong_key_or_label_is_refused(nodes: Nodes) -> None:
    key = Keyring.generate()
    a = await nodes.start("a", gossip_keys=[key], label="prod")
    # No join_timeout: a refusal is final at once, unlike a seed that is not up yet.
    x = await nodes.start("x", gossip_keys=[Keyring.generate()], label="prod", seeds=[seed_of(a)])
    with pytest.raises(PermissionDeniedError, match="every seed refused this node: .*sync refused: no installed key opens this packet"):
        await asyncio.wait_for(x.joined(), 10)
    y = await nodes.start("y", gossip_keys=[key], label="staging", seeds=[seed_of(a)])
    with pytest.raises(PermissionDeniedError, match="sync refused"):
        await asyncio.wait_for(y.joined(), 10)
    assert alive_ids(a) == {"a"}
    assert a.stats.requests_rejected >= 2


async def test_key_rotation_without_downtime(nodes: Nodes) -> None:
    old, new = Keyring.generate(), Keyring.generate()
    a = await nodes.start("a", gossip_keys=[old])
    b = await nodes.start("b", gossip_keys=[old], seeds=[seed_of(a)])
    await until(lambda: alive_ids(a) == alive_ids(b) == {"a", "b"})
    for step in ("install", "use", "remove"):
        for node in (a, b):
            keyring = node.keyring
            if step == "install":
                keyring.install(new)
            elif step == "use":
                keyring.use(new)
            else:
                keyring.remove(old)
        mark = b.gossip_stats.received
        a.set_tag("step", step)
        await until(lambda step=step: b.member("a").tags.get("step") == step)
        assert b.gossip_stats.received > mark
    assert a.gossip_stats.dropped_auth == 0 and b.gossip_stats.dropped_auth == 0


async def test_graceful_leave_is_seen_as_left(nodes: Nodes) -> None:
    key = Keyring.generate()
    a = await nodes.start("a", gossip_keys=[key])
    b = await nodes.start("b", gossip_keys=[key], seeds=[seed_of(a)])
    await until(lambda: alive_ids(a) == {"a", "b"})
    events = a.subscribe()
    await b.leave(timeout=3)
    while True:
        event = await events.get(3)
        if getattr(event, "member", None) is not None and event.member.id == "b":
            break
    assert event.kind == "left"
    assert a.member("b").state is MemberState.LEFT


async def test_members_cli_reads_a_running_node(nodes: Nodes, node_certs: Path) -> None:
    key = Keyring.generate()
    a = await nodes.start("a", gossip_keys=[key], tags={"role": "director"})
    await nodes.start("b", gossip_keys=[key], tags={"role": "worker"}, seeds=[seed_of(a)])
    await until(lambda: alive_ids(a) == {"a", "b"})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rpcnet", "members", seed_of(a), "--certs", str(node_certs), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    view = orjson.loads(out)
    rows = {m["id"]: m for m in view["members"]}
    assert view["node"] == "a" and set(rows) == {"a", "b"}
    assert rows["b"]["state"] == "alive" and rows["b"]["tags"]["role"] == "worker"
    assert rows["a"]["local"] is True and rows["b"]["incarnation"] >= 0
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rpcnet", "members", seed_of(a), "--certs", str(node_certs),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    table = out.decode()
    assert process.returncode == 0 and "ID" in table and "a *" in table and "role=worker" in table


async def test_health_rpc_answers_external_probes(nodes: Nodes, node_certs: Path) -> None:
    from rpcnet import RpcClient

    a = await nodes.start("a", gossip_keys=[Keyring.generate()])
    config = RpcConfig(
        transport="quic",
        tls=TlsConfig(ca_file=node_certs / "ca.pem", cert_file=node_certs / "client.pem", key_file=node_certs / "client.key"),
    )
    async with RpcClient(a.server.address, config, server_name="localhost") as probe:
        answer = await probe.call("rpcnet.health/Check", None, timeout=5)
    assert answer["status"] == "healthy"
    assert "rpcnet.health" not in a.tags  # healthy is the default: nothing extra is gossiped
