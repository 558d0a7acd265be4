"""Logging: nothing reaches stderr unless the application configures logging;
a TLS failure is logged once per side under rpcnet's own logger."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap

import pytest
from rpcnet_quic import QuicOptions, QuicTransport

from rpcnet.errors import TlsError
from rpcnet.rpc.protocol import ALPN

from ..transport_helpers import DEADLINE


async def test_a_tls_failure_is_logged_once_per_side_under_rpcnet(start_server, certs, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_server()
    transport = QuicTransport(QuicOptions(handshake_timeout=DEADLINE))
    with pytest.raises(TlsError, match="unknown issuer"):
        await asyncio.wait_for(
            transport.connect(server.address, alpn=ALPN, tls=certs.client_tls(ca_file=certs.path("other-ca.pem"))), DEADLINE
        )
    await asyncio.wait_for(_until_server_connections_end(server), DEADLINE)
    failures = [r for r in caplog.records if r.name.startswith("rpcnet") and "TLS" in r.getMessage()]
    client_side = [r for r in failures if "unknown issuer" in r.getMessage()]
    server_side = [r for r in failures if r not in client_side]
    assert len(client_side) == 1, [r.getMessage() for r in failures]
    assert len(server_side) == 1, [r.getMessage() for r in failures]
    assert {r.name for r in failures} == {"rpcnet.quic"}
    assert {r.levelno for r in failures} == {logging.INFO}


async def _until_server_connections_end(server) -> None:
    while server.listener._all:
        await asyncio.sleep(0.01)


def test_nothing_reaches_stderr_without_logging_configured(certs) -> None:
    """aioquic logs TLS failures on its ``quic`` logger; without a handler
    they reached stderr through logging's last-resort handler."""
    script = textwrap.dedent(
        f"""
        import asyncio
        from rpcnet_quic import QuicOptions, QuicTransport
        from rpcnet.config import TlsConfig
        from rpcnet.errors import TlsError

        async def main():
            server_tls = TlsConfig(cert_file={certs.path("server.pem")!r}, key_file={certs.path("server.key")!r})
            listener = await QuicTransport().listen(("127.0.0.1", 0), lambda stream: None, alpn="rpcnet/1", tls=server_tls)
            bad = TlsConfig(ca_file={certs.path("other-ca.pem")!r}, server_name="localhost")
            for _ in range(3):
                try:
                    await QuicTransport(QuicOptions(handshake_timeout=5)).connect(listener.address, alpn="rpcnet/1", tls=bad)
                except TlsError:
                    pass
                else:
                    raise SystemExit("connected with the wrong CA")
            await listener.close()
            print("done")

        asyncio.run(main())
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.stdout.strip() == b"done", result.stderr.decode()
    assert result.stderr.decode() == ""
