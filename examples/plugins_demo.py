"""The plugin system end to end, without a network.

Builds a plugin manager (builtins + every installed ``rpcnet`` entry point),
prints the strategies it found by kind, selects the third-party ``p2c`` load
balancer by name with options, and shows it spreading 1,000 picks over three
workers whose load differs. Run it with ``make demo`` or
``.venv/bin/python examples/plugins_demo.py``.
"""

from __future__ import annotations

import collections
import random
import sys

from rpcnet import UnknownStrategyError, make_plugin_manager
from rpcnet.balancing import WorkerView
from rpcnet.registry import KINDS


def main() -> int:
    host = make_plugin_manager()

    print("Strategies by kind (name <- plugin [distribution]):")
    for kind in KINDS:
        entries = host.registry.entries(kind)
        listed = ", ".join(f"{e.name} <- {e.plugin} [{e.distribution or 'in code'}]" for e in entries)
        print(f"  {kind:17} {listed or '(none installed yet)'}")
    for broken in host.broken:
        print(f"  broken plugin {broken.name!r}: {broken.error}")

    try:
        balancer = host.create("load-balancer", "p2c", {"choices": 2}, rng=random.Random(7))
    except UnknownStrategyError as exc:
        print(f"\n{exc}\nInstall the example plugin: pip install -e examples/plugins/rpcnet-p2c")
        return 1
    print(f"\nSelected load balancer {balancer.name!r}: {type(balancer).__module__}.{type(balancer).__name__}")

    workers = [
        WorkerView(node_id="idle", address=("127.0.0.1", 7001), in_flight=0, ewma_latency=0.002),
        WorkerView(node_id="busy", address=("127.0.0.1", 7002), in_flight=8, ewma_latency=0.004),
        WorkerView(node_id="swamped", address=("127.0.0.1", 7003), in_flight=40, ewma_latency=0.020),
    ]
    picks = collections.Counter(balancer.select(workers).node_id for _ in range(1000))
    print("1,000 picks over three workers (in_flight 0 / 8 / 40):")
    for worker in workers:
        print(f"  {worker.node_id:8} in_flight={worker.in_flight:<3} picked {picks[worker.node_id]:4} times")
    # Two distinct draws out of three: the most loaded worker can never win.
    assert picks["swamped"] == 0 and picks["idle"] > picks["busy"] > 0, picks

    try:
        host.create("load-balancer", "p2-c")
    except UnknownStrategyError as exc:
        print(f"\nAsking for a name nobody registered:\n  {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
