"""Benchmark targets: one module per RPC stack, all with the same small interface.

A target module provides two coroutines::

    async def start_server(host: str, tls: TlsFiles) -> BenchServer
    async def connect(host: str, port: int, tls: TlsFiles) -> BenchClient

The server answers two methods, whatever the stack calls them:

``echo``
    unary; the reply is the request.
``download``
    server streaming; the request is :func:`encode_download` ``(count, size)``
    and the server sends ``count`` messages of ``size`` bytes each.

The load loops in ``worker.py`` drive every target through :class:`BenchClient`
only, so they time the same thing for each stack. A module raises
:class:`TargetUnavailable` when the stack it measures is not installed or not
built yet; the harness reports that and goes on with the other targets.
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Protocol

from devcerts import TlsFiles

__all__ = [
    "TARGETS",
    "BenchClient",
    "BenchServer",
    "TargetUnavailable",
    "TlsFiles",
    "decode_download",
    "download_message",
    "encode_download",
    "load_target",
]

#: Every target, rpcnet first: the ratios are rpcnet / each of the others. The goals
#: also compare rpcnet_qh3 and rpcnet_tcp (rpcnet on the qh3 backend and on the tcp
#: transport) with their own baselines.
TARGETS = ("rpcnet", "rpcnet_qh3", "rpcnet_tcp", "raw_aioquic", "raw_qh3", "grpc_aio", "tls_tcp", "plain_tcp")

#: The ALPN both QUIC targets offer; rpcnet uses its own.
BENCH_ALPN = "rpcnet-bench"

_DOWNLOAD = struct.Struct("!II")


class TargetUnavailable(RuntimeError):
    """The stack a target measures cannot run here; the message says why and what to do."""


class BenchServer(Protocol):
    port: int

    async def close(self) -> None: ...


class BenchClient(Protocol):
    async def unary(self, payload: bytes) -> bytes:
        """Call ``echo`` with ``payload`` and return the reply."""

    def download(self, request: bytes) -> AsyncIterator[bytes]:
        """Call ``download`` and yield each message as it arrives."""

    async def close(self) -> None: ...


def encode_download(count: int, size: int) -> bytes:
    return _DOWNLOAD.pack(count, size)


def decode_download(request: bytes) -> tuple[int, int]:
    count, size = _DOWNLOAD.unpack(request)
    return count, size


@lru_cache(maxsize=8)
def download_message(size: int) -> bytes:
    """The message a server streams: the same object every time, so no target pays to build it."""
    return bytes(range(256)) * (size // 256) + bytes(size % 256)


def load_target(name: str):
    if name not in TARGETS:
        raise KeyError(f"unknown target {name!r}; available: {', '.join(TARGETS)}")
    return importlib.import_module(f"targets.{name}")
