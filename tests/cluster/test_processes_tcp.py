"""A cluster whose RPC runs on the ``tcp`` transport, as real processes.

Join (push-pull state sync through a seed's RPC address), member queries and
failure detection work the same as on QUIC; gossip stays on UDP. Each node
is an ``rpcnet node --transport tcp`` process with mutual TLS.
"""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from rpcnet.cluster import Keyring
from rpcnet.testing.processes import NodeProcess

from .test_processes import sees_all_alive, wait_all

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

TCP = ["--transport", "tcp"]


@pytest.fixture(scope="module")
def node_certs(tmp_path_factory: pytest.TempPathFactory) -> str:
    from rpcnet.certs import write_dev_certs

    directory = tmp_path_factory.mktemp("tcp-node-certs")
    write_dev_certs(directory, server_names=["localhost", "127.0.0.1"], client_names=["client"], days=30)
    return str(directory)


async def test_three_nodes_on_tcp_join_answer_queries_and_detect_a_kill(node_certs: str) -> None:
    key = Keyring.generate()
    seed = await NodeProcess.start(node_id="t0", certs=node_certs, key=key, extra=TCP)
    nodes = [seed]
    try:
        nodes += await asyncio.gather(
            *(NodeProcess.start(node_id=f"t{i}", certs=node_certs, key=key, seeds=[seed.rpc], extra=TCP) for i in (1, 2))
        )
        ids = {node.node_id for node in nodes}
        await wait_all(nodes, lambda n: sees_all_alive(n, ids), timeout=10.0)

        # A member query over the tcp transport from a separate process, with mutual TLS.
        query = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rpcnet", "members", nodes[1].rpc, "--certs", node_certs, "--json", *TCP,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(query.communicate(), 30)
        assert query.returncode == 0, err.decode()
        assert sorted((m["id"], m["state"]) for m in json.loads(out)["members"]) == sorted((i, "alive") for i in ids)

        # A QUIC client cannot reach a tcp node's RPC port: the transports are chosen, not mixed.
        query = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rpcnet", "members", nodes[1].rpc, "--certs", node_certs, "--timeout", "2",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        await asyncio.wait_for(query.communicate(), 30)
        assert query.returncode != 0

        victim = nodes[2]
        await victim.kill()
        await asyncio.gather(
            *(node.wait_for(lambda line: line.get("event") == "failed" and line.get("member") == victim.node_id, 15.0)
              for node in nodes[:2])
        )
    finally:
        await asyncio.gather(*(node.stop() for node in nodes))
