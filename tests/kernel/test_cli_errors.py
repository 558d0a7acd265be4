"""Every mistake a new user made, fed to the real command: one ``Error:`` line
(and at most a ``Hint:`` line), a non-zero exit status, never a traceback.

docs/operations.md ("When the command says no") shows each of these lines.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rpcnet.certs import write_dev_certs
from rpcnet.cluster import Keyring
from rpcnet.testing.processes import NodeProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RPCNET_")} | (env or {})
    return subprocess.run([sys.executable, "-m", "rpcnet", *args], capture_output=True, text=True, env=environ,
                          cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def one_error(result: subprocess.CompletedProcess) -> tuple[str, str | None]:
    """The Error line and the Hint line (or None); fails on anything else."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith("Error: "), result.stderr
    hint = None
    if len(lines) == 2:
        assert lines[1].startswith("Hint: "), result.stderr
        hint = lines[1][len("Hint: "):]
    return lines[0][len("Error: "):], hint


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli-certs")
    write_dev_certs(directory, server_names=["127.0.0.1", "localhost"], client_names=["client"], days=2)
    return directory


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-key") / "gossip.key"
    Keyring([Keyring.generate()]).save(path)
    return path


@pytest.fixture
def udp_port() -> object:
    """A UDP port on 127.0.0.1 held by this process for the test."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def test_node_without_certificates(tmp_path: Path) -> None:
    message, hint = one_error(run("node", cwd=tmp_path))
    assert message == "the quic transport needs certificates and none were given"
    assert hint == ("make them with `rpcnet certs ./certs --name 127.0.0.1`, then pass --certs ./certs "
                    "(or set [node] certs or [rpc.tls] in --config)")


def test_node_with_a_misspelled_transport(certs: Path, key_file: Path) -> None:
    message, _ = one_error(run("node", "--transport", "quick", "--certs", str(certs), "--key-file", str(key_file)))
    assert message.startswith("the command line: rpc.transport: unknown transport strategy 'quick'. Did you mean 'quic'?")


def test_node_with_a_certificate_directory_that_does_not_exist(tmp_path: Path, key_file: Path) -> None:
    message, hint = one_error(run("node", "--certs", str(tmp_path / "nowhere"), "--key-file", str(key_file)))
    assert message == f"certificate directory {str(tmp_path / 'nowhere')!r} does not exist"
    assert hint == f"create it with `rpcnet certs {tmp_path / 'nowhere'} --name 127.0.0.1`"


def test_node_whose_listen_port_is_taken(certs: Path, key_file: Path, udp_port: int) -> None:
    message, hint = one_error(run("node", "--certs", str(certs), "--key-file", str(key_file),
                                  "--listen", f"127.0.0.1:{udp_port}"))
    assert message == f"cannot listen for RPC on 127.0.0.1:{udp_port}: Address already in use"
    assert hint and hint.startswith("choose another address with --listen")


def test_node_whose_gossip_port_is_taken(certs: Path, key_file: Path, udp_port: int) -> None:
    message, hint = one_error(run("node", "--certs", str(certs), "--key-file", str(key_file),
                                  "--gossip", f"127.0.0.1:{udp_port}"))
    assert message == f"cannot bind the gossip socket on 127.0.0.1:{udp_port} (UDP): Address already in use"
    assert hint and hint.startswith("choose another address with --gossip")


def test_node_without_a_gossip_key(certs: Path) -> None:
    message, hint = one_error(run("node", "--certs", str(certs)))
    assert message == "no gossip key: gossip between nodes is encrypted and this node has no key"
    assert hint and "rpcnet keygen --out gossip.key" in hint


def test_node_with_a_malformed_gossip_key(certs: Path) -> None:
    message, _ = one_error(run("node", "--certs", str(certs), env={"RPCNET_GOSSIP_KEY": "not-a-key"}))
    assert message.startswith("gossip key is not valid base64")


async def test_node_with_the_wrong_gossip_key(certs: Path, tmp_path: Path) -> None:
    """Every seed refusing the node is final at once, with no join timeout (a seed not up yet is retried)."""
    seed = await NodeProcess.start(node_id="seed", certs=str(certs), key=Keyring.generate())
    try:
        other = tmp_path / "other.key"
        Keyring([Keyring.generate()]).save(other)
        result = await asyncio.to_thread(run, "node", "--certs", str(certs), "--key-file", str(other), "--seed", seed.rpc)
    finally:
        await seed.stop()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert all(" rpcnet." in line for line in lines[:-2]), "before the error: one log line each"
    assert lines[-2].startswith("Error: cannot join the cluster: PERMISSION_DENIED: every seed refused this node"), result.stderr
    assert "sync refused: no installed key opens this packet" in lines[-2]
    assert lines[-1] == ("Hint: the seeds use another gossip key or label: give this node the cluster's key "
                         "(--key-file or RPCNET_GOSSIP_KEY)")


def test_node_with_a_misspelled_setting_in_its_config_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[cluster]\nhealth_check = ["event-loop-lag"]\n')
    message, _ = one_error(run("node", "--config", str(path)))
    assert message.startswith(f"config file {str(path)!r}: unknown key 'cluster.health_check' "
                              "(did you mean 'cluster.health_checks'?)")


def test_members_without_a_port() -> None:
    message, hint = one_error(run("members", "127.0.0.1"))
    assert message == "rpcnet members ADDRESS: address '127.0.0.1' has no port; write host:port"
    assert hint and hint.startswith("write host:port, e.g. 127.0.0.1:7000")


def test_members_with_a_client_certificate_name_that_has_no_file(certs: Path) -> None:
    message, hint = one_error(run("members", "127.0.0.1:9", "--certs", str(certs), "--client-name", "bob"))
    assert message == f"no client certificate 'bob' in {certs}: bob.pem and bob.key are needed"
    assert hint == f"certificates there: client, server; issue one with `rpcnet certs {certs} --client bob`"


def test_certs_into_a_directory_that_cannot_be_made(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    message, hint = one_error(run("certs", str(blocker / "certs")))
    assert message == f"cannot write certificates into {str(blocker / 'certs')!r}: Not a directory"
    assert hint == "choose a directory you can write to"


def test_keygen_does_not_overwrite_a_key_file(key_file: Path) -> None:
    message, hint = one_error(run("keygen", "--out", str(key_file)))
    assert message == f"{key_file} exists; keygen does not overwrite a key file"


@pytest.mark.parametrize("args", [("--debug", "node"), ("node", "--debug")], ids=["before", "after"])
def test_debug_shows_the_traceback(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "NodeStartError" in result.stderr


def test_example_client_with_a_misspelled_balancer(certs: Path) -> None:
    """Refused before the client joins anything, so it leaves no member behind."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RPCNET_")}
    environ |= {"RPCNET_CERTS": str(certs), "RPCNET_GOSSIP_KEY": Keyring.generate()}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "cluster" / "client.py"), "--strategy", "round-robbin", "--director", "127.0.0.1:9"],
        capture_output=True, text=True, env=environ, timeout=60, stdin=subprocess.DEVNULL, check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("client.py: error: --strategy: unknown load-balancer strategy 'round-robbin'. "
                           "Did you mean 'round-robin'?"), result.stderr
