"""Health checks: what a node says about itself, and how it says it.

A health check is a strategy (hook ``rpcnet_register_health_checks``) whose
``check()`` returns a :class:`HealthResult`: healthy, degraded or unhealthy,
with a reason. ``check()`` may be a plain function or a coroutine function.

:func:`run_checks` runs several at once under one time limit and folds them
into an aggregate: the worst status wins, and a check that raises or runs out
of time counts as unhealthy with that as its reason. :class:`HealthMonitor`
runs the checks every ``interval`` seconds and hands the aggregate to a
``publish`` callback whenever its status changes; the cluster facade publishes
it in the node's gossip tags under :data:`HEALTH_TAG`, so every
:class:`rpcnet.workers.WorkerRegistry` stops choosing an unhealthy worker and
resumes when it recovers. :func:`register_health_service` answers the same
aggregate over RPC for external probes.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from .config import non_negative, positive

if TYPE_CHECKING:
    from .rpc import RpcServer

__all__ = [
    "HEALTH_TAG",
    "HEALTH_METHOD",
    "HealthStatus",
    "HealthResult",
    "HealthCheck",
    "HealthMonitor",
    "EventLoopLag",
    "EventLoopLagOptions",
    "run_checks",
    "status_from_tags",
    "threshold_result",
    "register_health_service",
]

log = logging.getLogger(__name__)

#: The gossip tag a node publishes its aggregate status in ("healthy",
#: "degraded" or "unhealthy"). A member without it counts as healthy.
HEALTH_TAG = "rpcnet.health"
#: The unary method :func:`register_health_service` adds.
HEALTH_METHOD = "rpcnet.health/Check"


class HealthStatus(enum.Enum):
    """How a node rates itself; ordered from best to worst."""

    HEALTHY = "healthy"
    #: Still serving, but a registry prefers any healthy worker to it.
    DEGRADED = "degraded"
    #: A registry never chooses it.
    UNHEALTHY = "unhealthy"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @classmethod
    def worst(cls, statuses: Sequence[HealthStatus]) -> HealthStatus:
        """The most severe of ``statuses``; healthy when there are none."""
        return max(statuses, key=_SEVERITY.__getitem__, default=cls.HEALTHY)


_SEVERITY = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}


def _status(value: HealthStatus | str) -> HealthStatus:
    return value if isinstance(value, HealthStatus) else HealthStatus(value)


@attrs.frozen
class HealthResult:
    """One check's verdict, or the aggregate of several (then ``checks`` holds each one's)."""

    status: HealthStatus = attrs.field(converter=_status)
    reason: str = ""
    checks: Mapping[str, HealthResult] = attrs.field(factory=dict, kw_only=True, hash=False)

    @classmethod
    def healthy(cls, reason: str = "") -> HealthResult:
        return cls(HealthStatus.HEALTHY, reason)

    @classmethod
    def degraded(cls, reason: str) -> HealthResult:
        return cls(HealthStatus.DEGRADED, reason)

    @classmethod
    def unhealthy(cls, reason: str) -> HealthResult:
        return cls(HealthStatus.UNHEALTHY, reason)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the health RPC: status, reason and each check's."""
        out: dict[str, Any] = {"status": self.status.value, "reason": self.reason}
        if self.checks:
            out["checks"] = {name: result.to_dict() for name, result in self.checks.items()}
        return out


def threshold_result(what: str, value: float, *, warn: float, fail: float, unit: str = "") -> HealthResult:
    """Rate one measurement: unhealthy at or above ``fail``, degraded at or above ``warn``.

    The reason reads like ``"event loop lag 120 ms (warn at 100 ms)"``.
    """
    reason = f"{what} {value:.0f}{unit}"
    if value >= fail:
        return HealthResult.unhealthy(f"{reason} (fail at {fail:g}{unit})")
    if value >= warn:
        return HealthResult.degraded(f"{reason} (warn at {warn:g}{unit})")
    return HealthResult.healthy(reason)


def status_from_tags(tags: Mapping[str, str], tag: str = HEALTH_TAG) -> HealthStatus:
    """The status a member publishes in its tags.

    A member without the tag runs no checks and counts as healthy. A value
    this version does not know counts as degraded: such a worker is used only
    when nothing better matches, neither trusted nor dropped.
    """
    value = tags.get(tag)
    if value is None:
        return HealthStatus.HEALTHY
    try:
        return HealthStatus(value.strip().lower())
    except ValueError:
        return HealthStatus.DEGRADED


class HealthCheck(abc.ABC):
    """Strategy interface; register with ``rpcnet_register_health_checks``.

    Built as ``cls(options=<Options>)`` when the class declares ``Options``,
    else ``cls()``. ``check()`` returns a :class:`HealthResult` (or a bare
    :class:`HealthStatus`), directly or as a coroutine. A plain ``check()``
    runs in a worker thread, so a slow one cannot stall the event loop and its
    time limit holds; a coroutine runs on the loop and must not block it.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type | None] = None

    def __init__(self, options: Any = None) -> None:
        self.options = options

    @abc.abstractmethod
    def check(self) -> HealthResult | HealthStatus | Awaitable[HealthResult | HealthStatus]:
        """Rate this node now."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what the check holds (timers, handles); called when its monitor stops."""


def _named(checks: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
    if isinstance(checks, Mapping):
        return dict(checks)
    named: dict[str, Any] = {}
    for check in checks:
        name = getattr(check, "name", "") or type(check).__name__
        if name in named:
            raise ValueError(
                f"two health checks are named {name!r}; pass a mapping of distinct names to checks "
                "to run the same check twice"
            )
        named[name] = check
    return named


async def _run_one(check: Any, timeout: float) -> HealthResult:
    try:
        async with asyncio.timeout(timeout):
            if inspect.iscoroutinefunction(check.check):
                value = await check.check()
            else:
                value = await asyncio.to_thread(check.check)
                if inspect.isawaitable(value):
                    value = await value
    except TimeoutError:
        return HealthResult.unhealthy(f"timed out after {timeout:g} s")
    except Exception as exc:
        return HealthResult.unhealthy(f"raised {type(exc).__name__}: {exc}")
    if isinstance(value, HealthStatus):
        return HealthResult(value)
    if not isinstance(value, HealthResult):
        return HealthResult.unhealthy(f"returned {value!r}; a check must return a HealthResult or HealthStatus")
    return value


def aggregate(results: Mapping[str, HealthResult]) -> HealthResult:
    """Fold per-check results: the worst status, the reasons of every check not healthy."""
    if not results:
        return HealthResult.healthy("no health checks configured")
    status = HealthStatus.worst([r.status for r in results.values()])
    if status is HealthStatus.HEALTHY:
        reason = f"{len(results)} check(s) healthy"
    else:
        reason = "; ".join(
            f"{name} {r.status.value}: {r.reason}" if r.reason else f"{name} {r.status.value}"
            for name, r in results.items()
            if r.status is not HealthStatus.HEALTHY
        )
    return HealthResult(status, reason, checks=dict(results))


async def run_checks(checks: Mapping[str, Any] | Sequence[Any], timeout: float) -> HealthResult:
    """Run every check concurrently, each within ``timeout`` seconds, and aggregate.

    ``checks`` is a sequence of checks (keyed by their ``name``) or a mapping
    of name -> check. A check that raises, runs out of time or returns
    something else than a result counts as unhealthy with that as its reason.
    """
    if timeout <= 0:
        raise ValueError(f"health check timeout must be > 0 seconds, got {timeout}")
    named = _named(checks)
    results = await asyncio.gather(*(_run_one(check, timeout) for check in named.values()))
    return aggregate(dict(zip(named, results, strict=True)))


Publish = Callable[[HealthResult], Any]


class HealthMonitor:
    """Runs health checks periodically and publishes the aggregate when its status changes.

    Every ``interval`` seconds it runs :func:`run_checks`; the first result
    and every result whose *status* differs from the last published one go to
    ``publish`` (a function or coroutine function). Only the status travels in
    gossip, so a reason that changes while the status stays (a measured lag,
    say) does not republish; :attr:`last` always holds the newest result.
    ``sleep`` is injectable so tests drive the rounds themselves.
    """

    def __init__(
        self,
        checks: Mapping[str, Any] | Sequence[Any],
        *,
        interval: float = 5.0,
        timeout: float = 2.0,
        publish: Publish | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"health check interval must be > 0 seconds, got {interval}")
        if timeout <= 0:
            raise ValueError(f"health check timeout must be > 0 seconds, got {timeout}")
        self.checks = _named(checks)
        self.interval = interval
        self.timeout = timeout
        self._publish = publish
        self._sleep = sleep
        #: The newest aggregate, or None before the first round.
        self.last: HealthResult | None = None
        #: The status last handed to ``publish``.
        self.published: HealthStatus | None = None
        self._task: asyncio.Task[None] | None = None

    async def check_now(self) -> HealthResult:
        """Run one round now; publish if the status changed; return the aggregate."""
        result = await run_checks(self.checks, self.timeout)
        self.last = result
        if result.status is not self.published:
            self.published = result.status
            if self._publish is not None:
                try:
                    outcome = self._publish(result)
                    if inspect.isawaitable(outcome):
                        await outcome
                except Exception:
                    log.exception("publishing health status %s failed", result.status.value)
        return result

    async def run(self) -> None:
        """Check, then wait ``interval``, until cancelled."""
        while True:
            await self.check_now()
            await self._sleep(self.interval)

    async def _rounds_after_the_first(self) -> None:
        while True:
            await self._sleep(self.interval)
            await self.check_now()

    async def start(self) -> None:
        """Run the first round, then keep checking every ``interval`` in a task.

        When it returns, :attr:`last` is set and the first status was published.
        """
        if self._task is not None and not self._task.done():
            raise RuntimeError("this HealthMonitor is already running")
        await self.check_now()
        self._task = asyncio.get_running_loop().create_task(
            self._rounds_after_the_first(), name="rpcnet-health-monitor"
        )

    async def stop(self) -> None:
        """Stop the rounds and close every check."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        for check in self.checks.values():
            close = getattr(check, "close", None)
            if close is not None:
                close()

    async def __aenter__(self) -> HealthMonitor:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()


# -- the bundled check ---------------------------------------------------------


@attrs.frozen(kw_only=True)
class EventLoopLagOptions:
    #: Lag at or above which the node is degraded, milliseconds.
    warn_ms: float = attrs.field(default=100.0, converter=float, validator=non_negative)
    #: Lag at or above which the node is unhealthy, milliseconds.
    fail_ms: float = attrs.field(default=1000.0, converter=float, validator=non_negative)
    #: How often the lag is sampled between checks, milliseconds.
    sample_ms: float = attrs.field(default=50.0, converter=float, validator=positive)

    def __attrs_post_init__(self) -> None:
        if self.fail_ms < self.warn_ms:
            raise ValueError(f"fail_ms ({self.fail_ms}) must be >= warn_ms ({self.warn_ms})")


class EventLoopLag(HealthCheck):
    """``event-loop-lag``: how late the event loop runs timers.

    A timer re-armed every ``sample_ms`` records how late it fires; a check
    reports the worst lateness since the previous check (and at least how long
    a callback waits right now), then starts a new period. A loop blocked by a
    synchronous handler between two checks therefore shows up, even though
    the check itself only runs once the loop is free again.
    """

    name: ClassVar[str] = "event-loop-lag"
    Options: ClassVar[type] = EventLoopLagOptions

    def __init__(self, options: EventLoopLagOptions | None = None) -> None:
        super().__init__(options or EventLoopLagOptions())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._worst = 0.0

    def classify(self, lag_ms: float) -> HealthResult:
        return threshold_result(
            "event loop lag", lag_ms, warn=self.options.warn_ms, fail=self.options.fail_ms, unit=" ms"
        )

    def _arm(self) -> None:
        assert self._loop is not None
        due = self._loop.time() + self.options.sample_ms / 1000
        self._handle = self._loop.call_at(due, self._tick, due)

    def _tick(self, due: float) -> None:
        assert self._loop is not None
        self._worst = max(self._worst, self._loop.time() - due)
        self._arm()

    async def check(self) -> HealthResult:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self.close()
            self._loop = loop
            self._worst = 0.0
            self._arm()
        before = loop.time()
        # Two turns of the loop: in the first, timers that fell due while the
        # loop was blocked run after this task's own step, so their lateness
        # is recorded only by the second.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        lag = max(self._worst, loop.time() - before)
        self._worst = 0.0
        return self.classify(lag * 1000)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._loop = None


# -- the health RPC -------------------------------------------------------------


def register_health_service(server: RpcServer, monitor: HealthMonitor, *, method: str = HEALTH_METHOD) -> None:
    """Add the unary method ``rpcnet.health/Check`` to ``server``.

    It answers ``{"status": ..., "reason": ..., "checks": {name: {"status",
    "reason"}}}`` with the monitor's newest aggregate, running one round
    first if the monitor has none yet. The call itself succeeds whatever the
    status: a probe reads ``status``.
    """

    async def check(request: Any, ctx: Any) -> dict[str, Any]:
        result = monitor.last if monitor.last is not None else await monitor.check_now()
        answer = result.to_dict()
        answer.setdefault("checks", {})
        return answer

    server.register(method, check)
