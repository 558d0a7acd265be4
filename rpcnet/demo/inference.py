"""The typed service the demo's workers serve and the example client calls.

``generate`` (server streaming) yields one :class:`Token` per generated token;
``infer`` (unary) answers a short text. Both depend only on the prompt, so
they are idempotent: the ClusterClient may retry them on another worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import attrs

from ..rpc import Service, rpcmethod


@attrs.frozen
class Prompt:
    prompt: str
    max_tokens: int = 16


@attrs.frozen
class Token:
    token: str
    index: int
    worker: str


@attrs.frozen
class Inferred:
    text: str
    worker: str
    pid: int


class Inference(Service, Protocol, name="inference"):
    @rpcmethod(idempotent=True)
    def generate(self, request: Prompt) -> AsyncIterator[Token]: ...

    @rpcmethod(idempotent=True)
    async def infer(self, request: Prompt) -> Inferred: ...
