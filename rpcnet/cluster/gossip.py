"""Gossip datagrams: sealing with the keyring, and the UDP endpoint that carries them.

The membership core hands the driver small datagrams (each within its packet
budget); this module seals each one into a single UDP packet and opens what
arrives. Sealing is AES-GCM with the keyring's primary key and the cluster
label as associated data, so a packet sealed with a key the receiver does not
hold, or for another cluster label, fails authentication and is dropped.

A sealed datagram (format 2) also carries, inside the encryption, the
sender's boot epoch (8 random bytes drawn when its endpoint opens), a counter
and the sender's clock in seconds. :class:`ReplayGuard` drops a packet whose
(epoch, counter) was seen already or is too far behind the newest of its
epoch, and one stamped further from the local clock than the configured skew:
a captured packet cannot be played again, and a restarted sender, with a new
epoch, is accepted at once. See "Gossip packet format" in docs/cluster.md.

:func:`seal_datagram`, :func:`open_datagram`, :func:`seal_insecure` and the
request channel's :func:`seal` / :func:`unseal` (format 1, whose transport,
mutual TLS, already refuses replays) are pure functions;
:class:`GossipEndpoint` is the asyncio driver around them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import ConfigError, MessageTooLargeError, RpcnetError, TransportError
from ..transport import Address, format_address
from .keyring import Keyring

__all__ = [
    "SEALED_VERSION",
    "DATAGRAM_VERSION",
    "DATAGRAM_HEADER_SIZE",
    "DEFAULT_MAX_CLOCK_SKEW",
    "ReplayGuard",
    "ReplayedPacketError",
    "StalePacketError",
    "VersionMismatchError",
    "OpenedDatagram",
    "seal_datagram",
    "open_datagram",
    "INSECURE_VERSION",
    "NONCE_SIZE",
    "TAG_SIZE",
    "MAX_LABEL_BYTES",
    "DEFAULT_MAX_PACKET_SIZE",
    "GossipPacketError",
    "MalformedPacketError",
    "PacketAuthError",
    "SecurityMismatchError",
    "seal",
    "seal_insecure",
    "unseal",
    "sealing_overhead",
    "GossipStats",
    "GossipEndpoint",
]

logger = logging.getLogger(__name__)

#: First byte of a request-channel message sealed with AES-GCM (format 1;
#: gossip datagrams used it too in rpcnet 0.1).
SEALED_VERSION = 0x01
#: First byte of a gossip datagram sealed with AES-GCM, with epoch, counter
#: and timestamp inside (format 2, rpcnet 0.2).
DATAGRAM_VERSION = 0x02
#: Epoch (8 bytes), counter (8, big-endian), sender clock in seconds (4).
DATAGRAM_HEADER_SIZE = 20
_HEADER = struct.Struct(">8sQI")
#: Default tolerance between a sender's clock and ours, seconds.
DEFAULT_MAX_CLOCK_SKEW = 60.0
#: First byte of an unencrypted packet (insecure mode). Distinct so neither
#: side ever mistakes one kind for the other.
INSECURE_VERSION = 0x80
NONCE_SIZE = 12
TAG_SIZE = 16
#: Labels travel in one length byte in insecure packets.
MAX_LABEL_BYTES = 255
#: One gossip packet, sealing included; fits a 1500-byte Ethernet MTU with room for tunnels.
DEFAULT_MAX_PACKET_SIZE = 1400
#: The largest UDP payload over IPv4.
_MAX_UDP_PAYLOAD = 65507


# -- errors -------------------------------------------------------------


class GossipPacketError(RpcnetError, ValueError):
    """An incoming gossip packet was refused; ``counter`` names the stat it is counted under."""

    counter: ClassVar[str] = "dropped_malformed"


class MalformedPacketError(GossipPacketError):
    """Too short, or an unknown version byte: not a gossip packet."""

    counter = "dropped_malformed"


class PacketAuthError(GossipPacketError):
    """Sealed with a key not in the keyring, for another cluster label, or altered on the way."""

    counter = "dropped_auth"


class SecurityMismatchError(GossipPacketError):
    """An unencrypted packet reached a node with a keyring, or a sealed one reached an insecure node."""

    counter = "dropped_insecure_mismatch"


class VersionMismatchError(GossipPacketError):
    """Sealed in the gossip format of another release."""

    counter = "dropped_version"


class ReplayedPacketError(GossipPacketError):
    """Opened, but its (epoch, counter) was seen already or is too old to tell."""

    counter = "dropped_replay"


class StalePacketError(GossipPacketError):
    """Opened, but stamped further from this node's clock than the allowed skew."""

    counter = "dropped_stale"


# -- sealing (pure) -------------------------------------------------------


def _label_bytes(label: str) -> bytes:
    if not isinstance(label, str):
        raise ConfigError(f"cluster label must be a string, not {type(label).__name__}")
    raw = label.encode("utf-8")
    if len(raw) > MAX_LABEL_BYTES:
        raise ConfigError(f"cluster label is {len(raw)} bytes in UTF-8; at most {MAX_LABEL_BYTES} are allowed")
    return raw


def _associated_data(label: bytes) -> bytes:
    # The version byte is authenticated too, so it cannot be rewritten in flight.
    return bytes((SEALED_VERSION,)) + label


def sealing_overhead(label: str, *, insecure: bool) -> int:
    """Bytes a sealed gossip datagram (or, if ``insecure``, a labelled
    plaintext one) adds to its payload."""
    if insecure:
        return 2 + len(_label_bytes(label))
    return 1 + NONCE_SIZE + DATAGRAM_HEADER_SIZE + TAG_SIZE


def seal(plaintext: bytes, *, key: bytes, label: str, nonce: bytes) -> bytes:
    """``version | nonce | AES-GCM(key, nonce, plaintext, aad=version | label)``.

    ``nonce`` must be 12 bytes never used before with ``key``; the endpoint
    draws it from ``os.urandom``.
    """
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
    sealed = AESGCM(key).encrypt(nonce, bytes(plaintext), _associated_data(_label_bytes(label)))
    return bytes((SEALED_VERSION,)) + nonce + sealed


def seal_insecure(plaintext: bytes, *, label: str) -> bytes:
    """``version | label length | label | plaintext``: no secrecy, no authentication."""
    raw_label = _label_bytes(label)
    return bytes((INSECURE_VERSION, len(raw_label))) + raw_label + bytes(plaintext)


def seal_datagram(
    payload: bytes, *, key: bytes, label: str, nonce: bytes, epoch: bytes, counter: int, timestamp: int
) -> bytes:
    """``0x02 | nonce | AES-GCM(key, nonce, epoch | counter | timestamp | payload, aad=0x02 | label)``.

    ``epoch`` is the sender's 8 random bytes for this boot, ``counter`` its
    packet count in that epoch, ``timestamp`` its clock in whole seconds.
    """
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
    plaintext = _HEADER.pack(epoch, counter, timestamp & 0xFFFFFFFF) + bytes(payload)
    aad = bytes((DATAGRAM_VERSION,)) + _label_bytes(label)
    return bytes((DATAGRAM_VERSION,)) + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


@attrs.frozen
class OpenedDatagram:
    """What :func:`open_datagram` found inside a sealed datagram."""

    epoch: bytes
    counter: int
    timestamp: int
    payload: bytes


def open_datagram(packet: bytes, *, keys: Sequence[bytes], label: str) -> OpenedDatagram:
    """Open a format-2 gossip datagram; raises a :class:`GossipPacketError` subclass.

    A format-1 packet (rpcnet 0.1) raises :class:`VersionMismatchError`
    naming both formats. Replay and clock checks are :class:`ReplayGuard`'s.
    """
    packet = bytes(packet)
    raw_label = _label_bytes(label)
    if not packet:
        raise MalformedPacketError("empty packet")
    version = packet[0]
    if version == SEALED_VERSION:
        raise VersionMismatchError(
            "gossip packet sealed in format 1 (rpcnet 0.1); this node seals and accepts format 2 "
            "(rpcnet 0.2, with replay protection): run one release on every node of a cluster"
        )
    if version == INSECURE_VERSION:
        raise SecurityMismatchError("unencrypted packet, but this node requires encryption")
    if version != DATAGRAM_VERSION:
        raise MalformedPacketError(f"unknown gossip packet version 0x{version:02x} (this node speaks 0x{DATAGRAM_VERSION:02x})")
    if len(packet) < 1 + NONCE_SIZE + DATAGRAM_HEADER_SIZE + TAG_SIZE:
        raise MalformedPacketError(f"sealed packet of {len(packet)} bytes is shorter than nonce, header and tag")
    nonce = packet[1 : 1 + NONCE_SIZE]
    sealed = packet[1 + NONCE_SIZE :]
    aad = bytes((DATAGRAM_VERSION,)) + raw_label
    for key in keys:
        try:
            plaintext = AESGCM(key).decrypt(nonce, sealed, aad)
        except InvalidTag:
            continue
        epoch, counter, timestamp = _HEADER.unpack_from(plaintext)
        return OpenedDatagram(epoch, counter, timestamp, plaintext[DATAGRAM_HEADER_SIZE:])
    raise PacketAuthError("no installed key opens this packet for this cluster label")


class _Window:
    __slots__ = ("highest", "seen", "last")

    def __init__(self, counter: int, now: float) -> None:
        self.highest = counter
        #: Bit i set: counter ``highest - i`` was seen.
        self.seen = 1
        self.last = now


class ReplayGuard:
    """Drops replayed and stale datagrams; pure, with time passed in.

    Per sender epoch it keeps the highest counter and a bitmap of the
    ``window`` counters below it (as IPsec and DTLS do): a counter already
    seen, or ``window`` or more behind, is a replay. A packet stamped more
    than ``max_skew`` seconds from ``now`` is stale. An epoch silent for
    ``2 * max_skew`` is forgotten: any packet of it is stale by then, so
    forgetting opens no door. At most ``max_epochs`` epochs are kept (the
    longest silent goes first); epochs only come from holders of the key.
    """

    def __init__(self, *, max_skew: float = DEFAULT_MAX_CLOCK_SKEW, window: int = 1024, max_epochs: int = 4096) -> None:
        if not max_skew > 0:
            raise ConfigError(f"max_skew must be > 0 seconds, got {max_skew!r}")
        self.max_skew = float(max_skew)
        self.window = int(window)
        self.max_epochs = int(max_epochs)
        self._epochs: dict[bytes, _Window] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._epochs)

    def check(self, epoch: bytes, counter: int, timestamp: int, now: float) -> None:
        """Accept (record) the packet, or raise :class:`ReplayedPacketError` / :class:`StalePacketError`."""
        skew = timestamp - now
        if abs(skew) > self.max_skew:
            raise StalePacketError(
                f"packet stamped {skew:+.0f} s from this node's clock (tolerance {self.max_skew:g} s): "
                "synchronise the clocks (NTP), or raise ClusterConfig.gossip_clock_skew"
            )
        if now >= self._next_sweep:
            self._sweep(now)
        state = self._epochs.get(epoch)
        if state is None:
            if len(self._epochs) >= self.max_epochs:
                oldest = min(self._epochs, key=lambda e: self._epochs[e].last)
                del self._epochs[oldest]
            self._epochs[epoch] = _Window(counter, now)
            return
        if counter > state.highest:
            shift = counter - state.highest
            state.seen = ((state.seen << shift) | 1) & ((1 << self.window) - 1) if shift < self.window else 1
            state.highest = counter
        else:
            behind = state.highest - counter
            if behind >= self.window:
                raise ReplayedPacketError(f"counter {counter} is {behind} behind the newest of its epoch (window {self.window})")
            bit = 1 << behind
            if state.seen & bit:
                raise ReplayedPacketError(f"counter {counter} of this epoch was seen already")
            state.seen |= bit
        state.last = now

    def _sweep(self, now: float) -> None:
        horizon = now - 2 * self.max_skew
        for epoch in [e for e, w in self._epochs.items() if w.last < horizon]:
            del self._epochs[epoch]
        self._next_sweep = now + self.max_skew


def unseal(packet: bytes, *, keys: Sequence[bytes] | None, label: str) -> bytes:
    """Open one packet and return its payload.

    ``keys`` are tried in order (primary first); ``None`` means this node runs
    insecure and accepts only unencrypted packets carrying ``label``. Raises a
    :class:`GossipPacketError` subclass naming why the packet was refused.
    """
    packet = bytes(packet)
    raw_label = _label_bytes(label)
    if not packet:
        raise MalformedPacketError("empty packet")
    version = packet[0]
    if version == DATAGRAM_VERSION and keys is None:
        raise SecurityMismatchError("encrypted packet, but this node runs insecure (no keyring)")
    if version == SEALED_VERSION:
        if keys is None:
            raise SecurityMismatchError("encrypted packet, but this node runs insecure (no keyring)")
        if len(packet) < 1 + NONCE_SIZE + TAG_SIZE:
            raise MalformedPacketError(f"sealed packet of {len(packet)} bytes is shorter than nonce and tag")
        nonce = packet[1 : 1 + NONCE_SIZE]
        sealed = packet[1 + NONCE_SIZE :]
        aad = _associated_data(raw_label)
        for key in keys:
            try:
                return AESGCM(key).decrypt(nonce, sealed, aad)
            except InvalidTag:
                continue
        raise PacketAuthError("no installed key opens this packet for this cluster label")
    if version == INSECURE_VERSION:
        if keys is not None:
            raise SecurityMismatchError("unencrypted packet, but this node requires encryption")
        if len(packet) < 2 or len(packet) < 2 + packet[1]:
            raise MalformedPacketError(f"unencrypted packet of {len(packet)} bytes is shorter than its label")
        end = 2 + packet[1]
        if packet[2:end] != raw_label:
            raise PacketAuthError("packet is for another cluster label")
        return packet[end:]
    raise MalformedPacketError(f"unknown gossip packet version 0x{version:02x}")


# -- endpoint -------------------------------------------------------------


@attrs.frozen(kw_only=True)
class GossipStats:
    """Counters of one endpoint since it opened."""

    #: Packets handed to the socket.
    sent: int = 0
    #: Packets that opened and were passed to ``on_datagram``.
    received: int = 0
    #: Wrong key, wrong cluster label, or altered in flight.
    dropped_auth: int = 0
    #: Too short or an unknown version byte.
    dropped_malformed: int = 0
    #: Unencrypted packet at a node with a keyring, or the other way round.
    dropped_insecure_mismatch: int = 0
    #: Sealed in another release's format (format 1: rpcnet 0.1).
    dropped_version: int = 0
    #: A packet already received (same epoch and counter), or too far behind.
    dropped_replay: int = 0
    #: Stamped further from this node's clock than ``max_clock_skew``.
    dropped_stale: int = 0
    #: ``send`` calls refused because the payload was over ``max_payload``.
    oversize_refused: int = 0
    #: Errors the socket reported (such as ICMP port unreachable from an earlier send).
    send_errors: int = 0


def _is_unspecified(host: str) -> bool:
    if host == "":
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False  # a host name


def _check_address(value: Any, what: str) -> Address:
    try:
        host, port = value
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a (host, port) pair, got {value!r}") from None
    if not isinstance(host, str) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"{what} must be a (host: str, port: int 0-65535) pair, got {value!r}")
    return (host, port)


def _check_advertise(value: Any) -> Address:
    host, port = _check_address(value, "advertise address")
    if _is_unspecified(host):
        raise ConfigError(
            f"advertise address {host or '(empty)'!r} is the unspecified address, which peers cannot reach; "
            "set advertise=(host, port) to an address other nodes can send to"
        )
    if port == 0:
        raise ConfigError("advertise port is 0; set advertise=(host, port) to the port peers should send to")
    return (host, port)


class _GossipProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: GossipEndpoint) -> None:
        self._endpoint = endpoint

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._endpoint._datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._endpoint._error_received(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._endpoint._closed = True


class GossipEndpoint:
    """One node's gossip socket: seals what it sends, opens and filters what it receives.

    Open with :meth:`open`. Holds a reference to the keyring, so rotating it
    (``install``/``use``/``remove``) takes effect on the next packet.
    """

    def __init__(
        self,
        *,
        keyring: Keyring | None,
        label: str,
        advertise: Address | None,
        max_packet_size: int,
        on_datagram: Callable[[Address, bytes], None],
        on_drop: Callable[[Address, GossipPacketError], None] | None = None,
        max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Built by open(), which attaches the socket once it is bound.
        self._transport: asyncio.DatagramTransport | None = None
        self._keyring = keyring
        self._label = label
        self._max_packet_size = max_packet_size
        self._on_datagram = on_datagram
        self._on_drop = on_drop
        self._closed = False
        self._counts = dict.fromkeys(attrs.fields_dict(GossipStats), 0)
        self._local_address: Address = ("", 0)
        self._advertise_address = advertise
        self._clock = clock
        self._guard = ReplayGuard(max_skew=max_clock_skew)
        #: This boot's epoch: a restarted node is a new sender to everyone.
        self._epoch = os.urandom(8)
        self._counter = 0
        #: Drop kinds an operator must hear about -> source -> when last logged.
        self._warned: dict[tuple[str, Address], float] = {}

    def _attach(self, transport: asyncio.DatagramTransport) -> None:
        self._transport = transport
        sockname = transport.get_extra_info("sockname")
        self._local_address = (sockname[0], sockname[1])
        if self._advertise_address is None:
            self._advertise_address = self._local_address

    @classmethod
    async def open(
        cls,
        *,
        bind: Address,
        on_datagram: Callable[[Address, bytes], None],
        keyring: Keyring | None = None,
        label: str = "",
        insecure: bool = False,
        advertise: Address | None = None,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        on_drop: Callable[[Address, GossipPacketError], None] | None = None,
        max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW,
        clock: Callable[[], float] = time.time,
    ) -> GossipEndpoint:
        """Bind a UDP socket on ``bind`` and start delivering opened payloads to ``on_datagram(addr, payload)``.

        ``keyring`` is required unless ``insecure=True`` (then gossip travels
        unencrypted and only reaches other insecure nodes). ``label`` binds
        packets to one cluster. ``advertise`` is the address peers should send
        to; it defaults to the bound address. ``on_drop(addr, error)``, if
        given, is called for every refused packet after it is counted (for
        logs or metrics; ``error.counter`` names the stat). Sealed packets
        stamped more than ``max_clock_skew`` seconds from ``clock()`` are
        dropped as stale, and replays as replays.
        """
        if keyring is None and not insecure:
            raise ConfigError(
                "gossip needs a keyring to encrypt and authenticate packets, and none was given; "
                "pass keyring=Keyring.from_config([...]) (make a key with Keyring.generate()), "
                "or set insecure=True to send gossip unencrypted on a trusted network"
            )
        if keyring is not None and insecure:
            raise ConfigError(
                "gossip was given a keyring and insecure=True; choose one: a keyring to encrypt, "
                "or insecure=True (and no keyring) to send unencrypted"
            )
        if keyring is not None and not isinstance(keyring, Keyring):
            raise ConfigError(
                f"keyring must be a Keyring, not {type(keyring).__name__}; "
                "build one with Keyring.from_config(list_of_base64_keys)"
            )
        overhead = sealing_overhead(label, insecure=insecure)
        if not isinstance(max_packet_size, int) or not overhead < max_packet_size <= _MAX_UDP_PAYLOAD:
            raise ConfigError(
                f"max_packet_size must be an int above the {overhead}-byte sealing overhead "
                f"and at most {_MAX_UDP_PAYLOAD}, got {max_packet_size!r}"
            )
        bind = _check_address(bind, "bind address")
        if advertise is not None:
            advertise = _check_advertise(advertise)
        elif _is_unspecified(bind[0]):
            raise ConfigError(
                f"gossip binds to {bind[0] or '(all interfaces)'!r}, which peers cannot send to; "
                "set advertise=(host, port) to the address other nodes should use"
            )
        if not callable(on_datagram):
            raise ConfigError("on_datagram must be a callable taking (address, payload)")
        if on_drop is not None and not callable(on_drop):
            raise ConfigError("on_drop must be None or a callable taking (address, error)")
        if not isinstance(max_clock_skew, int | float) or not max_clock_skew > 0:
            raise ConfigError(f"max_clock_skew must be a number of seconds > 0, got {max_clock_skew!r}")

        endpoint = cls(
            keyring=keyring,
            label=label,
            advertise=advertise,
            max_packet_size=max_packet_size,
            on_datagram=on_datagram,
            on_drop=on_drop,
            max_clock_skew=float(max_clock_skew),
            clock=clock,
        )
        # The protocol exists before the endpoint has its socket, so a packet
        # arriving straight after the bind is already counted and delivered.
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _GossipProtocol(endpoint), local_addr=bind
        )
        endpoint._attach(transport)
        return endpoint

    # -- properties -----------------------------------------------------

    @property
    def local_address(self) -> Address:
        """The address the socket is bound to (the real port when bound to port 0)."""
        return self._local_address

    @property
    def advertise_address(self) -> Address:
        """The address peers should send gossip to."""
        return self._advertise_address or self._local_address

    @property
    def keyring(self) -> Keyring | None:
        """The live keyring (None when insecure); rotate keys on it directly."""
        return self._keyring

    @property
    def insecure(self) -> bool:
        return self._keyring is None

    @property
    def label(self) -> str:
        return self._label

    @property
    def max_packet_size(self) -> int:
        return self._max_packet_size

    @property
    def max_payload(self) -> int:
        """The largest payload :meth:`send` accepts; set the membership core's packet budget from it."""
        return self._max_packet_size - sealing_overhead(self._label, insecure=self.insecure)

    @property
    def stats(self) -> GossipStats:
        """A snapshot of the counters."""
        return GossipStats(**self._counts)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- sending --------------------------------------------------------

    def send(self, addr: Address, plaintext: bytes) -> None:
        """Seal ``plaintext`` and send it to ``addr`` (an IP address and port) as one UDP packet.

        Raises :class:`~rpcnet.errors.MessageTooLargeError` when it is over
        :attr:`max_payload`: gossip is never fragmented, larger state goes over
        the QUIC sync channel.
        """
        if self._closed or self._transport is None:
            raise TransportError("gossip endpoint is closed; open a new one to send")
        if len(plaintext) > self.max_payload:
            self._counts["oversize_refused"] += 1
            raise MessageTooLargeError(
                f"gossip payload of {len(plaintext)} bytes is over max_payload {self.max_payload} "
                f"(max_packet_size {self._max_packet_size} minus sealing overhead); "
                "set the membership core's packet budget from GossipEndpoint.max_payload, "
                "and send larger state over the sync channel"
            )
        if self._keyring is None:
            packet = seal_insecure(plaintext, label=self._label)
        else:
            self._counter += 1
            packet = seal_datagram(
                plaintext, key=self._keyring.primary_key, label=self._label, nonce=os.urandom(NONCE_SIZE),
                epoch=self._epoch, counter=self._counter, timestamp=int(self._clock()),
            )
        self._transport.sendto(packet, addr)
        self._counts["sent"] += 1

    # -- receiving ------------------------------------------------------

    def _datagram_received(self, data: bytes, addr: Any) -> None:
        source: Address = (addr[0], addr[1])
        try:
            if self._keyring is None:
                payload = unseal(data, keys=None, label=self._label)
            else:
                opened = open_datagram(data, keys=self._keyring.keys, label=self._label)
                self._guard.check(opened.epoch, opened.counter, opened.timestamp, self._clock())
                payload = opened.payload
        except GossipPacketError as exc:
            self._counts[exc.counter] += 1
            self._log_drop(source, exc)
            if self._on_drop is not None:
                self._notify(self._on_drop, source, exc)
            return
        self._counts["received"] += 1
        self._notify(self._on_datagram, source, payload)

    def _log_drop(self, source: Address, exc: GossipPacketError) -> None:
        # A peer of another release or with a skewed clock is the operator's
        # to fix: say so at WARNING, once a minute per source. Anything else
        # (replays, wrong keys, noise) is counted and logged at DEBUG.
        if isinstance(exc, VersionMismatchError | StalePacketError):
            now = time.monotonic()
            key = (exc.counter, source)
            if now - self._warned.get(key, float("-inf")) >= 60.0:
                self._warned[key] = now
                logger.warning("dropped gossip from %s: %s", format_address(source), exc)
                return
        logger.debug("dropped gossip packet from %s: %s", format_address(source), exc)

    @staticmethod
    def _notify(callback: Callable[[Address, Any], None], source: Address, value: Any) -> None:
        # A failing callback must not stop the socket from reading.
        try:
            callback(source, value)
        except Exception:
            logger.exception("gossip callback %r failed for a packet from %s", callback, format_address(source))

    def _error_received(self, exc: Exception) -> None:
        self._counts["send_errors"] += 1
        logger.debug("gossip socket error: %s", exc)

    # -- lifecycle ------------------------------------------------------

    def close(self) -> None:
        """Close the socket; idempotent."""
        self._closed = True
        if self._transport is not None:
            self._transport.close()

    async def __aenter__(self) -> GossipEndpoint:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "insecure" if self.insecure else f"{len(self._keyring or ())} key(s)"
        return f"<GossipEndpoint {format_address(self._local_address)} label={self._label!r} {mode}>"
