"""The reliable request channel between membership cores: RPC calls, sealed.

A core's requests (full-state syncs, stream pings, whatever a strategy needs
delivered reliably) travel as unary calls of :data:`REQUEST_METHOD` to the
peer's RPC server, over the node's mutual-TLS transport. On top of TLS every
request and reply is sealed like a gossip packet (keyring + cluster label,
:func:`~rpcnet.cluster.gossip.seal`), so a node with the wrong gossip key or
label cannot merge state through this path either; a node without a keyring
(insecure gossip, or a strategy that needs no gossip keys) seals with the
label only.

:class:`RequestChannel` is both ends: :meth:`RequestChannel.request` sends,
:meth:`RequestChannel.serve` answers with a handler given the opened bytes.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from typing import Any

import attrs

from ..config import RpcConfig, TlsConfig
from ..errors import RpcError, StatusCode
from ..rpc import RpcClient, RpcServer
from ..transport import Address
from .gossip import NONCE_SIZE, GossipPacketError, seal, seal_insecure, unseal
from .keyring import Keyring

__all__ = ["REQUEST_METHOD", "RequestChannel", "RequestChannelStats"]

log = logging.getLogger("rpcnet.cluster")

#: The RPC method that carries membership requests (its 0.1 name, kept on the wire).
REQUEST_METHOD = "rpcnet.cluster/Sync"

_OLD_KEYS = {
    "syncs_sent": "requests_sent",
    "syncs_served": "requests_served",
    "syncs_rejected": "requests_rejected",
    "syncs_failed": "requests_failed",
}


@attrs.frozen(kw_only=True)
class RequestChannelStats:
    """Counters of one channel since it was made."""

    #: Requests sent (each counts once, whatever its outcome).
    requests_sent: int = 0
    #: Peer requests answered.
    requests_served: int = 0
    #: Requests or replies refused: wrong gossip key or cluster label.
    requests_rejected: int = 0
    #: Requests that got no usable reply (the core was told ``request_failed``).
    requests_failed: int = 0

    def __getitem__(self, key: str) -> int:
        """0.1 read ``cluster.stats["syncs_sent"]``; deprecated until 0.3."""
        if key not in _OLD_KEYS:
            raise KeyError(key)
        warnings.warn(
            f'cluster.stats["{key}"] is deprecated: read cluster.stats.{_OLD_KEYS[key]} (removed in 0.3)',
            DeprecationWarning,
            stacklevel=2,
        )
        return int(getattr(self, _OLD_KEYS[key]))


Handler = Callable[[bytes], bytes]


class RequestChannel:
    """Requests to peers' RPC servers and answers to theirs, sealed with ``keyring`` and ``label``.

    ``tls`` is the TLS of outgoing calls; ``timeout`` bounds each request.
    The keyring is held by reference: rotating it applies to the next request.
    """

    def __init__(
        self,
        server: RpcServer,
        *,
        keyring: Keyring | None,
        label: str = "",
        tls: TlsConfig | None = None,
        timeout: float = 5.0,
        method: str = REQUEST_METHOD,
    ) -> None:
        self.server = server
        self.keyring = keyring
        self.label = label
        self.tls = tls
        self.timeout = timeout
        self.method = method
        self._clients: dict[tuple[Address, str | None], RpcClient] = {}
        self._counts = dict.fromkeys(attrs.fields_dict(RequestChannelStats), 0)

    @property
    def stats(self) -> RequestChannelStats:
        """A snapshot of the counters."""
        return RequestChannelStats(**self._counts)

    # -- sealing --------------------------------------------------------

    def seal(self, data: bytes) -> bytes:
        keyring = self.keyring
        if keyring is None:
            return seal_insecure(data, label=self.label)
        return seal(data, key=keyring.primary_key, label=self.label, nonce=os.urandom(NONCE_SIZE))

    def unseal(self, data: bytes) -> bytes:
        keyring = self.keyring
        return unseal(data, keys=keyring.keys if keyring is not None else None, label=self.label)

    # -- sending --------------------------------------------------------

    def _client_for(self, address: Address, server_name: str | None = None) -> RpcClient:
        key = (address, server_name)
        client = self._clients.get(key)
        if client is None:
            base: RpcConfig = self.server.config
            client = RpcClient(address, base.evolve(tls=self.tls), plugins=self.server.plugins, server_name=server_name or address[0])
            self._clients[key] = client
        return client

    async def request(self, address: Address, data: bytes, *, server_name: str | None = None) -> bytes:
        """Send ``data`` to the RPC server at ``address``; its opened reply.

        ``server_name`` is the name TLS checks the peer's certificate for
        (default: the host of ``address``), as when a seed's host name was
        resolved to ``address``.

        Raises :class:`~rpcnet.errors.RpcError` when the call fails or the
        reply does not open (``PERMISSION_DENIED``); the connection to that
        address is dropped so the next request dials afresh.
        """
        self._counts["requests_sent"] += 1
        try:
            sealed = await self._client_for(address, server_name).call(self.method, self.seal(data), timeout=self.timeout)
            if not isinstance(sealed, bytes):
                raise RpcError("malformed reply: not bytes", code=StatusCode.INTERNAL)
            try:
                return self.unseal(sealed)
            except GossipPacketError as exc:
                self._counts["requests_rejected"] += 1
                raise RpcError(f"reply refused: {exc}", code=StatusCode.PERMISSION_DENIED) from None
        except Exception:
            self._counts["requests_failed"] += 1
            client = self._clients.pop((address, server_name), None)
            if client is not None:
                await client.close()
            raise

    # -- serving --------------------------------------------------------

    def serve(self, handler: Handler) -> None:
        """Answer :data:`REQUEST_METHOD` on the server with ``handler(opened request) -> reply``.

        A request that does not open is refused with ``PERMISSION_DENIED``;
        a handler that raises answers ``INVALID_ARGUMENT``.
        """

        async def answer(request: Any, ctx: Any) -> bytes:
            if not isinstance(request, bytes):
                raise RpcError("a membership request carries bytes", code=StatusCode.INVALID_ARGUMENT)
            try:
                opened = self.unseal(request)
            except GossipPacketError as exc:
                self._counts["requests_rejected"] += 1
                raise RpcError(
                    f"sync refused: {exc} (check that both nodes share a gossip key and cluster label)",
                    code=StatusCode.PERMISSION_DENIED,
                ) from None
            try:
                reply = handler(opened)
            except Exception as exc:
                raise RpcError(f"malformed sync request: {exc}", code=StatusCode.INVALID_ARGUMENT) from None
            self._counts["requests_served"] += 1
            return self.seal(reply)

        self.server.register(self.method, answer)

    async def close(self) -> None:
        """Close every outgoing connection."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
