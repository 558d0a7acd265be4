"""TLS 1.3 for the ``tcp`` transport: SSL contexts from a ``TlsConfig``, and
error messages that name the check that failed.

OpenSSL (through :mod:`ssl`) verifies both ways: the server's chain and name
on clients, the client's chain and its ``clientAuth`` usage on servers with
``require_client_cert``. When it refuses, the messages here say which check
failed, in the words the ``quic`` transport uses, so an operator reads the
same thing whichever transport runs.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from rpcnet.config import TlsConfig
from rpcnet.errors import ConfigError

__all__ = [
    "server_context",
    "client_context",
    "identity_of",
    "explain_server_rejection",
    "explain_peer_rejection",
    "alert_of",
]

# TLS alert numbers (RFC 8446 section 6).
ALERT_BAD_CERTIFICATE = 42
ALERT_CERTIFICATE_EXPIRED = 45
ALERT_UNKNOWN_CA = 48
ALERT_CERTIFICATE_REQUIRED = 116
ALERT_NO_APPLICATION_PROTOCOL = 120

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


def identity_of(certificate: x509.Certificate) -> str | None:
    """The certificate's first DNS SAN, else its common name."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
        if names:
            return names[0]
    except x509.ExtensionNotFound:
        pass
    common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common_names[0].value) if common_names else None


def alert_of(exc: BaseException) -> int | None:
    """The TLS alert a peer sent, from the SSLError it caused (None if none)."""
    reason = getattr(exc, "reason", None)
    return _ALERT_REASONS.get(reason) if isinstance(reason, str) else None


def _validity_problem(certificate: x509.Certificate) -> str | None:
    now = datetime.datetime.now(datetime.UTC)
    if now > certificate.not_valid_after_utc:
        return f"expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
    if now < certificate.not_valid_before_utc:
        return f"is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
    return None


def _names(certificate: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return san.get_values_for_type(x509.DNSName), [str(a) for a in san.get_values_for_type(x509.IPAddress)]


def _name_matches(server_name: str, dns_names: list[str], ips: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(server_name)
    except ValueError:
        wanted = server_name.lower().rstrip(".")
        for pattern in dns_names:
            pattern = pattern.lower().rstrip(".")
            if pattern == wanted:
                return True
            if pattern.startswith("*.") and "." in wanted and wanted.split(".", 1)[1] == pattern[2:]:
                return True
        return False
    return any(ipaddress.ip_address(ip) == address for ip in ips)


def explain_server_rejection(
    certificate: x509.Certificate | None, *, server_name: str, ca_file: str | None, address: str, detail: str
) -> str:
    """The message for a server certificate we refused; checks run in
    OpenSSL's order (validity, name, chain) so it names the one that failed."""
    where = f"TLS handshake with {address} failed"
    if certificate is None:
        return f"{where}: the server certificate was rejected: {detail}"
    subject = certificate.subject.rfc4514_string() or "(empty subject)"
    problem = _validity_problem(certificate)
    if problem:
        return (
            f"{where}: expired certificate: the server certificate {subject} {problem}; "
            "the server must renew it (rpcnet certs DIR issues new ones)"
        )
    dns_names, ips = _names(certificate)
    if not _name_matches(server_name, dns_names, ips):
        names = ", ".join(dns_names + ips) or "no subject alternative names"
        return (
            f"{where}: server name mismatch: we expected {server_name!r} but the certificate is for {names}; "
            "connect with a matching server_name (or tls.server_name) or reissue the server certificate"
        )
    trust = f"tls.ca_file {ca_file!r}" if ca_file else "the system trust store (no tls.ca_file given)"
    return (
        f"{where}: unknown issuer: the server certificate {subject} is issued by "
        f"{certificate.issuer.rfc4514_string()}, which is not a CA in {trust} ({detail}); "
        "point tls.ca_file at the CA that issued the server certificate"
    )


def explain_peer_rejection(
    alert: int | None, reason: str, *, address: str, sent_certificate: bool, alpn: str | None = None
) -> str:
    """The message for a handshake the *server* aborted with an alert."""
    where = f"the server at {address} refused the TLS handshake"
    said = f" (server said: {reason})" if reason else ""
    if alert == ALERT_CERTIFICATE_REQUIRED or (
        alert in (ALERT_BAD_CERTIFICATE, ALERT_UNKNOWN_CA) and not sent_certificate
    ):
        return (
            f"{where}: the server requires a client certificate (mutual TLS){said}; "
            "set tls.cert_file and tls.key_file"
        )
    if alert == ALERT_UNKNOWN_CA:
        return f"{where}: unknown issuer: our client certificate is not signed by a CA the server trusts{said}"
    if alert == ALERT_CERTIFICATE_EXPIRED:
        return f"{where}: expired certificate: our client certificate is expired or not yet valid{said}"
    if alert == ALERT_BAD_CERTIFICATE:
        return f"{where}: our client certificate was rejected{said}"
    if alert == ALERT_NO_APPLICATION_PROTOCOL:
        return f"{where}: it does not speak the protocol version we offered ({alpn!r}){said}"
    return f"{where}{said}" + (f" (TLS alert {alert})" if alert is not None else "")
