"""Options of the ``quic`` transport (``options={"quic": {...}}``)."""

from __future__ import annotations

from typing import Any

import attrs

from rpcnet.config import positive, to_bool
from rpcnet.errors import ConfigError

__all__ = ["QuicOptions"]

KIB = 1024
MIB = 1024 * KIB


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


def _one_of(*choices: str) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: str) -> None:
        if value not in choices:
            raise ConfigError(f"{attribute.name} must be one of {', '.join(map(repr, choices))}, got {value!r}")

    return check


@attrs.frozen(kw_only=True)
class QuicOptions:
    """Settings of the QUIC transport. Every size is in bytes, every time in seconds."""

    #: Close a connection when nothing arrived for this long (the smaller of
    #: both sides' values applies).
    idle_timeout: float = attrs.field(default=60.0, converter=float, validator=positive)
    #: Send a PING when nothing arrived for this long, so a quiet connection
    #: stays open; None turns keep-alive off.
    keepalive_interval: float | None = attrs.field(default=15.0, converter=_optional_float, validator=positive)
    #: A client waiting on calls sends a PING when nothing arrived for this
    #: long, so a server process that died (kill -9) is noticed at once on
    #: networks that answer with port-unreachable, instead of after
    #: ``idle_timeout``; in-flight calls then fail with UNAVAILABLE and can be
    #: retried elsewhere. None turns it off.
    busy_probe_interval: float | None = attrs.field(default=1.0, converter=_optional_float, validator=positive)
    #: Give up on a handshake that has not completed after this long.
    handshake_timeout: float = attrs.field(default=10.0, converter=float, validator=positive)
    #: Bidirectional streams (calls) the peer may have open at once on one
    #: connection (the MAX_STREAMS credit we grant).
    max_streams: int = attrs.field(default=256, converter=int, validator=_between(1, 1_000_000))
    #: Bytes the peer may send on one stream beyond what we have consumed.
    #: While a stream is paused this is also the most we buffer for it.
    stream_window: int = attrs.field(default=1 * MIB, converter=int, validator=_between(1 * KIB, 1 << 30))
    #: Bytes the peer may send on one connection beyond what we have
    #: consumed: the most a connection buffers for paused streams.
    connection_window: int = attrs.field(default=16 * MIB, converter=int, validator=_between(1 * KIB, 1 << 40))
    #: ``Stream.drain()`` waits while more than this many bytes of a stream
    #: are unsent or unacknowledged.
    send_high_water: int = attrs.field(default=256 * KIB, converter=int, validator=_between(1, 1 << 30))
    #: Validate client addresses with a Retry packet before any handshake
    #: state is kept (costs one round trip per new connection).
    retry: bool = attrs.field(default=False, converter=to_bool)
    #: Connections (established or handshaking) a listener keeps at once;
    #: clients beyond that are refused at once (CONNECTION_REFUSED).
    max_connections: int = attrs.field(default=10_000, converter=int, validator=_between(1, 10_000_000))
    #: Connections a listener keeps at once from one source IP address;
    #: more from that address are refused at once (CONNECTION_REFUSED), so
    #: one host cannot pin the server's memory. Clients behind one NAT or
    #: proxy share an address: raise it for such deployments.
    max_connections_per_source: int = attrs.field(default=100, converter=int, validator=_between(1, 10_000_000))
    #: A server closes a connection that has not opened a call this long
    #: after its handshake; None keeps it until the idle timeout.
    unused_connection_timeout: float | None = attrs.field(default=10.0, converter=_optional_float, validator=positive)
    #: Clients: the local address their UDP socket binds to before
    #: connecting (None: the system picks one).
    bind_address: str | None = attrs.field(default=None, converter=_optional_str)
    #: Handshakes in progress above which new clients must first pass
    #: address validation (Retry), so a flood of spoofed Initials cannot pile
    #: up connection state. 0 behaves like ``retry = true``.
    max_pending_handshakes: int = attrs.field(default=100, converter=int, validator=_between(0, 1_000_000))
    #: Datagrams a listener reads from its socket per event-loop wake-up
    #: (a GRO buffer, several datagrams of one sender, counts as one read).
    #: One keeps client and server working at the same time; larger values
    #: answer more datagrams per transmit but merge calls into lockstep
    #: bursts (docs/transport.md, "Reading datagrams").
    listener_read_batch: int = attrs.field(default=1, converter=int, validator=_between(1, 1024))
    #: Largest UDP payload we send; raise only where the path MTU allows.
    max_datagram_size: int = attrs.field(default=1200, converter=int, validator=_between(1200, 65527))
    #: Congestion controller: "reno" or "cubic" (aioquic only: qh3's core
    #: runs its own and ignores this).
    congestion_control: str = attrs.field(default="reno", converter=str, validator=_one_of("reno", "cubic"))
    #: The QUIC library underneath: "aioquic" (pure Python) or "qh3" (native
    #: core; ``pip install rpcnet[qh3]``). Both speak the same QUIC, so a
    #: client on one talks to a server on the other.
    backend: str = attrs.field(default="aioquic", converter=str, validator=_one_of("aioquic", "qh3"))

    def __attrs_post_init__(self) -> None:
        if self.keepalive_interval is not None and self.keepalive_interval >= self.idle_timeout:
            raise ConfigError(
                f"keepalive_interval ({self.keepalive_interval} s) must be shorter than idle_timeout "
                f"({self.idle_timeout} s), or None to turn keep-alive off"
            )
