"""The serializer strategy interface.

A serializer turns one message value into bytes and back, enforces a size
limit in both directions, and raises :class:`~rpcnet.errors.SerializationError`
with a clear message on bad input. The bundled ``msgpack`` (the default) and
``json`` serializers live in :mod:`rpcnet.builtins.serializers`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from .config import positive
from .deprecation import moved_names
from .errors import MessageTooLargeError

__all__ = ["Serializer", "SerializerOptions", "DEFAULT_MAX_SIZE"]

DEFAULT_MAX_SIZE = 4 * 1024 * 1024


@attrs.frozen(kw_only=True)
class SerializerOptions:
    #: Largest encoded value accepted or produced, bytes (both ways).
    max_size: int = attrs.field(default=DEFAULT_MAX_SIZE, converter=int, validator=positive)


class Serializer:
    """Interface of a serializer strategy.

    Subclasses set ``name`` and implement :meth:`dumps` and :meth:`loads`.
    ``dumps`` raises ``SerializationError`` for a value it cannot encode or
    whose encoding exceeds ``max_size``; ``loads`` raises it for bytes that are
    malformed, oversize, or use features the serializer refuses.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = SerializerOptions

    def __init__(self, options: SerializerOptions | None = None) -> None:
        self.options = options or SerializerOptions()
        self.max_size = self.options.max_size

    def dumps(self, value: Any) -> bytes:
        raise NotImplementedError

    def loads(self, data: bytes) -> Any:
        raise NotImplementedError

    def _check_size(self, size: int, direction: str) -> None:
        if size > self.max_size:
            raise MessageTooLargeError(
                f"{self.name}: {direction} message is {size} bytes, over the {self.max_size}-byte limit "
                f"(raise the serializer's max_size option if this is expected)"
            )


__getattr__ = moved_names(
    __name__,
    {"MsgpackSerializer": "rpcnet.builtins.serializers", "JsonSerializer": "rpcnet.builtins.serializers"},
    removed_in="0.3",
)
