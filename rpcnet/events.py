"""Cluster events: one frozen value per membership transition.

The membership core emits them in order, once per transition the local node
observes; drivers hand them to subscribers and to the ``rpcnet_cluster_event``
hook. ``at`` is the core's clock (``now``) when the transition happened.

Member transitions:

=================== ======================================================
``joined``          a member appeared, or came back after leaving
``suspect``         a member stopped answering probes; it may still refute
``failed``          a suspicion ran out; the member is considered down
``recovered``       a suspect or failed member proved alive again
``left``            a member announced a graceful leave (never ``failed``)
``tags-updated``    an alive member changed its tags
=================== ======================================================

Partition transitions (decided by the partition policy of the local node):
``partition-detected`` when the local node finds itself on the minority side,
``partition-healed`` when it no longer is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import attrs

from .members import Member, freeze_tags

__all__ = [
    "ClusterEvent",
    "MemberEvent",
    "MemberJoined",
    "MemberSuspect",
    "MemberFailed",
    "MemberRecovered",
    "MemberLeft",
    "MemberTagsUpdated",
    "PartitionDetected",
    "PartitionHealed",
    "EVENT_KINDS",
]


@attrs.frozen(kw_only=True)
class ClusterEvent:
    """Base of every cluster event."""

    kind: ClassVar[str] = ""
    #: The core's clock when the transition happened.
    at: float

    def describe(self) -> str:
        """A one-line, deterministic description (used by event logs)."""
        return self.kind


@attrs.frozen(kw_only=True)
class MemberEvent(ClusterEvent):
    """A transition of one member; ``member`` is the member after it."""

    member: Member

    def describe(self) -> str:
        m = self.member
        return f"{self.kind} {m.id} inc={m.incarnation}"


@attrs.frozen(kw_only=True)
class MemberJoined(MemberEvent):
    kind: ClassVar[str] = "joined"


@attrs.frozen(kw_only=True)
class MemberSuspect(MemberEvent):
    kind: ClassVar[str] = "suspect"


@attrs.frozen(kw_only=True)
class MemberFailed(MemberEvent):
    kind: ClassVar[str] = "failed"


@attrs.frozen(kw_only=True)
class MemberRecovered(MemberEvent):
    kind: ClassVar[str] = "recovered"


@attrs.frozen(kw_only=True)
class MemberLeft(MemberEvent):
    kind: ClassVar[str] = "left"


@attrs.frozen(kw_only=True)
class MemberTagsUpdated(MemberEvent):
    kind: ClassVar[str] = "tags-updated"
    previous_tags: Mapping[str, str] = attrs.field(factory=dict, converter=freeze_tags, hash=False)

    def describe(self) -> str:
        tags = ",".join(f"{k}={v}" for k, v in sorted(self.member.tags.items()))
        return f"{super().describe()} tags={tags}"


@attrs.frozen(kw_only=True)
class PartitionEvent(ClusterEvent):
    """The local node's verdict on which side of a partition it is."""

    #: Name of the partition policy that decided.
    policy: str
    #: Members the local node can reach (alive or suspect, itself included).
    reachable: int
    #: Members the policy counts (reachable plus those failed, not left).
    known: int

    def describe(self) -> str:
        return f"{self.kind} policy={self.policy} reachable={self.reachable} known={self.known}"


@attrs.frozen(kw_only=True)
class PartitionDetected(PartitionEvent):
    kind: ClassVar[str] = "partition-detected"


@attrs.frozen(kw_only=True)
class PartitionHealed(PartitionEvent):
    kind: ClassVar[str] = "partition-healed"


#: kind -> class, for every concrete event.
EVENT_KINDS: dict[str, type[ClusterEvent]] = {
    cls.kind: cls
    for cls in (
        MemberJoined,
        MemberSuspect,
        MemberFailed,
        MemberRecovered,
        MemberLeft,
        MemberTagsUpdated,
        PartitionDetected,
        PartitionHealed,
    )
}
