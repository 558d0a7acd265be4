"""Client-side CPU of the ClusterClient path per call, without the RPC itself.

A registry with three workers and a ClusterClient whose connections are
stubs that answer at once: what remains is selection, statistics, the pool
and the retry bookkeeping, per call, one call at a time.

    python benchmarks/cluster_path_cost.py                       # round-robin and least-connections
    python benchmarks/cluster_path_cost.py least-connections --profile
"""
import asyncio
import cProfile
import pstats
import sys
import time

import rpcnet.cluster.client as cluster_client
from rpcnet.cluster import ClusterClient
from rpcnet.cluster.config import RPC_ADDRESS_TAG
from rpcnet.cluster.workers import WorkerRegistry
from rpcnet.config import RpcConfig
from rpcnet.events import MemberJoined
from rpcnet.membership import Member, MemberState


class FakeClient:
    async def call(self, method: str, request: object, timeout: float | None = None, metadata: object = None) -> None:
        return None

    async def close(self) -> None:
        pass


async def main(strategy: str, n: int, profile: bool) -> None:
    reg = WorkerRegistry(None, strategy=strategy)
    for i in range(3):
        tags = {"role": "worker", RPC_ADDRESS_TAG: f"127.0.0.1:{8000 + i}"}
        member = Member(id=f"w{i}", address=("127.0.0.1", 9000 + i), tags=tags, incarnation=0, state=MemberState.ALIVE)
        reg.apply(MemberJoined(at=0.0, member=member))
    client = ClusterClient(reg, RpcConfig(), idempotent=["infer"])
    cluster_client.RpcClient = lambda *a, **k: FakeClient()  # type: ignore[assignment,misc]
    async def one() -> None:
        await client.call_worker("infer", {}, timeout=1.0)

    for _ in range(1000):
        await one()
    prof = cProfile.Profile() if profile else None
    t = time.perf_counter()
    if prof:
        prof.enable()
    for _ in range(n):
        await one()
    if prof:
        prof.disable()
    dt = time.perf_counter() - t
    print(f"{strategy:18} {dt / n * 1e6:6.1f} us per call")
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(14)


if __name__ == "__main__":
    for strategy in [a for a in sys.argv[1:] if not a.startswith("--")] or ["round-robin", "least-connections"]:
        asyncio.run(main(strategy, 20000, "--profile" in sys.argv))
