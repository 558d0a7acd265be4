"""Which membership update wins: the one module that owns the rules.

Every update about a member carries the member's incarnation. Updates are
ordered by ``(incarnation, rank)`` with ranks ``alive < suspect < failed <
left``: an update applies exactly when it is strictly greater than what the
local node holds. So a suspicion at incarnation *i* is cleared only by an
alive message with an incarnation above *i*, which only the member itself can
produce (it *refutes*), and failed/left are final for an incarnation. Because
this is a total order, every node that sees the same set of updates, in any
order, ends in the same state: the property the tests check.

Two cases are not a plain "apply":

- A suspicion equal to the one held is a *confirmation* (Lifeguard counts
  distinct sources to shorten the suspicion timeout).
- An update about the local node that would make it suspect, failed or left,
  or an alive claim that disagrees with it, is *refuted*: the node raises its
  own incarnation above the claim and announces itself alive. Only a node
  raises its own incarnation. A node that is leaving refutes nothing.

Updates about a member never heard of apply only when they say alive.
"""

from __future__ import annotations

import enum

from rpcnet.membership import MemberState

from .messages import Alive, Dead, Suspect, Update

__all__ = ["Verdict", "RANK", "update_state", "judge", "refuted_incarnation", "transition_event"]

RANK: dict[MemberState, int] = {
    MemberState.ALIVE: 0,
    MemberState.SUSPECT: 1,
    MemberState.FAILED: 2,
    MemberState.LEFT: 3,
}


class Verdict(enum.Enum):
    IGNORE = "ignore"
    APPLY = "apply"
    CONFIRM = "confirm"
    REFUTE = "refute"


def update_state(update: Update) -> MemberState:
    """The state an update claims for its member."""
    if isinstance(update, Alive):
        return MemberState.ALIVE
    if isinstance(update, Suspect):
        return MemberState.SUSPECT
    if isinstance(update, Dead):
        return MemberState.LEFT if update.source == update.node else MemberState.FAILED
    raise TypeError(f"not a membership update: {update!r}")


def judge(
    current: MemberState | None,
    current_incarnation: int,
    claimed: MemberState,
    claimed_incarnation: int,
    *,
    about_self: bool = False,
    leaving: bool = False,
    same_alive_content: bool = True,
) -> Verdict:
    """Decide what to do with an update; pure.

    ``current`` is None for a member never heard of. For the local node,
    ``same_alive_content`` says whether an alive claim at our own incarnation
    carries our current address and tags.
    """
    if about_self:
        if leaving or claimed_incarnation < current_incarnation:
            return Verdict.IGNORE
        if claimed is MemberState.ALIVE and claimed_incarnation == current_incarnation and same_alive_content:
            return Verdict.IGNORE
        return Verdict.REFUTE
    if current is None:
        return Verdict.APPLY if claimed is MemberState.ALIVE else Verdict.IGNORE
    if (claimed_incarnation, RANK[claimed]) > (current_incarnation, RANK[current]):
        return Verdict.APPLY
    if claimed is MemberState.SUSPECT and current is MemberState.SUSPECT and claimed_incarnation == current_incarnation:
        return Verdict.CONFIRM
    return Verdict.IGNORE


def refuted_incarnation(own: int, accused: int) -> int:
    """The incarnation a node announces to beat a claim made at ``accused``."""
    return max(own, accused) + 1


#: (previous state, new state) -> event kind; None: first time seen.
_TRANSITIONS: dict[tuple[MemberState | None, MemberState], str] = {
    (None, MemberState.ALIVE): "joined",
    (MemberState.LEFT, MemberState.ALIVE): "joined",
    (MemberState.ALIVE, MemberState.SUSPECT): "suspect",
    (MemberState.FAILED, MemberState.SUSPECT): "suspect",
    (MemberState.LEFT, MemberState.SUSPECT): "suspect",
    (MemberState.SUSPECT, MemberState.ALIVE): "recovered",
    (MemberState.FAILED, MemberState.ALIVE): "recovered",
    (MemberState.ALIVE, MemberState.FAILED): "failed",
    (MemberState.SUSPECT, MemberState.FAILED): "failed",
    (MemberState.LEFT, MemberState.FAILED): "failed",
    (MemberState.ALIVE, MemberState.LEFT): "left",
    (MemberState.SUSPECT, MemberState.LEFT): "left",
    (MemberState.FAILED, MemberState.LEFT): "left",
}


def transition_event(previous: MemberState | None, new: MemberState) -> str | None:
    """The event kind a state change reports, or None when the state did not change."""
    return _TRANSITIONS.get((previous, new))
