"""Workers: members picked out by their tags, with live call statistics.

:class:`WorkerRegistry` keeps a table of members from cluster events (no
polling) and picks one for each call with a load-balancing strategy chosen by
name. Which members are workers is a :class:`TagFilter` (default
``role=worker``); each worker carries a :class:`WorkerStats` that the caller
feeds (calls in flight, EWMA latency, recent errors) and that balancers read.

How the table follows membership:

================ ===========================================================
joined           added (or updated)
recovered        added (or updated); chosen again
tags-updated     tags replaced; may enter or leave a filter
suspect          kept, never chosen until it recovers
failed, left     removed, with its stats
================ ===========================================================

A member whose health tag (:data:`rpcnet.health.HEALTH_TAG`) says
``unhealthy`` is never chosen; one that says ``degraded`` is chosen only when
no healthy worker matches.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import random
import re
import time
import weakref
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, Protocol

import attrs

from ..balancing import LoadBalancer, WorkerView
from ..errors import ConfigError, RpcError, StatusCode, UnavailableError
from ..events import (
    ClusterEvent,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberRecovered,
    MemberSuspect,
    MemberTagsUpdated,
)
from ..health import HEALTH_TAG, HealthStatus, status_from_tags
from ..membership import Member, MemberState
from ..plugins import PluginHost, make_plugin_manager

__all__ = [
    "TagFilter",
    "TagFilterError",
    "WorkerStats",
    "WORKER_FAULT_CODES",
    "MemberSource",
    "WorkerEvent",
    "WorkerAdded",
    "WorkerRemoved",
    "WorkerSubscription",
    "WorkerRegistry",
    "NoWorkerError",
]


# -- tag filters -----------------------------------------------------------------


class TagFilterError(ConfigError):
    """A tag filter expression is malformed; the message says where and how to write it."""


_SYNTAX = "write comma-separated key=value terms, e.g. 'role=worker,zone=a', or '*' for every member"
_SPACE = re.compile(r"\s")


@attrs.frozen
class TagFilter:
    """Which members a caller wants: every ``key=value`` term must match a tag exactly.

    Syntax, as :meth:`parse` reads it: terms separated by commas, each
    ``key=value`` with exactly one ``=``; keys and values are compared
    case-sensitively as strings (``gpu=true`` matches the tag value
    ``"true"`` only). Whitespace around a term, a key or a value is ignored;
    whitespace inside a key or a value, an empty term, key or value, and one
    key given two different values are errors. The same term twice is
    allowed. ``*`` alone matches every member.
    """

    terms: tuple[tuple[str, str], ...] = ()

    ANY: ClassVar[TagFilter]

    @classmethod
    def parse(cls, text: str) -> TagFilter:
        if not isinstance(text, str):
            raise TagFilterError(f"a tag filter is a string such as 'role=worker', got {text!r}")
        stripped = text.strip()
        if stripped == "*":
            return cls()
        if not stripped:
            raise TagFilterError(f"empty tag filter {text!r}; {_SYNTAX}")
        terms: dict[str, str] = {}
        for raw in stripped.split(","):
            term = raw.strip()
            problem = None
            if not term:
                problem = "has an empty term (a stray comma?)"
            elif term.count("=") != 1:
                problem = f"term {term!r} " + ("has no '='" if "=" not in term else "has more than one '='")
            else:
                key, value = (part.strip() for part in term.split("="))
                if not key:
                    problem = f"term {term!r} has an empty key"
                elif not value:
                    problem = f"term {term!r} has an empty value"
                elif _SPACE.search(key) or _SPACE.search(value):
                    problem = f"term {term!r} has whitespace inside its key or value"
                elif key in terms and terms[key] != value:
                    problem = f"key {key!r} is given two values, {terms[key]!r} and {value!r} (no tag can hold both)"
            if problem:
                raise TagFilterError(f"invalid tag filter {text!r}: {problem}; {_SYNTAX}")
            terms[key] = value
        return cls(tuple(sorted(terms.items())))

    @classmethod
    def of(cls, value: str | TagFilter | Mapping[str, str]) -> TagFilter:
        """A filter from a string expression, a mapping of tags, or a filter."""
        if isinstance(value, TagFilter):
            return value
        if isinstance(value, Mapping):
            return cls.parse(",".join(f"{k}={v}" for k, v in value.items()) if value else "*")
        return cls.parse(value)

    def matches(self, tags: Mapping[str, str]) -> bool:
        return all(tags.get(key) == value for key, value in self.terms)

    def __str__(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.terms) or "*"


TagFilter.ANY = TagFilter()


# -- per-worker statistics ---------------------------------------------------------

#: Status codes that count against a worker: the server failed, not the request.
#: Codes such as NOT_FOUND or INVALID_ARGUMENT are answers, not failures.
WORKER_FAULT_CODES: frozenset[StatusCode] = frozenset(
    {
        StatusCode.UNKNOWN,
        StatusCode.DEADLINE_EXCEEDED,
        StatusCode.RESOURCE_EXHAUSTED,
        StatusCode.UNIMPLEMENTED,
        StatusCode.INTERNAL,
        StatusCode.UNAVAILABLE,
        StatusCode.DATA_LOSS,
    }
)


class WorkerStats:
    """Live call statistics for one worker, fed by the caller.

    - ``in_flight``: calls begun and not yet ended.
    - ``ewma_latency``: ``ewma += alpha * (latency - ewma)`` per finished call,
      seconds; the first sample sets it. A failed call only ever raises it: a
      fast failure says nothing about how fast the worker serves, a timeout
      says it is slow.
    - recent calls and errors: counted over the last ``window`` seconds of
      ``clock`` in ``buckets`` steps (so the window is exact to one step).

    Use :meth:`begin` and :meth:`end`, or ``with stats.track(): ...``.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        alpha: float = 0.3,
        window: float = 10.0,
        buckets: int = 10,
    ) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if window <= 0 or buckets < 1:
            raise ValueError(f"window must be > 0 s and buckets >= 1, got window={window}, buckets={buckets}")
        self._clock = clock
        self.alpha = alpha
        self.window = window
        self._buckets = buckets
        self._step = window / buckets
        self._in_flight = 0
        self._ewma: float | None = None
        # [bucket index, calls, errors], oldest first.
        self._counts: collections.deque[list[int]] = collections.deque()
        #: Called after every change; the registry uses it to refresh its cached view.
        self.on_change: Callable[[], None] | None = None

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def ewma_latency(self) -> float:
        return self._ewma or 0.0

    def begin(self) -> None:
        """A call to this worker starts."""
        self._in_flight += 1
        if self.on_change is not None:
            self.on_change()

    def end(self, ok: bool, latency: float | None = None) -> None:
        """The call :meth:`begin` counted finished; ``latency`` in seconds, None if unknown."""
        if self._in_flight <= 0:
            raise RuntimeError("WorkerStats.end() called without a matching begin()")
        self._in_flight -= 1
        if latency is not None and math.isfinite(latency) and latency >= 0:
            if self._ewma is None:
                self._ewma = latency
            elif ok or latency > self._ewma:
                self._ewma += self.alpha * (latency - self._ewma)
        bucket = self._bucket(self._clock())
        if not self._counts or self._counts[-1][0] != bucket:
            self._counts.append([bucket, 0, 0])
        self._counts[-1][1] += 1
        if not ok:
            self._counts[-1][2] += 1
        if self.on_change is not None:
            self.on_change()

    def abandon(self) -> None:
        """The call :meth:`begin` counted ended without a verdict (cancelled by the caller)."""
        if self._in_flight <= 0:
            raise RuntimeError("WorkerStats.abandon() called without a matching begin()")
        self._in_flight -= 1
        if self.on_change is not None:
            self.on_change()

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Count the block as one call: its duration is the latency.

        It fails the worker if it raises an :class:`~rpcnet.errors.RpcError`
        whose code is in :data:`WORKER_FAULT_CODES`, or any other exception;
        an ``RpcError`` with another code is an answer and counts as a
        success. Cancellation counts as neither.
        """
        start = self._clock()
        self.begin()
        try:
            yield
        except asyncio.CancelledError:
            self.abandon()
            raise
        except RpcError as exc:
            self.end(exc.code not in WORKER_FAULT_CODES, self._clock() - start)
            raise
        except BaseException:
            self.end(False, self._clock() - start)
            raise
        else:
            self.end(True, self._clock() - start)

    def recent(self) -> tuple[int, int]:
        """(calls, errors) finished in the window."""
        oldest = self._bucket(self._clock()) - self._buckets + 1
        while self._counts and self._counts[0][0] < oldest:
            self._counts.popleft()
        return sum(c[1] for c in self._counts), sum(c[2] for c in self._counts)

    @property
    def recent_calls(self) -> int:
        return self.recent()[0]

    @property
    def recent_errors(self) -> int:
        return self.recent()[1]

    @property
    def has_recent(self) -> bool:
        """Whether any call is counted in the window (so time alone can change the counts)."""
        return bool(self._counts)

    def _bucket(self, now: float) -> int:
        return math.floor(now / self._step)

    def __repr__(self) -> str:
        calls, errors = self.recent()
        return (
            f"WorkerStats(in_flight={self._in_flight}, ewma_latency={self.ewma_latency:.6f}, "
            f"recent_calls={calls}, recent_errors={errors})"
        )


# -- what the registry needs from the cluster --------------------------------------


class MemberSource(Protocol):
    """What :class:`WorkerRegistry` needs from the cluster facade, and nothing more.

    - ``members()``: a snapshot of every known member (any state).
    - ``subscribe()``: the cluster events from now on, in the order the node
      observes them, either as an async iterator or as an async context
      manager that yields one. The subscription must exist once ``subscribe()``
      returns (or once the context manager is entered), *before* the registry
      reads ``members()``, so no event between the snapshot and the first
      ``__anext__`` is lost. (An ``async def`` generator starts only at its
      first ``__anext__``; return a queue-backed iterator or a context manager
      instead.) Replaying an event the snapshot already reflects is harmless.
    """

    def members(self) -> list[Member]: ...

    def subscribe(self) -> AsyncIterator[ClusterEvent] | AbstractAsyncContextManager[AsyncIterator[ClusterEvent]]: ...


# -- worker events -------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class WorkerEvent:
    """A member entered or left the worker set a subscription watches."""

    worker: WorkerView
    #: What caused it: a cluster event kind ("joined", "failed", "tags-updated",
    #: ...), "snapshot" when the registry loaded the membership, or "existing"
    #: for the workers already known when the subscription began.
    reason: str


@attrs.frozen(kw_only=True)
class WorkerAdded(WorkerEvent):
    pass


@attrs.frozen(kw_only=True)
class WorkerRemoved(WorkerEvent):
    pass


class WorkerSubscription:
    """Worker events for one filter, queued until read; ends when the registry closes."""

    _END: ClassVar[object] = object()

    def __init__(self, registry: WorkerRegistry, tag_filter: TagFilter) -> None:
        self.filter = tag_filter
        self._registry = registry
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._closed = False

    def push(self, event: WorkerEvent) -> None:
        if not self._closed:
            self._queue.put_nowait(event)

    def end(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(self._END)

    def __aiter__(self) -> WorkerSubscription:
        return self

    async def __anext__(self) -> WorkerEvent:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is self._END:
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        self.end()
        self._registry._subscriptions.discard(self)

    async def __aenter__(self) -> WorkerSubscription:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()


# -- the registry -----------------------------------------------------------------


class NoWorkerError(UnavailableError):  # type: ignore[misc, valid-type]
    """No eligible worker matches the filter; ``filter`` says which."""

    def __init__(self, message: str, *, filter: TagFilter) -> None:
        super().__init__(message, details={"filter": str(filter)})
        self.filter = filter


@attrs.define(eq=False)
class _Entry:
    member: Member
    stats: WorkerStats
    suspect: bool
    health: HealthStatus
    #: The balancer's view, rebuilt only after the entry or its stats change.
    view: WorkerView | None = None


@attrs.define(eq=False)
class _Route:
    """Per filter: its balancer and the candidates as of table version ``version``."""

    balancer: LoadBalancer
    version: int = -1
    healthy: list[_Entry] = attrs.field(factory=list)
    degraded: list[_Entry] = attrs.field(factory=list)


_MAX_ROUTES = 256
#: Steps of each worker's error window.
_WINDOW_STEPS = 10


class WorkerRegistry:
    """Workers from cluster events, and a load balancer to pick among them.

    ``source`` is the cluster facade (see :class:`MemberSource`); pass None to
    drive the registry only through :meth:`apply`, as the simulator and tests
    do. ``strategy`` names a load balancer (``options`` are its options);
    ``filter`` is the default :class:`TagFilter`. ``rng`` seeds every balancer
    the registry builds (one per filter in use), ``clock`` and
    ``error_window`` feed each :class:`WorkerStats`.
    """

    def __init__(
        self,
        source: MemberSource | None,
        *,
        strategy: str = "round-robin",
        options: Mapping[str, Any] | None = None,
        filter: str | TagFilter | Mapping[str, str] = "role=worker",
        plugins: PluginHost | None = None,
        rng: random.Random | None = None,
        health_tag: str = HEALTH_TAG,
        clock: Callable[[], float] = time.monotonic,
        error_window: float = 10.0,
    ) -> None:
        self._source = source
        self.strategy = strategy
        self._options = dict(options or {})
        self.filter = TagFilter.of(filter)
        self._plugins = plugins if plugins is not None else make_plugin_manager()
        self._rng = rng if rng is not None else random.Random()
        self.health_tag = health_tag
        self._clock = clock
        self._error_window = error_window
        self._table: dict[str, _Entry] = {}
        self._version = 0
        self._routes: collections.OrderedDict[TagFilter, _Route] = collections.OrderedDict()
        self._parsed: dict[str, TagFilter] = {}
        self._subscriptions: weakref.WeakSet[WorkerSubscription] = weakref.WeakSet()
        self._task: asyncio.Task[None] | None = None
        self._dirty: set[str] = set()
        self._window_step = error_window / _WINDOW_STEPS
        self._window_bucket: int | None = None
        #: When the current step of the error window ends (views then age).
        self._window_ends = float("-inf")
        # Build the default route now: an unknown strategy fails here, not on the first call.
        self._route(self.filter)

    @classmethod
    def from_config(
        cls,
        source: MemberSource | None,
        config: Any,
        *,
        plugins: PluginHost | None = None,
        rng: random.Random | None = None,
        **kwargs: Any,
    ) -> WorkerRegistry:
        """A registry as ``[workers]`` says (:class:`rpcnet.cluster.settings.WorkersConfig`):
        its load balancer by name with its options, its tag filter and error window."""
        return cls(
            source,
            strategy=config.load_balancer,
            options=config.options.get(config.load_balancer),
            filter=config.filter,
            error_window=config.error_window,
            plugins=plugins,
            rng=rng,
            **kwargs,
        )

    # -- queries ------------------------------------------------------------

    def select_worker(
        self, filter: str | TagFilter | Mapping[str, str] | None = None, *, avoid: Collection[str] = ()
    ) -> WorkerView:
        """Pick a worker matching ``filter`` (default: the registry's).

        Only alive members that are not unhealthy are candidates; degraded
        ones only when no healthy one matches. Workers whose ids are in
        ``avoid`` (say, those a retry already tried) are left out unless no
        other candidate is left. Raises :class:`NoWorkerError` (an
        ``UnavailableError``) naming the filter when none is left.
        """
        tag_filter = self._filter(filter)
        route = self._route(tag_filter)
        if route.version != self._version:
            self._refresh(route, tag_filter)
        pool = route.healthy or route.degraded
        if not pool:
            raise self._no_worker(tag_filter)
        if avoid:
            pool = (
                [e for e in route.healthy if e.member.id not in avoid]
                or [e for e in route.degraded if e.member.id not in avoid]
                or pool
            )
        if self._dirty or self._clock() >= self._window_ends:
            self._refresh_views()
        views = [entry.view for entry in pool]
        chosen = route.balancer.select(views)
        if not any(chosen is view for view in views):
            raise RpcError(
                f"load balancer {self.strategy!r} returned {chosen!r}, which is not one of the workers it "
                "was given; a balancer must return an element of its input",
                code=StatusCode.INTERNAL,
            )
        return chosen

    def workers(self, filter: str | TagFilter | Mapping[str, str] | None = None) -> list[WorkerView]:
        """Alive workers matching ``filter`` that are not unhealthy (healthy and degraded), by id."""
        tag_filter = self._filter(filter)
        return [
            self._view(entry)
            for entry in self._sorted_entries()
            if not entry.suspect and entry.health is not HealthStatus.UNHEALTHY and tag_filter.matches(entry.member.tags)
        ]

    def member(self, node_id: str) -> Member | None:
        """The member as of the last event about it (alive or suspect), or None."""
        entry = self._table.get(node_id)
        return entry.member if entry is not None else None

    def stats(self, node_id: str) -> WorkerStats:
        """The live statistics of a known member (alive or suspect), to feed with each call."""
        try:
            return self._table[node_id].stats
        except KeyError:
            raise KeyError(
                f"no known member {node_id!r}; it failed, left or never joined "
                f"(known: {', '.join(sorted(self._table)) or 'none'})"
            ) from None

    def subscribe(
        self, filter: str | TagFilter | Mapping[str, str] | None = None, *, include_existing: bool = True
    ) -> WorkerSubscription:
        """Worker added/removed events for ``filter`` (default: the registry's).

        An async iterator (and async context manager) that starts with a
        :class:`WorkerAdded` (reason ``"existing"``) per worker already known
        when ``include_existing``, then follows the table: a member enters
        the set when it joins, recovers or takes matching tags, and leaves it
        when it fails, leaves or loses them. Suspect and unhealthy workers stay
        in the set (they are only not chosen). It ends when the registry closes.
        """
        subscription = WorkerSubscription(self, self._filter(filter))
        if include_existing:
            for entry in self._sorted_entries():
                if subscription.filter.matches(entry.member.tags):
                    subscription.push(WorkerAdded(worker=self._view(entry), reason="existing"))
        self._subscriptions.add(subscription)
        return subscription

    # -- input ----------------------------------------------------------------

    def apply(self, event: ClusterEvent) -> None:
        """Update the table from one cluster event (other kinds are ignored)."""
        if isinstance(event, (MemberJoined, MemberRecovered)):
            self._upsert(event.member, suspect=False, reason=event.kind)
        elif isinstance(event, MemberSuspect):
            self._upsert(event.member, suspect=True, reason=event.kind)
        elif isinstance(event, MemberTagsUpdated):
            known = self._table.get(event.member.id)
            suspect = known.suspect if known is not None else event.member.state is MemberState.SUSPECT
            self._upsert(event.member, suspect=suspect, reason=event.kind)
        elif isinstance(event, (MemberFailed, MemberLeft)):
            self._remove(event.member.id, reason=event.kind)

    def sync(self, members: list[Member] | None = None) -> None:
        """Replace the table with a membership snapshot (default: ``source.members()``)."""
        if members is None:
            if self._source is None:
                raise RuntimeError("this WorkerRegistry has no source; pass the members to sync()")
            members = self._source.members()
        present = set()
        for member in members:
            if member.state in (MemberState.ALIVE, MemberState.SUSPECT):
                present.add(member.id)
                self._upsert(member, suspect=member.state is MemberState.SUSPECT, reason="snapshot")
        for node_id in [n for n in self._table if n not in present]:
            self._remove(node_id, reason="snapshot")

    # -- lifecycle ---------------------------------------------------------------

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Subscribe to the source, load its snapshot, then apply its events until they end."""
        if self._source is None:
            raise RuntimeError("this WorkerRegistry has no source to follow; drive it with apply()")
        subscription = self._source.subscribe()
        if isinstance(subscription, AbstractAsyncContextManager):
            async with subscription as events:
                await self._follow(events, ready)
        else:
            try:
                await self._follow(subscription, ready)
            finally:
                aclose = getattr(subscription, "aclose", None)
                if aclose is not None:
                    await aclose()

    async def _follow(self, events: AsyncIterator[ClusterEvent], ready: asyncio.Event | None) -> None:
        self.sync()
        if ready is not None:
            ready.set()
        async for event in events:
            self.apply(event)

    async def start(self) -> None:
        """Follow the source in a task; return once its snapshot is loaded."""
        if self._task is not None and not self._task.done():
            raise RuntimeError("this WorkerRegistry is already running")
        ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self.run(ready), name="rpcnet-worker-registry")
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._task.done() and not ready.is_set():
            self._task.result()  # raise what stopped it

    async def close(self) -> None:
        """Stop following the source and end every subscription."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for subscription in list(self._subscriptions):
            subscription.end()

    async def __aenter__(self) -> WorkerRegistry:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    # -- internals ------------------------------------------------------------------

    def _filter(self, value: str | TagFilter | Mapping[str, str] | None) -> TagFilter:
        if value is None:
            return self.filter
        if isinstance(value, str):
            parsed = self._parsed.get(value)
            if parsed is None:
                parsed = TagFilter.parse(value)
                if len(self._parsed) >= 4 * _MAX_ROUTES:
                    self._parsed.clear()
                self._parsed[value] = parsed
            return parsed
        return TagFilter.of(value)

    def _route(self, tag_filter: TagFilter) -> _Route:
        route = self._routes.get(tag_filter)
        if route is None:
            balancer = self._plugins.create(
                "load-balancer", self.strategy, self._options, rng=random.Random(self._rng.getrandbits(64))
            )
            route = self._routes[tag_filter] = _Route(balancer)
            if len(self._routes) > _MAX_ROUTES:
                self._routes.popitem(last=False)
        else:
            self._routes.move_to_end(tag_filter)
        return route

    def _refresh(self, route: _Route, tag_filter: TagFilter) -> None:
        route.healthy, route.degraded = [], []
        for entry in self._sorted_entries():
            if entry.suspect or not tag_filter.matches(entry.member.tags):
                continue
            if entry.health is HealthStatus.HEALTHY:
                route.healthy.append(entry)
            elif entry.health is HealthStatus.DEGRADED:
                route.degraded.append(entry)
        route.version = self._version

    def _sorted_entries(self) -> list[_Entry]:
        return [self._table[n] for n in sorted(self._table)]

    def _refresh_views(self) -> None:
        # Views carry stats; rebuild those whose stats changed, and, when the
        # error window moved on, those whose counts time alone may change.
        bucket = math.floor(self._clock() / self._window_step)
        if bucket != self._window_bucket:
            self._window_bucket = bucket
            self._window_ends = (bucket + 1) * self._window_step
            self._dirty.update(n for n, e in self._table.items() if e.stats.has_recent)
        for node_id in self._dirty:
            entry = self._table.get(node_id)
            if entry is not None:
                entry.view = self._view(entry)
        self._dirty.clear()

    def _view(self, entry: _Entry) -> WorkerView:
        stats = entry.stats
        calls, errors = stats.recent()
        member = entry.member
        return WorkerView(
            node_id=member.id,
            address=member.address,
            tags=member.tags,
            in_flight=stats.in_flight,
            ewma_latency=stats.ewma_latency,
            recent_errors=errors,
            recent_calls=calls,
            health=entry.health,
        )

    def _no_worker(self, tag_filter: TagFilter) -> NoWorkerError:
        matching = [e for e in self._table.values() if tag_filter.matches(e.member.tags)]
        if not matching:
            detail = (
                f"none of the {len(self._table)} known member(s) has these tags; "
                "check the filter against the tags the workers advertise"
            )
        else:
            suspect = sum(e.suspect for e in matching)
            unhealthy = sum(not e.suspect and e.health is HealthStatus.UNHEALTHY for e in matching)
            detail = (
                f"{len(matching)} member(s) match but {suspect} are suspect and {unhealthy} report unhealthy; "
                "retry once they recover"
            )
        return NoWorkerError(f"no available worker matches tag filter '{tag_filter}': {detail}", filter=tag_filter)

    def _matching_subscriptions(self, entry: _Entry | None) -> set[WorkerSubscription]:
        if entry is None:
            return set()
        return {s for s in self._subscriptions if s.filter.matches(entry.member.tags)}

    def _upsert(self, member: Member, *, suspect: bool, reason: str) -> None:
        old = self._table.get(member.id)
        before = self._matching_subscriptions(old)
        old_view = self._view(old) if old is not None and before else None
        health = status_from_tags(member.tags, self.health_tag)
        if old is None:
            stats = WorkerStats(clock=self._clock, window=self._error_window, buckets=_WINDOW_STEPS)
            stats.on_change = lambda dirty=self._dirty, node_id=member.id: dirty.add(node_id)
            entry = self._table[member.id] = _Entry(member=member, stats=stats, suspect=suspect, health=health)
        else:
            entry = old
            entry.member, entry.suspect, entry.health = member, suspect, health
        entry.view = self._view(entry)
        self._version += 1
        after = self._matching_subscriptions(entry)
        if after - before:
            view = self._view(entry)
            for subscription in after - before:
                subscription.push(WorkerAdded(worker=view, reason=reason))
        for subscription in before - after:
            assert old_view is not None
            subscription.push(WorkerRemoved(worker=old_view, reason=reason))

    def _remove(self, node_id: str, *, reason: str) -> None:
        entry = self._table.pop(node_id, None)
        if entry is None:
            return
        entry.stats.on_change = None
        self._version += 1
        subscriptions = self._matching_subscriptions(entry)
        if subscriptions:
            view = self._view(entry)
            for subscription in subscriptions:
                subscription.push(WorkerRemoved(worker=view, reason=reason))
