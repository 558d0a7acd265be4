"""The load-balancer interface.

A balancer is pure: given the eligible workers (never empty, never containing
failed, suspect or unhealthy members: the registry filters those out first)
and their live statistics, it picks one. Randomness comes from the injected
``random.Random``, so a seeded balancer is reproducible in tests.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs

__all__ = ["WorkerView", "LoadBalancer"]


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


class LoadBalancer(abc.ABC):
    """Strategy interface; register with ``rpcnet_register_load_balancers``."""

    name: ClassVar[str] = ""
    Options: ClassVar[type | None] = None

    def __init__(self, options: Any = None, rng: random.Random | None = None) -> None:
        self.options = options
        self.rng = rng or random.Random()

    @abc.abstractmethod
    def select(self, workers: Sequence[WorkerView]) -> WorkerView:
        """Pick one of ``workers`` (non-empty, all eligible)."""
