"""Restarts and start order with real processes: how long until every view agrees.

Every node is an ``rpcnet node`` process with mutual TLS, encrypted gossip
and LAN defaults, on loopback.

``restarts``: five nodes, n0 the seed (no seeds of its own), n1..n4 seeded
with n0. Each run stops one node and starts it again on the same addresses
with the same seeds, for {seed, non-seed} x {SIGTERM, SIGKILL}: SIGTERM
after a graceful ``leave``, SIGKILL with no warning, restarted as soon as
the process is gone. The figure is the time from the restarted node's ready
line until every node's ``members`` lists the same five members alive.

``start-order``: seven nodes started at once, node i seeded with node i-1
(node 0 with none), so most start before their seed. The figure is the
time from the last ready line until all seven views list seven alive.

    python benchmarks/restart_bench.py                        # 20 runs per restart case, 10 start-order runs
    python benchmarks/restart_bench.py --runs 3 --start-runs 2
    python benchmarks/restart_bench.py --json

Numbers are measured and printed; ``--within`` (5 s restarts, 10 s start
order) only decides what counts as a run that held.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from typing import Any

from rpcnet.certs import write_dev_certs
from rpcnet.cluster import Keyring
from rpcnet.testing.processes import NodeProcess


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def views_agree(nodes: list[NodeProcess], ids: set[str]) -> bool:
    try:
        views = await asyncio.gather(*(node.members(timeout=2.0) for node in nodes))
    except AssertionError:
        return False
    return all({m["id"] for m in view if m["state"] == "alive"} == ids for view in views)


async def time_to_agree(nodes: list[NodeProcess], ids: set[str], since: float, limit: float) -> float | None:
    """Seconds from ``since`` (wall clock) until every view lists ``ids`` alive; None past ``limit``."""
    while time.time() - since < limit:
        if await views_agree(nodes, ids):
            return time.time() - since
        await asyncio.sleep(0.05)
    return None


async def start(node_id: str, certs: str, key: str, rpc: int, gossip: int, seeds: list[str], timeout: float = 30.0) -> NodeProcess:
    return await NodeProcess.start(
        node_id=node_id, listen=f"127.0.0.1:{rpc}", gossip=f"127.0.0.1:{gossip}", certs=certs, key=key, seeds=seeds, timeout=timeout
    )


def ready_time(node: NodeProcess) -> float:
    """When the node's ready line was read (wall clock): its first line."""
    return node.ready_at if node.ready_at is not None else time.time()


async def restarts(certs: str, key: str, runs: int, within: float) -> dict[str, list[float | None]]:
    ports = {f"n{i}": (free_port(), free_port()) for i in range(5)}
    seed_rpc = f"127.0.0.1:{ports['n0'][0]}"

    def seeds_of(node_id: str) -> list[str]:
        return [] if node_id == "n0" else [seed_rpc]

    nodes = {i: await start(i, certs, key, *ports[i], seeds_of(i)) for i in ports}
    ids = set(nodes)
    results: dict[str, list[float | None]] = {}
    try:
        assert await time_to_agree(list(nodes.values()), ids, time.time(), 30.0) is not None, "the cluster did not form"
        for run in range(runs):
            for role, victim_id in (("seed", "n0"), ("non-seed", f"n{1 + run % 4}")):
                for how in ("SIGTERM", "SIGKILL"):
                    victim = nodes[victim_id]
                    if how == "SIGTERM":
                        mark = len(victim.lines)
                        await victim.command("leave")
                        await victim.wait_for(lambda line: line.get("ok") == "leave", 10, start=mark)
                        await victim.stop()
                    else:
                        await victim.kill()
                    nodes[victim_id] = back = await start(victim_id, certs, key, *ports[victim_id], seeds_of(victim_id))
                    took = await time_to_agree(list(nodes.values()), ids, ready_time(back), 30.0)
                    results.setdefault(f"{role} {how}", []).append(took)
                    shown = "not within 30 s" if took is None else f"{took:.2f} s"
                    print(f"  run {run + 1}: {role} {victim_id} {how}: views agree {shown} after its ready line", file=sys.stderr)
                    if took is None:
                        # Start the next case from a cluster that agrees again.
                        await time_to_agree(list(nodes.values()), ids, time.time(), 60.0)
    finally:
        await asyncio.gather(*(node.stop() for node in nodes.values()))
    return results


async def start_order(certs: str, key: str, runs: int) -> list[float | None]:
    results: list[float | None] = []
    for run in range(runs):
        ports = [(free_port(), free_port()) for _ in range(7)]
        ids = {f"s{i}" for i in range(7)}
        nodes = await asyncio.gather(*(
            start(f"s{i}", certs, key, *ports[i], [f"127.0.0.1:{ports[i - 1][0]}"] if i else [], timeout=60.0)
            for i in range(7)
        ))
        try:
            last_ready = max(ready_time(node) for node in nodes)
            took = await time_to_agree(list(nodes), ids, last_ready, 60.0)
        finally:
            await asyncio.gather(*(node.stop() for node in nodes))
        results.append(took)
        shown = "not within 60 s" if took is None else f"{took:.2f} s"
        print(f"  start order run {run + 1}: all seven views agree {shown} after the last ready line", file=sys.stderr)
    return results


def summary(values: list[float | None], within: float) -> dict[str, Any]:
    done = [v for v in values if v is not None]
    return {
        "runs": len(values),
        "held": sum(1 for v in done if v <= within),
        "within_seconds": within,
        "median_seconds": statistics.median(done) if done else None,
        "max_seconds": max(done) if len(done) == len(values) and done else None,
        "seconds": values,
    }


async def main_async(options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rpcnet-restart-bench-") as workdir:
        write_dev_certs(workdir, server_names=["localhost", "127.0.0.1"], client_names=["client"], days=1)
        key = Keyring.generate()
        report: dict[str, Any] = {"benchmark": "restart_bench", "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()}}
        if options.runs:
            found = await restarts(workdir, key, options.runs, options.within)
            report["restarts"] = {case: summary(values, options.within) for case, values in found.items()}
        if options.start_runs:
            report["start_order"] = summary(await start_order(workdir, key, options.start_runs), options.start_within)
        return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs per restart case (default 20; 0 skips)")
    parser.add_argument("--start-runs", type=int, default=10, help="start-order runs (default 10; 0 skips)")
    parser.add_argument("--within", type=float, default=5.0, help="a restart run holds if views agree within this (5 s)")
    parser.add_argument("--start-within", type=float, default=10.0, help="a start-order run holds within this (10 s)")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    report = asyncio.run(main_async(options))
    if options.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"restart_bench: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for case, s in report.get("restarts", {}).items():
        print(f"restart {case:<18} {s['held']}/{s['runs']} within {s['within_seconds']:g} s; "
              f"median {fmt(s['median_seconds'])}, max {fmt(s['max_seconds'])}")
    if "start_order" in report:
        s = report["start_order"]
        print(f"start order, 7 nodes     {s['held']}/{s['runs']} within {s['within_seconds']:g} s; "
              f"median {fmt(s['median_seconds'])}, max {fmt(s['max_seconds'])}")
    return 0


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


if __name__ == "__main__":
    sys.exit(main())
