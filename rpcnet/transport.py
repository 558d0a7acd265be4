"""The transport interface every transport strategy implements.

A transport moves bytes on *streams* inside *connections*. The RPC engine uses
one bidirectional stream per call; it never sees sockets, TLS objects or
packets. The interface is callback-driven, like aioquic's protocol: the
transport calls the stream's :class:`StreamHandler` with incoming data on the
event loop, and the engine writes with :meth:`Stream.send`, which never
blocks. Backpressure is explicit both ways: :meth:`Stream.drain` waits while
too much of our data is unacknowledged, and :meth:`Stream.pause_reading` stops
granting the peer credit until :meth:`Stream.resume_reading`.

Rules every implementation keeps (the engine and tests rely on them):

- Callbacks run on the event loop that owns the connection, never re-entrantly
  from inside ``send``/``reset``/``close`` of the same stream.
- ``data_received(b"", True)`` is a legal way to report FIN; an empty
  ``data`` without FIN is never delivered.
- After ``stream_reset`` or ``data_received(..., end_stream=True)`` no more
  data arrives on that stream.
- When a connection ends, every stream that has not finished receiving gets
  ``stream_reset(CONNECTION_LOST)`` and ``Connection.closed`` completes.
- ``open_stream`` waits for stream credit instead of failing or queueing
  without bound; waiters are served first come, first served, and a
  cancelled waiter gives its turn to the next.
- The stream credit a listener grants each connection is the ``max_streams``
  its caller passes to :meth:`Transport.listen` (the RPC server passes
  ``RpcConfig.max_concurrent_calls_per_connection``, so the calls a client
  may start are the calls the server admits). A unit of credit comes back
  when a stream has ended both ways (FIN or reset each way).
- Data is delivered in the order it was sent. When the peer resets a stream,
  data that arrived before the reset and is not held back by
  ``pause_reading`` is delivered before ``stream_reset``.

``rpcnet.testing.transport_conformance`` checks these rules, through the RPC engine,
for any transport by name (docs/plugins.md, "Transport conformance").
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import attrs

from .config import TlsConfig
from .errors import ConfigError

__all__ = [
    "Address",
    "PeerInfo",
    "StreamHandler",
    "Stream",
    "Connection",
    "Listener",
    "Transport",
    "CONNECTION_LOST",
    "parse_address",
    "format_address",
]

Address = tuple[str, int]

#: Pseudo error code passed to ``stream_reset`` when the whole connection ended.
CONNECTION_LOST = -1


def parse_address(value: str | Address) -> Address:
    """``"host:port"``, ``"[v6]:port"`` or ``(host, port)`` -> ``(host, port)``."""
    if isinstance(value, tuple):
        host, port = value
        return str(host), int(port)
    text = str(value).strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"address {value!r} has no port; write host:port")
    try:
        port_number = int(port)
    except ValueError:
        raise ValueError(f"address {value!r} has an invalid port {port!r}") from None
    if not 0 <= port_number <= 65535:
        raise ValueError(f"address {value!r}: port must be 0-65535")
    return host, port_number


def format_address(address: Address) -> str:
    """``(host, port)`` -> ``"host:port"``, or ``"[v6]:port"`` for IPv6; :func:`parse_address` reads it back."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@attrs.frozen(kw_only=True)
class PeerInfo:
    """Who is on the other end of a connection.

    ``identity`` is set only when the peer presented a certificate that was
    verified against our CA (for servers: mutual TLS); it is the certificate's
    first DNS SAN, else its common name. Handlers see it as ``ctx.peer``.
    """

    address: Address | None = None
    identity: str | None = None
    certificate: bytes | None = None  # DER of the verified leaf certificate
    alpn: str | None = None


class StreamHandler(Protocol):
    """Receives the events of one stream (implemented by the RPC engine)."""

    def data_received(self, data: bytes, end_stream: bool) -> None:
        """Bytes arrived in order; ``end_stream`` means the peer sent FIN."""

    def stream_reset(self, error_code: int) -> None:
        """The peer aborted the stream (RESET_STREAM or STOP_SENDING), or the
        connection ended (``error_code == CONNECTION_LOST``)."""


class Stream(abc.ABC):
    """One bidirectional stream."""

    stream_id: int
    connection: Connection
    #: Gets the stream's events. A transport may drop it (set None) once the
    #: stream has ended both ways, so a handler that refers to its stream
    #: does not form a reference cycle; keep your own reference if you need one.
    handler: StreamHandler | None = None

    def set_handler(self, handler: StreamHandler) -> None:
        self.handler = handler

    @abc.abstractmethod
    def send(self, data: bytes, end_stream: bool = False) -> None:
        """Queue ``data`` (and FIN) for sending. Never blocks; see :meth:`drain`.
        Raises :class:`~rpcnet.errors.TransportError` if the stream or
        connection is already closed for sending."""

    @abc.abstractmethod
    def reset(self, error_code: int) -> None:
        """Abort both directions: reset our sending side and ask the peer to
        stop sending. Idempotent; no callbacks follow for this stream."""

    @abc.abstractmethod
    async def drain(self) -> None:
        """Wait until the send buffer is below the high-water mark. Raises
        :class:`~rpcnet.errors.TransportError` if the stream is reset or the
        connection ends while waiting."""

    @abc.abstractmethod
    def pause_reading(self) -> None:
        """Stop granting the peer flow-control credit on this stream."""

    @abc.abstractmethod
    def resume_reading(self) -> None:
        """Grant credit again after :meth:`pause_reading`."""


class Connection(abc.ABC):
    """A connection carrying many streams."""

    peer: PeerInfo

    @abc.abstractmethod
    async def open_stream(self, handler: StreamHandler) -> Stream:
        """Open a new bidirectional stream whose events go to ``handler``.
        Waits for stream credit (MAX_STREAMS) if the peer's limit is reached."""

    #: True when :meth:`open_stream_soon` is implemented; the RPC client
    #: then queues a call for stream credit without suspending its caller.
    opens_streams_soon: bool = False

    def open_stream_soon(
        self, handler: StreamHandler, opened: Callable[[Stream | None, BaseException | None], None]
    ) -> Callable[[], None]:
        """Optional: :meth:`open_stream` without a waiting coroutine.

        Calls ``opened(stream, None)`` before returning when there is stream
        credit, else as soon as the peer grants it (in the same turn as
        :meth:`open_stream`'s waiters), or ``opened(None, exc)`` if the
        connection ends first. Returns a function that withdraws a request
        still waiting (``opened`` is then never called). Transports that
        implement it set :attr:`opens_streams_soon`."""
        raise NotImplementedError(f"{type(self).__name__} does not open streams from callbacks")

    @abc.abstractmethod
    def close(self, error_code: int = 0, reason: str = "") -> None:
        """Close now. Streams still open get ``stream_reset(CONNECTION_LOST)``."""

    @property
    @abc.abstractmethod
    def is_closed(self) -> bool:
        """True once the connection is closing or closed; no new streams."""

    @abc.abstractmethod
    async def wait_closed(self) -> None:
        """Wait until the connection has fully ended."""

    @abc.abstractmethod
    def add_close_callback(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call ``callback(exc_or_None)`` once when the connection ends."""


NewStreamCallback = Callable[[Stream], StreamHandler]


class Listener(abc.ABC):
    """A listening endpoint (server side)."""

    address: Address  # the bound address, with the real port when 0 was asked

    @abc.abstractmethod
    def stop_accepting(self) -> None:
        """Refuse new connections; existing ones keep working."""

    @abc.abstractmethod
    def connections(self) -> list[Connection]:
        """The server-side connections currently open."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop accepting, close every connection and release the address."""

    def reload_tls(self, tls: TlsConfig) -> None:
        """Serve new connections with the certificate, key and CA in ``tls``'s files.

        Loads everything first, so a bad file raises
        :class:`~rpcnet.errors.ConfigError` and leaves the running material
        alone; established connections keep what they were made with. A
        transport that cannot do this keeps the default, which says so.
        """
        raise ConfigError(f"{type(self).__name__} cannot reload its TLS material in place; restart the server")


class Transport(abc.ABC):
    """A transport strategy (``quic``, ``memory``, ...).

    ``options`` is the strategy's own validated ``Options`` instance.

    ``tls`` is the endpoint's :class:`~rpcnet.config.TlsConfig` (None: no TLS
    material, which transports that need TLS reject with a clear error).
    ``alpn`` is the application protocol id of whoever uses the transport (the
    RPC engine passes its wire protocol and version, ``rpcnet/1``): a
    transport carries it in its handshake where it can (TLS ALPN) and refuses
    a peer that speaks another, with an error naming both. A transport that
    needs one (QUIC) raises :class:`~rpcnet.errors.ConfigError` without it.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type | None] = None

    def __init__(self, options: Any = None) -> None:
        self.options = options

    @abc.abstractmethod
    async def listen(
        self,
        address: Address,
        on_stream: NewStreamCallback,
        *,
        tls: TlsConfig | None = None,
        alpn: str | None = None,
        max_streams: int | None = None,
    ) -> Listener:
        """Start listening. ``on_stream(stream)`` is called for every stream
        the peer opens, before its first bytes are delivered; it returns the
        stream's handler.

        ``max_streams`` is the stream credit: how many streams a peer may have
        open at once on one connection. A peer at its credit waits in
        ``open_stream`` until one of its streams has ended both ways. None
        means the transport's own default (an option of the strategy)."""

    @abc.abstractmethod
    async def connect(
        self,
        address: Address,
        *,
        tls: TlsConfig | None = None,
        server_name: str | None = None,
        alpn: str | None = None,
    ) -> Connection:
        """Connect to a listener. Raises :class:`~rpcnet.errors.TransportError`
        (or :class:`~rpcnet.errors.TlsError`) with a message that says why."""
