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
                    "strategies": i.strategies,
                    "hooks": i.hooks,
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

    written = write_dev_certs(directory, server_names=list(names), client_names=list(clients), days=days)
    for path in written:
        click.echo(str(path))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
