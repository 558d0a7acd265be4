"""Calling workers: selection, pooled connections, safe retries and failover.

:class:`ClusterClient` picks a worker through a :class:`~rpcnet.cluster.workers.WorkerRegistry`
(tag filter + load balancer), calls it over a pooled connection, feeds the
worker's live statistics, and on failure retries on another worker when that
is safe: the call never reached a handler, or the method is idempotent.
Retries back off with jitter, stop at a per-call attempt cap, stay inside the
call's deadline, and draw on a :class:`RetryBudget` so a dead worker cannot
multiply the load on the others.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Literal

import attrs

from ..config import RpcConfig, at_least, non_negative, positive
from ..deprecation import IndexedCounters
from ..errors import ConfigError, RpcError, StatusCode
from ..events import ClusterEvent, MemberEvent, MemberFailed, MemberLeft
from ..plugins import PluginHost, make_plugin_manager
from ..rpc import RpcClient
from ..transport import Address, parse_address
from .config import RPC_ADDRESS_TAG
from .workers import WORKER_FAULT_CODES, WorkerRegistry

__all__ = [
    "ClusterClient",
    "ClusterClientStats",
    "ConnectionPool",
    "PoolStats",
    "RetryPolicy",
    "RetryBudget",
    "WorkerResult",
]

log = logging.getLogger("rpcnet.cluster.client")

#: Codes an idempotent call may also retry on.
_IDEMPOTENT_CODES = frozenset({StatusCode.UNAVAILABLE, StatusCode.ABORTED, StatusCode.RESOURCE_EXHAUSTED, StatusCode.INTERNAL})


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How calls are retried (see :class:`ClusterClient`)."""

    #: Attempts per call, the first included.
    max_attempts: int = attrs.field(default=3, converter=int, validator=at_least(1))
    initial_backoff: float = attrs.field(default=0.01, converter=float, validator=non_negative)
    max_backoff: float = attrs.field(default=0.5, converter=float, validator=non_negative)
    multiplier: float = attrs.field(default=2.0, converter=float, validator=positive)
    #: Retries may add at most this fraction to the calls of the last ``budget_window`` seconds...
    budget_ratio: float = attrs.field(default=0.2, converter=float, validator=non_negative)
    #: ...plus this many retries per second regardless of traffic.
    budget_min_per_second: float = attrs.field(default=10.0, converter=float, validator=non_negative)
    budget_window: float = attrs.field(default=10.0, converter=float, validator=positive)
    #: An idempotent call with a deadline gives each attempt but the last
    #: this fraction of the time remaining; an attempt that runs out of it
    #: ejects its worker and is retried on another. A hung worker (frozen,
    #: overloaded, cut off by a silent network) then costs a retry, not the
    #: call. 1 gives every attempt the whole deadline.
    attempt_timeout_fraction: float = attrs.field(default=0.5, converter=float)

    @attempt_timeout_fraction.validator
    def _check_fraction(self, attribute: attrs.Attribute, value: float) -> None:
        if not 0 < value <= 1:
            raise ConfigError(
                f"attempt_timeout_fraction must be in (0, 1] (a share of the remaining deadline), got {value!r}; "
                "1 gives every attempt the whole deadline"
            )

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full-jitter backoff before retry number ``retry`` (1-based)."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        return rng.uniform(0, ceiling)


class RetryBudget:
    """Retries allowed = ratio x calls + min_per_second x window, over a sliding window."""

    #: Calls are counted per slice of the window (a tenth of it): memory stays
    #: bounded whatever the call rate, and the window slides a slice at a time.
    _SLICES = 10

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._slice = policy.budget_window / self._SLICES
        #: [slice number, calls in it], oldest first.
        self._calls: collections.deque[list[int]] = collections.deque()
        self._call_count = 0
        self._retries: collections.deque[float] = collections.deque()

    def _trim(self, now: float) -> None:
        horizon = now - self._policy.budget_window
        calls = self._calls
        oldest = int(horizon // self._slice)
        while calls and calls[0][0] < oldest:
            self._call_count -= calls.popleft()[1]
        while self._retries and self._retries[0] < horizon:
            self._retries.popleft()

    def record_call(self) -> None:
        number = int(self._clock() // self._slice)
        calls = self._calls
        if calls and calls[-1][0] == number:
            calls[-1][1] += 1
        else:
            calls.append([number, 1])
            if len(calls) > self._SLICES + 1:
                self._call_count -= calls.popleft()[1]
        self._call_count += 1

    def try_retry(self) -> bool:
        """Take one retry from the budget; False when it is spent."""
        now = self._clock()
        self._trim(now)
        policy = self._policy
        allowed = policy.budget_ratio * self._call_count + policy.budget_min_per_second * policy.budget_window
        if len(self._retries) + 1 > allowed:
            return False
        self._retries.append(now)
        return True

    @property
    def retries_in_window(self) -> int:
        self._trim(self._clock())
        return len(self._retries)


@attrs.define(eq=False)
class _Pooled:
    client: Any
    address: Address
    incarnation: int | None
    last_used: float


EvictionReason = Literal["failed", "restart", "idle", "error", "full", "closed"]


@attrs.frozen(kw_only=True)
class PoolStats(IndexedCounters):
    """What a :class:`ConnectionPool` has done, as of one moment (a snapshot)."""

    created: int = 0
    reused: int = 0
    #: Evictions by reason: the member failed or left, restarted (new address
    #: or incarnation), sat idle, failed a call, made room, or the pool closed.
    evicted_failed: int = 0
    evicted_restart: int = 0
    evicted_idle: int = 0
    evicted_error: int = 0
    evicted_full: int = 0
    evicted_closed: int = 0


@attrs.frozen(kw_only=True)
class ClusterClientStats(IndexedCounters):
    """What a :class:`ClusterClient` has done, as of one moment (a snapshot)."""

    calls: int = 0
    retries: int = 0
    failovers: int = 0
    budget_exhausted: int = 0
    ejections: int = 0
    #: Attempts that ran out of their share of the deadline (attempt_timeout_fraction).
    attempt_timeouts: int = 0


class ConnectionPool:
    """One multiplexed connection per peer, bounded in total, evicted when idle,
    when the peer fails or leaves, when its incarnation changes (a restart),
    or after a transport error."""

    def __init__(
        self,
        config: RpcConfig,
        plugins: PluginHost,
        *,
        max_connections: int = 256,
        idle_timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_connections < 1:
            raise ConfigError(f"max_connections must be >= 1, got {max_connections}")
        self.config = config
        self.plugins = plugins
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._entries: collections.OrderedDict[str, _Pooled] = collections.OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._counts: collections.Counter[str] = collections.Counter()
        #: Idle connections are looked for at most this often, not on every call.
        self._idle_check_every = min(1.0, idle_timeout / 10) if idle_timeout > 0 else 0.0
        self._next_idle_check = float("-inf")

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._entries

    def get(self, node_id: str, address: Address, incarnation: int | None = None) -> Any:
        """The client for ``node_id`` at ``address``; a new one if the address
        or incarnation changed."""
        now = self._clock()
        if now >= self._next_idle_check:
            self._next_idle_check = now + self._idle_check_every
            self.evict_idle(now)
        entry = self._entries.get(node_id)
        if entry is not None:
            if entry.address != address or (incarnation is not None and entry.incarnation is not None and entry.incarnation != incarnation):
                self.evict(node_id, "restart")
            else:
                entry.last_used = now
                if len(self._entries) > 1:
                    self._entries.move_to_end(node_id)
                self._counts["reused"] += 1
                return entry.client
        while len(self._entries) >= self.max_connections:
            oldest = next(iter(self._entries))
            self.evict(oldest, "full")
        client = RpcClient(address, self.config, plugins=self.plugins, server_name=address[0])
        self._entries[node_id] = _Pooled(client, address, incarnation, now)
        self._counts["created"] += 1
        return client

    @property
    def stats(self) -> PoolStats:
        """Counters as of now; a frozen snapshot."""
        return PoolStats(**self._counts)

    def evict(self, node_id: str, reason: EvictionReason) -> bool:
        entry = self._entries.pop(node_id, None)
        if entry is None:
            return False
        self._counts[f"evicted_{reason}"] += 1
        try:
            task = asyncio.get_running_loop().create_task(entry.client.close())
        except RuntimeError:  # no loop: nothing can be open
            return True
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return True

    def evict_idle(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        for node_id, entry in list(self._entries.items()):
            if now - entry.last_used >= self.idle_timeout:
                self.evict(node_id, "idle")

    def on_event(self, event: ClusterEvent) -> None:
        """Follow membership: failed/left peers and restarted ones lose their connection."""
        if not isinstance(event, MemberEvent):
            return
        member = event.member
        if isinstance(event, (MemberFailed, MemberLeft)):
            self.evict(member.id, "failed")
            return
        entry = self._entries.get(member.id)
        if entry is not None and entry.incarnation is not None and member.incarnation != entry.incarnation:
            rpc = member.tags.get(RPC_ADDRESS_TAG)
            if rpc is None or parse_address(rpc) != entry.address or member.incarnation > entry.incarnation:
                # Tag changes also raise the incarnation; keep the connection then.
                if rpc is not None and parse_address(rpc) == entry.address and event.kind == "tags-updated":
                    entry.incarnation = member.incarnation
                else:
                    self.evict(member.id, "restart")

    async def close(self) -> None:
        for node_id in list(self._entries):
            self.evict(node_id, "closed")
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


@attrs.frozen
class WorkerResult:
    """One worker's answer in :meth:`ClusterClient.call_all_workers`."""

    node_id: str
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class ClusterClient:
    """Call any worker matching a tag filter, with load balancing and failover.

    ``registry`` decides who is eligible and which one to pick; ``cluster``
    (optional) lets the pool follow membership events and incarnations.
    Methods listed in ``idempotent`` (or calls with ``idempotent=True``) are
    retried after errors that may have happened after sending; others only
    when the call never reached a handler.
    """

    def __init__(
        self,
        registry: WorkerRegistry,
        config: RpcConfig | None = None,
        *,
        cluster: Any = None,
        plugins: PluginHost | None = None,
        retry: RetryPolicy | None = None,
        idempotent: Iterable[str] = (),
        max_connections: int = 256,
        idle_timeout: float = 60.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.config = config or RpcConfig()
        self.cluster = cluster
        self.plugins = plugins or make_plugin_manager(disabled=self.config.disabled_plugins)
        self.retry = retry or RetryPolicy()
        self.idempotent = set(idempotent)
        self.pool = ConnectionPool(self.config, self.plugins, max_connections=max_connections, idle_timeout=idle_timeout, clock=clock)
        self.budget = RetryBudget(self.retry, clock)
        self._rng = rng or random.Random()
        self._clock = clock
        self._follower: asyncio.Task[None] | None = None
        #: node id -> (ejected until, ejection length): workers that just
        #: proved unreachable are skipped locally until membership catches up.
        self._ejected: dict[str, tuple[float, float]] = {}
        #: node id -> (its RPC tag, parsed): parsed once per value, not per call.
        self._addresses: dict[str, tuple[str, Address]] = {}
        self._counts: collections.Counter[str] = collections.Counter()

    @property
    def stats(self) -> ClusterClientStats:
        """Counters as of now; a frozen snapshot."""
        return ClusterClientStats(**self._counts)

    async def start(self) -> None:
        """Follow the cluster's events (pool eviction). Optional without a cluster."""
        if self.cluster is not None and self._follower is None:
            subscription = self.cluster.subscribe()

            async def follow() -> None:
                async for event in subscription:
                    self.pool.on_event(event)
                    if event.kind in ("joined", "recovered"):
                        self._ejected.pop(event.member.id, None)

            self._follower = asyncio.get_running_loop().create_task(follow())

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None
        await self.pool.close()

    async def __aenter__(self) -> ClusterClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    # -- choosing and connecting ------------------------------------------------

    def _client_for(self, worker: Any) -> Any:
        node_id = worker.node_id
        rpc = worker.tags.get(RPC_ADDRESS_TAG)
        if not rpc:
            raise RpcError(f"worker {node_id!r} advertises no RPC address (tag {RPC_ADDRESS_TAG!r})", code=StatusCode.UNAVAILABLE)
        known = self._addresses.get(node_id)
        if known is None or known[0] != rpc:
            known = self._addresses[node_id] = (rpc, parse_address(rpc))
        incarnation = None
        if self.cluster is not None:
            # The registry holds the member as of the last event about it;
            # asking the cluster would copy the member out of the core per call.
            member = self.registry.member(node_id) if hasattr(self.registry, "member") else self.cluster.member(node_id)
            incarnation = member.incarnation if member is not None else None
        return self.pool.get(node_id, known[1], incarnation)

    def eject(self, node_id: str) -> None:
        """Skip ``node_id`` for a while (1 s, doubling up to 30 s while it keeps failing)."""
        now = self._clock()
        previous = self._ejected.get(node_id)
        length = 1.0 if previous is None else min(30.0, previous[1] * 2)
        self._ejected[node_id] = (now + length, length)
        self._counts["ejections"] += 1

    def _ejected_now(self) -> set[str]:
        if not self._ejected:
            return set()
        now = self._clock()
        return {node_id for node_id, (until, _) in self._ejected.items() if until > now}

    def _select(self, filter: Any, tried: set[str]) -> Any:
        # Workers this call already tried, and those ejected as unreachable,
        # are avoided unless nobody else is left.
        if not self._ejected:
            return self.registry.select_worker(filter, avoid=tried)
        return self.registry.select_worker(filter, avoid=tried | self._ejected_now())

    def _retryable(self, error: BaseException, method: str, idempotent: bool | None) -> bool:
        if not isinstance(error, RpcError):
            return False
        if error.not_sent:
            return True
        if idempotent if idempotent is not None else method in self.idempotent:
            return error.code in _IDEMPOTENT_CODES
        return False

    def _attempt_timeout(self, remaining: float | None, attempt: int, method: str, idempotent: bool | None) -> float | None:
        """The time this attempt gets: a share of ``remaining`` when another
        attempt could follow it (idempotent calls only), else all of it."""
        fraction = self.retry.attempt_timeout_fraction
        if remaining is None or fraction >= 1 or attempt >= self.retry.max_attempts:
            return remaining
        if not (idempotent if idempotent is not None else method in self.idempotent):
            return remaining
        return remaining * fraction

    async def _attempts(self, method: str, filter: Any, timeout: float | None, idempotent: bool | None, run: Callable[[Any, float | None], Any]) -> Any:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        tried: set[str] = set()
        self._counts["calls"] += 1
        self.budget.record_call()
        attempt = 0
        while True:
            attempt += 1
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise RpcError(f"deadline exceeded after {attempt - 1} attempt(s) of {method!r}", code=StatusCode.DEADLINE_EXCEEDED)
            worker = self._select(filter, tried)
            stats = self.registry.stats(worker.node_id)
            budget = self._attempt_timeout(remaining, attempt, method, idempotent)
            try:
                client = self._client_for(worker)
                # WorkerStats.track(), inlined: this runs once per call.
                started = self._clock()
                stats.begin()
                try:
                    result = await run(client, budget)
                except asyncio.CancelledError:
                    stats.abandon()
                    raise
                except RpcError as exc:
                    stats.end(exc.code not in WORKER_FAULT_CODES, self._clock() - started)
                    raise
                except BaseException:
                    stats.end(False, self._clock() - started)
                    raise
                stats.end(True, self._clock() - started)
                if self._ejected:
                    self._ejected.pop(worker.node_id, None)
                return result
            except RpcError as error:
                tried.add(worker.node_id)
                # Out of its share while the call still has time: the worker
                # is hung or far behind. Skip it, and retry elsewhere.
                timed_out = budget != remaining and error.code is StatusCode.DEADLINE_EXCEEDED
                if error.code is StatusCode.UNAVAILABLE:
                    self.pool.evict(worker.node_id, "error")
                    self.eject(worker.node_id)
                elif timed_out:
                    self._counts["attempt_timeouts"] += 1
                    self.eject(worker.node_id)
                if attempt >= self.retry.max_attempts or not (timed_out or self._retryable(error, method, idempotent)):
                    raise
                if not self.budget.try_retry():
                    self._counts["budget_exhausted"] += 1
                    raise
                self._counts["retries"] += 1
                self._counts["failovers"] += 1
                delay = self.retry.backoff(attempt, self._rng)
                if deadline is not None:
                    delay = min(delay, max(0.0, deadline - loop.time()))
                log.debug("retrying %s on another worker after %s from %s", method, error.code.name, worker.node_id)
                if delay > 0:
                    await asyncio.sleep(delay)

    # -- calls ---------------------------------------------------------------------

    async def call_worker(
        self,
        method: str,
        request: Any = None,
        filter: Any = None,
        *,
        timeout: float | None = None,
        metadata: dict[str, Any] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Unary call on a worker matching ``filter`` (default: the registry's)."""

        async def run(client: Any, remaining: float | None) -> Any:
            return await client.call(method, request, timeout=remaining, metadata=metadata)

        return await self._attempts(method, filter, timeout, idempotent, run)

    async def call_worker_client_streaming(
        self, method: str, requests: Iterable[Any], filter: Any = None, *, timeout: float | None = None,
        metadata: dict[str, Any] | None = None, idempotent: bool | None = None,
    ) -> Any:
        """Client streaming; ``requests`` must be re-iterable (a list) to be retried."""
        items = list(requests)

        async def run(client: Any, remaining: float | None) -> Any:
            return await client.call_client_streaming(method, items, timeout=remaining, metadata=metadata)

        return await self._attempts(method, filter, timeout, idempotent, run)

    async def call_worker_server_streaming(
        self, method: str, request: Any = None, filter: Any = None, *, timeout: float | None = None,
        metadata: dict[str, Any] | None = None, idempotent: bool | None = None,
    ) -> AsyncIterator[Any]:
        """Server streaming. Fails over only before the first response arrived."""
        started: list[Any] = []

        async def run(client: Any, remaining: float | None) -> Any:
            stream = client.call_server_streaming(method, request, timeout=remaining, metadata=metadata)
            first = await stream.read()
            started.append(stream)
            return first

        try:
            first = await self._attempts(method, filter, timeout, idempotent, run)
        except EOFError:
            return
        yield first
        async for item in started[-1]:
            yield item

    async def call_all_workers(
        self, method: str, request: Any = None, filter: Any = None, *, timeout: float | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> list[WorkerResult]:
        """Call every eligible worker at once; one :class:`WorkerResult` each, by node id."""
        workers = self.registry.workers(filter)

        async def one(worker: Any) -> WorkerResult:
            stats = self.registry.stats(worker.node_id)
            try:
                client = self._client_for(worker)
                with stats.track():
                    value = await client.call(method, request, timeout=timeout, metadata=metadata)
            except Exception as error:
                return WorkerResult(worker.node_id, error=error)
            return WorkerResult(worker.node_id, value=value)

        return list(await asyncio.gather(*(one(w) for w in workers)))

    def service_channel(self) -> Any:
        """The channel typed proxies use: ``Calculator.client(cluster_client, filter=...)``
        (see :mod:`rpcnet.cluster.services`)."""
        from .services import WorkerChannel

        return WorkerChannel(self)
