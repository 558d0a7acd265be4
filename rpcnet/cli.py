"""The ``rpcnet`` command (also ``python -m rpcnet``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

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
