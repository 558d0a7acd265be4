"""Eager task start: a handler's first step runs inside the callback that
delivered its request, as a real task, on asyncio's loop and on uvloop; a
unary handler without suspension points runs to its end without a task."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import sys
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from rpcnet import RpcClient, RpcConfig, RpcError, RpcServer, StatusCode
from rpcnet.errors import NotFoundError
from rpcnet.rpc import eager
from rpcnet.rpc.context import deadline_var
from rpcnet.testing import wait_until

Starter = Callable[[asyncio.AbstractEventLoop, Any], "asyncio.Task[Any]"]


async def _start_from_a_callback(start: Starter) -> tuple[list[Any], asyncio.Task[Any]]:
    """Start a task from a plain loop callback (as transports deliver
    requests); return the current tasks its steps saw before ``start``
    returned, and the task."""
    loop = asyncio.get_running_loop()
    seen: list[Any] = []
    outcome: asyncio.Future[tuple[list[Any], asyncio.Task[Any]]] = loop.create_future()

    async def body() -> str:
        seen.append(asyncio.current_task())
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())
        return "done"

    def callback() -> None:
        task = start(loop, body())
        outcome.set_result((list(seen), task))

    loop.call_soon(callback)
    return await outcome


async def _check_eager(start: Starter) -> None:
    before_return, task = await _start_from_a_callback(start)
    assert before_return == [task], "the first step must run, as the task itself, before start returns"
    assert await task == "done"


async def test_start_task_runs_the_first_step_at_once() -> None:
    await _check_eager(eager.start_task)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12+ uses Task(eager_start=True)")
async def test_pure_python_fallback_runs_the_first_step_at_once() -> None:
    await _check_eager(lambda loop, coro: eager._EagerTask(coro, loop))


async def test_inside_a_task_it_starts_normally() -> None:
    steps: list[str] = []

    async def body() -> None:
        steps.append("ran")

    task = eager.start_task(asyncio.get_running_loop(), body())
    assert steps == []  # the test itself is a task: no eager start here
    await task
    assert steps == ["ran"]


def test_eager_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(_check_eager(eager.start_task))
    finally:
        loop.close()


# -- coroutines that cannot suspend run without a task ---------------------------


async def _no_suspension(request: Any, ctx: Any) -> Any:
    return request


async def _awaits(request: Any, ctx: Any) -> Any:
    await asyncio.sleep(0)
    return request


async def _async_with(request: Any, ctx: Any) -> Any:
    async with asyncio.timeout(1):
        return request


async def _async_for(request: Any, ctx: Any) -> Any:
    return [item async for item in request]


def _plain(request: Any, ctx: Any) -> Any:
    return request


def _awaiting_wrapper(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    async def wrapper(*args: Any) -> Any:
        return await function(*args)

    return wrapper


class _Service:
    async def direct(self, request: Any) -> Any:
        return request

    async def delegating(self, request: Any) -> Any:
        return await self.direct(request)


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (_no_suspension, True),
        (_Service().direct, True),
        (_awaits, False),
        (_async_with, False),
        (_async_for, False),
        (_Service().delegating, False),
        (_awaiting_wrapper(_no_suspension), False),  # the wrapper's own code awaits
        (_plain, False),  # not a coroutine function
        (functools.partial(_no_suspension, 1), False),  # not a plain function: assume it may suspend
    ],
    ids=["no-await", "method", "await", "async-with", "async-for", "method-await", "awaiting-decorator", "sync", "partial"],
)
def test_cannot_suspend_only_for_coroutines_without_suspension_points(function: Any, expected: bool) -> None:
    assert eager.cannot_suspend(function) is expected


def test_run_to_end_returns_or_raises_what_the_coroutine_does() -> None:
    assert eager.run_to_end(_no_suspension("x", None)) == "x"

    async def failing() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        eager.run_to_end(failing())


async def test_run_to_end_refuses_a_coroutine_that_suspends() -> None:
    with pytest.raises(RuntimeError, match="suspended"):
        eager.run_to_end(_awaits("x", None))


_NETWORKS = itertools.count()


def _memory_config() -> RpcConfig:
    return RpcConfig(transport="memory", options={"memory": {"network": f"eager-{next(_NETWORKS)}"}})


async def test_a_handler_without_suspension_points_runs_without_a_task_in_its_own_context() -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    seen: list[tuple[Any, str]] = []
    config = _memory_config()
    server = RpcServer(config)

    @server.unary("set_and_report")
    async def set_and_report(request: str, ctx: Any) -> str:
        seen.append((asyncio.current_task(), marker.get()))
        marker.set(request)
        return f"{request}:{deadline_var.get() is not None}"

    @server.unary("awaits")
    async def awaits(request: str, ctx: Any) -> str:
        await asyncio.sleep(0)
        seen.append((asyncio.current_task(), marker.get()))
        return request

    await server.start(("server", 0))
    try:
        async with RpcClient(server.address, config) as client:
            assert await client.call("set_and_report", "a", timeout=5) == "a:True"
            assert await client.call("set_and_report", "b") == "b:False"
            assert await client.call("awaits", "c") == "c"
    finally:
        await server.stop()
    (first_task, first), (second_task, second), (awaiting_task, third) = seen
    # Each call runs in its own context copy: what one call set, the next does not see.
    assert (first, second, third) == ("unset", "unset", "unset")
    assert first_task is None and second_task is None  # ran inside the transport callback
    assert isinstance(awaiting_task, asyncio.Task)  # a handler that awaits gets its task


async def test_errors_of_a_handler_without_suspension_points_reach_the_caller() -> None:
    config = _memory_config()
    server = RpcServer(config)

    @server.unary("not_found")
    async def not_found(request: Any, ctx: Any) -> None:
        raise NotFoundError("no such thing", details={"key": request})

    @server.unary("broken")
    async def broken(request: Any, ctx: Any) -> None:
        raise ValueError("bad")

    await server.start(("server", 0))
    try:
        async with RpcClient(server.address, config) as client:
            with pytest.raises(NotFoundError) as found:
                await client.call("not_found", "k")
            assert found.value.details == {"key": "k"}
            with pytest.raises(RpcError) as unknown:
                await client.call("broken")
            assert unknown.value.code is StatusCode.UNKNOWN and "ValueError: bad" in unknown.value.message
    finally:
        await server.stop()


async def test_a_handler_without_suspension_points_is_held_to_the_server_limits() -> None:
    """Such a call is answered before anything else runs, so it is checked
    against the limits but never counted: it cannot hold a slot."""
    config = attrs.evolve(_memory_config(), max_concurrent_calls=1)
    server = RpcServer(config)
    release = asyncio.Event()

    @server.unary("instant")
    async def instant(request: Any, ctx: Any) -> Any:
        return (request, server.active_calls)

    @server.unary("slow")
    async def slow(request: Any, ctx: Any) -> Any:
        await release.wait()
        return request

    await server.start(("server", 0))
    try:
        async with RpcClient(server.address, config) as client:
            assert [await client.call("instant", index) for index in range(3)] == [[0, 0], [1, 0], [2, 0]]
            held = asyncio.ensure_future(client.call("slow", "held"))
            await wait_until(lambda: server.active_calls == 1)
            with pytest.raises(RpcError) as refused:
                await client.call("instant", "refused")
            assert refused.value.code is StatusCode.RESOURCE_EXHAUSTED
            release.set()
            assert await held == "held"
            assert await client.call("instant", "after") == ["after", 0]
            assert server.active_calls == 0
    finally:
        await server.stop()
