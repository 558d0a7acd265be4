"""Typed services on a cluster: the channel a ``ClusterClient`` gives typed proxies.

``Calculator.client(cluster_client, filter="role=worker")`` sends each call
to a worker the registry selects (tag filter + load balancer), with the
ClusterClient's failover: a method the definition marks idempotent is
retried on another worker after errors that may have followed sending.
Client-streaming requests are gathered first (a retry sends them again);
bidirectional calls go to one selected worker without failover.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ..rpc.services import CallOptions, MethodInfo

__all__ = ["WorkerChannel"]


class WorkerChannel:
    """A :class:`~rpcnet.rpc.services.ServiceChannel` over a ClusterClient."""

    def __init__(self, clients: Any) -> None:
        #: The ClusterClient (not imported here: it imports this module to make the channel).
        self.clients = clients

    @property
    def serializer_name(self) -> str:
        return str(self.clients.config.serializer)

    @staticmethod
    def _metadata(options: CallOptions) -> dict[str, Any] | None:
        return None if options.metadata is None else dict(options.metadata)

    async def unary(self, method: MethodInfo, request: Any, options: CallOptions) -> Any:
        return await self.clients.call_worker(
            method.wire, request, options.filter, timeout=options.timeout,
            metadata=self._metadata(options), idempotent=method.idempotent,
        )

    def server_streaming(self, method: MethodInfo, request: Any, options: CallOptions) -> AsyncIterator[Any]:
        stream: AsyncIterator[Any] = self.clients.call_worker_server_streaming(
            method.wire, request, options.filter, timeout=options.timeout,
            metadata=self._metadata(options), idempotent=method.idempotent,
        )
        return stream

    async def client_streaming(self, method: MethodInfo, requests: AsyncIterator[Any], options: CallOptions) -> Any:
        items = [item async for item in requests]
        return await self.clients.call_worker_client_streaming(
            method.wire, items, options.filter, timeout=options.timeout,
            metadata=self._metadata(options), idempotent=method.idempotent,
        )

    async def bidi_streaming(self, method: MethodInfo, requests: AsyncIterator[Any], options: CallOptions) -> AsyncIterator[Any]:
        clients = self.clients
        worker = clients._select(options.filter, set())
        client = clients._client_for(worker)
        with clients.registry.stats(worker.node_id).track():
            call = client.call_streaming(method.wire, requests, timeout=options.timeout, metadata=self._metadata(options))
            try:
                async for item in call:
                    yield item
            finally:
                call.cancel()
