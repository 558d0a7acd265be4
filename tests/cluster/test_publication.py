"""HealthPublication on its own: the health tag follows the checks' status; the health method answers."""

from __future__ import annotations

from rpcnet import RpcClient, RpcConfig, RpcServer
from rpcnet.cluster.publication import HealthPublication
from rpcnet.health import HEALTH_METHOD, HEALTH_TAG, HealthResult, HealthStatus


class Switch:
    name = "switch"

    def __init__(self) -> None:
        self.status = HealthStatus.HEALTHY

    async def check(self) -> HealthResult:
        return HealthResult(self.status, "set by the test")


class Tags:
    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        self.writes: list[tuple[str, str]] = []

    def set(self, key: str, value: str) -> None:
        self.tags[key] = value
        self.writes.append((key, value))


async def test_the_tag_is_written_only_when_the_status_changes_and_healthy_needs_no_tag() -> None:
    server = RpcServer(RpcConfig(transport="memory"))
    switch, tags = Switch(), Tags()
    publication = HealthPublication(server, [switch], get_tags=lambda: tags.tags, set_tag=tags.set, interval=60)
    await publication.start()
    assert tags.writes == [], "healthy is the default: no tag"
    switch.status = HealthStatus.UNHEALTHY
    await publication.monitor.check_now()
    await publication.monitor.check_now()
    assert tags.writes == [(HEALTH_TAG, "unhealthy")], "written once per change"
    switch.status = HealthStatus.HEALTHY
    await publication.monitor.check_now()
    assert tags.tags[HEALTH_TAG] == "healthy", "recovering is published, since the tag said otherwise"
    await publication.stop()


async def test_it_answers_the_health_method_unless_the_server_already_does() -> None:
    server = RpcServer(RpcConfig(transport="memory"))
    switch, tags = Switch(), Tags()
    publication = HealthPublication(server, [switch], get_tags=lambda: tags.tags, set_tag=tags.set, interval=60)
    await publication.start()
    assert HEALTH_METHOD in server.methods
    await server.start(("publication", 1))
    try:
        async with RpcClient(server.address, RpcConfig(transport="memory")) as client:
            assert (await client.call(HEALTH_METHOD, None, timeout=5))["status"] == "healthy"
    finally:
        await publication.stop()
        await server.stop(grace=0)

    other = RpcServer(RpcConfig(transport="memory"))

    async def own(request, ctx):
        return {"status": "mine"}

    other.register(HEALTH_METHOD, own)
    publication = HealthPublication(other, [], get_tags=dict, set_tag=tags.set, interval=60)
    await publication.start()
    await other.start(("publication-own", 1))
    try:
        async with RpcClient(other.address, RpcConfig(transport="memory")) as client:
            assert await client.call(HEALTH_METHOD, None, timeout=5) == {"status": "mine"}
    finally:
        await publication.stop()
        await other.stop(grace=0)
