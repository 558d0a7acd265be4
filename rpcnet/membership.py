"""The membership strategy interface: a sans-IO core the driver runs.

A membership core is a synchronous state machine. It owns no socket, no clock
and no global randomness: every method that depends on time takes ``now``
(seconds, monotonic), randomness comes from an injected ``random.Random``,
and everything it wants sent is queued for the driver to collect. A driver
(:class:`rpcnet.cluster.Cluster` over UDP + QUIC, or
:class:`rpcnet.testing.Simulator`) runs it like this::

    core = build_core(registry, "swim", ...)   # the one factory, for both drivers
    core.start(now)
    core.join(seed_addresses, now)             # optional: first node has no seeds
    loop:
        on datagram (source, data):     core.receive(source, data, now)
        on timer:                       core.handle_timer(now)
        on request from a peer:         reply = core.handle_request(None, data, now)
        on the reply to our request:    core.handle_response(destination, reply, now)
        on our request failing:         core.request_failed(destination, now)
        after any of the above:
            send every (addr, bytes) of core.datagrams_to_send() as one datagram
            carry every (addr, bytes) of core.requests_to_send() as one request
            deliver every event of core.events_to_deliver()
            re-arm the single timer at core.get_timer() (None: no timer)

Two channels, two guarantees:

- **Datagrams** are small, unreliable and unordered (encrypted UDP in rpcnet).
  Each fits ``datagram_budget`` bytes, which the driver tells the core when it
  is built (the gossip socket's payload limit after sealing). A core that sets
  ``uses_datagrams = False`` gets ``datagram_budget=None``, never receives a
  datagram and must queue none: its driver opens no datagram socket and needs
  no gossip keys.
- **Requests** travel on a reliable, authenticated request/response channel
  (an RPC call over mutual-TLS QUIC in rpcnet): ``requests_to_send()`` yields
  ``(destination, bytes)``; the peer's core answers in ``handle_request`` and
  the answer comes back through ``handle_response(destination, ...)``, or the
  driver reports ``request_failed(destination, now)``. Requests are larger
  (full-state syncs, pings that loss must not defeat).

**Addresses.** A member's address is its *membership address*: where the
driver delivers that member's datagrams and requests. Drivers build the core
with the local node's membership address: its advertised gossip address when
``uses_datagrams`` is true, else the address of its request channel (the RPC
address in rpcnet). ``destination`` is always an address the core chose.

**``source``, defined once.** In ``receive`` it is the address the datagram
came from, as the network reports it (normally the sender's membership
address; behind NAT it may differ). In ``handle_request`` it is always
``None``: the reliable channel knows the requester only by its connection,
whose port is not the requester's membership address, so a core must name
the requester inside the request itself. The simulator passes exactly what
the production driver passes, so a core that passes there works in production.

The methods of 0.1 (``handle_sync_request``, ``handle_sync_response``,
``sync_failed``, ``syncs_to_send``) still work until 0.3: a subclass that
implements them gets the new names mapped onto them, with a
``DeprecationWarning``, and calling them on any core calls the new ones.
"""

from __future__ import annotations

import abc
import inspect
import random
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from .events import ClusterEvent
from .failure_detector import FailureDetector
from .members import Member, MemberState, freeze_tags
from .registry import StrategyRegistry, build_options
from .transport import Address

__all__ = ["Address", "MemberState", "Member", "Membership", "build_core", "freeze_tags"]

#: 0.1 method name -> the name that replaces it (the old one works until 0.3).
RENAMED_METHODS: dict[str, str] = {
    "handle_sync_request": "handle_request",
    "handle_sync_response": "handle_response",
    "sync_failed": "request_failed",
    "syncs_to_send": "requests_to_send",
}


def _address(value: Any) -> Address:
    host, port = value
    return (str(host), int(port))


class Membership(abc.ABC):
    """Strategy interface; register with ``rpcnet_register_membership``.

    Constructed by :func:`build_core` as ``cls(node_id=..., address=...,
    tags=..., options=..., failure_detector=..., rng=...,
    datagram_budget=...)``. See the module docstring for how a driver runs it.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type | None] = None
    #: False: the core never sends or receives datagrams; its driver opens no
    #: datagram socket, needs no gossip keys and passes ``datagram_budget=None``.
    uses_datagrams: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for old, new in RENAMED_METHODS.items():
            if old in cls.__dict__ and new not in cls.__dict__:
                warnings.warn(
                    f"{cls.__qualname__}.{old} is deprecated: rename it to {new} "
                    "(the 0.1 name is honoured until rpcnet 0.3)",
                    DeprecationWarning,
                    stacklevel=3,
                )
                setattr(cls, new, cls.__dict__[old])

    def __init__(
        self,
        *,
        node_id: str,
        address: Address,
        tags: Mapping[str, str] | None = None,
        options: Any = None,
        failure_detector: FailureDetector | None = None,
        rng: random.Random | None = None,
        datagram_budget: int | None = None,
    ) -> None:
        self.node_id = node_id
        self.address = _address(address)
        self.options = options
        self.failure_detector = failure_detector
        self.rng = rng if rng is not None else random.Random()
        #: Largest datagram payload the driver accepts; None: no datagrams (or no limit known).
        self.datagram_budget = datagram_budget

    # -- lifecycle ------------------------------------------------------

    @abc.abstractmethod
    def start(self, now: float) -> None:
        """Begin as a cluster of one; timers start running."""

    @abc.abstractmethod
    def join(self, seeds: Iterable[Address], now: float) -> None:
        """Contact each seed (a membership address) to learn the cluster."""

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
    def handle_request(self, source: Address | None, data: bytes, now: float) -> bytes:
        """Answer a peer's request; raise on malformed input. ``source`` is None (see the module docstring)."""

    @abc.abstractmethod
    def handle_response(self, destination: Address, data: bytes, now: float) -> None:
        """Take the reply to a request this core sent to ``destination``."""

    @abc.abstractmethod
    def request_failed(self, destination: Address, now: float) -> None:
        """The driver could not carry a request to ``destination`` (or get its reply)."""

    # -- output ---------------------------------------------------------

    @abc.abstractmethod
    def get_timer(self) -> float | None:
        """The next deadline, or None when nothing is scheduled."""

    @abc.abstractmethod
    def datagrams_to_send(self) -> list[tuple[Address, bytes]]:
        """Take the queued datagrams (each one within ``datagram_budget``)."""

    @abc.abstractmethod
    def requests_to_send(self) -> list[tuple[Address, bytes]]:
        """Take the queued requests for the reliable channel."""

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

    # -- 0.1 names (deprecated, removed in 0.3) ---------------------------

    def handle_sync_request(self, source: Address | None, data: bytes, now: float) -> bytes:
        """Deprecated alias of :meth:`handle_request`."""
        _deprecated_call("handle_sync_request")
        return self.handle_request(source, data, now)

    def handle_sync_response(self, source: Address, data: bytes, now: float) -> None:
        """Deprecated alias of :meth:`handle_response`."""
        _deprecated_call("handle_sync_response")
        self.handle_response(source, data, now)

    def sync_failed(self, destination: Address, now: float) -> None:
        """Deprecated alias of :meth:`request_failed`."""
        _deprecated_call("sync_failed")
        self.request_failed(destination, now)

    def syncs_to_send(self) -> list[tuple[Address, bytes]]:
        """Deprecated alias of :meth:`requests_to_send`."""
        _deprecated_call("syncs_to_send")
        return self.requests_to_send()


def _deprecated_call(old: str) -> None:
    warnings.warn(
        f"Membership.{old} is deprecated: call {RENAMED_METHODS[old]} (the 0.1 name works until rpcnet 0.3)",
        DeprecationWarning,
        stacklevel=3,
    )


def _accepts(cls: type, keyword: str) -> bool:
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return True
    return keyword in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def build_core(
    registry: Any,
    membership: str,
    options: Mapping[str, Any] | Any = None,
    *,
    node_id: str,
    address: Address,
    tags: Mapping[str, str] | None = None,
    failure_detector: str | None = None,
    detector_options: Mapping[str, Any] | Any = None,
    datagram_budget: int | None = None,
    rng: random.Random | None = None,
) -> Membership:
    """Build the membership core named ``membership``: the one factory every driver uses.

    ``registry`` is a :class:`~rpcnet.registry.StrategyRegistry` or anything
    with a ``registry`` attribute holding one (a
    :class:`~rpcnet.plugins.PluginHost`). ``options`` and ``detector_options``
    are the strategies' option tables (validated by their ``Options``
    classes) or ready ``Options`` instances. ``failure_detector`` None or
    ``"none"`` builds the core without one. ``address`` is the local
    membership address (see the module docstring); ``datagram_budget`` the
    largest datagram payload the driver carries, passed on only to cores that
    use datagrams (others get None).
    """
    table: StrategyRegistry = getattr(registry, "registry", registry)
    cls = table.get("membership", membership)
    detector = None
    if failure_detector and failure_detector != "none":
        detector = table.create("failure-detector", failure_detector, detector_options or {})
    built = build_options("membership", membership, cls, options if options is not None else {})
    kwargs: dict[str, Any] = dict(node_id=node_id, address=address, tags=dict(tags or {}), failure_detector=detector, rng=rng)
    if built is not None:
        kwargs["options"] = built
    budget = datagram_budget if getattr(cls, "uses_datagrams", True) else None
    if _accepts(cls, "datagram_budget"):
        kwargs["datagram_budget"] = budget
        return cls(**kwargs)
    warnings.warn(
        f"membership strategy {membership!r} ({cls.__qualname__}) does not accept datagram_budget; "
        "its constructor must take it from rpcnet 0.3 on",
        DeprecationWarning,
        stacklevel=2,
    )
    core = cls(**kwargs)
    core.datagram_budget = budget
    return core
