"""Eager task start: a handler's first step runs inside the callback that
delivered its request, as a real task, on asyncio's loop and on uvloop."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import pytest

from rpcnet.rpc import eager

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
