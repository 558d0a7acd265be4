"""rpcnet.testing.strategies: the helpers plugin authors test health checks and balancers with."""

from __future__ import annotations

import asyncio
import random
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from rpcnet import hookimpl
from rpcnet.balancing import LoadBalancer, WorkerView
from rpcnet.health import HealthCheck, HealthResult, HealthStatus
from rpcnet.testing.strategies import (
    BalancerContractError,
    HealthCheckContractError,
    LocalCluster,
    SimulatedWorker,
    exercise_balancer,
    run_health_check,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "cluster"))
import drain_check  # noqa: E402  (the example health check of docs/plugins.md)


class Returns(HealthCheck):
    name: ClassVar[str] = "returns"

    def __init__(self, value: object) -> None:
        super().__init__()
        self.value = value
        self.closed = False

    def check(self) -> object:
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value

    def close(self) -> None:
        self.closed = True


class Slow(HealthCheck):
    name: ClassVar[str] = "slow"

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def check(self) -> HealthResult:
        self.release.wait(10)
        return HealthResult.healthy()


class AsyncCheck(HealthCheck):
    name: ClassVar[str] = "async-check"

    async def check(self) -> HealthStatus:
        await asyncio.sleep(0)
        return HealthStatus.DEGRADED


async def test_a_check_by_name_with_its_options(tmp_path: Path) -> None:
    flag = tmp_path / "drain"
    options = {"path": str(flag)}
    result = await run_health_check("drain-file", options, plugins=[drain_check.plugin])
    assert result == HealthResult.healthy(f"{flag} absent")
    flag.touch()
    result = await run_health_check("drain-file", options, plugins=[drain_check.plugin], rounds=3)
    assert result == HealthResult.unhealthy(f"drained: {flag} exists")


async def test_a_bare_status_a_status_string_and_a_coroutine_are_fine() -> None:
    assert await run_health_check(AsyncCheck()) == HealthResult(HealthStatus.DEGRADED)
    assert await run_health_check(Returns(" Unhealthy ")) == HealthResult(HealthStatus.UNHEALTHY)
    check = Returns(HealthStatus.HEALTHY)
    assert await run_health_check(check) == HealthResult(HealthStatus.HEALTHY)
    assert check.closed


@pytest.mark.parametrize(
    "value, message",
    [
        ("ok", "health check 'returns' returned 'ok' (str); a health check returns a HealthResult, a HealthStatus "
               "or one of the strings 'healthy', 'degraded', 'unhealthy' (round 1)"),
        (None, "health check 'returns' returned None (NoneType)"),
        (RuntimeError("disk gone"), "health check 'returns' raised RuntimeError: disk gone (round 1); return HealthResult.unhealthy(reason) instead"),
    ],
    ids=["string", "none", "raises"],
)
async def test_a_check_that_breaks_the_contract_is_named(value: object, message: str) -> None:
    check = Returns(value)
    with pytest.raises(HealthCheckContractError) as info:
        await run_health_check(check)
    assert str(info.value).startswith(message)
    assert check.closed, "close() runs even when the check failed"


async def test_a_check_over_its_time_limit_fails() -> None:
    check = Slow()
    try:
        with pytest.raises(HealthCheckContractError, match="took longer than its 0.05 s limit"):
            await run_health_check(check, timeout=0.05)
    finally:
        check.release.set()


async def test_a_drained_worker_leaves_rotation_in_a_local_cluster_and_comes_back(tmp_path: Path) -> None:
    flag = tmp_path / "drain"
    async with LocalCluster(workers=2, health_checks=["drain-file"], options={"drain-file": {"path": str(flag)}},
                            plugins=[drain_check.plugin], health_interval=0.05) as cluster:
        await cluster.wait_for_rotation({"worker-0", "worker-1"})
        flag.touch()  # both workers read the same file here
        await cluster.wait_for_health("worker-0", "unhealthy")
        await cluster.wait_for_rotation(set())
        flag.unlink()
        await cluster.wait_for_health("worker-1", HealthStatus.HEALTHY)
        await cluster.wait_for_rotation({"worker-0", "worker-1"})
        assert cluster.select() in {"worker-0", "worker-1"}


def test_round_robin_shares_evenly_and_skips_unhealthy_and_suspect_workers() -> None:
    workers = [SimulatedWorker(node_id="a"), SimulatedWorker(node_id="b"), SimulatedWorker(node_id="c"),
               SimulatedWorker(node_id="sick", health=HealthStatus.UNHEALTHY), SimulatedWorker(node_id="sus", suspect=True)]
    trial = exercise_balancer("round-robin", workers, picks=300)
    assert trial.counts == {"a": 100, "b": 100, "c": 100}


def test_least_connections_sends_calls_away_from_a_loaded_worker() -> None:
    workers = [SimulatedWorker(node_id="idle"), SimulatedWorker(node_id="busy", in_flight=50)]
    trial = exercise_balancer("least-connections", workers, picks=40, seed=3)
    assert trial.counts == {"idle": 40}


def test_degraded_workers_only_when_nothing_healthy_is_left() -> None:
    workers = [SimulatedWorker(node_id="ok"), SimulatedWorker(node_id="slow", health=HealthStatus.DEGRADED)]
    assert exercise_balancer("random", workers, picks=50).counts == {"ok": 50}
    only = [SimulatedWorker(node_id="slow", health=HealthStatus.DEGRADED)]
    assert exercise_balancer("random", only, picks=5).counts == {"slow": 5}


def test_a_third_party_balancer_with_options() -> None:
    import rpcnet_p2c

    workers = [SimulatedWorker(node_id="a"), SimulatedWorker(node_id="b", in_flight=30), SimulatedWorker(node_id="c")]
    trial = exercise_balancer("p2c", workers, picks=600, options={"choices": 2}, plugins=[("p2c", rpcnet_p2c)],
                              seed=7, call_length=3)
    assert "b" not in trial.counts, "30 calls in flight always lose to a worker with at most 3"
    assert 0.4 < trial.share("a") < 0.6


class Outsider(LoadBalancer):
    name: ClassVar[str] = "outsider"

    def select(self, workers):
        return WorkerView(node_id=workers[0].node_id, address=workers[0].address)  # a copy, not one it was given


class Unseeded(LoadBalancer):
    name: ClassVar[str] = "unseeded"

    def select(self, workers):
        return random.choice(list(workers))  # the module's generator, not self.rng


class _Plugin:
    @hookimpl
    def rpcnet_register_load_balancers(self, register):
        register(Outsider.name, Outsider)
        register(Unseeded.name, Unseeded)


def test_a_balancer_that_breaks_the_contract_is_named() -> None:
    with pytest.raises(BalancerContractError, match="load balancer 'outsider' failed on pick 1: InternalError: .*not one of the workers it was given"):
        exercise_balancer("outsider", plugins=[_Plugin()])
    with pytest.raises(BalancerContractError, match="picked another sequence with the same seed; take randomness only from self.rng"):
        exercise_balancer("unseeded", 5, picks=200, plugins=[_Plugin()])


def test_the_balancer_example_of_the_docs_works_as_shown() -> None:
    import re
    import types

    text = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    (source,) = [b for b in blocks if "class Fastest" in b]
    module = types.ModuleType("documented_fastest")
    exec(compile(source, "docs/plugins.md", "exec"), module.__dict__)
    (test,) = [b for b in blocks if "def test_fastest_avoids_the_loaded_worker" in b]
    namespace = {"HealthStatus": HealthStatus, "my_plugin": module}
    exec(compile(test, "docs/plugins.md", "exec"), namespace)
    namespace["test_fastest_avoids_the_loaded_worker"]()
