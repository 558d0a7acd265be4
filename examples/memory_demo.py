"""RPC over the in-process ``memory`` transport, with a metrics plugin.

A server and a client in one process, no sockets and no certificates: a unary
call, a server-streaming call, an error status crossing the wire, a deadline,
and an ``rpcnet_call`` wrapper plugin counting calls on both sides. Then the
``p2c`` load balancer from ``examples/plugins/rpcnet-p2c`` (or, when that
example plugin is not installed, the bundled ``least-connections``) spreads
calls over three servers by their calls in flight. Run it with ``make demo`` or
``.venv/bin/python examples/memory_demo.py``.
"""

from __future__ import annotations

import asyncio
import collections
import random
import sys

from rpcnet import RpcClient, RpcConfig, RpcServer, hookimpl, make_plugin_manager
from rpcnet.balancing import WorkerView
from rpcnet.errors import DeadlineExceededError, NotFoundError


class CallCounter:
    """A plugin: counts finished calls by (side, method, status)."""

    def __init__(self) -> None:
        self.finished: collections.Counter[tuple[str, str, str]] = collections.Counter()

    @hookimpl(wrapper=True)
    def rpcnet_call(self, call):
        yield
        self.finished[(call.side, call.method, call.status.name)] += 1


def build_server(config: RpcConfig, plugins, name: str) -> RpcServer:
    server = RpcServer(config, plugins=plugins)

    @server.unary("greet")
    async def greet(request, ctx):
        return {"text": f"hello, {request['name']}", "from": name, "payload": request["payload"][::-1]}

    @server.server_streaming("countdown")
    async def countdown(start, ctx):
        for n in range(start, 0, -1):
            yield n

    @server.unary("lookup")
    async def lookup(key, ctx):
        raise NotFoundError(f"no record {key!r}", details={"key": key})

    @server.unary("slow")
    async def slow(request, ctx):
        await asyncio.Event().wait()  # never answers; the caller's deadline ends it

    return server


async def main() -> int:
    counter = CallCounter()
    plugins = make_plugin_manager(plugins=[("call-counter", counter)])
    config = RpcConfig(transport="memory", options={"memory": {"network": "demo"}})

    server = build_server(config, plugins, "server-1")
    address = await server.start(("server-1", 0))
    print(f"server listening on memory://{address[0]}:{address[1]}")
    async with RpcClient(address, config, plugins=plugins) as client:
        reply = await client.call("greet", {"name": "rpcnet", "payload": b"\x00\x01\x02"})
        print(f"greet      -> {reply}")
        print(f"countdown  -> {[n async for n in client.call_server_streaming('countdown', 5)]}")
        try:
            await client.call("lookup", "alice")
        except NotFoundError as exc:
            print(f"lookup     -> {type(exc).__name__}: {exc.message} details={exc.details}")
        try:
            await client.call("slow", None, timeout=0.05)
        except DeadlineExceededError as exc:
            print(f"slow       -> {type(exc).__name__} after the 50 ms deadline")
    await server.stop(grace=0)

    print("\ncalls seen by the call-counter plugin (side, method, status):")
    for (side, method, status), count in sorted(counter.finished.items()):
        print(f"  {side:6} {method:10} {status:18} x{count}")

    # Three servers, one client each; the p2c balancer picks where each call goes.
    # p2c comes from examples/plugins/rpcnet-p2c; without it (rpcnet installed
    # from a wheel, say) the bundled least-connections balancer stands in.
    strategy = "p2c" if "p2c" in plugins.registry.names("load-balancer") else "least-connections"
    if strategy != "p2c":
        print("\n(the p2c example plugin is not installed: `pip install examples/plugins/rpcnet-p2c`; "
              "using the bundled 'least-connections' balancer)")
    balancer = plugins.create("load-balancer", strategy, rng=random.Random(42))
    servers, clients = {}, {}
    for name in ("worker-a", "worker-b", "worker-c"):
        servers[name] = build_server(config, plugins, name)
        clients[name] = RpcClient(await servers[name].start((name, 0)), config, plugins=plugins)
    in_flight = {"worker-a": 0, "worker-b": 5, "worker-c": 20}  # pretend load already queued
    served = collections.Counter()
    for i in range(300):
        views = [WorkerView(node_id=n, address=(n, 0), in_flight=in_flight[n]) for n in sorted(clients)]
        chosen = balancer.select(views).node_id
        in_flight[chosen] += 1
        reply = await clients[chosen].call("greet", {"name": f"call-{i}", "payload": b""})
        served[reply["from"]] += 1
        if i % 3 == 2:  # calls finish over time: each worker completes one
            for name in in_flight:
                in_flight[name] = max(0, in_flight[name] - 1)
    print(f"\n300 calls balanced by {strategy!r} (starting in_flight a=0, b=5, c=20):")
    for name in sorted(served):
        print(f"  {name}: {served[name]} calls")
    for name in clients:
        await clients[name].close()
        await servers[name].stop(grace=0)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
