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
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import sys
from collections.abc import Coroutine
from typing import Any

__all__ = ["start_task"]

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
