"""Partition policies: is the local node on the minority side?

A policy looks only at the local view: the members it can reach (alive,
itself included) and those it cannot (suspect or failed; members that left do
not count). It is pure, so a driver or a test can ask it directly.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import ClassVar

__all__ = ["PartitionPolicy", "KeepMajority", "StaticQuorum", "NoPartitionPolicy", "make_partition_policy"]


class PartitionPolicy:
    name: ClassVar[str] = ""

    def in_minority(self, reachable: Collection[str], failed: Collection[str]) -> bool:
        raise NotImplementedError


class KeepMajority(PartitionPolicy):
    """The side with more than half of the known members keeps going.

    On an exact split the side holding the lowest member id is the majority,
    so two halves never both believe they are in charge.
    """

    name: ClassVar[str] = "keep-majority"

    def in_minority(self, reachable: Collection[str], failed: Collection[str]) -> bool:
        known = len(reachable) + len(failed)
        if 2 * len(reachable) != known:
            return 2 * len(reachable) < known
        if not failed:
            return False
        return min(failed) < min(reachable)


class StaticQuorum(PartitionPolicy):
    """The side that reaches at least ``quorum_size`` members keeps going."""

    name: ClassVar[str] = "static-quorum"

    def __init__(self, quorum_size: int) -> None:
        self.quorum_size = quorum_size

    def in_minority(self, reachable: Collection[str], failed: Collection[str]) -> bool:
        return len(reachable) < self.quorum_size


class NoPartitionPolicy(PartitionPolicy):
    """Never reports a partition."""

    name: ClassVar[str] = "none"

    def in_minority(self, reachable: Collection[str], failed: Collection[str]) -> bool:
        return False


def make_partition_policy(name: str, quorum_size: int | None = None) -> PartitionPolicy:
    if name == KeepMajority.name:
        return KeepMajority()
    if name == StaticQuorum.name:
        if quorum_size is None:
            raise ValueError("the 'static-quorum' partition policy needs quorum_size")
        return StaticQuorum(quorum_size)
    if name == NoPartitionPolicy.name:
        return NoPartitionPolicy()
    raise ValueError(f"unknown partition policy {name!r}; choose keep-majority, static-quorum or none")
