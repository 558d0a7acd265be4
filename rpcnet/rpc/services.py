"""Typed services: a service defined once as a Python class, used by both sides.

A definition is a :class:`typing.Protocol` that subclasses :class:`Service`;
its methods are its RPCs and their annotations are the schema::

    @attrs.frozen
    class AddRequest:
        a: int
        b: int

    class Calculator(Service, Protocol):
        @rpcmethod(idempotent=True)
        async def add(self, request: AddRequest) -> int: ...

        def count(self, request: int) -> AsyncIterator[int]: ...          # server streaming

        async def total(self, numbers: AsyncIterator[int]) -> int: ...     # client streaming

        def running(self, numbers: AsyncIterator[int]) -> AsyncIterator[int]: ...  # bidi

The rule for parameters: every RPC takes exactly one request argument (an
attrs class or a plain type), sent as one message; ``AsyncIterator[T]`` (or
``AsyncIterable[T]``) as the parameter streams requests, as the return type
streams responses. Methods that stream responses are declared with ``def``
(so an ``async def ... yield`` implementation overrides them), the others
with ``async def``.

The server registers an implementation, a subclass of the definition::

    class CalculatorImpl(Calculator):
        async def add(self, request: AddRequest) -> int:
            return request.a + request.b

    server.add_service(CalculatorImpl())

A client gets a proxy typed as the definition::

    calc = Calculator.client(rpc_client)
    await calc.add(AddRequest(a=1, b=2))
    await calc.with_options(timeout=1.0, metadata={"k": "v"}).add(...)

and a :class:`~rpcnet.cluster.ClusterClient` gives the same for workers
selected by tag: ``Calculator.client(cluster_client, filter="role=worker")``.

On the wire a method is ``<service name>.<method name>``: the service name is
the class name unless given (``class Calculator(Service, Protocol,
name="calc.v1.Calculator")``), the method name is the attribute name unless
given (``@rpcmethod(name="Add")``). Implementations read the call's context
(metadata, deadline, peer) with :func:`rpcnet.rpc.current_context`.
"""

from __future__ import annotations

import collections.abc
import inspect
import typing
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, TypeVar

import attrs

from ..errors import RpcError, StatusCode
from .convert import Codec, ConversionError, check_type, converter_for
from .methods import MethodKind

if TYPE_CHECKING:
    from .client import RpcClient

__all__ = [
    "Service",
    "ServiceError",
    "rpcmethod",
    "CallOptions",
    "ServiceChannel",
    "ChannelSource",
    "MethodInfo",
    "ServiceInfo",
    "service_info",
    "service_definitions",
    "RpcChannel",
    "bind_service",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Attributes of :class:`Service` a definition may not use as method names.
_RESERVED = frozenset({"client", "with_options"})
#: Fields a typed error may not have: they are the status error's own attributes.
_RESERVED_FIELDS = frozenset({"code", "message", "details", "trailers", "not_sent", "args"})
_OPTIONS_ATTR = "__rpcnet_rpc__"


class ServiceError(RpcError):
    """Base of typed errors: subclass with ``@attrs.define`` and fields.

    A service (or one method) declares the errors it raises; a declared error
    arrives at the caller as the same class with the same fields::

        @attrs.define
        class DivisionByZero(ServiceError):
            code: ClassVar[StatusCode] = StatusCode.INVALID_ARGUMENT
            message_template: ClassVar[str] = "cannot divide {dividend} by zero"
            dividend: float

    ``code`` (default FAILED_PRECONDITION) is the status it travels with;
    ``message_template`` is formatted with the fields to make the message.
    To be caught as a status class too, also inherit it:
    ``class Gone(ServiceError, NotFoundError)``.
    """

    code: ClassVar[StatusCode] = StatusCode.FAILED_PRECONDITION
    message_template: ClassVar[str | None] = None
    #: The name it travels under; the class name unless set.
    error_name: ClassVar[str | None] = None
    details: Any = None

    @property
    def trailers(self) -> dict[str, Any]:
        trailers: dict[str, Any] = self.__dict__.setdefault("_trailers", {})
        return trailers

    @trailers.setter
    def trailers(self, value: dict[str, Any]) -> None:
        self.__dict__["_trailers"] = dict(value)

    @property
    def message(self) -> str:
        explicit = self.__dict__.get("_message")
        if explicit is not None:
            return str(explicit)
        values = _error_fields(self)
        template = type(self).message_template
        if template is not None:
            try:
                return template.format(**values)
            except (KeyError, IndexError, ValueError):
                pass
        shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
        return f"{type(self).__name__}({shown})"

    @message.setter
    def message(self, value: str) -> None:
        self.__dict__["_message"] = value

    @classmethod
    def wire_name(cls) -> str:
        return cls.error_name or cls.__name__


def _error_fields(error: BaseException) -> dict[str, Any]:
    cls: Any = type(error)
    if attrs.has(cls):
        return {f.name: getattr(error, f.name, None) for f in attrs.fields(cls)}
    return {}


def rpcmethod(
    *, name: str | None = None, idempotent: bool = False, errors: Iterable[type[ServiceError]] = ()
) -> Callable[[F], F]:
    """Options of one RPC in a definition: its wire name, whether it is
    idempotent (the ClusterClient retries it after errors that may have
    followed sending), and the typed errors it raises beyond the service's."""

    options = {"name": name, "idempotent": bool(idempotent), "errors": tuple(errors)}

    def decorate(function: F) -> F:
        setattr(function, _OPTIONS_ATTR, options)
        return function

    return decorate


@attrs.frozen
class CallOptions:
    """Per-call settings a proxy carries: deadline, metadata, worker filter (cluster only)."""

    timeout: float | None = None
    metadata: Mapping[str, Any] | None = None
    filter: Any = None


class ServiceChannel(Protocol):
    """What a proxy sends calls through: one server (:class:`RpcChannel`) or
    workers of a cluster (``rpcnet.cluster.services.WorkerChannel``)."""

    @property
    def serializer_name(self) -> str: ...

    def unary(self, method: MethodInfo, request: Any, options: CallOptions) -> Awaitable[Any]: ...

    def server_streaming(self, method: MethodInfo, request: Any, options: CallOptions) -> AsyncIterator[Any]: ...

    def client_streaming(self, method: MethodInfo, requests: AsyncIterator[Any], options: CallOptions) -> Awaitable[Any]: ...

    def bidi_streaming(self, method: MethodInfo, requests: AsyncIterator[Any], options: CallOptions) -> AsyncIterator[Any]: ...


class ChannelSource(Protocol):
    """Something that makes a channel: a ``ClusterClient``."""

    def service_channel(self) -> ServiceChannel: ...


_UNSET: Any = object()


class Service(Protocol):
    """Base of service definitions (see the module documentation)."""

    def __init_subclass__(cls, *, name: str | None = None, errors: Iterable[type[ServiceError]] = (), **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("_is_protocol", False):
            if name is not None and (not isinstance(name, str) or not name or "/" in name):
                raise TypeError(f"service name must be a non-empty string without '/', got {name!r}")
            cls.__rpcnet_service__ = (name or cls.__name__, tuple(errors))  # type: ignore[attr-defined]
        elif name is not None or errors:
            raise TypeError(f"{cls.__name__}: name= and errors= belong on the definition (a Protocol), not an implementation")

    @classmethod
    def client(
        cls,
        target: RpcClient | ChannelSource | ServiceChannel,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        filter: Any = None,
    ) -> Self:
        """A proxy typed as this definition, sending calls through ``target``:
        an :class:`~rpcnet.RpcClient`, or a ``ClusterClient`` (then ``filter``
        selects the workers). ``timeout`` and ``metadata`` apply to every call."""
        info = service_info(cls)
        channel = _channel_for(target)
        if filter is not None and isinstance(channel, RpcChannel):
            raise TypeError("filter= selects cluster workers; it needs a ClusterClient, not an RpcClient")
        proxy_class = _proxy_class(cls, info)
        return typing.cast(Self, proxy_class(channel, CallOptions(timeout, _frozen(metadata), filter)))

    def with_options(
        self, *, timeout: float | None = _UNSET, metadata: Mapping[str, Any] | None = _UNSET, filter: Any = _UNSET
    ) -> Self:
        """The same proxy with another deadline, metadata or worker filter (client proxies only)."""
        raise TypeError(
            f"with_options() is for proxies made by {type(self).__name__}.client(...); "
            "this object implements the service"
        )


def _frozen(metadata: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return None if metadata is None else MappingProxyType(dict(metadata))


# -- what a definition says -------------------------------------------------------------------


@attrs.frozen(eq=False)
class MethodInfo:
    """One RPC of a definition, its types resolved."""

    service: str
    attr: str
    name: str
    #: ``<service>.<name>``: the method name on the wire.
    wire: str
    kind: MethodKind
    request_type: Any
    response_type: Any
    idempotent: bool
    errors: tuple[type[ServiceError], ...]
    doc: str = ""
    _codecs: dict[str, _MethodCodecs] = attrs.field(init=False, factory=dict, repr=False)

    def codecs(self, serializer: str) -> _MethodCodecs:
        """The compiled conversion functions for ``serializer``, made once."""
        cache = self._codecs
        codecs = cache.get(serializer)
        if codecs is None:
            codecs = cache[serializer] = _MethodCodecs(self, serializer)
        return codecs


@attrs.frozen(eq=False)
class ServiceInfo:
    name: str
    definition: type
    methods: tuple[MethodInfo, ...]
    errors: tuple[type[ServiceError], ...]
    doc: str = ""


_INFOS: dict[type, ServiceInfo] = {}


def _is_definition(cls: type) -> bool:
    return "__rpcnet_service__" in cls.__dict__


def service_definitions(obj_or_class: Any) -> list[type]:
    """The service definitions a class (or an instance's class) implements."""
    cls = obj_or_class if isinstance(obj_or_class, type) else type(obj_or_class)
    return [base for base in cls.__mro__ if base is not Service and _is_definition(base)]


def service_info(definition: type) -> ServiceInfo:
    """What a definition says, checked and with its types resolved (once per definition)."""
    info = _INFOS.get(definition)
    if info is None:
        if not _is_definition(definition):
            raise TypeError(f"{definition.__name__} is not a service definition (class X(Service, Protocol))")
        info = _INFOS[definition] = _read_definition(definition)
    return info


def _stream_item(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (collections.abc.AsyncIterator, collections.abc.AsyncIterable, collections.abc.AsyncGenerator):
        args = typing.get_args(tp)
        if not args:
            return Any
        return args[0]
    return _NOT_STREAM


_NOT_STREAM: Any = object()


def _check_errors(where: str, errors: tuple[Any, ...]) -> None:
    names: dict[str, type] = {}
    for error in errors:
        if not (isinstance(error, type) and issubclass(error, ServiceError) and attrs.has(typing.cast(Any, error))):
            raise TypeError(f"{where}: declared error {error!r} is not an attrs class subclassing ServiceError")
        clash = _RESERVED_FIELDS & {f.name for f in attrs.fields(typing.cast(Any, error))}
        if clash:
            raise TypeError(f"{where}: error {error.__name__} has reserved field(s) {', '.join(sorted(clash))}")
        check_type(error, f"{where}: error {error.__name__}")
        other = names.setdefault(error.wire_name(), error)
        if other is not error:
            raise TypeError(f"{where}: errors {other.__qualname__} and {error.__qualname__} share the name {error.wire_name()!r}")


def _read_definition(definition: type) -> ServiceInfo:
    service_name, service_errors = definition.__rpcnet_service__  # type: ignore[attr-defined]
    _check_errors(service_name, service_errors)
    for error in service_errors:
        attrs.resolve_types(error)
    methods: list[MethodInfo] = []
    seen: dict[str, str] = {}
    for attr, function in definition.__dict__.items():
        if attr.startswith("_") or not inspect.isfunction(function):
            continue
        where = f"{definition.__name__}.{attr}"
        if attr in _RESERVED:
            raise TypeError(f"{where}: {attr!r} is reserved by Service (proxies use it); pick another name, or @rpcmethod(name=...)")
        options = getattr(function, _OPTIONS_ATTR, {"name": None, "idempotent": False, "errors": ()})
        name = options["name"] or attr
        wire = f"{service_name}.{name}"
        if name in seen:
            raise TypeError(f"{where}: the wire name {wire!r} is also used by {seen[name]}")
        seen[name] = attr
        try:
            hints = typing.get_type_hints(function)
        except NameError as exc:
            raise TypeError(f"{where}: cannot resolve an annotation ({exc})") from None
        parameters = list(inspect.signature(function).parameters.values())[1:]
        if len(parameters) != 1 or parameters[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise TypeError(f"{where}: an RPC takes exactly one request argument after self (an attrs class or a plain type)")
        parameter = parameters[0]
        if parameter.name not in hints:
            raise TypeError(f"{where}: annotate the request argument {parameter.name!r}")
        if "return" not in hints:
            raise TypeError(f"{where}: annotate the return type")
        request_type = hints[parameter.name]
        response_type = hints["return"]
        request_item = _stream_item(request_type)
        response_item = _stream_item(response_type)
        streams_requests = request_item is not _NOT_STREAM
        streams_responses = response_item is not _NOT_STREAM
        is_async = inspect.iscoroutinefunction(function)
        if streams_responses and is_async:
            raise TypeError(
                f"{where}: declare a method that streams responses with 'def', not 'async def' "
                "(its implementation is an async generator)"
            )
        if not streams_responses and not is_async:
            raise TypeError(f"{where}: declare a method with one response with 'async def'")
        if streams_requests:
            request_type = request_item
        if streams_responses:
            response_type = response_item
        check_type(request_type, f"{where} request")
        check_type(response_type, f"{where} response")
        kind = {
            (False, False): MethodKind.UNARY,
            (False, True): MethodKind.SERVER_STREAMING,
            (True, False): MethodKind.CLIENT_STREAMING,
            (True, True): MethodKind.BIDI_STREAMING,
        }[(streams_requests, streams_responses)]
        errors = tuple(service_errors) + tuple(e for e in options["errors"] if e not in service_errors)
        _check_errors(where, errors)
        for error in errors:
            attrs.resolve_types(error)
        methods.append(
            MethodInfo(
                service=service_name,
                attr=attr,
                name=name,
                wire=wire,
                kind=kind,
                request_type=request_type,
                response_type=response_type,
                idempotent=options["idempotent"],
                errors=errors,
                doc=inspect.getdoc(function) or "",
            )
        )
    if not methods:
        raise TypeError(f"{definition.__name__} defines no RPC methods")
    return ServiceInfo(
        name=service_name,
        definition=definition,
        methods=tuple(methods),
        errors=tuple(service_errors),
        doc=inspect.cleandoc(definition.__dict__.get("__doc__") or ""),
    )


# -- conversion per method ------------------------------------------------------------------------


class _MethodCodecs:
    """A method's request, response and error conversions for one serializer.

    ``load_request``, ``dump_response``, ``dump_request`` and ``load_response``
    are functions made once per method: each is one call of the converter's
    generated hook (one ``try``, one ``isinstance`` for attrs classes), and
    only a value that fails is converted again to name the field."""

    __slots__ = (
        "method",
        "request",
        "response",
        "errors",
        "converter",
        "load_request",
        "dump_response",
        "dump_request",
        "load_response",
    )

    def __init__(self, method: MethodInfo, serializer: str) -> None:
        converter = converter_for(serializer)
        self.method = method
        self.converter = converter
        self.request = Codec(converter, method.request_type)
        self.response = Codec(converter, method.response_type)
        self.errors = {error.wire_name(): (error, Codec(converter, error)) for error in method.errors}
        wire = method.wire
        #: server side: a request as the implementation takes it; INVALID_ARGUMENT naming the field.
        self.load_request: Callable[[Any], Any] = _loader(
            self.request, f"invalid request for {wire}", StatusCode.INVALID_ARGUMENT
        )
        #: server side: the implementation's result on the wire; INTERNAL for a wrong type.
        self.dump_response: Callable[[Any], Any] = _dumper(self.response, wire, _wrong_response)
        #: client side: the caller's request on the wire; TypeError for a wrong type.
        self.dump_request: Callable[[Any], Any] = _dumper(self.request, wire, _wrong_request)
        #: client side: the reply as the caller takes it; INTERNAL naming the field.
        self.load_response: Callable[[Any], Any] = _loader(
            self.response, f"invalid response from {wire}", StatusCode.INTERNAL
        )

    def wire_error(self, error: ServiceError) -> RpcError:
        """A declared typed error as the status error that carries it; others unchanged."""
        entry = self.errors.get(type(error).wire_name())
        if entry is None or entry[0] is not type(error):
            return error
        fields = entry[1].dump(error)
        return RpcError(
            error.message,
            code=type(error).code,
            details={"type": type(error).wire_name(), "fields": fields},
            trailers=dict(error.trailers),
        )

    # client side

    def typed_error(self, error: RpcError) -> RpcError:
        """The declared typed error a status error carries, or the status error itself."""
        details = error.details
        if not isinstance(details, dict) or not self.errors:
            return error
        entry = self.errors.get(details.get("type"))  # type: ignore[arg-type]
        fields = details.get("fields")
        if entry is None or not isinstance(fields, dict) or entry[0].code is not error.code:
            return error
        try:
            typed = entry[1].load(fields)
        except ConversionError:
            return error
        typed.message = error.message
        typed.trailers = dict(error.trailers)
        return typing.cast(RpcError, typed)


def _loader(codec: Codec, what: str, code: StatusCode) -> Callable[[Any], Any]:
    structure, tp, load = codec.structure, codec.type, codec.load

    def loader(value: Any) -> Any:
        try:
            return structure(value, tp)
        except Exception:
            pass
        try:
            return load(value)
        except ConversionError as exc:
            raise RpcError(f"{what}: {exc}", code=code) from None

    return loader


def _wrong_request(wire: str, expected: type, value: Any) -> Exception:
    return TypeError(f"{wire} takes {expected.__name__}, got {type(value).__name__}")


def _wrong_response(wire: str, expected: type, value: Any) -> Exception:
    return RpcError(f"{wire} returned {type(value).__name__}, expected {expected.__name__}", code=StatusCode.INTERNAL)


def _dumper(codec: Codec, wire: str, wrong: Callable[[str, type, Any], Exception]) -> Callable[[Any], Any]:
    check, dump = codec.check, codec.dump
    if check is None:
        return dump

    def dumper(value: Any) -> Any:
        if not isinstance(value, check):
            raise wrong(wire, check, value)
        return dump(value)

    return dumper


# -- client side -----------------------------------------------------------------------------------------


class RpcChannel:
    """Calls one server through an :class:`~rpcnet.RpcClient`."""

    def __init__(self, client: RpcClient) -> None:
        self.client = client

    @property
    def serializer_name(self) -> str:
        return str(self.client.serializer.name)

    @staticmethod
    def _metadata(options: CallOptions) -> dict[str, Any] | None:
        return None if options.metadata is None else dict(options.metadata)

    # Plain functions returning the client's awaitable: no coroutine of their own per call.
    def unary(self, method: MethodInfo, request: Any, options: CallOptions) -> Awaitable[Any]:
        metadata = options.metadata
        return self.client.call(
            method.wire, request, timeout=options.timeout, metadata=None if metadata is None else dict(metadata)
        )

    def server_streaming(self, method: MethodInfo, request: Any, options: CallOptions) -> AsyncIterator[Any]:
        return self.client.call_server_streaming(
            method.wire, request, timeout=options.timeout, metadata=self._metadata(options)
        )

    def client_streaming(self, method: MethodInfo, requests: AsyncIterator[Any], options: CallOptions) -> Awaitable[Any]:
        return self.client.call_client_streaming(
            method.wire, requests, timeout=options.timeout, metadata=self._metadata(options)
        )

    def bidi_streaming(self, method: MethodInfo, requests: AsyncIterator[Any], options: CallOptions) -> AsyncIterator[Any]:
        return self.client.call_streaming(method.wire, requests, timeout=options.timeout, metadata=self._metadata(options))


def _channel_for(target: Any) -> ServiceChannel:
    from .client import RpcClient  # the same layer; imported here to keep services light to import

    if isinstance(target, RpcClient):
        return RpcChannel(target)
    make = getattr(target, "service_channel", None)
    if callable(make):
        return typing.cast(ServiceChannel, make())
    if all(hasattr(target, name) for name in ("unary", "server_streaming", "client_streaming", "bidi_streaming")):
        return typing.cast(ServiceChannel, target)
    raise TypeError(f"a typed client needs an RpcClient, a ClusterClient or a ServiceChannel, got {type(target).__name__}")


async def _close(stream: Any) -> None:
    cancel = getattr(stream, "cancel", None)
    if cancel is not None:
        cancel()
        return
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def _dumped(requests: AsyncIterable[Any] | Iterable[Any], dump: Callable[[Any], Any]) -> AsyncIterator[Any]:
    if isinstance(requests, AsyncIterable):
        async for item in requests:
            yield dump(item)
    else:
        for item in requests:
            yield dump(item)


class _Proxy:
    """State of a client proxy; the dynamic subclass adds one method per RPC."""

    __rpcnet_proxy__ = True

    def __init__(self, channel: ServiceChannel, options: CallOptions) -> None:
        self._channel = channel
        self._options = options
        serializer = channel.serializer_name
        self._codecs = {m.attr: m.codecs(serializer) for m in service_info(self._definition).methods}
        #: Unary calls through one server go straight to RpcClient.call, which converts.
        self._call = channel.client.call if isinstance(channel, RpcChannel) else None

    _definition: ClassVar[type]

    def with_options(
        self, *, timeout: float | None = _UNSET, metadata: Mapping[str, Any] | None = _UNSET, filter: Any = _UNSET
    ) -> Any:
        options = self._options
        changes: dict[str, Any] = {}
        if timeout is not _UNSET:
            changes["timeout"] = timeout
        if metadata is not _UNSET:
            changes["metadata"] = _frozen(metadata)
        if filter is not _UNSET:
            if filter is not None and isinstance(self._channel, RpcChannel):
                raise TypeError("filter= selects cluster workers; it needs a ClusterClient, not an RpcClient")
            changes["filter"] = filter
        proxy = object.__new__(type(self))
        proxy._channel = self._channel
        proxy._codecs = self._codecs
        proxy._call = self._call
        proxy._options = attrs.evolve(options, **changes)
        return proxy

    def __repr__(self) -> str:
        return f"<{self._definition.__name__} client via {type(self._channel).__name__}>"


def _unary(method: MethodInfo) -> Callable[..., Any]:
    attr, wire = method.attr, method.wire

    # A plain function returning the engine's coroutine, which converts the
    # request, the response and typed errors (see RpcClient.call): the call
    # has no coroutine of the typed layer's own.
    def call(self: _Proxy, request: Any) -> Awaitable[Any]:
        client_call = self._call
        options = self._options
        if client_call is None:
            return _unary_via(self._channel, method, self._codecs[attr], request, options)
        metadata = options.metadata
        return client_call(
            wire,
            request,
            timeout=options.timeout,
            metadata=None if metadata is None else dict(metadata),
            _typed=self._codecs[attr],
        )

    if _mark_coroutine_function is not None:
        _mark_coroutine_function(call)
    return call


#: Python 3.12+: proxies' unary methods still read as coroutine functions.
_mark_coroutine_function = getattr(inspect, "markcoroutinefunction", None)


async def _unary_via(channel: ServiceChannel, method: MethodInfo, codecs: _MethodCodecs, request: Any, options: CallOptions) -> Any:
    """A unary call through a channel other than one server's (a cluster's)."""
    payload = codecs.dump_request(request)
    try:
        reply = await channel.unary(method, payload, options)
    except RpcError as exc:
        typed = codecs.typed_error(exc)
        if typed is not exc:
            raise typed from None
        raise
    return codecs.load_response(reply)


def _server_streaming(method: MethodInfo) -> Callable[..., Any]:
    attr = method.attr

    async def stream(self: _Proxy, request: Any) -> AsyncIterator[Any]:
        codecs = self._codecs[attr]
        responses = self._channel.server_streaming(method, codecs.dump_request(request), self._options)
        load = codecs.load_response
        try:
            async for item in responses:
                yield load(item)
        except RpcError as exc:
            raise codecs.typed_error(exc) from None
        finally:
            await _close(responses)

    def call(self: _Proxy, request: Any) -> AsyncIterator[Any]:
        return stream(self, request)

    return call


def _client_streaming(method: MethodInfo) -> Callable[..., Any]:
    attr = method.attr

    async def call(self: _Proxy, requests: AsyncIterable[Any] | Iterable[Any]) -> Any:
        codecs = self._codecs[attr]
        try:
            reply = await self._channel.client_streaming(method, _dumped(requests, codecs.dump_request), self._options)
        except RpcError as exc:
            raise codecs.typed_error(exc) from None
        return codecs.load_response(reply)

    return call


def _bidi_streaming(method: MethodInfo) -> Callable[..., Any]:
    attr = method.attr

    async def stream(self: _Proxy, requests: AsyncIterable[Any] | Iterable[Any]) -> AsyncIterator[Any]:
        codecs = self._codecs[attr]
        responses = self._channel.bidi_streaming(method, _dumped(requests, codecs.dump_request), self._options)
        load = codecs.load_response
        try:
            async for item in responses:
                yield load(item)
        except RpcError as exc:
            raise codecs.typed_error(exc) from None
        finally:
            await _close(responses)

    def call(self: _Proxy, requests: AsyncIterable[Any] | Iterable[Any]) -> AsyncIterator[Any]:
        return stream(self, requests)

    return call


_MAKERS = {
    MethodKind.UNARY: _unary,
    MethodKind.SERVER_STREAMING: _server_streaming,
    MethodKind.CLIENT_STREAMING: _client_streaming,
    MethodKind.BIDI_STREAMING: _bidi_streaming,
}

_PROXIES: dict[type, type] = {}


def _proxy_class(definition: type, info: ServiceInfo) -> type:
    proxy = _PROXIES.get(definition)
    if proxy is None:
        namespace: dict[str, Any] = {"_definition": definition, "__module__": definition.__module__}
        for method in info.methods:
            function = _MAKERS[method.kind](method)
            function.__name__ = method.attr
            function.__qualname__ = f"{definition.__qualname__}Client.{method.attr}"
            function.__doc__ = method.doc or None
            namespace[method.attr] = function
        proxy = _PROXIES[definition] = type(f"{definition.__name__}Client", (_Proxy, definition), namespace)
    return proxy


# -- server side ---------------------------------------------------------------------------------------------


@attrs.frozen
class BoundMethod:
    """One RPC of an implementation, ready for ``RpcServer.add_method``."""

    info: MethodInfo
    handler: Callable[..., Any]
    #: For unary methods: what the server's call task runs instead of ``handler``.
    typed: UnaryTarget | None = None


class UnaryTarget:
    """A typed unary method as the server runs it in the call's own task:
    ``dump(await function(load(request)))``, and ``error`` turns a declared
    typed error it raises into the status error that carries it."""

    __slots__ = ("function", "load", "dump", "error")

    def __init__(self, function: Callable[[Any], Awaitable[Any]], codecs: _MethodCodecs) -> None:
        self.function = function
        self.load = codecs.load_request
        self.dump = codecs.dump_response
        wire_error = codecs.wire_error

        def error(exc: RpcError) -> RpcError:
            return wire_error(exc) if isinstance(exc, ServiceError) else exc

        self.error = error


def bind_service(implementation: Any, serializer: str) -> list[tuple[ServiceInfo, list[BoundMethod]]]:
    """Handlers for every service ``implementation`` implements, converting with ``serializer``'s converter."""
    definitions = service_definitions(implementation)
    if not definitions:
        raise TypeError(
            f"{type(implementation).__name__} implements no service definition; "
            "subclass one (class Impl(Calculator)) and pass an instance"
        )
    if isinstance(implementation, type):
        raise TypeError(f"add_service() takes an instance, got the class {implementation.__name__}")
    if isinstance(implementation, _Proxy):
        raise TypeError("add_service() takes an implementation, not a client proxy")
    bound = []
    for definition in definitions:
        info = service_info(definition)
        methods = []
        for method in info.methods:
            function = getattr(implementation, method.attr)
            if getattr(type(implementation), method.attr) is definition.__dict__[method.attr]:
                raise TypeError(f"{type(implementation).__name__} does not implement {info.definition.__name__}.{method.attr}")
            codecs = method.codecs(serializer)
            typed = UnaryTarget(function, codecs) if method.kind is MethodKind.UNARY else None
            methods.append(BoundMethod(method, _HANDLERS[method.kind](function, codecs), typed))
        bound.append((info, methods))
    return bound


def _unary_handler(function: Callable[..., Any], codecs: _MethodCodecs) -> Callable[..., Any]:
    load, dump = codecs.load_request, codecs.dump_response

    async def handler(request: Any, ctx: Any) -> Any:
        try:
            return dump(await function(load(request)))
        except ServiceError as exc:
            raise codecs.wire_error(exc) from None

    return handler


async def _loaded(requests: AsyncIterator[Any], load: Callable[[Any], Any]) -> AsyncIterator[Any]:
    async for item in requests:
        yield load(item)


def _server_streaming_handler(function: Callable[..., Any], codecs: _MethodCodecs) -> Callable[..., Any]:
    load, dump = codecs.load_request, codecs.dump_response

    async def handler(request: Any, ctx: Any) -> AsyncIterator[Any]:
        try:
            results = function(load(request))
            if inspect.isawaitable(results) and not hasattr(results, "__aiter__"):
                results = await results
            async for item in results:
                yield dump(item)
        except ServiceError as exc:
            raise codecs.wire_error(exc) from None

    return handler


def _client_streaming_handler(function: Callable[..., Any], codecs: _MethodCodecs) -> Callable[..., Any]:
    load, dump = codecs.load_request, codecs.dump_response

    async def handler(requests: AsyncIterator[Any], ctx: Any) -> Any:
        try:
            return dump(await function(_loaded(requests, load)))
        except ServiceError as exc:
            raise codecs.wire_error(exc) from None

    return handler


def _bidi_streaming_handler(function: Callable[..., Any], codecs: _MethodCodecs) -> Callable[..., Any]:
    load, dump = codecs.load_request, codecs.dump_response

    async def handler(requests: AsyncIterator[Any], ctx: Any) -> AsyncIterator[Any]:
        try:
            results = function(_loaded(requests, load))
            if inspect.isawaitable(results) and not hasattr(results, "__aiter__"):
                results = await results
            async for item in results:
                yield dump(item)
        except ServiceError as exc:
            raise codecs.wire_error(exc) from None

    return handler


_HANDLERS = {
    MethodKind.UNARY: _unary_handler,
    MethodKind.SERVER_STREAMING: _server_streaming_handler,
    MethodKind.CLIENT_STREAMING: _client_streaming_handler,
    MethodKind.BIDI_STREAMING: _bidi_streaming_handler,
}

