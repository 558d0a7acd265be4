"""What the kernel tells ``rpcnet_call`` wrappers about one call.

A kernel value so that the hook spec, and plugins that implement it, need
nothing from the RPC engine.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from .errors import StatusCode
from .transport import PeerInfo

__all__ = ["CallInfo", "CallKind", "CallSide"]

CallSide = Literal["client", "server"]
CallKind = Literal["unary", "server_streaming", "client_streaming", "bidi_streaming"]


@attrs.define(slots=True, eq=False)
class CallInfo:
    """What ``rpcnet_call`` wrappers see about one call."""

    side: CallSide
    method: str
    kind: CallKind
    peer: PeerInfo | None
    metadata: dict[str, Any]
    start: float
    status: StatusCode | None = None
    duration: float | None = None
    error: BaseException | None = None
