"""The SWIM wire codec: round trips, the wire layout, and hostile input."""

from __future__ import annotations

import tracemalloc

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rpcnet_swim import codec
from rpcnet_swim.messages import (
    Ack,
    Alive,
    Dead,
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
)

from rpcnet.errors import SerializationError
from rpcnet.membership import MemberState

DIRECT_MESSAGES = [
    None,
    Ping(seq=1, target="t"),
    PingReq(seq=2, target="t", target_address=("h", 2), nack=False),
    PingReq(seq=2**32, target="t", target_address=("10.0.0.1", 0), nack=True),
    Ack(seq=3),
    Nack(seq=4),
    Heartbeat(),
]
UPDATES = (
    Alive(node="a", incarnation=3, address=("::1", 65535), tags={"k": "v", "zone": "eu-west-1a"}),
    Alive(node="é-ü-節点", incarnation=0, address=("h", 1)),
    Suspect(node="b", incarnation=0, source="c"),
    Dead(node="d", incarnation=9, source="d"),
    Dead(node="d", incarnation=2**63, source="x"),
)
SYNC = SyncMessage(
    sender="peer",
    response=False,
    join=True,
    members=tuple(
        MemberRecord(node=f"n{i}", address=("10.0.0.9", 7000 + i), tags={"i": str(i)}, incarnation=i, state=state)
        for i, state in enumerate(MemberState)
    ),
)


def rejected(decode, data: bytes, match: str | None = None) -> codec.SwimDecodeError:
    with pytest.raises(codec.SwimDecodeError, match=match) as info:
        decode(data)
    return info.value


# -- round trips ----------------------------------------------------------------


@pytest.mark.parametrize("message", DIRECT_MESSAGES, ids=repr)
def test_every_direct_message_round_trips_with_every_update(message) -> None:
    original = Packet(sender="s", message=message, updates=UPDATES)
    assert codec.decode_packet(codec.encode_packet(original)) == original


@pytest.mark.parametrize("message", DIRECT_MESSAGES, ids=repr)
def test_a_datagram_without_updates_round_trips(message) -> None:
    original = Packet(sender="s", message=message)
    assert codec.decode_packet(codec.encode_packet(original)) == original


def test_tags_survive_the_round_trip() -> None:
    # Tags do not take part in Alive's equality; check them on their own.
    (decoded,) = codec.decode_packet(codec.encode_packet(Packet(sender="s", updates=UPDATES[:1]))).updates
    assert decoded.tags == {"k": "v", "zone": "eu-west-1a"}


@pytest.mark.parametrize(
    "message",
    [
        SYNC,
        SyncMessage(sender="me", response=True),
        SyncMessage(sender="me", response=False, join=False, members=SYNC.members[:1]),
        StreamPing(sender="me", seq=7, target="you"),
        StreamAck(sender="you", seq=7),
    ],
    ids=lambda m: type(m).__name__,
)
def test_every_reliable_channel_message_round_trips(message) -> None:
    decoded = codec.decode_sync(codec.encode_sync(message))
    assert decoded == message
    if isinstance(message, SyncMessage):
        assert [r.tags for r in decoded.members] == [r.tags for r in message.members]


def test_every_member_state_crosses_a_sync() -> None:
    decoded = codec.decode_sync(codec.encode_sync(SYNC))
    assert [r.state for r in decoded.members] == list(MemberState)


# -- the wire layout ------------------------------------------------------------------


def test_datagram_is_the_header_followed_by_the_updates_encoded_once() -> None:
    # The core encodes each update when it is queued and fills a datagram by adding lengths.
    header = codec.encode_header("s", Ping(seq=1, target="t"))
    updates = [codec.encode_update(u) for u in UPDATES]
    assert codec.encode_packet(Packet(sender="s", message=Ping(seq=1, target="t"), updates=UPDATES)) == header + b"".join(updates)
    assert codec.decode_packet(header + b"".join(updates[1:3])).updates == UPDATES[1:3]


@pytest.mark.parametrize(
    ("message", "fields"),
    [
        (None, None),
        (Ping(seq=5, target="t"), [1, 5, "t"]),
        (PingReq(seq=5, target="t", target_address=("h", 9), nack=True), [2, 5, "t", "h", 9, True]),
        (Ack(seq=5), [3, 5]),
        (Ack(seq=5, unknown_sender=True), [3, 5, True]),
        (Nack(seq=5), [4, 5]),
        (Heartbeat(), [5]),
    ],
    ids=repr,
)
def test_header_layout_is_stable(message, fields) -> None:
    # Nodes of different versions share a cluster: the type codes are the protocol.
    assert msgpack.unpackb(codec.encode_header("s", message)) == [codec.PROTOCOL_VERSION, "s", fields]


@pytest.mark.parametrize(
    ("update", "fields"),
    [
        (Alive(node="n", incarnation=2, address=("h", 9), tags={"a": "b"}), [10, "n", 2, "h", 9, {"a": "b"}]),
        (Suspect(node="n", incarnation=2, source="s"), [11, "n", 2, "s"]),
        (Dead(node="n", incarnation=2, source="n"), [12, "n", 2, "n"]),
    ],
    ids=repr,
)
def test_update_layout_is_stable(update, fields) -> None:
    assert msgpack.unpackb(codec.encode_update(update)) == fields


def test_reliable_channel_layout_is_stable() -> None:
    assert msgpack.unpackb(codec.encode_sync(StreamPing(sender="a", seq=3, target="b"))) == [2, "a", 1, 3, "b"]
    assert msgpack.unpackb(codec.encode_sync(StreamAck(sender="b", seq=3))) == [2, "b", 2, 3]
    record = MemberRecord(node="n", address=("h", 9), tags={}, incarnation=4, state=MemberState.LEFT)
    sync = SyncMessage(sender="a", response=True, join=False, members=(record,))
    assert msgpack.unpackb(codec.encode_sync(sync)) == [2, "a", 0, True, False, [["n", "h", 9, {}, 4, 3]]]


def test_the_previous_protocol_is_refused_naming_both_versions() -> None:
    """rpcnet 0.1 spoke protocol 1 (no unknown-sender flag); its datagrams and
    syncs are refused with an error that names both versions, and 0.1 says
    "protocol version 2 is not supported (expected 1)" of ours."""
    old_datagram = msgpack.packb([1, "old", [1, 5, "me"]])
    old_sync = msgpack.packb([1, "old", 0, False, True, [["old", "h", 9, {}, 0, 0]]])
    for decode, data in ((codec.decode_packet, old_datagram), (codec.decode_sync, old_sync)):
        error = rejected(decode, data, "protocol version 1 is not supported")
        assert "rpcnet 0.1" in str(error) and f"this node protocol {codec.PROTOCOL_VERSION}" in str(error)


def test_encoding_something_that_is_not_a_swim_message_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        codec.encode_header("s", Suspect(node="n", incarnation=0, source="s"))  # an update, not a message
    with pytest.raises(TypeError):
        codec.encode_update(Ping(seq=1, target="t"))


# -- property: round trips --------------------------------------------------------------

names = st.text(min_size=1, max_size=12)
counters = st.integers(min_value=0, max_value=2**64 - 1)
addresses = st.tuples(names, st.integers(min_value=0, max_value=65535))
tag_maps = st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4)
direct_messages = st.one_of(
    st.none(),
    st.builds(Ping, seq=counters, target=names),
    st.builds(PingReq, seq=counters, target=names, target_address=addresses, nack=st.booleans()),
    st.builds(Ack, seq=counters),
    st.builds(Nack, seq=counters),
    st.builds(Heartbeat),
)
updates = st.one_of(
    st.builds(Alive, node=names, incarnation=counters, address=addresses, tags=tag_maps),
    st.builds(Suspect, node=names, incarnation=counters, source=names),
    st.builds(Dead, node=names, incarnation=counters, source=names),
)
records = st.builds(
    MemberRecord, node=names, address=addresses, tags=tag_maps, incarnation=counters, state=st.sampled_from(MemberState)
)
reliable_messages = st.one_of(
    st.builds(SyncMessage, sender=names, response=st.booleans(), join=st.booleans(), members=st.lists(records, max_size=5).map(tuple)),
    st.builds(StreamPing, sender=names, seq=counters, target=names),
    st.builds(StreamAck, sender=names, seq=counters),
)


@given(st.builds(Packet, sender=names, message=direct_messages, updates=st.lists(updates, max_size=6).map(tuple)))
def test_any_packet_round_trips(packet: Packet) -> None:
    decoded = codec.decode_packet(codec.encode_packet(packet))
    assert decoded == packet
    assert [getattr(u, "tags", None) for u in decoded.updates] == [getattr(u, "tags", None) for u in packet.updates]


@given(reliable_messages)
def test_any_reliable_channel_message_round_trips(message) -> None:
    decoded = codec.decode_sync(codec.encode_sync(message))
    assert decoded == message
    if isinstance(message, SyncMessage):
        assert [r.tags for r in decoded.members] == [r.tags for r in message.members]


# -- hostile input: datagrams ----------------------------------------------------------------


def test_decode_errors_are_the_projects_serialization_errors() -> None:
    assert issubclass(codec.SwimDecodeError, SerializationError)


def test_empty_datagram_is_rejected() -> None:
    rejected(codec.decode_packet, b"", "empty")


def test_every_truncation_of_a_header_is_rejected() -> None:
    for message in DIRECT_MESSAGES:
        header = codec.encode_header("sender", message)
        for cut in range(len(header)):
            rejected(codec.decode_packet, header[:cut])


def test_a_datagram_cut_inside_its_last_update_is_rejected() -> None:
    header = codec.encode_header("s", Ack(seq=1))
    update = codec.encode_update(Suspect(node="n", incarnation=1, source="x"))
    for cut in range(1, len(update)):
        rejected(codec.decode_packet, header + update + update[:cut])


@pytest.mark.parametrize(
    "value",
    [
        None,  # header not an array
        [2, "s"],  # header too short
        [2, "s", None, None],  # header too long
        [3, "s", None],  # unknown protocol version
        [0, "s", None],
        [2, "", None],  # empty sender
        [2, 7, None],  # sender not a string
        [2, b"s", None],  # sender as bytes
        [2, "s", []],  # empty message
        [2, "s", "ping"],  # message not an array
        [2, "s", [99]],  # unknown message type
        [2, "s", [10, "n", 1, "h", 1, {}]],  # an update code in the message slot
        [2, "s", [1, -1, "t"]],  # negative sequence number
        [2, "s", [1, "1", "t"]],  # sequence number as a string
        [2, "s", [1, True, "t"]],  # sequence number as a boolean
        [2, "s", [1, 1.0, "t"]],  # sequence number as a float
        [2, "s", [1, 1, ""]],  # empty target
        [2, "s", [1, 1]],  # ping missing its target
        [2, "s", [1, 1, "t", "extra"]],
        [2, "s", [3]],  # ack missing its sequence number
        [2, "s", [4, None]],
        [2, "s", [5, 1]],  # heartbeat with a field
        [2, "s", [2, 1, "t", "h", 70000, True]],  # port out of range
        [2, "s", [2, 1, "t", "h", -1, True]],
        [2, "s", [2, 1, "t", "h", True, True]],  # port as a boolean
        [2, "s", [2, 1, "t", "", 1, True]],  # empty host
        [2, "s", [2, 1, "t", "h", 1, 1]],  # nack flag not a boolean
        [2, "s", [2, 1, "t", "h", 1]],
    ],
    ids=repr,
)
def test_malformed_headers_are_rejected(value) -> None:
    rejected(codec.decode_packet, msgpack.packb(value))


@pytest.mark.parametrize(
    "value",
    [
        5,  # not an array
        [],
        [99, "n", 1, "s"],  # unknown update type
        [1, 1, "t"],  # a message code in an update slot
        [10, "n", 1, "h", 1],  # alive missing its tags
        [10, "n", 1, "h", 1, {}, "extra"],
        [10, "n", 1, "h", 1, []],  # tags not a map
        [10, "n", 1, "h", 1, {"k": 1}],  # tag value not a string
        [10, "n", 1, "h", 1, {"k": None}],
        [10, "n", -1, "h", 1, {}],  # negative incarnation
        [10, "", 1, "h", 1, {}],  # empty node
        [10, "n", 1, "h", 65536, {}],
        [11, "n", 1],  # suspect missing its source
        [11, "n", 1, ""],
        [11, "n", "1", "s"],
        [12, None, 1, "s"],
        [12, "n", 1, "s", "extra"],
    ],
    ids=repr,
)
def test_malformed_updates_are_rejected(value) -> None:
    data = codec.encode_header("s", None) + codec.encode_update(Suspect(node="ok", incarnation=0, source="x")) + msgpack.packb(value)
    rejected(codec.decode_packet, data)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\xc1", "not valid msgpack"),  # a byte msgpack never uses
        (b"\x93\x01\xa2\xff\xfe\xc0", "not valid msgpack"),  # invalid UTF-8 in the sender
        (msgpack.packb([2, "s", None]) + msgpack.packb([10, "n", 1, "h", 1, {1: "x"}]), "not valid msgpack"),  # int map key
        (b"\xdd\xff\xff\xff\xff", "not valid msgpack"),  # claims a 4-billion-element array
        (b"\xdf\xff\xff\xff\xff", "not valid msgpack"),  # claims a 4-billion-entry map
        (b"\x93\x01\xdb\xff\xff\xff\xff", None),  # claims a 4 GiB sender
        (b"\x93\x01\xc6\xff\xff\xff\xff", None),  # claims a 4 GiB binary
    ],
    ids=["reserved-byte", "bad-utf8", "int-map-key", "huge-array", "huge-map", "huge-str", "huge-bin"],
)
def test_garbage_and_oversize_claims_in_a_datagram_are_rejected(data: bytes, match: str | None) -> None:
    rejected(codec.decode_packet, data, match)


@pytest.mark.parametrize(
    "data",
    [
        codec.encode_packet(Packet(sender="s", message=Ping(seq=1, target="t"), updates=UPDATES * 12)),
        b"\xdd" + (10_000_000).to_bytes(4, "big"),  # claims ten million elements
        b"\xdf" + (10_000_000).to_bytes(4, "big"),
        b"\x93\x01\xdb" + (50_000_000).to_bytes(4, "big"),  # claims a 50 MB sender
    ],
    ids=["full-datagram", "array-claim", "map-claim", "str-claim"],
)
def test_decoding_a_datagram_allocates_on_the_scale_of_the_datagram(data: bytes) -> None:
    # Decoding is bounded by the datagram's own size, so a flood of small
    # hostile datagrams cannot make each decode cost megabytes.
    tracemalloc.start()
    try:
        try:
            codec.decode_packet(data)
        except codec.SwimDecodeError:
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, peak


@pytest.mark.parametrize(
    "value",
    [
        [2, "s", [1, msgpack.ExtType(5, b"x"), "t"]],
        [msgpack.ExtType(0, b""), "s", None],
        [2, "s", None, msgpack.ExtType(127, b"\x00" * 16)],
    ],
    ids=["in-message", "as-version", "in-header"],
)
def test_msgpack_extension_types_are_refused_in_a_datagram(value) -> None:
    rejected(codec.decode_packet, msgpack.packb(value), "extension type")


def test_msgpack_extension_type_in_an_update_is_refused() -> None:
    data = codec.encode_header("s", None) + msgpack.packb([10, "n", 1, "h", 1, {"k": msgpack.ExtType(1, b"v")}])
    rejected(codec.decode_packet, data, "extension type")


@pytest.mark.parametrize(
    "value",
    [
        [2, "s", [1, msgpack.Timestamp(1, 0), "t"]],
        [1, msgpack.Timestamp(1, 0), None],
        [msgpack.Timestamp(1, 0), "s", None],
    ],
    ids=["seq", "sender", "version"],
)
def test_msgpack_timestamps_are_not_taken_for_protocol_fields(value) -> None:
    # msgpack decodes its reserved timestamp extension itself; it must still not pass a field check.
    rejected(codec.decode_packet, msgpack.packb(value))


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb([2, "s", None]) + b"\x91" * 1000 + b"\x01",  # as an update
        b"\x93\x01\xa1s\x93\x01\x01" + b"\x91" * 1000 + b"\x01",  # as a ping's target
    ],
    ids=["update", "target"],
)
def test_deeply_nested_datagram_is_rejected(data: bytes) -> None:
    rejected(codec.decode_packet, data)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_only_the_decode_error(data: bytes) -> None:
    try:
        packet = codec.decode_packet(data)
    except codec.SwimDecodeError:
        return
    assert isinstance(packet, Packet)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats() | st.text(max_size=5) | st.binary(max_size=5),
    lambda children: st.lists(children, max_size=7) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=20,
)


@given(
    st.one_of(st.just(1), msgpack_values),
    st.one_of(st.just("s"), msgpack_values),
    st.one_of(st.sampled_from([1, 2, 3, 4, 5]), msgpack_values),
    st.lists(msgpack_values, max_size=6),
    st.lists(st.one_of(st.sampled_from([10, 11, 12]), msgpack_values), max_size=3),
    st.lists(msgpack_values, max_size=6),
)
def test_well_formed_msgpack_of_the_wrong_shape_raises_only_the_decode_error(
    version, sender, code, message_fields, update_codes, update_fields
) -> None:
    # Right-looking type codes with arbitrary fields reach each field check.
    items = [[version, sender, [code, *message_fields]]] + [[update_code, *update_fields] for update_code in update_codes]
    data = b"".join(msgpack.packb(item) for item in items)
    try:
        packet = codec.decode_packet(data)
    except codec.SwimDecodeError:
        return
    assert codec.decode_packet(codec.encode_packet(packet)) == packet, "whatever is accepted is a valid packet"


# -- hostile input: the reliable channel -------------------------------------------------------


def test_every_truncation_of_a_sync_message_is_rejected() -> None:
    for message in (SYNC, StreamPing(sender="me", seq=7, target="you"), StreamAck(sender="you", seq=7)):
        data = codec.encode_sync(message)
        for cut in range(len(data)):
            rejected(codec.decode_sync, data[:cut])


def test_trailing_bytes_after_a_sync_message_are_rejected() -> None:
    rejected(codec.decode_sync, codec.encode_sync(StreamAck(sender="you", seq=7)) + b"\x00", "not valid msgpack")


def test_sync_message_over_the_size_limit_is_rejected_before_parsing() -> None:
    record = MemberRecord(node="n", address=("h", 1), tags={"blob": "x" * codec.MAX_SYNC_SIZE})
    data = codec.encode_sync(SyncMessage(sender="s", response=True, members=(record,)))
    assert len(data) > codec.MAX_SYNC_SIZE
    rejected(codec.decode_sync, data, "exceeds")
    # Just under the limit is still fine.
    room = codec.MAX_SYNC_SIZE - (len(data) - codec.MAX_SYNC_SIZE)
    record = MemberRecord(node="n", address=("h", 1), tags={"blob": "x" * room})
    data = codec.encode_sync(SyncMessage(sender="s", response=True, members=(record,)))
    assert len(data) <= codec.MAX_SYNC_SIZE
    assert codec.decode_sync(data).members[0].tags["blob"] == "x" * room


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        [2, "s"],  # fewer than 3 fields
        [3, "s", 2, 1],  # unknown protocol version
        [2, "", 2, 1],  # empty sender
        [2, "s", 9],  # unknown kind
        [2, "s", "0", True, False, []],  # kind as a string
        [2, "s", 1, 1],  # stream ping missing its target
        [2, "s", 1, 1, ""],
        [2, "s", 1, -1, "t"],
        [2, "s", 2],  # stream ack missing its sequence number
        [2, "s", 2, 1, "extra"],
        [2, "s", 2, "1"],
        [2, "s", 0, True, False],  # sync missing its members
        [2, "s", 0, 1, False, []],  # response flag not a boolean
        [2, "s", 0, True, None, []],  # join flag not a boolean
        [2, "s", 0, True, False, {}],  # members not an array
        [2, "s", 0, True, False, [None]],  # member record not an array
        [2, "s", 0, True, False, [["n", "h", 1, {}, 0]]],  # record missing its state
        [2, "s", 0, True, False, [["n", "h", 1, {}, 0, 9]]],  # unknown state code
        [2, "s", 0, True, False, [["n", "h", 1, {}, 0, -1]]],
        [2, "s", 0, True, False, [["n", "h", 1, {}, 0, "alive"]]],
        [2, "s", 0, True, False, [["", "h", 1, {}, 0, 0]]],
        [2, "s", 0, True, False, [["n", "h", 99999, {}, 0, 0]]],
        [1, "s", 0, True, False, [["n", "h", 1, {"k": 1}, 0, 0]]],
        [1, "s", 0, True, False, [["n", "h", 1, {}, -3, 0]]],
        [1, "s", 0, True, False, [["n", "h", 1, {}, 0, 0], ["n", "h", 1, {}, 0, 0, 0]]],
    ],
    ids=repr,
)
def test_malformed_reliable_channel_messages_are_rejected(value) -> None:
    rejected(codec.decode_sync, msgpack.packb(value))


@pytest.mark.parametrize(
    "value",
    [
        [1, "s", msgpack.ExtType(5, b"x")],
        [1, "s", 0, True, False, [["n", "h", 1, {"k": msgpack.ExtType(1, b"v")}, 0, 0]]],
    ],
    ids=["as-kind", "in-tags"],
)
def test_msgpack_extension_types_are_refused_on_the_reliable_channel(value) -> None:
    rejected(codec.decode_sync, msgpack.packb(value), "extension type")


@pytest.mark.parametrize("state", [[0], {}], ids=["array", "map"])
def test_unhashable_member_state_code_is_rejected(state) -> None:
    rejected(codec.decode_sync, msgpack.packb([1, "s", 0, True, False, [["n", "h", 1, {}, 0, state]]]))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_on_the_reliable_channel_decode_or_raise_only_the_decode_error(data: bytes) -> None:
    try:
        codec.decode_sync(data)
    except codec.SwimDecodeError:
        pass


@pytest.mark.parametrize("impostor", [True, 1.0])
def test_a_code_that_merely_compares_equal_to_an_int_is_not_a_code(impostor):
    # True == 1 and 1.0 == 1 in Python; on the wire they are other types.
    data = msgpack.packb([impostor, "s", [impostor, 1, "t"]])
    with pytest.raises(codec.SwimDecodeError):
        codec.decode_packet(data)
