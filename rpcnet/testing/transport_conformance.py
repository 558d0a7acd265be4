"""The transport conformance suite: call semantics every transport strategy must keep.

The RPC engine runs unchanged over any transport (docs/transport.md), so
every transport has to give it the same semantics: stream credit that makes
callers wait instead of failing, cancellation and deadlines that reach the
handler, resets that keep the order of what arrived, limits checked before
anything is allocated, graceful stop, reconnect after a restart,
backpressure, and a server that stays available under floods of half-open
streams and many connections. These tests check them end to end through the
public API (``RpcServer``, ``RpcClient``, ``RpcConfig``, ``rpcnet.errors`` and
``rpcnet.transport``), for a transport chosen by name.

Two ways to run it (pytest-asyncio must be installed):

- as a pytest plugin, by name::

      pytest -p rpcnet.testing.transport_conformance --pyargs rpcnet.testing.transport_conformance --rpcnet-transport=NAME

- from your own test module, by subclassing :class:`TransportConformance`::

      from rpcnet.testing.transport_conformance import TransportConformance

      class TestMyTransport(TransportConformance):
          transport = "my-transport"
          transport_options = {"some_option": 1}   # RpcConfig.options[transport]

Both give the transport TLS material from :func:`rpcnet.certs.write_dev_certs`
(a ``localhost`` server certificate and its CA); a transport without TLS
ignores it. Every wait is bounded by a deadline; nothing sleeps for a fixed
time hoping something happened.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import attrs
import msgpack
import pytest
import pytest_asyncio

from ..config import RpcConfig, TlsConfig
from ..errors import (
    CancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    ResourceExhaustedError,
    RpcError,
    StatusCode,
    UnavailableError,
)
from ..rpc import RpcClient, RpcServer
from ..rpc.protocol import ALPN
from ..transport import Address, Connection
from .waiting import wait_until

__all__ = ["TransportConformance", "Harness", "pytest_addoption"]

#: Every single wait of the suite ends by then at the latest.
DEADLINE = 10.0

# The wire format of docs/protocol.md: type (1 byte) | length (4 bytes) | payload.
_PREFIX = struct.Struct(">BI")
_HEADER, _MESSAGE, _TRAILER = 0x01, 0x02, 0x03


def _frame(kind: int, payload: bytes) -> bytes:
    return _PREFIX.pack(kind, len(payload)) + payload


def _header(method: str) -> bytes:
    return _frame(_HEADER, msgpack.packb({"m": method}))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rpcnet-transport",
        default=None,
        metavar="NAME",
        help="transport strategy the rpcnet conformance suite runs against (rpcnet.testing.transport_conformance)",
    )


@attrs.define
class Harness:
    """Servers and clients of one test, all closed when it ends."""

    transport: str
    server_config: RpcConfig
    client_config: RpcConfig
    listen: Address
    servers: list[RpcServer] = attrs.field(factory=list)
    clients: list[RpcClient] = attrs.field(factory=list)
    connections: list[Connection] = attrs.field(factory=list)

    def server(self, **changes: Any) -> RpcServer:
        server = RpcServer(attrs.evolve(self.server_config, **changes))
        self.servers.append(server)
        return server

    def client(self, address: Address, **changes: Any) -> RpcClient:
        client = RpcClient(address, attrs.evolve(self.client_config, **changes))
        self.clients.append(client)
        return client

    async def serve(
        self, register: Callable[[RpcServer], None], **changes: Any
    ) -> tuple[RpcServer, RpcClient]:
        """A started server with the methods ``register`` adds, and a client of it."""
        server = self.server(**changes)
        register(server)
        address = await server.start(self.listen)
        return server, self.client(address)

    async def raw_connection(self, client: RpcClient) -> Connection:
        """A transport connection to the client's server, for speaking frames by hand."""
        connection = await asyncio.wait_for(
            client.transport.connect(client.address, tls=client.config.tls, server_name=client.server_name, alpn=ALPN),
            DEADLINE,
        )
        self.connections.append(connection)
        return connection

    async def close(self) -> None:
        for connection in self.connections:
            connection.close()
        for client in self.clients:
            await client.close()
        for server in self.servers:
            await asyncio.wait_for(server.stop(grace=0), DEADLINE)


class Collector:
    """A raw stream handler that keeps what arrives."""

    def __init__(self) -> None:
        self.data = b""
        self.ended = asyncio.Event()
        self.reset_code: int | None = None

    def data_received(self, data: bytes, end_stream: bool) -> None:
        self.data += data
        if end_stream:
            self.ended.set()

    def stream_reset(self, error_code: int) -> None:
        self.reset_code = error_code
        self.ended.set()

    def status(self) -> tuple[int, str]:
        """The status code and message of the trailer that arrived."""
        data, offset = self.data, 0
        while offset + _PREFIX.size <= len(data):
            kind, length = _PREFIX.unpack_from(data, offset)
            payload = data[offset + _PREFIX.size : offset + _PREFIX.size + length]
            offset += _PREFIX.size + length
            if kind == _TRAILER:
                trailer = msgpack.unpackb(payload)
                return trailer["c"], trailer.get("msg", "")
        raise AssertionError(f"no trailer in {data!r}")


class Gate:
    """Handlers wait at the gate; the test counts them and opens it."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.waiting = 0
        self.most = 0
        self.entered = 0

    async def wait(self) -> None:
        self.entered += 1
        self.waiting += 1
        self.most = max(self.most, self.waiting)
        try:
            await self.opened.wait()
        finally:
            self.waiting -= 1

    def open(self) -> None:
        self.opened.set()


def _register_gated(server: RpcServer, gate: Gate) -> None:
    @server.unary("unary")
    async def unary(request: Any, ctx: Any) -> Any:
        await gate.wait()
        return request

    @server.server_streaming("server_streaming")
    async def server_streaming(request: Any, ctx: Any) -> Any:
        await gate.wait()
        for index in range(3):
            yield [request, index]

    @server.client_streaming("client_streaming")
    async def client_streaming(requests: Any, ctx: Any) -> Any:
        await gate.wait()
        return [item async for item in requests]

    @server.bidi_streaming("bidi_streaming")
    async def bidi_streaming(requests: Any, ctx: Any) -> Any:
        await gate.wait()
        async for item in requests:
            yield item


CALL_KINDS = ("unary", "server_streaming", "client_streaming", "bidi_streaming")


async def _call(client: RpcClient, kind: str, value: Any, timeout: float | None = None) -> Any:
    """One call of ``kind`` to the gated methods; returns what it produced."""
    if kind == "unary":
        return await client.call("unary", value, timeout=timeout)
    if kind == "server_streaming":
        return [item async for item in client.call_server_streaming("server_streaming", value, timeout=timeout)]
    if kind == "client_streaming":
        return await client.call_client_streaming("client_streaming", [value, value], timeout=timeout)
    return [item async for item in client.call_streaming("bidi_streaming", [value, value], timeout=timeout)]


def _expected(kind: str, value: Any) -> Any:
    if kind == "unary":
        return value
    if kind == "server_streaming":
        return [[value, index] for index in range(3)]
    return [value, value]


class TransportConformance:
    """The suite. Subclass it with ``transport = "name"`` in a test module."""

    #: The transport strategy's registered name.
    transport: ClassVar[str] = ""
    #: Its options (``RpcConfig.options[transport]``), the same on both sides.
    transport_options: ClassVar[dict[str, Any]] = {}
    #: The host servers listen on (port 0: the transport picks one).
    listen_host: ClassVar[str] = "127.0.0.1"

    pytestmark = [pytest.mark.asyncio]

    # -- fixtures ----------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_certs(cls, tmp_path_factory: pytest.TempPathFactory) -> Path:
        from ..certs import write_dev_certs

        directory = tmp_path_factory.mktemp("conformance-certs")
        write_dev_certs(directory, server_names=["localhost"], client_names=["client"], days=30)
        return directory

    @pytest.fixture
    def transport_name(self) -> str:
        if not self.transport:
            pytest.fail(f"{type(self).__name__} must set transport = '<strategy name>'")
        return self.transport

    @pytest_asyncio.fixture
    async def harness(self, transport_name: str, conformance_certs: Path) -> AsyncIterator[Harness]:
        options = {transport_name: dict(self.transport_options)} if self.transport_options else {}
        certs = conformance_certs
        server_config = RpcConfig(
            transport=transport_name,
            options=options,
            tls=TlsConfig(cert_file=certs / "server.pem", key_file=certs / "server.key", ca_file=certs / "ca.pem"),
        )
        client_config = RpcConfig(
            transport=transport_name,
            options=options,
            tls=TlsConfig(ca_file=certs / "ca.pem", server_name="localhost"),
        )
        harness = Harness(transport_name, server_config, client_config, (self.listen_host, 0))
        try:
            yield harness
        finally:
            await harness.close()

    # -- stream credit: callers wait, they do not fail ------------------------

    @pytest.mark.parametrize("kind", CALL_KINDS)
    async def test_calls_beyond_the_credit_wait_for_it(self, harness: Harness, kind: str) -> None:
        """More concurrent calls than the per-connection limit all succeed:
        the limit is the stream credit, and calls beyond it wait."""
        gate = Gate()
        server, client = await harness.serve(
            lambda s: _register_gated(s, gate), max_concurrent_calls_per_connection=4
        )
        calls = [asyncio.ensure_future(_call(client, kind, index)) for index in range(40)]
        await wait_until(lambda: gate.waiting == 4, DEADLINE)
        assert server.active_calls == 4
        assert not any(call.done() for call in calls)
        gate.open()
        results = await asyncio.wait_for(asyncio.gather(*calls), DEADLINE)
        assert results == [_expected(kind, index) for index in range(40)]
        assert gate.most == 4

    @pytest.mark.parametrize("kind", CALL_KINDS)
    async def test_a_wait_for_credit_ends_at_the_deadline(self, harness: Harness, kind: str) -> None:
        gate = Gate()
        server, client = await harness.serve(
            lambda s: _register_gated(s, gate), max_concurrent_calls_per_connection=1
        )
        held = asyncio.ensure_future(_call(client, kind, "held"))
        await wait_until(lambda: gate.waiting == 1, DEADLINE)
        with pytest.raises(DeadlineExceededError):
            await asyncio.wait_for(_call(client, kind, "late", timeout=0.2), DEADLINE)
        assert gate.entered == 1  # the late call never reached a handler
        gate.open()
        assert await asyncio.wait_for(held, DEADLINE) == _expected(kind, "held")
        assert await asyncio.wait_for(_call(client, kind, "after"), DEADLINE) == _expected(kind, "after")

    async def test_a_cancelled_wait_for_credit_gives_its_turn_away(self, harness: Harness) -> None:
        gate = Gate()
        server, client = await harness.serve(
            lambda s: _register_gated(s, gate), max_concurrent_calls_per_connection=1
        )
        held = asyncio.ensure_future(client.call("unary", "held"))
        await wait_until(lambda: gate.waiting == 1, DEADLINE)
        cancelled = asyncio.ensure_future(client.call("unary", "cancelled"))
        waiting = asyncio.ensure_future(client.call("unary", "waiting"))
        for _ in range(20):
            await asyncio.sleep(0)  # both are queued for credit
        cancelled.cancel()
        gate.open()
        assert await asyncio.wait_for(held, DEADLINE) == "held"
        assert await asyncio.wait_for(waiting, DEADLINE) == "waiting"
        assert cancelled.cancelled()
        assert gate.entered == 2

    async def test_credit_comes_back_when_a_call_ends_before_the_client_finished_writing(
        self, harness: Harness
    ) -> None:
        """A bidirectional call the server ends (with an error) while the
        client still has its side open returns its stream credit."""

        def register(server: RpcServer) -> None:
            @server.bidi_streaming("first_only")
            async def first_only(requests: Any, ctx: Any) -> Any:
                async for item in requests:
                    yield item
                    raise RpcError("one is enough", code=StatusCode.FAILED_PRECONDITION)

        _, client = await harness.serve(register, max_concurrent_calls_per_connection=2)
        for index in range(6):
            call = client.call_streaming("first_only")
            await call.send(index)
            assert await asyncio.wait_for(call.read(), DEADLINE) == index
            with pytest.raises(FailedPreconditionError):
                await asyncio.wait_for(call.read(), DEADLINE)
            # done_writing() is never called: the call is over anyway.

    async def test_requests_take_memory_only_once_credit_is_granted(self, harness: Harness) -> None:
        """A request is encoded when its call gets a stream, not while it waits."""
        from .. import hookimpl, make_plugin_manager
        from ..builtins.serializers import MsgpackSerializer

        encoded: list[Any] = []

        class Counting(MsgpackSerializer):
            name = "counting"

            def dumps(self, value: Any) -> bytes:
                encoded.append(value)
                return super().dumps(value)

        class Plugin:
            @hookimpl
            def rpcnet_register_serializers(self, register: Any) -> None:
                register("counting", Counting)

        gate = Gate()
        server = harness.server(max_concurrent_calls_per_connection=2)
        _register_gated(server, gate)
        address = await server.start(harness.listen)
        config = attrs.evolve(harness.client_config, serializer="counting")
        client = RpcClient(address, config, plugins=make_plugin_manager(plugins=[("counting", Plugin())]))
        harness.clients.append(client)
        calls = [asyncio.ensure_future(client.call("unary", bytes(1000 + index))) for index in range(10)]
        await wait_until(lambda: gate.waiting == 2, DEADLINE)
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(encoded) == 2, f"{len(encoded)} requests encoded while only 2 calls had credit"
        gate.open()
        assert [len(r) for r in await asyncio.wait_for(asyncio.gather(*calls), DEADLINE)] == [
            1000 + index for index in range(10)
        ]

    async def test_the_server_wide_cap_refuses_with_resource_exhausted(self, harness: Harness) -> None:
        gate = Gate()
        server = harness.server(max_concurrent_calls=1)
        _register_gated(server, gate)
        address = await server.start(harness.listen)
        first, second = harness.client(address), harness.client(address)
        held = asyncio.ensure_future(first.call("unary", 1))
        await wait_until(lambda: gate.waiting == 1, DEADLINE)
        with pytest.raises(ResourceExhaustedError) as info:
            await asyncio.wait_for(second.call("unary", 2), DEADLINE)
        assert info.value.message == "server is at its limit of 1 concurrent calls"
        gate.open()
        assert await asyncio.wait_for(held, DEADLINE) == 1

    # -- cancellation and deadlines ------------------------------------------

    async def test_cancelling_a_call_cancels_its_handler(self, harness: Harness) -> None:
        started, cancelled = asyncio.Event(), asyncio.Event()

        def register(server: RpcServer) -> None:
            @server.unary("hang")
            async def hang(request: Any, ctx: Any) -> Any:
                started.set()
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    cancelled.set()
                    raise

        server, client = await harness.serve(register)
        call = asyncio.ensure_future(client.call("hang", None))
        await asyncio.wait_for(started.wait(), DEADLINE)
        call.cancel()
        await asyncio.wait_for(cancelled.wait(), DEADLINE)
        await wait_until(lambda: server.active_calls == 0, DEADLINE)
        assert call.cancelled()

    async def test_a_response_stream_let_go_of_gives_its_credit_back(self, harness: Harness) -> None:
        """Breaking out of ``async for`` without cancel() resets the stream, so
        its unit of credit returns and the handler is closed."""
        ended = asyncio.Event()

        def register(server: RpcServer) -> None:
            @server.server_streaming("forever")
            async def forever(request: Any, ctx: Any) -> Any:
                try:
                    n = 0
                    while True:
                        yield n
                        n += 1
                finally:
                    ended.set()

        _, client = await harness.serve(register, max_concurrent_calls_per_connection=1)
        async for n in client.call_server_streaming("forever", None):
            if n == 2:
                break
        await asyncio.wait_for(ended.wait(), DEADLINE)
        again = client.call_server_streaming("forever", None)
        async with again:
            assert await asyncio.wait_for(again.read(), DEADLINE) == 0

    async def test_a_request_iterator_that_raises_cancels_the_call(self, harness: Harness) -> None:
        cancelled = asyncio.Event()

        def register(server: RpcServer) -> None:
            @server.client_streaming("total")
            async def total(requests: Any, ctx: Any) -> Any:
                try:
                    return sum([r async for r in requests])
                except asyncio.CancelledError:
                    cancelled.set()
                    raise

        async def requests() -> Any:
            yield 1
            raise ValueError("source failed")

        _, client = await harness.serve(register)
        with pytest.raises(CancelledError, match="request iterator raised ValueError: source failed"):
            await asyncio.wait_for(client.call_client_streaming("total", requests()), DEADLINE)
        await asyncio.wait_for(cancelled.wait(), DEADLINE)
        assert await asyncio.wait_for(client.call_client_streaming("total", [1, 2]), DEADLINE) == 3

    async def test_the_deadline_reaches_the_handler(self, harness: Harness) -> None:
        cancelled = asyncio.Event()

        def register(server: RpcServer) -> None:
            @server.unary("hang")
            async def hang(request: Any, ctx: Any) -> Any:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    cancelled.set()
                    raise

        server, client = await harness.serve(register)
        with pytest.raises(DeadlineExceededError):
            await asyncio.wait_for(client.call("hang", None, timeout=0.3), DEADLINE)
        await asyncio.wait_for(cancelled.wait(), DEADLINE)
        await wait_until(lambda: server.active_calls == 0, DEADLINE)

    # -- order of delivery ----------------------------------------------------

    @pytest.mark.parametrize("kind", ["server_streaming", "bidi_streaming"])
    async def test_messages_sent_before_an_error_arrive_before_it(self, harness: Harness, kind: str) -> None:
        def register(server: RpcServer) -> None:
            async def five_then_fail(requests: Any, ctx: Any) -> Any:
                for index in range(5):
                    yield index
                ctx.set_trailers({"after": 5})
                raise RpcError("failed after five", code=StatusCode.FAILED_PRECONDITION)

            server.add_method("five", _kind(kind), five_then_fail)

        _, client = await harness.serve(register)
        if kind == "server_streaming":
            call = client.call_server_streaming("five", None)
        else:
            call = client.call_streaming("five", [])
        received = []
        with pytest.raises(FailedPreconditionError) as info:
            async for item in call:
                received.append(item)
        assert received == [0, 1, 2, 3, 4]
        assert info.value.message == "failed after five"
        assert info.value.trailers == {"after": 5}  # it came as a trailer, not as a reset

    @pytest.mark.parametrize("kind", ["unary", "client_streaming"])
    async def test_an_error_after_initial_metadata_keeps_its_trailers(self, harness: Harness, kind: str) -> None:
        def register(server: RpcServer) -> None:
            async def fail(request: Any, ctx: Any) -> Any:
                if kind == "client_streaming":
                    assert [item async for item in request] == [1, 2]
                ctx.set_initial_metadata({"first": 1})
                ctx.set_trailers({"last": 2})
                raise RpcError("no", code=StatusCode.FAILED_PRECONDITION)

            server.add_method("fail", _kind(kind), fail)

        _, client = await harness.serve(register)
        with pytest.raises(FailedPreconditionError) as info:
            if kind == "unary":
                await asyncio.wait_for(client.call("fail", None), DEADLINE)
            else:
                await asyncio.wait_for(client.call_client_streaming("fail", [1, 2]), DEADLINE)
        assert info.value.message == "no"
        assert info.value.trailers == {"last": 2}

    async def test_messages_received_before_a_reset_are_delivered_first(self, harness: Harness) -> None:
        """The deadline resets a stream whose messages the client has not read
        yet: it reads them all, then gets DEADLINE_EXCEEDED."""
        sent, ended = asyncio.Event(), asyncio.Event()

        def register(server: RpcServer) -> None:
            @server.server_streaming("five_then_hang")
            async def five_then_hang(request: Any, ctx: Any) -> Any:
                try:
                    for index in range(5):
                        yield index
                    sent.set()
                    await asyncio.Event().wait()
                finally:
                    ended.set()

        _, client = await harness.serve(register)
        call = client.call_server_streaming("five_then_hang", None, timeout=1.0)
        async with call:
            await asyncio.wait_for(sent.wait(), DEADLINE)
            await asyncio.wait_for(ended.wait(), DEADLINE)  # the deadline has passed
            received = []
            with pytest.raises(DeadlineExceededError):
                async for item in call:
                    received.append(item)
        assert received == [0, 1, 2, 3, 4]

    # -- limits before allocation ------------------------------------------------

    async def test_an_oversize_message_is_refused_from_its_length_prefix(self, harness: Harness) -> None:
        def register(server: RpcServer) -> None:
            @server.client_streaming("sink")
            async def sink(requests: Any, ctx: Any) -> Any:
                return len([item async for item in requests])

        server, client = await harness.serve(register, max_message_size=64 * 1024)
        connection = await harness.raw_connection(client)
        collector = Collector()
        stream = await connection.open_stream(collector)
        # Only the 5-byte prefix of a frame one byte over the limit: the
        # server must answer without waiting for (or buffering) the rest.
        stream.send(_header("sink") + _PREFIX.pack(_MESSAGE, 64 * 1024 + 1))
        await asyncio.wait_for(collector.ended.wait(), DEADLINE)
        code, message = collector.status()
        assert code == StatusCode.RESOURCE_EXHAUSTED
        assert f"{64 * 1024 + 1} bytes" in message

    async def test_a_flood_of_half_open_streams_leaves_other_clients_served(self, harness: Harness) -> None:
        def register(server: RpcServer) -> None:
            @server.unary("echo")
            async def echo(request: Any, ctx: Any) -> Any:
                return request

            @server.client_streaming("sink")
            async def sink(requests: Any, ctx: Any) -> Any:
                return len([item async for item in requests])

        server, client = await harness.serve(register, max_concurrent_calls_per_connection=20)
        connection = await harness.raw_connection(client)
        opened: list[Any] = []

        async def open_one() -> None:
            stream = await connection.open_stream(Collector())
            stream.send(_header("sink") + _frame(_MESSAGE, msgpack.packb(1)))  # never finished
            opened.append(stream)

        tasks = [asyncio.ensure_future(open_one()) for _ in range(500)]
        try:
            await wait_until(lambda: server.active_calls == 20, DEADLINE)
            for _ in range(100):
                await asyncio.sleep(0)  # every chance to run ahead of its credit
            assert len(opened) == 20
            assert server.active_calls == 20
            assert await asyncio.wait_for(client.call("echo", b"served"), DEADLINE) == b"served"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- graceful stop, restart -------------------------------------------------

    async def test_graceful_stop_refuses_new_calls_and_finishes_running_ones(self, harness: Harness) -> None:
        """A call refused during a graceful stop fails alone: the calls already
        running on the same connection finish."""
        gate = Gate()
        server, client = await harness.serve(lambda s: _register_gated(s, gate))
        running = [asyncio.ensure_future(client.call("unary", index)) for index in range(3)]
        await wait_until(lambda: gate.waiting == 3, DEADLINE)
        stopping = asyncio.ensure_future(server.stop(grace=DEADLINE))
        for _ in range(20):
            await asyncio.sleep(0)
        with pytest.raises(UnavailableError):
            await asyncio.wait_for(client.call("unary", "new"), DEADLINE)
        assert not any(call.done() for call in running)
        gate.open()
        assert await asyncio.wait_for(asyncio.gather(*running), DEADLINE) == [0, 1, 2]
        await asyncio.wait_for(stopping, DEADLINE)

    async def test_a_refused_call_moves_to_a_fresh_connection(self, harness: Harness) -> None:
        """Calls refused by a server going away are retried on a new
        connection; nothing closes that new connection, and the old one
        drains."""
        old_gate, new_gate = Gate(), Gate()
        old, client = await harness.serve(lambda s: _register_gated(s, old_gate))
        new = harness.server()
        _register_gated(new, new_gate)
        new_gate.open()
        new_address = await new.start(harness.listen)
        running = [asyncio.ensure_future(client.call("unary", index)) for index in range(2)]
        await wait_until(lambda: old_gate.waiting == 2, DEADLINE)
        stopping = asyncio.ensure_future(old.stop(grace=DEADLINE))
        for _ in range(20):
            await asyncio.sleep(0)
        client.address = new_address  # the name now points at the new server
        moved = await asyncio.wait_for(asyncio.gather(*(client.call("unary", f"m{i}") for i in range(5))), DEADLINE)
        assert moved == [f"m{i}" for i in range(5)]
        assert await asyncio.wait_for(client.call("unary", "again"), DEADLINE) == "again"
        old_gate.open()
        assert await asyncio.wait_for(asyncio.gather(*running), DEADLINE) == [0, 1]
        await asyncio.wait_for(stopping, DEADLINE)
        assert await asyncio.wait_for(client.call("unary", "still"), DEADLINE) == "still"

    async def test_the_client_reconnects_after_the_server_restarts(self, harness: Harness) -> None:
        def register(server: RpcServer) -> None:
            @server.unary("echo")
            async def echo(request: Any, ctx: Any) -> Any:
                return request

        first, client = await harness.serve(register)
        assert await asyncio.wait_for(client.call("echo", 1), DEADLINE) == 1
        await asyncio.wait_for(first.stop(grace=1), DEADLINE)
        second = harness.server()
        register(second)
        await second.start(client.address)
        # The old connection may still look open until the server's close
        # arrives; a call that finds it dead fails as UNAVAILABLE, and the
        # next one reconnects.
        loop = asyncio.get_running_loop()
        end = loop.time() + DEADLINE
        while True:
            try:
                assert await asyncio.wait_for(client.call("echo", 2), DEADLINE) == 2
                break
            except UnavailableError:
                if loop.time() > end:
                    raise

    # -- backpressure --------------------------------------------------------------

    async def test_a_slow_reader_stalls_the_producer(self, harness: Harness) -> None:
        produced: list[int] = []
        size = 16 * 1024
        _, client = await harness.serve(lambda server: _register_flood(server, produced, size))
        stream = client.call_server_streaming("flood", 400)
        assert len(await asyncio.wait_for(stream.read(), DEADLINE)) == size
        # The reader stops: the producer must stall (reader's queue + stream
        # window + send buffer) far below 400 messages.
        loop = asyncio.get_running_loop()
        end = loop.time() + 0.5
        while loop.time() < end:
            assert len(produced) < 200, f"the producer ran ahead to {len(produced)} messages"
            await asyncio.sleep(0.01)
        rest = [len(item) async for item in stream]
        assert len(rest) == 399 and len(produced) == 400

    async def test_a_paused_reader_holds_up_no_other_call(self, harness: Harness) -> None:
        # One call's reader stops while 16 large calls run on the same
        # connection: the paused stream may hold its own data, never theirs
        # (nor the acknowledgements their requests wait for).
        produced: list[int] = []
        message = 16 * 1024
        payload = bytes(range(256)) * 1024  # 256 KiB

        def register(server: RpcServer) -> None:
            @server.unary("echo")
            async def echo(request: Any, ctx: Any) -> Any:
                return request

            _register_flood(server, produced, message)

        _, client = await harness.serve(register)
        stream = client.call_server_streaming("flood", 256)
        assert len(await asyncio.wait_for(stream.read(), DEADLINE)) == message
        # The reader stops; its stream fills while the calls run.
        await wait_until(lambda: len(produced) >= 24, DEADLINE)
        for _ in range(2):
            results = await asyncio.wait_for(
                asyncio.gather(*(client.call("echo", payload) for _ in range(16))), 3 * DEADLINE
            )
            assert all(result == payload for result in results)
        rest = [len(item) async for item in stream]
        assert len(rest) == 255 and len(produced) == 256

    async def test_a_slow_handler_stalls_the_sender(self, harness: Harness) -> None:
        gate = asyncio.Event()
        size = 16 * 1024

        def register(server: RpcServer) -> None:
            @server.client_streaming("sink")
            async def sink(requests: Any, ctx: Any) -> int:
                await gate.wait()
                return sum([len(item) async for item in requests])

        _, client = await harness.serve(register)
        sent: list[int] = []

        async def requests() -> Any:
            for index in range(400):
                sent.append(index)
                yield bytes(size)

        result = asyncio.ensure_future(client.call_client_streaming("sink", requests()))
        await wait_until(lambda: len(sent) > 0, DEADLINE)
        loop = asyncio.get_running_loop()
        end = loop.time() + 0.5
        while loop.time() < end:
            assert len(sent) < 200, f"the sender ran ahead to {len(sent)} messages"
            await asyncio.sleep(0.01)
        gate.set()
        assert await asyncio.wait_for(result, 30) == 400 * size

    # -- many connections ------------------------------------------------------------

    async def test_many_connections_are_served_at_once(self, harness: Harness) -> None:
        def register(server: RpcServer) -> None:
            @server.unary("echo")
            async def echo(request: Any, ctx: Any) -> Any:
                return request

        server, first = await harness.serve(register)
        clients = [first] + [harness.client(first.address) for _ in range(49)]
        results = await asyncio.wait_for(
            asyncio.gather(*(client.call("echo", index) for index, client in enumerate(clients))), 3 * DEADLINE
        )
        assert results == list(range(50))
        for client in clients:
            await client.close()
        await wait_until(lambda: server.active_calls == 0, DEADLINE)


def _register_flood(server: RpcServer, produced: list[int], size: int) -> None:
    """``flood(count)``: ``count`` messages of ``size`` bytes, each index
    appended to ``produced`` as it is yielded."""

    @server.server_streaming("flood")
    async def flood(count: int, ctx: Any) -> Any:
        for index in range(count):
            produced.append(index)
            yield bytes(size)


def _kind(name: str) -> Any:
    from ..rpc import MethodKind

    return MethodKind(name)


class TestConformance(TransportConformance):
    """The suite for ``--rpcnet-transport=NAME`` (plugin mode)."""

    @pytest.fixture
    def transport_name(self, request: pytest.FixtureRequest) -> str:
        name = request.config.getoption("--rpcnet-transport", default=None)
        if not name:
            pytest.skip("name a transport: pytest -p rpcnet.testing.transport_conformance --rpcnet-transport=NAME")
        return name
