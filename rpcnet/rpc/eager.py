"""Tasks whose first step runs immediately (eager start).

A handler usually answers without awaiting anything slow; running its first
step inside the transport callback that completed the request lets the reply
leave in the same event-loop turn and the same packet as the other replies of
that turn, instead of one turn later. Python 3.12 has this built in
(``Task(..., eager_start=True)``). On 3.11 a normal (C) ``Task`` is created,
which schedules its first step with ``call_soon``; on asyncio's own loops that
handle is taken back off the ready queue and run at once. Other loops get the
pure-Python ``Task`` started the same way. The handler is a real task either
way: ``current_task()``, cancellation, ``asyncio.timeout()``, task groups and
contextvars behave as usual.

A coroutine function whose body has no suspension point at all (no
``await``, ``async for`` or ``async with``: :func:`cannot_suspend`) needs no
task: :func:`run_to_end` runs it to its end at once, in a copy of the
current context as a task would. That saves the task: 145,300 -> 129,500
instructions per unary call, both sides, in ``benchmarks/typed_path_cost.py
--only untyped`` under callgrind (about 2 us). Inside such a handler
``asyncio.current_task()`` is the caller's task (None in a transport
callback).
"""

from __future__ import annotations

import asyncio
import contextvars
import dis
import inspect
import itertools
import sys
import types
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["cannot_suspend", "run_to_end", "start_task"]

#: Instructions that can suspend a coroutine (3.11 to 3.13 names); a code
#: object without any of them runs to its end in one step.
_SUSPENDING = frozenset(
    dis.opmap[name]
    for name in (
        "GET_AWAITABLE", "SEND", "YIELD_VALUE", "YIELD_FROM", "GET_AITER", "GET_ANEXT",
        "BEFORE_ASYNC_WITH", "END_ASYNC_FOR", "ASYNC_GEN_WRAP", "CLEANUP_THROW",
    )
    if name in dis.opmap
)


def cannot_suspend(function: Callable[..., Any]) -> bool:
    """True for a coroutine function (or a method of one) whose body has no
    suspension point, so the coroutine it returns finishes in its first step.

    Only the function's own code counts: a decorator's wrapper that awaits
    the decorated function is a suspension point, and anything that is not
    a plain ``async def`` (a partial, a callable object, a function that
    returns an awaitable) is treated as one that may suspend."""
    function = getattr(function, "__func__", function)
    if type(function) is not types.FunctionType:
        return False
    code = function.__code__
    if not code.co_flags & inspect.CO_COROUTINE:
        return False
    # Instructions are two bytes from 3.6 on: the opcode, then its argument.
    return not any(op in _SUSPENDING for op in code.co_code[::2])


def run_to_end(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that cannot suspend (see :func:`cannot_suspend`) to
    its end and return its result, or raise what it raised. It runs in the
    current context: wrap the call in ``contextvars.copy_context().run`` to
    keep what it sets to itself."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError(f"{coro!r} suspended, but its code has no suspension point")

if sys.version_info >= (3, 12):

    def start_task(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg]

else:  # pragma: no cover - exercised on 3.11 only
    from asyncio import futures, tasks

    _names = itertools.count(1)
    _Task = asyncio.Task

    class _EagerTask(tasks._PyTask):  # type: ignore[name-defined, misc]
        """The pure-Python Task, whose first step runs in ``__init__``."""

        def __init__(self, coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop) -> None:
            futures._PyFuture.__init__(self, loop=loop)  # type: ignore[attr-defined]
            self._name = f"Task-rpcnet-{next(_names)}"
            self._num_cancels_requested = 0
            self._must_cancel = False
            self._fut_waiter = None
            self._coro = coro
            self._context = contextvars.copy_context()
            tasks._register_task(self)
            # What Task.__init__ schedules with call_soon, done now.
            self._context.run(self._Task__step)

    def start_task(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        if tasks.current_task(loop) is not None:
            # Inside another task the first step cannot run here; start normally.
            return loop.create_task(coro)
        ready = getattr(loop, "_ready", None)
        if ready is None:
            return _EagerTask(coro, loop)
        queued = len(ready)
        task = _Task(coro, loop=loop)
        if len(ready) == queued + 1:
            # The handle Task.__init__ just queued is its first step: run it now.
            ready.pop()._run()
        return task
