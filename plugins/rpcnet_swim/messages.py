"""SWIM wire messages as frozen values. Encoding lives in :mod:`.codec`.

A datagram carries at most one *direct* message (ping, ping-req, ack, nack,
heartbeat) and any number of piggybacked *updates* (alive, suspect, dead),
the infection-style dissemination of SWIM. Full-state syncs travel on a
reliable stream as :class:`SyncMessage`.
"""

from __future__ import annotations

import attrs

from rpcnet.membership import Address, MemberState

__all__ = [
    "Ping",
    "PingReq",
    "Ack",
    "Nack",
    "Heartbeat",
    "Alive",
    "Suspect",
    "Dead",
    "DirectMessage",
    "Update",
    "Packet",
    "MemberRecord",
    "SyncMessage",
    "StreamPing",
    "StreamAck",
]


@attrs.frozen(kw_only=True)
class Ping:
    """Are you alive? ``target`` names the node meant, so a reused address is not fooled."""

    seq: int
    target: str


@attrs.frozen(kw_only=True)
class PingReq:
    """Please ping ``target`` for me and relay the ack (and a nack if it stays silent)."""

    seq: int
    target: str
    target_address: Address
    nack: bool = True


@attrs.frozen(kw_only=True)
class Ack:
    seq: int
    #: The pinger is not in the acking node's view (it restarted with nobody
    #: to join through, say): the pinger should sync with it (protocol 2).
    unknown_sender: bool = False


@attrs.frozen(kw_only=True)
class Nack:
    """The relay of a ping-req reached us but not the target (Lifeguard)."""

    seq: int


@attrs.frozen(kw_only=True)
class Heartbeat:
    """A beat to one of the sender's monitors, fed to their failure detector."""


@attrs.frozen(kw_only=True)
class Alive:
    node: str
    incarnation: int
    address: Address
    tags: dict[str, str] = attrs.field(factory=dict, hash=False)


@attrs.frozen(kw_only=True)
class Suspect:
    node: str
    incarnation: int
    #: Who suspects; distinct sources are Lifeguard's independent confirmations.
    source: str


@attrs.frozen(kw_only=True)
class Dead:
    """``node`` is failed; when ``source == node`` it left gracefully."""

    node: str
    incarnation: int
    source: str


DirectMessage = Ping | PingReq | Ack | Nack | Heartbeat
Update = Alive | Suspect | Dead


@attrs.frozen(kw_only=True)
class Packet:
    sender: str
    message: DirectMessage | None = None
    updates: tuple[Update, ...] = ()


@attrs.frozen(kw_only=True)
class MemberRecord:
    """One member in a full-state sync."""

    node: str
    address: Address
    tags: dict[str, str] = attrs.field(factory=dict, hash=False)
    incarnation: int = 0
    state: MemberState = MemberState.ALIVE


@attrs.frozen(kw_only=True)
class SyncMessage:
    """A full-state exchange; ``join`` marks the first sync of a joining node."""

    sender: str
    response: bool
    join: bool = False
    members: tuple[MemberRecord, ...] = ()


@attrs.frozen(kw_only=True)
class StreamPing:
    """A ping over the reliable channel, sent when a datagram probe went unanswered.

    Loss that defeats datagrams is retransmitted away on a stream, so a
    member on a lossy path is not suspected merely for the loss.
    """

    sender: str
    seq: int
    target: str


@attrs.frozen(kw_only=True)
class StreamAck:
    sender: str
    seq: int
