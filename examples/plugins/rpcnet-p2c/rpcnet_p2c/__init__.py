"""rpcnet plugin: the ``p2c`` ("power of two choices") load balancer.

Picking the less loaded of two workers drawn at random avoids the herding of
"least connections" (every client piling onto the same idle worker) while
keeping most of its benefit (Mitzenmacher, *The Power of Two Choices in
Randomized Load Balancing*).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import ClassVar

import attrs

from rpcnet import hookimpl
from rpcnet.balancing import LoadBalancer, WorkerView
from rpcnet.hookspecs import Register

__all__ = ["P2COptions", "PowerOfTwoChoices"]
__version__ = "0.1.0"


def _at_least_two(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if value < 2:
        raise ValueError(f"{attribute.name} must be >= 2 (1 would be plain random choice), got {value}")


@attrs.frozen(kw_only=True)
class P2COptions:
    #: How many distinct workers to sample before taking the least loaded.
    choices: int = attrs.field(default=2, converter=int, validator=_at_least_two)


class PowerOfTwoChoices(LoadBalancer):
    """Sample ``choices`` workers at random; keep the one with the fewest
    calls in flight, then the lowest ``ewma_latency``."""

    name: ClassVar[str] = "p2c"
    Options: ClassVar[type] = P2COptions

    def __init__(self, options: P2COptions | None = None, rng: random.Random | None = None) -> None:
        super().__init__(options or P2COptions(), rng)

    def select(self, workers: Sequence[WorkerView]) -> WorkerView:
        if not workers:
            raise ValueError("p2c: select() needs at least one eligible worker")
        if len(workers) == 1:
            return workers[0]
        sampled = self.rng.sample(workers, min(self.options.choices, len(workers)))
        # min() keeps the first of equals, so a full tie falls to the random draw.
        return min(sampled, key=lambda w: (w.in_flight, w.ewma_latency))


@hookimpl
def rpcnet_register_load_balancers(register: Register) -> None:
    register(PowerOfTwoChoices.name, PowerOfTwoChoices)
