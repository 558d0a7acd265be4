"""The builtin serializers, reached by name through the plugin host."""

from __future__ import annotations

import datetime

import msgpack
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcnet import make_plugin_manager
from rpcnet.errors import SerializationError

NAMES = ["msgpack", "json"]
INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1


def serializer(name: str, **options):
    return make_plugin_manager(entry_points=False).create("serializer", name, options)


@pytest.fixture(params=NAMES)
def ser(request):
    return serializer(request.param)


def values(json: bool) -> st.SearchStrategy:
    """Values both serializers promise to round-trip (tuples come back as
    lists, so only lists are generated). JSON: no NaN/inf (JSON has none) and
    no ``{"$bytes": <str>}`` dicts (the reserved bytes marker)."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=INT64_MIN, max_value=UINT64_MAX)
        | st.floats(allow_nan=False, allow_infinity=not json)
        | st.text()
        | st.binary()
    )
    keys = st.text().filter(lambda k: k != "$bytes") if json else st.text() | st.integers(-1000, 1000)
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
        max_leaves=30,
    )


@given(values(json=False))
def test_msgpack_round_trips(value):
    s = serializer("msgpack")
    assert s.loads(s.dumps(value)) == value


@given(values(json=True))
def test_json_round_trips(value):
    s = serializer("json")
    assert s.loads(s.dumps(value)) == value


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x00\xff" * 100,
        {"blob": b"\x89PNG", "list": [b"a", {"inner": b"b"}]},
        "héllo wörld 🚀 \u0000 \u2028 日本語",
        {"ключ": ["значение", "🙂"]},
        [[[[[]]]]],
        {"nested": {"deeper": {"deepest": [1, 2.5, None, True, "x"]}}},
        UINT64_MAX,
        INT64_MIN,
        [UINT64_MAX, INT64_MIN, 0, -1],
        1.5e308,
    ],
    ids=["empty-bytes", "binary", "nested-bytes", "unicode", "unicode-keys", "deep-lists",
         "nested-dicts", "uint64-max", "int64-min", "int-edges", "big-float"],
)
def test_round_trip_examples(ser, value):
    assert ser.loads(ser.dumps(value)) == value


def test_bytes_come_back_as_bytes(ser):
    decoded = ser.loads(ser.dumps({"data": b"\x00\x01"}))
    assert type(decoded["data"]) is bytes


def test_tuples_come_back_as_lists(ser):
    assert ser.loads(ser.dumps((1, (2, 3)))) == [1, [2, 3]]


def test_msgpack_keeps_non_string_keys_and_timestamps():
    s = serializer("msgpack")
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)
    assert s.loads(s.dumps({1: "one", b"k": moment})) == {1: "one", b"k": moment}


def test_json_sends_bytes_as_tagged_base64():
    s = serializer("json")
    assert orjson.loads(s.dumps({"b": b"hi"})) == {"b": {"$bytes": "aGk="}}


def test_json_rejects_invalid_base64_in_a_bytes_marker():
    with pytest.raises(SerializationError, match=r"json: invalid base64 in '\$bytes'"):
        serializer("json").loads(b'{"$bytes": "not base64!"}')


# -- integers beyond 64 bits ------------------------------------------------------


@pytest.mark.parametrize("value", [UINT64_MAX + 1, INT64_MIN - 1, 10**30, [1, 2**70]])
def test_integers_beyond_64_bits_are_refused_clearly(ser, value):
    with pytest.raises(SerializationError, match=rf"^{ser.name}: cannot encode (int|list): .*(range|64-bit)"):
        ser.dumps(value)


# -- size limits ----------------------------------------------------------------


def test_size_limit_when_encoding(ser):
    small = serializer(ser.name, max_size=100)
    exact = small.dumps("x" * 10)
    assert len(exact) < 100
    with pytest.raises(SerializationError) as info:
        small.dumps("x" * 200)
    message = str(info.value)
    assert message.startswith(f"{ser.name}: encoded message is ")
    assert "over the 100-byte limit" in message and "max_size" in message


def test_size_limit_when_decoding(ser):
    big = ser.dumps("y" * 500)
    small = serializer(ser.name, max_size=100)
    with pytest.raises(SerializationError, match=rf"{ser.name}: received message is {len(big)} bytes, over the 100-byte limit"):
        small.loads(big)


def test_a_message_exactly_at_the_limit_passes(ser):
    data = ser.dumps("z" * 50)
    exact = serializer(ser.name, max_size=len(data))
    assert exact.loads(exact.dumps("z" * 50)) == "z" * 50


def test_the_default_limit_is_4_mib(ser):
    assert ser.max_size == 4 * 1024 * 1024


def test_an_invalid_limit_is_a_config_error():
    from rpcnet.errors import ConfigError

    with pytest.raises(ConfigError, match="max_size must be > 0"):
        serializer("msgpack", max_size=0)


# -- bad input ------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 5, 42, 127])
def test_msgpack_rejects_unknown_extension_types(code):
    data = msgpack.packb([1, {"x": msgpack.ExtType(code, b"payload")}])
    with pytest.raises(SerializationError, match=f"msgpack: extension type {code} is not accepted"):
        serializer("msgpack").loads(data)


def test_trailing_garbage_is_rejected(ser):
    data = ser.dumps({"a": 1}) + b"\x00junk"
    with pytest.raises(SerializationError, match=f"^{ser.name}: "):
        ser.loads(data)


def test_msgpack_counts_the_trailing_bytes():
    s = serializer("msgpack")
    with pytest.raises(SerializationError, match="msgpack: 3 trailing bytes after the value"):
        s.loads(s.dumps([1, 2]) + b"abc")


def test_every_truncation_is_rejected(ser):
    data = ser.dumps({"list": [1, 2, 3], "text": "héllo", "blob": b"\x00" * 10, "n": 123456789})
    for cut in range(len(data)):
        with pytest.raises(SerializationError, match=f"^{ser.name}: malformed data"):
            ser.loads(data[:cut])


def test_msgpack_rejects_invalid_utf8_strings():
    with pytest.raises(SerializationError, match="msgpack: malformed data .*utf-8"):
        serializer("msgpack").loads(b"\xa3\xff\xfe\xfd")


def test_msgpack_rejects_the_reserved_type_byte():
    with pytest.raises(SerializationError, match=r"msgpack: malformed data \(invalid type byte\)"):
        serializer("msgpack").loads(b"\xc1")


def test_msgpack_rejects_a_header_announcing_more_than_the_data_holds():
    # An array header claiming 2**32-1 elements must not make it allocate them.
    with pytest.raises(SerializationError, match="msgpack: malformed data"):
        serializer("msgpack").loads(b"\xdd\xff\xff\xff\xff")


def test_json_rejects_invalid_utf8():
    with pytest.raises(SerializationError, match="json: malformed data"):
        serializer("json").loads(b'"\xff"')


@pytest.mark.parametrize("depth", [2000])
def test_deep_nesting_is_an_error_not_a_crash(ser, depth):
    data = (b"\x91" * depth + b"\xc0") if ser.name == "msgpack" else (b"[" * depth + b"]" * depth)
    with pytest.raises(SerializationError, match=f"^{ser.name}: malformed data"):
        ser.loads(data)


def test_moderate_nesting_still_decodes(ser):
    value: list = []
    for _ in range(200):
        value = [value]
    assert ser.loads(ser.dumps(value)) == value


@pytest.mark.parametrize("value", [{1, 2}, object(), "\ud800"], ids=["set", "object", "lone-surrogate"])
def test_values_that_cannot_be_encoded_raise_serialization_error(ser, value):
    with pytest.raises(SerializationError, match=f"^{ser.name}: cannot encode {type(value).__name__}"):
        ser.dumps(value)


@pytest.mark.parametrize("data", ["text", None, 12], ids=["str", "none", "int"])
def test_loads_wants_bytes(ser, data):
    with pytest.raises(SerializationError, match=f"{ser.name}: loads\\(\\) takes bytes, got {type(data).__name__}"):
        ser.loads(data)


def test_loads_accepts_bytearray_and_memoryview(ser):
    data = ser.dumps([1, "a"])
    assert ser.loads(bytearray(data)) == [1, "a"]
    assert ser.loads(memoryview(data)) == [1, "a"]


def test_serialization_error_is_a_value_error():
    assert issubclass(SerializationError, ValueError)


def test_msgpack_encoder_recovers_after_a_failed_value():
    codec = serializer("msgpack")
    with pytest.raises(SerializationError, match="cannot encode dict"):
        codec.dumps({"fine": 1, "bad": object()})
    # The reused encoder holds nothing of the failed value.
    assert codec.loads(codec.dumps({"next": [1, 2]})) == {"next": [1, 2]}


def test_msgpack_serializer_is_safe_to_share_between_threads():
    import concurrent.futures
    import time

    codec = serializer("msgpack")

    class Yielding(datetime.tzinfo):
        # Python code run mid-pack that gives the GIL away, so another thread
        # packs while this one is half done: a Packer shared between threads
        # would mix their bytes.
        def utcoffset(self, dt):
            time.sleep(0)
            return datetime.timedelta(0)

        def dst(self, dt):
            return None

    stamp = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=Yielding())

    def work(worker: int) -> bool:
        for index in range(500):
            value = {"worker": worker, "index": index, "at": stamp, "blob": bytes([worker]) * (index % 50)}
            if codec.loads(codec.dumps(value)) != value:
                return False
        return True

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(4)))


def test_msgpack_encoding_may_reenter_from_python_code_it_runs():
    codec = serializer("msgpack")

    class Nested(datetime.tzinfo):
        # Python code run in the middle of packing a datetime, that packs too.
        def utcoffset(self, dt):
            codec.dumps({"inner": list(range(20))})
            return datetime.timedelta(hours=1)

        def dst(self, dt):
            return None

    stamp = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=Nested())
    decoded = codec.loads(codec.dumps({"at": stamp, "after": "x" * 100}))
    assert decoded["after"] == "x" * 100
    assert decoded["at"] == stamp


def test_msgpack_does_not_keep_a_buffer_grown_by_a_large_value():
    codec = serializer("msgpack")
    codec.dumps(b"small")
    small_packer = codec._local.packer
    codec.dumps(b"x" * (2 * 1024 * 1024))
    # The packer that grew to 2 MiB was dropped, not kept for the next call.
    assert getattr(codec._local, "packer", None) is None
    codec.dumps(b"small again")
    assert codec._local.packer is not small_packer


def test_serializers_survive_pickling(ser):
    import pickle

    copy = pickle.loads(pickle.dumps(ser))
    assert copy.loads(copy.dumps({"k": [1, b"b"]})) == {"k": [1, b"b"]}
