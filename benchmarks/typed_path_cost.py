"""CPU of a typed unary call against the untyped one, client and server in one process.

The ``Bench`` service of the rpcnet target (``bench.echo``, a one-field attrs
request of 64 bytes) beside the plain ``echo`` method, 64 callers at once,
over the ``memory`` transport (no sockets, no TLS: what remains is the RPC
engine and the typed layer) or QUIC on loopback. One process runs both
sides, so the time per call is the CPU of both sides.

    python benchmarks/typed_path_cost.py                          # memory transport, both scenarios
    python benchmarks/typed_path_cost.py --transport quic [--backend qh3]
    python benchmarks/typed_path_cost.py --only typed --profile   # cProfile of the typed calls
    python benchmarks/typed_path_cost.py --parts                  # the conversion steps alone

Instruction counts (repeatable on a loaded machine): run under
``valgrind --tool=callgrind`` twice with ``--calls N --repeat 1`` and
``--calls 2N --repeat 1`` for one scenario (``--only``); the difference
divided by N is per call.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from targets.rpcnet import Bench, BenchService, Payload  # noqa: E402

from rpcnet import RpcClient, RpcConfig, RpcServer, TlsConfig  # noqa: E402

PAYLOAD = b"x" * 64
CALLERS = 64


def _configs(transport: str, backend: str = "aioquic") -> tuple[RpcConfig, RpcConfig]:
    if transport == "memory":
        config = RpcConfig(transport="memory", options={"memory": {"network": "typed-path-cost"}})
        return config, config
    from devcerts import write_dev_certs

    tls = write_dev_certs(tempfile.mkdtemp(prefix="typed-path-cost-"))
    options = {"quic": {"backend": backend}}
    server = RpcConfig(transport="quic", tls=TlsConfig(cert_file=tls.cert_file, key_file=tls.key_file), options=options)
    client = RpcConfig(transport="quic", tls=TlsConfig(ca_file=tls.ca_file, server_name=tls.server_name), options=options)
    return server, client


async def _run(calls: int, call: object) -> float:
    per_caller = max(calls // CALLERS, 1)

    async def caller() -> None:
        for _ in range(per_caller):
            await call()  # type: ignore[operator]

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    return (time.perf_counter() - start) / (per_caller * CALLERS)


async def main(args: argparse.Namespace) -> None:
    server_config, client_config = _configs(args.transport, args.backend)
    server = RpcServer(server_config)

    @server.unary("echo")
    async def echo(request: bytes, ctx: object) -> bytes:
        return request

    server.add_service(BenchService())
    address = await server.start(("127.0.0.1", 0))
    client = RpcClient(address, client_config)
    await client.connect()
    bench = Bench.client(client)
    request = Payload(PAYLOAD)

    async def untyped() -> None:
        await client.call("echo", PAYLOAD)

    async def typed() -> None:
        await bench.echo(request)

    scenarios = {"untyped": untyped, "typed": typed}
    names = [args.only] if args.only else list(scenarios)
    try:
        for name in names:
            await _run(args.warmup, scenarios[name])
        results: dict[str, list[float]] = {name: [] for name in names}
        profile = cProfile.Profile() if args.profile else None
        for _ in range(args.repeat):
            for name in names:
                if profile is not None:
                    profile.enable()
                results[name].append(await _run(args.calls, scenarios[name]))
                if profile is not None:
                    profile.disable()
        best = {name: min(times) * 1e6 for name, times in results.items()}
        for name in names:
            print(f"{args.transport:6} {name:8} {best[name]:6.1f} us per call (both sides, best of {args.repeat})")
        if len(best) == 2:
            print(f"{args.transport:6} typed layer {best['typed'] - best['untyped']:+6.1f} us per call")
        if profile is not None:
            pstats.Stats(profile).sort_stats(args.sort).print_stats(args.lines)
    finally:
        await client.close()
        await server.stop(grace=0.5)


def parts() -> None:
    """The typed steps of one call, alone (msgpack converter)."""
    from rpcnet.rpc.services import service_info

    method = next(m for m in service_info(Bench).methods if m.attr == "echo")
    codecs = method.codecs("msgpack")
    value = Payload(PAYLOAD)
    wire = {"data": PAYLOAD}
    n = 200_000
    steps = {
        "client dump request": lambda: codecs.dump_request(value),
        "server load request": lambda: codecs.load_request(wire),
        "server dump response": lambda: codecs.dump_response(value),
        "client load response": lambda: codecs.load_response(wire),
    }
    baseline = min(timeit.repeat(lambda: None, number=n, repeat=5)) / n
    for name, step in steps.items():
        best = min(timeit.repeat(step, number=n, repeat=5)) / n
        print(f"{name:22} {(best - baseline) * 1e6:5.2f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=["memory", "quic"], default="memory")
    parser.add_argument("--backend", choices=["aioquic", "qh3"], default="aioquic", help="QUIC library (--transport quic)")
    parser.add_argument("--only", choices=["untyped", "typed"])
    parser.add_argument("--calls", type=int, default=64_000)
    parser.add_argument("--warmup", type=int, default=6400, help="calls before the measured ones")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--lines", type=int, default=25)
    parser.add_argument("--parts", action="store_true", help="time the conversion steps alone")
    arguments = parser.parse_args()
    if arguments.parts:
        parts()
    else:
        asyncio.run(main(arguments))
