"""Transport-independent TLS: certificate checks, identities, and error
messages that say which check failed.

Every transport that speaks TLS uses these, so an operator reads the same
words whichever transport runs:

- :func:`identity_of`: a peer's identity, its certificate's first DNS SAN
  else its common name.
- :func:`load_ca_certificates` and :func:`verify_client_certificate`: a
  client's chain checked against ``ca_file`` with
  ``cryptography.x509.verification``, for TLS stacks that ask for a client
  certificate but leave its verification to us.
- :func:`explain_server_rejection`: a refused server certificate looked at
  again, naming the failed check (expired, server name mismatch, unknown
  issuer).
- :func:`explain_peer_rejection`: a handshake the server aborted, from the
  TLS alert it sent.

How a transport sees an alert or a failed handshake (an ``SSLError``'s
reason, a QUIC ``CRYPTO_ERROR``) stays in the transport.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from .errors import ConfigError

__all__ = [
    "ALERT_BAD_CERTIFICATE",
    "ALERT_CERTIFICATE_EXPIRED",
    "ALERT_UNKNOWN_CA",
    "ALERT_CERTIFICATE_REQUIRED",
    "ALERT_NO_APPLICATION_PROTOCOL",
    "ClientCertificateRejected",
    "VerifiedPeer",
    "load_ca_certificates",
    "verify_client_certificate",
    "identity_of",
    "explain_server_rejection",
    "explain_peer_rejection",
]

# TLS alert numbers (RFC 8446 section 6).
ALERT_BAD_CERTIFICATE = 42
ALERT_CERTIFICATE_EXPIRED = 45
ALERT_UNKNOWN_CA = 48
ALERT_NO_APPLICATION_PROTOCOL = 120
ALERT_CERTIFICATE_REQUIRED = 116


class ClientCertificateRejected(Exception):
    """A client certificate failed verification; ``alert`` says which check."""

    def __init__(self, alert: int, message: str) -> None:
        super().__init__(message)
        self.alert = alert
        self.message = message


@dataclasses.dataclass(frozen=True, slots=True)
class VerifiedPeer:
    identity: str | None
    certificate: bytes  # DER


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def load_ca_certificates(ca_file: str) -> list[x509.Certificate]:
    """The CA certificates in a PEM file, with an error that names the file."""
    try:
        data = Path(ca_file).read_bytes()
    except OSError as exc:
        raise ConfigError(f"tls.ca_file {ca_file!r} cannot be read: {exc.strerror}") from None
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(f"tls.ca_file {ca_file!r} holds no valid PEM certificate: {exc}") from None
    return certificates


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


def _describe(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string() or "(empty subject)"


def _validity_problem(certificate: x509.Certificate, now: datetime.datetime) -> str | None:
    if now > certificate.not_valid_after_utc:
        return f"expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
    if now < certificate.not_valid_before_utc:
        return f"is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
    return None


def verify_client_certificate(
    leaf: x509.Certificate | None,
    intermediates: list[x509.Certificate],
    trusted: list[x509.Certificate],
    *,
    now: datetime.datetime | None = None,
) -> VerifiedPeer:
    """Check a client's certificate chain against the ``trusted`` CAs.

    Raises :class:`ClientCertificateRejected` naming what failed: no
    certificate, expired, unknown issuer, or another policy violation.
    """
    if leaf is None:
        raise ClientCertificateRejected(
            ALERT_CERTIFICATE_REQUIRED,
            "this server requires a client certificate (mutual TLS) and the client sent none",
        )
    now = now or _now()
    problem = _validity_problem(leaf, now)
    if problem:
        raise ClientCertificateRejected(ALERT_CERTIFICATE_EXPIRED, f"client certificate {_describe(leaf)} {problem}")
    verifier = PolicyBuilder().store(Store(trusted)).time(now).build_client_verifier()
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        text = str(exc)
        if "candidates exhausted" in text or "issuer" in text:
            raise ClientCertificateRejected(
                ALERT_UNKNOWN_CA,
                f"client certificate {_describe(leaf)} is issued by {leaf.issuer.rfc4514_string()}, "
                "which is not a CA this server trusts (unknown issuer)",
            ) from None
        raise ClientCertificateRejected(
            ALERT_BAD_CERTIFICATE, f"client certificate {_describe(leaf)} rejected: {text}"
        ) from None
    return VerifiedPeer(identity_of(leaf), leaf.public_bytes(Encoding.DER))


def _certificate_names(certificate: x509.Certificate) -> tuple[list[str], list[str]]:
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
    certificate: x509.Certificate | None,
    *,
    server_name: str,
    ca_file: str | None,
    address: str,
    detail: str,
) -> str:
    """The message for a server certificate our TLS stack refused.

    The checks run in the order TLS stacks run them (validity, name, chain),
    so the message names the check that actually failed.
    """
    where = f"TLS handshake with {address} failed"
    if certificate is None:
        return f"{where}: the server certificate was rejected: {detail}"
    subject = _describe(certificate)
    problem = _validity_problem(certificate, _now())
    if problem:
        return (
            f"{where}: expired certificate: the server certificate {subject} {problem}; "
            "the server must renew it (rpcnet certs DIR issues new ones)"
        )
    dns_names, ips = _certificate_names(certificate)
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
