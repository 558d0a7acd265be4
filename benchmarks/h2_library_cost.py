"""CPU per call of the h2 library alone, both sides in one process, no I/O.

Why the tcp transport writes its own HTTP/2 framing (docs/transport.md, "Why
HTTP/2, and why not the h2 library"): two ``h2.connection.H2Connection``s,
client and server, exchange 64 concurrent echoes of an 84-byte body (the
size of an rpcnet 64-byte call) per round, with the same settings the
transport uses (header validation and normalisation off). Prints the CPU per
call for both sides together.

    .venv/bin/python benchmarks/h2_library_cost.py
"""

from __future__ import annotations

import time

import h2.config
import h2.connection
import h2.events
import h2.settings

CALLERS = 64
BODY = b"x" * 84
REQUEST = [(b":method", b"POST"), (b":scheme", b"https"), (b":path", b"/"), (b":authority", b"localhost")]
RESPONSE = [(b":status", b"200")]


def _configuration(client: bool) -> h2.config.H2Configuration:
    return h2.config.H2Configuration(
        client_side=client, header_encoding=None, validate_outbound_headers=False, validate_inbound_headers=False,
        normalize_outbound_headers=False, normalize_inbound_headers=False,
    )


def _pair() -> tuple[h2.connection.H2Connection, h2.connection.H2Connection]:
    client, server = h2.connection.H2Connection(_configuration(True)), h2.connection.H2Connection(_configuration(False))
    client.initiate_connection()
    server.initiate_connection()
    server.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def _round(client: h2.connection.H2Connection, server: h2.connection.H2Connection) -> None:
    for _ in range(CALLERS):
        stream_id = client.get_next_available_stream_id()
        client.send_headers(stream_id, REQUEST)
        client.send_data(stream_id, BODY, end_stream=True)
    for event in server.receive_data(client.data_to_send()):
        if isinstance(event, h2.events.DataReceived):
            server.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            server.send_headers(event.stream_id, RESPONSE)
            server.send_data(event.stream_id, BODY, end_stream=True)
    for event in client.receive_data(server.data_to_send()):
        if isinstance(event, h2.events.DataReceived):
            client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)


def main(rounds: int = 300) -> None:
    client, server = _pair()
    for _ in range(50):
        _round(client, server)
    started = time.process_time()
    for _ in range(rounds):
        _round(client, server)
    elapsed = time.process_time() - started
    print(f"h2 {h2.__version__}: {elapsed / (rounds * CALLERS) * 1e6:.0f} us of CPU per call, client and server together")


if __name__ == "__main__":
    main()
