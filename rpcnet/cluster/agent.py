"""``rpcnet node``: a cluster node as a service (systemd, a container, a terminal or a test).

The node prints one JSON object per line on stdout: first
``{"ready": true, "node": ..., "rpc": "host:port", "gossip": "host:port", "pid": ...}``,
then one ``{"event": kind, "member": id, "incarnation": n, "t": unix time}``
per cluster event, ``{"reloaded": "tls" | "keyring"}`` after a reload and
``{"left": true}`` once it has left. Log lines go to stderr through
:mod:`logging`. When stdin is a pipe it reads commands, one per line:
``tag KEY=VALUE``, ``untag KEY``, ``leave``, ``members``, ``reload``,
``quit``; any other stdin (a terminal, /dev/null, a closed descriptor) is
left alone.

SIGINT or SIGTERM makes the node leave gracefully (peers report ``left``,
never ``failed``) and exit 0; a second one exits at once. SIGHUP reloads the
certificates and the keyring file, which are also reloaded when they change
on disk (checked every ``[node] reload_interval`` seconds).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from ..config import TlsConfig
from ..errors import ConfigError, RpcError, StatusCode, TransportError
from ..plugins import PluginHost, make_plugin_manager
from ..transport import format_address
from .keyring import Keyring
from .node import Cluster
from .settings import NodeConfig

__all__ = ["NodeStartError", "run_node", "preflight", "reload_listener_tls", "apply_keyring", "Reloader"]

log = logging.getLogger("rpcnet.node")

#: Transports that cannot work without certificates.
_NEEDS_TLS = {"quic"}


class NodeStartError(Exception):
    """The node cannot start; ``hint`` says what to do about it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


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


def preflight(config: NodeConfig, plugins: PluginHost | None = None) -> None:
    """Refuse, with the fix, what would only fail later: no gossip key, missing certificates, unreadable files."""
    certs = config.node.certs
    make = "create it with `rpcnet certs {d} --name 127.0.0.1`"
    if certs is not None:
        directory = Path(certs)
        if not directory.is_dir():
            raise NodeStartError(f"certificate directory {certs!r} does not exist", hint=make.format(d=certs))
        missing = [n for n in ("ca.pem", "server.pem", "server.key") if not (directory / n).is_file()]
        if missing and config.rpc.tls is not None and str(directory) in str(config.rpc.tls.cert_file):
            raise NodeStartError(f"certificate directory {certs!r} lacks {', '.join(missing)}", hint=make.format(d=certs))
    tls = config.rpc.tls
    if tls is None:
        if config.rpc.transport in _NEEDS_TLS:
            raise NodeStartError(
                f"the {config.rpc.transport} transport needs certificates and none were given",
                hint="make them with `rpcnet certs ./certs --name 127.0.0.1`, then pass --certs ./certs "
                "(or set [node] certs or [rpc.tls] in --config)",
            )
    for setting in ("ca_file", "cert_file", "key_file"):
        value = getattr(tls, setting, None)
        if value is not None and not os.access(value, os.R_OK):
            reason = "does not exist" if not os.path.exists(value) else "cannot be read"
            raise NodeStartError(f"tls.{setting} {value!r} {reason}", hint="check --certs or [rpc.tls] in --config")
    cluster = config.cluster
    if plugins is not None and not (cluster.gossip_keys or cluster.keyring_file or cluster.insecure_gossip):
        if bool(getattr(plugins.strategy("membership", cluster.membership), "uses_datagrams", True)):
            raise NodeStartError(
                "no gossip key: gossip between nodes is encrypted and this node has no key",
                hint="make one with `rpcnet keygen --out gossip.key` and pass --key-file gossip.key to every node "
                "(or set RPCNET_GOSSIP_KEY); --insecure-gossip only on a network you control",
            )
    if cluster.keyring_file is not None and not os.access(cluster.keyring_file, os.R_OK):
        raise NodeStartError(
            f"gossip key file {cluster.keyring_file!r} "
            + ("does not exist" if not os.path.exists(cluster.keyring_file) else "cannot be read"),
            hint="make one with `rpcnet keygen --out FILE`",
        )


def _stdin_is_a_pipe() -> bool:
    stream = sys.stdin
    if stream is None:
        return False
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def reload_listener_tls(server: Any, tls: TlsConfig) -> None:
    """Serve new connections with the certificate, key and CA in ``tls``'s files
    (:meth:`RpcServer.reload_tls`); a bad file raises and changes nothing."""
    server.reload_tls(tls)


def apply_keyring(live: Keyring, new: Keyring) -> None:
    """Make ``live`` hold exactly ``new``'s keys with its primary, without a moment lacking either."""
    for key in new.keys:
        live.install(key)
    live.use(new.primary_key)
    for key in live.keys:
        if key not in new.keys:
            live.remove(key)


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


class Reloader:
    """Reloads the node's certificates and keyring file on demand or when they change on disk."""

    def __init__(self, server: Any, cluster: Cluster, config: NodeConfig, emit: Callable[[dict[str, Any]], None]) -> None:
        self.server = server
        self.cluster = cluster
        self.tls = config.rpc.tls
        self.keyring_file = config.cluster.keyring_file
        self._emit = emit
        self._tls_files = [f for f in (getattr(self.tls, n, None) for n in ("cert_file", "key_file", "ca_file")) if f]
        self._stamps = self._current()

    def _current(self) -> dict[str, tuple[int, int, int] | None]:
        return {path: _stamp(path) for path in [*self._tls_files, *([self.keyring_file] if self.keyring_file else [])]}

    def changed(self) -> tuple[bool, bool]:
        """Whether the certificate files and the keyring file changed since the last look."""
        now = self._current()
        tls = any(now[p] != self._stamps.get(p) for p in self._tls_files)
        keyring = bool(self.keyring_file) and now[self.keyring_file] != self._stamps.get(self.keyring_file)  # type: ignore[index]
        self._stamps = now
        return tls, keyring

    def reload(self, why: str, *, tls: bool = True, keyring: bool = True) -> None:
        if tls and self.tls is not None:
            try:
                reload_listener_tls(self.server, self.tls)
            except Exception as exc:
                log.error("certificates not reloaded (%s): %s; the node keeps the ones it has", why, exc)
                self._emit({"reload_failed": "tls", "error": str(exc), "t": time.time()})
            else:
                log.info("certificates reloaded (%s)", why)
                self._emit({"reloaded": "tls", "t": time.time()})
        if keyring and self.keyring_file:
            live = self.cluster.keyring
            try:
                if live is None:
                    raise ConfigError("this node runs without a keyring")
                apply_keyring(live, Keyring.from_file(self.keyring_file))
            except Exception as exc:
                log.error("keyring not reloaded (%s): %s; the node keeps the keys it has", why, exc)
                self._emit({"reload_failed": "keyring", "error": str(exc), "t": time.time()})
            else:
                log.info("keyring reloaded from %s (%s): %d key(s)", self.keyring_file, why, len(live))
                self._emit({"reloaded": "keyring", "keys": len(live), "t": time.time()})

    async def watch(self, interval: float) -> None:
        """Poll the files' metadata every ``interval`` seconds; reload what changed."""
        while True:
            await asyncio.sleep(interval)
            tls, keyring = self.changed()
            if tls or keyring:
                self.reload("files changed", tls=tls, keyring=keyring)


async def _start(config: NodeConfig, plugins: PluginHost) -> tuple[Any, Cluster, Any]:
    from ..rpc.server import RpcServer

    server = RpcServer(config.rpc, plugins=plugins)
    listen = format_address(config.node.listen)
    try:
        await server.start(config.node.listen)
    except (TransportError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        if reason.startswith("cannot listen on "):
            reason = reason.rsplit(": ", 1)[-1]
        raise NodeStartError(
            f"cannot listen for RPC on {listen}: {reason}",
            hint="choose another address with --listen (or [node] listen), or stop the process that holds it",
        ) from None
    cluster = Cluster(server, config.cluster)
    subscription = cluster.subscribe()  # before start: the join's events count too
    try:
        await cluster.start()
    except OSError as exc:
        await _stop_quietly(cluster, server)
        gossip = format_address(config.cluster.gossip_bind)
        raise NodeStartError(
            f"cannot bind the gossip socket on {gossip} (UDP): {exc.strerror or exc}",
            hint="choose another address with --gossip (or [cluster] gossip_bind), or stop the process that holds it",
        ) from None
    except RpcError as exc:
        await _stop_quietly(cluster, server)
        hint = "check that the seeds run and that --seed gives their RPC address (host:port)"
        if exc.code is StatusCode.PERMISSION_DENIED or "refused" in str(exc):
            hint = "the seeds use another gossip key or label: give this node the cluster's key (--key-file or RPCNET_GOSSIP_KEY)"
        raise NodeStartError(f"cannot join the cluster: {exc}", hint=hint) from None
    except BaseException:
        await _stop_quietly(cluster, server)
        raise
    return server, cluster, subscription


async def _stop_quietly(cluster: Cluster, server: Any) -> None:
    try:
        await cluster.close()
    finally:
        await server.stop(grace=0)


async def run_node(config: NodeConfig, *, plugins: PluginHost | None = None) -> int:
    """Run the node until SIGINT, SIGTERM, EOF-free ``quit`` or ``leave``+``quit``; returns the exit status."""
    host = plugins if plugins is not None else make_plugin_manager(disabled=config.rpc.disabled_plugins)
    config.check(host)
    preflight(config, host)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    left = False

    def on_stop_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("%s again: exiting at once, without leaving", signal.Signals(signum).name)
            sys.stderr.flush()
            os._exit(128 + signum)
        log.info("%s: leaving the cluster (send it again to exit at once)", signal.Signals(signum).name)
        stop.set()

    # Handled from the start: a signal while the node joins makes it leave once it has joined.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop_signal, sig)
    server, cluster, subscription = await _start(config, host)
    reloader = Reloader(server, cluster, config, _emit)
    loop.add_signal_handler(signal.SIGHUP, lambda: reloader.reload("SIGHUP"))

    _emit({
        "ready": True,
        "node": cluster.node_id,
        "rpc": format_address(server.address),
        "gossip": format_address(cluster.gossip_address) if cluster.gossip_address is not None else None,
        "incarnation": cluster.local_node.incarnation,
        "pid": os.getpid(),
    })
    log.info("node %s serving RPC on %s%s", cluster.node_id, format_address(server.address),
             f", gossip on {format_address(cluster.gossip_address)}" if cluster.gossip_address else "")

    async def pump_events() -> None:
        async for event in subscription:
            _emit(_event_payload(event))

    async def read_commands() -> None:
        reader = asyncio.StreamReader()
        try:
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        except (OSError, ValueError) as exc:
            log.debug("not reading commands from stdin: %s", exc)
            return
        while not stop.is_set():
            line = (await reader.readline()).decode(errors="replace").strip()
            if not line:
                if reader.at_eof():
                    return
                continue
            command, _, argument = line.partition(" ")
            try:
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
                    nonlocal left
                    await cluster.leave()
                    left = True
                    _emit({"ok": "leave", "t": time.time()})
                elif command == "reload":
                    reloader.reload("reload command")
                elif command == "quit":
                    stop.set()
                else:
                    _emit({"error": f"unknown command {command!r}"})
            except Exception as exc:  # a bad command must not stop the node
                _emit({"error": f"{command}: {exc}"})

    failed: list[BaseException] = []

    async def watch_join() -> None:
        # With [cluster] join_timeout, a node no seed ever answered stops (status 1).
        try:
            await cluster.joined()
        except Exception as exc:
            failed.append(exc)
            hint = "check that the seeds run and that --seed gives their RPC address (host:port)"
            if "PERMISSION_DENIED" in str(exc) or "refused" in str(exc):
                hint = ("the seeds use another gossip key or label: give this node the cluster's key "
                        "(--key-file or RPCNET_GOSSIP_KEY)")
            sys.stderr.write(f"Error: cannot join the cluster: {exc}\nHint: {hint}\n")
            sys.stderr.flush()
            stop.set()

    tasks = [asyncio.ensure_future(pump_events()), asyncio.ensure_future(watch_join())]
    if _stdin_is_a_pipe():
        tasks.append(asyncio.ensure_future(read_commands()))
    if config.node.reload_interval > 0:
        tasks.append(asyncio.ensure_future(reloader.watch(config.node.reload_interval)))
    try:
        await stop.wait()
        if not left and not failed:
            try:
                # A join still in flight finishes first: a node that knows no peer yet has nobody to tell it left.
                await cluster.joined(config.node.leave_timeout)
            except Exception as exc:
                log.warning("leaving before the join completed: %s", exc)
            try:
                await cluster.leave(timeout=config.node.leave_timeout)
            except Exception as exc:
                log.warning("leave did not complete: %s", exc)
            else:
                _emit({"left": True, "t": time.time()})
                log.info("left the cluster")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await cluster.close()
        await server.stop(grace=1)
    return 1 if failed else 0
