"""Test helpers that ship with rpcnet, for plugin authors as much as for us.

- :class:`Simulator`: a seeded, virtual-time network that runs membership
  cores (any :class:`rpcnet.membership.Membership`) with loss, delay,
  one-way drops, partitions, crashes and restarts, and replays a seed to a
  byte-identical event log.
- :func:`membership_factory`: builds cores by strategy name through a plugin
  host, so a third-party failure detector or membership protocol is tested
  exactly as it would be selected in configuration.
- :func:`wait_until`: wait for a condition with a deadline (real-network tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..plugins import PluginHost, make_plugin_manager
from .simulator import CoreFactory, NodeSpec, NodeStats, SimNode, Simulator
from .waiting import wait_until

__all__ = ["Simulator", "SimNode", "NodeSpec", "NodeStats", "CoreFactory", "membership_factory", "wait_until"]


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

    ``options`` and ``detector_options`` are the strategies' ``Options``
    instances or mappings of them; ``failure_detector=None`` runs the
    membership protocol without one. Each node gets its own detector.
    """
    host = host if host is not None else make_plugin_manager()
    membership_cls = host.strategy("membership", membership)
    if failure_detector is not None:
        host.strategy("failure-detector", failure_detector)  # fail now on an unknown name

    def build(spec: NodeSpec) -> Any:
        detector = None
        if failure_detector is not None:
            detector = host.create("failure-detector", failure_detector, _as_mapping(detector_options))
        opts = options
        if opts is not None and isinstance(opts, Mapping):
            from ..registry import build_options

            opts = build_options("membership", membership, membership_cls, opts)
        return membership_cls(
            node_id=spec.node_id,
            address=spec.address,
            tags=tags,
            options=opts,
            failure_detector=detector,
            rng=spec.rng,
        )

    return build


def _as_mapping(options: Any) -> Any:
    return options if options is not None else {}
