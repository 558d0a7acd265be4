"""How the aioquic backend schedules stream frames into packets.

Sans-IO: a client and a server connection of the backend's own class hand
each other datagrams in memory, with an explicit clock, so the counts below
depend only on the code.
"""

from __future__ import annotations

from typing import Any

from aioquic.quic.connection import QuicConnection
from rpcnet_quic import QuicOptions
from rpcnet_quic.backend import AioquicBackend

from rpcnet.rpc.protocol import ALPN
from rpcnet.testing.tls_conformance import Certs

CLIENT = ("127.0.0.1", 40000)
SERVER = ("127.0.0.1", 40001)
RTT = 0.002


class Pair:
    """A handshaken client and server, and the time they share."""

    def __init__(self, certs: Certs, options: QuicOptions) -> None:
        backend = AioquicBackend()
        self.backend = backend
        self.now = 1000.0
        self.client = backend.client_connection(options, certs.client_tls(), "localhost", ALPN)
        self.client.connect(SERVER, now=self.now)
        configuration = backend.server_configuration(options, certs.server_tls(), ALPN)
        self.server = backend.server_connection(
            configuration, options, original_destination_cid=self.client._peer_cid.cid,
            retry_source_cid=None, request_client_certificate=False, reset_token=lambda cid: bytes(16),
        )
        self.settle()
        assert self.client._handshake_complete and self.server._handshake_complete

    def carry(self, sender: Any, receiver: Any, source: tuple[str, int], *, drop: bool = False) -> list[bytes]:
        """Hand the datagrams ``sender`` has to send to ``receiver`` (or drop them)."""
        datagrams = [data for data, _ in sender.datagrams_to_send(now=self.now)]
        if not drop:
            for data in datagrams:
                receiver.receive_datagram(data, source, now=self.now)
        return datagrams

    def step(self) -> int:
        """One round trip: each side sends what it has, timers that are due fire."""
        self.now += RTT / 2
        sent = len(self.carry(self.client, self.server, CLIENT))
        self.now += RTT / 2
        sent += len(self.carry(self.server, self.client, SERVER))
        for quic in (self.client, self.server):
            timer = quic.get_timer()
            if timer is not None and timer <= self.now:
                quic.handle_timer(now=self.now)
        return sent

    def settle(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            if not self.step():
                return


def _received(quic: QuicConnection) -> dict[int, int]:
    counts: dict[int, int] = {}
    event = quic.next_event()
    while event is not None:
        data = getattr(event, "data", None)
        if data is not None:
            counts[event.stream_id] = counts.get(event.stream_id, 0) + len(data)
        event = quic.next_event()
    return counts


def test_a_packet_offers_a_few_of_many_sending_streams_and_every_stream_arrives(certs: Certs) -> None:
    # 100 streams each with 64 KiB to send: aioquic alone offers every one of
    # them to every packet it builds (about 100 offers a packet).
    pair = Pair(certs, QuicOptions(max_streams=128))
    offers = 0
    write = pair.client._write_stream_frame

    def counting(*args: Any, **kwargs: Any) -> int:
        nonlocal offers
        offers += 1
        return write(*args, **kwargs)

    pair.client._write_stream_frame = counting
    size = 64 * 1024
    ids = []
    for _ in range(100):
        stream_id = pair.client.get_next_available_stream_id()
        pair.client.send_stream_data(stream_id, b"x" * size, end_stream=True)
        ids.append(stream_id)
    received: dict[int, int] = {}
    packets = 0
    for _ in range(5000):
        sent = pair.carry(pair.client, pair.server, CLIENT)
        packets += len(sent)
        for stream_id, count in _received(pair.server).items():
            received[stream_id] = received.get(stream_id, 0) + count
            # The server reads everything: its credit follows consumption.
            pair.backend.grant_stream_credit(pair.server, stream_id, received[stream_id] + 1024 * 1024)
        pair.backend.grant_connection_credit(pair.server, 0)
        pair.now += RTT / 2
        pair.carry(pair.server, pair.client, SERVER)
        pair.now += RTT / 2
        timer = pair.client.get_timer()
        if timer is not None and timer <= pair.now:
            pair.client.handle_timer(now=pair.now)
        if all(received.get(stream_id) == size for stream_id in ids):
            break
    assert received == {stream_id: size for stream_id in ids}
    assert packets >= 100 * size // 1500
    assert offers / packets < 8, f"{offers} stream offers for {packets} packets"  # before: about 100


def test_a_raised_stream_limit_is_announced_and_sent_again_when_lost(certs: Certs) -> None:
    pair = Pair(certs, QuicOptions(stream_window=64 * 1024))
    stream_id = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(stream_id, b"x" * 1000)
    pair.settle()
    assert _received(pair.server) == {stream_id: 1000}
    client_stream = pair.client._streams[stream_id]
    assert client_stream.max_stream_data_remote == 64 * 1024

    pair.backend.grant_stream_credit(pair.server, stream_id, 200 * 1024)
    lost = pair.carry(pair.server, pair.client, SERVER, drop=True)
    assert lost, "the raised limit was not sent"
    assert client_stream.max_stream_data_remote == 64 * 1024
    # The loss is found (a later packet acknowledged, or the probe timeout)
    # and the limit goes out again.
    pair.client.send_stream_data(stream_id, b"y" * 10)
    for _ in range(200):
        pair.step()
        if client_stream.max_stream_data_remote == 200 * 1024:
            break
    assert client_stream.max_stream_data_remote == 200 * 1024


def test_finished_streams_are_discarded_and_their_credit_returns(certs: Certs) -> None:
    pair = Pair(certs, QuicOptions(max_streams=16))
    for _round in range(3):  # 48 streams through a credit of 16
        ids = []
        for _ in range(16):
            stream_id = pair.client.get_next_available_stream_id()
            assert stream_id // 4 < pair.client._remote_max_streams_bidi, "no stream credit came back"
            pair.client.send_stream_data(stream_id, b"ping", end_stream=True)
            ids.append(stream_id)
        pair.settle()
        assert set(_received(pair.server)) == set(ids)
        for stream_id in ids:
            pair.server.send_stream_data(stream_id, b"pong", end_stream=True)
        pair.settle()
        assert set(_received(pair.client)) == set(ids)
        assert not pair.client._streams and not pair.server._streams
