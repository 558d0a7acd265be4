"""The health-check strategy interface and the values it returns.

A health check is a strategy (hook ``rpcnet_register_health_checks``) whose
``check()`` returns a :class:`HealthResult`: healthy, degraded or unhealthy,
with a reason. ``check()`` may be a plain function or a coroutine function.

The runner that executes checks, folds their results and publishes the
aggregate in gossip is :mod:`rpcnet.cluster.health`; the bundled
``event-loop-lag`` check is :mod:`rpcnet.builtins.event_loop_lag`.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Awaitable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import attrs

from .deprecation import moved_names

__all__ = [
    "HEALTH_TAG",
    "HEALTH_METHOD",
    "HealthStatus",
    "HealthResult",
    "HealthCheck",
    "InvalidHealthResult",
    "as_health_result",
    "status_from_tags",
    "threshold_result",
]

#: The gossip tag a node publishes its aggregate status in ("healthy",
#: "degraded" or "unhealthy"). A member without it counts as healthy.
HEALTH_TAG = "rpcnet.health"
#: The unary method every cluster node answers with its aggregate health.
HEALTH_METHOD = "rpcnet.health/Check"


class HealthStatus(enum.Enum):
    """How a node rates itself; ordered from best to worst."""

    HEALTHY = "healthy"
    #: Still serving, but a registry prefers any healthy worker to it.
    DEGRADED = "degraded"
    #: A registry never chooses it.
    UNHEALTHY = "unhealthy"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @classmethod
    def worst(cls, statuses: Sequence[HealthStatus]) -> HealthStatus:
        """The most severe of ``statuses``; healthy when there are none."""
        return max(statuses, key=_SEVERITY.__getitem__, default=cls.HEALTHY)


_SEVERITY = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}


class InvalidHealthResult(ValueError):
    """A health check returned something that is not a verdict."""

    def __init__(self, value: Any) -> None:
        self.value = value
        super().__init__(
            f"returned {value!r} ({type(value).__name__}); a health check returns a HealthResult, a HealthStatus "
            f"or one of the strings {', '.join(repr(s.value) for s in HealthStatus)}"
        )


def _status(value: HealthStatus | str) -> HealthStatus:
    if isinstance(value, HealthStatus):
        return value
    if isinstance(value, str):
        try:
            return HealthStatus(value.strip().lower())
        except ValueError:
            pass
    raise InvalidHealthResult(value)


def as_health_result(value: Any) -> HealthResult:
    """What a check returned, as a :class:`HealthResult`: the one definition
    of what a check may return, which the runner applies.

    Accepted: a :class:`HealthResult`; a :class:`HealthStatus`; a status
    string (``"healthy"``, ``"degraded"``, ``"unhealthy"``, in any case,
    surrounding spaces ignored), as ``HealthResult(status)`` also accepts.
    Anything else raises :class:`InvalidHealthResult` naming the value.
    """
    if isinstance(value, HealthResult):
        return value
    if isinstance(value, HealthStatus | str):
        return HealthResult(_status(value))
    raise InvalidHealthResult(value)


@attrs.frozen
class HealthResult:
    """One check's verdict, or the aggregate of several (then ``checks`` holds each one's)."""

    status: HealthStatus = attrs.field(converter=_status)
    reason: str = ""
    checks: Mapping[str, HealthResult] = attrs.field(
        factory=dict, converter=lambda checks: MappingProxyType(dict(checks)), kw_only=True, hash=False
    )

    @classmethod
    def healthy(cls, reason: str = "") -> HealthResult:
        return cls(HealthStatus.HEALTHY, reason)

    @classmethod
    def degraded(cls, reason: str) -> HealthResult:
        return cls(HealthStatus.DEGRADED, reason)

    @classmethod
    def unhealthy(cls, reason: str) -> HealthResult:
        return cls(HealthStatus.UNHEALTHY, reason)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the health RPC: status, reason and each check's."""
        out: dict[str, Any] = {"status": self.status.value, "reason": self.reason}
        if self.checks:
            out["checks"] = {name: result.to_dict() for name, result in self.checks.items()}
        return out


def threshold_result(what: str, value: float, *, warn: float, fail: float, unit: str = "") -> HealthResult:
    """Rate one measurement: unhealthy at or above ``fail``, degraded at or above ``warn``.

    The reason reads like ``"event loop lag 120 ms (warn at 100 ms)"``.
    """
    reason = f"{what} {value:.0f}{unit}"
    if value >= fail:
        return HealthResult.unhealthy(f"{reason} (fail at {fail:g}{unit})")
    if value >= warn:
        return HealthResult.degraded(f"{reason} (warn at {warn:g}{unit})")
    return HealthResult.healthy(reason)


def status_from_tags(tags: Mapping[str, str], tag: str = HEALTH_TAG) -> HealthStatus:
    """The status a member publishes in its tags.

    A member without the tag runs no checks and counts as healthy. A value
    this version does not know counts as degraded: such a worker is used only
    when nothing better matches, neither trusted nor dropped.
    """
    value = tags.get(tag)
    if value is None:
        return HealthStatus.HEALTHY
    try:
        return HealthStatus(value.strip().lower())
    except ValueError:
        return HealthStatus.DEGRADED


class HealthCheck(abc.ABC):
    """Strategy interface; register with ``rpcnet_register_health_checks``.

    Built as ``cls(options=<Options>)`` when the class declares ``Options``,
    else ``cls()``. ``check()`` returns what :func:`as_health_result` accepts
    (a :class:`HealthResult`, a :class:`HealthStatus` or a status string),
    directly or as a coroutine. A plain ``check()``
    runs in a worker thread, so a slow one cannot stall the event loop and its
    time limit holds; a coroutine runs on the loop and must not block it.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type | None] = None

    def __init__(self, options: Any = None) -> None:
        self.options = options

    @abc.abstractmethod
    def check(self) -> HealthResult | HealthStatus | Awaitable[HealthResult | HealthStatus]:
        """Rate this node now."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what the check holds (timers, handles); called when its monitor stops."""


__getattr__ = moved_names(
    __name__,
    {
        "HealthMonitor": "rpcnet.cluster.health",
        "run_checks": "rpcnet.cluster.health",
        "aggregate": "rpcnet.cluster.health",
        "register_health_service": "rpcnet.cluster.health",
        "EventLoopLag": "rpcnet.builtins.event_loop_lag",
        "EventLoopLagOptions": "rpcnet.builtins.event_loop_lag",
    },
    removed_in="0.3",
)
