"""Lifeguard's two pieces of local state: the health score and suspicion timers."""

from __future__ import annotations

from .formulas import remaining_suspicion_time, scale_by_health

__all__ = ["Awareness", "Suspicion"]


class Awareness:
    """Local health score (Lifeguard's LHM): 0 is healthy, ``maximum - 1`` the worst.

    It rises when this node misses acks and nacks it should have received or
    has to refute a suspicion about itself, and falls with every successful
    probe. A node that is itself slow or lossy thus probes less often and
    waits longer, instead of accusing healthy peers.
    """

    __slots__ = ("maximum", "score")

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.score = 0

    def apply_delta(self, delta: int) -> None:
        self.score = min(max(self.score + delta, 0), self.maximum - 1)

    def scale(self, timeout: float) -> float:
        return scale_by_health(timeout, self.score)


class Suspicion:
    """The timer of one suspected member, shortened by independent confirmations.

    It starts at ``maximum`` and falls towards ``minimum`` as distinct members
    report the same suspicion (``k`` of them reach the minimum). The source
    of the first report does not count again, since our own suspicion may be
    gossiped back to us.
    """

    __slots__ = ("incarnation", "k", "minimum", "maximum", "start", "confirmations", "sources")

    def __init__(self, *, source: str, incarnation: int, k: int, minimum: float, maximum: float, start: float) -> None:
        self.incarnation = incarnation
        self.k = k
        self.minimum = minimum
        self.maximum = maximum
        self.start = start
        self.confirmations = 0
        self.sources: dict[str, None] = {source: None}

    @property
    def deadline(self) -> float:
        return self.start + remaining_suspicion_time(self.confirmations, self.k, 0.0, self.minimum, self.maximum)

    def confirm(self, source: str) -> bool:
        """Count ``source``; True if it was new information worth re-gossiping."""
        if self.confirmations >= self.k or source in self.sources:
            return False
        self.sources[source] = None
        self.confirmations += 1
        return True
