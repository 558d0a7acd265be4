"""Logging on the tcp transport: a TLS failure is logged once per side under
``rpcnet.tcp``; nothing reaches stderr unless the application configures logging."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap

import pytest
from rpcnet_tcp import TcpOptions, TcpTransport

from rpcnet.errors import TlsError
from rpcnet.rpc.protocol import ALPN

from ..transport_helpers import DEADLINE, until


def _tls_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("rpcnet") and "TLS" in r.getMessage()]


async def test_a_refused_server_certificate_is_logged_once_per_side(start_server, certs, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_server()
    transport = TcpTransport(TcpOptions(handshake_timeout=DEADLINE))
    with pytest.raises(TlsError, match="unknown issuer"):
        await asyncio.wait_for(
            transport.connect(server.address, alpn=ALPN, tls=certs.client_tls(ca_file=certs.path("other-ca.pem"))),
            DEADLINE,
        )
    await until(lambda: len(_tls_records(caplog)) >= 2, DEADLINE)
    await until(lambda: not server.listener._handshakes, DEADLINE)
    failures = _tls_records(caplog)
    client_side = [r for r in failures if r.getMessage().startswith("client:")]
    server_side = [r for r in failures if r.getMessage().startswith("server:")]
    assert len(client_side) == 1 and "unknown issuer" in client_side[0].getMessage(), [r.getMessage() for r in failures]
    assert len(server_side) == 1 and "refused this server's certificate" in server_side[0].getMessage(), [
        r.getMessage() for r in failures
    ]
    assert len(failures) == 2
    assert {r.name for r in failures} == {"rpcnet.tcp"}
    assert {r.levelno for r in failures} == {logging.INFO}


async def test_a_refused_client_certificate_is_logged_once_per_side(start_server, certs, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_server(tls=certs.server_tls(require_client_cert=True))
    transport = TcpTransport(TcpOptions(handshake_timeout=DEADLINE))
    with pytest.raises(TlsError):
        await asyncio.wait_for(
            transport.connect(
                server.address, alpn=ALPN,
                tls=certs.client_tls(cert_file=certs.path("other-client.pem"), key_file=certs.path("other-client.key")),
            ),
            DEADLINE,
        )
    await until(lambda: len(_tls_records(caplog)) >= 2, DEADLINE)
    await until(lambda: not server.listener._handshakes, DEADLINE)
    failures = _tls_records(caplog)
    assert sorted(r.getMessage().split(":")[0] for r in failures) == ["client", "server"], [
        r.getMessage() for r in failures
    ]
    server_side = next(r for r in failures if r.getMessage().startswith("server:"))
    assert "certificate" in server_side.getMessage().lower()


def test_nothing_reaches_stderr_without_logging_configured(certs) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio
        from rpcnet_tcp import TcpOptions, TcpTransport
        from rpcnet.config import TlsConfig
        from rpcnet.errors import TlsError

        async def main():
            server_tls = TlsConfig(cert_file={certs.path("server.pem")!r}, key_file={certs.path("server.key")!r})
            listener = await TcpTransport().listen(("127.0.0.1", 0), lambda stream: None, alpn="rpcnet/1", tls=server_tls)
            bad = TlsConfig(ca_file={certs.path("other-ca.pem")!r}, server_name="localhost")
            for _ in range(3):
                try:
                    await TcpTransport(TcpOptions(handshake_timeout=5)).connect(listener.address, alpn="rpcnet/1", tls=bad)
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
