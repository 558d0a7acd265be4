"""Development certificates: a CA plus server and client certificates.

``rpcnet certs DIR`` calls :func:`write_dev_certs`, which writes::

    ca.pem  ca.key                the development CA (reused when already present)
    server.pem  server.key        server certificate, SANs: the given names plus
                                  localhost, 127.0.0.1 and ::1; it may also act
                                  as a client certificate (a cluster node's)
    <client>.pem  <client>.key    one client certificate per client name

Keys are ECDSA P-256 in unencrypted PKCS#8 PEM, written with mode 0600. The
certificates carry the extensions strict verifiers ask for (basic constraints,
key usage, extended key usage, subject and authority key identifiers), so both
aioquic and ``cryptography.x509.verification`` accept them.

The building blocks are public so tests and tools can make the odd ones they
need: :meth:`CertificateAuthority.create` for a second, unrelated CA, and the
``not_before``/``not_after`` arguments of :meth:`CertificateAuthority.issue`
for an expired or not-yet-valid certificate (see :func:`expired_validity`).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "IssuedCertificate",
    "CertificateAuthority",
    "write_dev_certs",
    "expired_validity",
    "DEFAULT_SERVER_NAMES",
]

#: Names every development server certificate covers, besides the ones asked for.
DEFAULT_SERVER_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")

_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def expired_validity(days_ago: float = 1.0, lifetime_days: float = 30.0) -> tuple[datetime.datetime, datetime.datetime]:
    """``(not_before, not_after)`` for a certificate that expired ``days_ago``."""
    not_after = _utcnow() - datetime.timedelta(days=days_ago)
    return not_after - datetime.timedelta(days=lifetime_days), not_after


def _general_name(name: str) -> x509.GeneralName:
    """A SAN entry: an IP address when ``name`` parses as one, else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    labels = name[2:].split(".") if name.startswith("*.") else name.split(".")
    if not name or len(name) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        raise ValueError(
            f"{name!r} is neither an IP address nor a DNS name; use letters, digits, '-' and '.' "
            "(for example 'node-1' or 'api.example.com')"
        )
    return x509.DNSName(name)


def _key_usage(*, issues_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=issues_certificates,
        crl_sign=issues_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> Path:
    # Write next to the target, then rename: a crash never leaves half a file,
    # and a private key is never readable by others, not even briefly.
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@attrs.frozen
class IssuedCertificate:
    """A certificate and its private key."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.private_key)

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def write(self, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> list[Path]:
        """Write the certificate (PEM) and the key (PKCS#8 PEM, mode 0600)."""
        return [_write(Path(cert_path), self.cert_pem), _write(Path(key_path), self.key_pem, private=True)]


@attrs.frozen
class CertificateAuthority:
    """A CA that issues server and client certificates."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, common_name: str = "rpcnet development CA", *, days: int = 3650) -> CertificateAuthority:
        """A new self-signed CA valid for ``days`` days from now."""
        if days <= 0:
            raise ValueError(f"days must be > 0, got {days}")
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _utcnow()
        public = key.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(issues_certificates=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    @classmethod
    def load(cls, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> CertificateAuthority:
        """Load a CA written by :meth:`write`."""
        certificate = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path}: expected an EC private key, got {type(key).__name__}")
        if key.public_key().public_numbers() != certificate.public_key().public_numbers():  # type: ignore[union-attr]
            raise ValueError(f"{key_path} is not the private key of {cert_path}")
        return cls(certificate, key)

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def write(self, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> list[Path]:
        return [_write(Path(cert_path), self.cert_pem), _write(Path(key_path), _key_pem(self.private_key), private=True)]

    def issue(
        self,
        common_name: str,
        names: Sequence[str] = (),
        *,
        server: bool = True,
        client: bool = False,
        days: int = 365,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> IssuedCertificate:
        """Issue a leaf certificate for ``common_name`` with ``names`` as SANs.

        ``server``/``client`` choose the extended key usages. The validity is
        ``days`` from now unless ``not_before``/``not_after`` are given (use
        them for expired or not-yet-valid certificates in tests).
        """
        if not_before is None and not_after is None and days <= 0:
            raise ValueError(f"days must be > 0, got {days}")
        if not (server or client):
            raise ValueError("a certificate must be for a server, a client, or both")
        sans = [_general_name(n) for n in dict.fromkeys(names)]
        now = _utcnow()
        not_before = not_before or now - datetime.timedelta(minutes=5)
        not_after = not_after or now + datetime.timedelta(days=days)
        if not_after <= not_before:
            raise ValueError(f"not_after ({not_after}) must be later than not_before ({not_before})")
        key = ec.generate_private_key(ec.SECP256R1())
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(issues_certificates=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()), critical=False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return IssuedCertificate(builder.sign(self.private_key, hashes.SHA256()), key)

    def issue_server(self, names: Iterable[str] = (), *, client: bool = True, **kwargs: object) -> IssuedCertificate:
        """A server certificate covering ``names`` plus :data:`DEFAULT_SERVER_NAMES`.

        It also carries the clientAuth usage (``client=True``) because a
        cluster node presents its one certificate both ways: as a server to
        its peers' syncs, and as a client (mutual TLS) when it syncs with them.
        """
        all_names = list(dict.fromkeys([*names, *DEFAULT_SERVER_NAMES]))
        return self.issue(all_names[0], all_names, server=True, client=client, **kwargs)  # type: ignore[arg-type]

    def issue_client(self, name: str, **kwargs: object) -> IssuedCertificate:
        """A client certificate whose identity (first DNS SAN and CN) is ``name``."""
        return self.issue(name, [name], server=False, client=True, **kwargs)  # type: ignore[arg-type]


def write_dev_certs(
    directory: str | os.PathLike[str],
    *,
    server_names: Sequence[str] = ("localhost",),
    client_names: Sequence[str] = ("client",),
    days: int = 365,
) -> list[Path]:
    """Write a development CA, a server certificate and client certificates.

    An existing ``ca.pem``/``ca.key`` pair in ``directory`` is reused, so
    certificates issued earlier stay valid; leaf files are rewritten. Returns
    the paths written. Raises ``ValueError`` for a bad name or ``days``
    before anything is written.
    """
    if days <= 0:
        raise ValueError(f"days must be > 0, got {days}")
    for name in [*server_names, *client_names]:
        _general_name(name)  # validate every name before touching the disk
    for name in client_names:
        if name in {"ca", "server"}:
            raise ValueError(f"client name {name!r} would overwrite {name}.pem; choose another name")
    if len(set(client_names)) != len(client_names):
        raise ValueError(f"client names must be unique, got {list(client_names)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca_pem, ca_key = directory / "ca.pem", directory / "ca.key"
    written: list[Path] = []
    if ca_pem.exists() and ca_key.exists():
        ca = CertificateAuthority.load(ca_pem, ca_key)
    else:
        if ca_pem.exists() or ca_key.exists():
            present = ca_pem if ca_pem.exists() else ca_key
            raise ValueError(
                f"{present} exists without its pair; remove it or write into another directory"
            )
        ca = CertificateAuthority.create(days=max(days, 3650))
        written += ca.write(ca_pem, ca_key)
    written += ca.issue_server(server_names, days=days).write(directory / "server.pem", directory / "server.key")
    for name in client_names:
        written += ca.issue_client(name, days=days).write(directory / f"{name}.pem", directory / f"{name}.key")
    return written
