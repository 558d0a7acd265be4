"""The one-piece fast paths agree with FrameDecoder on every input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rpcnet.errors import StatusCode
from rpcnet.rpc.protocol import (
    HEADER,
    MESSAGE,
    OK_TRAILER,
    PREFIX,
    RESPONSE_HEADER,
    TRAILER,
    FrameDecoder,
    ProtocolError,
    encode_frame,
    encode_header,
    encode_trailer,
    whole_ok_reply,
    whole_request,
)

LIMIT = 64


def _decoded(data: bytes) -> tuple[list[tuple[int, bytes]], int] | None:
    """Frames FrameDecoder finds and the bytes it holds back, or None if it refuses."""
    decoder = FrameDecoder(LIMIT)
    try:
        frames = decoder.feed(data)
    except ProtocolError:
        return None
    return frames, decoder.pending


frame = st.builds(
    encode_frame,
    st.sampled_from([HEADER, MESSAGE, TRAILER, RESPONSE_HEADER, 0x7F]),
    st.binary(max_size=LIMIT + 8),
)
likely = st.builds(encode_frame, st.sampled_from([HEADER, MESSAGE]), st.binary(max_size=LIMIT + 2))
# Mostly the shapes the fast paths look for, with near misses and noise.
pieces = st.lists(
    st.one_of(likely, likely, st.just(OK_TRAILER), frame, st.binary(max_size=12)), max_size=3
).map(b"".join)


def _complete_frames(data: bytes) -> list[tuple[int, bytes]] | None:
    """The frames of ``data`` if FrameDecoder accepts it whole, with nothing left over."""
    decoded = _decoded(data)
    if decoded is None or decoded[1]:
        return None
    return decoded[0]


@settings(max_examples=1000)
@given(pieces)
def test_whole_request_is_exactly_header_then_one_message(data: bytes) -> None:
    frames = _complete_frames(data)
    expected = None
    if frames is not None and [t for t, _ in frames] == [HEADER, MESSAGE]:
        expected = (frames[0][1], frames[1][1])
    assert whole_request(data, LIMIT) == expected


@settings(max_examples=1000)
@given(pieces)
def test_whole_ok_reply_is_exactly_one_message_then_the_ok_trailer(data: bytes) -> None:
    frames = _complete_frames(data)
    ok = (TRAILER, OK_TRAILER[PREFIX.size :])
    expected = None
    if frames is not None and len(frames) == 2 and frames[0][0] == MESSAGE and frames[1] == ok:
        expected = frames[0][1]
    assert whole_ok_reply(data, LIMIT) == expected


def test_the_usual_shapes_are_recognised() -> None:
    message = encode_frame(MESSAGE, b"payload")
    assert whole_request(encode_header("Echo") + message, LIMIT) == (encode_header("Echo")[PREFIX.size :], b"payload")
    assert whole_ok_reply(message + OK_TRAILER, LIMIT) == b"payload"
    assert whole_ok_reply(encode_frame(MESSAGE, b"") + OK_TRAILER, LIMIT) == b""


def test_anything_else_goes_to_the_frame_decoder() -> None:
    message = encode_frame(MESSAGE, b"payload")
    header = encode_header("Echo")
    # A message over the limit is left to FrameDecoder, which refuses it.
    assert whole_request(header + encode_frame(MESSAGE, b"x" * (LIMIT + 1)), LIMIT) is None
    assert whole_ok_reply(encode_frame(MESSAGE, b"x" * (LIMIT + 1)) + OK_TRAILER, LIMIT) is None
    # Metadata, an error status, a missing or extra frame, a split frame.
    assert whole_ok_reply(encode_frame(RESPONSE_HEADER, b"\x80") + message + OK_TRAILER, LIMIT) is None
    assert whole_ok_reply(message + encode_trailer(StatusCode.NOT_FOUND, "gone"), LIMIT) is None
    assert whole_request(header, LIMIT) is None
    assert whole_request(header + message + message, LIMIT) is None
    assert whole_request((header + message)[:-1], LIMIT) is None
