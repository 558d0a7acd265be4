"""What the aioquic backend relies on below aioquic's public API, checked loudly.

rpcnet_quic/backend.py narrows what aioquic's packet loop
(``QuicConnection._write_application``) sees of the connection's streams: it
swaps ``_streams`` for a table that answers ``values()`` and ``pop()`` and
``_streams_queue`` for the streams with work. If an aioquic release touches
those two in any other way, this test names what moved before a connection
fails on it.
"""

from __future__ import annotations

import inspect
import re

from aioquic.quic.connection import QuicConnection
from aioquic.quic.stream import QuicStream, QuicStreamReceiver, QuicStreamSender


def test_the_packet_loop_uses_the_stream_table_only_as_the_backend_expects() -> None:
    source = inspect.getsource(QuicConnection._write_application)
    uses = set(re.findall(r"self\._streams(?:_queue)?\b(?:\.\w+|\[)?", source))
    allowed = {"self._streams.values", "self._streams.pop", "self._streams_queue", "self._streams_queue.extend"}
    assert uses <= allowed, uses
    # The queue is read, then replaced by a new list (which is then extended):
    # the backend reads the new one back after each packet loop.
    assert "self._streams_queue = [" in source
    assert "self._write_stream_limits(" in source and "self._write_stream_frame(" in source


def test_the_stream_state_the_backend_reads_is_still_there() -> None:
    sender = QuicStreamSender(stream_id=0, writable=True)
    for name in ("buffer_is_empty", "reset_pending", "is_finished", "highest_offset",
                 "_pending", "_pending_eof", "_buffer_start", "_buffer_stop"):
        assert hasattr(sender, name), f"QuicStreamSender lost {name}"
    assert len(sender._pending) == 0
    receiver = QuicStreamReceiver(stream_id=0, readable=True)
    for name in ("stop_pending", "is_finished"):
        assert hasattr(receiver, name), f"QuicStreamReceiver lost {name}"
    stream = QuicStream(stream_id=0, max_stream_data_local=10, max_stream_data_remote=10)
    for name in ("max_stream_data_local", "max_stream_data_local_sent", "max_stream_data_remote", "is_blocked"):
        assert hasattr(stream, name), f"QuicStream lost {name}"
    for name in ("_on_max_stream_data_delivery", "_write_connection_limits", "_write_stream_limits",
                 "_write_stream_frame", "_remote_max_data", "_remote_max_data_used"):
        assert name in inspect.getsource(QuicConnection), f"QuicConnection lost {name}"
