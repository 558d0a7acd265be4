"""Aliases for names that moved, kept for one release.

A module whose public names moved to a higher layer cannot import them back
(imports point only toward the kernel). It declares them instead::

    __getattr__ = moved_names(__name__, {"HealthMonitor": "rpcnet.cluster.health"}, removed_in="0.3")

and the new home is imported by name only when a caller touches the old
name, with a :class:`DeprecationWarning` that says where the name lives now.
CHANGELOG.md lists every alias.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved_names", "IndexedCounters"]


def moved_names(module: str, moved: Mapping[str, str], *, removed_in: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving each name in ``moved`` from its new module."""
    table = dict(moved)

    def __getattr__(name: str) -> Any:
        target = table.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(
            f"{module}.{name} moved to {target}.{name}; the old name is removed in {removed_in}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(target), name)

    return __getattr__


class IndexedCounters:
    """Mixin for a frozen counters snapshot that 0.1 exposed as a dict.

    ``stats["retries"]`` still reads ``stats.retries`` until 0.3, with a
    :class:`DeprecationWarning`; a name the snapshot lacks is a ``KeyError``.
    """

    __slots__ = ()

    def __getitem__(self, key: str) -> int:
        if not isinstance(key, str) or key.startswith("_") or not hasattr(self, key):
            raise KeyError(key)
        warnings.warn(
            f'{type(self).__name__}["{key}"] is deprecated: read .{key} (removed in 0.3)',
            DeprecationWarning,
            stacklevel=2,
        )
        return int(getattr(self, key))
