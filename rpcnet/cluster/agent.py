"""``rpcnet node``: run a cluster node as a process, controlled on stdin.

The node prints one JSON object per line on stdout: first
``{"ready": true, "node": ..., "rpc": "host:port", "gossip": "host:port"}``,
then one ``{"event": kind, "member": id, "incarnation": n, "t": unix time}``
per cluster event. Commands on stdin, one per line: ``tag KEY=VALUE``,
``untag KEY``, ``leave``, ``members``, ``quit``. Tests and operators use it
as a small agent, much like a Serf agent.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

import orjson

from ..config import RpcConfig, TlsConfig
from ..transport import format_address
from .config import ClusterConfig
from .node import Cluster


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(payload).decode() + "\n")
    sys.stdout.flush()


def _event_payload(event: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"event": event.kind, "t": time.time()}
    member = getattr(event, "member", None)
    if member is not None:
        payload.update(member=member.id, incarnation=member.incarnation, tags=dict(member.tags))
    for name in ("policy", "reachable", "known"):
        if hasattr(event, name):
            payload[name] = getattr(event, name)
    return payload


async def run_node(rpc_config: RpcConfig, cluster_config: ClusterConfig, listen: tuple[str, int]) -> int:
    from ..rpc.server import RpcServer

    server = RpcServer(rpc_config)
    await server.start(listen)
    cluster = Cluster(server, cluster_config)
    subscription = cluster.subscribe()
    await cluster.start()
    _emit({
        "ready": True,
        "node": cluster.node_id,
        "rpc": format_address(server.address),
        "gossip": format_address(cluster.gossip_address) if cluster.gossip_address is not None else None,
        "incarnation": cluster.local_node.incarnation,
    })
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def pump_events() -> None:
        async for event in subscription:
            _emit(_event_payload(event))

    async def read_commands() -> None:
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while not stop.is_set():
            line = (await reader.readline()).decode().strip()
            if not line:
                if reader.at_eof():
                    return
                continue
            command, _, argument = line.partition(" ")
            if command == "tag":
                key, _, value = argument.partition("=")
                cluster.set_tag(key.strip(), value.strip())
                _emit({"ok": "tag", "t": time.time()})
            elif command == "untag":
                cluster.remove_tag(argument.strip())
                _emit({"ok": "untag", "t": time.time()})
            elif command == "members":
                _emit({"members": cluster.describe_members()})
            elif command == "leave":
                await cluster.leave()
                _emit({"ok": "leave", "t": time.time()})
            elif command == "quit":
                stop.set()
            else:
                _emit({"error": f"unknown command {command!r}"})

    async def watch_join() -> None:
        # With a join_timeout, a node no seed ever answered stops (status 1).
        try:
            await cluster.joined()
        except Exception as exc:
            sys.stderr.write(f"rpcnet node: {exc}\n")
            failed.append(exc)
            stop.set()

    failed: list[BaseException] = []
    tasks = [asyncio.ensure_future(pump_events()), asyncio.ensure_future(watch_join())]
    if not sys.stdin.isatty():
        tasks.append(asyncio.ensure_future(read_commands()))
    await stop.wait()
    for task in tasks:
        task.cancel()
    await cluster.close()
    await server.stop(grace=1)
    return 1 if failed else 0


def node_configs(
    *,
    certs: str | None,
    gossip: str | None,
    node_id: str | None,
    seeds: tuple[str, ...],
    tags: tuple[str, ...],
    keys: tuple[str, ...],
    insecure: bool,
    preset: str | None,
    label: str | None,
    transport: str,
    config_path: str | None = None,
    membership: str | None = None,
) -> tuple[RpcConfig, ClusterConfig]:
    """The configs of ``rpcnet node``: the ``[cluster]`` table of ``config_path``
    (if given), with every option given on the command line on top."""
    tls = None
    if certs:
        tls = TlsConfig(
            cert_file=f"{certs}/server.pem", key_file=f"{certs}/server.key", ca_file=f"{certs}/ca.pem", require_client_cert=True
        )
    rpc = RpcConfig(transport=transport, tls=tls)
    values: dict[str, Any] = dict(ClusterConfig.toml_mapping(config_path)) if config_path else {}
    given: dict[str, Any] = dict(node_id=node_id, gossip_bind=gossip, membership=membership, label=label)
    values.update({k: v for k, v in given.items() if v is not None})
    if seeds:
        values["seeds"] = seeds
    if tags:
        values["tags"] = {**dict(values.get("tags", {})), **dict(t.split("=", 1) for t in tags)}
    if keys:
        values["gossip_keys"] = keys
    if insecure:
        values["insecure_gossip"] = True
    if preset is not None:
        options = {k: dict(v) for k, v in dict(values.get("options", {})).items()}
        options.setdefault("swim", {})["preset"] = preset
        values["options"] = options
    return rpc, ClusterConfig.from_mapping(values, where=config_path or "the command line")
