"""The tcp transport's TLS layer (rpcnet_tcp.tlsio) on real loopback sockets:
bytes both ways in order, backpressure, close_notify, and what a peer that
ends badly, resets, or sends garbage (before or after the handshake) leads to.

The hand-driven peer (:class:`BioPeer`) runs TLS through ``ssl.MemoryBIO``
over a plain socket, so a test can put any byte on the wire: half a record,
junk after the handshake, a reset.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from rpcnet_tcp import TcpOptions, TcpTransport
from rpcnet_tcp.tls import client_context, server_context
from rpcnet_tcp.tlsio import WRITE_HIGH, TlsTransport, accept_loop, connect_socket, handshake, listening_sockets

from rpcnet.errors import TlsError, TransportError
from rpcnet.rpc.protocol import ALPN
from rpcnet.testing.tls_conformance import Certs

from ..transport_helpers import DEADLINE, until


class Sink(asyncio.Protocol):
    """Records what a :class:`TlsTransport` delivers."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.data = bytearray()
        self.eof = False
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self.pauses = 0
        self.resumes = 0
        self.largest_buffer = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool | None:
        self.eof = True
        return None

    def pause_writing(self) -> None:
        self.pauses += 1
        self.largest_buffer = max(self.largest_buffer, self.transport.get_write_buffer_size())

    def resume_writing(self) -> None:
        self.resumes += 1

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def _received(sink: Sink, size: int) -> bytes:
    await until(lambda: len(sink.data) >= size, DEADLINE)
    return bytes(sink.data)


class Pair:
    """A listening socket whose accepted connections are handed, after their
    TLS handshake, to :class:`TlsTransport` + :class:`Sink`."""

    def __init__(self, certs: Certs) -> None:
        self.certs = certs
        self.server_context = server_context(certs.server_tls(), ALPN)
        self.client_context = client_context(certs.client_tls(), ALPN)
        self.accepted: asyncio.Queue[tuple[TlsTransport, Sink] | BaseException] = asyncio.Queue()
        self.stops: list[Any] = []
        self.port = 0

    async def start(self, handshake_timeout: float = DEADLINE) -> None:
        sockets = await listening_sockets("127.0.0.1", 0, backlog=16)
        self.port = sockets[0].getsockname()[1]

        async def secure(sock: socket.socket) -> None:
            try:
                tls = await handshake(sock, self.server_context, server_side=True, timeout=handshake_timeout)
            except BaseException as exc:
                self.accepted.put_nowait(exc)
                return
            sink = Sink()
            transport = TlsTransport(tls, sink)
            sink.connection_made(transport)
            transport.start()
            self.accepted.put_nowait((transport, sink))

        self.stops = [accept_loop(s, lambda sock, _: asyncio.ensure_future(secure(sock))) for s in sockets]

    async def server_side(self) -> tuple[TlsTransport, Sink]:
        accepted = await asyncio.wait_for(self.accepted.get(), DEADLINE)
        assert not isinstance(accepted, BaseException), accepted
        return accepted

    async def client(self) -> tuple[TlsTransport, Sink]:
        sock = await connect_socket("127.0.0.1", self.port)
        tls = await handshake(sock, self.client_context, server_side=False, server_hostname="localhost", timeout=DEADLINE)
        sink = Sink()
        transport = TlsTransport(tls, sink)
        sink.connection_made(transport)
        transport.start()
        return transport, sink

    def stop(self) -> None:
        for stop in self.stops:
            stop()


@pytest.fixture
async def pair(certs: Certs) -> AsyncIterator[Pair]:
    pair = Pair(certs)
    await pair.start()
    yield pair
    pair.stop()


class BioPeer:
    """A TLS client over a plain non-blocking socket, driven through memory BIOs."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def connect(cls, port: int, context: ssl.SSLContext) -> BioPeer:
        sock = await connect_socket("127.0.0.1", port)
        peer = cls(sock, context)
        while True:
            try:
                peer.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await peer.flush()
                data = await asyncio.wait_for(peer.loop.sock_recv(sock, 65536), DEADLINE)
                assert data, "the server closed during the handshake"
                peer.incoming.write(data)
        await peer.flush()
        return peer

    async def flush(self) -> None:
        if self.outgoing.pending:
            await self.loop.sock_sendall(self.sock, self.outgoing.read())

    def record(self, data: bytes) -> bytes:
        """``data`` encrypted as TLS records, not yet sent."""
        self.tls.write(data)
        return self.outgoing.read()

    async def read_until_closed(self) -> tuple[bytes, BaseException | None]:
        """What the server sent until its close_notify (error None) or the socket's end."""
        received = bytearray()
        while True:
            try:
                chunk = self.tls.read(65536)
                if not chunk:
                    return bytes(received), None
                received += chunk
                continue
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:  # close_notify, after ours
                return bytes(received), None
            except ssl.SSLError as exc:
                return bytes(received), exc
            data = await asyncio.wait_for(self.loop.sock_recv(self.sock, 65536), DEADLINE)
            if not data:
                return bytes(received), EOFError()
            self.incoming.write(data)

    def close(self) -> None:
        self.sock.close()


# -- bytes both ways --------------------------------------------------------------


async def test_large_writes_arrive_whole_and_in_order_both_ways(pair: Pair) -> None:
    client, client_sink = await pair.client()
    server, server_sink = await pair.server_side()
    up = os.urandom(3 * 1024 * 1024 + 17)
    down = os.urandom(5 * 1024 * 1024 + 3)
    for offset in range(0, len(up), 700_000):
        client.write(up[offset : offset + 700_000])
    server.writelines([down[:1], memoryview(down)[1:4096], bytearray(down[4096:])])
    assert server.get_extra_info("ssl_object").version() == "TLSv1.3"
    assert client.get_extra_info("ssl_object").selected_alpn_protocol() == ALPN
    assert await _received(server_sink, len(up)) == up
    assert await _received(client_sink, len(down)) == down
    client.close()
    assert await asyncio.wait_for(server_sink.lost, DEADLINE) is None
    assert server_sink.eof


async def test_a_reader_that_stops_pauses_the_writer_with_a_bounded_buffer(pair: Pair) -> None:
    client, client_sink = await pair.client()
    server, server_sink = await pair.server_side()
    server._stop_reading()  # the server reads nothing for now: kernel buffers fill, then ours
    chunk = os.urandom(256 * 1024)
    written = 0
    while not client_sink.pauses:
        client.write(chunk)
        written += len(chunk)
        assert written < 256 * 1024 * 1024, "the writer was never paused"
        await asyncio.sleep(0)  # let the socket report that it is full
    # Paused as soon as the buffer passed its mark: at most one write beyond it.
    assert client_sink.largest_buffer <= WRITE_HIGH + len(chunk)
    assert not client_sink.resumes
    server.start()
    await until(lambda: client_sink.resumes == 1, DEADLINE)
    assert await _received(server_sink, written) == chunk * (written // len(chunk))
    client.close()
    await asyncio.wait_for(server_sink.lost, DEADLINE)


# -- ending ----------------------------------------------------------------------


async def test_close_flushes_what_is_buffered_then_sends_close_notify(pair: Pair, certs: Certs) -> None:
    peer = await BioPeer.connect(pair.port, pair.client_context)
    server, _ = await pair.server_side()
    payload = os.urandom(6 * 1024 * 1024)  # more than the socket buffers take at once
    server.write(payload)
    server.close()
    assert server.is_closing()
    received, error = await peer.read_until_closed()
    assert error is None  # a close_notify, not a bare TCP end
    assert received == payload
    peer.close()


async def test_close_notify_from_the_peer_is_eof_then_a_clean_end(pair: Pair) -> None:
    peer = await BioPeer.connect(pair.port, pair.client_context)
    server, server_sink = await pair.server_side()
    await peer.loop.sock_sendall(peer.sock, peer.record(b"last words"))
    try:
        peer.tls.unwrap()
    except ssl.SSLWantReadError:
        pass
    await peer.flush()
    assert await asyncio.wait_for(server_sink.lost, DEADLINE) is None
    assert server_sink.eof and bytes(server_sink.data) == b"last words"
    # Our side answers with its own close_notify.
    _, error = await peer.read_until_closed()
    assert error is None
    peer.close()


async def test_a_peer_that_closes_mid_record_is_a_lost_connection_with_the_error(pair: Pair) -> None:
    peer = await BioPeer.connect(pair.port, pair.client_context)
    server, server_sink = await pair.server_side()
    whole = peer.record(b"complete")
    cut = peer.record(b"x" * 1000)[:500]
    await peer.loop.sock_sendall(peer.sock, whole + cut)
    peer.sock.shutdown(socket.SHUT_WR)
    error = await asyncio.wait_for(server_sink.lost, DEADLINE)
    assert isinstance(error, ssl.SSLError)  # unexpected EOF: not a clean end
    assert not server_sink.eof
    assert bytes(server_sink.data) == b"complete"  # what came whole was delivered
    assert server.is_closing()
    peer.close()


async def test_garbage_after_the_handshake_is_a_lost_connection_with_the_error(pair: Pair) -> None:
    peer = await BioPeer.connect(pair.port, pair.client_context)
    _, server_sink = await pair.server_side()
    await peer.loop.sock_sendall(peer.sock, peer.record(b"fine") + b"\x17\x03\x03\x00\x20" + os.urandom(32))
    error = await asyncio.wait_for(server_sink.lost, DEADLINE)
    assert isinstance(error, ssl.SSLError)
    assert bytes(server_sink.data) == b"fine"
    # OpenSSL answered with an alert and the socket closed.
    _, peer_error = await peer.read_until_closed()
    assert peer_error is not None
    peer.close()


async def test_a_reset_is_a_lost_connection_with_the_error(pair: Pair) -> None:
    peer = await BioPeer.connect(pair.port, pair.client_context)
    _, server_sink = await pair.server_side()
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # RST
    error = await asyncio.wait_for(server_sink.lost, DEADLINE)
    assert isinstance(error, (ConnectionResetError, ssl.SSLError))


async def test_writes_to_a_connection_the_peer_dropped_end_it_with_the_error(pair: Pair) -> None:
    client, client_sink = await pair.client()
    server, _ = await pair.server_side()
    server.abort()

    async def write_until_lost() -> None:
        while not client_sink.lost.done():
            client.write(b"x" * 65536)  # never raises: the end is reported once, to connection_lost
            await asyncio.sleep(0)

    await asyncio.wait_for(write_until_lost(), DEADLINE)
    assert isinstance(client_sink.lost.result(), OSError)  # ssl.SSLError is one too
    assert client.is_closing()
    client.write(b"ignored")


# -- the handshake -------------------------------------------------------------------


async def test_garbage_before_the_handshake_fails_it_and_the_socket_closes(certs: Certs) -> None:
    pair = Pair(certs)
    await pair.start()
    try:
        sock = await connect_socket("127.0.0.1", pair.port)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        failure = await asyncio.wait_for(pair.accepted.get(), DEADLINE)
        assert isinstance(failure, ssl.SSLError)
        # The server sent its alert and closed: the socket reaches its end.
        while await asyncio.wait_for(loop.sock_recv(sock, 4096), DEADLINE):
            pass
        sock.close()
    finally:
        pair.stop()


async def test_a_silent_peer_fails_the_handshake_after_its_timeout(certs: Certs) -> None:
    pair = Pair(certs)
    await pair.start(handshake_timeout=0.2)
    try:
        sock = await connect_socket("127.0.0.1", pair.port)
        failure = await asyncio.wait_for(pair.accepted.get(), DEADLINE)
        assert isinstance(failure, TimeoutError)
        loop = asyncio.get_running_loop()
        assert await asyncio.wait_for(loop.sock_recv(sock, 4096), DEADLINE) == b""
        sock.close()
    finally:
        pair.stop()


async def _raw_server(reply: bytes) -> tuple[asyncio.Server, int]:
    """A plain TCP server that answers whatever comes with ``reply`` and closes."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", TlsError, "TLS handshake with the server at .* failed: WRONG_VERSION_NUMBER"),
        (b"", TransportError, "closed the connection during the TLS handshake"),
        (b"\x16\x03\x03\x40\x00" + b"\x02" * 100, TransportError, "closed the connection during the TLS handshake"),
    ],
    ids=["garbage", "closed", "truncated-record"],
)
async def test_a_server_that_is_not_tls_fails_connect_with_a_clear_error(
    certs: Certs, reply: bytes, error: type[Exception], message: str
) -> None:
    server, port = await _raw_server(reply)
    try:
        transport = TcpTransport(TcpOptions(handshake_timeout=DEADLINE))
        with pytest.raises(error, match=message):
            await asyncio.wait_for(transport.connect(("127.0.0.1", port), alpn=ALPN, tls=certs.client_tls()), DEADLINE)
    finally:
        server.close()
        await server.wait_closed()
