"""Bundled rpcnet plugin: the ``round-robin``, ``random`` and ``least-connections`` load balancers.

All three are pure: no clock, no global random state (each draws from its
injected ``random.Random``), and they see only the eligible workers the
registry hands them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, ClassVar

from rpcnet import hookimpl
from rpcnet.balancing import LoadBalancer, WorkerView, effective_load
from rpcnet.hookspecs import Register

__all__ = ["RoundRobin", "RandomChoice", "LeastConnections"]


def _require_workers(name: str, workers: Sequence[WorkerView]) -> None:
    if not workers:
        raise ValueError(f"{name}: select() needs at least one eligible worker")


class RoundRobin(LoadBalancer):
    """Each worker in turn, in ``node_id`` order.

    The cursor is the last worker picked, not an index, so a worker joining
    or leaving neither resets the rotation nor makes it skip or repeat anyone:
    the next pick is the first worker whose id sorts after the last one. The
    first pick starts at a worker drawn from the rng, so many clients started
    together do not all begin with the same worker.
    """

    name: ClassVar[str] = "round-robin"

    def __init__(self, options: Any = None, rng: random.Random | None = None) -> None:
        super().__init__(options, rng)
        self.last: str | None = None

    def select(self, workers: Sequence[WorkerView]) -> WorkerView:
        _require_workers(self.name, workers)
        if self.last is None:
            chosen = sorted(workers, key=lambda w: w.node_id)[self.rng.randrange(len(workers))]
        else:
            # One pass: the smallest id after the cursor, else the smallest id (wrap around).
            last, first, after = self.last, workers[0], None
            for worker in workers:
                node_id = worker.node_id
                if node_id > last and (after is None or node_id < after.node_id):
                    after = worker
                if node_id < first.node_id:
                    first = worker
            chosen = after if after is not None else first
        self.last = chosen.node_id
        return chosen


class RandomChoice(LoadBalancer):
    """A worker drawn uniformly from the injected rng."""

    name: ClassVar[str] = "random"

    def select(self, workers: Sequence[WorkerView]) -> WorkerView:
        _require_workers(self.name, workers)
        return workers[self.rng.randrange(len(workers))]


class LeastConnections(LoadBalancer):
    """The worker with the lowest :func:`rpcnet.balancing.effective_load`.

    The load is the number of calls in flight (calls, not assignments: a
    worker that answers quickly frees its slots quickly), inflated by the
    worker's recent error ratio so that a worker that only fails fast does
    not look idle. Ties are drawn from the rng with weights inversely
    proportional to ``ewma_latency``, so similar workers share the traffic,
    a clearly slower one gets proportionally less, and nobody is starved.
    """

    name: ClassVar[str] = "least-connections"

    def select(self, workers: Sequence[WorkerView]) -> WorkerView:
        _require_workers(self.name, workers)
        if len(workers) == 1:
            return workers[0]
        loads = [effective_load(worker) for worker in workers]
        lowest = min(loads)
        tied = [worker for worker, load in zip(workers, loads) if load == lowest]
        if len(tied) == 1:
            return tied[0]
        # Among equally loaded workers, draw with weights inversely
        # proportional to latency: a worker twice as fast gets twice the
        # share, and a slower one still gets some, so its latency figure stays
        # current (a strict "fastest wins" would starve the others at low load
        # and freeze their figures). A worker with no latency yet counts as
        # the fastest.
        known = [worker.ewma_latency for worker in tied if worker.ewma_latency > 0]
        floor = min(known) if known else 1.0
        weights = [1.0 / (worker.ewma_latency if worker.ewma_latency > 0 else floor) for worker in tied]
        point = self.rng.random() * sum(weights)
        for worker, weight in zip(tied, weights):
            point -= weight
            if point < 0:
                return worker
        return tied[-1]


@hookimpl
def rpcnet_register_load_balancers(register: Register) -> None:
    for cls in (RoundRobin, RandomChoice, LeastConnections):
        register(cls.name, cls)
