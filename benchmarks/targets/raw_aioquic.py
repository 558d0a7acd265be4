"""Raw aioquic: the raw QUIC baseline (targets/_raw_quic.py) on aioquic."""

from __future__ import annotations

import os

os.environ["RPCNET_BENCH_RAW_LIBRARY"] = "aioquic"

from targets._raw_quic import connect, start_server  # noqa: E402

__all__ = ["connect", "start_server"]
