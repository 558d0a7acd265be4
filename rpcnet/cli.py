"""The ``rpcnet`` command (also ``python -m rpcnet``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson
import pluggy

from .config import RpcConfig
from .errors import ConfigError, PluginError
from .plugins import make_plugin_manager
from .registry import KINDS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rpcnet", prog_name="rpcnet")
def main() -> None:
    """rpcnet: RPC over QUIC with built-in clusters."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A TOML config file whose disabled_plugins setting applies too.")
def plugins(as_json: bool, config_path: Path | None) -> None:
    """List plugins: distribution, version, strategies by kind, hooks, and broken ones.

    RPCNET_DISABLED_PLUGINS and RPCNET_DISABLE_PLUGIN_AUTOLOAD apply as they
    do in a server or client.
    """
    disabled: tuple[str, ...] = ()
    if config_path is not None:
        try:
            disabled = RpcConfig.from_toml(config_path).disabled_plugins
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
    try:
        host = make_plugin_manager(disabled=disabled)
    except (PluginError, pluggy.PluginValidationError) as exc:
        raise click.ClickException(f"the plugins cannot be loaded together: {exc}") from exc
    infos = host.plugins()
    if as_json:
        payload = {
            "plugins": [
                {
                    "name": i.name,
                    "distribution": i.distribution,
                    "version": i.version,
                    "strategies": {kind: list(names) for kind, names in i.strategies.items()},
                    "hooks": list(i.hooks),
                }
                for i in infos
            ],
            "broken": [
                {"name": b.name, "distribution": b.distribution, "version": b.version, "error": b.error}
                for b in host.broken
            ],
        }
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
        return
    for info in infos:
        dist = f"{info.distribution} {info.version}" if info.distribution else "(registered in code)"
        click.echo(f"{info.name}  [{dist}]")
        for kind in KINDS:
            if kind in info.strategies:
                click.echo(f"    {kind}: {', '.join(info.strategies[kind])}")
        click.echo(f"    hooks: {', '.join(info.hooks) if info.hooks else '(none)'}")
    if host.broken:
        click.echo("")
        click.echo("broken plugins:")
        for b in host.broken:
            dist = f" [{b.distribution} {b.version}]" if b.distribution else ""
            click.echo(f"  {b.name}{dist}: {b.error}")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", "names", multiple=True, default=("localhost",), show_default=True,
              help="DNS name or IP for the server certificate's SANs (repeatable).")
@click.option("--client", "clients", multiple=True, default=("client",), show_default=True,
              help="Identity of a client certificate to issue (repeatable).")
@click.option("--days", default=365, show_default=True, help="Validity in days.")
def certs(directory: Path, names: tuple[str, ...], clients: tuple[str, ...], days: int) -> None:
    """Write a development CA plus server and client certificates into DIRECTORY."""
    from .certs import write_dev_certs

    try:
        written = write_dev_certs(directory, server_names=list(names), client_names=list(clients), days=days)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    for path in written:
        click.echo(str(path))


@main.command()
@click.option("--listen", default="127.0.0.1:0", show_default=True, help="RPC address (QUIC) to bind.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML file whose [cluster] table configures the node; the options below override it.")
@click.option("--membership", default=None, help="Membership strategy (default: swim, or the config file's).")
@click.option("--gossip", default=None, help="Gossip UDP address to bind (default 127.0.0.1:0).")
@click.option("--node-id", default=None, help="Node id (default: the RPC address).")
@click.option("--seed", "seeds", multiple=True, help="RPC address of a member to join through (repeatable).")
@click.option("--tag", "tags", multiple=True, help="KEY=VALUE tag (repeatable).")
@click.option("--certs", type=click.Path(file_okay=False), default=None,
              help="Directory from `rpcnet certs` (ca.pem, server.pem, server.key); enables mutual TLS.")
@click.option("--key", "keys", multiple=True, envvar="RPCNET_GOSSIP_KEY", help="Base64 gossip key (repeatable; first is primary).")
@click.option("--insecure-gossip", is_flag=True, help="Gossip without encryption (only on a network you control).")
@click.option("--preset", type=click.Choice(["lan", "wan", "local"]), default=None,
              help="Timing preset of the swim strategy (options.swim.preset; default lan).")
@click.option("--label", default=None, help="Cluster label; nodes with other labels never merge.")
@click.option("--transport", default="quic", show_default=True)
def node(listen: str, config_path: str | None, membership: str | None, gossip: str | None, node_id: str | None,
         seeds: tuple[str, ...], tags: tuple[str, ...], certs: str | None, keys: tuple[str, ...], insecure_gossip: bool,
         preset: str | None, label: str | None, transport: str) -> None:
    """Run a cluster node; prints JSON lines (ready, events) and reads commands on stdin."""
    import asyncio

    from .cluster.agent import node_configs, run_node
    from .transport import parse_address

    try:
        rpc, cluster = node_configs(certs=certs, gossip=gossip, node_id=node_id, seeds=seeds, tags=tags, keys=keys,
                                    insecure=insecure_gossip, preset=preset, label=label, transport=transport,
                                    config_path=config_path, membership=membership)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(asyncio.run(run_node(rpc, cluster, parse_address(listen))))


@main.command()
@click.argument("address")
@click.option("--certs", type=click.Path(file_okay=False), default=None,
              help="Directory with ca.pem (and client.pem/client.key for mutual TLS).")
@click.option("--client-name", default="client", show_default=True, help="Client certificate name in --certs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--timeout", default=5.0, show_default=True)
@click.option("--transport", default="quic", show_default=True)
def members(address: str, certs: str | None, client_name: str, as_json: bool, timeout: float, transport: str) -> None:
    """Ask a running node at ADDRESS (its RPC address) for its view of the cluster."""
    import asyncio

    from .cluster.node import MEMBERS_METHOD
    from .config import RpcConfig, TlsConfig
    from .errors import RpcnetError
    from .rpc.client import RpcClient

    tls = None
    if certs:
        cert = Path(certs) / f"{client_name}.pem"
        key = Path(certs) / f"{client_name}.key"
        tls = TlsConfig(ca_file=Path(certs) / "ca.pem", cert_file=cert if cert.exists() else None,
                        key_file=key if key.exists() else None)

    async def ask() -> dict:
        async with RpcClient(address, RpcConfig(transport=transport, tls=tls)) as client:
            return await client.call(MEMBERS_METHOD, None, timeout=timeout)

    try:
        view = asyncio.run(ask())
    except (RpcnetError, OSError) as exc:
        raise click.ClickException(f"cannot read members from {address}: {exc}") from None
    if as_json:
        click.echo(orjson.dumps(view, option=orjson.OPT_INDENT_2).decode())
        return
    rows = [("ID", "ADDRESS", "RPC", "STATE", "INC", "PHI", "TAGS")]
    for m in view["members"]:
        phi = "-" if m["phi"] is None else f"{m['phi']:.2f}"
        tags = ",".join(f"{k}={v}" for k, v in m["tags"].items() if not k.startswith("rpcnet."))
        rows.append((m["id"] + (" *" if m["local"] else ""), m["address"], m["rpc"] or "-", m["state"], str(m["incarnation"]), phi, tags))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@main.command()
@click.option("--duration", default=40.0, show_default=True, type=click.FloatRange(min=20),
              help="Seconds of traffic; the kill comes at 30%, the restart after detection.")
@click.option("--strategy", default="all", show_default=True,
              help="Load balancer to drive (round-robin, random, least-connections, a plugin's), or all.")
@click.option("--workers", default=3, show_default=True, type=click.IntRange(min=2), help="Worker processes.")
@click.option("--rate", default=150.0, show_default=True, type=click.FloatRange(min=1), help="Calls per second.")
@click.option("--transport", default="quic", show_default=True, help="RPC transport of every process: quic or tcp.")
def demo(duration: float, strategy: str, workers: int, rate: float, transport: str) -> None:
    """A director and workers as processes; one worker is killed with SIGKILL and restarted.

    Exits non-zero if any call failed.
    """
    from .demo import main as run_demo
    from .registry import UnknownStrategyError

    try:
        code = run_demo(duration=duration, strategy=strategy, workers=workers, rate=rate, transport=transport)
    except (UnknownStrategyError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
