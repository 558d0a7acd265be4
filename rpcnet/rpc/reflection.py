"""Reflection: every server describes what it serves at ``rpcnet.reflection/Describe``.

The answer (a map, the same through any serializer) lists the typed
services with their methods, call kinds, idempotency, declared errors and a
JSON Schema of each type, plus the untyped methods by name and kind.
``RpcConfig(reflection=False)`` (``RPCNET_RPC__REFLECTION=0``) turns it off; the
method then answers UNIMPLEMENTED like any unknown one. ``rpcnet describe``
and ``rpcnet call`` read it.
"""

from __future__ import annotations

from typing import Any

from .convert import SchemaBuilder, type_name
from .methods import MethodKind
from .services import ServiceInfo

__all__ = ["REFLECTION_METHOD", "describe_server", "describe_services", "install_reflection"]

REFLECTION_METHOD = "rpcnet.reflection/Describe"
#: Bumped when the shape of the answer changes incompatibly.
REFLECTION_VERSION = 1


def describe_services(
    services: list[ServiceInfo], untyped: list[tuple[str, MethodKind, bool]] | None = None
) -> dict[str, Any]:
    """The reflection document for ``services`` and the untyped methods ``(name, kind, idempotent)``."""
    builder = SchemaBuilder()
    described = []
    for info in services:
        methods = []
        for method in info.methods:
            entry: dict[str, Any] = {
                "name": method.name,
                "method": method.wire,
                "kind": method.kind.value,
                "idempotent": method.idempotent,
                "request": builder.schema(method.request_type),
                "response": builder.schema(method.response_type),
                "request_type": type_name(method.request_type),
                "response_type": type_name(method.response_type),
                "errors": [error.wire_name() for error in method.errors],
            }
            if method.doc:
                entry["doc"] = method.doc
            methods.append(entry)
        errors = {}
        for method in info.methods:
            for error in method.errors:
                if error.wire_name() not in errors:
                    errors[error.wire_name()] = {"code": error.code.name, "fields": builder.schema(error)}
        service: dict[str, Any] = {"name": info.name, "methods": methods, "errors": errors}
        if info.doc:
            service["doc"] = info.doc
        described.append(service)
    return {
        "version": REFLECTION_VERSION,
        "services": described,
        "methods": [{"method": name, "kind": kind.value, "idempotent": idempotent} for name, kind, idempotent in untyped or ()],
        "$defs": builder.defs,
    }


def describe_server(server: Any) -> dict[str, Any]:
    """The reflection document of an ``RpcServer`` (its ``services`` and ``methods``)."""
    services: list[ServiceInfo] = list(server.services.values())
    typed = {method.wire for info in services for method in info.methods}
    untyped = [
        (name, spec.kind, spec.idempotent)
        for name, spec in sorted(server.methods.items())
        if name not in typed and name != REFLECTION_METHOD
    ]
    return describe_services(services, untyped)


def install_reflection(server: Any) -> None:
    """Register the reflection method on ``server`` (the server does it unless configured off)."""

    async def describe(request: Any, ctx: Any) -> dict[str, Any]:
        return describe_server(server)

    server.register(REFLECTION_METHOD, describe, idempotent=True)
