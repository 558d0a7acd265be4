"""Waiting for a condition with a deadline, for tests of real networks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["wait_until"]


async def wait_until(predicate: Callable[[], object], timeout: float = 5.0, *, interval: float = 0.005) -> None:
    """Return as soon as ``predicate()`` holds; raise ``AssertionError`` after ``timeout`` seconds.

    For code driven by a real event loop (sockets, processes). Protocol cores
    are tested with explicit time instead (see :class:`Simulator`).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
