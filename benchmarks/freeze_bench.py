"""A worker frozen with SIGSTOP under load: failed calls, and how soon it is back.

Three ``examples/cluster/worker.py`` processes (mutual TLS, encrypted gossip,
no work per call); this process is the seed and the caller: ``--callers``
(64) tasks make idempotent ``infer`` calls with a ``--deadline`` (1 s)
through one least-connections ``ClusterClient``. After ``--warmup`` one
worker gets SIGSTOP for ``--freeze`` seconds (30), then SIGCONT. Reported:
calls ok and failed (each with its status code), attempt timeouts and
retries, when the client node's membership declared the worker suspect and
failed, and the time from SIGCONT to the first call the worker answered.

    python benchmarks/freeze_bench.py
    python benchmarks/freeze_bench.py --freeze 2 --json
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

from rpcnet.certs import write_dev_certs
from rpcnet.cluster import Cluster, ClusterClient, ClusterConfig, Keyring, RetryPolicy
from rpcnet.cluster.workers import WorkerRegistry
from rpcnet.config import RpcConfig, TlsConfig
from rpcnet.demo import ExampleProcess
from rpcnet.errors import RpcError
from rpcnet.rpc import RpcServer


async def run(options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rpcnet-freeze-bench-") as workdir:
        certs = Path(workdir)
        write_dev_certs(certs, server_names=["127.0.0.1"], client_names=["client"], days=1)
        key = Keyring.generate()
        tls = TlsConfig(ca_file=certs / "ca.pem", cert_file=certs / "server.pem", key_file=certs / "server.key")
        server = RpcServer(RpcConfig(tls=attrs.evolve(tls, require_client_cert=True)))
        await server.start("127.0.0.1:0")
        cluster = Cluster(server, ClusterConfig(node_id="caller", tags={"role": "caller"}, gossip_keys=(key,)))
        await cluster.start()
        host, port = server.address
        env = {"RPCNET_CERTS": str(certs), "RPCNET_GOSSIP_KEY": key, "DIRECTOR_ADDR": f"{host}:{port}"}
        workers: list[ExampleProcess] = []
        events = cluster.subscribe()
        seen: list[tuple[float, str, str]] = []

        async def follow() -> None:
            async for event in events:
                member = getattr(event, "member", None)
                if member is not None:
                    seen.append((time.time(), event.kind, member.id))

        follower = asyncio.ensure_future(follow())
        try:
            for i in range(3):
                workers.append(await ExampleProcess.launch("worker", ["--label", f"worker-{i + 1}", "--infer-ms", "0"], env=env))
            deadline = time.monotonic() + 30
            while len([m for m in cluster.members() if m.tags.get("role") == "worker"]) < 3:
                if time.monotonic() > deadline:
                    raise RuntimeError("the workers did not all join within 30 s")
                await asyncio.sleep(0.05)
            registry = WorkerRegistry(cluster, strategy="least-connections", plugins=server.plugins)
            await registry.start()
            retry = RetryPolicy(attempt_timeout_fraction=options.attempt_timeout_fraction)
            client = ClusterClient(
                registry, RpcConfig(tls=tls), cluster=cluster, plugins=server.plugins, idempotent=["infer"], retry=retry
            )
            await client.start()
            ok = 0
            failed: collections.Counter[str] = collections.Counter()
            answered: list[tuple[float, str]] = []
            stop = asyncio.Event()

            async def caller(index: int) -> None:
                nonlocal ok
                number = 0
                while not stop.is_set():
                    number += 1
                    try:
                        reply = await client.call_worker("infer", {"prompt": f"{index}-{number}"}, timeout=options.deadline)
                    except RpcError as exc:
                        failed[exc.code.name] += 1
                        continue
                    ok += 1
                    answered.append((time.time(), reply["worker"]))

            tasks = [asyncio.ensure_future(caller(i)) for i in range(options.callers)]
            await asyncio.sleep(options.warmup)
            victim = workers[0]
            victim_id = next(m.id for m in cluster.members() if m.tags.get("label") == "worker-1")
            frozen_at = time.time()
            os.kill(victim.pid, signal.SIGSTOP)
            await asyncio.sleep(options.freeze)
            resumed_at = time.time()
            os.kill(victim.pid, signal.SIGCONT)
            await asyncio.sleep(options.after)
            stop.set()
            await asyncio.gather(*tasks)
            stats = client.stats
            await client.close()
            await registry.close()
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
            await cluster.close()
            await server.stop(grace=0.5)
    first_back = next((t for t, w in answered if w == "worker-1" and t > resumed_at), None)

    def first(kind: str, after: float) -> float | None:
        return next((t - after for t, k, m in seen if k == kind and m == victim_id and t > after), None)

    return {
        "benchmark": "freeze_bench",
        "settings": {"callers": options.callers, "deadline": options.deadline, "freeze": options.freeze,
                     "attempt_timeout_fraction": options.attempt_timeout_fraction},
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "calls_ok": ok,
        "calls_failed": dict(failed),
        "attempt_timeouts": stats.attempt_timeouts,
        "retries": stats.retries,
        "ejections": stats.ejections,
        "suspect_after_freeze_seconds": first("suspect", frozen_at),
        "failed_after_freeze_seconds": first("failed", frozen_at),
        "recovered_after_resume_seconds": first("recovered", resumed_at),
        "answered_after_resume_seconds": None if first_back is None else first_back - resumed_at,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--deadline", type=float, default=1.0, help="seconds per call (default 1)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--freeze", type=float, default=30.0, help="seconds the worker stays stopped (default 30)")
    parser.add_argument("--after", type=float, default=5.0, help="seconds of load after SIGCONT (default 5)")
    parser.add_argument("--attempt-timeout-fraction", type=float, default=RetryPolicy().attempt_timeout_fraction,
                        help="RetryPolicy.attempt_timeout_fraction (1: every attempt gets the whole deadline)")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    report = asyncio.run(run(options))
    if options.json:
        print(json.dumps(report, indent=2))
    else:
        for name, value in report.items():
            print(f"{name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
