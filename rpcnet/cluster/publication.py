"""Health publication: a node's health checks, published in its membership tags.

:class:`HealthPublication` runs a :class:`~rpcnet.cluster.health.HealthMonitor`
over the node's checks and writes the aggregate status into the
:data:`~rpcnet.health.HEALTH_TAG` tag whenever it changes, so every
:class:`~rpcnet.cluster.workers.WorkerRegistry` stops choosing an unhealthy
worker and resumes when it recovers. No tag means healthy: a node without
checks gossips nothing extra. It also answers :data:`~rpcnet.health.HEALTH_METHOD`
on the node's server for external probes, unless the server already does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..health import HEALTH_METHOD, HEALTH_TAG, HealthResult, HealthStatus
from ..rpc import RpcServer
from .health import HealthMonitor, register_health_service

__all__ = ["HealthPublication"]


class HealthPublication:
    """Publishes the aggregate of ``checks`` into the tag ``tag``.

    ``get_tags()`` returns the node's current tags, ``set_tag(key, value)``
    changes one; both belong to whoever owns the membership (the cluster).
    """

    def __init__(
        self,
        server: RpcServer,
        checks: Mapping[str, Any] | Sequence[Any],
        *,
        get_tags: Callable[[], Mapping[str, str]],
        set_tag: Callable[[str, str], None],
        interval: float = 5.0,
        timeout: float = 2.0,
        tag: str = HEALTH_TAG,
        method: str = HEALTH_METHOD,
    ) -> None:
        self.server = server
        self.tag = tag
        self.method = method
        self._get_tags = get_tags
        self._set_tag = set_tag
        self.monitor = HealthMonitor(checks, interval=interval, timeout=timeout, publish=self.publish)

    def publish(self, result: HealthResult) -> None:
        """Write ``result``'s status into the tag, if it differs from what the tag says."""
        status = result.status.value if isinstance(result.status, HealthStatus) else str(result.status)
        current = self._get_tags().get(self.tag)
        if current != status and not (current is None and status == HealthStatus.HEALTHY.value):
            self._set_tag(self.tag, status)

    async def start(self) -> None:
        """Run the first round (publishing its status), keep checking, and
        answer the health method if the server does not yet."""
        await self.monitor.start()
        if self.method not in self.server.methods:
            register_health_service(self.server, self.monitor, method=self.method)

    async def stop(self) -> None:
        await self.monitor.stop()
