"""The rpcnet wire protocol: typed, length-prefixed frames on one stream per call.

See docs/protocol.md. Each frame is ``type (1 byte) | length (4 bytes, big
endian) | payload``. The length is checked against the limit for its type as
soon as the 5-byte prefix has arrived, so nothing is allocated for an oversize
frame. The client sends ``HEADER MESSAGE* FIN``; the server answers
``[RESPONSE_HEADER] MESSAGE* TRAILER FIN``. Headers and trailers are msgpack
maps; message payloads are produced by the call's serializer.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import msgpack

from ..errors import StatusCode

__all__ = [
    "ALPN",
    "PROTOCOL_VERSION",
    "HEADER",
    "MESSAGE",
    "TRAILER",
    "RESPONSE_HEADER",
    "FrameDecoder",
    "ProtocolError",
    "whole_request",
    "whole_ok_reply",
    "encode_frame",
    "encode_header",
    "decode_header",
    "encode_trailer",
    "decode_trailer",
    "ResetCode",
]

PROTOCOL_VERSION = 1
ALPN = f"rpcnet/{PROTOCOL_VERSION}"

HEADER = 0x01
MESSAGE = 0x02
TRAILER = 0x03
RESPONSE_HEADER = 0x04
FRAME_TYPES = frozenset({HEADER, MESSAGE, TRAILER, RESPONSE_HEADER})

PREFIX = struct.Struct(">BI")
PREFIX_SIZE = PREFIX.size
DEFAULT_MAX_METADATA_SIZE = 64 * 1024


class ResetCode:
    """Application error codes carried by stream resets (RESET_STREAM/STOP_SENDING)."""

    CANCELLED = 0x1
    DEADLINE_EXCEEDED = 0x2
    PROTOCOL_ERROR = 0x3
    #: The server refused the call before running any handler: safe to retry.
    REFUSED = 0x4
    INTERNAL = 0x5


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid rpcnet frame sequence."""

    def __init__(self, message: str, status: StatusCode = StatusCode.INTERNAL) -> None:
        super().__init__(message)
        self.status = status


def encode_frame(frame_type: int, payload: bytes) -> bytes:
    return PREFIX.pack(frame_type, len(payload)) + payload


class FrameDecoder:
    """Incremental frame parser. ``feed`` returns the complete frames so far.

    Partial frames are kept as a list of chunks and joined once complete, so a
    large message arriving in many packets is copied once, not per packet.
    """

    __slots__ = ("_chunks", "_have", "_need", "max_message_size", "max_metadata_size")

    def __init__(self, max_message_size: int, max_metadata_size: int = DEFAULT_MAX_METADATA_SIZE) -> None:
        self._chunks: list[bytes] = []
        self._have = 0
        self._need = 0  # bytes needed to complete the pending frame; 0 = prefix unknown
        self.max_message_size = max_message_size
        self.max_metadata_size = max_metadata_size

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return self._have

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if self._chunks:
            self._chunks.append(data)
            self._have += len(data)
            if self._need == 0 and self._have >= PREFIX_SIZE:
                head = b"".join(self._chunks)
                self._chunks = [head]
                frame_type, length = PREFIX.unpack_from(head, 0)
                self._check(frame_type, length)
                self._need = PREFIX_SIZE + length
            if self._need == 0 or self._have < self._need:
                return []
            data = b"".join(self._chunks)
            self._chunks = []
            self._have = self._need = 0
        frames: list[tuple[int, bytes]] = []
        offset = 0
        end = len(data)
        unpack = PREFIX.unpack_from
        max_message_size = self.max_message_size
        while end - offset >= PREFIX_SIZE:
            frame_type, length = unpack(data, offset)
            if frame_type != MESSAGE or length > max_message_size:
                self._check(frame_type, length)
            start = offset + PREFIX_SIZE
            if end - start < length:
                self._need = PREFIX_SIZE + length
                break
            frames.append((frame_type, data[start : start + length]))
            offset = start + length
        if offset < end:
            rest = data[offset:]
            self._chunks = [rest]
            self._have = len(rest)
        return frames

    def _check(self, frame_type: int, length: int) -> None:
        if frame_type == MESSAGE:
            if length > self.max_message_size:
                raise ProtocolError(
                    f"message of {length} bytes exceeds the {self.max_message_size}-byte limit",
                    StatusCode.RESOURCE_EXHAUSTED,
                )
            return
        if frame_type not in FRAME_TYPES:
            raise ProtocolError(f"unknown frame type 0x{frame_type:02x}")
        if length > self.max_metadata_size:
            raise ProtocolError(
                f"{_FRAME_NAMES[frame_type]} frame of {length} bytes exceeds the "
                f"{self.max_metadata_size}-byte metadata limit",
                StatusCode.RESOURCE_EXHAUSTED,
            )


_FRAME_NAMES = {HEADER: "header", MESSAGE: "message", TRAILER: "trailer", RESPONSE_HEADER: "response header"}


def _unpack_map(payload: bytes, what: str) -> dict[str, Any]:
    try:
        value = msgpack.unpackb(payload, raw=False, strict_map_key=False, ext_hook=_no_ext)
    except Exception as exc:
        raise ProtocolError(f"malformed {what} frame: {type(exc).__name__}: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"malformed {what} frame: expected a map, got {type(value).__name__}")
    return value


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"extension type {code} is not allowed in metadata")


def _check_metadata(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ProtocolError(f"malformed {what}: metadata must be a map with string keys")
    return value


def encode_header(method: str, metadata: dict[str, Any] | None = None, timeout: float | None = None) -> bytes:
    header: dict[str, Any] = {"m": method}
    if metadata:
        header["md"] = metadata
    if timeout is not None:
        header["t"] = timeout
    return encode_frame(HEADER, msgpack.packb(header, use_bin_type=True))


def decode_header(payload: bytes) -> tuple[str, dict[str, Any], float | None]:
    header = _unpack_map(payload, "header")
    method = header.get("m")
    if not isinstance(method, str) or not method:
        raise ProtocolError("malformed header frame: missing method name")
    timeout = header.get("t")
    if timeout is not None and (
        not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or math.isnan(timeout)
    ):
        raise ProtocolError("malformed header frame: timeout must be a number of seconds")
    return method, _check_metadata(header.get("md"), "header metadata"), timeout


def encode_response_header(metadata: dict[str, Any]) -> bytes:
    return encode_frame(RESPONSE_HEADER, msgpack.packb({"md": metadata}, use_bin_type=True))


def decode_response_header(payload: bytes) -> dict[str, Any]:
    return _check_metadata(_unpack_map(payload, "response header").get("md"), "response metadata")


def encode_trailer(
    code: int, message: str = "", details: Any = None, metadata: dict[str, Any] | None = None
) -> bytes:
    trailer: dict[str, Any] = {"c": int(code)}
    if message:
        trailer["msg"] = message
    if details is not None:
        trailer["det"] = details
    if metadata:
        trailer["md"] = metadata
    return encode_frame(TRAILER, msgpack.packb(trailer, use_bin_type=True, datetime=True))


def decode_trailer(payload: bytes) -> tuple[int, str, Any, dict[str, Any]]:
    trailer = _unpack_map(payload, "trailer")
    code = trailer.get("c")
    if not isinstance(code, int) or isinstance(code, bool):
        raise ProtocolError("malformed trailer frame: missing status code")
    message = trailer.get("msg", "")
    if not isinstance(message, str):
        raise ProtocolError("malformed trailer frame: status message must be a string")
    return code, message, trailer.get("det"), _check_metadata(trailer.get("md"), "trailing metadata")


#: The OK trailer with no metadata, sent by most calls.
OK_TRAILER = encode_trailer(StatusCode.OK)


# -- whole unary exchanges in one piece -------------------------------------
#
# Most unary requests and replies arrive in one piece with the stream's FIN.
# These recognise the usual shapes directly; anything else (split data,
# metadata frames, an error trailer, a limit exceeded) returns None and goes
# through FrameDecoder, which also produces the errors.


def whole_request(data: bytes, max_message_size: int) -> tuple[bytes, bytes] | None:
    """``(header payload, message payload)`` when ``data`` is exactly one
    HEADER frame and one MESSAGE frame within the limits, else None."""
    end = len(data)
    if end < 2 * PREFIX_SIZE:
        return None
    frame_type, header_length = PREFIX.unpack_from(data, 0)
    if frame_type != HEADER or header_length > DEFAULT_MAX_METADATA_SIZE:
        return None
    offset = PREFIX_SIZE + header_length
    if end - offset < PREFIX_SIZE:
        return None
    frame_type, length = PREFIX.unpack_from(data, offset)
    if frame_type != MESSAGE or length > max_message_size or offset + PREFIX_SIZE + length != end:
        return None
    return data[PREFIX_SIZE:offset], data[offset + PREFIX_SIZE :]


_OK_TRAILER_SIZE = len(OK_TRAILER)


def whole_ok_reply(data: bytes, max_message_size: int) -> bytes | None:
    """The message payload when ``data`` is exactly one MESSAGE frame within
    the limit followed by the plain OK trailer, else None."""
    end = len(data) - _OK_TRAILER_SIZE
    if end < PREFIX_SIZE or data[0] != MESSAGE or not data.endswith(OK_TRAILER):
        return None
    length = PREFIX.unpack_from(data, 0)[1]
    if PREFIX_SIZE + length != end or length > max_message_size:
        return None
    return data[PREFIX_SIZE:end]
