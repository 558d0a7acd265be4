"""A 3|2 partition between five hosts in network namespaces (nftables drops).

The minority must say it is in the minority within 20 s; after healing,
every node must agree on all five members alive within 30 s.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from rpcnet.cluster import Keyring
from rpcnet.testing.netns import NetnsLab, netns_available
from rpcnet.testing.processes import NodeProcess

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(240)]

REASON = netns_available()


@pytest.fixture
def lab() -> Any:
    if REASON is not None:
        pytest.skip(REASON)
    with NetnsLab(5) as built:
        yield built


@pytest.fixture(scope="module")
def lab_certs(tmp_path_factory: pytest.TempPathFactory) -> str:
    from rpcnet.certs import write_dev_certs

    directory = tmp_path_factory.mktemp("lab-certs")
    write_dev_certs(directory, server_names=["localhost", *(f"10.231.7.{i}" for i in range(1, 6))], client_names=["client"])
    return str(directory)


async def all_agree(nodes: list[NodeProcess], expected: set[str]) -> bool:
    views = await asyncio.gather(*(node.members() for node in nodes))
    for view in views:
        if {m["id"] for m in view if m["state"] == "alive"} != expected:
            return False
    incarnations = [{m["id"]: m["incarnation"] for m in view} for view in views]
    return all(i == incarnations[0] for i in incarnations)


async def test_partition_detected_by_minority_and_heals(lab: NetnsLab, lab_certs: str) -> None:
    key = Keyring.generate()
    nodes: list[NodeProcess] = []
    try:
        for index, address in enumerate(lab.addresses):
            seeds = [f"{lab.addresses[0]}:7000"] if index else []
            nodes.append(
                await NodeProcess.start(
                    node_id=f"h{index}", listen=f"{address}:7000", gossip=f"{address}:7946", seeds=seeds,
                    certs=lab_certs, key=key, prefix=lab.exec_prefix(index), timeout=30,
                )
            )
        expected = {node.node_id for node in nodes}
        deadline = time.monotonic() + 30  # forming is not what is measured here
        while not await all_agree(nodes, expected):
            assert time.monotonic() < deadline, "the cluster did not form"
            await asyncio.sleep(0.2)

        marks = [len(node.lines) for node in nodes]
        cut = time.time()
        lab.partition([0, 1, 2], [3, 4])
        minority = nodes[3:]
        detected = await asyncio.gather(
            *(node.wait_for(lambda line: line.get("event") == "partition-detected", 20, start=mark) for node, mark in zip(minority, marks[3:]))
        )
        detection = max(line["t"] for line in detected) - cut
        print(f"3|2 partition: minority announced it after {detection:.1f} s")
        assert detection <= 20
        for node, mark in zip(nodes[:3], marks[:3]):
            assert not [line for line in node.lines[mark:] if line.get("event") == "partition-detected"]

        lab.heal()
        healed = time.monotonic()
        while not await all_agree(nodes, expected):
            assert time.monotonic() - healed <= 30, "the cluster did not reconverge within 30 s of healing"
            await asyncio.sleep(0.2)
        print(f"after healing, every node agreed on 5 alive members in {time.monotonic() - healed:.1f} s")
        await asyncio.gather(*(node.wait_for(lambda line: line.get("event") == "partition-healed", 5, start=mark) for node, mark in zip(minority, marks[3:])))
    finally:
        await asyncio.gather(*(node.stop() for node in nodes))
