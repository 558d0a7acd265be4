"""Options of the ``tcp`` transport (``options={"tcp": {...}}``)."""

from __future__ import annotations

from typing import Any

import attrs

from rpcnet.config import positive
from rpcnet.errors import ConfigError

__all__ = ["TcpOptions"]

KIB = 1024
MIB = 1024 * KIB
#: The largest frame payload HTTP/2 allows (RFC 9113 section 4.2).
MAX_FRAME_SIZE_LIMIT = (1 << 24) - 1
#: The largest flow-control window HTTP/2 allows (RFC 9113 section 6.9.1).
MAX_WINDOW = (1 << 31) - 1


def _optional_float(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null", "off"}):
        return None
    return float(value)


def _optional_str(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null"}):
        return None
    return str(value)


def _between(low: int, high: int) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: int) -> None:
        if not low <= value <= high:
            raise ConfigError(f"{attribute.name} must be between {low} and {high}, got {value!r}")

    return check


@attrs.frozen(kw_only=True)
class TcpOptions:
    """Settings of the TCP transport. Every size is in bytes, every time in seconds."""

    #: Close a connection when nothing arrived for this long.
    idle_timeout: float = attrs.field(default=60.0, converter=float, validator=positive)
    #: Send an HTTP/2 PING when nothing arrived for this long, so a quiet
    #: connection stays open and a dead peer is noticed; None turns it off.
    keepalive_interval: float | None = attrs.field(default=15.0, converter=_optional_float, validator=positive)
    #: Give up on a TCP connect + TLS handshake + HTTP/2 preface that has not
    #: completed after this long.
    handshake_timeout: float = attrs.field(default=10.0, converter=float, validator=positive)
    #: Streams (calls) a client may have open at once on one connection: the
    #: SETTINGS_MAX_CONCURRENT_STREAMS credit a server grants.
    max_streams: int = attrs.field(default=256, converter=int, validator=_between(1, 1_000_000))
    #: Bytes the peer may send on one stream beyond what we have consumed
    #: (SETTINGS_INITIAL_WINDOW_SIZE). While a stream is paused this is also
    #: the most we buffer for it.
    stream_window: int = attrs.field(default=1 * MIB, converter=int, validator=_between(64 * KIB, MAX_WINDOW))
    #: Bytes the peer may send on one connection beyond what we have consumed:
    #: the most a connection buffers for paused streams.
    connection_window: int = attrs.field(default=16 * MIB, converter=int, validator=_between(64 * KIB, MAX_WINDOW))
    #: Largest DATA frame payload the peer may send us (SETTINGS_MAX_FRAME_SIZE).
    #: DATA is handed on as it arrives, so a large value costs no buffering.
    max_frame_size: int = attrs.field(default=MAX_FRAME_SIZE_LIMIT, converter=int, validator=_between(16 * KIB, MAX_FRAME_SIZE_LIMIT))
    #: Largest header block (HEADERS + CONTINUATION) and largest non-DATA
    #: frame we accept; rpcnet's own headers travel inside DATA, so this is small.
    max_header_size: int = attrs.field(default=16 * KIB, converter=int, validator=_between(1 * KIB, 1 * MIB))
    #: ``Stream.drain()`` waits while more than this many bytes of a stream
    #: wait for flow-control credit or for the socket.
    send_high_water: int = attrs.field(default=256 * KIB, converter=int, validator=_between(1, 1 << 30))
    #: Connections (established or handshaking) a listener keeps at once;
    #: clients beyond that are refused (a GOAWAY that says why, right after
    #: the TLS handshake).
    max_connections: int = attrs.field(default=10_000, converter=int, validator=_between(1, 10_000_000))
    #: Connections (established or handshaking) a listener keeps at once
    #: from one source IP address; more from that address are refused, so one
    #: host cannot pin the server's memory. Clients behind one NAT or proxy
    #: share an address: raise it for such deployments.
    max_connections_per_source: int = attrs.field(default=100, converter=int, validator=_between(1, 10_000_000))
    #: A server closes a connection that has not opened a call this long
    #: after its handshake; None keeps it until the idle timeout.
    unused_connection_timeout: float | None = attrs.field(default=10.0, converter=_optional_float, validator=positive)
    #: Clients: the local address their TCP socket binds to before
    #: connecting (None: the system picks one).
    bind_address: str | None = attrs.field(default=None, converter=_optional_str)

    def __attrs_post_init__(self) -> None:
        if self.keepalive_interval is not None and self.keepalive_interval >= self.idle_timeout:
            raise ConfigError(
                f"keepalive_interval ({self.keepalive_interval} s) must be shorter than idle_timeout "
                f"({self.idle_timeout} s), or None to turn keep-alive off"
            )
