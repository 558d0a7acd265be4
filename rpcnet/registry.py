"""Strategies by name: one table per kind, filled by the registration hooks.

A strategy is a class with ``name: ClassVar[str]`` and, optionally, an
``Options`` attrs class describing its per-strategy options. Lookups by an
unknown name raise :class:`UnknownStrategyError`, a ``KeyError`` whose message
lists what is available and who provides it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import attrs

from .errors import ConfigError, PluginError

__all__ = [
    "KINDS",
    "StrategyEntry",
    "StrategyRegistry",
    "UnknownStrategyError",
    "DuplicateStrategyError",
    "build_options",
]

#: kind -> registration hook name. The order is the order ``rpcnet plugins`` prints.
KINDS: dict[str, str] = {
    "transport": "rpcnet_register_transports",
    "serializer": "rpcnet_register_serializers",
    "membership": "rpcnet_register_membership",
    "failure-detector": "rpcnet_register_failure_detectors",
    "load-balancer": "rpcnet_register_load_balancers",
    "health-check": "rpcnet_register_health_checks",
}


@attrs.frozen(kw_only=True)
class StrategyEntry:
    kind: str
    name: str
    cls: type
    plugin: str
    distribution: str | None = None


@attrs.frozen(kw_only=True)
class BrokenPlugin:
    """A plugin that failed to import or to register; kept for error messages."""

    name: str
    distribution: str | None
    version: str | None
    error: str


class UnknownStrategyError(KeyError):
    """No strategy of this kind has this name. The message lists the choices."""

    def __init__(
        self,
        kind: str,
        name: str,
        available: Mapping[str, StrategyEntry],
        broken: tuple[BrokenPlugin, ...] = (),
    ) -> None:
        self.kind = kind
        self.name = name
        self.available = sorted(available)
        self.broken = broken
        lines = [f"unknown {kind} strategy {name!r}."]
        close = difflib.get_close_matches(name, self.available, n=1)
        if close:
            lines.append(f"Did you mean {close[0]!r}?")
        if available:
            choices = ", ".join(
                f"{n!r} (from {_provider(e)})" for n, e in sorted(available.items())
            )
            lines.append(f"Available {kind} strategies: {choices}.")
        else:
            lines.append(f"No {kind} strategy is installed.")
        for plugin in broken:
            error = plugin.error.rstrip()
            lines.append(
                f"Plugin {plugin.name!r}"
                + (f" (distribution {plugin.distribution} {plugin.version})" if plugin.distribution else "")
                + f" failed to load and may provide it: {error}"
                + ("" if error.endswith((".", "!", "?")) else ".")  # each its own sentence
            )
        super().__init__(" ".join(lines))

    def __str__(self) -> str:
        # KeyError would print the repr of the message; print the message.
        return str(self.args[0])


class DuplicateStrategyError(PluginError):
    """Two plugins registered the same strategy name for one kind."""


def _provider(entry: StrategyEntry) -> str:
    if entry.distribution and entry.distribution != entry.plugin:
        return f"plugin {entry.plugin!r} in {entry.distribution}"
    return f"plugin {entry.plugin!r}"


class StrategyRegistry:
    """Name -> strategy class, per kind."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, StrategyEntry]] = {kind: {} for kind in KINDS}
        self.broken: tuple[BrokenPlugin, ...] = ()

    def add(self, kind: str, name: str, cls: type, *, plugin: str, distribution: str | None = None) -> None:
        if kind not in self._tables:
            raise PluginError(f"unknown strategy kind {kind!r}; kinds are {', '.join(KINDS)}")
        if not isinstance(name, str) or not name or name != name.strip().lower() or " " in name or "_" in name:
            raise PluginError(
                f"plugin {plugin!r} registered {kind} strategy name {name!r}; "
                "names must be non-empty kebab-case strings such as 'least-connections'"
            )
        if not isinstance(cls, type):
            raise PluginError(f"plugin {plugin!r} registered {kind} {name!r} with {cls!r}, which is not a class")
        table = self._tables[kind]
        entry = StrategyEntry(kind=kind, name=name, cls=cls, plugin=plugin, distribution=distribution)
        if name in table:
            first = table[name]
            raise DuplicateStrategyError(
                f"{kind} strategy {name!r} is registered twice: by {_provider(first)} "
                f"({first.cls.__module__}.{first.cls.__qualname__}) and by {_provider(entry)} "
                f"({cls.__module__}.{cls.__qualname__}). Block one of them with "
                f"RPCNET_DISABLED_PLUGINS or the disabled_plugins setting."
            )
        table[name] = entry

    def remove_plugin(self, plugin: str) -> None:
        """Forget every strategy ``plugin`` registered (it turned out broken)."""
        for table in self._tables.values():
            for name in [n for n, e in table.items() if e.plugin == plugin]:
                del table[name]

    def get(self, kind: str, name: str) -> type:
        return self.entry(kind, name).cls

    def entry(self, kind: str, name: str) -> StrategyEntry:
        table = self._table(kind)
        try:
            return table[name]
        except KeyError:
            raise UnknownStrategyError(kind, name, table, self.broken) from None

    def names(self, kind: str) -> list[str]:
        return sorted(self._table(kind))

    def entries(self, kind: str | None = None) -> list[StrategyEntry]:
        kinds = [kind] if kind else list(KINDS)
        return [e for k in kinds for _, e in sorted(self._table(k).items())]

    def check_option_names(self, options: Mapping[str, Any]) -> None:
        """Refuse options addressed to a strategy no installed plugin provides.

        ``options`` maps strategy names to their option tables, as in
        ``RpcConfig.options``. Options for a strategy that is installed but
        not selected are fine; a key matching no strategy of any kind is a
        typo (``"phi-acrual"``) that would otherwise be silently ignored.
        """
        known = {name for table in self._tables.values() for name in table}
        unknown = sorted(str(key) for key in options if key not in known)
        if not unknown:
            return
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        broken = "".join(f" Plugin {b.name!r} failed to load: {b.error}." for b in self.broken)
        raise ConfigError(
            f"options are set for {', '.join(hints)}, which no installed strategy is called. "
            f"Installed strategies: {', '.join(sorted(known)) or '(none)'}.{broken}"
        )

    def create(self, kind: str, name: str, options: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """Instantiate strategy ``name`` with its validated options.

        The instance is built as ``cls(options=<Options>, **kwargs)`` when the
        class declares ``Options``, else ``cls(**kwargs)``.
        """
        cls = self.get(kind, name)
        opts = build_options(kind, name, cls, options or {})
        if opts is None:
            return cls(**kwargs)
        return cls(options=opts, **kwargs)

    def _table(self, kind: str) -> dict[str, StrategyEntry]:
        try:
            return self._tables[kind]
        except KeyError:
            raise KeyError(f"unknown strategy kind {kind!r}; kinds are {', '.join(KINDS)}") from None


def build_options(kind: str, name: str, cls: type, values: Mapping[str, Any]) -> Any:
    """Validate ``values`` against ``cls.Options`` and build it.

    A misspelled option name is a :class:`ConfigError` that names the valid
    ones; values are checked by the Options class's own validators.
    """
    options_cls = getattr(cls, "Options", None)
    if options_cls is None:
        if values:
            raise ConfigError(f"{kind} strategy {name!r} takes no options, got {sorted(values)}")
        return None
    if isinstance(values, options_cls):
        return values
    if not isinstance(values, Mapping):
        raise ConfigError(f"options for {kind} {name!r} must be a table/dict, got {type(values).__name__}")
    fields = {f.name: f for f in attrs.fields(options_cls)}
    aliases = {f.alias or f.name: f.name for f in fields.values()}
    unknown = [key for key in values if key not in aliases and key.replace("-", "_") not in aliases]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(aliases), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(
            f"unknown option {', '.join(hints)} for {kind} strategy {name!r}; "
            f"valid options: {', '.join(sorted(aliases))}"
        )
    kwargs = {}
    for key, value in values.items():
        kwargs[key if key in aliases else key.replace("-", "_")] = value
    try:
        return options_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid options for {kind} strategy {name!r}: {exc}") from exc
