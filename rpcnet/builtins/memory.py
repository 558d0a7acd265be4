"""The ``memory`` transport: connections and streams inside one process.

It implements :mod:`rpcnet.transport` with the same semantics as QUIC (stream
credit, per-stream flow control, reset, connection loss), so the RPC engine,
examples and tests run without sockets. Listeners live in a named
:class:`MemoryNetwork` (``options={"memory": {"network": "name"}}``); every
transport instance naming the same network sees the same listeners.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Callable
from typing import ClassVar

import attrs

from ..config import TlsConfig, positive
from ..errors import TransportError
from ..hookspecs import Register, hookimpl
from ..transport import (
    CONNECTION_LOST,
    Address,
    Connection,
    Listener,
    NewStreamCallback,
    PeerInfo,
    Stream,
    StreamHandler,
    Transport,
)

__all__ = ["MemoryTransport", "MemoryNetwork", "MemoryOptions", "get_network"]


@attrs.frozen(kw_only=True)
class MemoryOptions:
    #: Name of the in-process network; transports on the same name can talk.
    network: str = "default"
    #: Streams a client may have open at once on a connection (like QUIC
    #: MAX_STREAMS) when ``listen()`` is not given ``max_streams``; the RPC
    #: server always gives it (``max_concurrent_calls_per_connection``).
    max_streams: int = attrs.field(default=128, converter=int, validator=positive)
    #: Bytes a stream may have sent but the peer not yet consumed before drain() waits.
    stream_window: int = attrs.field(default=256 * 1024, converter=int, validator=positive)
    #: Identity this side presents, as a verified certificate identity would be.
    identity: str | None = None


class MemoryNetwork:
    """A namespace of listeners, keyed by (host, port)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.listeners: dict[Address, _MemoryListener] = {}
        self._ports = itertools.count(40000)
        self._client_ports = itertools.count(1)

    def allocate(self, host: str, port: int) -> Address:
        if port == 0:
            port = next(self._ports)
            while (host, port) in self.listeners:
                port = next(self._ports)
        address = (host, port)
        if address in self.listeners:
            raise TransportError(f"memory address {host}:{port} is already in use on network {self.name!r}")
        return address


_NETWORKS: dict[str, MemoryNetwork] = {}


def get_network(name: str = "default") -> MemoryNetwork:
    """The process-wide network called ``name`` (created on first use)."""
    network = _NETWORKS.get(name)
    if network is None:
        network = _NETWORKS[name] = MemoryNetwork(name)
    return network


class _MemoryStream(Stream):
    def __init__(self, connection: _MemoryConnection, stream_id: int, window: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.handler: StreamHandler | None = None
        self.peer: _MemoryStream | None = None
        self._window = window
        self._incoming: collections.deque[tuple[bytes, bool]] = collections.deque()
        self._incoming_bytes = 0
        self._paused = False
        self._delivery_scheduled = False
        self._send_closed = False  # we sent FIN or reset
        self._recv_closed = False  # we delivered FIN or reset
        self._aborted = False
        self._reset_after: int | None = None  # a peer reset waiting behind data that arrived first
        self.opened_here = False  # this side opened it: it holds our stream credit
        self._drain_waiters: list[asyncio.Future[None]] = []

    # -- sending ---------------------------------------------------------

    def send(self, data: bytes, end_stream: bool = False) -> None:
        if self._aborted:
            raise TransportError("stream was reset")
        if self._send_closed:
            raise TransportError("stream already ended for sending")
        if self.connection._closed:
            raise TransportError("connection is closed")
        if end_stream:
            self._send_closed = True
        peer = self.peer
        assert peer is not None
        if not data and not end_stream:
            return
        peer._enqueue(bytes(data), end_stream)
        if end_stream:
            self.connection._maybe_release(self)

    def reset(self, error_code: int) -> None:
        if self._aborted:
            if self._reset_after is not None:
                # The peer's reset is still queued behind data: nothing more is delivered.
                self._reset_after = None
                self._recv_closed = True
                self._incoming.clear()
                self._incoming_bytes = 0
                self.connection._maybe_release(self)
            return
        self._aborted = True
        already_done = self._send_closed and self._recv_closed
        self._send_closed = self._recv_closed = True
        self._incoming.clear()
        self._incoming_bytes = 0
        self._wake_drain(TransportError("stream was reset"))
        peer = self.peer
        self.connection._maybe_release(self)
        if peer is not None and not already_done:
            peer._remote_reset(error_code)

    async def drain(self) -> None:
        peer = self.peer
        while True:
            if self._aborted:
                raise TransportError("stream was reset")
            if self.connection._closed:
                raise TransportError("connection is closed")
            if peer is None or peer._incoming_bytes <= self._window:
                return
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def _wake_drain(self, exc: BaseException | None = None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)

    # -- receiving -------------------------------------------------------

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            self._schedule_delivery()

    def _enqueue(self, data: bytes, end_stream: bool) -> None:
        if self._aborted or self._recv_closed:
            return
        self._incoming.append((data, end_stream))
        self._incoming_bytes += len(data)
        self._schedule_delivery()

    def _schedule_delivery(self) -> None:
        if not self._delivery_scheduled and not self._paused and self._incoming:
            self._delivery_scheduled = True
            self.connection._loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        self._delivery_scheduled = False
        peer = self.peer  # read first: a finished stream lets go of its peer
        while self._incoming and not self._paused and not self._recv_closed:
            data, end_stream = self._incoming.popleft()
            self._incoming_bytes -= len(data)
            if end_stream:
                self._recv_closed = True
            if self.handler is not None:
                self.handler.data_received(data, end_stream)
            if end_stream:
                self.connection._maybe_release(self)
        if self._reset_after is not None and (self._paused or not self._incoming):
            # What arrived before the peer's reset has been delivered (data
            # held back by pause_reading is dropped, as QUIC drops it).
            self._report_reset(self._reset_after)
            return
        if peer is not None and peer._drain_waiters and self._incoming_bytes <= peer._window:
            peer._wake_drain()

    def _remote_reset(self, error_code: int) -> None:
        if self._aborted:
            return
        self._aborted = True
        self._send_closed = True
        self._wake_drain(TransportError(f"stream reset by peer (code {error_code})"))
        if self._incoming and not self._paused and not self._recv_closed:
            # Data sent before the reset is delivered before it.
            self._reset_after = error_code
            self._schedule_delivery()
            return
        handler = self.handler
        self._recv_closed = True
        self._incoming.clear()
        self._incoming_bytes = 0
        self.connection._maybe_release(self)
        if handler is not None:
            self.connection._loop.call_soon(handler.stream_reset, error_code)

    def _report_reset(self, error_code: int) -> None:
        self._reset_after = None
        self._recv_closed = True
        self._incoming.clear()
        self._incoming_bytes = 0
        handler = self.handler
        self.connection._maybe_release(self)
        if handler is not None:
            handler.stream_reset(error_code)

    def _connection_lost(self) -> None:
        if self._aborted:
            if self._reset_after is not None:
                self._report_reset(self._reset_after)
            return
        unfinished = not self._recv_closed
        self._aborted = True
        self._send_closed = self._recv_closed = True
        self._incoming.clear()
        self._wake_drain(TransportError("connection lost"))
        if unfinished and self.handler is not None:
            self.connection._loop.call_soon(self.handler.stream_reset, CONNECTION_LOST)


class _MemoryConnection(Connection):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        options: MemoryOptions,
        peer_info: PeerInfo,
        is_client: bool,
        credit: int | None = None,
    ) -> None:
        self._loop = loop
        self._options = options
        #: Streams the peer may have open at once on this connection.
        self.credit = options.max_streams if credit is None else credit
        self.peer = peer_info
        self.remote: _MemoryConnection | None = None
        self.on_stream: NewStreamCallback | None = None
        self._is_client = is_client
        self._next_id = 0 if is_client else 1
        self._streams: dict[int, _MemoryStream] = {}
        self._local_open = 0  # streams we opened that are not finished
        self._credit_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False
        self._closed_future: asyncio.Future[None] = loop.create_future()
        self._close_callbacks: list[Callable[[BaseException | None], None]] = []

    @property
    def is_closed(self) -> bool:
        return self._closed

    async def open_stream(self, handler: StreamHandler) -> Stream:
        remote = self.remote
        assert remote is not None
        woken = False
        while True:
            if self._closed:
                raise TransportError("connection is closed")
            # First come, first served: a newcomer does not overtake waiters.
            if self._local_open < remote.credit and (woken or not self._credit_waiters):
                break
            waiter = self._loop.create_future()
            if woken:
                self._credit_waiters.appendleft(waiter)
            else:
                self._credit_waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._wake_credit_waiter()  # woken, then cancelled: the turn goes to the next
                elif not waiter.done():
                    try:
                        self._credit_waiters.remove(waiter)
                    except ValueError:
                        pass
                raise
            woken = True
        stream_id = self._next_id
        self._next_id += 4
        local = _MemoryStream(self, stream_id, self._options.stream_window)
        local.handler = handler
        other = _MemoryStream(remote, stream_id, remote._options.stream_window)
        local.peer, other.peer = other, local
        self._streams[stream_id] = local
        remote._streams[stream_id] = other
        self._local_open += 1
        local.opened_here = True
        assert remote.on_stream is not None
        other.handler = remote.on_stream(other)
        if self._credit_waiters and self._local_open < remote.credit:
            self._wake_credit_waiter()
        return local

    def _wake_credit_waiter(self) -> None:
        while self._credit_waiters:
            waiter = self._credit_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _maybe_release(self, stream: _MemoryStream) -> None:
        if not (stream._send_closed and stream._recv_closed):
            return
        if self._streams.pop(stream.stream_id, None) is None:
            return
        # Finished both ways: let go of the handler and the other end, which
        # usually point back here, so reference counting frees the call at
        # once instead of the garbage collector later.
        stream.handler = None
        stream.peer = None
        if stream.opened_here:
            self._local_open -= 1
            self._wake_credit_waiter()

    def close(self, error_code: int = 0, reason: str = "") -> None:
        if self._closed:
            return
        exc = None if error_code == 0 else TransportError(f"connection closed (code {error_code}): {reason}")
        self._shutdown(exc)
        remote = self.remote
        if remote is not None:
            remote._shutdown(TransportError(f"connection closed by peer (code {error_code}){': ' + reason if reason else ''}"))

    def _shutdown(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            stream._connection_lost()
        for waiter in self._credit_waiters:
            if not waiter.done():
                waiter.set_exception(TransportError("connection is closed"))
        self._credit_waiters.clear()
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            self._loop.call_soon(callback, exc)
        if not self._closed_future.done():
            self._closed_future.set_result(None)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed_future)

    def add_close_callback(self, callback: Callable[[BaseException | None], None]) -> None:
        if self._closed:
            self._loop.call_soon(callback, None)
        else:
            self._close_callbacks.append(callback)


class _MemoryListener(Listener):
    def __init__(
        self,
        network: MemoryNetwork,
        address: Address,
        on_stream: NewStreamCallback,
        options: MemoryOptions,
        alpn: str | None,
        max_streams: int | None = None,
    ) -> None:
        self.network = network
        self.alpn = alpn
        self.address = address
        self.on_stream = on_stream
        self.options = options
        self.max_streams = options.max_streams if max_streams is None else max_streams
        self.accepting = True
        self._connections: set[_MemoryConnection] = set()

    def stop_accepting(self) -> None:
        self.accepting = False

    def connections(self) -> list[Connection]:
        return [c for c in self._connections if not c.is_closed]

    async def close(self) -> None:
        self.stop_accepting()
        for connection in list(self._connections):
            connection.close(0, "server closed")
        self._connections.clear()
        if self.network.listeners.get(self.address) is self:
            del self.network.listeners[self.address]


class MemoryTransport(Transport):
    """In-process transport (strategy ``memory``)."""

    name: ClassVar[str] = "memory"
    Options: ClassVar[type] = MemoryOptions

    def __init__(self, options: MemoryOptions | None = None) -> None:
        super().__init__(options or MemoryOptions())
        self.network = get_network(self.options.network)

    async def listen(
        self,
        address: Address,
        on_stream: NewStreamCallback,
        *,
        tls: TlsConfig | None = None,
        alpn: str | None = None,
        max_streams: int | None = None,
    ) -> Listener:
        if max_streams is not None and max_streams < 1:
            raise ValueError(f"max_streams must be >= 1, got {max_streams!r}")
        bound = self.network.allocate(address[0], address[1])
        listener = _MemoryListener(self.network, bound, on_stream, self.options, alpn, max_streams)
        self.network.listeners[bound] = listener
        return listener

    async def connect(
        self,
        address: Address,
        *,
        tls: TlsConfig | None = None,
        server_name: str | None = None,
        alpn: str | None = None,
    ) -> Connection:
        loop = asyncio.get_running_loop()
        listener = self.network.listeners.get((address[0], address[1]))
        if listener is None or not listener.accepting:
            raise TransportError(
                f"connection refused: nothing is accepting at {address[0]}:{address[1]} "
                f"on memory network {self.network.name!r}"
            )
        if listener.alpn != alpn:
            # What TLS ALPN negotiation does on a real network.
            raise TransportError(
                f"{address[0]}:{address[1]} speaks {listener.alpn!r}, this client speaks {alpn!r}: "
                "upgrade the older side"
            )
        client_address = ("memory-client", next(self.network._client_ports))
        client = _MemoryConnection(
            loop, self.options, PeerInfo(address=listener.address, identity=listener.options.identity), True
        )
        server = _MemoryConnection(
            loop,
            listener.options,
            PeerInfo(address=client_address, identity=self.options.identity),
            False,
            credit=listener.max_streams,
        )
        client.remote, server.remote = server, client
        server.on_stream = listener.on_stream
        listener._connections.add(server)
        server.add_close_callback(lambda _exc: listener._connections.discard(server))
        await asyncio.sleep(0)  # a connect is never synchronous on a real network
        return client


@hookimpl
def rpcnet_register_transports(register: Register) -> None:
    register(MemoryTransport.name, MemoryTransport)
