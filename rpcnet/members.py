"""Members as the local node sees them: :class:`Member` and :class:`MemberState`.

Shared by :mod:`rpcnet.membership` (the cores that produce them) and
:mod:`rpcnet.events` (the transitions that carry them), which import this
module and never each other the other way round.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from .transport import Address

__all__ = ["Address", "MemberState", "Member", "freeze_tags"]


class MemberState(enum.Enum):
    """Where a member stands in the local node's view."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    #: Declared failed by the failure detector (memberlist's "dead").
    FAILED = "failed"
    #: Left gracefully; never reported as failed.
    LEFT = "left"


def _address(value: Any) -> Address:
    host, port = value
    return (str(host), int(port))


def freeze_tags(value: Mapping[str, str] | None) -> Mapping[str, str]:
    """A read-only copy of ``value`` with every key and value a ``str``."""
    return MappingProxyType({str(k): str(v) for k, v in (value or {}).items()})


@attrs.frozen(kw_only=True)
class Member:
    """A snapshot of one member as seen by the local node.

    ``tags`` is read-only (a ``MappingProxyType``); build changed tags with
    ``{**member.tags, "key": "value"}``.
    """

    id: str
    address: Address = attrs.field(converter=_address)
    tags: Mapping[str, str] = attrs.field(factory=dict, converter=freeze_tags, hash=False)
    #: Only the member itself raises it (to refute a suspicion, change tags or leave).
    incarnation: int = 0
    state: MemberState = MemberState.ALIVE
