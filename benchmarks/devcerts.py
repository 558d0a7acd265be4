"""TLS material for benchmark runs, made with ``rpcnet.certs`` (what ``rpcnet certs`` writes).

Every TLS target (rpcnet, raw aioquic, grpc.aio) loads the same files, so the
handshake and record protection cost the same key type (ECDSA P-256) on each.
The server certificate is a leaf signed by a development CA, not self-signed.
"""

from __future__ import annotations

from pathlib import Path

import attrs

__all__ = ["TlsFiles", "write_dev_certs"]

SERVER_NAME = "localhost"


@attrs.frozen(kw_only=True)
class TlsFiles:
    ca_file: str
    cert_file: str
    key_file: str
    server_name: str = SERVER_NAME

    @classmethod
    def in_directory(cls, directory: str | Path) -> TlsFiles:
        directory = Path(directory)
        return cls(
            ca_file=str(directory / "ca.pem"),
            cert_file=str(directory / "server.pem"),
            key_file=str(directory / "server.key"),
        )


def write_dev_certs(directory: str | Path) -> TlsFiles:
    """Write a development CA and a ``localhost`` server certificate into ``directory``."""
    from rpcnet.certs import write_dev_certs as write

    write(directory, server_names=(SERVER_NAME,), client_names=(), days=2)
    return TlsFiles.in_directory(directory)
