"""The director: the seed node workers and clients join through.

    python -m rpcnet.demo.director               # listens on DIRECTOR_ADDR

It serves no application method; it keeps the membership (role=director),
prints every membership change, and a table of members every
``--table-every`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..cluster import Cluster
from .node import (
    add_common_arguments,
    make_logger,
    make_server,
    ready_line,
    require_security,
    serve_until_stopped,
    start_node,
    stop_on_signals,
)


def members_table(cluster: Cluster) -> str:
    rows = [("MEMBER", "STATE", "RPC", "TAGS")]
    for member in sorted(cluster.members(), key=lambda m: m.id):
        tags = ",".join(f"{k}={v}" for k, v in sorted(member.tags.items()) if not k.startswith("rpcnet."))
        health = member.tags.get("rpcnet.health")
        if health:
            tags += f" ({health})"
        rows.append((member.id, member.state.value, member.tags.get("rpcnet.rpc", "-"), tags))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--table-every", type=float, default=10.0,
                        help="seconds between member tables (0: never)")
    args = parser.parse_args(argv)
    require_security(args, parser)
    log = make_logger("director", args.json)
    server = make_server(args.certs)
    stop = stop_on_signals()
    cluster = await start_node(server, listen=args.director, args=args, tags={"role": "director"}, seeds=(),
                               node_id="director")
    address = ready_line(server, cluster)["rpc"]
    greeting = f"listening on {address}; workers and clients join with DIRECTOR_ADDR={address}"
    await serve_until_stopped(
        server, cluster, args=args, stop=stop, log=log, greeting=greeting,
        every=args.table_every if args.table_every > 0 else None,
        tick=None if args.json else lambda: print(members_table(cluster), flush=True),
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
