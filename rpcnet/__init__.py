"""rpcnet: RPC over QUIC + TLS 1.3 with built-in clusters.

Plugins write ``from rpcnet import hookimpl``: importing ``rpcnet`` loads the
kernel (hook specs, plugin host, configuration, errors) and no engine. The
RPC engine's names (``RpcServer``, ``RpcClient``, ...) are re-exported lazily:
the first access imports :mod:`rpcnet.rpc`.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from .config import RpcConfig, TlsConfig, load_config
from .errors import RpcError, StatusCode
from .hookspecs import hookimpl, hookspec
from .plugins import PluginHost, make_plugin_manager
from .registry import UnknownStrategyError

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from .rpc import RpcClient, RpcServer, ServerContext, current_deadline

__all__ = [
    "hookimpl",
    "RpcServer",
    "RpcClient",
    "ServerContext",
    "current_deadline",
    "hookspec",
    "make_plugin_manager",
    "PluginHost",
    "UnknownStrategyError",
    "RpcConfig",
    "TlsConfig",
    "load_config",
    "RpcError",
    "StatusCode",
]

__version__ = "0.1.0"

# A library logs, the application decides where it goes: without this,
# warnings would reach stderr through logging's last-resort handler.
logging.getLogger("rpcnet").addHandler(logging.NullHandler())

#: Names served from the RPC engine on first access (PEP 562).
_ENGINE_NAMES = frozenset({"RpcServer", "RpcClient", "ServerContext", "current_deadline"})


def __getattr__(name: str) -> Any:
    if name in _ENGINE_NAMES:
        value = getattr(importlib.import_module("rpcnet.rpc"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rpcnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _ENGINE_NAMES)
