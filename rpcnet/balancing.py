"""The load-balancer interface.

A balancer is pure: given the eligible workers (never empty, never containing
failed, suspect or unhealthy members: the registry filters those out first,
see :class:`rpcnet.cluster.workers.WorkerRegistry`) and their live statistics, it
picks one. Randomness comes from the injected ``random.Random``, so a seeded
balancer is reproducible in tests. The registry passes workers sorted by
``node_id`` and keeps one balancer instance per tag filter, so a balancer may
keep state between picks (a round-robin cursor, say).
"""

from __future__ import annotations

import abc
import random
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs

from .health import HealthStatus

__all__ = ["WorkerView", "LoadBalancer", "effective_load"]


@attrs.frozen(kw_only=True)
class WorkerView:
    """A worker as a balancer sees it: identity, tags and live stats."""

    node_id: str
    address: tuple[str, int]
    tags: Mapping[str, str] = attrs.field(factory=dict)
    #: Calls sent to this worker and not yet finished (not assignments).
    in_flight: int = 0
    #: Exponentially weighted moving average of call latency, seconds.
    ewma_latency: float = 0.0
    #: Failed calls in the recent window.
    recent_errors: int = 0
    #: Calls finished in the same window, failed ones included.
    recent_calls: int = 0
    #: The status the worker publishes about itself (see :mod:`rpcnet.health`).
    health: HealthStatus = HealthStatus.HEALTHY


def effective_load(worker: WorkerView) -> float:
    """In-flight calls, inflated by the worker's recent error ratio.

    ``(in_flight + 1) / (1 - p) - 1`` with ``p = recent_errors / (recent_calls + 1)``.

    A worker that fails a fraction ``p`` of its calls needs ``1 / (1 - p)``
    attempts per success, so its queue counts that much longer. The ``+ 1``
    in the ratio keeps one unlucky call from condemning a worker: one failure
    out of one call makes ``p = 1/2``, not 1. A worker that only fails fast
    (no calls in flight, every recent call an error) scores about
    ``recent_errors``, so it stops looking idle and sheds traffic until its
    errors age out of the window; a worker without recent errors scores
    exactly ``in_flight``.
    """
    if worker.recent_errors <= 0:
        return float(worker.in_flight)
    calls = max(worker.recent_calls, worker.recent_errors)
    p = worker.recent_errors / (calls + 1)
    return (worker.in_flight + 1) / (1 - p) - 1


class LoadBalancer(abc.ABC):
    """Strategy interface; register with ``rpcnet_register_load_balancers``.

    Built as ``cls(options=<Options>, rng=...)`` when the class declares
    ``Options``, else ``cls(rng=...)``.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type | None] = None

    def __init__(self, options: Any = None, rng: random.Random | None = None) -> None:
        self.options = options
        self.rng = rng or random.Random()

    @abc.abstractmethod
    def select(self, workers: Sequence[WorkerView]) -> WorkerView:
        """Pick one of ``workers`` (non-empty, all eligible) and return it."""
