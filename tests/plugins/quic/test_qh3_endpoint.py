"""The endpoint cases of test_endpoint.py (restarts and stateless resets, dead
peers and busy probes, Retry, version negotiation, idle timeouts, admission)
on the qh3 backend and across backends."""

from __future__ import annotations

from .qh3_pairings import quic_backends  # noqa: F401 - this module's backends
from .test_endpoint import *  # noqa: F403 - the same cases, run here on other backends
