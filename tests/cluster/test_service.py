"""``rpcnet node`` as a service, as real processes: signals, any stdin, reloads,
and the systemd unit and container entrypoint of docs/operations.md."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rpcnet.certs import write_dev_certs
from rpcnet.cluster import Keyring
from rpcnet.testing.processes import NodeProcess

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("service-certs")
    write_dev_certs(directory, server_names=["127.0.0.1", "localhost"], client_names=["client"], days=2)
    return directory


@pytest.fixture(scope="module")
def key() -> str:
    return Keyring.generate()


def left_line(node: NodeProcess) -> bool:
    return any(line.get("left") for line in node.lines)


async def seed_and_member(certs: Path, key: str, **member: Any) -> tuple[NodeProcess, NodeProcess]:
    seed = await NodeProcess.start(node_id="seed", certs=str(certs), key=key)
    try:
        node = await NodeProcess.start(node_id="member", certs=str(certs), key=key, seeds=[seed.rpc], **member)
    except BaseException:
        await seed.stop()
        raise
    await seed.wait_for(lambda line: line.get("event") == "joined" and line.get("member") == "member", 10)
    return seed, node


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_stop_signal_leaves_the_cluster_then_exits_0(certs: Path, key: str, signum: int) -> None:
    seed, node = await seed_and_member(certs, key)
    try:
        node.signal(signum)
        assert await node.exited() == 0, node.stderr.decode()
        assert left_line(node)
        assert "leaving the cluster" in node.stderr.decode()
        await seed.wait_for(lambda line: line.get("event") == "left" and line.get("member") == "member", 10)
        assert seed.events("failed", "member") == []
    finally:
        await asyncio.gather(seed.stop(), node.stop())


async def test_a_second_signal_exits_at_once(certs: Path, key: str) -> None:
    seed, node = await seed_and_member(certs, key, extra=["--set", "node.leave_timeout=30"])
    try:
        # Stopped, the process gets both signals at once when it continues: the
        # first starts the leave, the second ends the process before it is done.
        node.signal(signal.SIGSTOP)
        node.signal(signal.SIGINT)
        node.signal(signal.SIGTERM)
        node.signal(signal.SIGCONT)
        code = await node.exited()
        # The order the two arrive in is the kernel's; the second one names itself.
        second = {128 + signal.SIGINT: "SIGINT", 128 + signal.SIGTERM: "SIGTERM"}
        assert code in second, code
        assert not left_line(node)
        assert f"{second[code]} again: exiting at once, without leaving" in node.stderr.decode()
    finally:
        await asyncio.gather(seed.stop(), node.stop())


def _closed_stdin() -> int:
    read, write = os.pipe()
    os.close(write)
    return read


@pytest.mark.parametrize("kind", ["devnull", "file", "write-only", "closed-pipe"])
async def test_any_stdin_is_fine(kind: str, tmp_path: Path) -> None:
    """systemd and containers give /dev/null, nohup a write-only descriptor, CI a file or a closed pipe."""
    opened: Any
    if kind == "devnull":
        opened = subprocess.DEVNULL
    elif kind == "file":
        (tmp_path / "input").write_text("members\n")
        opened = (tmp_path / "input").open("rb")
    elif kind == "write-only":
        opened = open(os.devnull, "wb")  # noqa: SIM115 - what nohup leaves on stdin
    else:
        opened = _closed_stdin()
    try:
        node = await NodeProcess.start(node_id="alone", stdin=opened, extra=["--transport", "memory"])
    finally:
        if isinstance(opened, int) and opened >= 0:
            os.close(opened)
        elif hasattr(opened, "close"):
            opened.close()
    node.signal(signal.SIGTERM)
    assert await node.exited() == 0
    assert "Traceback" not in node.stderr.decode(), node.stderr.decode()


async def test_a_key_on_the_command_line_warns(key: str) -> None:
    node = NodeProcess([sys.executable, "-m", "rpcnet", "node", "--transport", "memory", "--key", key])
    await node.spawn()
    node.signal(signal.SIGTERM)
    assert await node.exited() == 0
    assert "a gossip key given with --key is visible to every local user in the process list" in node.stderr.decode()


async def test_the_key_file_is_reloaded_when_it_changes(certs: Path, tmp_path: Path) -> None:
    old, new = Keyring.generate(), Keyring.generate()
    key_file = tmp_path / "gossip.key"
    Keyring([old]).save(key_file)
    only_new = tmp_path / "new.key"
    Keyring([new]).save(only_new)
    seed = await NodeProcess.start(node_id="seed", certs=str(certs),
                                   extra=["--key-file", str(key_file), "--set", "node.reload_interval=0.1"])
    joiner = None
    try:
        refused = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "rpcnet", "node", "--certs", str(certs), "--key-file", str(only_new),
                             "--seed", seed.rpc, "--set", "cluster.join_timeout=1"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert refused.returncode == 1 and "sync refused" in refused.stderr, refused.stderr
        start = len(seed.lines)
        Keyring([new, old]).save(key_file)  # the new key is primary, the old one still opens
        line = await seed.wait_for(lambda line: "reloaded" in line or "reload_failed" in line, 10, start=start)
        assert line == {"reloaded": "keyring", "keys": 2, "t": line["t"]}
        joiner = await NodeProcess.start(node_id="joiner", certs=str(certs), seeds=[seed.rpc],
                                         extra=["--key-file", str(only_new)])
        await seed.wait_for(lambda line: line.get("event") == "joined" and line.get("member") == "joiner", 10)
    finally:
        await asyncio.gather(seed.stop(), *([joiner.stop()] if joiner else []))


async def test_certificates_are_reloaded_on_sighup(tmp_path: Path, key: str) -> None:
    served, other = tmp_path / "served", tmp_path / "other"
    for directory in (served, other):  # two unrelated CAs
        write_dev_certs(directory, server_names=["127.0.0.1"], client_names=["client"], days=2)

    def members() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rpcnet", "members", node.rpc, "--certs", str(other), "--json"],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    node = await NodeProcess.start(node_id="rotating", certs=str(served), key=key,
                                   extra=["--set", "node.reload_interval=0"])
    try:
        before = await asyncio.to_thread(members)
        assert before.returncode == 1, before.stdout

        for name in ("ca.pem", "server.pem", "server.key"):
            shutil.copy(other / name, served / name)
        start = len(node.lines)
        node.signal(signal.SIGHUP)
        line = await node.wait_for(lambda line: "reloaded" in line or "reload_failed" in line, 10, start=start)
        assert line["reloaded"] == "tls", line
        after = await asyncio.to_thread(members)
        assert after.returncode == 0, after.stderr
        assert [m["id"] for m in json.loads(after.stdout)["members"]] == ["rotating"]

        # A file that does not load leaves the running certificate alone.
        (served / "server.pem").write_text("not a certificate\n")
        start = len(node.lines)
        node.signal(signal.SIGHUP)
        line = await node.wait_for(lambda line: "reloaded" in line or "reload_failed" in line, 10, start=start)
        assert line["reload_failed"] == "tls"
        assert (await asyncio.to_thread(members)).returncode == 0
    finally:
        await node.stop()


async def test_members_shows_the_health_each_member_publishes_and_its_reason(certs: Path, key: str) -> None:
    seed = await NodeProcess.start(node_id="seed", certs=str(certs), key=key)
    sick = None
    try:
        # event-loop-lag with both thresholds at 0 ms rates every node unhealthy.
        sick = await NodeProcess.start(node_id="sick", certs=str(certs), key=key, seeds=[seed.rpc], extra=[
            "--health-check", "event-loop-lag", "--set", "cluster.health_interval=0.2",
            "--set", "cluster.options.event-loop-lag.warn_ms=0", "--set", "cluster.options.event-loop-lag.fail_ms=0"])
        await seed.wait_for(lambda line: line.get("member") == "sick" and line.get("tags", {}).get("rpcnet.health") == "unhealthy", 10)
        result = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "rpcnet", "members", seed.rpc, "--certs", str(certs)],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr
        header, *rows = result.stdout.splitlines()
        assert header.split() == ["ID", "ADDRESS", "RPC", "STATE", "INC", "PHI", "HEALTH", "REASON", "TAGS"]
        sick_row = next(row for row in rows if row.startswith("sick "))
        assert " unhealthy " in sick_row
        assert re.search(r"event-loop-lag unhealthy: event loop lag \d+ ms \(fail at 0 ms\)", sick_row), sick_row
        seed_row = next(row for row in rows if row.startswith("seed *"))
        assert " healthy " in seed_row and "no health checks configured" in seed_row
    finally:
        await asyncio.gather(seed.stop(), *([sick.stop()] if sick else []))


# -- the deployment examples in docs/operations.md -------------------------------------


def doc_block(marker: str, language: str) -> str:
    text = OPERATIONS.read_text()
    after = text.split(f"<!-- {marker}", 1)[1]
    return after.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def node_toml() -> str:
    text = OPERATIONS.read_text()
    return text.split("# /etc/rpcnet/node.toml\n", 1)[1].split("```", 1)[0]


def localise(text: str, etc: Path, seed: str) -> str:
    """The documented addresses and paths, made to run on this machine."""
    for documented, here in (("10.0.0.5:7000", "127.0.0.1:0"), ("10.0.0.5:7946", "127.0.0.1:0"),
                             ("10.0.0.1:7000", seed), ("/etc/rpcnet", str(etc))):
        assert documented in text, f"docs/operations.md no longer mentions {documented}: update this test"
        text = text.replace(documented, here)
    return text


async def deployed(tmp_path: Path, certs: Path, key: str, seed: NodeProcess) -> Path:
    etc = tmp_path / "etc"
    shutil.copytree(certs, etc / "certs")
    Keyring([key]).save(etc / "gossip.key")
    (etc / "node.toml").write_text(localise(node_toml(), etc, seed.rpc))
    return etc


async def run_until_it_left(command: list[str], env: dict[str, str], seed: NodeProcess) -> None:
    node = NodeProcess(command, env, stdin=subprocess.DEVNULL)
    await node.spawn()
    try:
        await seed.wait_for(lambda line: line.get("event") == "joined" and line.get("member") == node.node_id, 10)
        node.signal(signal.SIGTERM)
        assert await node.exited() == 0, node.stderr.decode()
        await seed.wait_for(lambda line: line.get("event") == "left" and line.get("member") == node.node_id, 10)
        assert seed.events("failed", node.node_id) == []
    finally:
        await node.stop()


@pytest.mark.slow
async def test_the_systemd_unit_runs_and_leaves_on_sigterm(tmp_path: Path, certs: Path, key: str) -> None:
    unit = doc_block("systemd-unit", "ini")
    assert "KillSignal=SIGTERM" in unit
    seed = await NodeProcess.start(node_id="seed", certs=str(certs), key=key, extra=["--label", "prod"])
    try:
        etc = await deployed(tmp_path, certs, key, seed)
        unit = unit.replace("/etc/rpcnet", str(etc))
        env = dict(line.split("=", 2)[1:] for line in unit.splitlines() if line.startswith("Environment="))
        (exec_start,) = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart=")]
        program, *args = shlex.split(exec_start)
        assert Path(program).name == "rpcnet"
        await run_until_it_left([sys.executable, "-m", "rpcnet", *args], env, seed)
    finally:
        await seed.stop()


@pytest.mark.slow
async def test_the_container_entrypoint_runs_and_leaves_on_sigterm(tmp_path: Path, certs: Path, key: str) -> None:
    dockerfile = doc_block("container", "dockerfile")
    assert "STOPSIGNAL SIGTERM" in dockerfile
    seed = await NodeProcess.start(node_id="seed", certs=str(certs), key=key, extra=["--label", "prod"])
    try:
        etc = await deployed(tmp_path, certs, key, seed)
        (entrypoint,) = [json.loads(line.split(" ", 1)[1]) for line in dockerfile.splitlines() if line.startswith("ENTRYPOINT ")]
        env = dict(line.split(" ", 1)[1].split("=", 1) for line in dockerfile.splitlines() if line.startswith("ENV "))
        program, *args = [re.sub("^/etc/rpcnet", str(etc), arg) for arg in entrypoint]
        assert program == "rpcnet"
        await run_until_it_left([sys.executable, "-m", "rpcnet", *args], env, seed)
    finally:
        await seed.stop()
