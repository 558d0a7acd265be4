"""cProfile of sequential calls on the tcp transport, server and client in one process.

    .venv/bin/python benchmarks/tcp_call_profile.py --size 64 --calls 4000          # the lone call
    .venv/bin/python benchmarks/tcp_call_profile.py --size 1048576 --calls 200      # 1 MiB echo

Prints the CPU per call (both sides together, with and without the
profiler) and the functions with the most time of their own. One process
runs both ends, so nothing here is wall-clock throughput: use
``rpc_bench.py`` for that. To profile another revision's plugin, put its
tree first on the path: ``PYTHONPATH=../other:../other/plugins``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from devcerts import write_dev_certs  # noqa: E402

from rpcnet import RpcClient, RpcServer  # noqa: E402
from rpcnet.config import RpcConfig, TlsConfig  # noqa: E402


async def run(size: int, calls: int, warmup: int, top: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = write_dev_certs(tmp)
        server = RpcServer(RpcConfig(transport="tcp", tls=TlsConfig(cert_file=files.cert_file, key_file=files.key_file)))

        @server.unary("echo")
        async def echo(request: bytes, context: object) -> bytes:
            return request

        address = await server.start(("127.0.0.1", 0))
        config = RpcConfig(transport="tcp", tls=TlsConfig(ca_file=files.ca_file, server_name=files.server_name))
        client = RpcClient(address, config)
        await client.__aenter__()
        payload = b"x" * size
        for _ in range(warmup):
            await client.call("echo", payload)
        started = time.process_time()
        for _ in range(calls):
            await client.call("echo", payload)
        plain = (time.process_time() - started) / calls * 1e6
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(calls):
            await client.call("echo", payload)
        profile.disable()
        await client.__aexit__(None, None, None)
        await server.stop(grace=1.0)
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"{size}-byte echo, {calls} sequential calls: {plain:,.1f} us CPU per call (server + client)")
    print(f"under the profiler: {total / calls * 1e6:,.1f} us per call, {stats.total_calls / calls:,.0f} "  # type: ignore[attr-defined]
          "function calls per call")
    stats.sort_stats("tottime").print_stats(top)
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[-6000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    asyncio.run(run(args.size, args.calls, min(args.warmup, args.calls), args.top))


if __name__ == "__main__":
    main()
