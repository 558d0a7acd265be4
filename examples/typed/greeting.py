"""Greeting: the smallest typed service, with per-call metadata read by the implementation.

    python examples/typed/greeting.py
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import attrs

from rpcnet import RpcClient, RpcConfig, RpcServer, Service, current_context


@attrs.frozen
class GreetRequest:
    name: str
    language: str = "en"


@attrs.frozen
class Greeting:
    text: str


class Greeter(Service, Protocol):
    async def greet(self, request: GreetRequest) -> Greeting: ...


class GreeterService(Greeter):
    WORDS = {"en": "Hello", "fr": "Bonjour", "de": "Hallo"}

    async def greet(self, request: GreetRequest) -> Greeting:
        ctx = current_context()
        punctuation = ctx.metadata.get("punctuation", "!") if ctx is not None else "!"
        return Greeting(f"{self.WORDS.get(request.language, 'Hello')}, {request.name}{punctuation}")


async def main() -> list[str]:
    config = RpcConfig(transport="memory")
    server = RpcServer(config)
    server.add_service(GreeterService())
    address = await server.start(("greeter", 0))
    try:
        async with RpcClient(address, config) as client:
            greeter = Greeter.client(client, timeout=5.0)
            first = await greeter.greet(GreetRequest("rpcnet"))
            second = await greeter.with_options(metadata={"punctuation": "?"}).greet(GreetRequest("Ada", "fr"))
            return [first.text, second.text]
    finally:
        await server.stop()


if __name__ == "__main__":
    print("\n".join(asyncio.run(main())))
