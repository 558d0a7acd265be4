"""Per-call state visible to handlers, and the deadline that nested calls inherit."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any, NoReturn

from ..calls import CallInfo
from ..errors import StatusCode, error_for_status
from ..transport import PeerInfo

if TYPE_CHECKING:
    import asyncio

__all__ = ["ServerContext", "CallInfo", "current_deadline", "current_context", "deadline_var", "context_var"]

#: Absolute event-loop time by which the current call must finish, or None.
#: Set inside every handler; client calls made there inherit it.
deadline_var: contextvars.ContextVar[float | None] = contextvars.ContextVar("rpcnet_deadline", default=None)
context_var: contextvars.ContextVar[ServerContext | None] = contextvars.ContextVar("rpcnet_context", default=None)


def current_deadline() -> float | None:
    """The deadline (``loop.time()`` units) of the call being handled, if any."""
    return deadline_var.get()


def current_context() -> ServerContext | None:
    """The :class:`ServerContext` of the call being handled, if any."""
    return context_var.get()


class ServerContext:
    """Handed to every handler as its second argument."""

    __slots__ = (
        "method",
        "metadata",
        "peer",
        "deadline",
        "_loop",
        "_trailers",
        "_initial_metadata",
        "_initial_sent",
        "cancelled",
    )

    def __init__(
        self,
        method: str,
        metadata: dict[str, Any],
        peer: PeerInfo,
        deadline: float | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.method = method
        #: Metadata the client sent with the call.
        self.metadata = metadata
        #: The client: address, and its verified certificate identity under mutual TLS.
        self.peer = peer
        #: Absolute ``loop.time()`` by which the call must end, or None.
        self.deadline = deadline
        self._loop = loop
        # Made by set_trailers / set_initial_metadata: most calls set neither.
        self._trailers: dict[str, Any] | None = None
        self._initial_metadata: dict[str, Any] | None = None
        self._initial_sent = False
        #: True once the client cancelled or the deadline passed.
        self.cancelled = False

    def time_remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - self._loop.time())

    def set_trailers(self, metadata: dict[str, Any]) -> None:
        """Metadata sent with the final status."""
        if self._trailers is None:
            self._trailers = {}
        self._trailers.update(metadata)

    def set_initial_metadata(self, metadata: dict[str, Any]) -> None:
        """Metadata sent before the first response message (or with the status)."""
        if self._initial_sent:
            raise RuntimeError("initial metadata was already sent")
        if self._initial_metadata is None:
            self._initial_metadata = {}
        self._initial_metadata.update(metadata)

    def abort(self, code: StatusCode | int, message: str = "", details: Any = None) -> NoReturn:
        """End the call now with ``code``; raises, so nothing after it runs."""
        if StatusCode(code) is StatusCode.OK:
            raise ValueError("abort() needs an error status, not OK")
        raise error_for_status(int(code), message, details)

    def __repr__(self) -> str:
        return f"<ServerContext {self.method} peer={self.peer.address} deadline={self.deadline}>"


