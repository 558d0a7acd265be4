"""Building a plugin manager: builtins, entry points, blocking, checks.

There is no module-global manager. :func:`make_plugin_manager` builds a
:class:`PluginHost` per server, client or node (or share one explicitly), and
tests pass their plugins in by hand. ``PluginHost`` is the only code that
calls ``pm.hook``.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import os
import traceback
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .errors import PluginError
from .registry import KINDS, BrokenPlugin, StrategyRegistry

__all__ = ["make_plugin_manager", "PluginHost", "PluginInfo", "ENTRY_POINT_GROUP"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "rpcnet"
DISABLED_ENV = "RPCNET_DISABLED_PLUGINS"
NO_AUTOLOAD_ENV = "RPCNET_DISABLE_PLUGIN_AUTOLOAD"
#: The distribution whose entry points are the bundled plugins; these load even
#: when autoloading of third-party plugins is disabled.
BUNDLED_DISTRIBUTION = "rpcnet"


@attrs.frozen(kw_only=True)
class PluginInfo:
    """What ``rpcnet plugins`` shows for one loaded plugin."""

    name: str
    distribution: str | None
    version: str | None
    strategies: dict[str, list[str]]
    hooks: list[str]


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

    # -- construction -------------------------------------------------

    def _register(self, plugin: object, name: str, dist: str | None = None, version: str | None = None) -> None:
        if self.pm.is_blocked(name):
            return
        if self.pm.get_plugin(name) is not None:
            raise PluginError(f"a plugin named {name!r} is already registered")
        self.pm.register(plugin, name=name)
        self._dists[name] = (dist, version)

    def _load_entry_points(self, *, third_party: bool) -> None:
        seen: set[str] = set()
        for ep in _entry_points():
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if ep.name in seen:
                continue  # the same distribution found twice on sys.path
            seen.add(ep.name)
            is_bundled = dist is not None and dist.lower() == BUNDLED_DISTRIBUTION
            if not is_bundled and not third_party:
                continue
            if self.pm.is_blocked(ep.name) or (dist and self.pm.is_blocked(dist)):
                continue
            if self.pm.get_plugin(ep.name) is not None:
                continue  # registered explicitly by the caller already
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the process down
                self._mark_broken(ep.name, dist, version, exc)
                continue
            self._register(plugin, ep.name, dist, version)

    def _mark_broken(self, name: str, dist: str | None, version: str | None, exc: BaseException) -> None:
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        log.warning("rpcnet plugin %r%s failed to load: %s", name, f" ({dist})" if dist else "", error)
        self.broken.append(BrokenPlugin(name=name, distribution=dist, version=version, error=error))

    def _collect_strategies(self) -> None:
        for kind, hook_name in KINDS.items():
            caller = getattr(self.pm.hook, hook_name)
            for impl in reversed(caller.get_hookimpls()):  # registration order
                name = impl.plugin_name
                dist = self._dists.get(name, (None, None))[0]

                def register(strategy_name: str, cls: type, _kind: str = kind, _plugin: str = name, _dist: str | None = dist) -> None:
                    self.registry.add(_kind, strategy_name, cls, plugin=_plugin, distribution=_dist)

                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except Exception as exc:
                    self._mark_broken(name, dist, self._dists.get(name, (None, None))[1], exc)
                    self.pm.unregister(name=name)
        self.registry.broken = tuple(self.broken)

    def _collect_call_wrappers(self) -> None:
        for impl in reversed(self.pm.hook.rpcnet_call.get_hookimpls()):
            if not impl.wrapper or not inspect.isgeneratorfunction(impl.function):
                raise PluginError(
                    f"plugin {impl.plugin_name!r} implements rpcnet_call without "
                    "@hookimpl(wrapper=True) as a generator; write it as a generator that yields once"
                )
            self._call_wrappers.append(impl.function)

    # -- queries ------------------------------------------------------

    def create(self, kind: str, name: str, options: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """Instantiate the ``kind`` strategy called ``name`` with its options."""
        return self.registry.create(kind, name, options, **kwargs)

    def strategy(self, kind: str, name: str) -> type:
        return self.registry.get(kind, name)

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
        """Tell every plugin about a cluster event; a failing plugin is logged."""
        try:
            self.pm.hook.rpcnet_cluster_event(event=event)
        except Exception:
            log.exception("a plugin failed in rpcnet_cluster_event(%r)", event)

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
    from . import builtins

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    host = PluginHost(pm)
    for name in [*disabled, *_split_names(os.environ.get(DISABLED_ENV))]:
        pm.set_blocked(name)
    for name, plugin in builtins.PLUGINS:
        host._register(plugin, name, BUNDLED_DISTRIBUTION, _own_version())
    for item in plugins:
        name, plugin = item if isinstance(item, tuple) else (_plugin_name(item), item)
        host._register(plugin, name)
    if autoload is None:
        autoload = not _truthy(os.environ.get(NO_AUTOLOAD_ENV))
    if entry_points:
        host._load_entry_points(third_party=autoload)
    pm.check_pending()
    host._collect_strategies()
    host._collect_call_wrappers()
    return host


def _plugin_name(plugin: object) -> str:
    return getattr(plugin, "__name__", None) or f"{type(plugin).__qualname__}-{id(plugin):x}"


def _own_version() -> str | None:
    try:
        return importlib.metadata.version(BUNDLED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
