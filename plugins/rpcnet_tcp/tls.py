"""TLS 1.3 for the ``tcp`` transport: SSL contexts from a ``TlsConfig``, and
the alert a peer sent, read from the ``SSLError`` it caused.

OpenSSL (through :mod:`ssl`) verifies both ways: the server's chain and name
on clients, the client's chain and its ``clientAuth`` usage on servers with
``require_client_cert``. When it refuses, :mod:`rpcnet.tls` words the error,
as it does for every transport, so an operator reads the same thing
whichever transport runs.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from rpcnet.config import TlsConfig
from rpcnet.errors import ConfigError
from rpcnet.tls import (
    ALERT_BAD_CERTIFICATE,
    ALERT_CERTIFICATE_EXPIRED,
    ALERT_CERTIFICATE_REQUIRED,
    ALERT_NO_APPLICATION_PROTOCOL,
    ALERT_UNKNOWN_CA,
)

__all__ = ["server_context", "client_context", "alert_of"]

# OpenSSL's reason names for the alerts a peer sends.
_ALERT_REASONS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": ALERT_CERTIFICATE_REQUIRED,
    "TLSV1_ALERT_UNKNOWN_CA": ALERT_UNKNOWN_CA,
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": ALERT_CERTIFICATE_EXPIRED,
    "SSLV3_ALERT_BAD_CERTIFICATE": ALERT_BAD_CERTIFICATE,
    "TLSV1_ALERT_NO_APPLICATION_PROTOCOL": ALERT_NO_APPLICATION_PROTOCOL,
}


def _readable(option: str, path: str) -> str:
    if not Path(path).is_file():
        raise ConfigError(f"tls.{option} {path!r} cannot be read: no such file")
    return path


def _load_chain(context: ssl.SSLContext, cert_file: str, key_file: str) -> None:
    try:
        context.load_cert_chain(_readable("cert_file", cert_file), _readable("key_file", key_file))
    except ssl.SSLError as exc:
        raise ConfigError(
            f"tls.cert_file {cert_file!r} and tls.key_file {key_file!r} do not load as a certificate and its key: "
            f"{exc.reason or exc}"
        ) from None


def _load_cas(context: ssl.SSLContext, ca_file: str) -> None:
    try:
        context.load_verify_locations(cafile=_readable("ca_file", ca_file))
    except ssl.SSLError as exc:
        raise ConfigError(f"tls.ca_file {ca_file!r} holds no valid PEM certificate: {exc.reason or exc}") from None


def server_context(tls: TlsConfig, alpn: str) -> ssl.SSLContext:
    """TLS 1.3 only; asks for and verifies a client certificate under mutual TLS."""
    assert tls.cert_file and tls.key_file
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    _load_chain(context, tls.cert_file, tls.key_file)
    context.set_alpn_protocols([alpn])
    if tls.require_client_cert:
        if not tls.ca_file:
            raise ConfigError("tls.require_client_cert needs tls.ca_file: the CA that issues client certificates")
        _load_cas(context, tls.ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(tls: TlsConfig, alpn: str, *, verify: bool = True) -> ssl.SSLContext:
    """TLS 1.3 only; verifies the server's chain and name (``verify=False``
    only to read a refused certificate for an error message)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    if verify:
        if tls.ca_file:
            _load_cas(context, tls.ca_file)
        else:
            try:
                import certifi
            except ImportError:
                context.load_default_certs()
            else:
                context.load_verify_locations(cafile=certifi.where())
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file or tls.key_file:
        if not (tls.cert_file and tls.key_file):
            raise ConfigError("a client certificate needs both tls.cert_file and tls.key_file")
        _load_chain(context, tls.cert_file, tls.key_file)
    context.set_alpn_protocols([alpn])
    return context


def alert_of(exc: BaseException) -> int | None:
    """The TLS alert a peer sent, from the SSLError it caused (None if none)."""
    reason = getattr(exc, "reason", None)
    return _ALERT_REASONS.get(reason) if isinstance(reason, str) else None
