"""The asyncio driver of a membership core.

:class:`MembershipDriver` runs one sans-IO :class:`~rpcnet.membership.Membership`
core on the event loop, as the interface prescribes (see
:mod:`rpcnet.membership`): it feeds datagrams, requests and the core's single
timer (one ``loop.call_at``) in, and after every input sends what the core
queued, hands its events to subscribers and ``on_event``, and re-arms the
timer. It knows nothing of sockets, RPC or sealing: datagrams go out through
``send_datagram`` and requests through the coroutine ``send_request``, both
given by whoever owns the IO (:class:`~rpcnet.cluster.Cluster`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..errors import RpcError, RpcnetError, StatusCode
from ..events import ClusterEvent
from ..membership import Membership
from ..transport import Address, format_address

__all__ = ["MembershipDriver", "Subscription"]

log = logging.getLogger("rpcnet.cluster")

SendDatagram = Callable[[Address, bytes], None]
SendRequest = Callable[[Address, bytes], Awaitable[bytes]]


class Subscription:
    """Cluster events as an async iterator; ``close()`` (or leaving an
    ``async with``) stops it. Events queue without bound: they are rare."""

    def __init__(self, release: Callable[[Subscription], None]) -> None:
        #: Called once by close(): whoever delivers events forgets this subscription.
        self._release = release
        self._queue: asyncio.Queue[ClusterEvent | None] = asyncio.Queue()
        self._closed = False

    def _put(self, event: ClusterEvent) -> None:
        if not self._closed:
            self._queue.put_nowait(event)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release(self)
            self._queue.put_nowait(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ClusterEvent:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event

    async def get(self, timeout: float | None = None) -> ClusterEvent:
        """The next event, waiting at most ``timeout`` seconds."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()


class MembershipDriver:
    """Runs ``core`` on the running event loop.

    ``send_datagram(address, data)`` sends one datagram (None: the core uses
    none; a queued datagram is then an error in the core, logged and
    dropped). ``send_request(address, data)`` carries one request and returns
    the reply, raising when it cannot. ``on_event(event)`` sees every event
    after the subscribers.
    """

    def __init__(
        self,
        core: Membership,
        *,
        send_request: SendRequest,
        send_datagram: SendDatagram | None = None,
        on_event: Callable[[ClusterEvent], Any] | None = None,
    ) -> None:
        self.core = core
        self._send_request = send_request
        self._send_datagram = send_datagram
        self._on_event = on_event
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._subscribers: set[Subscription] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._leave_done: asyncio.Event | None = None
        self._started = False
        self._closed = False

    # -- lifecycle ------------------------------------------------------

    def start(self) -> None:
        """Start the core now (call on the loop that will run it)."""
        if self._started:
            raise RuntimeError("this driver is already started")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self.core.start(self.now())
        self.pump()

    async def join(self, addresses: Iterable[Address]) -> None:
        """Have the core join through ``addresses`` and carry the requests
        that queues; returns once one was answered, or raises UNAVAILABLE
        naming every failure. A core that queues no request returns at once."""
        addresses = list(addresses)
        if not addresses:
            return
        self.core.join(addresses, self.now())
        pending = self.core.requests_to_send()
        results = await asyncio.gather(*(self.request(a, d) for a, d in pending), return_exceptions=True)
        self.pump()
        errors = [r for r in results if isinstance(r, BaseException)]
        if pending and len(errors) == len(pending):
            detail = "; ".join(f"{format_address(a)}: {e}" for (a, _), e in zip(pending, errors))
            # Every seed answered and refused us (another gossip key or cluster
            # label): trying again cannot help, unlike a seed not up yet.
            refused = all(isinstance(e, RpcError) and e.code is StatusCode.PERMISSION_DENIED for e in errors)
            code = StatusCode.PERMISSION_DENIED if refused else StatusCode.UNAVAILABLE
            raise RpcError(f"could not join through any seed: {detail}", code=code)

    async def leave(self, timeout: float = 5.0) -> bool:
        """Have the core leave and wait until it says the leave went out, at
        most ``timeout`` seconds; False if it did not in time."""
        self._leave_done = asyncio.Event()
        self.core.leave(self.now())
        self.pump()
        try:
            await asyncio.wait_for(self._leave_done.wait(), timeout)
        except TimeoutError:
            log.warning("leave was not fully announced within %s s", timeout)
            return False
        return True

    async def close(self) -> None:
        """Stop at once: no more timers, requests cancelled, subscriptions ended."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for subscription in list(self._subscribers):
            subscription.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(self) -> Subscription:
        """Events from now on, as an async iterator (also an async context manager)."""
        return self.adopt(Subscription(self._subscribers.discard))

    def adopt(self, subscription: Subscription) -> Subscription:
        """Deliver events to a subscription made elsewhere (before the driver existed)."""
        subscription._release = self._subscribers.discard
        if not subscription._closed:
            self._subscribers.add(subscription)
        return subscription

    def now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    @property
    def timer_deadline(self) -> float | None:
        """When the core's timer fires next (loop time), or None."""
        return self._timer_at

    # -- input ----------------------------------------------------------

    def receive(self, source: Address, data: bytes) -> None:
        """One datagram from ``source`` (the endpoint's callback)."""
        if self._closed or not self._started:
            return
        self.core.receive(source, data, self.now())
        self.pump()

    def handle_request(self, data: bytes) -> bytes:
        """A peer's request; the core's reply. ``source`` is None, as :mod:`rpcnet.membership` defines."""
        try:
            return self.core.handle_request(None, data, self.now())
        finally:
            self.pump()

    def changed(self) -> None:
        """Call after driving the core directly (``set_tags``): sends what it queued."""
        self.pump()

    async def request(self, address: Address, data: bytes) -> None:
        """Carry one request; the reply (or the failure) goes to the core. Raises on failure."""
        try:
            reply = await self._send_request(address, data)
        except asyncio.CancelledError:
            raise
        except Exception:
            if not self._closed:
                self.core.request_failed(address, self.now())
                self.pump()
            raise
        if not self._closed:
            self.core.handle_response(address, reply, self.now())
            self.pump()

    async def _request_in_background(self, address: Address, data: bytes) -> None:
        try:
            await self.request(address, data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("request to %s failed: %s", format_address(address), exc)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._closed:
            return
        self.core.handle_timer(self.now())
        self.pump()

    # -- output ---------------------------------------------------------

    def pump(self) -> None:
        """Send what the core queued, deliver its events, re-arm its timer."""
        if self._closed or not self._started:
            return
        core = self.core
        for address, data in core.datagrams_to_send():
            if self._send_datagram is None:
                log.error("membership core %r queued a datagram but uses_datagrams is false; dropped", core.name)
                continue
            try:
                self._send_datagram(address, data)
            except RpcnetError as exc:
                log.warning("gossip to %s not sent: %s", format_address(address), exc)
        for address, data in core.requests_to_send():
            self._spawn(self._request_in_background(address, data))
        for event in core.events_to_deliver():
            for subscription in list(self._subscribers):
                subscription._put(event)
            if self._on_event is not None:
                self._on_event(event)
        if self._leave_done is not None and not self._leave_done.is_set() and core.leave_done():
            self._leave_done.set()  # only once leave() was called
        deadline = core.get_timer()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_at = deadline
            if deadline is not None:
                assert self._loop is not None
                self._timer = self._loop.call_at(deadline, self._on_timer)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
