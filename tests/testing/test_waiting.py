"""wait_until: returns as soon as the condition holds, fails at its deadline."""

from __future__ import annotations

import asyncio

import pytest

from rpcnet.testing import wait_until


async def test_returns_once_the_condition_holds():
    flag = asyncio.Event()
    asyncio.get_running_loop().call_soon(flag.set)
    await wait_until(flag.is_set, timeout=5)
    assert flag.is_set()


async def test_a_condition_that_never_holds_fails_at_the_deadline():
    with pytest.raises(AssertionError, match="condition not met within 0.05 s"):
        await wait_until(lambda: False, timeout=0.05)
