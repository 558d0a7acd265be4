"""The ``rpcnet`` command (also ``python -m rpcnet``).

Every mistake a user can make ends in one line on stderr saying what
happened and what to do (``Error: ...``, sometimes followed by a ``Hint:``
line) and a non-zero exit status; ``rpcnet --debug COMMAND`` shows the
traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import orjson
import pluggy

from .config import RpcConfig, env_value
from .errors import ConfigError, PluginError, RpcnetError
from .plugins import make_plugin_manager
from .registry import KINDS, UnknownStrategyError


class CliError(click.ClickException):
    """One line saying what happened, and an optional hint saying what to do next."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(" ".join(str(message).split()))
        self.hint = hint

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)
        if self.hint:
            click.echo(f"Hint: {self.hint}", err=True)


def as_cli_error(exc: BaseException) -> CliError:
    """The one-line form of an exception a command let through."""
    hint = getattr(exc, "hint", None)
    if hint is not None or isinstance(exc, UnknownStrategyError):
        return CliError(str(exc), hint)
    if isinstance(exc, (ConfigError, PluginError, RpcnetError, pluggy.PluginValidationError)):
        return CliError(str(exc), hint)
    if isinstance(exc, PermissionError):
        where = f" {exc.filename}" if exc.filename else ""
        return CliError(f"permission denied:{where}", hint or "choose a location you can write to, or fix its permissions")
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return CliError(f"{exc.strerror or exc}{where}", hint)
    if isinstance(exc, ValueError):
        return CliError(str(exc), hint)
    return CliError(f"{type(exc).__name__}: {exc}", hint or "this looks like a bug in rpcnet: run with --debug and report the traceback")


class _Main(click.Group):
    """Turns every exception a command lets through into one line, unless --debug."""

    def main(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
        # --debug may follow the command too (`rpcnet node ... --debug`): it is the group's.
        args = list(sys.argv[1:] if args is None else args)
        if "--debug" in args[1:]:
            args.remove("--debug")
            args.insert(0, "--debug")
        return super().main(args, *rest, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise as_cli_error(exc) from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rpcnet", prog_name="rpcnet")
@click.option("--debug", is_flag=True, help="Show the traceback of an error instead of one line.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """rpcnet: RPC over QUIC with built-in clusters."""
    ctx.obj = {"debug": debug}


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
        disabled = RpcConfig.from_toml(config_path).disabled_plugins
    try:
        host = make_plugin_manager(disabled=disabled)
    except (PluginError, pluggy.PluginValidationError) as exc:
        raise CliError(f"the plugins cannot be loaded together: {exc}") from exc
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
        if host.broken:
            sys.exit(1)
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
        click.echo(f"Error: {len(host.broken)} plugin(s) failed to load; fix or block them "
                   "(RPCNET_DISABLED_PLUGINS=name)", err=True)
        sys.exit(1)


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
    except OSError as exc:
        raise CliError(f"cannot write certificates into {str(directory)!r}: {exc.strerror or exc}",
                       hint="choose a directory you can write to") from None
    for path in written:
        click.echo(str(path))


@main.command()
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a keyring file (readable by its owner only) instead of printing the key.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("--size", type=click.Choice(["16", "24", "32"]), default="32", show_default=True, help="Key bytes (AES-128/192/256).")
def keygen(out: Path | None, force: bool, size: str) -> None:
    """Make a gossip key: print it, or write a key file for --key-file / [cluster] keyring_file."""
    from .cluster.keyring import Keyring

    key = Keyring.generate(int(size))
    if out is None:
        click.echo(key)
        return
    if out.exists() and not force:
        raise CliError(f"{out} exists; keygen does not overwrite a key file",
                       hint="pass --force to replace it, or add the new key to it to rotate (see docs/operations.md)")
    try:
        Keyring([key]).save(out)
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror or exc}", hint="choose a location you can write to") from None
    click.echo(f"wrote a new gossip key to {out} (mode 0600); pass --key-file {out} to every node", err=True)


def _overrides(items: Sequence[str]) -> dict[str, Any]:
    """``--set cluster.options.swim.preset=wan`` as a nested mapping."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        parts = [p for p in key.strip().split(".")]
        if not sep or not all(parts) or len(parts) < 2:
            raise click.BadParameter(f"{item!r}: write TABLE.KEY=VALUE, e.g. cluster.options.swim.preset=wan",
                                     param_hint="--set")
        target = result
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise click.BadParameter(f"{item!r}: {part} is set both as a value and as a table", param_hint="--set")
        target[parts[-1]] = env_value(value)
    return result


def _tags(items: Sequence[str]) -> dict[str, str]:
    tags = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: write KEY=VALUE, e.g. role=worker", param_hint="--tag")
        tags[key.strip()] = value.strip()
    return tags


def _merge_into(target: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = value
    return target


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    if level != "debug":
        logging.getLogger("quic").setLevel(logging.WARNING)  # aioquic logs every connection at INFO


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML file with [node], [rpc], [cluster] and [workers] tables (docs/configuration.md); "
                   "RPCNET_* variables and the options below override it.")
@click.option("--listen", default=None, help="RPC address to bind ([node] listen; default 127.0.0.1:0).")
@click.option("--certs", default=None, envvar="RPCNET_CERTS", show_envvar=True,
              help="Directory from `rpcnet certs` (ca.pem, server.pem, server.key): mutual TLS ([node] certs).")
@click.option("--key-file", default=None,
              help="Gossip key file from `rpcnet keygen --out FILE` ([cluster] keyring_file); reloaded when it changes.")
@click.option("--key", "keys", multiple=True,
              help="Base64 gossip key (repeatable, first is primary). Also read from RPCNET_GOSSIP_KEY "
                   "(comma-separated). On the command line it is visible to every local user: prefer --key-file.")
@click.option("--insecure-gossip", is_flag=True, default=None, help="Gossip without encryption (only on a network you control).")
@click.option("--gossip", default=None, help="Gossip UDP address to bind ([cluster] gossip_bind; default 127.0.0.1:0).")
@click.option("--node-id", default=None, help="Node id (default: the RPC address).")
@click.option("--seed", "seeds", multiple=True, help="RPC address of a member to join through (repeatable).")
@click.option("--tag", "tags", multiple=True, help="KEY=VALUE tag (repeatable).")
@click.option("--membership", default=None, help="Membership strategy ([cluster] membership; default swim).")
@click.option("--preset", type=click.Choice(["lan", "wan", "local"]), default=None,
              help="Timing preset of the swim strategy ([cluster.options.swim] preset; default lan).")
@click.option("--health-check", "health_checks", multiple=True,
              help="Health check to run, by name (repeatable; [cluster] health_checks).")
@click.option("--label", default=None, help="Cluster label; nodes with other labels never merge.")
@click.option("--transport", default=None, help="Transport strategy ([rpc] transport; default quic).")
@click.option("--set", "settings", multiple=True, metavar="TABLE.KEY=VALUE",
              help="Any setting, e.g. --set cluster.options.phi-accrual.threshold=10 (repeatable; values as JSON or text).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error", "critical"]), default=None,
              help="Log lines on stderr at this level and above ([node] log_level; default info).")
def node(config_path: str | None, listen: str | None, certs: str | None, key_file: str | None, keys: tuple[str, ...],
         insecure_gossip: bool | None, gossip: str | None, node_id: str | None, seeds: tuple[str, ...],
         tags: tuple[str, ...], membership: str | None, preset: str | None, health_checks: tuple[str, ...],
         label: str | None, transport: str | None, settings: tuple[str, ...], log_level: str | None) -> None:
    """Run a cluster node as a service.

    Prints JSON lines on stdout (ready, events, reloads, left) and logs on
    stderr. SIGINT/SIGTERM: leave the cluster gracefully, then exit (a second
    signal exits at once). SIGHUP: reload certificates and the key file (also
    reloaded when the files change). With stdin a pipe, reads commands
    (tag K=V, untag K, members, leave, reload, quit).
    """
    import asyncio

    from .cluster.agent import run_node
    from .cluster.settings import NodeConfig

    overrides: dict[str, Any] = {}
    node_table = {k: v for k, v in {"listen": listen, "certs": certs, "log_level": log_level}.items() if v is not None}
    cluster = {k: v for k, v in {"gossip_bind": gossip, "node_id": node_id, "membership": membership, "label": label,
                                 "keyring_file": key_file, "insecure_gossip": insecure_gossip}.items() if v is not None}
    if seeds:
        cluster["seeds"] = list(seeds)
    if tags:
        cluster["tags"] = _tags(tags)
    if health_checks:
        cluster["health_checks"] = list(health_checks)
    if preset is not None:
        cluster["options"] = {"swim": {"preset": preset}}
    gossip_keys = list(keys)
    if not gossip_keys and os.environ.get("RPCNET_GOSSIP_KEY"):
        gossip_keys = [k.strip() for k in os.environ["RPCNET_GOSSIP_KEY"].split(",") if k.strip()]
    if gossip_keys:
        cluster["gossip_keys"] = gossip_keys
    if node_table:
        overrides["node"] = node_table
    if cluster:
        overrides["cluster"] = cluster
    if transport is not None:
        overrides["rpc"] = {"transport": transport}
    _merge_into(overrides, _overrides(settings))
    config = NodeConfig.load(config_path, overrides=overrides)
    _setup_logging(config.node.log_level)
    if keys:
        logging.getLogger("rpcnet.node").warning(
            "a gossip key given with --key is visible to every local user in the process list; "
            "use --key-file FILE (rpcnet keygen --out FILE) or RPCNET_GOSSIP_KEY instead")
    sys.exit(asyncio.run(run_node(config)))


@main.group()
def config() -> None:
    """Check a node's configuration, or print the reference of every key."""


@config.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
def config_check(path: str | None) -> None:
    """Load PATH (and RPCNET_* variables) as `rpcnet node --config` would, and report the first problem."""
    from .cluster.settings import load_node_config

    loaded = load_node_config(path)
    click.echo(f"ok: {path or 'the environment'} configures transport {loaded.rpc.transport!r}, membership "
               f"{loaded.cluster.membership!r}, load balancer {loaded.workers.load_balancer!r}"
               + (f", health checks {', '.join(loaded.cluster.health_checks)}" if loaded.cluster.health_checks else ""))


@config.command("reference")
def config_reference() -> None:
    """Print the configuration reference (docs/configuration.md) generated from the config classes."""
    from .cluster.reference import render_reference

    click.echo(render_reference(), nl=False)


def _parse_address_argument(address: str, what: str) -> tuple[str, int]:
    from .transport import parse_address

    try:
        return parse_address(address)
    except ValueError as exc:
        raise CliError(f"{what}: {exc}", hint="write host:port, e.g. 127.0.0.1:7000 (the node's RPC address, "
                                             "printed as \"rpc\" in its ready line)") from None


@main.command()
@click.argument("address")
@click.option("--certs", type=click.Path(file_okay=False), default=None, envvar="RPCNET_CERTS", show_envvar=True,
              help="Directory with ca.pem (and client.pem/client.key for mutual TLS).")
@click.option("--client-name", default=None, help="Client certificate name in --certs [default: client, if present].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--timeout", default=5.0, show_default=True)
@click.option("--transport", default="quic", show_default=True)
@click.option("--no-health", is_flag=True, help="Do not ask each member for the reason of its health.")
def members(address: str, certs: str | None, client_name: str | None, as_json: bool, timeout: float, transport: str,
            no_health: bool) -> None:
    """Ask a running node at ADDRESS (its RPC address) for its view of the cluster.

    HEALTH is what each member publishes in gossip (what load balancers go
    by); REASON is what its checks said, asked from the member itself.
    """
    import asyncio

    from .cluster.node import MEMBERS_METHOD
    from .config import TlsConfig
    from .errors import RpcnetError
    from .health import HEALTH_METHOD, status_from_tags
    from .rpc.client import RpcClient

    _parse_address_argument(address, "rpcnet members ADDRESS")
    tls = None
    if certs:
        directory = Path(certs)
        if not directory.is_dir():
            raise CliError(f"certificate directory {certs!r} does not exist",
                           hint=f"create it with `rpcnet certs {certs} --name 127.0.0.1`, or pass the node's --certs")
        if not (directory / "ca.pem").is_file():
            raise CliError(f"{certs} has no ca.pem", hint="pass the directory `rpcnet certs` wrote")
        name = client_name or "client"
        cert, key = directory / f"{name}.pem", directory / f"{name}.key"
        if client_name is not None and not (cert.is_file() and key.is_file()):
            present = sorted(p.stem for p in directory.glob("*.key") if p.stem != "ca")
            raise CliError(f"no client certificate {client_name!r} in {certs}: {cert.name} and {key.name} are needed",
                           hint=f"certificates there: {', '.join(present) or 'none'}; issue one with "
                                f"`rpcnet certs {certs} --client {client_name}`")
        tls = TlsConfig(ca_file=directory / "ca.pem", cert_file=cert if cert.is_file() else None,
                        key_file=key if key.is_file() else None)
    config = RpcConfig(transport=transport, tls=tls)

    async def ask() -> dict:
        async with RpcClient(address, config) as client:
            view = await client.call(MEMBERS_METHOD, None, timeout=timeout)
        if not no_health:
            await asyncio.gather(*(ask_health(m) for m in view["members"] if m["state"] == "alive" and m["rpc"]))
        return view

    async def ask_health(member: dict) -> None:
        try:
            async with RpcClient(member["rpc"], config) as client:
                answer = await client.call(HEALTH_METHOD, None, timeout=min(timeout, 2.0))
        except (RpcnetError, OSError) as exc:
            member["health_reason"] = f"(not asked: {type(exc).__name__})"
            return
        member["health_reason"] = answer.get("reason", "")
        member["health_checked"] = answer.get("status")

    try:
        view = asyncio.run(ask())
    except (RpcnetError, OSError) as exc:
        raise CliError(f"cannot read members from {address}: {exc}",
                       hint="check the address (the node's RPC address) and --certs") from None
    for m in view["members"]:
        m["health"] = status_from_tags(m["tags"]).value
    if as_json:
        click.echo(orjson.dumps(view, option=orjson.OPT_INDENT_2).decode())
        return
    rows = [("ID", "ADDRESS", "RPC", "STATE", "INC", "PHI", "HEALTH", "REASON", "TAGS")]
    for m in view["members"]:
        phi = "-" if m["phi"] is None else f"{m['phi']:.2f}"
        tags = ",".join(f"{k}={v}" for k, v in m["tags"].items() if not k.startswith("rpcnet."))
        rows.append((m["id"] + (" *" if m["local"] else ""), m["address"], m["rpc"] or "-", m["state"],
                     str(m["incarnation"]), phi, m["health"], m.get("health_reason") or "-", tags))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _typed_client_config(certs: str | None, client_name: str, transport: str) -> RpcConfig:
    """The client config of `describe` and `call`: the TLS flags `members` takes."""
    from .config import TlsConfig

    tls = None
    if certs:
        cert = Path(certs) / f"{client_name}.pem"
        key = Path(certs) / f"{client_name}.key"
        tls = TlsConfig(ca_file=Path(certs) / "ca.pem", cert_file=cert if cert.exists() else None,
                        key_file=key if key.exists() else None)
    return RpcConfig(transport=transport, tls=tls)


def _tls_options(command: Any) -> Any:
    for option in reversed((
        click.option("--certs", type=click.Path(file_okay=False), default=None,
                     help="Directory with ca.pem (and client.pem/client.key for mutual TLS)."),
        click.option("--client-name", default="client", show_default=True, help="Client certificate name in --certs."),
        click.option("--timeout", default=5.0, show_default=True, help="Seconds for the call."),
        click.option("--transport", default="quic", show_default=True),
    )):
        command = option(command)
    return command


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@main.command()
@click.argument("address")
@_tls_options
@click.option("--json", "as_json", is_flag=True, help="Print the whole reflection document (JSON Schemas included).")
def describe(address: str, certs: str | None, client_name: str, timeout: float, transport: str, as_json: bool) -> None:
    """List the services, methods and types a server at ADDRESS serves (its reflection method)."""
    import asyncio

    from .errors import RpcnetError, UnimplementedError
    from .rpc.client import RpcClient
    from .rpc.reflection import REFLECTION_METHOD

    config = _typed_client_config(certs, client_name, transport)

    async def ask() -> Any:
        async with RpcClient(address, config) as client:
            return await client.call(REFLECTION_METHOD, None, timeout=timeout)

    try:
        described = asyncio.run(ask())
    except UnimplementedError:
        raise click.ClickException(f"{address} does not answer reflection (it is configured off)") from None
    except (RpcnetError, OSError, ValueError) as exc:
        raise click.ClickException(f"cannot describe {address}: {_one_line(exc)}") from None
    if as_json:
        click.echo(orjson.dumps(described, option=orjson.OPT_INDENT_2).decode())
        return
    for service in described.get("services", []):
        click.echo(f"service {service['name']}" + (f"  -- {service['doc'].splitlines()[0]}" if service.get("doc") else ""))
        for method in service["methods"]:
            request, response = method["request_type"], method["response_type"]
            if method["kind"] in ("client_streaming", "bidi_streaming"):
                request = f"stream {request}"
            if method["kind"] in ("server_streaming", "bidi_streaming"):
                response = f"stream {response}"
            notes = []
            if method["idempotent"]:
                notes.append("idempotent")
            if method["errors"]:
                notes.append("raises " + ", ".join(method["errors"]))
            line = f"  {method['method']}({request}) -> {response}"
            click.echo(line + (f"  [{'; '.join(notes)}]" if notes else ""))
    defs = described.get("$defs", {})
    if defs:
        click.echo("types")
        for name, schema in defs.items():
            if "properties" in schema:
                required = set(schema.get("required", ()))
                fields = ", ".join(
                    f"{field}{'' if field in required else '?'}: {_schema_name(prop)}" for field, prop in schema["properties"].items()
                )
                click.echo(f"  {name} {{{fields}}}")
            elif "enum" in schema:
                click.echo(f"  {name} = {' | '.join(orjson.dumps(v).decode() for v in schema['enum'])}")
    untyped = described.get("methods", [])
    if untyped:
        click.echo("untyped methods")
        for method in untyped:
            click.echo(f"  {method['method']} ({method['kind']})")


def _schema_name(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_schema_name(s) for s in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(orjson.dumps(v).decode() for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"list[{_schema_name(schema.get('items', {}))}]"
    if kind == "object" and "additionalProperties" in schema:
        return f"dict[str, {_schema_name(schema['additionalProperties'])}]"
    if kind == "object" and "$bytes" in schema.get("properties", {}):
        return "bytes"
    if kind == "string" and schema.get("format") in ("date-time", "date"):
        return str(schema["format"])
    names = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}
    return names.get(str(kind), "any")


@main.command()
@click.argument("address")
@click.argument("method")
@click.argument("request", required=False)
@_tls_options
@click.option("--kind", type=click.Choice(["unary", "server_streaming", "client_streaming", "bidi_streaming"]),
              default=None, help="Call kind; read from the server's reflection when not given.")
@click.option("--metadata", "metadata_pairs", multiple=True, help="KEY=VALUE call metadata (repeatable).")
def call(address: str, method: str, request: str | None, certs: str | None, client_name: str, timeout: float,
         transport: str, kind: str | None, metadata_pairs: tuple[str, ...]) -> None:
    """Call METHOD (Service.method) on ADDRESS with REQUEST as JSON; print each response as one JSON line.

    Client- and bidirectional-streaming calls read their requests from stdin,
    one JSON value per line. Bytes are written {"$bytes": "<base64>"}.
    """
    import asyncio

    from .builtins.serializers import JsonSerializer
    from .errors import RpcError, RpcnetError, SerializationError, UnimplementedError
    from .rpc.client import RpcClient
    from .rpc.reflection import REFLECTION_METHOD

    codec = JsonSerializer()
    config = _typed_client_config(certs, client_name, transport)
    metadata: dict[str, Any] = {}
    for pair in metadata_pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--metadata takes KEY=VALUE, got {pair!r}")
        metadata[key] = value

    def parse(text: str, where: str) -> Any:
        try:
            return codec.loads(text.encode())
        except SerializationError as exc:
            raise click.UsageError(f"{where} is not valid JSON: {_one_line(exc)}") from None

    def show(value: Any) -> None:
        click.echo(codec.dumps(value).decode())

    async def find_kind(client: RpcClient) -> str:
        try:
            described = await client.call(REFLECTION_METHOD, None, timeout=timeout)
        except UnimplementedError:
            return "unary"  # no reflection: the caller says --kind for streams
        for service in described.get("services", []):
            for entry in service["methods"]:
                if entry["method"] == method:
                    return str(entry["kind"])
        for entry in described.get("methods", []):
            if entry["method"] == method:
                return str(entry["kind"])
        raise click.ClickException(f"{address} serves no method {method!r} (see `rpcnet describe {address}`)")

    async def stdin_requests() -> Any:
        loop = asyncio.get_running_loop()
        number = 0
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            number += 1
            if line.strip():
                yield parse(line, f"stdin line {number}")

    async def run() -> None:
        async with RpcClient(address, config) as client:
            call_kind = kind or await find_kind(client)
            md = metadata or None
            streams_requests = call_kind in ("client_streaming", "bidi_streaming")
            if streams_requests and request is not None:
                raise click.UsageError(f"{method} is {call_kind}: its requests come from stdin, one JSON value per line")
            value = None if streams_requests else parse(request if request is not None else "null", "REQUEST")
            if call_kind == "unary":
                show(await client.call(method, value, timeout=timeout, metadata=md))
            elif call_kind == "server_streaming":
                async for item in client.call_server_streaming(method, value, timeout=timeout, metadata=md):
                    show(item)
            elif call_kind == "client_streaming":
                show(await client.call_client_streaming(method, stdin_requests(), timeout=timeout, metadata=md))
            else:
                async for item in client.call_streaming(method, stdin_requests(), timeout=timeout, metadata=md):
                    show(item)

    try:
        asyncio.run(run())
    except RpcError as exc:
        details = "" if exc.details is None else " " + codec.dumps(exc.details).decode()
        raise click.ClickException(f"{method} failed: {_one_line(exc)}{details}") from None
    except (RpcnetError, OSError) as exc:
        raise click.ClickException(f"cannot call {method} on {address}: {_one_line(exc)}") from None


@main.command()
@click.option("--duration", default=40.0, show_default=True, type=click.FloatRange(min=5),
              help="Seconds of traffic. From 20 s on, a worker is killed at 30% and restarted after detection; "
                   "shorter runs only drive traffic.")
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

    sys.exit(run_demo(duration=duration, strategy=strategy, workers=workers, rate=rate, transport=transport))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
