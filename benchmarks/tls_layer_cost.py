"""What a TLS 1.3 layer costs under asyncio: three ways to run TLS on a TCP socket.

Each variant runs an echo over loopback, server and client in separate
processes, the same variant on both sides; no RPC or HTTP/2 layer, only bytes:

- ``sslproto``: asyncio's own TLS (``loop.create_server(ssl=...)`` /
  ``loop.create_connection(ssl=...)``), what the tcp transport used to run on;
- ``memorybio``: a ``BufferedProtocol`` over a plain asyncio transport doing
  TLS through ``ssl.MemoryBIO`` / ``SSLObject``: large reads into one buffer,
  writes encrypted and handed to the socket in 64 KiB chunks, so the peer
  decrypts the first chunks while later ones are encrypted;
- ``sslsocket``: a non-blocking ``ssl.SSLSocket`` driven by
  ``loop.add_reader`` / ``loop.add_writer``: OpenSSL reads and writes the
  socket itself (no memory BIO copies), and releases the GIL while it does.
  This is the tcp transport's TLS layer (``rpcnet_tcp.tlsio.TlsTransport``),
  run here as the transport runs it.

Kernel TLS would be a fourth (OpenSSL's ``SSL_OP_ENABLE_KTLS`` on the
``sslsocket`` variant); it runs only where ``/proc/sys/net/ipv4/tcp_available_ulp``
lists ``tls``, and the script says when it does not.

    .venv/bin/python benchmarks/tls_layer_cost.py                 # both scenarios, every variant
    .venv/bin/python benchmarks/tls_layer_cost.py --variants sslsocket --scenarios echo_1mib

Reported per call: wall time, the CPU of the server and of the client (each
process's own ``time.process_time``), and MiB/s of payload received by the
client. Compare CPU per call; wall-clock rates move with the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

SCENARIOS = {"echo_1mib": (1 << 20, 100), "pingpong_64": (64, 5000)}  # message size, calls
VARIANTS = ("sslproto", "memorybio", "sslsocket", "ktls")
CHUNK = 64 * 1024
READ_SIZE = 256 * 1024
OP_ENABLE_KTLS = 1 << 3  # OpenSSL's SSL_OP_ENABLE_KTLS; Python 3.11 has no constant for it


def ktls_available() -> bool:
    try:
        return "tls" in Path("/proc/sys/net/ipv4/tcp_available_ulp").read_text().split()
    except OSError:
        return False


def contexts(directory: Path, variant: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_3
    server.load_cert_chain(directory / "server.pem", directory / "server.key")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    client.load_verify_locations(directory / "ca.pem")
    for context in (server, client):
        context.set_alpn_protocols(["bench"])
        if variant == "ktls":
            context.options |= OP_ENABLE_KTLS
    return server, client


# -- the application: echo a message of known size / send one and wait for it back ---


class App:
    def __init__(self, size: int, server: bool) -> None:
        self.size = size
        self.server = server
        self.got = 0
        self.parts: list[bytes] = []
        self.write: Any = None
        self.done: asyncio.Future[None] | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def received(self, data: bytes) -> None:
        self.got += len(data)
        if self.server:
            self.parts.append(data)
        if self.got >= self.size:
            self.got -= self.size
            if self.server:
                message = b"".join(self.parts)
                self.parts = []
                self.write(message)
            elif self.done is not None and not self.done.done():
                self.done.set_result(None)

    def lost(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


# -- (a) asyncio's sslproto --------------------------------------------------------


class PlainProtocol(asyncio.Protocol):
    def __init__(self, app: App) -> None:
        self.app = app

    def connection_made(self, transport: Any) -> None:
        self.app.write = transport.write

    def data_received(self, data: bytes) -> None:
        self.app.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.lost()


# -- (b) MemoryBIO under a BufferedProtocol ---------------------------------------


class MemoryBioProtocol(asyncio.BufferedProtocol):
    def __init__(self, app: App, context: ssl.SSLContext, server_side: bool) -> None:
        self.app = app
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side, None if server_side else "localhost")
        self.buffer = bytearray(READ_SIZE)
        self.plain = bytearray(READ_SIZE)
        self.view = memoryview(self.buffer)
        self.ready = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.app.write = self.write
        self._handshake()

    def _handshake(self) -> None:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        else:
            if not self.ready.done():
                self.ready.set_result(None)
        self._send_pending()

    def _send_pending(self) -> None:
        if self.outgoing.pending:
            self.transport.write(self.outgoing.read())

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        self.incoming.write(self.view[:nbytes])
        if not self.ready.done():
            self._handshake()
            if not self.ready.done():
                return
        plain = self.plain
        filled = 0
        while True:
            try:
                count = self.tls.read(READ_SIZE - filled, memoryview(plain)[filled:])
            except ssl.SSLWantReadError:
                break
            if not count:
                break
            filled += count
            if filled == READ_SIZE:
                self.app.received(bytes(plain))
                filled = 0
        if filled:
            self.app.received(bytes(plain[:filled]))
        self._send_pending()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        for offset in range(0, len(view), CHUNK):
            self.tls.write(view[offset : offset + CHUNK])
            self.transport.write(self.outgoing.read())

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.lost()


# -- (c) a non-blocking SSLSocket under add_reader / add_writer: the tcp transport's own
# TLS layer (plugins/rpcnet_tcp/tlsio.py), measured as the transport runs it.


def socket_transport(sock: ssl.SSLSocket, app: App) -> Any:
    from rpcnet_tcp.tlsio import TlsTransport

    protocol = PlainProtocol(app)
    transport = TlsTransport(sock, protocol)
    protocol.connection_made(transport)
    transport.start()
    return transport


# -- server and client -------------------------------------------------------------


async def serve(variant: str, size: int, directory: Path) -> None:
    from rpcnet_tcp.tlsio import handshake

    server_context, _ = contexts(directory, variant)
    loop = asyncio.get_running_loop()
    listening = socket.create_server(("127.0.0.1", 0))
    listening.setblocking(False)
    print(listening.getsockname()[1], flush=True)
    raw, _ = await loop.sock_accept(listening)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    started = time.process_time()
    app = App(size, server=True)
    if variant == "sslproto":
        await loop.connect_accepted_socket(lambda: PlainProtocol(app), raw, ssl=server_context)
    elif variant == "memorybio":
        _, protocol = await loop.connect_accepted_socket(lambda: MemoryBioProtocol(app, server_context, True), raw)
        await protocol.ready
    else:
        sock = await handshake(raw, server_context, server_side=True, timeout=None)
        socket_transport(sock, app)
    await app.closed
    print(f"{time.process_time() - started:.6f}", flush=True)


async def run_client(variant: str, size: int, calls: int, port: int, directory: Path) -> tuple[float, float]:
    from rpcnet_tcp.tlsio import connect_socket, handshake

    _, client_context = contexts(directory, variant)
    loop = asyncio.get_running_loop()
    app = App(size, server=False)
    started_cpu = time.process_time()
    if variant == "sslproto":
        transport, _ = await loop.create_connection(
            lambda: PlainProtocol(app), "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
        )
        close = transport.close
    elif variant == "memorybio":
        transport, protocol = await loop.create_connection(
            lambda: MemoryBioProtocol(app, client_context, False), "127.0.0.1", port
        )
        await protocol.ready
        close = transport.close
    else:
        raw = await connect_socket("127.0.0.1", port)
        sock = await handshake(raw, client_context, server_side=False, server_hostname="localhost", timeout=None)
        close = socket_transport(sock, app).close
    payload = os.urandom(size)
    started = time.perf_counter()
    for _ in range(calls):
        app.done = loop.create_future()
        app.write(payload)
        await app.done
    wall = time.perf_counter() - started
    cpu = time.process_time() - started_cpu
    close()
    return wall, cpu


def measure(variant: str, scenario: str, directory: Path) -> dict[str, float]:
    size, calls = SCENARIOS[scenario]
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", variant, "--size", str(size), "--certs", str(directory)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        port = int(server.stdout.readline())
        wall, client_cpu = asyncio.run(run_client(variant, size, calls, port, directory))
        server_cpu = float(server.stdout.readline())
    finally:
        server.wait(30)
    return {
        "us_per_call": wall / calls * 1e6,
        "server_cpu_us": server_cpu / calls * 1e6,
        "client_cpu_us": client_cpu / calls * 1e6,
        "mib_s": size * calls / wall / (1 << 20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--repeat", type=int, default=3, help="runs of each pair; the median by wall time is shown")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--certs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.size, Path(args.certs)))
        return
    from devcerts import write_dev_certs

    variants = list(args.variants)
    if "ktls" in variants and not ktls_available():
        print("ktls: skipped, the kernel offers no tls ULP (/proc/sys/net/ipv4/tcp_available_ulp)")
        variants.remove("ktls")
    print(f"load average (1 min) before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        write_dev_certs(tmp)
        for scenario in args.scenarios:
            size, calls = SCENARIOS[scenario]
            print(f"\n{scenario}: {size}-byte echo, {calls} sequential calls, median of {args.repeat}")
            print(f"{'variant':<11}{'us/call':>10}{'MiB/s':>9}{'srv cpu us':>12}{'cli cpu us':>12}{'sum':>10}")
            # Interleaved (every variant, then the next repetition), so a busy
            # patch of the machine hits every variant alike.
            runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in variants}
            for _ in range(args.repeat):
                for variant in variants:
                    runs[variant].append(measure(variant, scenario, Path(tmp)))
            for variant in variants:
                r = sorted(runs[variant], key=lambda r: r["us_per_call"])[args.repeat // 2]
                total = r["server_cpu_us"] + r["client_cpu_us"]
                print(f"{variant:<11}{r['us_per_call']:>10,.1f}{r['mib_s']:>9,.1f}"
                      f"{r['server_cpu_us']:>12,.1f}{r['client_cpu_us']:>12,.1f}{total:>10,.1f}")
    print(f"\nload average (1 min) after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
