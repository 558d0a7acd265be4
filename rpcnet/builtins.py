"""Kernel builtins, registered through the same hooks as any plugin."""

from __future__ import annotations

from .hookspecs import Register, hookimpl


class _Serializers:
    """Plugin ``builtin-serializers``: ``msgpack`` and ``json``."""

    @hookimpl(trylast=True)
    def rpcnet_register_serializers(self, register: Register) -> None:
        from .serializers import JsonSerializer, MsgpackSerializer

        register(MsgpackSerializer.name, MsgpackSerializer)
        register(JsonSerializer.name, JsonSerializer)


class _MemoryTransport:
    """Plugin ``builtin-memory``: the in-process ``memory`` transport."""

    @hookimpl(trylast=True)
    def rpcnet_register_transports(self, register: Register) -> None:
        from .memory import MemoryTransport

        register(MemoryTransport.name, MemoryTransport)


class _HealthChecks:
    """Plugin ``builtin-health``: the ``event-loop-lag`` health check."""

    @hookimpl(trylast=True)
    def rpcnet_register_health_checks(self, register: Register) -> None:
        from .health import EventLoopLag

        register(EventLoopLag.name, EventLoopLag)


#: (plugin name, plugin object), registered first by every plugin manager.
PLUGINS: list[tuple[str, object]] = [
    ("builtin-serializers", _Serializers()),
    ("builtin-memory", _MemoryTransport()),
    ("builtin-health", _HealthChecks()),
]
