"""Bundled rpcnet plugin ``rpcnet_swim``: the ``swim`` membership protocol.

SWIM with the Lifeguard extensions, as memberlist implements it, written as a
sans-IO core (:class:`SwimMembership`); see :mod:`rpcnet.membership` for how a
driver runs it and ``docs/cluster.md`` for the protocol.
"""

from __future__ import annotations

from rpcnet import hookimpl
from rpcnet.hookspecs import Register

from .core import SwimMembership
from .options import SwimOptions
from .partition import KeepMajority, NoPartitionPolicy, PartitionPolicy, StaticQuorum, make_partition_policy

__all__ = [
    "SwimMembership",
    "SwimOptions",
    "PartitionPolicy",
    "KeepMajority",
    "StaticQuorum",
    "NoPartitionPolicy",
    "make_partition_policy",
    "rpcnet_register_membership",
]


@hookimpl
def rpcnet_register_membership(register: Register) -> None:
    register(SwimMembership.name, SwimMembership)
