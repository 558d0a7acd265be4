"""The configuration reference (docs/configuration.md), generated from the config classes.

Every key of a node's file (:data:`rpcnet.cluster.settings.SECTIONS`) and
every option of the strategies bundled with rpcnet, with its type, default,
environment variable and the ``#:`` comment above its field in the source.
``rpcnet config reference`` prints it; a test fails when the file in docs/ is
stale, so it cannot drift from the code.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Mapping
from typing import Any

import attrs

from ..config import ENV_NOT_CONFIGURATION, TlsConfig
from ..plugins import BUNDLED_DISTRIBUTION, PluginHost, make_plugin_manager
from ..registry import KINDS
from .settings import KIND_SECTIONS, SECTIONS

__all__ = ["field_docs", "render_reference"]

_TYPES = {
    "str": "string",
    "str | None": "string or none",
    "int": "integer",
    "int | None": "integer or none",
    "float": "number",
    "float | None": "number or none",
    "bool": "boolean",
    "Address": '"host:port"',
    "Address | None": '"host:port" or none',
    "tuple[str, ...]": "list of strings",
    "Mapping[str, str]": "table of strings",
    "Mapping[str, Mapping[str, Any]]": "tables by strategy name",
    "TlsConfig | None": "table",
}


def field_docs(cls: type) -> dict[str, str]:
    """The ``#:`` comment lines above each field of an attrs class, joined."""
    try:
        lines, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    pending: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        match = re.match(r"([a-z_][a-z0-9_]*)\s*:", stripped)
        if match and pending:
            docs[match.group(1)] = " ".join(pending)
        if stripped and not stripped.startswith("#"):
            pending = []
    return docs


def _type(field: attrs.Attribute) -> str:
    text = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    text = text.replace("ClassVar", "").strip()
    return _TYPES.get(text, text)


def _default(field: attrs.Attribute) -> str:
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory() if not default.takes_self else None  # type: ignore[union-attr]
    if default is attrs.NOTHING:
        return "(required)"
    if field.converter is not None and default is not None:
        try:
            default = field.converter(default)  # type: ignore[misc]
        except Exception:
            pass
    return _literal(default)


def _literal(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int):
        return f'"{value[0]}:{value[1]}"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float) and value == int(value) and abs(value) < 1e15:
        return f"{value:g}" if "e" not in f"{value:g}" else repr(value)
    return str(value)


def _variable(*path: str) -> str:
    return "RPCNET_" + "__".join(p.replace("-", "_").upper() for p in path)


def _cell(text: str) -> str:
    return text.replace("``", "`").replace("|", "\\|")


def _table(cls: type, path: tuple[str, ...], *, env: bool = True) -> list[str]:
    docs = field_docs(cls)
    header = "| key | type | default | environment variable | meaning |" if env else "| option | type | default | meaning |"
    rows = [header, "|---|---|---|---|---|" if env else "|---|---|---|---|"]
    for field in attrs.fields(cls):
        if field.name.startswith("_"):
            continue
        meaning = _cell(docs.get(field.name, ""))
        if env:
            variable = _variable(*path, field.name)
            if field.name == "options":
                variable += "__<NAME>__<OPTION>"
            elif field.name == "tls":
                variable += "__<KEY>"
            rows.append(f"| `{field.name}` | {_type(field)} | `{_default(field)}` | `{variable}` | {meaning} |")
        else:
            rows.append(f"| `{field.name}` | {_type(field)} | `{_default(field)}` | {meaning} |")
    return rows


def _summary(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return textwrap.dedent(doc.split("\n\n", 1)[0]).replace("\n", " ").replace("``", "`").strip()


def render_reference(plugins: PluginHost | None = None) -> str:
    """The whole reference as Markdown; the same for every installation (bundled strategies only)."""
    host = plugins if plugins is not None else make_plugin_manager(autoload=False, disabled=(), plugins=())
    out: list[str] = [
        "# Configuration reference",
        "",
        "<!-- Generated by `rpcnet config reference` from the config classes; do not edit by hand.",
        "     tests/cluster/test_reference.py fails when this file is stale. -->",
        "",
        "A node reads one TOML file with four tables, `[node]`, `[rpc]`, `[cluster]` and `[workers]`,",
        "then `RPCNET_*` environment variables named after them, then the command line's flags:",
        "",
        "```",
        "rpcnet node --config node.toml               # or in code:",
        "config = rpcnet.cluster.load_node_config(\"node.toml\")",
        "```",
        "",
        "Layers merge table by table: `RPCNET_CLUSTER__OPTIONS__SWIM__PRESET=wan` replaces only that",
        "option of a `[cluster.options.swim]` table read from the file. Each `__` in a variable's name",
        "descends one table; values are parsed as JSON when they parse (`10`, `true`, `[\"a\", \"b\"]`)",
        "and taken as text otherwise. Keys may be written `health_interval` or `health-interval`.",
        "",
        "Every key nobody reads is an error naming the file, variable or flag it came from, the key",
        "and the nearest valid one; `rpcnet config check node.toml` checks a file (and the",
        "environment) without starting anything:",
        "",
        "```",
        "$ rpcnet config check node.toml",
        "Error: config file 'node.toml': unknown key 'cluster.health_check' (did you mean 'cluster.health_checks'?); valid keys in [cluster]: ...",
        "```",
        "",
        "Every strategy is chosen by name in the table of its kind and reads its options from",
        "`[<table>.options.<strategy-name>]`; an options table in another table is an error that",
        "says where it belongs:",
        "",
        "| kind | chosen by | options in |",
        "|---|---|---|",
    ]
    chosen = {
        "transport": "`[rpc] transport`",
        "serializer": "`[rpc] serializer`",
        "membership": "`[cluster] membership`",
        "failure-detector": "`[cluster] failure_detector`",
        "health-check": "`[cluster] health_checks` (several)",
        "load-balancer": "`[workers] load_balancer`",
    }
    for kind in KINDS:
        out.append(f"| {kind} | {chosen[kind]} | `[{KIND_SECTIONS[kind]}.options.<name>]` |")
    out += [
        "",
        "Variables without the table (`RPCNET_TRANSPORT`, `RPCNET_OPTIONS__SWIM__PRESET`, the names",
        "before 0.2) still work until 0.3 and warn with the new name.",
        "",
        "## Variables that are not configuration",
        "",
        "These keep their names and are never mistaken for misspelled settings:",
        "",
        "| variable | meaning |",
        "|---|---|",
    ]
    for name, meaning in ENV_NOT_CONFIGURATION.items():
        out.append(f"| `{name}` | {_cell(meaning)} |")
    for section, cls in SECTIONS.items():
        out += ["", f"## `[{section}]`", "", _summary(cls), "", *_table(cls, (section,))]
        if any(f.name == "tls" for f in attrs.fields(cls)):
            out += ["", f"### `[{section}.tls]`", "", _summary(TlsConfig), "", *_table(TlsConfig, (section, "tls"))]
    out += [
        "",
        "## Options of the bundled strategies",
        "",
        "Third-party strategies document their own; `rpcnet plugins` lists what is installed.",
    ]
    for kind in KINDS:
        section = KIND_SECTIONS[kind]
        for entry in host.registry.entries(kind):
            if entry.distribution != BUNDLED_DISTRIBUTION:
                continue
            options = getattr(entry.cls, "Options", None)
            title = f"### `[{section}.options.{entry.name}]` ({kind} `{entry.name}`)"
            if options is None:
                out += ["", title, "", "No options."]
                continue
            out += ["", title, "", f"Environment: `{_variable(section, 'options', entry.name)}__<OPTION>`.", ""]
            out += _table(options, (section, "options", entry.name), env=False)
    return "\n".join(out) + "\n"
