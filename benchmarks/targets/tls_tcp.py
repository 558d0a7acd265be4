"""Plain asyncio TCP with TLS 1.3: the TLS floor for the ``tcp`` transport.

The frames and batching of ``plain_tcp`` (length, request id, kind; one write
per event-loop turn), inside the stdlib ``ssl`` module's TLS 1.3 with the
same certificate files as the other TLS targets. No framework, no
multiplexing protocol, no flow control: what TLS over TCP costs in asyncio.
"""

from __future__ import annotations

import ssl

from targets import TlsFiles
from targets.plain_tcp import ClientProtocol, TcpServer
from targets.plain_tcp import connect as plain_connect
from targets.plain_tcp import start_server as plain_start_server


async def start_server(host: str, tls: TlsFiles) -> TcpServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(tls.cert_file, tls.key_file)
    return await plain_start_server(host, tls, ssl=context)


async def connect(host: str, port: int, tls: TlsFiles) -> ClientProtocol:
    context = ssl.create_default_context(cafile=tls.ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return await plain_connect(host, port, tls, ssl=context, server_name=tls.server_name)
