"""The stream cases of test_streams.py on the qh3 backend, and across
backends: a qh3 server with aioquic clients and the reverse (the TLS cases,
the same way: tests/testing/test_tls_conformance_quic_qh3.py)."""

from __future__ import annotations

from .qh3_pairings import quic_backends  # noqa: F401 - this module's backends
from .test_streams import *  # noqa: F403 - the same cases, run here on other backends

# It looks into aioquic's stream table, which qh3 keeps in its native core.
del test_finished_and_reset_streams_are_released  # noqa: F821
