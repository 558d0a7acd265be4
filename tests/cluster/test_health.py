"""Running health checks: aggregation, time limits, the monitor and the health RPC."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading

import pytest

from rpcnet import RpcClient, RpcConfig, RpcServer
from rpcnet.cluster.health import HealthMonitor, register_health_service, run_checks
from rpcnet.errors import ConfigError
from rpcnet.health import HEALTH_METHOD, HealthCheck, HealthResult, HealthStatus, InvalidHealthResult, as_health_result

HEALTHY, DEGRADED, UNHEALTHY = HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY


class Fixed(HealthCheck):
    """A sync check whose answer the test sets."""

    def __init__(self, name: str, result: HealthResult | HealthStatus) -> None:
        super().__init__()
        self.name = name
        self.result = result
        self.closed = False

    def check(self):
        return self.result

    def close(self) -> None:
        self.closed = True


class AsyncFixed(Fixed):
    async def check(self):
        await asyncio.sleep(0)
        return self.result


class Raises(HealthCheck):
    name = "raises"

    def check(self):
        raise RuntimeError("disk gone")


class Hangs(HealthCheck):
    name = "hangs"

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def check(self):
        await self.release.wait()
        return HealthResult.healthy()


class BlocksThread(HealthCheck):
    name = "blocks"

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def check(self):
        self.release.wait(30)
        return HealthResult.healthy()


# -- run_checks ------------------------------------------------------------------------------


async def test_the_aggregate_is_the_worst_status_with_the_reasons_of_the_others():
    result = await run_checks(
        [
            Fixed("disk", HealthResult.healthy("plenty")),
            AsyncFixed("queue", HealthResult.degraded("queue 80% full")),
            Fixed("cache", HEALTHY),
        ],
        timeout=5,
    )
    assert result.status is DEGRADED
    assert result.reason == "queue degraded: queue 80% full"
    assert list(result.checks) == ["disk", "queue", "cache"]
    assert result.checks["cache"] == HealthResult(HEALTHY)

    worse = await run_checks([Fixed("a", HealthResult.degraded("d")), AsyncFixed("b", HealthResult.unhealthy("u"))], 5)
    assert (worse.status, worse.reason) == (UNHEALTHY, "a degraded: d; b unhealthy: u")


async def test_all_healthy_and_no_checks_are_healthy():
    assert (await run_checks([Fixed("a", HEALTHY), AsyncFixed("b", HEALTHY)], 5)).reason == "2 check(s) healthy"
    empty = await run_checks([], 5)
    assert (empty.status, empty.reason) == (HEALTHY, "no health checks configured")


async def test_a_check_that_raises_is_unhealthy_with_the_exception_as_reason():
    result = await run_checks([Raises(), Fixed("ok", HEALTHY)], timeout=5)
    assert result.status is UNHEALTHY
    assert result.checks["raises"].reason == "raised RuntimeError: disk gone"
    assert result.checks["ok"].status is HEALTHY


async def test_an_async_check_past_its_time_limit_is_unhealthy():
    hangs = Hangs()
    result = await run_checks([hangs, Fixed("ok", HEALTHY)], timeout=0.05)
    assert result.checks["hangs"] == HealthResult.unhealthy("timed out after 0.05 s")
    assert result.status is UNHEALTHY and "hangs unhealthy: timed out after 0.05 s" in result.reason


async def test_a_blocking_sync_check_past_its_time_limit_is_unhealthy_and_does_not_stall_the_loop():
    blocks = BlocksThread()
    try:
        result = await run_checks([blocks, AsyncFixed("async", HEALTHY)], timeout=0.05)
    finally:
        blocks.release.set()
    assert result.checks["blocks"] == HealthResult.unhealthy("timed out after 0.05 s")
    assert result.checks["async"].status is HEALTHY


async def test_a_check_returning_something_else_is_unhealthy():
    result = await run_checks([Fixed("odd", True)], timeout=5)  # type: ignore[arg-type]
    assert result.checks["odd"].status is UNHEALTHY
    assert "returned True (bool); a health check returns a HealthResult" in result.checks["odd"].reason


@pytest.mark.parametrize("value", ["healthy", "Degraded", " unhealthy ", HealthStatus.DEGRADED, HealthResult.healthy("ok")])
async def test_what_health_result_accepts_the_runner_accepts(value):
    """One definition: a status string is a verdict for HealthResult and for
    the runner alike (the runner used to drop a worker returning "healthy")."""
    expected = as_health_result(value)
    assert expected.status is HealthResult(expected.status).status
    if isinstance(value, str):
        assert HealthResult(value).status is expected.status
    result = await run_checks([Fixed("c", value)], timeout=5)  # type: ignore[arg-type]
    assert result.checks["c"].status is expected.status


@pytest.mark.parametrize("value", [None, True, 1, "fine", {"status": "healthy"}])
def test_anything_else_is_no_verdict_for_either(value):
    with pytest.raises(InvalidHealthResult, match="a health check returns a HealthResult, a HealthStatus or one of"):
        as_health_result(value)
    if isinstance(value, str):
        with pytest.raises(InvalidHealthResult):
            HealthResult(value)


async def test_an_invalid_first_result_fails_start_naming_the_check_and_the_value():
    published = []
    monitor = HealthMonitor([Fixed("good", HEALTHY), Fixed("bad", "fine")], interval=60, publish=published.append)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"health check 'bad' returned 'fine' \(str\).*did not start"):
        await monitor.start()
    assert published == [], "nothing was published"


async def test_later_invalid_results_are_logged_at_error_and_count_as_unhealthy(caplog):
    check = Fixed("flaky", HEALTHY)
    published = []
    monitor = HealthMonitor([check], interval=60, publish=published.append)
    with caplog.at_level(logging.INFO, logger="rpcnet.health"):
        await monitor.start()
        check.result = 42  # type: ignore[assignment]
        result = await monitor.check_now()
        check.result = "healthy"  # type: ignore[assignment]
        await monitor.check_now()
    await monitor.stop()
    assert result.status is UNHEALTHY
    assert [r.status for r in published] == [HEALTHY, UNHEALTHY, HEALTHY]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "'flaky' returned 42 (int)" in errors[0].getMessage()
    changes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("health ") and "->" in r.getMessage()]
    assert changes[0].startswith("health (first check) -> healthy")
    assert changes[1].startswith("health healthy -> unhealthy: flaky unhealthy: returned 42")
    assert changes[2].startswith("health unhealthy -> healthy")


async def test_checks_need_distinct_names_and_a_positive_timeout():
    with pytest.raises(ValueError, match="two health checks are named 'a'"):
        await run_checks([Fixed("a", HEALTHY), Fixed("a", HEALTHY)], 5)
    result = await run_checks({"a": Fixed("a", HEALTHY), "a-strict": Fixed("a", DEGRADED)}, 5)
    assert list(result.checks) == ["a", "a-strict"]
    with pytest.raises(ValueError, match="timeout must be > 0"):
        await run_checks([], 0)


# -- HealthMonitor ---------------------------------------------------------------------------------


class ManualSleep:
    """Stands in for asyncio.sleep: each round waits until the test lets it go."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.waiting = asyncio.Condition()
        self.gate: asyncio.Queue[None] = asyncio.Queue()

    async def __call__(self, delay: float) -> None:
        async with self.waiting:
            self.delays.append(delay)
            self.waiting.notify_all()
        await self.gate.get()

    async def rounds_done(self, n: int) -> None:
        """Wait (with a deadline) until the monitor has finished ``n`` rounds."""
        async with asyncio.timeout(5):
            async with self.waiting:
                await self.waiting.wait_for(lambda: len(self.delays) >= n)

    async def next_round(self) -> None:
        done = len(self.delays)
        self.gate.put_nowait(None)
        await self.rounds_done(done + 1)


async def test_the_monitor_publishes_the_first_result_and_then_only_status_changes():
    check = Fixed("app", HealthResult.healthy("fine"))
    published: list[HealthResult] = []
    sleep = ManualSleep()
    monitor = HealthMonitor([check], interval=7.0, timeout=1.0, publish=published.append, sleep=sleep)
    async with monitor:
        # start() returns after the first round, published.
        assert [p.status for p in published] == [HEALTHY]
        assert monitor.last == published[0]
        await sleep.rounds_done(1)
        await sleep.next_round()  # same status: nothing new
        assert len(published) == 1
        check.result = HealthResult.unhealthy("db unreachable")
        await sleep.next_round()
        assert [p.status for p in published] == [HEALTHY, UNHEALTHY]
        assert published[-1].reason == "app unhealthy: db unreachable"
        check.result = HealthResult.unhealthy("db unreachable for 10 s")  # reason only
        await sleep.next_round()
        assert len(published) == 2
        assert monitor.last is not None and monitor.last.reason == "app unhealthy: db unreachable for 10 s"
        check.result = HealthResult.healthy("fine again")
        await sleep.next_round()
        assert [p.status for p in published] == [HEALTHY, UNHEALTHY, HEALTHY]
    assert sleep.delays == [7.0] * 5
    assert check.closed


async def test_the_monitor_awaits_an_async_publish_and_survives_a_failing_one(caplog):
    calls: list[HealthStatus] = []

    async def publish(result: HealthResult) -> None:
        calls.append(result.status)
        if len(calls) == 1:
            raise ConnectionError("gossip not ready")

    check = AsyncFixed("app", HEALTHY)
    monitor = HealthMonitor([check], interval=1.0, publish=publish, sleep=ManualSleep())
    with caplog.at_level(logging.ERROR, logger="rpcnet.health"):
        await monitor.check_now()
    assert "publishing health status healthy failed" in caplog.text
    check.result = DEGRADED
    assert (await monitor.check_now()).status is DEGRADED
    assert calls == [HEALTHY, DEGRADED]


async def test_the_monitor_loop_checks_then_waits_until_stopped():
    check = Fixed("app", HEALTHY)
    sleep = ManualSleep()
    monitor = HealthMonitor([check], interval=3.0, sleep=sleep)
    task = asyncio.ensure_future(monitor.run())
    await sleep.rounds_done(1)
    await sleep.next_round()
    assert monitor.last is not None and monitor.last.status is HEALTHY
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sleep.delays == [3.0, 3.0]


async def test_a_running_monitor_cannot_be_started_twice():
    monitor = HealthMonitor([Fixed("app", HEALTHY)], interval=1.0, sleep=ManualSleep())
    async with monitor:
        with pytest.raises(RuntimeError, match="already running"):
            await monitor.start()


def test_monitor_settings_are_checked():
    with pytest.raises(ValueError, match="interval must be > 0"):
        HealthMonitor([], interval=0)
    with pytest.raises(ValueError, match="timeout must be > 0"):
        HealthMonitor([], timeout=-1)


# -- the health RPC ---------------------------------------------------------------------------------

_networks = itertools.count()


async def test_the_health_rpc_answers_the_aggregate():
    config = RpcConfig(transport="memory", options={"memory": {"network": f"health-{next(_networks)}"}})
    check = Fixed("app", HealthResult.degraded("warming up"))
    monitor = HealthMonitor([check, Fixed("disk", HEALTHY)], interval=1.0)
    server = RpcServer(config)
    register_health_service(server, monitor)
    address = await server.start(("server", 0))
    try:
        async with RpcClient(address, config) as client:
            answer = await client.call(HEALTH_METHOD, {})
            assert answer == {
                "status": "degraded",
                "reason": "app degraded: warming up",
                "checks": {
                    "app": {"status": "degraded", "reason": "warming up"},
                    "disk": {"status": "healthy", "reason": ""},
                },
            }
            check.result = HealthResult.unhealthy("out of memory")
            await monitor.check_now()
            answer = await client.call(HEALTH_METHOD, None)
            assert (answer["status"], answer["reason"]) == ("unhealthy", "app unhealthy: out of memory")
    finally:
        await server.stop()
