"""Load balancing through a ClusterClient: three worker processes, one 5x slower.

The workers are ``examples/cluster/worker.py`` processes (mutual TLS,
encrypted gossip) whose ``infer`` takes ``--infer-ms`` and serves at most
``--slots`` calls at once, the rest queueing, like a model server; one worker
takes ``--slow-factor`` times as long. This process joins their cluster as the
seed and the caller, and for each strategy builds a fresh WorkerRegistry and
ClusterClient and keeps ``--concurrency`` calls in flight: requests/s, p50 and
p99 over the measured window, and how the calls spread over the workers.
Strategies run interleaved, ``--repeat`` times; the run with the median p99
is reported per strategy. Interleaved with them, ``direct`` is the same load
on one plain ``RpcClient`` connection to the first worker (no registry, no
pool, no selection): the baseline the cluster path's cost is read against,
measured in the same run (``--no-baseline`` leaves it out).

    python benchmarks/cluster_bench.py                 # about a minute
    python benchmarks/cluster_bench.py --quick         # smoke run
    python benchmarks/cluster_bench.py --json
    python benchmarks/cluster_bench.py --overhead      # the path's cost: 0 ms work, no slots, 64 in flight

Numbers are measured, never asserted: whether least-connections' p99 beats
round-robin's is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

from rpcnet.certs import write_dev_certs
from rpcnet.cluster import Cluster, ClusterClient, ClusterConfig, Keyring
from rpcnet.cluster.config import RPC_ADDRESS_TAG
from rpcnet.cluster.workers import WorkerRegistry
from rpcnet.config import RpcConfig, TlsConfig
from rpcnet.demo import ExampleProcess
from rpcnet.rpc import RpcServer

STRATEGIES = ("round-robin", "random", "least-connections")
#: The name the direct RpcClient baseline is reported under.
DIRECT = "direct"


@attrs.frozen(kw_only=True)
class Run:
    strategy: str
    requests: int
    errors: int
    seconds: float
    p50: float | None
    p99: float | None
    per_worker: dict[str, int]
    #: CPU seconds this (the calling) process spent over the measured window.
    cpu: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_per_call(self) -> float:
        return self.cpu / self.requests if self.requests else 0.0


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


async def drive(call: Any, label: str, options: argparse.Namespace) -> Run:
    """``options.concurrency`` callers of ``call(prompt)``, measured after the warm-up."""
    latencies: list[float] = []
    per_worker: dict[str, int] = {}
    errors = 0
    phase = {"measuring": False, "stop": False}

    async def caller(index: int) -> None:
        nonlocal errors
        number = 0
        while not phase["stop"]:
            number += 1
            started = time.perf_counter()
            try:
                reply = await call({"prompt": f"{index}-{number}"})
            except Exception:  # counted, reported
                if phase["measuring"]:
                    errors += 1
                continue
            if phase["measuring"]:
                latencies.append(time.perf_counter() - started)
                per_worker[reply["worker"]] = per_worker.get(reply["worker"], 0) + 1

    tasks = [asyncio.ensure_future(caller(i)) for i in range(options.concurrency)]
    await asyncio.sleep(options.warmup)
    phase["measuring"] = True
    began, cpu_began = time.perf_counter(), time.process_time()
    await asyncio.sleep(options.duration)
    phase["measuring"] = False
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    phase["stop"] = True
    await asyncio.gather(*tasks)
    return Run(strategy=label, requests=len(latencies), errors=errors, seconds=seconds,
               p50=percentile(latencies, 0.5), p99=percentile(latencies, 0.99), per_worker=dict(sorted(per_worker.items())), cpu=cpu)


async def measure(node: Any, strategy: str, options: argparse.Namespace) -> Run:
    registry = WorkerRegistry(node.cluster, strategy=strategy, plugins=node.server.plugins)
    await registry.start()
    client = ClusterClient(registry, node.outgoing, cluster=node.cluster, plugins=node.server.plugins, idempotent=["infer"])
    await client.start()
    try:
        return await drive(lambda request: client.call_worker("infer", request, timeout=30), strategy, options)
    finally:
        await client.close()
        await registry.close()


async def measure_direct(node: Any, address: str, options: argparse.Namespace) -> Run:
    """The same callers on one plain RpcClient connection to one worker."""
    from rpcnet.rpc import RpcClient

    host, _, port = address.rpartition(":")
    client = RpcClient((host, int(port)), node.outgoing, plugins=node.server.plugins, server_name=host)
    try:
        return await drive(lambda request: client.call("infer", request, timeout=30), DIRECT, options)
    finally:
        await client.close()


@attrs.define
class BenchNode:
    server: RpcServer
    cluster: Cluster
    outgoing: RpcConfig


async def run(options: argparse.Namespace) -> tuple[dict[str, Run], list[Run], dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="rpcnet-cluster-bench-") as workdir:
        certs = Path(workdir)
        write_dev_certs(certs, server_names=["127.0.0.1"], client_names=["client"], days=1)
        key = Keyring.generate()
        tls = TlsConfig(ca_file=certs / "ca.pem", cert_file=certs / "server.pem", key_file=certs / "server.key")
        server = RpcServer(RpcConfig(tls=attrs.evolve(tls, require_client_cert=True)))
        await server.start("127.0.0.1:0")
        cluster = Cluster(server, ClusterConfig(node_id="bench", tags={"role": "bench"}, gossip_keys=(key,)))
        await cluster.start()
        node = BenchNode(server, cluster, RpcConfig(tls=tls))
        host, port = server.address
        env = {"RPCNET_CERTS": str(certs), "RPCNET_GOSSIP_KEY": key, "DIRECTOR_ADDR": f"{host}:{port}"}
        speeds = {"worker-fast-1": options.infer_ms, "worker-fast-2": options.infer_ms,
                  "worker-slow": options.infer_ms * options.slow_factor}
        workers: list[ExampleProcess] = []
        try:
            for label, infer_ms in speeds.items():
                workers.append(await ExampleProcess.launch(
                    "worker", ["--label", label, "--infer-ms", f"{infer_ms:g}", "--slots", str(options.slots)], env=env
                ))
            deadline = time.monotonic() + 20
            while len([m for m in cluster.members() if m.tags.get("role") == "worker"]) < len(speeds):
                if time.monotonic() > deadline:
                    raise RuntimeError("the workers did not all join within 20 s")
                await asyncio.sleep(0.05)
            first = min((m for m in cluster.members() if m.tags.get("role") == "worker"), key=lambda m: m.id)
            runs: list[Run] = []
            for _ in range(options.repeat):
                for strategy in ([DIRECT] if options.baseline else []) + list(options.strategies):
                    if strategy == DIRECT:
                        runs.append(await measure_direct(node, first.tags[RPC_ADDRESS_TAG], options))
                    else:
                        runs.append(await measure(node, strategy, options))
                    print(f"  {strategy:<18} {runs[-1].rps:8.0f} req/s  p99 {fmt_ms(runs[-1].p99)}", file=sys.stderr)
        finally:
            await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
            await cluster.close()
            await server.stop(grace=0.5)
    chosen = {}
    for strategy in ([DIRECT] if options.baseline else []) + list(options.strategies):
        mine = sorted((r for r in runs if r.strategy == strategy), key=lambda r: r.p99 or 0.0)
        chosen[strategy] = mine[len(mine) // 2]
    return chosen, runs, {label: f"{ms:g} ms" for label, ms in speeds.items()}


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.2f} ms"


def verdict(chosen: dict[str, Run]) -> str | None:
    lc, rr = chosen.get("least-connections"), chosen.get("round-robin")
    if lc is None or rr is None or lc.p99 is None or rr.p99 is None:
        return None
    if lc.p99 < rr.p99:
        return f"least-connections p99 beats round-robin: {fmt_ms(lc.p99)} < {fmt_ms(rr.p99)} ({rr.p99 / lc.p99:.1f}x lower)"
    return f"least-connections p99 does NOT beat round-robin: {fmt_ms(lc.p99)} >= {fmt_ms(rr.p99)}"


def report_table(chosen: dict[str, Run], speeds: dict[str, str], options: argparse.Namespace) -> str:
    workers = sorted({w for r in chosen.values() for w in r.per_worker})
    lines = [
        f"cluster_bench: 3 worker processes ({', '.join(f'{k} {v}' for k, v in speeds.items())}, {options.slots} slot(s) each), "
        f"concurrency {options.concurrency}, {options.duration:g} s measured, median-p99 run of {options.repeat}; "
        f"{os.cpu_count()} CPUs, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]
    rows = [["strategy", "req/s", "p50", "p99", "errors", "client CPU/call", *(f"{w} share" for w in workers)]]
    for strategy, r in chosen.items():
        total = sum(r.per_worker.values()) or 1
        rows.append([strategy, f"{r.rps:.0f}", fmt_ms(r.p50), fmt_ms(r.p99), str(r.errors), f"{r.cpu_per_call * 1e6:.0f} us",
                     *(f"{100 * r.per_worker.get(w, 0) / total:.1f}%" for w in workers)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    said = verdict(chosen)
    if said:
        lines.append(said)
    for strategy, ratio in ratios(chosen).items():
        lines.append(f"{strategy}: {ratio:.2f}x the direct client's req/s (same run)")
    return "\n".join(lines)


def ratios(chosen: dict[str, Run]) -> dict[str, float]:
    """Each strategy's req/s over the direct baseline's, in the same run."""
    direct = chosen.get(DIRECT)
    if direct is None or not direct.rps:
        return {}
    return {s: r.rps / direct.rps for s, r in chosen.items() if s != DIRECT}


def report_json(chosen: dict[str, Run], runs: list[Run], speeds: dict[str, str], options: argparse.Namespace) -> dict[str, Any]:
    def as_dict(r: Run) -> dict[str, Any]:
        return {"strategy": r.strategy, "requests_per_second": r.rps, "requests": r.requests, "errors": r.errors,
                "seconds": r.seconds, "client_cpu_seconds_per_call": r.cpu_per_call, "p50_seconds": r.p50, "p99_seconds": r.p99, "per_worker": r.per_worker}

    lc, rr = chosen.get("least-connections"), chosen.get("round-robin")
    beats = None if lc is None or rr is None or lc.p99 is None or rr.p99 is None else lc.p99 < rr.p99
    return {
        "benchmark": "cluster_bench",
        "settings": {"concurrency": options.concurrency, "duration": options.duration, "warmup": options.warmup,
                     "repeat": options.repeat, "slots": options.slots, "workers": speeds},
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version()},
        "results": {s: as_dict(r) for s, r in chosen.items()},
        "ratio_to_direct": ratios(chosen),
        "runs": [as_dict(r) for r in runs],
        "least_connections_p99_beats_round_robin": beats,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), metavar="NAME")
    parser.add_argument("--concurrency", type=int, default=16, help="calls kept in flight (default 16)")
    parser.add_argument("--duration", type=float, help="seconds measured per run (default 5; --quick 1.5)")
    parser.add_argument("--warmup", type=float, help="seconds of load before measuring (default 1; --quick 0.5)")
    parser.add_argument("--repeat", type=int, help="runs per strategy, interleaved (default 3; --quick 1)")
    parser.add_argument("--infer-ms", type=float, default=10.0, help="milliseconds a fast worker's infer takes (default 10)")
    parser.add_argument("--slow-factor", type=float, default=5.0, help="how much slower the slow worker is (default 5)")
    parser.add_argument("--slots", type=int, default=2, help="infer calls a worker serves at once (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: short windows, one repetition")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="leave out the direct RpcClient baseline")
    parser.add_argument("--overhead", action="store_true",
                        help="measure the cluster path's cost: --infer-ms 0 --slow-factor 1 --slots 0 --concurrency 64")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    options = parser.parse_args(argv)
    if options.overhead:
        options.infer_ms, options.slow_factor, options.slots, options.concurrency = 0.0, 1.0, 0, 64
    options.duration = options.duration or (1.5 if options.quick else 5.0)
    options.warmup = options.warmup if options.warmup is not None else (0.5 if options.quick else 1.0)
    options.repeat = options.repeat or (1 if options.quick else 3)
    if options.concurrency < 1 or options.slots < 0 or options.slow_factor <= 0:
        parser.error("--concurrency must be >= 1, --slots >= 0 and --slow-factor > 0")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        chosen, runs, speeds = asyncio.run(run(options))
    except Exception as exc:
        print(f"cluster_bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if options.json:
        print(json.dumps(report_json(chosen, runs, speeds, options), indent=2))
    else:
        print(report_table(chosen, speeds, options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
