"""Echo: bytes back unchanged (unary) and text echoed as it streams (bidirectional).

    python examples/typed/echo.py
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

from rpcnet import RpcClient, RpcConfig, RpcServer, Service


class Echo(Service, Protocol):
    async def echo(self, request: bytes) -> bytes: ...

    def chat(self, lines: AsyncIterator[str]) -> AsyncIterator[str]: ...


class EchoService(Echo):
    async def echo(self, request: bytes) -> bytes:
        return request

    async def chat(self, lines: AsyncIterator[str]) -> AsyncIterator[str]:
        async for line in lines:
            yield f"echo: {line}"


async def lines(*texts: str) -> AsyncIterator[str]:
    for text in texts:
        yield text


async def main() -> list[str]:
    config = RpcConfig(transport="memory")
    server = RpcServer(config)
    server.add_service(EchoService())
    address = await server.start(("echo", 0))
    try:
        async with RpcClient(address, config) as client:
            echo = Echo.client(client)
            payload = bytes(range(8))
            out = [f"echo({payload!r}) == payload: {await echo.echo(payload) == payload}"]
            out += [reply async for reply in echo.chat(lines("one", "two", "three"))]
            return out
    finally:
        await server.stop()


if __name__ == "__main__":
    print("\n".join(asyncio.run(main())))
