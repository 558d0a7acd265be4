"""The client: joins as role=client, streams tokens for prompts from any worker.

    python examples/cluster/client.py --prompt "hello cluster" --count 20

Workers are chosen by a WorkerRegistry (tag filter + load balancer) and
called through a ClusterClient, which fails over when a worker dies before
answering. A stream cut short by a dying worker is asked again, from the
start, on another worker: generation depends only on the prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import sys
import time
from collections.abc import Callable

from rpcnet.cluster import ClusterClient
from rpcnet.cluster.workers import NoWorkerError, WorkerAdded, WorkerRegistry
from rpcnet.demo.inference import Inference, Prompt
from rpcnet.demo.node import (
    add_common_arguments,
    leave_and_stop,
    make_logger,
    make_server,
    outgoing_config,
    require_security,
    start_node,
    stop_on_signals,
)
from rpcnet.errors import RpcError
from rpcnet.registry import UnknownStrategyError

DEFAULT_PROMPTS = ("explain gossip", "why quic", "what is a phi detector", "route by tags")


async def wait_for_worker(registry: WorkerRegistry, timeout: float) -> bool:
    """True once a worker matching the registry's filter is known, False after ``timeout`` s."""
    async with registry.subscribe() as events:
        try:
            async with asyncio.timeout(timeout):
                async for event in events:
                    if isinstance(event, WorkerAdded):
                        return True
        except TimeoutError:
            return False
    return False


async def stream_prompt(inference: Inference, clients: ClusterClient, prompt: str, max_tokens: int, timeout: float,
                        token_timeout: float, log: Callable[[str], None]) -> tuple[str, int]:
    """Print the tokens for one prompt; when a worker fails or stalls mid-stream, ask again elsewhere.

    A worker killed outright sends nothing more, and nothing tells this side
    until membership declares it failed (seconds); tokens come every few tens
    of milliseconds, so a silence of ``token_timeout`` already says enough.
    """
    for attempt in itertools.count(1):
        worker, tokens = None, 0
        stream = inference.with_options(timeout=timeout).generate(Prompt(prompt, max_tokens))
        try:
            while True:
                try:
                    message = await asyncio.wait_for(anext(stream), token_timeout)
                except StopAsyncIteration:
                    break
                if worker is None:
                    worker = message.worker
                    print(f"[{worker}] ", end="", flush=True)
                print(message.token, end=" ", flush=True)
                tokens += 1
            print()
            return worker or "-", tokens
        except NoWorkerError as exc:
            log(f"{exc}; waiting for a worker")
            if not await wait_for_worker(clients.registry, timeout):
                raise
        except (RpcError, TimeoutError) as exc:
            if isinstance(exc, RpcError) and worker is None:
                raise  # the ClusterClient already failed over as far as it could
            what = exc.code.name if isinstance(exc, RpcError) else f"no token for {token_timeout:g} s"
            print()
            log(f"worker {worker or '(not known yet)'} failed after {tokens} token(s) ({what}); "
                f"asking again on another worker (attempt {attempt + 1})")
            if worker is not None:
                clients.eject(worker)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
    raise AssertionError("unreachable")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--listen", default=os.environ.get("CLIENT_ADDR", "127.0.0.1:0"),
                        help="the client node's own RPC address [env CLIENT_ADDR]")
    parser.add_argument("--prompt", action="append", default=[], help="prompt to send (repeatable)")
    parser.add_argument("--count", type=int, default=0, help="prompts to send (0: until Ctrl-C)")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--strategy", default="round-robin", help="load balancer: round-robin, random, least-connections")
    parser.add_argument("--label", default=os.environ.get("WORKER_LABEL", ""),
                        help="only workers with this label tag [env WORKER_LABEL]")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per prompt")
    parser.add_argument("--token-timeout", type=float, default=1.0,
                        help="seconds without a token after which a worker counts as failed (default 1)")
    args = parser.parse_args(argv)
    require_security(args, parser)
    log = make_logger("client", args.json)
    server = make_server(args.certs)
    try:
        server.plugins.strategy("load-balancer", args.strategy)  # before joining: a typo is one line, not a member left behind
    except UnknownStrategyError as exc:
        parser.error(f"--strategy: {exc}")
    stop = stop_on_signals()
    cluster = await start_node(server, listen=args.listen, args=args, tags={"role": "client"}, seeds=[args.director])
    filter = "role=worker" + (f",label={args.label}" if args.label else "")
    prompts = itertools.cycle(args.prompt or DEFAULT_PROMPTS)
    served: dict[str, int] = {}
    failures = 0
    registry = clients = None
    try:
        registry = WorkerRegistry(cluster, strategy=args.strategy, filter=filter, plugins=server.plugins)
        clients = ClusterClient(registry, outgoing_config(args.certs), cluster=cluster, plugins=server.plugins)
        # Typed calls to workers matching the filter; the definition marks generate and infer idempotent.
        inference = Inference.client(clients, filter=filter)
        await registry.start()
        await clients.start()
        if not registry.workers() and not await wait_for_worker(registry, args.timeout):
            log(f"no worker matching {filter!r} joined within {args.timeout:g} s")
            return 1
        sent = 0
        while not stop.is_set() and (args.count == 0 or sent < args.count):
            prompt = next(prompts)
            started = time.monotonic()
            work = asyncio.ensure_future(stream_prompt(inference, clients, prompt, args.max_tokens, args.timeout, args.token_timeout, log))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
                break
            sent += 1
            try:
                worker, tokens = work.result()
            except RpcError as exc:
                failures += 1
                log(f"prompt {prompt!r} failed: {exc}")
                continue
            served[worker] = served.get(worker, 0) + 1
            log(f"{tokens} tokens from {worker} in {time.monotonic() - started:.2f} s")
    finally:
        if clients is not None:
            log(f"done: {sum(served.values())} prompt(s) answered, {failures} failed; per worker {served}; "
                f"retries {clients.stats.retries}, ejections {clients.stats.ejections}")
            await clients.close()
        if registry is not None:
            await registry.close()
        await leave_and_stop(server, cluster)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
