"""The endpoints' UDP socket: batched reads, the send queue, closing."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from typing import Any

import pytest
from rpcnet_quic.options import QuicOptions
from rpcnet_quic.udp import (
    SEND_QUEUE_LIMIT,
    SOCKET_BUFFER,
    UdpSocket,
    bind_udp_socket,
    connect_udp_socket,
    enable_gro,
    supports_gso,
)

from ..transport_helpers import DEADLINE, until


class Recording:
    """A datagram protocol that notes, for each datagram, the loop turn it arrived in."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.received: list[tuple[bytes, int]] = []
        self.errors: list[OSError] = []
        self.lost = asyncio.get_running_loop().create_future()
        self.turn = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((data, self.turn))

    def error_received(self, exc: OSError) -> None:
        self.errors.append(exc)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set_result(exc)


def _count_turns(protocol: Recording, stop: asyncio.Event) -> None:
    """Advance ``protocol.turn`` once per event-loop iteration until ``stop``."""
    loop = asyncio.get_running_loop()

    def tick() -> None:
        protocol.turn += 1
        if not stop.is_set():
            loop.call_soon(tick)

    loop.call_soon(tick)


@pytest.mark.parametrize(("read_batch", "expected_turns"), [(8, 1), (1, 5)])
async def test_datagrams_that_arrived_together_are_read_in_one_turn(read_batch: int, expected_turns: int) -> None:
    protocol = Recording()
    udp = await bind_udp_socket(protocol, "127.0.0.1", 0, read_batch=read_batch)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stop = asyncio.Event()
    try:
        # Loopback delivers synchronously: all five wait in the socket before
        # the loop runs again.
        for index in range(5):
            sender.sendto(b"d%d" % index, udp.get_extra_info("sockname"))
        _count_turns(protocol, stop)
        await until(lambda: len(protocol.received) == 5)
        assert [data for data, _ in protocol.received] == [b"d0", b"d1", b"d2", b"d3", b"d4"]
        assert len({turn for _, turn in protocol.received}) == expected_turns
    finally:
        stop.set()
        sender.close()
        udp.close()


async def test_a_wake_up_reads_at_most_read_batch_datagrams() -> None:
    protocol = Recording()
    udp = await bind_udp_socket(protocol, "127.0.0.1", 0, read_batch=4)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stop = asyncio.Event()
    try:
        for index in range(10):
            sender.sendto(b"%d" % index, udp.get_extra_info("sockname"))
        _count_turns(protocol, stop)
        await until(lambda: len(protocol.received) == 10)
        per_turn: dict[int, int] = {}
        for _, turn in protocol.received:
            per_turn[turn] = per_turn.get(turn, 0) + 1
        assert max(per_turn.values()) == 4
        assert len(per_turn) == 3  # 4 + 4 + 2
    finally:
        stop.set()
        sender.close()
        udp.close()


def _tiny_buffer_pair() -> tuple[UdpSocket, socket.socket]:
    """A UdpSocket whose sends block (EAGAIN) until the other end reads.

    A Unix datagram socket with a tiny send buffer does that, which loopback
    UDP never does: it exercises the send queue for real.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
    ours.setblocking(False)
    theirs.setblocking(False)
    return UdpSocket(asyncio.get_running_loop(), ours, Recording(), 1), theirs


async def _read_until(sock: socket.socket, count: int) -> list[bytes]:
    """Read datagrams from ``sock`` as they come until ``count`` arrived."""
    received: list[bytes] = []

    def read_all() -> bool:
        while True:
            try:
                received.append(sock.recv(100))
            except BlockingIOError:
                return len(received) >= count

    await until(read_all, timeout=DEADLINE)
    return received


async def test_sends_wait_in_order_while_the_socket_is_full_then_drain() -> None:
    udp, theirs = _tiny_buffer_pair()
    try:
        count = 200
        for index in range(count):
            udp.sendto(b"message %d" % index)
        assert udp._queue, "the send buffer filled up, so some datagrams must be waiting"
        received = await _read_until(theirs, count)
        assert received == [b"message %d" % index for index in range(count)]
        assert udp.dropped == 0 and not udp._queue
    finally:
        udp.close()
        theirs.close()


async def test_a_full_send_queue_drops_and_counts() -> None:
    udp, theirs = _tiny_buffer_pair()
    try:
        total = SEND_QUEUE_LIMIT + 500
        for index in range(total):
            udp.sendto(b"%d" % index)
        assert len(udp._queue) == SEND_QUEUE_LIMIT
        assert udp.dropped > 0
        # The newest datagrams are the ones dropped; everything before them
        # arrives, in order, once the other end reads.
        kept = total - udp.dropped
        received = await _read_until(theirs, kept)
        assert received == [b"%d" % index for index in range(kept)]
    finally:
        udp.close()
        theirs.close()


async def test_close_sends_what_is_queued_first_and_abort_does_not() -> None:
    udp, theirs = _tiny_buffer_pair()
    protocol = udp._protocol
    try:
        for index in range(100):
            udp.sendto(b"last words %d" % index)
        assert udp._queue
        udp.close()
        udp.sendto(b"refused after close")
        received = await _read_until(theirs, 100)
        assert received == [b"last words %d" % index for index in range(100)]
        assert await asyncio.wait_for(protocol.lost, DEADLINE) is None
    finally:
        theirs.close()

    udp, theirs = _tiny_buffer_pair()
    protocol = udp._protocol
    try:
        for index in range(100):
            udp.sendto(b"%d" % index)
        queued = len(udp._queue)
        assert queued
        udp.abort()
        assert await asyncio.wait_for(protocol.lost, DEADLINE) is None
        received = []
        with contextlib.suppress(BlockingIOError):
            while True:
                received.append(theirs.recv(100))
        assert len(received) == 100 - queued  # the queue was dropped
    finally:
        theirs.close()


async def test_a_protocol_that_closes_in_connection_made_leaves_nothing_registered() -> None:
    class ClosesAtOnce(Recording):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.close()

    protocol = ClosesAtOnce()
    udp = await bind_udp_socket(protocol, "127.0.0.1", 0)
    assert await asyncio.wait_for(protocol.lost, DEADLINE) is None
    # No reader stays registered for the closed descriptor (whose number the
    # next socket may reuse).
    selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    assert udp._fd not in selector.get_map()


async def test_close_stops_reading_and_reports_connection_lost() -> None:
    protocol = Recording()
    udp = await bind_udp_socket(protocol, "127.0.0.1", 0)
    address = udp.get_extra_info("sockname")
    udp.close()
    assert udp.is_closing()
    udp.sendto(b"ignored after close", address)  # no error, nothing sent
    assert await asyncio.wait_for(protocol.lost, DEADLINE) is None
    # The port is free again once connection_lost has run.
    again = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        again.bind(address)
    finally:
        again.close()


async def test_port_unreachable_on_a_connected_socket_reaches_error_received() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()
    probe.close()
    protocol = Recording()
    udp = await connect_udp_socket(protocol, socket.AF_INET, closed_port)
    try:
        udp.sendto(b"anyone?")
        await until(lambda: protocol.errors)
        assert isinstance(protocol.errors[0], ConnectionRefusedError)
    finally:
        udp.close()


async def test_binding_a_taken_port_raises_oserror() -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        with pytest.raises(OSError):
            await bind_udp_socket(Recording(), "127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


# -- segmentation offload (GSO on send, GRO on receive) ----------------------------

#: Runs of equal sizes, shorter datagrams closing or breaking them, and one alone.
_MIXED = [bytes([i]) * size for i, size in enumerate([1200] * 5 + [700] + [1200] * 3 + [50, 1200, 900, 900])]


class Batches(Recording):
    """Also takes the datagrams of one GRO buffer in one call."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def datagrams_received(self, datagrams: list[bytes], addr: Any) -> None:
        self.batches.append(len(datagrams))
        for data in datagrams:
            self.datagram_received(data, addr)


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "plain"])
@pytest.mark.parametrize("connected", [True, False], ids=["connected", "unconnected"])
async def test_send_many_delivers_every_datagram_whole_and_in_order(offload: bool, connected: bool) -> None:
    loop = asyncio.get_running_loop()
    receiver = Batches()
    listening = await bind_udp_socket(receiver, "127.0.0.1", 0, read_batch=64)
    address = listening.get_extra_info("sockname")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    if connected:
        sock.connect(address)
    sender = UdpSocket(loop, sock, Recording(), 1, offload=offload)
    try:
        assert not offload or sender.gso == supports_gso(sock)
        sender.send_many(_MIXED, None if connected else address)
        await until(lambda: len(receiver.received) >= len(_MIXED), timeout=DEADLINE)
        assert [data for data, _ in receiver.received] == _MIXED
        assert sender._protocol.errors == []
        if offload and sender.gso and listening.gro:
            # The kernel handed a GSO run over as one buffer, split here.
            assert receiver.batches and max(receiver.batches) > 1
    finally:
        sender.close()
        listening.close()


async def test_a_burst_from_one_sender_is_one_read_at_the_default_bound() -> None:
    """Why a listener's default bound of one read per wake-up is enough:
    with GRO, the datagrams one sender sent together arrive as one buffer,
    handed over in one call and one turn."""
    loop = asyncio.get_running_loop()
    receiver = Batches()
    listening = await bind_udp_socket(receiver, "127.0.0.1", 0, read_batch=QuicOptions().listener_read_batch)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(listening.get_extra_info("sockname"))
    sender = UdpSocket(loop, sock, Recording(), 1)
    stop = asyncio.Event()
    try:
        if not (sender.gso and listening.gro):
            pytest.skip("this kernel has no UDP GSO or GRO")
        burst = [bytes([index]) * 1200 for index in range(5)]
        sender.send_many(burst)
        _count_turns(receiver, stop)
        await until(lambda: len(receiver.received) == 5)
        assert [data for data, _ in receiver.received] == burst
        assert receiver.batches == [5]
        assert len({turn for _, turn in receiver.received}) == 1
    finally:
        stop.set()
        sender.close()
        listening.close()


class _NoGsoSocket(socket.socket):
    """A socket on a path that cannot segment: every sendmsg fails with EIO."""

    def sendmsg(self, *args: Any) -> int:  # type: ignore[override]
        raise OSError(errno.EIO, "Input/output error")


async def test_a_path_that_cannot_segment_falls_back_to_one_send_per_datagram() -> None:
    receiver = Recording()
    listening = await bind_udp_socket(receiver, "127.0.0.1", 0)
    sock = _NoGsoSocket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(listening.get_extra_info("sockname"))
    sender = UdpSocket(asyncio.get_running_loop(), sock, Recording(), 1)
    try:
        if not sender.gso:
            pytest.skip("this kernel has no UDP GSO")
        sender.send_many(_MIXED)
        assert sender.gso is False
        await until(lambda: len(receiver.received) >= len(_MIXED), timeout=DEADLINE)
        assert [data for data, _ in receiver.received] == _MIXED
        assert sender._protocol.errors == []
    finally:
        sender.close()
        listening.close()


class _NoOffloadSocket(socket.socket):
    """A kernel without UDP_SEGMENT and UDP_GRO."""

    def setsockopt(self, level: int, option: int, *args: Any) -> None:  # type: ignore[override]
        if level == socket.IPPROTO_UDP:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        super().setsockopt(level, option, *args)


async def test_without_offload_in_the_kernel_the_socket_reads_and_sends_plainly() -> None:
    sock = _NoOffloadSocket(socket.AF_INET, socket.SOCK_DGRAM)
    assert enable_gro(sock) is False and supports_gso(sock) is False
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    protocol = Recording()
    udp = UdpSocket(asyncio.get_running_loop(), sock, protocol, 8)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert (udp.gro, udp.gso) == (False, False)
        peer.bind(("127.0.0.1", 0))
        peer.sendto(b"x" * 1200, sock.getsockname())
        await until(lambda: len(protocol.received) == 1, timeout=DEADLINE)
        udp.send_many([b"a" * 100, b"b" * 100], peer.getsockname())
        peer.settimeout(DEADLINE)
        assert [peer.recv(200), peer.recv(200)] == [b"a" * 100, b"b" * 100]
    finally:
        peer.close()
        udp.close()


def _proc_limits() -> bool:
    return os.path.exists("/proc/sys/net/core/rmem_max") and os.path.exists("/proc/sys/net/core/wmem_max")


def _kernel_limit(name: str) -> int:
    with open(f"/proc/sys/net/core/{name}") as limit:
        return int(limit.read())


@pytest.mark.skipif(not hasattr(socket, "SO_RCVBUF") or not _proc_limits(), reason="needs Linux's /proc/sys/net/core")
async def test_sockets_ask_for_large_buffers_so_bursts_are_not_dropped() -> None:
    # The kernel's default (about 208 KiB) holds some 90 datagrams: a burst
    # from a peer with a large congestion window overflowed it, and every
    # drop halved that window.
    protocol = Recording()
    server = await bind_udp_socket(protocol, "127.0.0.1", 0)
    client = await connect_udp_socket(Recording(), socket.AF_INET, server.get_extra_info("sockname"))
    try:
        for udp in (server, client):
            sock = udp.get_extra_info("socket")
            # Linux grants up to the sysctl limit and reports twice what it granted.
            for option, limit in ((socket.SO_RCVBUF, "rmem_max"), (socket.SO_SNDBUF, "wmem_max")):
                granted = sock.getsockopt(socket.SOL_SOCKET, option) // 2
                assert granted >= min(SOCKET_BUFFER, _kernel_limit(limit)), (option, granted)
    finally:
        client.close()
        server.close()
