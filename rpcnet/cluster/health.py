"""Running health checks and publishing what they say.

:func:`run_checks` runs several checks at once under one time limit and folds
them into an aggregate: the worst status wins, and a check that raises or runs
out of time counts as unhealthy with that as its reason. :class:`HealthMonitor`
runs the checks every ``interval`` seconds and hands the aggregate to a
``publish`` callback whenever its status changes; the cluster node publishes
it in its gossip tags under :data:`~rpcnet.health.HEALTH_TAG`, so every
:class:`~rpcnet.cluster.workers.WorkerRegistry` stops choosing an unhealthy
worker and resumes when it recovers. :func:`register_health_service` answers
the same aggregate over RPC for external probes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from ..errors import ConfigError
from ..health import HEALTH_METHOD, HealthResult, HealthStatus, InvalidHealthResult, as_health_result
from ..rpc import RpcServer

__all__ = ["HealthMonitor", "aggregate", "run_checks", "register_health_service"]

log = logging.getLogger("rpcnet.health")


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


async def _run_one(check: Any, timeout: float) -> tuple[HealthResult, InvalidHealthResult | None]:
    """One check's result, and the error if what it returned was no verdict."""
    try:
        async with asyncio.timeout(timeout):
            if inspect.iscoroutinefunction(check.check):
                value = await check.check()
            else:
                value = await asyncio.to_thread(check.check)
                if inspect.isawaitable(value):
                    value = await value
    except TimeoutError:
        return HealthResult.unhealthy(f"timed out after {timeout:g} s"), None
    except Exception as exc:
        return HealthResult.unhealthy(f"raised {type(exc).__name__}: {exc}"), None
    try:
        return as_health_result(value), None
    except InvalidHealthResult as exc:
        return HealthResult.unhealthy(str(exc)), exc


async def _run_all(checks: Mapping[str, Any], timeout: float) -> tuple[HealthResult, dict[str, InvalidHealthResult]]:
    results = await asyncio.gather(*(_run_one(check, timeout) for check in checks.values()))
    invalid = {name: error for name, (_, error) in zip(checks, results, strict=True) if error is not None}
    return aggregate({name: result for name, (result, _) in zip(checks, results, strict=True)}), invalid


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
    result, _ = await _run_all(_named(checks), timeout)
    return result


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

    async def check_now(self, *, strict: bool = False) -> HealthResult:
        """Run one round now; publish if the status changed; return the aggregate.

        A check that returned no verdict (see :func:`~rpcnet.health.as_health_result`)
        counts as unhealthy and is logged at ERROR; with ``strict`` (the first
        round, from :meth:`start`) it raises :class:`~rpcnet.errors.ConfigError`
        instead, before anything is published.
        """
        result, invalid = await _run_all(self.checks, self.timeout)
        for name, error in invalid.items():
            if strict:
                raise ConfigError(
                    f"health check {name!r} {error}; fix the check (its first run is at start, so this node did not start)"
                )
            log.error("health check %r %s; counted as unhealthy", name, error)
        self.last = result
        if result.status is not self.published:
            previous, self.published = self.published, result.status
            level = logging.INFO if result.status is HealthStatus.HEALTHY else logging.WARNING
            log.log(
                level, "health %s -> %s: %s",
                previous.value if previous is not None else "(first check)", result.status.value, result.reason,
            )
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

        When it returns, :attr:`last` is set and the first status was
        published. A check whose first result is no verdict raises
        :class:`~rpcnet.errors.ConfigError` naming the check and the value.
        """
        if self._task is not None and not self._task.done():
            raise RuntimeError("this HealthMonitor is already running")
        await self.check_now(strict=True)
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
