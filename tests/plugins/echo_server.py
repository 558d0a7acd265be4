"""An rpcnet echo server in its own process, for tests that measure the server.

``python echo_server.py TRANSPORT CERT_DIR [transport options as JSON]``
prints ``READY <port>`` and serves on 127.0.0.1 until its standard input
closes. Tests start it with ``transport_helpers.echo_server_process``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from rpcnet import RpcConfig, RpcServer, TlsConfig


async def main() -> None:
    transport, certs = sys.argv[1], Path(sys.argv[2])
    options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    config = RpcConfig(
        transport=transport,
        options={transport: options},
        tls=TlsConfig(cert_file=certs / "server.pem", key_file=certs / "server.key", ca_file=certs / "ca.pem"),
    )
    server = RpcServer(config)

    @server.unary("echo")
    async def echo(request, ctx):
        return request

    address = await server.start(("127.0.0.1", 0))
    print("READY", address[1], flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await server.stop(grace=0)


if __name__ == "__main__":
    asyncio.run(main())
