"""The RPC server: methods by name, one stream per call, over any transport."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import inspect
import logging
import warnings
from collections.abc import Callable
from typing import Any

import attrs

from ..config import RpcConfig, TlsConfig
from ..errors import ConfigError, MessageTooLargeError, RpcError, SerializationError, StatusCode, TransportError
from ..plugins import PluginHost
from ..transport import Address, Listener, PeerInfo, Stream, parse_address
from .context import CallInfo, ServerContext, context_var, deadline_var
from .eager import run_to_end, start_task
from .endpoint import RpcEndpoint
from .methods import MethodKind, MethodSpec
from .protocol import (
    ALPN,
    HEADER,
    MESSAGE,
    OK_TRAILER,
    PREFIX,
    FrameDecoder,
    ProtocolError,
    ResetCode,
    decode_header,
    encode_response_header,
    encode_trailer,
    whole_request,
)
from .streams import MessageQueue
from .wrappers import end_wrappers, start_wrappers

__all__ = ["RpcServer"]

log = logging.getLogger("rpcnet.server")

_NO_REQUEST = object()
#: Header payloads without metadata or deadline -> (method, None): most calls
#: repeat a few of them, so they are decoded once.
_HEADER_CACHE: dict[bytes, tuple[str, None]] = {}


class RpcServer(RpcEndpoint):
    """Serves registered methods on a transport chosen by ``config.transport``.

    Register handlers with :meth:`register` (unary), :meth:`register_bidi_streaming`, :meth:`register_server_streaming`,
    :meth:`register_client_streaming`, or the decorators :meth:`unary`,
    :meth:`server_streaming`, :meth:`client_streaming`, :meth:`bidi_streaming`.
    Handlers take ``(request_or_request_iterator, ctx)``; streaming responses
    are async generators.
    """

    def __init__(self, config: RpcConfig | None = None, *, plugins: PluginHost | None = None) -> None:
        super().__init__(config, plugins)
        self._methods: dict[str, MethodSpec] = {}
        self._listener: Listener | None = None
        self._active: set[_ServerCall] = set()
        self._per_connection: dict[Any, int] = {}
        self._idle: asyncio.Event | None = None
        self._closed: asyncio.Event | None = None
        self._stopping = False
        self._loop: Any = None
        #: Typed services by name (add_service); reflection describes them.
        self._services: dict[str, Any] = {}
        if self.config.reflection:
            from .reflection import install_reflection

            install_reflection(self)

    # -- registration -----------------------------------------------------

    def add_method(
        self,
        name: str,
        kind: MethodKind,
        handler: Callable[..., Any],
        *,
        idempotent: bool = False,
        serializer: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("method name must be a non-empty string")
        if name in self._methods:
            raise ValueError(f"method {name!r} is already registered")
        if not callable(handler):
            raise TypeError(f"handler for {name!r} is not callable: {handler!r}")
        self._methods[name] = MethodSpec(
            name=name,
            kind=kind,
            handler=handler,
            serializer=self._serializer(serializer) if serializer else self.serializer,
            idempotent=idempotent,
        )

    def register(self, name: str, handler: Callable[..., Any], **kwargs: Any) -> None:
        """Register a unary handler ``async def h(request, ctx) -> response``."""
        self.add_method(name, MethodKind.UNARY, handler, **kwargs)

    def register_bidi_streaming(self, name: str, handler: Callable[..., Any], **kwargs: Any) -> None:
        """Register a bidirectional handler ``async def h(requests, ctx)`` that yields responses."""
        self.add_method(name, MethodKind.BIDI_STREAMING, handler, **kwargs)

    def register_streaming(self, name: str, handler: Callable[..., Any], **kwargs: Any) -> None:
        """Deprecated name of :meth:`register_bidi_streaming` (removed in 0.3)."""
        warnings.warn(
            "RpcServer.register_streaming() is deprecated; use register_bidi_streaming()",
            DeprecationWarning,
            stacklevel=2,
        )
        self.register_bidi_streaming(name, handler, **kwargs)

    def register_server_streaming(self, name: str, handler: Callable[..., Any], **kwargs: Any) -> None:
        """Register ``async def h(request, ctx)`` that yields responses."""
        self.add_method(name, MethodKind.SERVER_STREAMING, handler, **kwargs)

    def register_client_streaming(self, name: str, handler: Callable[..., Any], **kwargs: Any) -> None:
        """Register ``async def h(requests, ctx) -> response``."""
        self.add_method(name, MethodKind.CLIENT_STREAMING, handler, **kwargs)

    def _decorator(self, kind: MethodKind, name: str | None, kwargs: dict[str, Any]) -> Callable[[Any], Any]:
        def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.add_method(name or handler.__name__, kind, handler, **kwargs)
            return handler

        return decorate

    def unary(self, name: str | None = None, **kwargs: Any) -> Callable[[Any], Any]:
        """Register ``async def handler(request, ctx)`` under ``name``.

        The handler runs as its own task, whose first step runs at once in
        the callback that delivered the request. A handler whose body has no
        ``await``, ``async for`` or ``async with`` cannot suspend, so it runs
        to its end there without a task (``asyncio.current_task()`` is None
        in it); each call still gets its own copy of the context."""
        return self._decorator(MethodKind.UNARY, name, kwargs)

    def server_streaming(self, name: str | None = None, **kwargs: Any) -> Callable[[Any], Any]:
        return self._decorator(MethodKind.SERVER_STREAMING, name, kwargs)

    def client_streaming(self, name: str | None = None, **kwargs: Any) -> Callable[[Any], Any]:
        return self._decorator(MethodKind.CLIENT_STREAMING, name, kwargs)

    def bidi_streaming(self, name: str | None = None, **kwargs: Any) -> Callable[[Any], Any]:
        return self._decorator(MethodKind.BIDI_STREAMING, name, kwargs)

    def streaming(self, name: str | None = None, **kwargs: Any) -> Callable[[Any], Any]:
        """Deprecated name of :meth:`bidi_streaming` (removed in 0.3)."""
        warnings.warn("RpcServer.streaming is deprecated; use bidi_streaming", DeprecationWarning, stacklevel=2)
        return self.bidi_streaming(name, **kwargs)

    @property
    def methods(self) -> dict[str, MethodSpec]:
        return dict(self._methods)

    def add_service(self, implementation: Any) -> None:
        """Serve every typed service ``implementation`` implements (see :mod:`rpcnet.rpc.services`)."""
        from .services import bind_service

        bound = bind_service(implementation, self.serializer.name)
        for info, _ in bound:
            if info.name in self._services:
                raise ValueError(f"service {info.name!r} is already registered")
            for method in info.methods:
                if method.wire in self._methods:
                    raise ValueError(f"method {method.wire!r} is already registered")
        for info, methods in bound:
            for method in methods:
                self.add_method(method.info.wire, method.info.kind, method.handler, idempotent=method.info.idempotent)
                if method.typed is not None:
                    name = method.info.wire
                    self._methods[name] = attrs.evolve(self._methods[name], typed=method.typed)
            self._services[info.name] = info

    @property
    def services(self) -> dict[str, Any]:
        """Typed services by name: their :class:`~rpcnet.rpc.services.ServiceInfo`."""
        return dict(self._services)

    # -- lifecycle --------------------------------------------------------

    @property
    def address(self) -> Address:
        if self._listener is None:
            raise RuntimeError("the server is not started")
        return self._listener.address

    @property
    def is_serving(self) -> bool:
        """True between :meth:`start` and the end of :meth:`stop`."""
        return self._listener is not None

    def reload_tls(self, tls: TlsConfig | None = None) -> None:
        """Serve new connections with fresh TLS material: ``tls``, or the files
        the server's own ``config.tls`` names, read again (rotated certificates).

        A bad file raises :class:`~rpcnet.errors.ConfigError` and changes
        nothing; established connections keep what they were made with.
        """
        if self._listener is None:
            raise RuntimeError("the server is not started")
        tls = tls if tls is not None else self.config.tls
        if tls is None:
            raise ConfigError("this server has no TLS settings to reload")
        self._listener.reload_tls(tls)
        if tls is not self.config.tls:
            self.config = self.config.evolve(tls=tls)

    @property
    def active_calls(self) -> int:
        return len(self._active)

    async def start(self, address: str | Address = ("127.0.0.1", 0)) -> Address:
        if self._listener is not None:
            raise RuntimeError("the server is already started")
        self._loop = asyncio.get_running_loop()
        self._idle = None
        self._closed = asyncio.Event()
        self._stopping = False
        # The per-connection call limit is the stream credit the transport
        # grants: a client never has more calls open on one connection than
        # the server admits, so calls beyond it wait on the client instead of
        # being refused.
        self._listener = await self.transport.listen(
            parse_address(address),
            functools.partial(_ServerCall, self),  # each new stream is a call
            tls=self.config.tls,
            alpn=ALPN,
            max_streams=self.config.max_concurrent_calls_per_connection,
        )
        return self._listener.address

    async def stop(self, grace: float | None = None) -> None:
        """Stop gracefully: refuse new connections and calls, let running
        calls finish for ``grace`` seconds (default ``config.shutdown_grace``),
        cancel the rest with UNAVAILABLE, then close every connection."""
        listener = self._listener
        if listener is None or self._stopping:
            if self._closed is not None:
                await self._closed.wait()
            return
        self._stopping = True
        grace = self.config.shutdown_grace if grace is None else grace
        listener.stop_accepting()
        if self._active:
            # Set by _release when the last running call ends; only made
            # here, so the call path pays nothing for it.
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                pass
        if self._active:
            tasks = []
            for call in list(self._active):
                call.cancel("shutdown")
                if call.task is not None:
                    tasks.append(call.task)
            if tasks:
                await asyncio.wait(tasks, timeout=1.0)
        await listener.close()
        self._listener = None
        assert self._closed is not None
        self._closed.set()

    async def wait_closed(self) -> None:
        if self._closed is None:
            raise RuntimeError("the server is not started")
        await self._closed.wait()

    async def enable_cluster(self, config: Any = None, **kwargs: Any) -> Any:
        """Deprecated: use :func:`rpcnet.cluster.enable_cluster` (removed in 0.3).

        The RPC engine does not depend on the cluster package; this alias
        loads it by name only when called, and warns.
        """
        warnings.warn(
            "RpcServer.enable_cluster() is deprecated; use rpcnet.cluster.enable_cluster(server, config)",
            DeprecationWarning,
            stacklevel=2,
        )
        cluster = importlib.import_module("rpcnet.cluster")
        return await cluster.enable_cluster(self, config, **kwargs)

    async def __aenter__(self) -> RpcServer:
        if self._listener is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()

    # -- per-call bookkeeping -------------------------------------------------

    def _admit(self, call: _ServerCall, count_in: bool = True) -> str | None:
        """Count a new call in; return why it is refused, or None.

        The global cap is true overload: every connection is within its
        credit, but the server as a whole is full. The per-connection check
        cannot trip while the transport enforces the credit it was given
        (``max_streams``); it stays as a guard for transports that do not.
        ``count_in=False`` only checks: for a call that will run to its end
        before anything else runs, so nobody could see it counted."""
        config = self.config
        if len(self._active) >= config.max_concurrent_calls:
            return f"server is at its limit of {config.max_concurrent_calls} concurrent calls"
        connection = call.stream.connection
        count = self._per_connection.get(connection, 0)
        if count >= config.max_concurrent_calls_per_connection:
            return (
                f"connection is at its limit of {config.max_concurrent_calls_per_connection} concurrent calls"
            )
        if not count_in:
            return None
        self._per_connection[connection] = count + 1
        call.on_connection = True
        self._active.add(call)
        return None

    def _leave_connection(self, call: _ServerCall) -> None:
        """The call's stream is gone: it no longer counts against its
        connection, whose credit the transport may already have returned,
        even if its handler is still winding down."""
        if not call.on_connection:
            return
        call.on_connection = False
        connection = call.stream.connection
        count = self._per_connection.get(connection, 1) - 1
        if count <= 0:
            self._per_connection.pop(connection, None)
        else:
            self._per_connection[connection] = count

    def _release(self, call: _ServerCall) -> None:
        if call not in self._active:
            return
        self._active.discard(call)
        self._leave_connection(call)
        if not self._active and self._idle is not None:
            self._idle.set()


class _ServerCall:
    """Handler of one stream: parses frames, runs the method, sends the reply."""

    __slots__ = (
        "server",
        "stream",
        "decoder",
        "spec",
        "request",
        "requests",
        "ctx",
        "task",
        "done",
        "timer",
        "cancel_reason",
        "counted",
        "on_connection",
        "info",
        "wrappers",
    )

    def __init__(self, server: RpcServer, stream: Stream) -> None:
        self.server = server
        self.stream = stream
        self.decoder: FrameDecoder | None = None  # made when a request comes in pieces
        self.spec: MethodSpec | None = None
        self.request: Any = _NO_REQUEST
        self.requests: MessageQueue | None = None
        self.ctx: ServerContext | None = None
        self.task: asyncio.Task[None] | None = None
        self.done = False
        self.timer: asyncio.TimerHandle | None = None
        self.cancel_reason: str | None = None
        self.counted = False
        self.on_connection = False  # counted against its connection's limit
        self.info: CallInfo | None = None
        self.wrappers: list[Any] | None = None

    # -- transport events ---------------------------------------------------

    def data_received(self, data: bytes, end_stream: bool) -> None:
        if self.done:
            return
        decoder = self.decoder
        if decoder is None:
            if end_stream and self.spec is None:
                # The usual request: header, one message and FIN in one piece.
                whole = whole_request(data, self.server.config.max_message_size)
                if whole is not None:
                    self._on_header(whole[0], whole=True)
                    if self.done:
                        return
                    if self.requests is not None:
                        self.requests.put(whole[1])
                        self.requests.close()
                    else:
                        self.request = whole[1]
                        self._start()
                    return
            decoder = self.decoder = FrameDecoder(self.server.config.max_message_size)
        try:
            frames = decoder.feed(data)
        except ProtocolError as exc:
            self._fail_protocol(exc)
            return
        for frame_type, payload in frames:
            if self.spec is None:
                if frame_type != HEADER:
                    self._fail_protocol(ProtocolError("the first frame of a call must be a header"))
                    return
                self._on_header(payload)
                if self.done:
                    return
            elif frame_type == MESSAGE:
                if self.requests is not None:
                    self.requests.put(payload)
                elif self.request is _NO_REQUEST:
                    self.request = payload
                else:
                    self._fail(StatusCode.INVALID_ARGUMENT, f"{self.spec.kind.value} method {self.spec.name!r} takes exactly one request message, got more")
                    return
            else:
                self._fail_protocol(ProtocolError(f"unexpected frame type 0x{frame_type:02x} after the header"))
                return
        if end_stream:
            if self.spec is None:
                self._fail_protocol(ProtocolError("the stream ended before a complete header"))
            elif decoder.pending:
                self._fail_protocol(ProtocolError(
                    f"the stream ended inside a frame ({decoder.pending} bytes of an unfinished frame)"
                ))
            elif self.requests is not None:
                self.requests.close()
            elif self.request is _NO_REQUEST:
                self._fail(StatusCode.INVALID_ARGUMENT, f"{self.spec.kind.value} method {self.spec.name!r} takes exactly one request message, got none")
            elif self.task is None:
                self._start()

    def stream_reset(self, error_code: int) -> None:
        if self.ctx is not None:
            self.ctx.cancelled = True
        was_done = self.done
        self.done = True
        if self.requests is not None:
            self.requests.close(RpcError("the client cancelled the call", code=StatusCode.CANCELLED))
        task = self.task
        if task is not None and not task.done():
            self.cancel_reason = "client"
            self.server._leave_connection(self)
            task.cancel()
        elif not was_done:
            self._finished(StatusCode.CANCELLED)

    # -- call flow ----------------------------------------------------------

    def _on_header(self, payload: bytes, whole: bool = False) -> None:
        server = self.server
        cached = _HEADER_CACHE.get(payload)
        if cached is not None:
            method, timeout = cached
            metadata: dict[str, Any] = {}
        else:
            try:
                method, metadata, timeout = decode_header(payload)
            except ProtocolError as exc:
                self._fail_protocol(exc)
                return
            if not metadata and timeout is None and len(payload) <= 64:
                if len(_HEADER_CACHE) >= 1024:
                    _HEADER_CACHE.clear()
                _HEADER_CACHE[payload] = (method, None)
        spec = server._methods.get(method)
        if server._stopping:
            self.done = True
            self.stream.reset(ResetCode.REFUSED)
            return
        loop = server._loop
        deadline = None if timeout is None else loop.time() + timeout
        peer: PeerInfo = self.stream.connection.peer
        if spec is None:
            # _fail marks the call done, so nothing that follows is parsed.
            self._fail(StatusCode.UNIMPLEMENTED, f"method {method!r} is not implemented by this server")
            return
        self.spec = spec
        # A whole request to a handler that cannot suspend is answered
        # before this callback returns: checked against the limits, not counted.
        refused = server._admit(self, not (whole and spec.runs_to_end))
        if refused is not None:
            self._fail(StatusCode.RESOURCE_EXHAUSTED, refused)
            return
        self.counted = True
        self.ctx = ServerContext(method, metadata, peer, deadline, loop)
        if server._wrappers:
            self.info = CallInfo(side="server", method=method, kind=spec.kind.value, peer=peer, metadata=metadata, start=loop.time())
            self.wrappers = start_wrappers(server._wrappers, self.info)
        if deadline is not None:
            if timeout <= 0:
                self._fail(StatusCode.DEADLINE_EXCEEDED, "the call's deadline had passed when it arrived")
                return
            self.timer = loop.call_at(deadline, self._on_deadline)
        if spec.streams_requests:
            self.requests = MessageQueue(self.stream, server.config.stream_buffer, self._decode_streamed)
            self._start()

    def _start(self) -> None:
        spec = self.spec
        assert spec is not None
        if spec.runs_to_end:
            # No suspension point: no task, the reply leaves now (rpc/eager.py).
            contextvars.copy_context().run(self._run_unary_to_end)
            return
        coro = self._run_unary() if spec.kind is MethodKind.UNARY else self._run_general()
        self.task = start_task(self.server._loop, coro)

    def _decode_streamed(self, payload: bytes) -> Any:
        assert self.spec is not None
        try:
            return self.spec.serializer.loads(payload)
        except SerializationError as exc:
            raise RpcError(f"could not decode a request message: {exc}", code=StatusCode.INVALID_ARGUMENT) from None

    def _decode_request(self) -> Any:
        assert self.spec is not None
        try:
            return self.spec.serializer.loads(self.request)
        except SerializationError as exc:
            raise RpcError(f"could not decode the request: {exc}", code=StatusCode.INVALID_ARGUMENT) from None

    def _encode(self, value: Any) -> bytes:
        assert self.spec is not None
        try:
            payload = self.spec.serializer.dumps(value)
        except MessageTooLargeError as exc:
            raise RpcError(f"response too large: {exc}", code=StatusCode.RESOURCE_EXHAUSTED) from None
        except SerializationError as exc:
            raise RpcError(f"could not encode the response: {exc}", code=StatusCode.INTERNAL) from None
        if len(payload) > self.server.config.max_message_size:
            raise RpcError(
                f"response of {len(payload)} bytes exceeds the {self.server.config.max_message_size}-byte limit",
                code=StatusCode.RESOURCE_EXHAUSTED,
            )
        return PREFIX.pack(MESSAGE, len(payload)) + payload

    def _initial_metadata_frame(self) -> bytes:
        ctx = self.ctx
        if ctx is None or ctx._initial_sent:
            return b""
        ctx._initial_sent = True
        if not ctx._initial_metadata:
            return b""
        return encode_response_header(ctx._initial_metadata)

    async def _run_unary(self) -> None:
        ctx, typed = self._enter_call()
        try:
            if typed is None:
                response = await self.spec.handler(self._decode_request(), ctx)  # type: ignore[union-attr]
            else:
                response = typed.dump(await typed.function(typed.load(self._decode_request())))
            self._reply(response)
        except (asyncio.CancelledError, Exception) as exc:
            self._unary_failed(exc, typed)

    def _run_unary_to_end(self) -> None:
        """``_run_unary`` for an implementation without suspension points,
        run in the call's own context copy instead of a task."""
        ctx, typed = self._enter_call()
        try:
            if typed is None:
                response = run_to_end(self.spec.handler(self._decode_request(), ctx))  # type: ignore[union-attr]
            else:
                response = typed.dump(run_to_end(typed.function(typed.load(self._decode_request()))))
            self._reply(response)
        except (asyncio.CancelledError, Exception) as exc:
            self._unary_failed(exc, typed)

    def _enter_call(self) -> tuple[ServerContext, Any]:
        """Set the call's contextvars; return its context and typed conversions."""
        ctx = self.ctx
        spec = self.spec
        assert ctx is not None and spec is not None
        deadline_var.set(ctx.deadline)
        context_var.set(ctx)
        return ctx, spec.typed

    def _unary_failed(self, exc: BaseException, typed: Any) -> None:
        if isinstance(exc, asyncio.CancelledError):
            self._on_cancelled()
        elif isinstance(exc, RpcError):
            if typed is not None:
                exc = typed.error(exc)
            self._fail(exc.code, exc.message, exc.details, exc.trailers)
        else:
            self._on_handler_error(exc)  # type: ignore[arg-type]

    def _reply(self, response: Any) -> None:
        """Send a unary call's response and its OK trailer, in one piece."""
        ctx = self.ctx
        assert ctx is not None
        frame = self._encode(response)
        if ctx._initial_metadata:
            head = self._initial_metadata_frame()
        else:
            head = b""
            ctx._initial_sent = True
        if ctx._trailers:
            self._send_final(head + frame + encode_trailer(StatusCode.OK, metadata=ctx._trailers), StatusCode.OK)
        else:
            self._send_final(head + frame + OK_TRAILER, StatusCode.OK)

    async def _run_general(self) -> None:
        ctx, _ = self._enter_call()
        spec = self.spec
        assert spec is not None
        try:
            argument = self.requests if self.requests is not None else self._decode_request()
            result = spec.handler(argument, ctx)
            if spec.streams_responses:
                if inspect.isawaitable(result) and not hasattr(result, "__aiter__"):
                    result = await result
                if not hasattr(result, "__aiter__"):
                    raise TypeError(f"streaming handler {spec.name!r} must return an async iterator, got {type(result).__name__}")
                stream = self.stream
                async for item in result:
                    if self.done:
                        break
                    stream.send(self._initial_metadata_frame() + self._encode(item))
                    await stream.drain()
                response_frames = b""
            else:
                response_frames = self._encode(await result)
            trailer = encode_trailer(StatusCode.OK, metadata=ctx._trailers) if ctx._trailers else OK_TRAILER
            self._send_final(self._initial_metadata_frame() + response_frames + trailer, StatusCode.OK)
        except asyncio.CancelledError:
            self._on_cancelled()
        except RpcError as exc:
            self._fail(exc.code, exc.message, exc.details, exc.trailers)
        except TransportError:
            self._finished(StatusCode.UNAVAILABLE)
        except Exception as exc:
            self._on_handler_error(exc)

    def _on_handler_error(self, exc: Exception) -> None:
        assert self.spec is not None
        log.error("handler for %r raised", self.spec.name, exc_info=exc)
        self._fail(StatusCode.UNKNOWN, f"handler raised {type(exc).__name__}: {exc}")

    def _on_cancelled(self) -> None:
        reason = self.cancel_reason
        if reason == "deadline":
            self._fail(StatusCode.DEADLINE_EXCEEDED, "the call's deadline expired while the handler was running")
        elif reason == "shutdown":
            self._fail(StatusCode.UNAVAILABLE, "the server is shutting down")
        else:
            self._finished(StatusCode.CANCELLED)

    def _on_deadline(self) -> None:
        self.timer = None
        if self.ctx is not None:
            self.ctx.cancelled = True
        task = self.task
        if task is not None and not task.done():
            self.cancel_reason = "deadline"
            task.cancel()
        elif not self.done:
            self._fail(StatusCode.DEADLINE_EXCEEDED, "the call's deadline expired before the request was complete")

    def cancel(self, reason: str) -> None:
        task = self.task
        if task is not None and not task.done():
            self.cancel_reason = reason
            task.cancel()
        elif not self.done:
            self._fail(StatusCode.UNAVAILABLE, "the server is shutting down")

    # -- ending -------------------------------------------------------------

    def _send_final(self, data: bytes, status: StatusCode) -> None:
        if not self.done:
            self.done = True
            try:
                self.stream.send(data, end_stream=True)
            except TransportError:
                status = StatusCode.UNAVAILABLE
        self._finished(status)

    def _fail(self, code: StatusCode, message: str, details: Any = None, trailers: dict[str, Any] | None = None) -> None:
        ctx = self.ctx
        metadata = dict(ctx._trailers or ()) if ctx is not None else {}
        if trailers:
            metadata.update(trailers)
        try:
            frame = encode_trailer(code, message, details, metadata)
        except (TypeError, ValueError) as exc:
            frame = encode_trailer(StatusCode.INTERNAL, f"could not encode the error details: {exc}")
        head = self._initial_metadata_frame() if ctx is not None else b""
        self._send_final(head + frame, StatusCode(code))

    def _fail_protocol(self, exc: ProtocolError) -> None:
        if self.done:
            return
        self._fail(exc.status, f"protocol error: {exc}")

    def _finished(self, status: StatusCode) -> None:
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.requests is not None:
            self.requests.close()
        if self.counted:
            self.counted = False
            self.server._release(self)
            if self.wrappers:
                info = self.info
                assert info is not None
                info.status = status
                info.duration = asyncio.get_running_loop().time() - info.start
                end_wrappers(self.wrappers, info)

