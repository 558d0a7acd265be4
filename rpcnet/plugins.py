"""Building a plugin manager: builtins, entry points, blocking, checks.

There is no module-global manager. :func:`make_plugin_manager` builds a
:class:`PluginHost` per server, client or node (or share one explicitly), and
tests pass their plugins in by hand. Hooks are called through
:class:`PluginHost`'s methods, never through ``pm.hook`` elsewhere.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import os
import re
import traceback
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .errors import PluginError
from .registry import KINDS, BrokenPlugin, StrategyRegistry

__all__ = ["make_plugin_manager", "PluginHost", "PluginInfo", "ENTRY_POINT_GROUP", "hook_names"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "rpcnet"
CALL_HOOK = "rpcnet_call"
REGISTRATION_HOOKS = frozenset(KINDS.values())
DISABLED_ENV = "RPCNET_DISABLED_PLUGINS"
NO_AUTOLOAD_ENV = "RPCNET_DISABLE_PLUGIN_AUTOLOAD"
#: The distribution whose entry points are the bundled plugins; these load even
#: when autoloading of third-party plugins is disabled.
BUNDLED_DISTRIBUTION = "rpcnet"
#: (plugin name, module) of the strategies inside the ``rpcnet`` package. They
#: are loaded by module name, as entry points are, and registered first.
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("builtin-serializers", "rpcnet.builtins.serializers"),
    ("builtin-memory", "rpcnet.builtins.memory"),
    ("builtin-health", "rpcnet.builtins.event_loop_lag"),
)


def _frozen_strategies(value: Mapping[str, Iterable[str]]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({kind: tuple(names) for kind, names in value.items()})


@attrs.frozen(kw_only=True)
class PluginInfo:
    """What ``rpcnet plugins`` shows for one loaded plugin."""

    name: str
    distribution: str | None
    version: str | None
    #: kind -> strategy names, read-only.
    strategies: Mapping[str, tuple[str, ...]] = attrs.field(converter=_frozen_strategies)
    hooks: tuple[str, ...] = attrs.field(converter=tuple)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _split_names(value: str | None) -> list[str]:
    return [n.strip() for n in (value or "").split(",") if n.strip()]


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


class PluginHost:
    """Typed facade over one ``pluggy.PluginManager`` and its strategy registry."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.registry = StrategyRegistry()
        self.broken: list[BrokenPlugin] = []
        self._dists: dict[str, tuple[str | None, str | None]] = {}
        self._call_wrappers: list[Callable[..., Generator[None, None, None]]] = []
        self._blocked_dists: set[str] = set()

    # -- construction -------------------------------------------------

    def block(self, name: str) -> None:
        """Never load the plugin or distribution called ``name``."""
        self.pm.set_blocked(name)
        self._blocked_dists.add(_normalise_dist(name))

    def _is_blocked(self, name: str, dist: str | None) -> bool:
        return self.pm.is_blocked(name) or (
            dist is not None and _normalise_dist(dist) in self._blocked_dists
        )

    def _register(self, plugin: object, name: str, dist: str | None = None, version: str | None = None) -> None:
        if self._is_blocked(name, dist):
            return
        if self.pm.get_plugin(name) is not None:
            raise PluginError(
                f"a plugin named {name!r} is already registered; give the second one another name"
            )
        if self.pm.is_registered(plugin):
            raise PluginError(
                f"plugin object {plugin!r} is already registered as {self.pm.get_name(plugin)!r}; "
                f"it cannot be registered again as {name!r}"
            )
        self.pm.register(plugin, name=name)
        self._dists[name] = (dist, version)

    def _load_entry_points(self, *, third_party: bool, explicit: set[str]) -> None:
        seen: dict[str, str | None] = {}  # entry-point name -> distribution
        for ep in _entry_points():
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if ep.name in seen:
                if seen[ep.name] == dist:
                    continue  # the same distribution found twice on sys.path
                raise PluginError(
                    f"two distributions provide an rpcnet plugin named {ep.name!r}: "
                    f"{seen[ep.name] or '(unknown distribution)'} and {dist or '(unknown distribution)'}. "
                    "Uninstall one, or block one by its distribution name with "
                    "RPCNET_DISABLED_PLUGINS or the disabled_plugins setting."
                )
            seen[ep.name] = dist
            is_bundled = dist is not None and dist.lower() == BUNDLED_DISTRIBUTION
            if not is_bundled and not third_party:
                continue
            if self._is_blocked(ep.name, dist):
                continue
            if ep.name in explicit:
                continue  # the caller registered a plugin under this name by hand
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the process down
                self._mark_broken(ep.name, dist, version, exc)
                continue
            if self.pm.is_registered(plugin):
                continue  # the caller passed this very object explicitly
            self._register(plugin, ep.name, dist, version)

    def _mark_broken(self, name: str, dist: str | None, version: str | None, exc: BaseException) -> None:
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        log.warning("rpcnet plugin %r%s failed to load: %s", name, f" ({dist})" if dist else "", error)
        self.broken.append(BrokenPlugin(name=name, distribution=dist, version=version, error=error))

    def _check_impl_styles(self) -> None:
        """``rpcnet_call`` takes wrappers only; every other hook takes plain impls."""
        for caller in self._callers():
            for impl in caller.get_hookimpls():
                is_wrapper = impl.wrapper or impl.hookwrapper
                if caller.name == CALL_HOOK:
                    if not impl.wrapper or not inspect.isgeneratorfunction(impl.function):
                        raise PluginError(
                            f"plugin {impl.plugin_name!r} implements {CALL_HOOK} without "
                            "@hookimpl(wrapper=True) as a generator; write it as a generator "
                            "function that yields exactly once"
                        )
                elif is_wrapper:
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} implements {caller.name} as a wrapper; "
                        f"only {CALL_HOOK} takes wrappers, so drop wrapper=True/hookwrapper=True"
                    )
                elif caller.name in REGISTRATION_HOOKS and (impl.tryfirst or impl.trylast):
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} marks {caller.name} tryfirst/trylast; registration "
                        "hooks run in registration order and a duplicate strategy name is an error, "
                        "so the marker would mean nothing: drop it"
                    )

    def _callers(self) -> list[pluggy.HookCaller]:
        return [getattr(self.pm.hook, name) for name in hook_names()]

    def _impls_in_registration_order(self, hook_name: str) -> list[pluggy.HookImpl]:
        """Impls of a hook ordered as their plugins were registered: builtins,
        explicit plugins, then entry points in the order importlib yields them.
        (pluggy's own call order is last-registered-first.)"""
        impls = {impl.plugin_name: impl for impl in getattr(self.pm.hook, hook_name).get_hookimpls()}
        return [impls[name] for name, _ in self.pm.list_name_plugin() if name in impls]

    def _collect_strategies(self) -> None:
        for kind, hook_name in KINDS.items():
            for impl in self._impls_in_registration_order(hook_name):
                name = impl.plugin_name
                if self.pm.get_plugin(name) is None:
                    continue  # dropped as broken while registering an earlier kind
                dist, version = self._dists.get(name, (None, None))

                def register(strategy_name: str, cls: type, _kind: str = kind, _plugin: str = name, _dist: str | None = dist) -> None:
                    self.registry.add(_kind, strategy_name, cls, plugin=_plugin, distribution=_dist)

                try:
                    _call_impl(impl, register=register)
                except PluginError:
                    raise
                except Exception as exc:  # isolate it like an import failure
                    self._mark_broken(name, dist, version, exc)
                    self.registry.remove_plugin(name)
                    self.pm.unregister(name=name)
        self.registry.broken = tuple(self.broken)

    def _collect_call_wrappers(self) -> None:
        # pluggy calls the last impl in get_hookimpls() outermost.
        for impl in reversed(self.pm.hook.rpcnet_call.get_hookimpls()):
            if "call" in impl.argnames:
                self._call_wrappers.append(impl.function)
            else:
                self._call_wrappers.append(_ignore_call(impl.function))

    # -- queries ------------------------------------------------------

    def create(self, kind: str, name: str, options: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """Instantiate the ``kind`` strategy called ``name`` with its options."""
        return self.registry.create(kind, name, options, **kwargs)

    def strategy(self, kind: str, name: str) -> type:
        """The class registered as ``name`` for ``kind``; raises :class:`UnknownStrategyError`."""
        return self.registry.get(kind, name)

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigError` for option tables naming no installed strategy."""
        self.registry.check_option_names(options)

    def plugins(self) -> list[PluginInfo]:
        infos = []
        by_plugin: dict[str, dict[str, list[str]]] = {}
        for entry in self.registry.entries():
            by_plugin.setdefault(entry.plugin, {}).setdefault(entry.kind, []).append(entry.name)
        for name, plugin in self.pm.list_name_plugin():
            if name is None or plugin is None:
                continue
            dist, version = self._dists.get(name, (None, None))
            callers = self.pm.get_hookcallers(plugin) or []
            infos.append(
                PluginInfo(
                    name=name,
                    distribution=dist,
                    version=version,
                    strategies=by_plugin.get(name, {}),
                    hooks=sorted(c.name for c in callers),
                )
            )
        return sorted(infos, key=lambda i: i.name)

    # -- notifications --------------------------------------------------

    def notify_cluster_event(self, event: Any) -> None:
        """Tell every plugin about a cluster event.

        Each plugin is called on its own, in pluggy's call order, so one that
        raises is logged and the others still see the event.
        """
        for impl in reversed(self.pm.hook.rpcnet_cluster_event.get_hookimpls()):
            try:
                _call_impl(impl, event=event)
            except Exception:
                log.exception("plugin %r failed in rpcnet_cluster_event(%r)", impl.plugin_name, event)

    @property
    def call_wrappers(self) -> Sequence[Callable[..., Generator[None, None, None]]]:
        """The ``rpcnet_call`` wrappers, outermost first; empty on the fast path."""
        return self._call_wrappers


def make_plugin_manager(
    *,
    plugins: Sequence[object | tuple[str, object]] = (),
    disabled: Iterable[str] = (),
    autoload: bool | None = None,
    entry_points: bool = True,
) -> PluginHost:
    """Build a plugin host.

    - Registers the kernel builtins (serializers, memory transport, ...).
    - Loads every plugin in the ``rpcnet`` entry-point group. With
      ``autoload=False`` or ``RPCNET_DISABLE_PLUGIN_AUTOLOAD=1`` only the
      bundled ones (distribution ``rpcnet``) load; ``entry_points=False``
      loads none.
    - Skips plugins named in ``disabled`` or ``RPCNET_DISABLED_PLUGINS``
      (comma-separated; entry-point names or distribution names).
    - Registers ``plugins`` passed explicitly (objects or ``(name, object)``).
    - Calls ``check_pending()``, so a misspelled hook fails here.

    A plugin that fails to import is recorded in ``host.broken`` and becomes an
    error only when one of its strategies is asked for.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    host = PluginHost(pm)
    for name in [*disabled, *_split_names(os.environ.get(DISABLED_ENV))]:
        host.block(name)
    for name, module in BUILTIN_PLUGINS:
        host._register(importlib.import_module(module), name, BUNDLED_DISTRIBUTION, _own_version())
    explicit = set()
    for item in plugins:
        name, plugin = item if isinstance(item, tuple) else (_plugin_name(item), item)
        host._register(plugin, name)
        explicit.add(name)
    if autoload is None:
        autoload = not _truthy(os.environ.get(NO_AUTOLOAD_ENV))
    if entry_points:
        host._load_entry_points(third_party=autoload, explicit=explicit)
    pm.check_pending()
    host._check_impl_styles()
    host._collect_strategies()
    host._collect_call_wrappers()
    return host


def hook_names() -> list[str]:
    """Every hook spec name, in the order hookspecs.py defines them."""
    return [name for name, obj in vars(hookspecs).items() if name.startswith("rpcnet_") and callable(obj)]


def _call_impl(impl: pluggy.HookImpl, **kwargs: Any) -> Any:
    # pluggy passes an impl only the arguments it declares.
    return impl.function(*(kwargs[name] for name in impl.argnames))


def _ignore_call(function: Callable[[], Generator[None, None, None]]) -> Callable[..., Generator[None, None, None]]:
    def wrapper(call: Any) -> Generator[None, None, None]:
        return function()

    return wrapper


def _normalise_dist(name: str) -> str:
    # Distribution names compare as PEP 503 normalises them: rpcnet_p2c == rpcnet-p2c.
    return re.sub(r"[-_.]+", "-", name).lower()


def _plugin_name(plugin: object) -> str:
    return getattr(plugin, "__name__", None) or f"{type(plugin).__qualname__}-{id(plugin):x}"


def _own_version() -> str | None:
    try:
        return importlib.metadata.version(BUNDLED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
