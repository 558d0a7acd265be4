"""What the demo's director and worker (and the example client) share.

Every program is a cluster node: an RPC server (QUIC, mutual TLS) plus
membership over encrypted gossip. Configuration comes from flags, and each
flag falls back to an environment variable:

=====================  ==========================================================
RPCNET_CERTS           directory from ``rpcnet certs DIR --name 127.0.0.1``
                       (ca.pem, server.pem, server.key)
RPCNET_RPC__TRANSPORT  RPC transport, quic (default) or tcp (as in a node's configuration)
RPCNET_GOSSIP_KEY      base64 gossip key (``rpcnet keygen``)
DIRECTOR_ADDR          RPC address of the director, the seed everyone joins through
=====================  ==========================================================
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..cluster import Cluster, ClusterConfig
from ..config import RpcConfig, TlsConfig
from ..plugins import make_plugin_manager
from ..rpc import RpcServer

DEFAULT_DIRECTOR_ADDR = "127.0.0.1:61000"


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--certs", default=os.environ.get("RPCNET_CERTS"),
                        help="certificate directory (ca.pem, server.pem, server.key) [env RPCNET_CERTS]")
    parser.add_argument("--gossip-key", default=os.environ.get("RPCNET_GOSSIP_KEY"),
                        help="base64 gossip encryption key [env RPCNET_GOSSIP_KEY]")
    parser.add_argument("--director", default=os.environ.get("DIRECTOR_ADDR", DEFAULT_DIRECTOR_ADDR),
                        help=f"RPC address of the director [env DIRECTOR_ADDR, default {DEFAULT_DIRECTOR_ADDR}]")
    parser.add_argument("--gossip", default="127.0.0.1:0", help="gossip UDP address to bind (port 0: any free port)")
    parser.add_argument("--preset", choices=["lan", "wan", "local"], default="lan", help="membership timing preset")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per line on stdout (ready, then cluster events) for tools")


def env_flag(name: str) -> bool:
    """A boolean environment variable: 1/true/yes/on are true, unset or anything else false."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def require_security(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse to start without certificates and a gossip key, saying how to make them."""
    if not args.certs:
        parser.error("no certificates: run `rpcnet certs ./certs --name 127.0.0.1` and pass --certs ./certs "
                     "(or set RPCNET_CERTS)")
    missing = [name for name in ("ca.pem", "server.pem", "server.key") if not (Path(args.certs) / name).exists()]
    if missing:
        parser.error(f"{args.certs} lacks {', '.join(missing)}; create it with `rpcnet certs {args.certs} --name 127.0.0.1`")
    if not args.gossip_key:
        parser.error("no gossip key: set RPCNET_GOSSIP_KEY to the output of `rpcnet keygen` (the same key on every node)")


def transport() -> str:
    """The RPC transport: ``RPCNET_RPC__TRANSPORT`` (quic or tcp; ``RPCNET_TRANSPORT`` until 0.3), quic when unset."""
    return (os.environ.get("RPCNET_RPC__TRANSPORT", "").strip() or os.environ.get("RPCNET_TRANSPORT", "").strip()
            or "quic")


def rpc_config(certs: str) -> RpcConfig:
    """Mutual TLS both ways: node certificates also carry clientAuth, so one pair serves and calls."""
    directory = Path(certs)
    return RpcConfig(transport=transport(), tls=TlsConfig(
        ca_file=directory / "ca.pem",
        cert_file=directory / "server.pem",
        key_file=directory / "server.key",
        require_client_cert=True,
    ))


def outgoing_config(certs: str) -> RpcConfig:
    """The configuration a node's outgoing calls use (its own certificate as client identity)."""
    directory = Path(certs)
    return RpcConfig(transport=transport(), tls=TlsConfig(ca_file=directory / "ca.pem", cert_file=directory / "server.pem",
                                   key_file=directory / "server.key"))


def load_plugins(specs: Sequence[str]) -> list[object]:
    """Import each ``module:object`` (the module must be importable, e.g. on PYTHONPATH)."""
    import importlib

    plugins = []
    for spec in specs:
        module_name, sep, attribute = spec.partition(":")
        if not sep or not module_name or not attribute:
            raise SystemExit(f"--plugin takes module:object, got {spec!r}")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise SystemExit(f"--plugin {spec}: cannot import {module_name!r}: {exc}") from None
        try:
            plugins.append(getattr(module, attribute))
        except AttributeError:
            raise SystemExit(f"--plugin {spec}: module {module_name!r} has no attribute {attribute!r}") from None
    return plugins


def make_server(certs: str, plugins: Sequence[object] = ()) -> RpcServer:
    config = rpc_config(certs)
    host = make_plugin_manager(plugins=list(plugins), disabled=config.disabled_plugins)
    return RpcServer(config, plugins=host)


async def start_node(
    server: RpcServer,
    *,
    listen: str,
    args: argparse.Namespace,
    tags: dict[str, str],
    seeds: Sequence[str],
    node_id: str | None = None,
    health_checks: Sequence[str] = (),
    health_interval: float = 5.0,
    options: dict[str, dict[str, Any]] | None = None,
) -> Cluster:
    """Start ``server`` on ``listen`` and join the cluster through ``seeds``."""
    await server.start(listen)
    config = ClusterConfig(
        node_id=node_id,
        gossip_bind=args.gossip,
        seeds=tuple(seeds),
        tags=tags,
        gossip_keys=(args.gossip_key,),
        health_checks=tuple(health_checks),
        health_interval=health_interval,
        options={**(options or {}), "swim": {"preset": args.preset, **(options or {}).get("swim", {})}},
    )
    cluster = Cluster(server, config)
    try:
        await cluster.start()
    except BaseException:
        await server.stop(grace=0)
        raise
    return cluster


def address_text(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def emit_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def ready_line(server: RpcServer, cluster: Cluster, **extra: Any) -> dict[str, Any]:
    return {
        "ready": True,
        "node": cluster.node_id,
        "rpc": address_text(server.address),
        "gossip": address_text(cluster.gossip_address),
        "incarnation": cluster.local_node.incarnation,
        "pid": os.getpid(),
        **extra,
    }


def describe_event(event: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"event": event.kind, "t": time.time()}
    member = getattr(event, "member", None)
    if member is not None:
        payload.update(member=member.id, incarnation=member.incarnation, tags=dict(member.tags))
    return payload


async def report_events(cluster: Cluster, as_json: bool, log: Callable[[str], None]) -> None:
    """Print every cluster event: a JSON line with --json, else a readable line."""
    async for event in cluster.subscribe():
        payload = describe_event(event)
        if as_json:
            emit_json(payload)
        else:
            member = payload.get("member", "")
            tags = ",".join(f"{k}={v}" for k, v in sorted(payload.get("tags", {}).items()) if not k.startswith("rpcnet."))
            log(f"{event.kind:<12} {member} {tags}".rstrip())


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def leave_and_stop(server: RpcServer, cluster: Cluster) -> None:
    """Announce a graceful leave (peers see ``left``, never ``failed``), then stop."""
    try:
        await cluster.leave(timeout=2.0)
    finally:
        await cluster.close()
        await server.stop(grace=1.0)


async def serve_until_stopped(
    server: RpcServer,
    cluster: Cluster,
    *,
    args: argparse.Namespace,
    stop: asyncio.Event,
    log: Callable[[str], None],
    greeting: str,
    ready_extra: dict[str, Any] | None = None,
    every: float | None = None,
    tick: Callable[[], None] | None = None,
) -> None:
    """Report events (and ``ready`` with --json), call ``tick`` every ``every`` s, leave on SIGINT/SIGTERM."""
    events = asyncio.ensure_future(report_events(cluster, args.json, log))
    if args.json:
        emit_json(ready_line(server, cluster, **(ready_extra or {})))
    log(greeting)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), every)
            except TimeoutError:
                if tick is not None:
                    tick()
        log("leaving the cluster")
    finally:
        events.cancel()
        await leave_and_stop(server, cluster)


def make_logger(name: str, as_json: bool) -> Callable[[str], None]:
    """Readable lines go to stdout, or to stderr when stdout carries JSON."""
    stream = sys.stderr if as_json else sys.stdout

    def log(message: str) -> None:
        stream.write(f"{time.strftime('%H:%M:%S')} {name}: {message}\n")
        stream.flush()

    return log
