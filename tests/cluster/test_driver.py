"""MembershipDriver on its own: a scripted core, fake IO, the real event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

import pytest

from rpcnet.cluster.driver import MembershipDriver
from rpcnet.errors import RpcError, UnavailableError
from rpcnet.events import ClusterEvent, MemberJoined
from rpcnet.membership import Address, Member, Membership

PEER: Address = ("10.0.0.2", 7000)


class Scripted(Membership):
    """Queues whatever the test tells it to; records every input."""

    name = "scripted"

    def __init__(self) -> None:
        super().__init__(node_id="me", address=("10.0.0.1", 7000))
        self.inputs: list[tuple] = []
        self.out: list[tuple[Address, bytes]] = []
        self.requests: list[tuple[Address, bytes]] = []
        self.events: list[ClusterEvent] = []
        self.timer: float | None = None
        self.left = False

    def start(self, now: float) -> None:
        self.inputs.append(("start",))

    def join(self, seeds: Iterable[Address], now: float) -> None:
        self.requests += [(seed, b"join") for seed in seeds]

    def leave(self, now: float) -> None:
        self.requests.append((PEER, b"bye"))

    def leave_done(self) -> bool:
        return self.left

    def set_tags(self, tags: Mapping[str, str], now: float) -> None: ...

    def receive(self, source: Address, data: bytes, now: float) -> None:
        self.inputs.append(("datagram", source, data))
        self.out.append((source, b"pong"))

    def handle_timer(self, now: float) -> None:
        self.inputs.append(("timer", now))
        self.timer = None
        self.events.append(MemberJoined(at=now, member=Member(id="x", address=PEER)))

    def handle_request(self, source: Address | None, data: bytes, now: float) -> bytes:
        self.inputs.append(("request", source, data))
        if data == b"bad":
            raise ValueError("bad request")
        return b"re:" + data

    def handle_response(self, destination: Address, data: bytes, now: float) -> None:
        self.inputs.append(("response", destination, data))
        if data == b"re:bye":
            self.left = True

    def request_failed(self, destination: Address, now: float) -> None:
        self.inputs.append(("failed", destination))

    def get_timer(self) -> float | None:
        return self.timer

    def datagrams_to_send(self) -> list[tuple[Address, bytes]]:
        out, self.out = self.out, []
        return out

    def requests_to_send(self) -> list[tuple[Address, bytes]]:
        out, self.requests = self.requests, []
        return out

    def events_to_deliver(self) -> list[ClusterEvent]:
        out, self.events = self.events, []
        return out

    def members(self) -> list[Member]:
        return [self.local_member]

    def member(self, node_id: str) -> Member | None:
        return None

    @property
    def local_member(self) -> Member:
        return Member(id="me", address=self.address)


class Peer:
    """A request channel that answers b're:' + data, or fails for addresses in ``down``."""

    def __init__(self) -> None:
        self.down: set[Address] = set()
        self.sent: list[tuple[Address, bytes]] = []

    async def __call__(self, address: Address, data: bytes) -> bytes:
        self.sent.append((address, data))
        if address in self.down:
            raise RpcError("unreachable", code=14)
        return b"re:" + data


async def test_datagrams_in_and_out() -> None:
    core, sent = Scripted(), []
    driver = MembershipDriver(core, send_request=Peer(), send_datagram=lambda a, d: sent.append((a, d)))
    driver.start()
    driver.receive(PEER, b"ping")
    assert core.inputs == [("start",), ("datagram", PEER, b"ping")]
    assert sent == [(PEER, b"pong")]


async def test_a_request_is_answered_with_source_none_and_a_failing_core_raises() -> None:
    core = Scripted()
    driver = MembershipDriver(core, send_request=Peer())
    driver.start()
    assert driver.handle_request(b"hi") == b"re:hi"
    assert core.inputs[-1] == ("request", None, b"hi"), "the driver does not know the requester's address"
    with pytest.raises(ValueError):
        driver.handle_request(b"bad")


async def test_the_timer_fires_at_the_core_deadline_and_events_reach_subscribers_and_the_hook() -> None:
    core, hooked = Scripted(), []
    driver = MembershipDriver(core, send_request=Peer(), on_event=hooked.append)
    driver.start()
    subscription = driver.subscribe()
    deadline = core.timer = driver.now() + 0.01
    driver.changed()
    assert driver.timer_deadline == deadline
    event = await subscription.get(5)
    assert event.kind == "joined" and hooked == [event]
    kind, fired_at = core.inputs[-1]
    assert kind == "timer" and fired_at >= deadline
    assert driver.timer_deadline is None
    subscription.close()
    assert [e async for e in subscription] == []


async def test_join_reports_replies_and_failures_to_the_core() -> None:
    core, peer = Scripted(), Peer()
    other: Address = ("10.0.0.3", 7000)
    peer.down.add(other)
    driver = MembershipDriver(core, send_request=peer)
    driver.start()
    await driver.join([PEER, other])
    assert ("response", PEER, b"re:join") in core.inputs and ("failed", other) in core.inputs
    peer.down.add(PEER)
    with pytest.raises(UnavailableError, match="could not join through any seed"):
        await driver.join([PEER])


async def test_leave_waits_for_the_core_to_say_it_is_done() -> None:
    core = Scripted()
    driver = MembershipDriver(core, send_request=Peer())
    driver.start()
    assert await driver.leave(timeout=5) is True
    assert ("response", PEER, b"re:bye") in core.inputs
    await driver.close()


async def test_after_close_nothing_reaches_the_core() -> None:
    core = Scripted()
    driver = MembershipDriver(core, send_request=Peer(), send_datagram=lambda a, d: None)
    driver.start()
    subscription = driver.subscribe()
    await driver.close()
    driver.receive(PEER, b"late")
    assert core.inputs == [("start",)]
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(subscription.__anext__(), 1)
