"""Status codes and the exception tree.

Status codes are the canonical gRPC code set so that users know them on sight.
Every non-OK code has an exception class; :func:`error_for_status` maps a code
received on the wire back to its class, so a caller can write
``except NotFoundError`` and receive exactly what the server raised.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, ClassVar

__all__ = [
    "StatusCode",
    "RpcnetError",
    "ConfigError",
    "PluginError",
    "SerializationError",
    "MessageTooLargeError",
    "TransportError",
    "TlsError",
    "RpcError",
    "error_for_status",
]


class StatusCode(enum.IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class RpcnetError(Exception):
    """Base class of every error rpcnet raises on purpose."""


class ConfigError(RpcnetError, ValueError):
    """A configuration value is invalid; the message says which and why."""


class PluginError(RpcnetError):
    """A plugin could not be loaded, or two plugins conflict."""


class SerializationError(RpcnetError, ValueError):
    """A value could not be encoded, or bytes could not be decoded."""


class MessageTooLargeError(SerializationError):
    """An encoded or received message is over the configured size limit."""


class TransportError(RpcnetError, ConnectionError):
    """The transport failed: connection refused, lost, or closed."""


class TlsError(TransportError):
    """TLS verification failed; the message says which check and what to do."""


class RpcError(RpcnetError):
    """A call ended with a non-OK status.

    ``code``, ``message`` and ``details`` travel on the wire unchanged, so the
    message and details a handler raises reach the caller byte for byte.
    ``trailers`` are the metadata the server sent with the status.
    """

    code: ClassVar[StatusCode] = StatusCode.UNKNOWN
    #: True when the call provably never reached a handler (no connection,
    #: or refused by a server that was shutting down): always safe to retry.
    not_sent: bool = False

    def __new__(cls, *args: Any, code: StatusCode | int | None = None, **kwargs: Any) -> RpcError:
        # RpcError("...", code=StatusCode.NOT_FOUND) builds a NotFoundError, so
        # ``except NotFoundError`` works whichever way the error was made.
        if cls is RpcError and code is not None:
            try:
                cls = _BY_CODE.get(StatusCode(code), RpcError)
            except ValueError:
                pass
        return super().__new__(cls)

    def __init__(
        self,
        message: str = "",
        *,
        details: Any = None,
        trailers: dict[str, Any] | None = None,
        code: StatusCode | None = None,
    ) -> None:
        super().__init__(message)
        if code is not None and StatusCode(code) is not type(self).code:
            self.code = StatusCode(code)
        self.message = message
        self.details = details
        self.trailers = dict(trailers or {})

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}" if self.message else self.code.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, details={self.details!r})"


_BY_CODE: dict[StatusCode, type[RpcError]] = {}


def _define(code: StatusCode) -> type[RpcError]:
    name = "".join(part.capitalize() for part in code.name.split("_")) + "Error"
    cls = type(name, (RpcError,), {"code": code, "__doc__": f"The call ended with {code.name}."})
    cls.__module__ = __name__
    _BY_CODE[code] = cls
    globals()[name] = cls
    __all__.append(name)
    return cls


for _code in StatusCode:
    if _code is not StatusCode.OK:
        _define(_code)

# Names spelled out for readers and type checkers; the loop above made them.
# Checkers see classes (so a typed error can also inherit one), the code the values.
if TYPE_CHECKING:

    class CancelledError(RpcError):
        code: ClassVar[StatusCode] = StatusCode.CANCELLED

    class UnknownError(RpcError):
        code: ClassVar[StatusCode] = StatusCode.UNKNOWN

    class InvalidArgumentError(RpcError):
        code: ClassVar[StatusCode] = StatusCode.INVALID_ARGUMENT

    class DeadlineExceededError(RpcError):
        code: ClassVar[StatusCode] = StatusCode.DEADLINE_EXCEEDED

    class NotFoundError(RpcError):
        code: ClassVar[StatusCode] = StatusCode.NOT_FOUND

    class AlreadyExistsError(RpcError):
        code: ClassVar[StatusCode] = StatusCode.ALREADY_EXISTS

    class PermissionDeniedError(RpcError):
        code: ClassVar[StatusCode] = StatusCode.PERMISSION_DENIED

    class ResourceExhaustedError(RpcError):
        code: ClassVar[StatusCode] = StatusCode.RESOURCE_EXHAUSTED

    class FailedPreconditionError(RpcError):
        code: ClassVar[StatusCode] = StatusCode.FAILED_PRECONDITION

    class AbortedError(RpcError):
        code: ClassVar[StatusCode] = StatusCode.ABORTED

    class OutOfRangeError(RpcError):
        code: ClassVar[StatusCode] = StatusCode.OUT_OF_RANGE

    class UnimplementedError(RpcError):
        code: ClassVar[StatusCode] = StatusCode.UNIMPLEMENTED

    class InternalError(RpcError):
        code: ClassVar[StatusCode] = StatusCode.INTERNAL

    class UnavailableError(RpcError):
        code: ClassVar[StatusCode] = StatusCode.UNAVAILABLE

    class DataLossError(RpcError):
        code: ClassVar[StatusCode] = StatusCode.DATA_LOSS

    class UnauthenticatedError(RpcError):
        code: ClassVar[StatusCode] = StatusCode.UNAUTHENTICATED

else:
    CancelledError: type[RpcError] = _BY_CODE[StatusCode.CANCELLED]
    UnknownError: type[RpcError] = _BY_CODE[StatusCode.UNKNOWN]
    InvalidArgumentError: type[RpcError] = _BY_CODE[StatusCode.INVALID_ARGUMENT]
    DeadlineExceededError: type[RpcError] = _BY_CODE[StatusCode.DEADLINE_EXCEEDED]
    NotFoundError: type[RpcError] = _BY_CODE[StatusCode.NOT_FOUND]
    AlreadyExistsError: type[RpcError] = _BY_CODE[StatusCode.ALREADY_EXISTS]
    PermissionDeniedError: type[RpcError] = _BY_CODE[StatusCode.PERMISSION_DENIED]
    ResourceExhaustedError: type[RpcError] = _BY_CODE[StatusCode.RESOURCE_EXHAUSTED]
    FailedPreconditionError: type[RpcError] = _BY_CODE[StatusCode.FAILED_PRECONDITION]
    AbortedError: type[RpcError] = _BY_CODE[StatusCode.ABORTED]
    OutOfRangeError: type[RpcError] = _BY_CODE[StatusCode.OUT_OF_RANGE]
    UnimplementedError: type[RpcError] = _BY_CODE[StatusCode.UNIMPLEMENTED]
    InternalError: type[RpcError] = _BY_CODE[StatusCode.INTERNAL]
    UnavailableError: type[RpcError] = _BY_CODE[StatusCode.UNAVAILABLE]
    DataLossError: type[RpcError] = _BY_CODE[StatusCode.DATA_LOSS]
    UnauthenticatedError: type[RpcError] = _BY_CODE[StatusCode.UNAUTHENTICATED]


def error_for_status(
    code: int, message: str = "", details: Any = None, trailers: dict[str, Any] | None = None
) -> RpcError:
    """Build the exception for a status received on the wire.

    An out-of-range code (from a newer or broken peer) becomes ``UnknownError``
    whose message keeps the original number.
    """
    try:
        status = StatusCode(code)
    except ValueError:
        return UnknownError(f"unknown status code {code}: {message}", details=details, trailers=trailers)
    if status is StatusCode.OK:
        raise ValueError("OK is not an error status")
    return _BY_CODE[status](message, details=details, trailers=trailers)
