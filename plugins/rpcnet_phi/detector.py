"""Phi Accrual failure detection (Hayashibara et al.), with Akka's semantics.

phi is ``-log10`` of the probability that a heartbeat still arrives given the
time since the last one, assuming inter-arrival times are normally
distributed with the mean and standard deviation of a sliding window. phi = 8
means roughly a 1e-8 chance that the peer is merely late.

Semantics kept from Akka's ``PhiAccrualFailureDetector``:

- The first heartbeat seeds the window with two samples, ``estimate -/+
  estimate/4``, so phi is meaningful from the second heartbeat on.
- ``acceptable_heartbeat_pause`` is added to the mean: that much silence
  costs nothing (GC pauses, scheduling hiccups).
- The standard deviation is never below ``min_std_deviation``, so a perfectly
  regular peer does not become suspect after a few milliseconds of jitter.
- An interval that ended while the peer was already unavailable is not added
  to the window (a long outage would skew the statistics).
- A peer never heard from has phi 0.
"""

from __future__ import annotations

import math
from collections import deque
from typing import ClassVar

import attrs

from rpcnet.config import at_least, non_negative, positive
from rpcnet.failure_detector import FailureDetector

__all__ = ["phi", "HeartbeatHistory", "PhiOptions", "PhiAccrualDetector"]

_LN10 = math.log(10.0)


def phi(elapsed: float, mean: float, std_deviation: float) -> float:
    """phi for ``elapsed`` seconds of silence, given the arrival statistics.

    Uses the logistic approximation of the normal CDF that Akka uses,
    rearranged so that it neither overflows nor returns ``inf``:
    ``phi = log10(1 + exp(z))`` with ``z = y * (1.5976 + 0.070566 * y**2)``
    and ``y = (elapsed - mean) / std_deviation``. ``std_deviation`` must be > 0.
    """
    y = (elapsed - mean) / std_deviation
    z = y * (1.5976 + 0.070566 * y * y)
    if z > 0.0:
        return z / _LN10 + math.log1p(math.exp(-z)) / _LN10
    return math.log1p(math.exp(z)) / _LN10


@attrs.frozen(kw_only=True)
class PhiOptions:
    """Options of ``phi-accrual``; Akka's defaults except the acceptable pause."""

    #: phi at which a peer is considered unavailable.
    threshold: float = attrs.field(default=8.0, converter=float, validator=positive)
    #: Samples kept in the sliding window.
    max_sample_size: int = attrs.field(default=1000, converter=int, validator=at_least(2))
    #: Floor of the standard deviation, seconds.
    min_std_deviation: float = attrs.field(default=0.1, converter=float, validator=positive)
    #: Silence tolerated on top of the mean interval, seconds. 0 by default:
    #: the membership protocol confirms every crossing with a probe, so a
    #: pause would only delay detection.
    acceptable_heartbeat_pause: float = attrs.field(default=0.0, converter=float, validator=non_negative)
    #: Expected interval used to seed the window at the first heartbeat, seconds.
    first_heartbeat_estimate: float = attrs.field(default=1.0, converter=float, validator=positive)


class HeartbeatHistory:
    """A sliding window of inter-arrival intervals with running sums."""

    __slots__ = ("max_size", "_intervals", "_sum", "_squares")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._intervals: deque[float] = deque()
        self._sum = 0.0
        self._squares = 0.0

    def add(self, interval: float) -> None:
        if len(self._intervals) >= self.max_size:
            old = self._intervals.popleft()
            self._sum -= old
            self._squares -= old * old
        self._intervals.append(interval)
        self._sum += interval
        self._squares += interval * interval

    def __len__(self) -> int:
        return len(self._intervals)

    @property
    def mean(self) -> float:
        return self._sum / len(self._intervals)

    @property
    def variance(self) -> float:
        # Running sums can leave a tiny negative residue for constant samples.
        return max(0.0, self._squares / len(self._intervals) - self.mean**2)

    @property
    def std_deviation(self) -> float:
        return math.sqrt(self.variance)


class _PeerState:
    __slots__ = ("history", "last")

    def __init__(self, history: HeartbeatHistory, last: float) -> None:
        self.history = history
        self.last = last


class PhiAccrualDetector(FailureDetector):
    """``phi-accrual``: one sliding window of arrival intervals per peer."""

    name: ClassVar[str] = "phi-accrual"
    Options: ClassVar[type] = PhiOptions

    def __init__(self, options: PhiOptions | None = None) -> None:
        super().__init__(options if options is not None else PhiOptions())
        self._peers: dict[str, _PeerState] = {}

    def heartbeat(self, peer: str, now: float) -> None:
        state = self._peers.get(peer)
        if state is None:
            self._peers[peer] = _PeerState(self._seed_history(), now)
            return
        if self.is_available(peer, now):
            state.history.add(now - state.last)
        state.last = now

    def phi(self, peer: str, now: float) -> float:
        state = self._peers.get(peer)
        if state is None:
            return 0.0
        opts = self.options
        history = state.history
        std = max(history.std_deviation, opts.min_std_deviation)
        return phi(now - state.last, history.mean + opts.acceptable_heartbeat_pause, std)

    def is_available(self, peer: str, now: float) -> bool:
        return self.phi(peer, now) < self.options.threshold

    def remove(self, peer: str) -> None:
        self._peers.pop(peer, None)

    def peers(self) -> list[str]:
        return list(self._peers)

    def _seed_history(self) -> HeartbeatHistory:
        estimate = self.options.first_heartbeat_estimate
        history = HeartbeatHistory(self.options.max_sample_size)
        history.add(estimate - estimate / 4)
        history.add(estimate + estimate / 4)
        return history
