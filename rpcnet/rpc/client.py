"""The RPC client: one reused connection, one stream per call."""

from __future__ import annotations

import asyncio
import collections.abc
import logging
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Self

import attrs

from ..config import RpcConfig
from ..errors import MessageTooLargeError, RpcError, SerializationError, StatusCode, TransportError, error_for_status
from ..plugins import PluginHost
from ..transport import CONNECTION_LOST, Address, Connection, Stream, parse_address
from .context import CallInfo, deadline_var
from .endpoint import RpcEndpoint
from .methods import MethodKind
from .protocol import (
    ALPN,
    MESSAGE,
    OK_TRAILER,
    PREFIX,
    PREFIX_SIZE,
    RESPONSE_HEADER,
    TRAILER,
    FrameDecoder,
    ProtocolError,
    ResetCode,
    decode_response_header,
    decode_trailer,
    encode_header,
    whole_ok_reply,
)
from .streams import MessageQueue
from .wrappers import end_wrappers, start_wrappers

__all__ = ["RpcClient", "CallMetadata", "ResponseStream", "ClientStreamingCall", "BidiCall"]

log = logging.getLogger("rpcnet.client")

_OK_TRAILER_PAYLOAD = OK_TRAILER[PREFIX_SIZE:]


@attrs.frozen
class CallMetadata:
    """Metadata the server sent: before the first response, and with the status (read-only)."""

    initial: Mapping[str, Any] = attrs.field(converter=MappingProxyType)
    trailers: Mapping[str, Any] = attrs.field(converter=MappingProxyType)


class _Refused(Exception):
    """The server refused the call before running a handler; safe to retry."""


class _NotOpened(Exception):
    """``open_stream_soon`` could not open the call's stream, or the
    connection began draining meanwhile: nothing was sent."""


class _Link:
    """A connection as the client uses it: its calls in flight, and whether
    it still takes new calls.

    A connection whose server refused a call (it is shutting down) is
    *draining*: no new call goes on it, the calls already on it finish or
    fail on their own, and it is closed when the last of them ends.
    """

    __slots__ = ("connection", "calls", "draining")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.calls = 0
        self.draining = False



def _refused_error() -> RpcError:
    error = RpcError("the server refused the call: it is shutting down", code=StatusCode.UNAVAILABLE)
    error.not_sent = True
    return error


def _reset_error(error_code: int) -> BaseException:
    if error_code == CONNECTION_LOST:
        return RpcError("the connection to the server was lost during the call", code=StatusCode.UNAVAILABLE)
    if error_code == ResetCode.REFUSED:
        return _Refused()
    if error_code == ResetCode.DEADLINE_EXCEEDED:
        return RpcError("the server reset the call: deadline exceeded", code=StatusCode.DEADLINE_EXCEEDED)
    if error_code == ResetCode.CANCELLED:
        return RpcError("the server cancelled the call", code=StatusCode.CANCELLED)
    if error_code == ResetCode.PROTOCOL_ERROR:
        return RpcError("the server reset the call: protocol error", code=StatusCode.INTERNAL)
    return RpcError(f"the server reset the stream (code {error_code})", code=StatusCode.UNAVAILABLE)


class _ClientCall:
    """Stream handler for the client side of any call kind."""

    __slots__ = (
        "client",
        "link",
        "half_closed",
        "decode",
        "decoder",
        "max_size",
        "future",
        "responses",
        "response",
        "initial",
        "trailers",
        "stream",
        "timer",
        "finished",
        "streaming",
        "pending",
        "withdraw",
    )

    def __init__(self, client: RpcClient, decode: Any, streaming: bool) -> None:
        self.client = client
        self.link: _Link | None = None  # set once the call has a stream
        self.half_closed = False  # our FIN (or a reset) has gone out
        self.decode = decode
        self.decoder: FrameDecoder | None = None  # made when a reply comes in pieces
        self.max_size = client._max_message_size
        self.future: asyncio.Future[Any] = (client._loop or asyncio.get_running_loop()).create_future()
        self.responses: MessageQueue | None = None
        self.response: Any = None
        self.initial: dict[str, Any] | None = None  # the response header's metadata, once it came
        self.trailers: dict[str, Any] | None = None  # the trailer's metadata, once it came
        self.stream: Stream | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.finished = False
        self.streaming = streaming
        #: What to send once ``open_stream_soon`` grants the stream:
        #: (serializer, request, method, metadata, link).
        self.pending: tuple[Any, Any, str, dict[str, Any] | None, _Link] | None = None
        self.withdraw: Callable[[], None] | None = None

    def stream_granted(self, stream: Stream | None, exc: BaseException | None) -> None:
        """``open_stream_soon``'s callback: encode the request and send it."""
        pending = self.pending
        self.pending = self.withdraw = None
        if stream is None or pending is None:
            self._finish(_NotOpened())
            return
        if self.finished:
            stream.reset(ResetCode.CANCELLED)  # the caller gave up meanwhile
            return
        codec, request, method, metadata, link = pending
        if link.draining:
            stream.reset(ResetCode.CANCELLED)  # refused meanwhile; nothing was sent
            self._finish(_NotOpened())
            return
        self.stream = stream
        self.link = link
        link.calls += 1
        client = self.client
        try:
            data = client._message(codec, request, client._header(method, metadata, None))
        except Exception as error:
            self._abort(error, ResetCode.CANCELLED)
            return
        self.send_opening(stream, data, True)

    def send_opening(self, stream: Stream, data: bytes, end_stream: bool) -> None:
        """Send the call's first frames (and FIN, for a single request)."""
        self.half_closed = end_stream
        try:
            stream.send(data, end_stream)
        except TransportError:
            pass  # the connection ended meanwhile: the call reports it

    def data_received(self, data: bytes, end_stream: bool) -> None:
        if self.finished:
            return
        decoder = self.decoder
        if decoder is None:
            if end_stream and self.responses is None and self.response is None:
                # The usual reply: one message and the OK trailer in one piece.
                payload = whole_ok_reply(data, self.max_size)
                if payload is not None:
                    self.response = payload
                    self._succeed()
                    return
            decoder = self.decoder = FrameDecoder(self.max_size)
        try:
            frames = decoder.feed(data)
            for frame_type, payload in frames:
                if frame_type == MESSAGE:
                    if self.responses is not None:
                        self.responses.put(payload)
                    elif self.response is None:
                        self.response = payload
                    else:
                        raise ProtocolError("the server sent more than one response to a unary call")
                elif frame_type == TRAILER:
                    if payload == _OK_TRAILER_PAYLOAD:
                        self._succeed()
                        return
                    code, message, details, metadata = decode_trailer(payload)
                    self.trailers = metadata
                    if code == StatusCode.OK:
                        self._succeed()
                    else:
                        self._finish(error_for_status(code, message, details, metadata))
                    return
                elif frame_type == RESPONSE_HEADER:
                    self.initial = decode_response_header(payload)
                else:
                    raise ProtocolError(f"unexpected frame type 0x{frame_type:02x} from the server")
        except ProtocolError as exc:
            self._abort(RpcError(f"malformed response: {exc}", code=exc.status), ResetCode.PROTOCOL_ERROR)
            return
        if end_stream:
            self._finish(RpcError("the server ended the stream without a status", code=StatusCode.INTERNAL))

    def stream_reset(self, error_code: int) -> None:
        self.half_closed = True  # a reset ends our sending side too
        if error_code == ResetCode.REFUSED and self.link is not None:
            # Only the connection that refused this call stops taking calls.
            self.client._drain(self.link)
        self._finish(_reset_error(error_code))

    def _succeed(self) -> None:
        if self.streaming:
            self._finish(None)
            return
        if self.response is None:
            self._finish(RpcError("the server sent no response message for a unary call", code=StatusCode.INTERNAL))
            return
        try:
            value = self.decode(self.response)
        except SerializationError as exc:
            self._finish(RpcError(f"could not decode the response: {exc}", code=StatusCode.INTERNAL))
            return
        self._finish(None, value)

    def _finish(self, exc: BaseException | None, value: Any = None) -> None:
        if self.finished:
            return
        self.finished = True
        if self.withdraw is not None:
            self.withdraw()  # still waiting for stream credit: never sent
            self.pending = self.withdraw = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.half_closed and self.stream is not None:
            # The server ended the call while we still had our side open
            # (an error before all requests were read): end it too, so the
            # stream finishes both ways and its credit comes back.
            self.half_closed = True
            try:
                self.stream.send(b"", True)
            except TransportError:
                pass
        link = self.link
        if link is not None:
            self.link = None
            link.calls -= 1  # a draining connection closes with its last call
            if link.draining and link.calls <= 0:
                link.connection.close(0, "drained: the server refused new calls")
        if self.responses is not None:
            self.responses.close(exc)
        future = self.future
        if not future.done():
            if exc is None:
                future.set_result(value)
            else:
                future.set_exception(exc)
                if self.streaming:
                    future.exception()  # observed through the response stream instead

    def _abort(self, exc: BaseException, reset_code: int) -> None:
        if self.finished:
            return
        stream = self.stream
        if stream is not None:
            self.half_closed = True
            stream.reset(reset_code)
        self._finish(exc)

    def on_deadline(self) -> None:
        self.timer = None
        self._abort(RpcError("deadline exceeded", code=StatusCode.DEADLINE_EXCEEDED), ResetCode.DEADLINE_EXCEEDED)

    def cancel(self) -> None:
        self._abort(RpcError("the call was cancelled by the client", code=StatusCode.CANCELLED), ResetCode.CANCELLED)


class RpcClient(RpcEndpoint):
    """Calls methods on one server, reusing one connection for all calls.

    ``async with RpcClient(address, config) as client: await client.call(...)``.
    A call made inside a handler inherits that call's deadline.
    """

    def __init__(
        self,
        address: str | Address,
        config: RpcConfig | None = None,
        *,
        plugins: PluginHost | None = None,
        server_name: str | None = None,
    ) -> None:
        super().__init__(config, plugins)
        self.address = parse_address(address)
        self.server_name = server_name or (self.config.tls.server_name if self.config.tls else None)
        self._connection: Connection | None = None
        self._link: _Link | None = None  # the connection new calls go on
        self._draining: set[_Link] = set()  # refused calls; closed when their last call ends
        self._connecting: asyncio.Future[_Link] | None = None
        self._closed = False
        self._header_cache: dict[str, bytes] = {}
        self._default_timeout = self.config.default_timeout
        self._max_message_size = self.config.max_message_size
        #: The loop of the current connection (connections belong to one loop).
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- connection --------------------------------------------------------

    async def connect(self) -> Connection:
        """Connect now (calls connect on demand; this surfaces errors early)."""
        return (await self._usable_link()).connection

    async def _usable_link(self) -> _Link:
        """The connection new calls go on, connecting if there is none."""
        link = self._link
        if link is not None and not link.draining and not link.connection.is_closed:
            return link
        if self._closed:
            raise RpcError("the client is closed", code=StatusCode.UNAVAILABLE)
        if self._connecting is not None:
            return await asyncio.shield(self._connecting)
        loop = self._loop = asyncio.get_running_loop()
        self._connecting = connecting = loop.create_future()
        try:
            connection = await self.transport.connect(
                self.address, tls=self.config.tls, server_name=self.server_name, alpn=ALPN
            )
        except BaseException as exc:
            connecting.set_exception(exc)
            connecting.exception()
            self._connecting = None
            raise
        link = _Link(connection)
        self._link = link
        self._connection = connection
        connecting.set_result(link)
        self._connecting = None
        return link

    def _drain(self, link: _Link) -> None:
        """The server refused a call on ``link``'s connection: new calls go on
        a fresh connection; the calls still on this one go on until they end,
        then it closes. Nothing else is closed: a connection another call has
        just opened is never touched."""
        if link.draining:
            return
        link.draining = True
        if self._link is link:
            self._link = None
            self._connection = None
        if link.calls <= 0:
            link.connection.close(0, "drained: the server refused new calls")
        else:
            self._draining.add(link)
            link.connection.add_close_callback(lambda _exc: self._draining.discard(link))

    async def close(self) -> None:
        self._closed = True
        links = [link for link in (self._link, *self._draining) if link is not None]
        self._link = self._connection = None
        self._draining.clear()
        for link in links:
            link.connection.close(0, "client closed")
        for link in links:
            try:
                await asyncio.wait_for(link.connection.wait_closed(), 5.0)
            except (TimeoutError, TransportError):
                pass

    async def __aenter__(self) -> RpcClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    # -- helpers -------------------------------------------------------------

    def _timeout(self, timeout: float | None) -> tuple[float | None, float | None]:
        """(absolute deadline, seconds to send) from ``timeout`` and the inherited deadline."""
        loop = asyncio.get_running_loop()
        if timeout is None:
            timeout = self.config.default_timeout
        deadline = None if timeout is None else loop.time() + timeout
        inherited = deadline_var.get()
        if inherited is not None and (deadline is None or inherited < deadline):
            deadline = inherited
        if deadline is None:
            return None, None
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise RpcError("deadline exceeded before the call was sent", code=StatusCode.DEADLINE_EXCEEDED)
        return deadline, remaining

    def _header(self, method: str, metadata: dict[str, Any] | None, remaining: float | None) -> bytes:
        if metadata or remaining is not None:
            return encode_header(method, metadata, remaining)
        header = self._header_cache.get(method)
        if header is None:
            header = self._header_cache[method] = encode_header(method)
        return header

    def _message(self, serializer: Any, value: Any, head: bytes = b"") -> bytes:
        """``head`` + the request's MESSAGE frame, in one copy."""
        try:
            payload = serializer.dumps(value)
        except MessageTooLargeError as exc:
            raise RpcError(f"request too large: {exc}", code=StatusCode.RESOURCE_EXHAUSTED) from None
        except SerializationError as exc:
            raise RpcError(f"could not encode the request: {exc}", code=StatusCode.INVALID_ARGUMENT) from None
        if len(payload) > self.config.max_message_size:
            raise RpcError(
                f"request of {len(payload)} bytes exceeds the {self.config.max_message_size}-byte limit",
                code=StatusCode.RESOURCE_EXHAUSTED,
            )
        return b"".join((head, PREFIX.pack(MESSAGE, len(payload)), payload))

    async def _open(self, call: _ClientCall, deadline: float | None) -> Stream:
        """A stream for ``call``: waits for stream credit (until ``deadline``)
        and reconnects once if the connection turned out to be closed before
        anything was sent. Nothing of the request exists yet: it is encoded
        only once the stream is granted, so waiting calls hold no buffers."""
        for attempt in (1, 2, 3):
            link = self._link
            if link is None or link.draining or link.connection.is_closed:
                try:
                    link = await self._usable_link()
                except TransportError as exc:
                    error = RpcError(
                        f"cannot connect to {self.address[0]}:{self.address[1]}: {exc}", code=StatusCode.UNAVAILABLE
                    )
                    error.not_sent = True
                    raise error from exc
            try:
                if deadline is None:
                    stream = await link.connection.open_stream(call)
                else:
                    stream = await self._open_by(link.connection, call, deadline)
            except TransportError:
                if attempt == 3 or not link.connection.is_closed:
                    error = RpcError("could not start the call: the connection is closed", code=StatusCode.UNAVAILABLE)
                    error.not_sent = True
                    raise error from None
                continue
            if link.draining and attempt < 3:
                # The server started refusing calls on this connection while
                # we waited for credit: nothing was sent, go to a fresh one.
                stream.reset(ResetCode.CANCELLED)
                continue
            call.stream = stream
            call.link = link
            link.calls += 1
            return stream
        raise AssertionError("unreachable")

    @staticmethod
    async def _open_by(connection: Connection, call: _ClientCall, deadline: float) -> Stream:
        """``open_stream``, giving up at the call's deadline: a call waiting
        for stream credit (the connection is at its limit of concurrent
        calls) fails with DEADLINE_EXCEEDED, without having sent anything."""
        try:
            async with asyncio.timeout_at(deadline):
                return await connection.open_stream(call)
        except TimeoutError:
            error = RpcError(
                "deadline exceeded while waiting for a stream: the connection was at its limit of concurrent calls",
                code=StatusCode.DEADLINE_EXCEEDED,
            )
            error.not_sent = True
            raise error from None

    @staticmethod
    def _remaining(deadline: float | None) -> float | None:
        """Seconds left to send in the header, once the stream is granted."""
        if deadline is None:
            return None
        return max(deadline - asyncio.get_running_loop().time(), 0.0)

    def _arm(self, call: _ClientCall, deadline: float | None) -> None:
        if deadline is not None:
            call.timer = asyncio.get_running_loop().call_at(deadline, call.on_deadline)

    def _wrap_start(self, method: str, kind: MethodKind, metadata: dict[str, Any] | None) -> tuple[CallInfo, list[Any]] | None:
        if not self._wrappers:
            return None
        connection = self._connection
        info = CallInfo(
            side="client",
            method=method,
            kind=kind.value,
            peer=connection.peer if connection is not None else None,
            metadata=dict(metadata or {}),
            start=asyncio.get_running_loop().time(),
        )
        return info, start_wrappers(self._wrappers, info)

    @staticmethod
    def _wrap_end(wrapped: tuple[CallInfo, list[Any]] | None, exc: BaseException | None) -> None:
        if wrapped is None:
            return
        info, generators = wrapped
        info.status = exc.code if isinstance(exc, RpcError) else (StatusCode.OK if exc is None else StatusCode.UNKNOWN)
        info.error = exc
        info.duration = asyncio.get_running_loop().time() - info.start
        end_wrappers(generators, info)

    # -- unary -----------------------------------------------------------------

    async def _start_unary(
        self, call: _ClientCall, link: _Link | None, deadline: float | None,
        codec: Any, request: Any, method: str, metadata: dict[str, Any] | None,
    ) -> None:
        """Open ``call``'s stream (waiting for credit, reconnecting), then
        encode and send the request: a call waiting for credit has encoded
        nothing yet."""
        stream = None
        if deadline is None and link is not None and not link.draining:
            try:
                stream = await link.connection.open_stream(call)
            except TransportError:
                pass
            else:
                if link.draining:
                    stream.reset(ResetCode.CANCELLED)  # refused meanwhile; nothing was sent
                    stream = None
                else:
                    call.stream = stream
                    call.link = link
                    link.calls += 1
        if stream is None:
            stream = await self._open(call, deadline)
        try:
            data = self._message(codec, request, self._header(method, metadata, self._remaining(deadline)))
        except BaseException as exc:
            call._abort(exc, ResetCode.CANCELLED)
            call.future.exception()  # raised here instead
            raise
        call.send_opening(stream, data, True)
        data = b""  # the transport has its copy; ours is not kept for the whole call
        self._arm(call, deadline)

    async def call(
        self,
        method: str,
        request: Any = None,
        *,
        timeout: float | None = None,
        metadata: dict[str, Any] | None = None,
        serializer: str | None = None,
        _with_metadata: bool = False,
        _typed: Any = None,
    ) -> Any:
        """Unary call: send ``request``, return the response.

        Raises the :class:`~rpcnet.errors.RpcError` subclass of the status the
        server returned (``NotFoundError``, ``DeadlineExceededError``, ...).
        """
        # _typed: a typed method's conversions (rpcnet.rpc.services), run in
        # this coroutine so a typed call costs no coroutine of its own.
        if _typed is not None:
            request = _typed.dump_request(request)
        codec = self._serializer(serializer) if serializer else self.serializer
        wrapped = self._wrap_start(method, MethodKind.UNARY, metadata) if self._wrappers else None
        try:
            refusals = 0
            soon = True  # the connection may open the stream from a callback
            while True:
                if timeout is None and self._default_timeout is None and deadline_var.get() is None:
                    deadline = None
                else:
                    deadline = self._timeout(timeout)[0]
                call = _ClientCall(self, codec.loads, False)
                link = self._link
                if soon and deadline is None and link is not None and not link.draining and link.connection.opens_streams_soon:
                    # The request is encoded and sent when the stream is
                    # granted (at once if there is credit); this coroutine
                    # waits only for the response.
                    call.pending = (codec, request, method, metadata, link)
                    call.withdraw = link.connection.open_stream_soon(call, call.stream_granted)
                else:
                    await self._start_unary(call, link, deadline, codec, request, method, metadata)
                try:
                    response = await call.future
                except _NotOpened:
                    soon = False  # nothing was sent: open the stream the long way
                    continue
                except _Refused:
                    refusals += 1
                    if refusals == 2:
                        raise _refused_error() from None
                    continue
                except asyncio.CancelledError:
                    call.cancel()
                    raise
                break
        except BaseException as exc:
            if wrapped is not None:
                self._wrap_end(wrapped, exc)
            if _typed is not None and isinstance(exc, RpcError):
                typed = _typed.typed_error(exc)
                if typed is not exc:
                    raise typed from None
            raise
        if wrapped is not None:
            self._wrap_end(wrapped, None)
        if _typed is not None:
            response = _typed.load_response(response)
        if _with_metadata:
            return response, CallMetadata(call.initial or {}, call.trailers or {})
        return response

    async def call_with_metadata(
        self,
        method: str,
        request: Any = None,
        *,
        timeout: float | None = None,
        metadata: dict[str, Any] | None = None,
        serializer: str | None = None,
    ) -> tuple[Any, CallMetadata]:
        """Unary call returning ``(response, CallMetadata(initial, trailers))``."""
        return await self.call(
            method, request, timeout=timeout, metadata=metadata, serializer=serializer, _with_metadata=True
        )

    # -- streaming -------------------------------------------------------------

    def call_server_streaming(
        self,
        method: str,
        request: Any = None,
        *,
        timeout: float | None = None,
        metadata: dict[str, Any] | None = None,
        serializer: str | None = None,
    ) -> ResponseStream:
        """Server streaming: ``async for response in client.call_server_streaming(m, req)``."""
        return ResponseStream(self, method, MethodKind.SERVER_STREAMING, [request], timeout, metadata, serializer)

    def call_client_streaming(
        self,
        method: str,
        requests: Iterable[Any] | AsyncIterable[Any] | None = None,
        *,
        timeout: float | None = None,
        metadata: dict[str, Any] | None = None,
        serializer: str | None = None,
    ) -> ClientStreamingCall:
        """Client streaming: ``await client.call_client_streaming(m, requests)`` sends
        every item of ``requests`` and returns the response.

        Without ``requests``, send with ``await call.send(msg)``, end with
        ``await call.done_writing()`` and get the response with ``await call``.
        """
        return ClientStreamingCall(self, method, MethodKind.CLIENT_STREAMING, requests, timeout, metadata, serializer)

    def call_streaming(
        self,
        method: str,
        requests: Iterable[Any] | AsyncIterable[Any] | None = None,
        *,
        timeout: float | None = None,
        metadata: dict[str, Any] | None = None,
        serializer: str | None = None,
    ) -> BidiCall:
        """Bidirectional streaming.

        With ``requests``, they are sent in the background while you iterate
        the responses. Without, send with ``await call.send(msg)`` and end with
        ``await call.done_writing()``; read with ``async for`` or ``await call.read()``.
        """
        return BidiCall(self, method, MethodKind.BIDI_STREAMING, requests, timeout, metadata, serializer)


class _StreamCall:
    """What every streaming call has: start on first use, metadata, cancel."""

    def __init__(
        self,
        client: RpcClient,
        method: str,
        kind: MethodKind,
        requests: Any,
        timeout: float | None,
        metadata: dict[str, Any] | None,
        serializer: str | None,
    ) -> None:
        self._client = client
        self._method = method
        self._kind = kind
        self._requests = requests
        self._timeout = timeout
        self._metadata = metadata
        self._codec = client._serializer(serializer) if serializer else client.serializer
        self._call: _ClientCall | None = None
        self._starting: asyncio.Future[None] | None = None
        self._wrapped: tuple[CallInfo, list[Any]] | None = None
        self._ended = False

    async def _start(self) -> _ClientCall:
        if self._call is not None:
            return self._call
        if self._starting is not None:
            await asyncio.shield(self._starting)
            assert self._call is not None
            return self._call
        self._starting = asyncio.get_running_loop().create_future()
        client = self._client
        try:
            self._wrapped = client._wrap_start(self._method, self._kind, self._metadata)
            deadline = client._timeout(self._timeout)[0]
            call = _ClientCall(client, self._codec.loads, True)
            # The queue decodes through a function that does not hold this
            # object, so a stream the caller drops is freed (and cancelled) at once.
            call.responses = MessageQueue(_LazyStream(call), client.config.stream_buffer, _decoder(call, self._codec))
            stream = await client._open(call, deadline)
            try:
                first = client._header(self._method, self._metadata, client._remaining(deadline))
                end = self._kind is MethodKind.SERVER_STREAMING
                if end:
                    first = client._message(self._codec, self._requests[0], first)
            except BaseException as exc:
                call._abort(exc, ResetCode.CANCELLED)
                call.future.exception()  # raised here instead
                raise
            call.send_opening(stream, first, end)
            client._arm(call, deadline)
        except BaseException as exc:
            self._starting.set_exception(exc)
            self._starting.exception()
            self._end(exc)
            raise
        self._call = call
        self._starting.set_result(None)
        self._after_start(call)
        return call

    def _after_start(self, call: _ClientCall) -> None:
        pass

    def __del__(self) -> None:
        # A call the caller let go of (``break`` out of ``async for``, an
        # unread stream) is cancelled, so it gives its stream credit back
        # instead of holding it until the server ends the call.
        call = self._call
        if call is not None and not call.finished:
            try:
                call.cancel()
            except Exception:  # the loop may be gone at interpreter exit
                pass

    def _end(self, exc: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        self._client._wrap_end(self._wrapped, exc)

    def cancel(self) -> None:
        if self._call is not None:
            self._call.cancel()

    @property
    def initial_metadata(self) -> dict[str, Any]:
        return (self._call.initial if self._call else None) or {}

    @property
    def trailers(self) -> dict[str, Any]:
        return (self._call.trailers if self._call else None) or {}

    async def __aenter__(self) -> Self:
        await self._start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._call is not None and not self._call.finished:
            self._call.cancel()


class ResponseStream(_StreamCall):
    """Responses of a server-streaming call, as an async iterator.

    After iteration ends, ``initial_metadata`` and ``trailers`` are set.
    ``cancel()`` aborts the call (the server's handler is cancelled).
    """

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> Any:
        call = self._call or await self._start()
        assert call.responses is not None
        try:
            return await call.responses.__anext__()
        except StopAsyncIteration:
            self._end(None)
            raise
        except _Refused:
            error = _refused_error()
            self._end(error)
            raise error from None
        except asyncio.CancelledError:
            call.cancel()
            self._end(RpcError("cancelled", code=StatusCode.CANCELLED))
            raise
        except BaseException as exc:
            self._end(exc)
            raise

    async def read(self) -> Any:
        """The next response; raises ``EOFError`` when the server has finished."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise EOFError("the server has finished sending") from None


class _RequestWriter(_StreamCall):
    """Sending requests: those given when calling, in the background, or by hand."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sender: asyncio.Task[None] | None = None
        self._write_closed = False

    def _after_start(self, call: _ClientCall) -> None:
        if self._requests is not None:
            self._sender = asyncio.get_running_loop().create_task(self._send_all(self._requests))

    async def _send_all(self, requests: Iterable[Any] | AsyncIterable[Any]) -> None:
        try:
            if isinstance(requests, collections.abc.AsyncIterable):
                async for item in requests:
                    if not await self._send_one(item):
                        return
            else:
                for item in requests:
                    if not await self._send_one(item):
                        return
            await self.done_writing()
        except RpcError as exc:
            call = self._call
            if call is not None:
                call._abort(exc, ResetCode.CANCELLED)
        except TransportError:
            pass  # the call itself reports why the stream ended
        except Exception as exc:
            # The caller's request iterator failed: the call cannot go on, so
            # it is cancelled (the server's handler too) and the caller learns
            # why, instead of waiting for a deadline that may never come.
            call = self._call
            if call is not None:
                error = RpcError(
                    f"the call was cancelled: its request iterator raised {type(exc).__name__}: {exc}",
                    code=StatusCode.CANCELLED,
                )
                error.__cause__ = exc
                call._abort(error, ResetCode.CANCELLED)

    async def _send_one(self, item: Any) -> bool:
        call = self._call
        assert call is not None and call.stream is not None
        if call.finished:
            return False
        call.stream.send(self._client._message(self._codec, item))
        await call.stream.drain()
        return True

    async def send(self, message: Any) -> None:
        """Send one request message (waits while the peer is not reading)."""
        call = self._call or await self._start()
        if self._write_closed:
            raise RuntimeError("done_writing() was already called")
        if call.finished:
            await call.future  # raises the call's error
            raise RpcError("the call has already finished", code=StatusCode.FAILED_PRECONDITION)
        await self._send_one(message)

    async def done_writing(self) -> None:
        """Tell the server no more requests follow."""
        call = self._call or await self._start()
        if self._write_closed or call.finished:
            self._write_closed = True
            return
        self._write_closed = True
        assert call.stream is not None
        call.half_closed = True
        call.stream.send(b"", end_stream=True)

class ClientStreamingCall(_RequestWriter):
    """A client-streaming call: requests stream, one response comes back.

    ``await call`` (or :meth:`result`) sends the requests given and returns
    the response; without requests, :meth:`send` and :meth:`done_writing`
    stream them by hand.
    """

    async def result(self) -> Any:
        """For client streaming: wait for the single response."""
        call = self._call or await self._start()
        try:
            await call.future
        except _Refused:
            error = _refused_error()
            self._end(error)
            raise error from None
        except asyncio.CancelledError:
            call.cancel()
            raise
        except BaseException as exc:
            self._end(exc)
            raise
        finally:
            if self._sender is not None and not self._sender.done():
                self._sender.cancel()
        assert call.responses is not None
        try:
            value = await call.responses.read()
        except EOFError:
            error = RpcError("the server sent no response message", code=StatusCode.INTERNAL)
            self._end(error)
            raise error from None
        self._end(None)
        return value

    def __await__(self) -> Any:
        return self.result().__await__()


class BidiCall(_RequestWriter, ResponseStream):
    """A bidirectional-streaming call: requests and responses both stream.

    Read with ``async for`` or :meth:`read`; write with :meth:`send` and end
    with :meth:`done_writing` (or pass the requests when calling).
    """


def _decoder(call: _ClientCall, codec: Any) -> Callable[[bytes], Any]:
    def decode(payload: bytes) -> Any:
        try:
            return codec.loads(payload)
        except SerializationError as exc:
            error = RpcError(f"could not decode a response message: {exc}", code=StatusCode.INTERNAL)
            call._abort(error, ResetCode.PROTOCOL_ERROR)
            raise error from None

    return decode


class _LazyStream:
    """Lets a response queue pause/resume the stream once it is open."""

    __slots__ = ("_call",)

    def __init__(self, call: _ClientCall) -> None:
        self._call = call

    def pause_reading(self) -> None:
        if self._call.stream is not None:
            self._call.stream.pause_reading()

    def resume_reading(self) -> None:
        if self._call.stream is not None:
            self._call.stream.resume_reading()
