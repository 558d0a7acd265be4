"""One configuration for a whole node: ``[node]``, ``[rpc]``, ``[cluster]``, ``[workers]``.

:class:`NodeConfig` holds everything a node runs with: how the process runs
(:class:`ServiceConfig`, ``[node]``), its RPC server (:class:`~rpcnet.config.RpcConfig`,
``[rpc]``), its membership and health checks (:class:`~rpcnet.cluster.config.ClusterConfig`,
``[cluster]``) and how it picks workers (:class:`WorkersConfig`, ``[workers]``).
Every strategy is chosen by name in its table and gets its options from
``[<table>.options.<strategy-name>]``.

:meth:`NodeConfig.load` layers defaults, one TOML file, ``RPCNET_*``
variables named after the file's tables (``RPCNET_CLUSTER__OPTIONS__SWIM__PRESET``)
and overrides (the command line's flags), in that order, table by table.
Every key nobody reads is an error that names where it came from (the file,
the variable or the flag), the key and the nearest valid one;
:meth:`NodeConfig.check` then asks the plugins whether each strategy exists,
whether each options table sits in the table of its strategy's kind, and
whether its option names and values are valid.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import attrs

from ..config import (
    ENV_NOT_CONFIGURATION,
    ENV_PREFIX,
    ConfigBase,
    RpcConfig,
    TlsConfig,
    env_path,
    env_value,
    non_negative,
    optional,
    positive,
    to_options,
)
from ..errors import ConfigError
from ..plugins import PluginHost, make_plugin_manager
from ..registry import KINDS, UnknownStrategyError, build_options
from ..transport import Address, parse_address
from .config import ClusterConfig
from .workers import TagFilter, TagFilterError

__all__ = [
    "NodeConfig",
    "ServiceConfig",
    "WorkersConfig",
    "SECTIONS",
    "KIND_SECTIONS",
    "LOG_LEVELS",
    "load_node_config",
]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _to_address(value: Any) -> Address:
    try:
        return parse_address(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def _log_level(value: Any) -> str:
    level = str(value).strip().lower()
    if level not in LOG_LEVELS:
        close = difflib.get_close_matches(level, LOG_LEVELS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {value!r}{hint}")
    return level


def _tag_filter(value: Any) -> str:
    try:
        return str(TagFilter.of(value))
    except TagFilterError as exc:
        raise ConfigError(f"filter: {exc}") from None


@attrs.frozen(kw_only=True)
class ServiceConfig(ConfigBase):
    """How ``rpcnet node`` runs as a process: where it listens, its certificates, logs and reloads."""

    toml_table: ClassVar[str] = "node"

    #: RPC address to bind ("host:port"; port 0: any free port).
    listen: Address = attrs.field(default=("127.0.0.1", 0), converter=_to_address)
    #: Directory from `rpcnet certs` (ca.pem, server.pem, server.key): mutual TLS, unless [rpc.tls] is set.
    certs: str | None = attrs.field(default=None, converter=optional(str))
    #: Threshold of the log lines written to stderr: debug, info, warning, error or critical.
    log_level: str = attrs.field(default="info", converter=_log_level)
    #: Seconds between checks of the certificate and keyring files for changes (0: only on SIGHUP).
    reload_interval: float = attrs.field(default=5.0, converter=float, validator=non_negative)
    #: Seconds a graceful leave may take on SIGINT or SIGTERM before the node stops anyway.
    leave_timeout: float = attrs.field(default=5.0, converter=float, validator=positive)


@attrs.frozen(kw_only=True)
class WorkersConfig(ConfigBase):
    """How a node picks workers to call: a tag filter and a load balancer chosen by name.

    Read by :meth:`rpcnet.cluster.workers.WorkerRegistry.from_config`.
    """

    toml_table: ClassVar[str] = "workers"

    #: Load-balancer strategy (round-robin, random, least-connections, or a plugin's).
    load_balancer: str = "round-robin"
    #: Which members are workers: comma-separated key=value tags, or "*" for every member.
    filter: str = attrs.field(default="role=worker", converter=_tag_filter)
    #: Seconds of call history behind each worker's recent error count.
    error_window: float = attrs.field(default=10.0, converter=float, validator=positive)
    #: Per-strategy options of load balancers, e.g. {"p2c": {"choices": 3}} ([workers.options.p2c]).
    options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, converter=to_options, hash=False)


#: The tables of a node's file, in the order the reference lists them.
SECTIONS: Mapping[str, type[ConfigBase]] = {
    "node": ServiceConfig,
    "rpc": RpcConfig,
    "cluster": ClusterConfig,
    "workers": WorkersConfig,
}

#: Which table chooses each kind of strategy, and so holds its options.
KIND_SECTIONS: Mapping[str, str] = {
    "transport": "rpc",
    "serializer": "rpc",
    "membership": "cluster",
    "failure-detector": "cluster",
    "health-check": "cluster",
    "load-balancer": "workers",
}

#: Settings that name a strategy: (table, field) -> kind.
_CHOSEN_BY: Mapping[tuple[str, str], str] = {
    ("rpc", "transport"): "transport",
    ("rpc", "serializer"): "serializer",
    ("cluster", "membership"): "membership",
    ("cluster", "failure_detector"): "failure-detector",
    ("cluster", "health_checks"): "health-check",
    ("workers", "load_balancer"): "load-balancer",
}

#: Fields whose values are tables of free keys (names of tags, of strategies).
_FREE_TABLES = {"tags", "options"}


def _fields(cls: type) -> list[str]:
    return [f.name for f in attrs.fields(cls)]


def _variable(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + "__".join(part.replace("-", "_").upper() for part in path)


class _Sources:
    """Where each key and table of the merged settings came from, for error messages."""

    def __init__(self) -> None:
        self._where: dict[tuple[str, ...], list[str]] = {}

    def _add(self, path: tuple[str, ...], where: str) -> None:
        found = self._where.setdefault(path, [])
        if where not in found:
            found.append(where)

    def record(self, data: Mapping[str, Any], where: str | Mapping[tuple[str, ...], str], path: tuple[str, ...] = ()) -> None:
        """``where``: one source for everything in ``data``, or each leaf's own (environment variables)."""
        for key, value in data.items():
            here = (*path, _norm(key, path))
            if isinstance(value, Mapping) and value:
                self.record(value, where, here)
                continue
            source = where if isinstance(where, str) else where.get(here, "the environment")
            for end in range(1, len(here) + 1):  # a table came from wherever its keys did
                self._add(here[:end], source)

    def of(self, path: tuple[str, ...]) -> str:
        """The sources of ``path``, or of the nearest table above it that has one."""
        for end in range(len(path), 0, -1):
            if path[:end] in self._where:
                return " and ".join(self._where[path[:end]])
        return "the defaults"


def _norm(key: Any, path: tuple[str, ...]) -> str:
    # Setting names may be spelled kebab-case; strategy and tag names are kept as written.
    key = str(key)
    if path and path[-1] in _FREE_TABLES:
        return key
    if len(path) >= 2 and path[-2] == "options":
        return key  # an option name: the strategy's Options reads either spelling
    return key.replace("-", "_")


def _normalise(data: Mapping[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = _norm(key, path)
        out[name] = _normalise(value, (*path, name)) if isinstance(value, Mapping) else value
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _unknown(where: str, path: tuple[str, ...], valid: list[str]) -> ConfigError:
    key = ".".join(path)
    close = difflib.get_close_matches(path[-1], valid, n=1)
    if close:
        nearest = ".".join((*path[:-1], close[0]))
        spelled = f" ({_variable((*path[:-1], close[0]))})" if where.startswith("environment variable") else ""
        hint = f" (did you mean {nearest!r}{spelled}?)"
    else:
        hint = ""
    table = f"[{'.'.join(path[:-1])}]" if len(path) > 1 else "the top level"
    return ConfigError(f"{where}: unknown key {key!r}{hint}; valid keys in {table}: {', '.join(valid)}")


def _check_keys(data: Mapping[str, Any], sources: _Sources) -> None:
    for top, value in data.items():
        if top not in SECTIONS:
            homes = [section for section, cls in SECTIONS.items() if top in _fields(cls)]
            if homes:
                raise ConfigError(
                    f"{sources.of((top,))}: unknown key {top!r} at the top level; settings live in tables: "
                    f"did you mean {' or '.join(f'[{h}] {top}' for h in homes)}?"
                )
            raise _unknown(sources.of((top,)), (top,), list(SECTIONS))
        if not isinstance(value, Mapping):
            raise ConfigError(f"{sources.of((top,))}: [{top}] must be a table, got {type(value).__name__} {value!r}")
        fields = _fields(SECTIONS[top])
        for key, inner in value.items():
            if key not in fields:
                raise _unknown(sources.of((top, key)), (top, key), fields)
            if key == "tls" and isinstance(inner, Mapping):
                tls_fields = _fields(TlsConfig)
                for tls_key in inner:
                    if tls_key not in tls_fields:
                        raise _unknown(sources.of((top, key, tls_key)), (top, key, tls_key), tls_fields)


def _deprecated_section(name: str, parts: list[str], plugins: Any) -> str | None:
    """The table an ``RPCNET_<FIELD>`` variable (the name before 0.2) belongs to."""
    in_rpc = name in _fields(RpcConfig)
    in_cluster = name in _fields(ClusterConfig)
    if name == "options" and len(parts) > 1:
        strategy = env_path(parts)[1]
        host = plugins() if callable(plugins) else plugins
        for kind in KINDS:
            if strategy in host.registry.names(kind):
                return KIND_SECTIONS[kind]
        return "rpc"
    if in_rpc:
        return "rpc"
    if in_cluster:
        return "cluster"
    return None


def _env_layer(environ: Mapping[str, str], plugins: Any) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Every ``RPCNET_*`` variable as settings, and the variable each key came from.

    A variable that is neither a setting under a table, nor a setting's name
    before 0.2 (which warns), nor one of :data:`ENV_NOT_CONFIGURATION`, is an
    error naming the nearest variable that would be read.
    """
    data: dict[str, Any] = {}
    where: dict[tuple[str, ...], str] = {}
    names = sorted(key for key in environ if key.startswith(ENV_PREFIX) and key not in ENV_NOT_CONFIGURATION)
    ordered = sorted(names, key=lambda key: key[len(ENV_PREFIX):].split("__")[0].lower() in SECTIONS)
    for key in ordered:  # old names first, so the table's name wins
        parts = key[len(ENV_PREFIX):].split("__")
        head = parts[0].lower()
        if head in SECTIONS and len(parts) > 1:
            path = [head, *env_path(parts[1:])]
        else:
            section = _deprecated_section(head, parts, plugins)
            if section is None:
                known = [_variable((s, f)) for s, cls in SECTIONS.items() for f in _fields(cls)]
                known += list(ENV_NOT_CONFIGURATION)
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(
                    f"environment variable {key} is not an rpcnet setting{hint}; settings are named "
                    f"{ENV_PREFIX}<TABLE>__<KEY> after the tables of the configuration file "
                    f"({', '.join(_variable((s,)) + '__...' for s in SECTIONS)}); unset it"
                )
            path = [section, *env_path(parts)]
            warnings.warn(
                f"environment variable {key} is deprecated (removed in 0.3): use {_variable(tuple(path))}",
                DeprecationWarning,
                stacklevel=4,
            )
        value = env_value(environ[key])
        target = data
        for index, name in enumerate(path[:-1]):
            inner = target.setdefault(name, {})
            if not isinstance(inner, dict):
                raise ConfigError(f"{key}: {_variable(tuple(path[: index + 1]))} is set both as a value and as a table")
            target = inner
        target[path[-1]] = value
        where[tuple(path)] = f"environment variable {key}"
    return data, where


@attrs.frozen(kw_only=True)
class NodeConfig:
    """A whole node's configuration; see the module docstring and docs/configuration.md."""

    node: ServiceConfig = attrs.field(factory=ServiceConfig)
    rpc: RpcConfig = attrs.field(factory=RpcConfig)
    cluster: ClusterConfig = attrs.field(factory=ClusterConfig)
    workers: WorkersConfig = attrs.field(factory=WorkersConfig)
    #: Where each key came from ("config file 'node.toml'", "environment variable ..."), for errors.
    sources: Any = attrs.field(factory=_Sources, eq=False, repr=False)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        overrides_from: str = "the command line",
        plugins: PluginHost | None = None,
    ) -> NodeConfig:
        """Defaults, then the file's tables, then ``RPCNET_*`` variables, then ``overrides``.

        ``overrides`` is a mapping of tables like the file's
        (``{"cluster": {"seeds": [...]}}``). Layers merge table by table, so
        ``RPCNET_CLUSTER__OPTIONS__SWIM__PRESET`` replaces only that option.
        Raises :class:`~rpcnet.errors.ConfigError` naming the file, variable
        or flag of a key nobody reads, with the nearest valid key.
        """
        environ = os.environ if environ is None else environ
        sources = _Sources()
        data: dict[str, Any] = {}
        if path is not None:
            file_data = _normalise(_read_toml(path))
            where = f"config file {str(path)!r}"
            sources.record(file_data, where)
            data = _merge(data, file_data)
        cached: list[PluginHost] = []

        def host() -> PluginHost:
            if plugins is not None:
                return plugins
            if not cached:
                cached.append(make_plugin_manager())
            return cached[0]

        env_data, env_where = _env_layer(environ, host)
        sources.record(env_data, env_where)
        data = _merge(data, env_data)
        if overrides:
            extra = _normalise(overrides)
            sources.record(extra, overrides_from)
            data = _merge(data, extra)
        _check_keys(data, sources)
        built: dict[str, Any] = {}
        for section, section_cls in SECTIONS.items():
            values = data.get(section, {})
            try:
                built[section] = section_cls.from_mapping(values)
            except ConfigError as exc:
                raise ConfigError(f"{sources.of((section,))}: [{section}] {exc}") from None
        config = cls(**built, sources=sources)
        return config.with_certs()

    def with_certs(self) -> NodeConfig:
        """``[node] certs`` applied: mutual TLS from that directory, unless ``[rpc.tls]`` is set."""
        if self.node.certs is None or self.rpc.tls is not None:
            return self
        directory = Path(self.node.certs)
        tls = TlsConfig(
            ca_file=str(directory / "ca.pem"),
            cert_file=str(directory / "server.pem"),
            key_file=str(directory / "server.key"),
            require_client_cert=True,
        )
        return attrs.evolve(self, rpc=self.rpc.evolve(tls=tls))

    def check(self, plugins: PluginHost) -> None:
        """Ask ``plugins`` whether every chosen strategy exists and every options table is right.

        An options table must name an installed strategy of a kind its table
        chooses (``[rpc.options.phi-accrual]`` is refused: the failure
        detector is chosen, and reads its options, in ``[cluster]``), and
        its option names and values must satisfy the strategy's ``Options``.
        """
        for (section, field), kind in _CHOSEN_BY.items():
            value = getattr(getattr(self, section), field)
            for name in (value if isinstance(value, tuple) else (value,)):
                if kind == "failure-detector" and name == "none":
                    continue  # the membership runs without a failure detector
                try:
                    plugins.strategy(kind, name)
                except UnknownStrategyError as exc:
                    raise ConfigError(f"{self.sources.of((section, field))}: {section}.{field}: {exc}") from None
        installed: dict[str, list[str]] = {}
        for kind in KINDS:
            for name in plugins.registry.names(kind):
                installed.setdefault(name, []).append(kind)
        for section in ("rpc", "cluster", "workers"):
            for name, values in getattr(self, section).options.items():
                where = self.sources.of((section, "options", name))
                kinds = installed.get(name)
                if not kinds:
                    close = difflib.get_close_matches(name, sorted(installed), n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    broken = "".join(f" Plugin {b.name!r} failed to load: {b.error}." for b in plugins.broken)
                    raise ConfigError(
                        f"{where}: [{section}.options.{name}] sets options for {name!r}{hint}, which no installed "
                        f"strategy is called; installed: {', '.join(sorted(installed))}.{broken}"
                    )
                mine = [kind for kind in kinds if KIND_SECTIONS[kind] == section]
                if not mine:
                    kind = kinds[0]
                    home = KIND_SECTIONS[kind]
                    raise ConfigError(
                        f"{where}: [{section}.options.{name}] is never read: {name!r} is a {kind} strategy, "
                        f"chosen in [{home}]; move the table to [{home}.options.{name}] "
                        f"({_variable((home, 'options', name))}__<OPTION> in the environment)"
                    )
                for kind in mine:
                    cls = plugins.strategy(kind, name)
                    try:
                        build_options(kind, name, cls, values)
                    except ConfigError as exc:
                        raise ConfigError(f"{where}: [{section}.options.{name}] {exc}") from None


def _read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    # ConfigBase itself has no table: the whole file, which the node's loader reads table by table.
    return ConfigBase.toml_mapping(path)


def load_node_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    plugins: PluginHost | None = None,
) -> NodeConfig:
    """:meth:`NodeConfig.load`, then :meth:`NodeConfig.check` against ``plugins``
    (by default a host built with the configuration's ``disabled_plugins``)."""
    config = NodeConfig.load(path, environ=environ, overrides=overrides, plugins=plugins)
    host = plugins if plugins is not None else make_plugin_manager(disabled=config.rpc.disabled_plugins)
    config.check(host)
    return config
