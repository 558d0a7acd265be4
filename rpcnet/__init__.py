"""rpcnet: RPC over QUIC + TLS 1.3 with built-in clusters.

Plugins write ``from rpcnet import hookimpl``.
"""

from __future__ import annotations

import logging

from .config import RpcConfig, TlsConfig, load_config
from .errors import RpcError, StatusCode
from .hookspecs import hookimpl, hookspec
from .plugins import PluginHost, make_plugin_manager
from .registry import UnknownStrategyError
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
