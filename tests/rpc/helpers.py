"""Small helpers shared by the RPC tests."""

from __future__ import annotations

from rpcnet.testing import wait_until as until

__all__ = ["until"]
