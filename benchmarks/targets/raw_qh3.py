"""Raw qh3: the raw QUIC baseline (targets/_raw_quic.py) on qh3."""

from __future__ import annotations

import os

os.environ["RPCNET_BENCH_RAW_LIBRARY"] = "qh3"

from targets._raw_quic import connect, start_server  # noqa: E402

__all__ = ["connect", "start_server"]
