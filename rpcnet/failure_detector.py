"""The failure-detector interface.

A failure detector is a per-peer, sans-IO accumulator of arrival times: the
membership protocol calls :meth:`FailureDetector.heartbeat` when a heartbeat
from a peer arrives and asks :meth:`FailureDetector.is_available` (or reads
the suspicion level :meth:`FailureDetector.phi`) when it decides whether to
check on that peer. Time is always passed in (seconds, any monotonic origin),
so a detector runs the same under a virtual clock as under ``loop.time()``.

A detector never declares a peer failed by itself: the membership protocol
confirms with its own probes and gossips a suspicion, so one slow link does
not remove a member.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

__all__ = ["FailureDetector"]


class FailureDetector(abc.ABC):
    """Strategy interface; register with ``rpcnet_register_failure_detectors``.

    Peers are identified by node id. A peer never heard from has no history
    and is available (``phi == 0.0``): nothing is suspected before the first
    heartbeat.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type | None] = None

    def __init__(self, options: Any = None) -> None:
        self.options = options

    @abc.abstractmethod
    def heartbeat(self, peer: str, now: float) -> None:
        """Record that a heartbeat from ``peer`` arrived at ``now``."""

    @abc.abstractmethod
    def phi(self, peer: str, now: float) -> float:
        """The suspicion level of ``peer`` at ``now``: 0.0 for healthy, finite, never NaN."""

    @abc.abstractmethod
    def is_available(self, peer: str, now: float) -> bool:
        """False once the suspicion level has crossed the detector's threshold."""

    @abc.abstractmethod
    def remove(self, peer: str) -> None:
        """Forget ``peer``'s history (it left, or is no longer monitored here)."""

    def peers(self) -> list[str]:
        """The peers with a history, in first-heartbeat order."""
        return []
