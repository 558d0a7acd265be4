"""Test helpers that ship with rpcnet, for plugin authors as much as for us.

- :class:`Simulator`: a seeded, virtual-time network that runs membership
  cores (any :class:`rpcnet.membership.Membership`) with loss, delay,
  one-way drops, partitions, crashes and restarts, and replays a seed to a
  byte-identical event log.
- :func:`membership_factory`: builds cores by strategy name through a plugin
  host, so a third-party failure detector or membership protocol is tested
  exactly as it would be selected in configuration.
- :func:`wait_until`: wait for a condition with a deadline (real-network tests).
- :mod:`rpcnet.testing.strategies`: :func:`run_health_check`,
  :class:`LocalCluster` and :func:`exercise_balancer`, to test a health
  check or a load balancer against its contract and a small cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..membership import build_core
from ..plugins import PluginHost, make_plugin_manager
from .simulator import DEFAULT_DATAGRAM_BUDGET, CoreFactory, NodeSpec, NodeStats, SimNode, Simulator
from .strategies import (
    BalancerContractError,
    BalancerTrial,
    HealthCheckContractError,
    LocalCluster,
    SimulatedWorker,
    exercise_balancer,
    run_health_check,
)
from .waiting import wait_until

__all__ = [
    "Simulator",
    "SimNode",
    "NodeSpec",
    "NodeStats",
    "CoreFactory",
    "DEFAULT_DATAGRAM_BUDGET",
    "membership_factory",
    "wait_until",
    "run_health_check",
    "HealthCheckContractError",
    "LocalCluster",
    "exercise_balancer",
    "SimulatedWorker",
    "BalancerTrial",
    "BalancerContractError",
]


def membership_factory(
    membership: str = "swim",
    *,
    options: Any = None,
    failure_detector: str | None = "phi-accrual",
    detector_options: Mapping[str, Any] | Any = None,
    tags: Mapping[str, str] | None = None,
    host: PluginHost | None = None,
) -> CoreFactory:
    """A :class:`Simulator` core factory for the named strategies.

    Cores are built by :func:`rpcnet.membership.build_core`, the factory the
    production driver uses, with the simulator's datagram budget.
    ``options`` and ``detector_options`` are the strategies' ``Options``
    instances or mappings of them, or (for ``options``) a function of the
    :class:`NodeSpec` returning either; ``failure_detector=None`` runs the
    membership protocol without one. Each node gets its own detector.
    """
    host = host if host is not None else make_plugin_manager()
    host.strategy("membership", membership)  # fail now on an unknown name
    if failure_detector is not None:
        host.strategy("failure-detector", failure_detector)

    def build(spec: NodeSpec) -> Any:
        opts = options(spec) if callable(options) else options
        return build_core(
            host,
            membership,
            opts,
            node_id=spec.node_id,
            address=spec.address,
            tags=tags,
            failure_detector=failure_detector,
            detector_options=detector_options,
            datagram_budget=spec.datagram_budget,
            rng=spec.rng,
        )

    return build
