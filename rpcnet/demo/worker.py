"""A worker: joins through the director, serves the typed ``Inference`` service.

    python -m rpcnet.demo.worker                 # WORKER_ADDR, WORKER_LABEL, DIRECTOR_ADDR, ...

- ``inference.generate`` (server streaming): a ``Prompt`` -> one ``Token`` per generated token.
- ``inference.infer`` (unary, idempotent): a ``Prompt`` -> ``Inferred``.
- ``infer`` (untyped, idempotent): ``{"prompt": str}`` -> ``{"text", "worker", "pid"}``, the
  name ``rpcnet demo`` and tests/cluster/test_failover.py load the workers through.

The definition is in :mod:`rpcnet.demo.inference`, shared with examples/cluster/client.py.

Tags: ``role=worker`` and, with WORKER_LABEL, ``label=<WORKER_LABEL>``.
WORKER_FAILURE_ENABLED=1 makes the worker crash (``os._exit``, no goodbye) at
a random token, to watch clients fail over. ``--plugin module:object`` adds a
plugin (a health check, say; see examples/cluster/drain_check.py) and ``--health-check NAME``
runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import sys
from collections.abc import AsyncIterator
from typing import Any

from .inference import Inference, Inferred, Prompt, Token
from .node import (
    add_common_arguments,
    env_flag,
    load_plugins,
    make_logger,
    make_server,
    require_security,
    serve_until_stopped,
    start_node,
    stop_on_signals,
)

VOCABULARY = (
    "the a cluster node worker token stream quic gossip packet member alive suspect failed "
    "recovered leader seed probe ack nack phi window latency budget retry failover route "
    "balance least round robin random health tag label prompt answer model layer weight"
).split()


def tokens_for(prompt: str, count: int) -> list[str]:
    """The same prompt always yields the same tokens, on every worker."""
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    return [rng.choice(VOCABULARY) for _ in range(count)]


class Worker(Inference):
    def __init__(self, node_id: str, *, token_delay: float, infer_delay: float, slots: int,
                 failure_enabled: bool, log: Any, rng: random.Random) -> None:
        self.node_id = node_id
        self.token_delay = token_delay
        self.infer_delay = infer_delay
        self._slots = asyncio.Semaphore(slots) if slots > 0 else None
        self.log = log
        # A crash at a random token: between 20 and 150 tokens from start.
        self.tokens_left = rng.randint(20, 150) if failure_enabled else None

    def _maybe_crash(self) -> None:
        if self.tokens_left is None:
            return
        self.tokens_left -= 1
        if self.tokens_left <= 0:
            self.log("simulated crash (WORKER_FAILURE_ENABLED): exiting at once, mid-stream")
            os._exit(3)

    async def generate(self, request: Prompt) -> AsyncIterator[Token]:
        count = max(0, min(request.max_tokens, 4096))
        for index, token in enumerate(tokens_for(request.prompt, count)):
            self._maybe_crash()
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            yield Token(token, index, self.node_id)

    async def infer(self, request: Prompt) -> Inferred:
        if self._slots is None:
            await self._work()
        else:
            async with self._slots:
                await self._work()
        self._maybe_crash()
        return Inferred(" ".join(tokens_for(request.prompt, 8)), self.node_id, os.getpid())

    async def infer_untyped(self, request: dict[str, Any], ctx: Any) -> dict[str, Any]:
        reply = await self.infer(Prompt(str((request or {}).get("prompt", ""))))
        return {"text": reply.text, "worker": reply.worker, "pid": reply.pid}

    async def _work(self) -> None:
        if self.infer_delay:
            await asyncio.sleep(self.infer_delay)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--listen", default=os.environ.get("WORKER_ADDR", "127.0.0.1:0"),
                        help="RPC address to bind [env WORKER_ADDR, default 127.0.0.1:0]")
    parser.add_argument("--label", default=os.environ.get("WORKER_LABEL", ""),
                        help="label tag, also the node id [env WORKER_LABEL]")
    parser.add_argument("--failure", action="store_true",
                        default=env_flag("WORKER_FAILURE_ENABLED"),
                        help="crash at a random token [env WORKER_FAILURE_ENABLED]")
    parser.add_argument("--token-ms", type=float, default=float(os.environ.get("WORKER_TOKEN_MS", "30")),
                        help="milliseconds per generated token [env WORKER_TOKEN_MS, default 30]")
    parser.add_argument("--infer-ms", type=float, default=float(os.environ.get("WORKER_INFER_MS", "5")),
                        help="milliseconds an infer call takes [env WORKER_INFER_MS, default 5]")
    parser.add_argument("--slots", type=int, default=int(os.environ.get("WORKER_SLOTS", "0")),
                        help="infer calls served at once, the rest wait (0: no limit) [env WORKER_SLOTS]")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE:OBJECT",
                        help="register a plugin object (repeatable)")
    parser.add_argument("--health-check", action="append", default=[], metavar="NAME",
                        help="run this health check; its status travels in gossip (repeatable)")
    parser.add_argument("--health-option", action="append", default=[], metavar="CHECK.KEY=VALUE",
                        help="an option of a health check, e.g. drain-file.path=/tmp/drain (repeatable)")
    parser.add_argument("--health-interval", type=float, default=1.0, help="seconds between health rounds")
    args = parser.parse_args(argv)
    require_security(args, parser)
    args.health_options = {}
    for item in args.health_option:
        name, dot, rest = item.partition(".")
        key, eq, value = rest.partition("=")
        if not dot or not eq or not name or not key:
            parser.error(f"--health-option takes CHECK.KEY=VALUE, got {item!r}")
        args.health_options.setdefault(name, {})[key] = value
    return args, parser


async def main(argv: list[str] | None = None) -> int:
    args, _ = parse_args(argv)
    log = make_logger(f"worker {args.label or args.listen}", args.json)
    server = make_server(args.certs, load_plugins(args.plugin))
    tags = {"role": "worker"}
    if args.label:
        tags["label"] = args.label
    worker = Worker(
        args.label or "",
        token_delay=args.token_ms / 1000,
        infer_delay=args.infer_ms / 1000,
        slots=args.slots,
        failure_enabled=args.failure,
        log=log,
        rng=random.Random(),
    )
    server.add_service(worker)
    server.register("infer", worker.infer_untyped, idempotent=True)
    stop = stop_on_signals()
    cluster = await start_node(
        server, listen=args.listen, args=args, tags=tags, seeds=[args.director], node_id=args.label or None,
        health_checks=args.health_check, health_interval=args.health_interval, options=args.health_options,
    )
    worker.node_id = cluster.node_id
    greeting = (f"serving on {server.address[0]}:{server.address[1]} as {cluster.node_id} "
                f"(tags {','.join(f'{k}={v}' for k, v in tags.items())}); joined through {args.director}")
    if worker.tokens_left is not None:
        greeting += f"; failure simulation on: will crash after {worker.tokens_left} tokens"
    await serve_until_stopped(server, cluster, args=args, stop=stop, log=log, greeting=greeting,
                              ready_extra={"tags": tags})
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
