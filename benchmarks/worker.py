"""One side of one benchmark run, in its own process; started by ``rpc_bench.py``.

``worker.py server TARGET`` starts the target's server, prints ``READY <port>``
and serves until its standard input closes or it gets SIGTERM.

``worker.py client TARGET --port P --scenario S ...`` connects, checks one
call's reply, runs the scenario's callers through a warm-up and then a timed
window, and prints ``RESULT <json>``.

Either side prints ``UNAVAILABLE <reason>`` and exits with status 3 when its
target cannot run here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from devcerts import TlsFiles
from scenarios import MIB, SCENARIOS, Scenario
from targets import TARGETS, BenchClient, TargetUnavailable, encode_download, load_target

UNAVAILABLE_STATUS = 3


def _print_line(*words: object) -> None:
    print(*words, flush=True)


# -- server -------------------------------------------------------------------


class _StdinWatcher(asyncio.Protocol):
    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop

    def eof_received(self) -> bool:
        self._stop.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop.set()


async def serve(args: argparse.Namespace) -> int:
    tls = TlsFiles.in_directory(args.tls_dir)
    try:
        target = load_target(args.target)
        server = await target.start_server(args.host, tls)
    except TargetUnavailable as exc:
        _print_line("UNAVAILABLE", exc)
        return UNAVAILABLE_STATUS
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # The driver holds our stdin open; if it goes away, so do we.
    await loop.connect_read_pipe(lambda: _StdinWatcher(stop), sys.stdin)
    _print_line("READY", server.port)
    await stop.wait()
    await server.close()
    return 0


# -- client -------------------------------------------------------------------


def _process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of every thread of ``pid``, from /proc (None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None for an empty one)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _make_call(client: BenchClient, scenario: Scenario) -> Callable[[], Coroutine[Any, Any, None]]:
    """One call of the scenario, checking only the size of what came back."""
    if scenario.kind == "unary":
        payload = os.urandom(scenario.payload_size)
        expected = len(payload)
        unary = client.unary

        async def call() -> None:
            reply = await unary(payload)
            if len(reply) != expected:
                raise AssertionError(f"echo returned {len(reply)} bytes, sent {expected}")

        return call

    request = encode_download(scenario.stream_messages, scenario.stream_message_size)
    expected_messages = scenario.stream_messages
    expected_bytes = scenario.bytes_per_call
    download = client.download

    async def call() -> None:
        messages = received = 0
        async for message in download(request):
            messages += 1
            received += len(message)
        if messages != expected_messages or received != expected_bytes:
            raise AssertionError(
                f"download returned {messages} messages / {received} bytes, "
                f"expected {expected_messages} / {expected_bytes}"
            )

    return call


async def _check_reply(client: BenchClient, scenario: Scenario) -> None:
    """Compare one full reply byte for byte before timing anything."""
    if scenario.kind == "unary":
        payload = os.urandom(scenario.payload_size)
        reply = await client.unary(payload)
        if bytes(reply) != payload:
            raise AssertionError("echo reply differs from the request")
    else:
        request = encode_download(scenario.stream_messages, scenario.stream_message_size)
        messages = [bytes(m) async for m in client.download(request)]
        if len(messages) != scenario.stream_messages or {len(m) for m in messages} != {scenario.stream_message_size}:
            raise AssertionError("download returned the wrong number or size of messages")


async def measure(client: BenchClient, scenario: Scenario, warmup: float, duration: float, server_pid: int | None) -> dict[str, Any]:
    await _check_reply(client, scenario)
    call = _make_call(client, scenario)
    latencies: list[float] = []
    measuring = False
    stopping = False
    clock = time.perf_counter

    async def caller() -> None:
        record = latencies.append
        while not stopping:
            started = clock()
            await call()
            if measuring:
                record(clock() - started)

    tasks = [asyncio.create_task(caller()) for _ in range(scenario.concurrency)]

    async def run_for(seconds: float) -> None:
        done, _ = await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # a failed call ends the run with its error

    try:
        await run_for(warmup)
        server_cpu_start = _process_cpu_seconds(server_pid) if server_pid else None
        client_cpu_start = time.process_time()
        measuring = True
        window_start = clock()
        await run_for(duration)
        measuring = False
        window = clock() - window_start
        client_cpu = time.process_time() - client_cpu_start
        server_cpu_end = _process_cpu_seconds(server_pid) if server_pid else None
        stopping = True
        await asyncio.gather(*tasks)
    finally:
        stopping = True
        for task in tasks:
            task.cancel()

    calls = len(latencies)
    latencies.sort()
    rate = calls / window
    server_cpu = (
        server_cpu_end - server_cpu_start
        if server_cpu_start is not None and server_cpu_end is not None
        else None
    )
    p50 = _percentile(latencies, 0.50)
    p99 = _percentile(latencies, 0.99)
    # None rather than NaN where nothing was measured: the report stays valid JSON.
    return {
        "requests": calls,
        "seconds": window,
        "requests_per_s": rate,
        "p50_us": None if p50 is None else p50 * 1e6,
        "p99_us": None if p99 is None else p99 * 1e6,
        "mean_us": (sum(latencies) / calls * 1e6) if calls else None,
        "mib_per_s": rate * scenario.bytes_per_call / MIB,
        "messages_per_s": rate * scenario.messages_per_call,
        "client_cpu_us_per_call": (client_cpu / calls * 1e6) if calls else None,
        "server_cpu_us_per_call": (server_cpu / calls * 1e6) if calls and server_cpu is not None else None,
        "client_cpu_share": client_cpu / window,
        # ru_maxrss is in KiB on Linux: the client process's peak over the whole run.
        "client_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "server_cpu_share": (server_cpu / window) if server_cpu is not None else None,
    }


async def run_client(args: argparse.Namespace) -> int:
    tls = TlsFiles.in_directory(args.tls_dir)
    scenario = SCENARIOS[args.scenario]
    try:
        target = load_target(args.target)
    except TargetUnavailable as exc:
        _print_line("UNAVAILABLE", exc)
        return UNAVAILABLE_STATUS
    client = await asyncio.wait_for(target.connect(args.host, args.port, tls), timeout=args.connect_timeout)
    try:
        result = await measure(client, scenario, args.warmup, args.duration, args.server_pid)
    finally:
        await client.close()
    _print_line("RESULT", json.dumps(result))
    return 0


# -- entry ------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", choices=("server", "client"))
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--tls-dir", required=True, help="directory holding ca.pem, server.pem, server-key.pem")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop instead of the default asyncio loop")
    parser.add_argument("--port", type=int, help="client: the server's port")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), help="client: what to run")
    parser.add_argument("--warmup", type=float, default=1.0, help="client: seconds of load before timing")
    parser.add_argument("--duration", type=float, default=3.0, help="client: seconds timed")
    parser.add_argument("--server-pid", type=int, help="client: read this process's CPU time around the window")
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    parser.add_argument("--cpu", type=int, help="run this process on this CPU only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.role == "client" and (args.port is None or args.scenario is None):
        _parser().error("client needs --port and --scenario")
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    loop_factory = None
    if args.uvloop:
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(serve(args) if args.role == "server" else run_client(args))


if __name__ == "__main__":
    sys.exit(main())
