"""What a client and a server share: configuration, plugins, transport, serializers."""

from __future__ import annotations

from typing import Any

from ..config import RpcConfig
from ..plugins import PluginHost, make_plugin_manager
from ..serializers import Serializer
from ..transport import Transport

__all__ = ["RpcEndpoint"]


class RpcEndpoint:
    """Set-up common to :class:`~rpcnet.RpcClient` and :class:`~rpcnet.RpcServer`.

    Builds (or takes) the plugin host, checks that every option table names
    an installed strategy, creates the transport chosen by
    ``config.transport`` and the default serializer; other serializers a
    call names are built once, on first use.
    """

    def __init__(self, config: RpcConfig | None, plugins: PluginHost | None) -> None:
        self.config = config or RpcConfig()
        self.plugins = plugins or make_plugin_manager(disabled=self.config.disabled_plugins)
        self.plugins.check_options(self.config.options)
        self.transport: Transport = self.plugins.create(
            "transport", self.config.transport, self.config.options.get(self.config.transport)
        )
        self._serializers: dict[str, Serializer] = {}
        self.serializer = self._serializer(self.config.serializer)
        #: The ``rpcnet_call`` wrappers, outermost first; empty on the fast path.
        self._wrappers = self.plugins.call_wrappers

    def _serializer(self, name: str) -> Any:
        serializer = self._serializers.get(name)
        if serializer is None:
            options: dict[str, Any] = {"max_size": self.config.max_message_size}
            options.update(self.config.options.get(name, {}))
            serializer = self._serializers[name] = self.plugins.create("serializer", name, options)
        return serializer
