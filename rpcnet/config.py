"""Frozen configuration values.

Strategies are chosen by name (``transport="quic"``) and get their own options
from ``options={"<strategy-name>": {...}}``, validated by the strategy's
``Options`` class when it is built. Every config loads from a mapping, a TOML
file (:meth:`ConfigBase.from_toml`) and ``RPCNET_*`` environment variables
(:meth:`ConfigBase.from_env`); :func:`load_config` layers the three.

Environment variables: ``RPCNET_<FIELD>`` sets a field (``RPCNET_TRANSPORT=memory``);
``__`` descends into a table (``RPCNET_TLS__CA_FILE=ca.pem``,
``RPCNET_OPTIONS__PHI_ACCRUAL__THRESHOLD=10``; underscores in a strategy name
become dashes). Values are parsed as JSON when they parse (``10``, ``true``,
``[1, 2]``) and taken as strings otherwise.
"""

from __future__ import annotations

import difflib
import os
import tomllib
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
]

C = TypeVar("C", bound="ConfigBase")

ENV_PREFIX = "RPCNET_"


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
        if cls.toml_table and isinstance(data.get(cls.toml_table), dict):
            data = data[cls.toml_table]
        return data

    @classmethod
    def env_mapping(cls, environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX) -> dict[str, Any]:
        """The settings found in ``RPCNET_*`` variables, as a nested mapping."""
        environ = os.environ if environ is None else environ
        fields = {f.name for f in attrs.fields(cls)}  # type: ignore[arg-type]
        result: dict[str, Any] = {}
        for key, raw in environ.items():
            if not key.startswith(prefix):
                continue
            parts = key[len(prefix):].split("__")
            top = parts[0].lower()
            if top not in fields:
                continue  # belongs to another config class or to the plugin manager
            value = _parse_env_value(raw)
            if len(parts) == 1:
                result[top] = value
                continue
            target = result.setdefault(top, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{key}: {prefix}{top.upper()} is set both as a value and as a table")
            for index, part in enumerate(parts[1:-1], start=1):
                name = part.lower().replace("_", "-") if top == "options" and index == 1 else part.lower()
                target = target.setdefault(name, {})
            last = parts[-1].lower()
            if top == "options" and len(parts) == 2:
                last = last.replace("_", "-")
            target[last] = value
        return result

    @classmethod
    def from_env(cls: type[C], environ: Mapping[str, str] | None = None) -> C:
        return cls.from_mapping(cls.env_mapping(environ), where="environment")

    def evolve(self: C, **changes: Any) -> C:
        return attrs.evolve(self, **changes)  # type: ignore[misc]


def _parse_env_value(raw: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


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

    ca_file: str | None = attrs.field(default=None, converter=optional(_path))
    cert_file: str | None = attrs.field(default=None, converter=optional(_path))
    key_file: str | None = attrs.field(default=None, converter=optional(_path))
    server_name: str | None = attrs.field(default=None, converter=optional(_to_str))
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

    transport: str = attrs.field(default="quic", converter=_to_str)
    serializer: str = attrs.field(default="msgpack", converter=_to_str)
    options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, converter=to_options)
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
