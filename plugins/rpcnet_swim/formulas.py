"""The pure arithmetic of SWIM + Lifeguard, as free functions.

Each matches memberlist's behaviour (``util.go``, ``suspicion.go``) so that
operators can carry their intuition over; the table tests pin the values.
"""

from __future__ import annotations

import math

__all__ = [
    "suspicion_timeout",
    "suspicion_confirmations_wanted",
    "remaining_suspicion_time",
    "retransmit_limit",
    "push_pull_interval",
    "scale_by_health",
]

#: Cluster size above which the push-pull interval grows (memberlist's 32).
PUSH_PULL_SCALE_THRESHOLD = 32


def suspicion_timeout(suspicion_mult: int, n: int, probe_interval: float) -> float:
    """Minimum suspicion timeout: ``mult * max(1, log10(n)) * probe_interval``.

    Kept at millisecond precision, like memberlist.
    """
    node_scale = max(1.0, math.log10(max(1, n)))
    return suspicion_mult * math.floor(node_scale * 1000.0) * probe_interval / 1000.0


def suspicion_confirmations_wanted(suspicion_mult: int, n: int) -> int:
    """Independent confirmations that drive a suspicion to its minimum.

    ``mult - 2``, so that the minimum is reached about two probe periods
    short of the nominal timeout; 0 when the cluster is too small to provide
    them (``n - 2`` members other than the suspect and ourselves).
    """
    k = suspicion_mult - 2
    if n - 2 < k:
        return 0
    return max(0, k)


def remaining_suspicion_time(n: int, k: int, elapsed: float, minimum: float, maximum: float) -> float:
    """Time left on a suspicion with ``n`` of ``k`` wanted confirmations.

    The timeout falls from ``maximum`` (no confirmation) to ``minimum`` (k of
    them) logarithmically; the result may be negative (already expired).
    """
    if k < 1:
        timeout = minimum
    else:
        frac = math.log(n + 1.0) / math.log(k + 1.0)
        raw = maximum - frac * (maximum - minimum)
        timeout = max(minimum, math.floor(1000.0 * raw) / 1000.0)
    return timeout - elapsed


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    """How many times one update is piggybacked: ``mult * ceil(log10(n + 1))``."""
    return retransmit_mult * math.ceil(math.log10(n + 1))


def push_pull_interval(interval: float, n: int) -> float:
    """The push-pull interval, stretched past 32 members to keep sync load flat."""
    if n <= PUSH_PULL_SCALE_THRESHOLD:
        return interval
    multiplier = math.ceil(math.log2(n) - math.log2(PUSH_PULL_SCALE_THRESHOLD)) + 1
    return multiplier * interval


def scale_by_health(timeout: float, health_score: int) -> float:
    """Lifeguard's local health multiplier: ``timeout * (score + 1)``."""
    return timeout * (health_score + 1)
