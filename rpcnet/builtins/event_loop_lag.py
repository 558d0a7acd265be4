"""The bundled ``event-loop-lag`` health check."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import attrs

from ..config import non_negative, positive
from ..health import HealthCheck, HealthResult, threshold_result
from ..hookspecs import Register, hookimpl

__all__ = ["EventLoopLag", "EventLoopLagOptions"]


@attrs.frozen(kw_only=True)
class EventLoopLagOptions:
    #: Lag at or above which the node is degraded, milliseconds.
    warn_ms: float = attrs.field(default=100.0, converter=float, validator=non_negative)
    #: Lag at or above which the node is unhealthy, milliseconds.
    fail_ms: float = attrs.field(default=1000.0, converter=float, validator=non_negative)
    #: How often the lag is sampled between checks, milliseconds.
    sample_ms: float = attrs.field(default=50.0, converter=float, validator=positive)

    def __attrs_post_init__(self) -> None:
        if self.fail_ms < self.warn_ms:
            raise ValueError(f"fail_ms ({self.fail_ms}) must be >= warn_ms ({self.warn_ms})")


class EventLoopLag(HealthCheck):
    """``event-loop-lag``: how late the event loop runs timers.

    A timer re-armed every ``sample_ms`` records how late it fires; a check
    reports the worst lateness since the previous check (and at least how long
    a callback waits right now), then starts a new period. A loop blocked by a
    synchronous handler between two checks therefore shows up, even though
    the check itself only runs once the loop is free again.
    """

    name: ClassVar[str] = "event-loop-lag"
    Options: ClassVar[type] = EventLoopLagOptions

    def __init__(self, options: EventLoopLagOptions | None = None) -> None:
        super().__init__(options or EventLoopLagOptions())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._worst = 0.0

    def classify(self, lag_ms: float) -> HealthResult:
        return threshold_result(
            "event loop lag", lag_ms, warn=self.options.warn_ms, fail=self.options.fail_ms, unit=" ms"
        )

    def _arm(self) -> None:
        assert self._loop is not None
        due = self._loop.time() + self.options.sample_ms / 1000
        self._handle = self._loop.call_at(due, self._tick, due)

    def _tick(self, due: float) -> None:
        assert self._loop is not None
        self._worst = max(self._worst, self._loop.time() - due)
        self._arm()

    async def check(self) -> HealthResult:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self.close()
            self._loop = loop
            self._worst = 0.0
            self._arm()
        before = loop.time()
        # Two turns of the loop: in the first, timers that fell due while the
        # loop was blocked run after this task's own step, so their lateness
        # is recorded only by the second.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        lag = max(self._worst, loop.time() - before)
        self._worst = 0.0
        return self.classify(lag * 1000)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._loop = None


@hookimpl
def rpcnet_register_health_checks(register: Register) -> None:
    register(EventLoopLag.name, EventLoopLag)

