"""The membership strategy interface: a sans-IO core the driver runs.

A membership core is a synchronous state machine. It owns no socket, no clock
and no global randomness: every method that depends on time takes ``now``
(seconds, monotonic), randomness comes from an injected ``random.Random``,
and everything it wants sent is queued for the driver to collect. A driver
(asyncio over UDP + QUIC, or :class:`rpcnet.testing.Simulator`) runs it like
this::

    core.start(now)
    core.join(seed_addresses, now)           # optional: first node has no seeds
    loop:
        on datagram (addr, data):  core.receive(addr, data, now)
        on timer:                  core.handle_timer(now)
        on sync request from peer: reply = core.handle_sync_request(addr, data, now)
        on sync reply:             core.handle_sync_response(addr, data, now)
        on sync failure:           core.sync_failed(addr, now)
        after any of the above:
            send every (addr, bytes) of core.datagrams_to_send() as one UDP datagram
            carry every (addr, bytes) of core.syncs_to_send() on a reliable stream
            deliver every event of core.events_to_deliver()
            re-arm the single timer at core.get_timer() (None: no timer)

Datagrams fit one UDP packet (the core respects its configured budget).
Sync messages are full-state exchanges, larger, and belong on a reliable,
authenticated channel (QUIC in rpcnet).
"""

from __future__ import annotations

import abc
import enum
import random
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

if TYPE_CHECKING:
    from .events import ClusterEvent
    from .failure_detector import FailureDetector

__all__ = ["Address", "MemberState", "Member", "Membership"]

Address = tuple[str, int]


class MemberState(enum.Enum):
    """Where a member stands in the local node's view."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    #: Declared failed by the failure detector (memberlist's "dead").
    FAILED = "failed"
    #: Left gracefully; never reported as failed.
    LEFT = "left"


def _address(value: Any) -> Address:
    host, port = value
    return (str(host), int(port))


def _tags(value: Mapping[str, str] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


@attrs.frozen(kw_only=True)
class Member:
    """A snapshot of one member as seen by the local node."""

    id: str
    address: Address = attrs.field(converter=_address)
    tags: dict[str, str] = attrs.field(factory=dict, converter=_tags, hash=False)
    #: Only the member itself raises it (to refute a suspicion, change tags or leave).
    incarnation: int = 0
    state: MemberState = MemberState.ALIVE


class Membership(abc.ABC):
    """Strategy interface; register with ``rpcnet_register_membership``.

    Constructed as ``cls(node_id=..., address=..., tags=..., options=...,
    failure_detector=..., rng=...)``. See the module docstring for how a
    driver runs it.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type | None] = None

    def __init__(
        self,
        *,
        node_id: str,
        address: Address,
        tags: Mapping[str, str] | None = None,
        options: Any = None,
        failure_detector: FailureDetector | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.node_id = node_id
        self.address = _address(address)
        self.options = options
        self.failure_detector = failure_detector
        self.rng = rng if rng is not None else random.Random()

    # -- lifecycle ------------------------------------------------------

    @abc.abstractmethod
    def start(self, now: float) -> None:
        """Begin as a cluster of one; timers start running."""

    @abc.abstractmethod
    def join(self, seeds: Iterable[Address], now: float) -> None:
        """Queue a full-state sync with each seed address."""

    @abc.abstractmethod
    def leave(self, now: float) -> None:
        """Announce a graceful leave; keep running until :meth:`leave_done`."""

    @abc.abstractmethod
    def leave_done(self) -> bool:
        """True once the leave announcement has been handed out enough times."""

    @abc.abstractmethod
    def set_tags(self, tags: Mapping[str, str], now: float) -> None:
        """Replace the local node's tags and announce them."""

    # -- input ----------------------------------------------------------

    @abc.abstractmethod
    def receive(self, source: Address, data: bytes, now: float) -> None:
        """Feed one datagram; malformed input is counted and dropped."""

    @abc.abstractmethod
    def handle_timer(self, now: float) -> None:
        """Run everything due at or before ``now``."""

    @abc.abstractmethod
    def handle_sync_request(self, source: Address, data: bytes, now: float) -> bytes:
        """Merge a peer's full state and return ours as the reply."""

    @abc.abstractmethod
    def handle_sync_response(self, source: Address, data: bytes, now: float) -> None:
        """Merge the reply to a sync this core asked for."""

    @abc.abstractmethod
    def sync_failed(self, destination: Address, now: float) -> None:
        """The driver could not carry a sync to ``destination``."""

    # -- output ---------------------------------------------------------

    @abc.abstractmethod
    def get_timer(self) -> float | None:
        """The next deadline, or None when nothing is scheduled."""

    @abc.abstractmethod
    def datagrams_to_send(self) -> list[tuple[Address, bytes]]:
        """Take the queued datagrams (each one UDP packet)."""

    @abc.abstractmethod
    def syncs_to_send(self) -> list[tuple[Address, bytes]]:
        """Take the queued full-state sync requests."""

    @abc.abstractmethod
    def events_to_deliver(self) -> list[ClusterEvent]:
        """Take the events produced since the last call, in order."""

    # -- view -----------------------------------------------------------

    @abc.abstractmethod
    def members(self) -> list[Member]:
        """Every known member, the local node included, sorted by id."""

    @abc.abstractmethod
    def member(self, node_id: str) -> Member | None:
        """One member by id, or None."""

    @property
    @abc.abstractmethod
    def local_member(self) -> Member:
        """The local node as others should see it."""
