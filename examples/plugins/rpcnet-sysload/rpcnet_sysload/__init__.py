"""rpcnet plugin: ``cpu`` and ``memory`` health checks, read with psutil.

Each check compares one percentage with two thresholds: at or above
``warn_percent`` the node is degraded (registries use it only when no healthy
worker matches), at or above ``fail_percent`` it is unhealthy (never chosen).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import attrs
import psutil

from rpcnet import hookimpl
from rpcnet.health import HealthCheck, HealthResult, threshold_result
from rpcnet.hookspecs import Register

__all__ = ["CpuCheck", "CpuOptions", "MemoryCheck", "MemoryOptions"]
__version__ = "0.1.0"


def _percent(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not 0 <= value <= 100:
        raise ValueError(f"{attribute.name} must be between 0 and 100, got {value}")


def _fail_not_below_warn(options: CpuOptions | MemoryOptions) -> None:
    if options.fail_percent < options.warn_percent:
        raise ValueError(f"fail_percent ({options.fail_percent}) must be >= warn_percent ({options.warn_percent})")


@attrs.frozen(kw_only=True)
class CpuOptions:
    warn_percent: float = attrs.field(default=85.0, converter=float, validator=_percent)
    fail_percent: float = attrs.field(default=98.0, converter=float, validator=_percent)

    def __attrs_post_init__(self) -> None:
        _fail_not_below_warn(self)


@attrs.frozen(kw_only=True)
class MemoryOptions:
    warn_percent: float = attrs.field(default=85.0, converter=float, validator=_percent)
    fail_percent: float = attrs.field(default=95.0, converter=float, validator=_percent)

    def __attrs_post_init__(self) -> None:
        _fail_not_below_warn(self)


class _PercentCheck(HealthCheck):
    what: ClassVar[str] = ""

    def __init__(self, options: CpuOptions | MemoryOptions, read: Callable[[], float]) -> None:
        super().__init__(options)
        self._read = read

    def check(self) -> HealthResult:
        return threshold_result(
            f"{self.what} used", float(self._read()), warn=self.options.warn_percent,
            fail=self.options.fail_percent, unit="%",
        )


class CpuCheck(_PercentCheck):
    """``cpu``: system-wide CPU use since the previous check."""

    name: ClassVar[str] = "cpu"
    Options: ClassVar[type] = CpuOptions
    what: ClassVar[str] = "CPU"

    def __init__(self, options: CpuOptions | None = None, read: Callable[[], float] | None = None) -> None:
        super().__init__(options or CpuOptions(), read or (lambda: psutil.cpu_percent(interval=None)))


class MemoryCheck(_PercentCheck):
    """``memory``: the share of physical memory in use."""

    name: ClassVar[str] = "memory"
    Options: ClassVar[type] = MemoryOptions
    what: ClassVar[str] = "memory"

    def __init__(self, options: MemoryOptions | None = None, read: Callable[[], float] | None = None) -> None:
        super().__init__(options or MemoryOptions(), read or (lambda: psutil.virtual_memory().percent))


@hookimpl
def rpcnet_register_health_checks(register: Register) -> None:
    register(CpuCheck.name, CpuCheck)
    register(MemoryCheck.name, MemoryCheck)
