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

__all__ = ["moved_names"]


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
