"""Frozen configuration values.

Strategies are chosen by name (``transport="quic"``) and get their own options
from ``options={"<strategy-name>": {...}}``, validated by the strategy's
``Options`` class when it is built. Every config loads from a mapping, a TOML
file (:meth:`ConfigBase.from_toml`) and ``RPCNET_*`` environment variables
(:meth:`ConfigBase.from_env`); :func:`load_config` layers the three.

Environment variables follow the file's tables: ``RPCNET_<TABLE>__<FIELD>``
sets a field (``RPCNET_RPC__TRANSPORT=memory``); each further ``__`` descends
into a table (``RPCNET_RPC__TLS__CA_FILE=ca.pem``,
``RPCNET_CLUSTER__OPTIONS__PHI_ACCRUAL__THRESHOLD=10``; underscores in a
strategy name become dashes). Values are parsed as JSON when they parse
(``10``, ``true``, ``[1, 2]``) and taken as strings otherwise. The names
without the table (``RPCNET_TRANSPORT``) still work until 0.3, with a
``DeprecationWarning``. A few variables are not configuration and keep their
names (:data:`ENV_NOT_CONFIGURATION`).
"""

from __future__ import annotations

import difflib
import os
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

import attrs
import orjson

from .errors import ConfigError

__all__ = [
    "at_least",
    "to_bool",
    "optional",
    "to_names",
    "to_options",
    "to_tls",
    "ConfigBase",
    "TlsConfig",
    "RpcConfig",
    "load_config",
    "positive",
    "non_negative",
    "FILE_TABLES",
    "ENV_PREFIX",
    "ENV_NOT_CONFIGURATION",
    "env_value",
]

C = TypeVar("C", bound="ConfigBase")

ENV_PREFIX = "RPCNET_"

#: The tables of a node's configuration file (see ``rpcnet.cluster.settings``).
#: A config class whose table is absent from a file that has any of these
#: reads nothing from it, rather than mistaking the other tables for settings.
FILE_TABLES = ("node", "rpc", "cluster", "workers")

#: ``RPCNET_*`` variables that are not configuration: they keep their names,
#: and a node's strict loader does not mistake them for misspelled settings.
ENV_NOT_CONFIGURATION: Mapping[str, str] = MappingProxyType({
    "RPCNET_DISABLED_PLUGINS": "plugins never loaded, by entry-point or distribution name (comma-separated); "
    "read by every plugin host, also `disabled_plugins` of [rpc]",
    "RPCNET_DISABLE_PLUGIN_AUTOLOAD": "`1`: load only the builtins and the plugins bundled with rpcnet",
    "RPCNET_GOSSIP_KEY": "base64 gossip key(s) of `rpcnet node`, comma-separated, primary first "
    "(prefer `--key-file` or `[cluster] keyring_file`)",
    "RPCNET_CERTS": "certificate directory (`rpcnet certs DIR`) of `rpcnet node --certs` and the demo programs",
})


def positive(instance: Any, attribute: attrs.Attribute, value: float | int | None) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"{attribute.name} must be > 0, got {value!r}")


def at_least(minimum: int) -> Any:
    """An attrs validator: the value must be >= ``minimum``."""

    def check(instance: Any, attribute: attrs.Attribute, value: int) -> None:
        if value < minimum:
            raise ConfigError(f"{attribute.name} must be >= {minimum}, got {value!r}")

    return check


def non_negative(instance: Any, attribute: attrs.Attribute, value: float | int | None) -> None:
    if value is not None and value < 0:
        raise ConfigError(f"{attribute.name} must be >= 0, got {value!r}")


def to_bool(value: Any) -> bool:
    """A boolean from a bool, number or string (1/true/yes/on, 0/false/no/off/empty)."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"expected a boolean, got {value!r}")
    return bool(value)


def optional(converter: Any) -> Any:
    def convert(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null"}):
            return None
        return converter(value)

    return convert


def to_names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(n.strip() for n in value.split(",") if n.strip())
    return tuple(str(v) for v in value)


def to_options(value: Any) -> Mapping[str, Mapping[str, Any]]:
    """Per-strategy option tables, read-only all the way down (a frozen config stays frozen)."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"options must be a table of strategy name -> table, got {type(value).__name__}")
    result: dict[str, Mapping[str, Any]] = {}
    for name, opts in value.items():
        if not isinstance(opts, Mapping):
            raise ConfigError(f"options[{name!r}] must be a table, got {type(opts).__name__}")
        result[str(name)] = MappingProxyType(dict(opts))
    return MappingProxyType(result)


class ConfigBase:
    """Loading helpers shared by every config class."""

    #: The TOML table this config reads when the file has several.
    toml_table: ClassVar[str] = ""

    @classmethod
    def from_mapping(cls: type[C], data: Mapping[str, Any], *, where: str = "") -> C:
        fields = {f.name: f for f in attrs.fields(cls)}  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in fields:
                close = difflib.get_close_matches(name, list(fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"unknown setting {key!r}{' in ' + where if where else ''} for {cls.__name__}{hint}; "
                    f"valid settings: {', '.join(sorted(fields))}"
                )
            kwargs[name] = value
        try:
            return cls(**kwargs)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid {cls.__name__}{' in ' + where if where else ''}: {exc}") from exc

    @classmethod
    def from_toml(cls: type[C], path: str | os.PathLike[str]) -> C:
        """Read a TOML file: the ``[<toml_table>]`` table if present, else the root."""
        return cls.from_mapping(cls.toml_mapping(path), where=str(path))

    @classmethod
    def toml_mapping(cls, path: str | os.PathLike[str]) -> dict[str, Any]:
        """The settings table of a TOML file, unvalidated (see :meth:`from_toml`)."""
        path = Path(path)
        try:
            with path.open("rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"config file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
        if cls.toml_table:
            if isinstance(data.get(cls.toml_table), dict):
                return data[cls.toml_table]
            if any(isinstance(data.get(table), dict) for table in FILE_TABLES):
                return {}  # a node's file without this class's table: nothing for it
        return data

    @classmethod
    def env_mapping(cls, environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX) -> dict[str, Any]:
        """The settings found in ``RPCNET_*`` variables, as a nested mapping.

        ``RPCNET_<TABLE>__<FIELD>`` (``RPCNET_RPC__TRANSPORT``) is the name; a
        field of this class under its table that does not exist is an error.
        ``RPCNET_<FIELD>`` (the name before 0.2) still works, with a
        ``DeprecationWarning``; the table's name wins when both are set.
        """
        environ = os.environ if environ is None else environ
        fields = {f.name for f in attrs.fields(cls)}  # type: ignore[arg-type]
        table = cls.toml_table.upper()
        old: list[tuple[str, list[str], str]] = []
        new: list[tuple[str, list[str], str]] = []
        for key, raw in sorted(environ.items()):
            if not key.startswith(prefix):
                continue
            parts = key[len(prefix):].split("__")
            if table and parts[0] == table and len(parts) > 1:
                name = parts[1].lower()
                if name not in fields:
                    close = difflib.get_close_matches(name, sorted(fields), n=1)
                    hint = f" (did you mean {prefix}{table}__{close[0].upper()}?)" if close else ""
                    raise ConfigError(
                        f"environment variable {key}: [{cls.toml_table}] has no setting {name!r}{hint}; "
                        f"valid settings: {', '.join(sorted(fields))}"
                    )
                new.append((key, parts[1:], raw))
            elif parts[0].lower() in fields:
                old.append((key, parts, raw))
        result: dict[str, Any] = {}
        for key, parts, raw in old:
            if table and key not in ENV_NOT_CONFIGURATION:
                warnings.warn(
                    f"environment variable {key} is deprecated (removed in 0.3): "
                    f"use {prefix}{table}__{key[len(prefix):]}",
                    DeprecationWarning,
                    stacklevel=3,
                )
            _put_env(result, parts, raw, key, prefix)
        for key, parts, raw in new:
            _put_env(result, parts, raw, key, prefix)
        return result

    @classmethod
    def from_env(cls: type[C], environ: Mapping[str, str] | None = None) -> C:
        return cls.from_mapping(cls.env_mapping(environ), where="environment")

    def evolve(self: C, **changes: Any) -> C:
        return attrs.evolve(self, **changes)  # type: ignore[misc]


def env_value(raw: str) -> Any:
    """An environment variable's value: JSON when it parses (``10``, ``true``, ``[1, 2]``), else the text."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def env_path(parts: list[str]) -> list[str]:
    """Keys of a variable's ``__``-separated parts: lower case, and a strategy name under
    ``options`` with dashes (``OPTIONS__PHI_ACCRUAL`` -> ``options``, ``phi-accrual``)."""
    keys = [part.lower() for part in parts]
    for index in range(1, len(keys)):
        if keys[index - 1] == "options":
            keys[index] = keys[index].replace("_", "-")
            break
    return keys


def _put_env(result: dict[str, Any], parts: list[str], raw: str, key: str, prefix: str) -> None:
    keys = env_path(parts)
    value = env_value(raw)
    head = key[: len(key) - len("__".join(parts))]  # the prefix, and the table if the name has one
    target = result
    for index, name in enumerate(keys[:-1]):
        inner = target.setdefault(name, {})
        if not isinstance(inner, dict):
            raise ConfigError(f"{key}: {head}{'__'.join(parts[: index + 1])} is set both as a value and as a table")
        target = inner
    last = keys[-1]
    if isinstance(target.get(last), dict) and isinstance(value, Mapping):
        target[last] = _merge(target[last], value)
    elif isinstance(target.get(last), dict):
        raise ConfigError(f"{key}: {key} is set both as a value and as a table")
    else:
        target[last] = value


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def load_config(cls: type[C], path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None, **overrides: Any) -> C:
    """Defaults, then the TOML file, then ``RPCNET_*`` variables, then ``overrides``.

    Layers merge table by table: ``RPCNET_TLS__CA_FILE`` replaces only
    ``ca_file`` of a ``[rpc.tls]`` table read from the file, and
    ``RPCNET_OPTIONS__QUIC__IDLE_TIMEOUT`` only that one option.
    """
    data: dict[str, Any] = {}
    if path is not None:
        cls.from_toml(path)  # report a bad file as the file's error, before layering
        data = _normalise_keys(cls.toml_mapping(path))
    data = _merge(data, cls.env_mapping(environ))
    data = _merge(data, _plain(overrides))
    return cls.from_mapping(data)


def _normalise_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    # TOML may spell settings kebab-case; env and keyword overrides use snake_case.
    return {key.replace("-", "_"): value for key, value in data.items()}


def _plain(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (attrs.asdict(v) if attrs.has(type(v)) else v) for k, v in data.items()}


def _to_str(value: Any) -> str:
    # RPCNET_* values are parsed as JSON first, so "RPCNET_TLS__SERVER_NAME=123"
    # arrives as an int; a string setting takes it back as text.
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"expected a string, got {type(value).__name__} {value!r}")


def _path(value: Any) -> str:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return _to_str(value)


@attrs.frozen(kw_only=True)
class TlsConfig(ConfigBase):
    """TLS material. Clients always verify the server against ``ca_file``.

    A server with ``require_client_cert`` accepts only clients whose
    certificate chains to ``ca_file`` (mutual TLS); a client presents
    ``cert_file``/``key_file`` when given.
    """

    #: PEM file of the CA(s) that peers' certificates must chain to.
    ca_file: str | None = attrs.field(default=None, converter=optional(_path))
    #: PEM certificate (chain) this side presents.
    cert_file: str | None = attrs.field(default=None, converter=optional(_path))
    #: PEM private key of cert_file.
    key_file: str | None = attrs.field(default=None, converter=optional(_path))
    #: Name a client expects in the server's certificate (default: the host it dials).
    server_name: str | None = attrs.field(default=None, converter=optional(_to_str))
    #: A server accepts only clients whose certificate chains to ca_file (mutual TLS).
    require_client_cert: bool = attrs.field(default=False, converter=to_bool)


def to_tls(value: Any) -> TlsConfig | None:
    if value is None or isinstance(value, TlsConfig):
        return value
    if isinstance(value, Mapping):
        return TlsConfig.from_mapping(value, where="tls")
    raise ConfigError(f"tls must be a TlsConfig or a table, got {type(value).__name__}")


@attrs.frozen(kw_only=True)
class RpcConfig(ConfigBase):
    """Settings of an RPC server or client."""

    toml_table: ClassVar[str] = "rpc"

    #: Transport strategy (quic, memory, or a plugin's); its options in [rpc.options.<name>].
    transport: str = attrs.field(default="quic", converter=_to_str)
    #: Serializer strategy (msgpack, json, or a plugin's); its options in [rpc.options.<name>].
    serializer: str = attrs.field(default="msgpack", converter=_to_str)
    #: Per-strategy options of the transport and serializer, e.g. [rpc.options.quic] idle_timeout = 30.
    options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, converter=to_options)
    #: TLS material ([rpc.tls]); the quic transport needs it.
    tls: TlsConfig | None = attrs.field(default=None, converter=to_tls)
    #: Largest frame payload accepted or sent, checked before allocating.
    max_message_size: int = attrs.field(default=4 * 1024 * 1024, converter=int, validator=positive)
    #: Calls a client may have open at once on one connection: the stream
    #: credit the server's transport grants. Calls beyond it wait on the
    #: client for a stream (bounded by their deadline); they are not refused.
    max_concurrent_calls_per_connection: int = attrs.field(default=100, converter=int, validator=positive)
    #: Handlers running at once in the whole server; calls beyond it are
    #: refused with RESOURCE_EXHAUSTED (true overload: safe to retry elsewhere).
    max_concurrent_calls: int = attrs.field(default=10_000, converter=int, validator=positive)
    #: Messages buffered per stream direction before backpressure applies.
    stream_buffer: int = attrs.field(default=16, converter=int, validator=positive)
    #: Seconds in-flight calls get to finish on graceful shutdown.
    shutdown_grace: float = attrs.field(default=10.0, converter=float, validator=non_negative)
    #: Deadline applied to calls made without one (None: no deadline).
    default_timeout: float | None = attrs.field(default=None, converter=optional(float), validator=positive)
    #: Plugin names (entry-point or distribution) never loaded.
    disabled_plugins: tuple[str, ...] = attrs.field(default=(), converter=to_names)
    #: Servers answer rpcnet.reflection/Describe (services, methods, JSON Schemas); False turns it off.
    reflection: bool = attrs.field(default=True, converter=to_bool)
