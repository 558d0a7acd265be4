"""Method kinds and the registry of a server's methods."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import attrs

from ..serializers import Serializer
from .eager import cannot_suspend

__all__ = ["MethodKind", "MethodSpec"]


class MethodKind(enum.Enum):
    UNARY = "unary"
    SERVER_STREAMING = "server_streaming"
    CLIENT_STREAMING = "client_streaming"
    BIDI_STREAMING = "bidi_streaming"

    @property
    def streams_requests(self) -> bool:
        return self in (MethodKind.CLIENT_STREAMING, MethodKind.BIDI_STREAMING)

    @property
    def streams_responses(self) -> bool:
        return self in (MethodKind.SERVER_STREAMING, MethodKind.BIDI_STREAMING)


@attrs.frozen(kw_only=True)
class MethodSpec:
    name: str
    kind: MethodKind
    handler: Callable[..., Any]
    serializer: Serializer
    #: Safe to run twice: clients may retry it after it was sent.
    idempotent: bool = False
    #: A typed unary method (:mod:`rpcnet.rpc.services`): the implementation's
    #: method and its conversions (``function``, ``load``, ``dump``, ``error``),
    #: which the call's own task runs instead of ``handler``, so a typed call
    #: costs no coroutine of its own. ``handler`` does the same for other callers.
    typed: Any = None
    #: Copies of ``kind.streams_requests`` / ``kind.streams_responses``, read per call.
    streams_requests: bool = attrs.field(init=False)
    streams_responses: bool = attrs.field(init=False)
    #: A unary method whose implementation has no suspension point: its call
    #: runs to its end without a task (:func:`rpcnet.rpc.eager.cannot_suspend`).
    runs_to_end: bool = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "streams_requests", self.kind.streams_requests)
        object.__setattr__(self, "streams_responses", self.kind.streams_responses)
        target = self.handler if self.typed is None else self.typed.function
        object.__setattr__(self, "runs_to_end", self.kind is MethodKind.UNARY and cannot_suspend(target))
