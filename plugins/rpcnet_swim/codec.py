"""The compact msgpack encoding of SWIM messages.

Messages on the reliable channel (full-state syncs, and the ping that falls
back to it when datagrams go unanswered) are one msgpack array ``[version,
sender, kind, ...]``.

Datagram layout: one msgpack array ``[version, sender, message-or-nil]``
followed by zero or more msgpack arrays, one per piggybacked update. Updates
are encoded once when queued, so filling a datagram up to its budget is a
matter of adding lengths. Every message is an array whose first element is a
small integer type code; addresses are ``host, port`` fields; tags a map.

Decoding is defensive: sizes are bounded, every field is type-checked, and
anything unexpected raises :class:`SwimDecodeError`, which the core counts and
drops. Nothing in a datagram can make the decoder allocate more than the
datagram's own size.
"""

from __future__ import annotations

import reprlib
from typing import Any

import msgpack

from rpcnet.errors import SerializationError
from rpcnet.membership import MemberState

from .messages import (
    Ack,
    Alive,
    Dead,
    DirectMessage,
    Heartbeat,
    MemberRecord,
    Nack,
    Packet,
    Ping,
    PingReq,
    StreamAck,
    StreamPing,
    Suspect,
    SyncMessage,
    Update,
)

__all__ = [
    "PROTOCOL_VERSION",
    "SwimDecodeError",
    "encode_header",
    "encode_update",
    "encode_packet",
    "decode_packet",
    "encode_sync",
    "decode_sync",
    "MAX_SYNC_SIZE",
]

#: 2 (rpcnet 0.2): acks may flag an unknown sender. 1: rpcnet 0.1.
PROTOCOL_VERSION = 2
#: What each protocol version shipped in, for errors between releases.
_RELEASES = {1: "rpcnet 0.1", 2: "rpcnet 0.2"}
#: Upper bound accepted for one full-state sync message.
MAX_SYNC_SIZE = 16 * 1024 * 1024

_PING, _PING_REQ, _ACK, _NACK, _HEARTBEAT = 1, 2, 3, 4, 5
_ALIVE, _SUSPECT, _DEAD = 10, 11, 12
_STATE_CODES = {MemberState.ALIVE: 0, MemberState.SUSPECT: 1, MemberState.FAILED: 2, MemberState.LEFT: 3}
_STATES = {code: state for state, code in _STATE_CODES.items()}


class SwimDecodeError(SerializationError):
    """A SWIM datagram or sync message is malformed."""


def _message_fields(message: DirectMessage | None) -> list[Any] | None:
    if message is None:
        return None
    if isinstance(message, Ping):
        return [_PING, message.seq, message.target]
    if isinstance(message, Ack):
        return [_ACK, message.seq, True] if message.unknown_sender else [_ACK, message.seq]
    if isinstance(message, Heartbeat):
        return [_HEARTBEAT]
    if isinstance(message, PingReq):
        host, port = message.target_address
        return [_PING_REQ, message.seq, message.target, host, port, message.nack]
    if isinstance(message, Nack):
        return [_NACK, message.seq]
    raise TypeError(f"not a SWIM direct message: {message!r}")


def _update_fields(update: Update) -> list[Any]:
    if isinstance(update, Alive):
        host, port = update.address
        return [_ALIVE, update.node, update.incarnation, host, port, update.tags]
    if isinstance(update, Suspect):
        return [_SUSPECT, update.node, update.incarnation, update.source]
    if isinstance(update, Dead):
        return [_DEAD, update.node, update.incarnation, update.source]
    raise TypeError(f"not a SWIM update: {update!r}")


def encode_header(sender: str, message: DirectMessage | None) -> bytes:
    return msgpack.packb([PROTOCOL_VERSION, sender, _message_fields(message)])


def encode_update(update: Update) -> bytes:
    return msgpack.packb(_update_fields(update))


def encode_packet(packet: Packet) -> bytes:
    return encode_header(packet.sender, packet.message) + b"".join(encode_update(u) for u in packet.updates)


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 60
_REPR.maxother = 60


def _show(value: Any) -> str:
    """A bounded repr for error messages: hostile input may nest a thousand levels deep."""
    return _REPR.repr(value)


def _code(value: Any) -> int | None:
    """A type or version code: an int (never a bool or float that compares equal), else None."""
    return value if type(value) is int else None


def _str(value: Any, what: str) -> str:
    if type(value) is not str or not value:
        raise SwimDecodeError(f"{what} must be a non-empty string, got {_show(value)}")
    return value


def _int(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise SwimDecodeError(f"{what} must be a non-negative integer, got {_show(value)}")
    return value


def _port(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= 65535:
        raise SwimDecodeError(f"port must be 0..65535, got {_show(value)}")
    return value


def _tags(value: Any) -> dict[str, str]:
    if type(value) is not dict or not all(type(k) is str and type(v) is str for k, v in value.items()):
        raise SwimDecodeError(f"tags must be a map of strings, got {_show(value)}")
    return value


def _fields(value: Any, length: int, what: str) -> list[Any]:
    if type(value) is not list or len(value) != length:
        raise SwimDecodeError(f"{what} must be an array of {length} fields, got {_show(value)}")
    return value


def _decode_message(value: Any) -> DirectMessage | None:
    if value is None:
        return None
    if type(value) is not list or not value:
        raise SwimDecodeError(f"message must be a non-empty array, got {_show(value)}")
    code = _code(value[0])
    if code == _PING:
        f = _fields(value, 3, "ping")
        return Ping(seq=_int(f[1], "seq"), target=_str(f[2], "target"))
    if code == _ACK:
        if type(value) is list and len(value) == 3:
            if type(value[2]) is not bool:
                raise SwimDecodeError(f"ack unknown-sender flag must be a boolean, got {_show(value[2])}")
            return Ack(seq=_int(value[1], "seq"), unknown_sender=value[2])
        f = _fields(value, 2, "ack")
        return Ack(seq=_int(f[1], "seq"))
    if code == _HEARTBEAT:
        _fields(value, 1, "heartbeat")
        return Heartbeat()
    if code == _PING_REQ:
        f = _fields(value, 6, "ping-req")
        if type(f[5]) is not bool:
            raise SwimDecodeError(f"ping-req nack flag must be a boolean, got {_show(f[5])}")
        return PingReq(
            seq=_int(f[1], "seq"),
            target=_str(f[2], "target"),
            target_address=(_str(f[3], "host"), _port(f[4])),
            nack=f[5],
        )
    if code == _NACK:
        f = _fields(value, 2, "nack")
        return Nack(seq=_int(f[1], "seq"))
    raise SwimDecodeError(f"unknown message type {_show(code)}")


def _decode_update(value: Any) -> Update:
    if type(value) is not list or not value:
        raise SwimDecodeError(f"update must be a non-empty array, got {_show(value)}")
    code = _code(value[0])
    if code == _ALIVE:
        f = _fields(value, 6, "alive")
        return Alive(
            node=_str(f[1], "node"),
            incarnation=_int(f[2], "incarnation"),
            address=(_str(f[3], "host"), _port(f[4])),
            tags=_tags(f[5]),
        )
    if code == _SUSPECT:
        f = _fields(value, 4, "suspect")
        return Suspect(node=_str(f[1], "node"), incarnation=_int(f[2], "incarnation"), source=_str(f[3], "source"))
    if code == _DEAD:
        f = _fields(value, 4, "dead")
        return Dead(node=_str(f[1], "node"), incarnation=_int(f[2], "incarnation"), source=_str(f[3], "source"))
    raise SwimDecodeError(f"unknown update type {_show(code)}")


def _unpacker(size: int) -> msgpack.Unpacker:
    return msgpack.Unpacker(
        raw=False,
        strict_map_key=True,
        use_list=True,
        max_buffer_size=max(size, 1),
        ext_hook=_reject_ext,
    )


def _reject_ext(code: int, data: bytes) -> Any:
    raise SwimDecodeError(f"msgpack extension type {code} is not part of the SWIM protocol")


def _check_version(value: Any) -> None:
    if _code(value) == PROTOCOL_VERSION:
        return
    theirs = _RELEASES.get(_code(value) or 0)
    raise SwimDecodeError(
        f"protocol version {_show(value)} is not supported (expected {PROTOCOL_VERSION}): the peer speaks SWIM "
        f"protocol {_show(value)}{f' ({theirs})' if theirs else ''}, this node protocol {PROTOCOL_VERSION} "
        f"({_RELEASES[PROTOCOL_VERSION]}); run one release on every node of a cluster"
    )


def decode_packet(data: bytes) -> Packet:
    """Decode a datagram; raises :class:`SwimDecodeError` on anything malformed."""
    unpacker = _unpacker(len(data))
    try:
        unpacker.feed(data)
        items = []
        complete = 0  # bytes up to the end of the last whole value
        for item in unpacker:
            items.append(item)
            complete = unpacker.tell()
        # Iteration stops quietly at an incomplete value; a cut datagram is malformed.
        if complete != len(data):
            raise SwimDecodeError(f"datagram ends inside a value ({len(data) - complete} bytes left over)")
    except SwimDecodeError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise SwimDecodeError(f"datagram is not valid msgpack: {exc}") from None
    if not items:
        raise SwimDecodeError("empty datagram")
    header = _fields(items[0], 3, "header")
    _check_version(header[0])
    return Packet(
        sender=_str(header[1], "sender"),
        message=_decode_message(header[2]),
        updates=tuple(_decode_update(item) for item in items[1:]),
    )


_SYNC, _STREAM_PING, _STREAM_ACK = 0, 1, 2


def encode_sync(message: SyncMessage | StreamPing | StreamAck) -> bytes:
    """Encode a message for the reliable channel: ``[version, sender, kind, ...]``."""
    if isinstance(message, StreamPing):
        return msgpack.packb([PROTOCOL_VERSION, message.sender, _STREAM_PING, message.seq, message.target])
    if isinstance(message, StreamAck):
        return msgpack.packb([PROTOCOL_VERSION, message.sender, _STREAM_ACK, message.seq])
    records = [
        [r.node, r.address[0], r.address[1], r.tags, r.incarnation, _STATE_CODES[r.state]] for r in message.members
    ]
    return msgpack.packb([PROTOCOL_VERSION, message.sender, _SYNC, message.response, message.join, records])


def decode_sync(data: bytes) -> SyncMessage | StreamPing | StreamAck:
    """Decode a message of the reliable channel; raises :class:`SwimDecodeError`."""
    if len(data) > MAX_SYNC_SIZE:
        raise SwimDecodeError(f"sync message of {len(data)} bytes exceeds the {MAX_SYNC_SIZE}-byte limit")
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_reject_ext)
    except SwimDecodeError:
        raise
    except Exception as exc:
        raise SwimDecodeError(f"sync message is not valid msgpack: {exc}") from None
    if type(value) is not list or len(value) < 3:
        raise SwimDecodeError(f"sync message must be an array of at least 3 fields, got {_show(value)}")
    _check_version(value[0])
    sender = _str(value[1], "sender")
    kind = _code(value[2])
    if kind == _STREAM_PING:
        f = _fields(value, 5, "stream ping")
        return StreamPing(sender=sender, seq=_int(f[3], "seq"), target=_str(f[4], "target"))
    if kind == _STREAM_ACK:
        f = _fields(value, 4, "stream ack")
        return StreamAck(sender=sender, seq=_int(f[3], "seq"))
    if kind != _SYNC:
        raise SwimDecodeError(f"unknown sync message kind {_show(kind)}")
    f = _fields(value, 6, "sync message")
    if type(f[3]) is not bool or type(f[4]) is not bool or type(f[5]) is not list:
        raise SwimDecodeError("sync message flags or member list have the wrong type")
    members = []
    for item in f[5]:
        r = _fields(item, 6, "member record")
        state = _STATES.get(_code(r[5]))
        if state is None:
            raise SwimDecodeError(f"unknown member state code {_show(r[5])}")
        members.append(
            MemberRecord(
                node=_str(r[0], "node"),
                address=(_str(r[1], "host"), _port(r[2])),
                tags=_tags(r[3]),
                incarnation=_int(r[4], "incarnation"),
                state=state,
            )
        )
    return SyncMessage(sender=sender, response=f[3], join=f[4], members=tuple(members))
