"""``static`` running as real ``rpcnet node`` processes: no kernel change, no gossip socket, no gossip key.

Three nodes read the same member list from a TOML file (``--config``) and
run with mutual TLS. They see each other join, a tag change, a kill -9 as
failed, the restarted node alive again, and a graceful leave as left.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from rpcnet.testing.processes import NodeProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

IDS = ("s0", "s1", "s2")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> str:
    from rpcnet.certs import write_dev_certs

    directory = tmp_path_factory.mktemp("static-certs")
    write_dev_certs(directory, server_names=["localhost", "127.0.0.1"], client_names=["client"], days=30)
    return str(directory)


def write_config(directory: Path, ports: dict[str, int]) -> Path:
    members = ", ".join(f'{{id = "{i}", address = "127.0.0.1:{p}"}}' for i, p in ports.items())
    path = directory / "cluster.toml"
    path.write_text(
        "[cluster]\n"
        'membership = "static"\n'
        'failure_detector = "none"\n'
        "sync_timeout = 5.0\n"  # a busy machine must not turn a slow answer into a failure
        "[cluster.options.static]\n"
        f"members = [{members}]\n"
        "ping_interval = 0.3\n"
    )
    return path


async def start(node_id: str, port: int, config: Path, certs: str) -> NodeProcess:
    # No --key and no --insecure-gossip: a strategy without datagrams needs neither.
    node = NodeProcess([sys.executable, "-m", "rpcnet", "node", "--config", str(config), "--node-id", node_id,
                        "--listen", f"127.0.0.1:{port}", "--certs", certs])
    await node.spawn()
    return node


def saw(node: NodeProcess, kind: str, member: str, start: int = 0, **tags: str) -> Any:
    def match(line: dict[str, Any]) -> bool:
        return (line.get("event") == kind and line.get("member") == member
                and all(line.get("tags", {}).get(k) == v for k, v in tags.items()))
    return node.wait_for(match, 30.0, start=start)


async def test_three_static_nodes_as_processes(tmp_path: Path, certs: str) -> None:
    ports = {node_id: free_udp_port() for node_id in IDS}
    config = write_config(tmp_path, ports)
    nodes = dict(zip(IDS, await asyncio.gather(*(start(i, ports[i], config, certs) for i in IDS))))
    try:
        assert all(node.ready["gossip"] is None for node in nodes.values()), "no gossip socket was opened"
        await asyncio.gather(*(saw(nodes[o], "joined", m) for o in IDS for m in IDS if m != o))

        mark = {i: len(n.lines) for i, n in nodes.items()}
        await nodes["s1"].command("tag zone=b")
        await asyncio.gather(*(saw(nodes[o], "tags-updated", "s1", mark[o], zone="b") for o in ("s0", "s2")))

        mark = {i: len(n.lines) for i, n in nodes.items()}
        await nodes["s2"].kill()
        failed = await asyncio.gather(*(saw(nodes[o], "failed", "s2", mark[o]) for o in ("s0", "s1")))
        assert all(line["member"] == "s2" for line in failed)

        mark = {i: len(n.lines) for i, n in nodes.items()}
        nodes["s2"] = await start("s2", ports["s2"], config, certs)
        await asyncio.gather(*(saw(nodes[o], "recovered", "s2", mark[o]) for o in ("s0", "s1")))
        await asyncio.gather(*(saw(nodes["s2"], "joined", m) for m in ("s0", "s1")))

        mark = {i: len(n.lines) for i, n in nodes.items()}
        await nodes["s1"].command("leave")
        await nodes["s1"].wait_for(lambda line: line.get("ok") == "leave", 10.0, start=mark["s1"])
        await asyncio.gather(*(saw(nodes[o], "left", "s1", mark[o]) for o in ("s0", "s2")))
        await nodes["s1"].stop()
        # The survivors stop asking a node that left: its absence is never a failure.
        views = await asyncio.gather(*(nodes[o].members() for o in ("s0", "s2")))
        for view in views:
            assert {m["id"]: m["state"] for m in view} == {"s0": "alive", "s1": "left", "s2": "alive"}
        assert not nodes["s0"].events("failed", "s1") and not nodes["s2"].events("failed", "s1")
    finally:
        await asyncio.gather(*(node.stop() for node in nodes.values()))
