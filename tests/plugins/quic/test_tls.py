"""TLS settings the quic transport refuses, with errors that name them.

The handshake cases (refused certificates, mutual TLS, reload) are the TLS
conformance suite: tests/testing/test_tls_conformance_quic.py and, on qh3,
test_tls_conformance_quic_qh3.py.
"""

from __future__ import annotations

import pytest
from rpcnet_quic import QuicOptions, QuicTransport

from rpcnet.config import TlsConfig
from rpcnet.errors import ConfigError
from rpcnet.rpc.protocol import ALPN

from .helpers import Recorder


async def test_configuration_errors_are_clear(certs) -> None:
    transport = QuicTransport()
    with pytest.raises(ConfigError, match="needs a certificate to listen"):
        await transport.listen(("127.0.0.1", 0), lambda s: Recorder(), alpn=ALPN, tls=TlsConfig(ca_file=certs.path("ca.pem")))
    with pytest.raises(ConfigError, match="require_client_cert needs tls.ca_file"):
        await transport.listen(
            ("127.0.0.1", 0), lambda s: Recorder(), alpn=ALPN, tls=certs.server_tls(ca_file=None, require_client_cert=True)
        )
    with pytest.raises(ConfigError, match="needs TLS settings"):
        await transport.listen(("127.0.0.1", 0), lambda s: Recorder(), alpn=ALPN, tls=None)
    with pytest.raises(ConfigError, match="missing.pem"):
        await transport.connect(("127.0.0.1", 9), alpn=ALPN, tls=TlsConfig(ca_file="/nonexistent/missing.pem"))
    with pytest.raises(ConfigError, match="not found"):
        await transport.listen(
            ("127.0.0.1", 0), lambda s: Recorder(), alpn=ALPN, tls=certs.server_tls(cert_file="/nonexistent/server.pem")
        )


async def test_the_transport_refuses_to_run_without_a_protocol_id(certs) -> None:
    transport = QuicTransport(QuicOptions())
    with pytest.raises(ConfigError, match="needs the application protocol id"):
        await transport.listen(("127.0.0.1", 0), lambda s: Recorder(), tls=certs.server_tls())
    with pytest.raises(ConfigError, match="needs the application protocol id"):
        await transport.connect(("127.0.0.1", 9), tls=certs.client_tls())
