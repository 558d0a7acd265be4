"""``rpcnet.certs``: development certificates that verify, with the right SANs."""

from __future__ import annotations

import datetime
import ipaddress
import stat

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.verification import DNSName, IPAddress, PolicyBuilder, Store

from rpcnet.certs import CertificateAuthority, expired_validity, write_dev_certs
from rpcnet.cli import main


def _load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_write_dev_certs_files_sans_and_chain(tmp_path) -> None:
    written = write_dev_certs(tmp_path, server_names=["node-1.internal", "10.0.0.7"], client_names=["client", "ops"])
    names = sorted(p.name for p in written)
    assert names == sorted(["ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key", "ops.pem", "ops.key"])
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o600 if path.suffix == ".key" else 0o644), path

    ca, server = _load(tmp_path / "ca.pem"), _load(tmp_path / "server.pem")
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"node-1.internal", "localhost"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("10.0.0.7"), ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")
    }
    store = Store([ca])
    for subject in (DNSName("localhost"), DNSName("node-1.internal"), IPAddress(ipaddress.ip_address("127.0.0.1"))):
        PolicyBuilder().store(store).build_server_verifier(subject).verify(server, [])
    verified = PolicyBuilder().store(store).build_client_verifier().verify(_load(tmp_path / "ops.pem"), [])
    assert [name.value for name in verified.subjects] == ["ops"]


def test_existing_ca_is_reused(tmp_path) -> None:
    write_dev_certs(tmp_path, client_names=["client"])
    first_ca = (tmp_path / "ca.pem").read_bytes()
    old_client = _load(tmp_path / "client.pem")
    written = write_dev_certs(tmp_path, client_names=["client"])
    assert (tmp_path / "ca.pem").read_bytes() == first_ca
    assert tmp_path / "ca.pem" not in written
    # Certificates issued before still chain to the CA on disk.
    PolicyBuilder().store(Store([_load(tmp_path / "ca.pem")])).build_client_verifier().verify(old_client, [])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"server_names": ["bad name"]}, "neither an IP address nor a DNS name"),
        ({"client_names": ["ca"]}, "would overwrite ca.pem"),
        ({"client_names": ["a", "a"]}, "must be unique"),
        ({"days": 0}, "days must be > 0"),
    ],
)
def test_bad_input_writes_nothing(tmp_path, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        write_dev_certs(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_half_a_ca_is_not_overwritten(tmp_path) -> None:
    (tmp_path / "ca.pem").write_bytes(b"precious")
    with pytest.raises(ValueError, match="exists without its pair"):
        write_dev_certs(tmp_path)
    assert (tmp_path / "ca.pem").read_bytes() == b"precious"


def test_expired_and_foreign_certificates_for_tests() -> None:
    ca = CertificateAuthority.create("test CA")
    not_before, not_after = expired_validity(days_ago=2)
    expired = ca.issue_client("old", not_before=not_before, not_after=not_after)
    assert expired.certificate.not_valid_after_utc < datetime.datetime.now(datetime.UTC)
    other = CertificateAuthority.create("other CA").issue_client("x")
    with pytest.raises(x509.verification.VerificationError):
        PolicyBuilder().store(Store([ca.certificate])).build_client_verifier().verify(other.certificate, [])


def test_cli_certs_command(tmp_path) -> None:
    result = CliRunner().invoke(main, ["certs", str(tmp_path), "--name", "api.local", "--client", "worker-1", "--days", "7"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "worker-1.pem").exists() and (tmp_path / "server.pem").exists()
    server = _load(tmp_path / "server.pem")
    lifetime = server.not_valid_after_utc - server.not_valid_before_utc
    assert 7 * 86400 <= lifetime.total_seconds() <= 7 * 86400 + 600


def test_cli_certs_refuses_a_bad_name_without_a_traceback(tmp_path) -> None:
    result = CliRunner().invoke(main, ["certs", str(tmp_path / "out"), "--name", "bad name!"])
    assert result.exit_code == 2
    assert "is neither an IP address nor a DNS name" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out" / "ca.pem").exists()
