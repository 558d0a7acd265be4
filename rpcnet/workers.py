"""Deprecated module: the workers registry is :mod:`rpcnet.cluster.workers` (removed in 0.3)."""

from __future__ import annotations

import warnings

from .cluster.workers import *  # noqa: F403
from .cluster.workers import __all__  # noqa: F401

warnings.warn(
    "rpcnet.workers moved to rpcnet.cluster.workers; the old module is removed in 0.3",
    DeprecationWarning,
    stacklevel=2,
)
